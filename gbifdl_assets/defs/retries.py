"""Step failures: core errors as Dagster Failures, which keep their own message when retries run out.

:func:`stage_failures` turns a :class:`~gbifdl_assets.pipeline.errors.StageError` of a core stage
into the step's Failure: retried only when it is transient and attempts remain.

When an asset raises ``Failure(allow_retries=True)`` (or any exception) on its last attempt, Dagster
reports the step as "Exceeded max_retries of N" and keeps the asset's message only in the cause
chain, which the UI folds away. On the last attempt these helpers raise a final ``Failure`` instead,
so the step's failure message is what failed ("species_list[cats]: GBIF HTTP 429 …") and says that
it already waited through the retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from gbifdl_assets.pipeline.errors import StageError

Context = dg.AssetExecutionContext | dg.OpExecutionContext


def _attempts_left(context: Context) -> int:
    # an asset's context reaches its op's handle through op_execution_context (op_handle on the
    # asset context is deprecated in Dagster 1.13)
    op = context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    policy = op.job_def.get_retry_policy_for_handle(op.op_handle)
    return max(0, policy.max_retries - context.retry_number) if policy else 0


def _gave_up(context: Context, description: str) -> str:
    if context.retry_number:
        return f"{description} (still failing after {context.retry_number} retries)"
    return description


def step_failure(
    context: Context, description: str, *, transient: bool, metadata: Mapping[str, Any] | None = None
) -> dg.Failure:
    """A Failure the retry policy retries only when waiting can fix it (``transient``) and attempts
    remain; otherwise final, with ``description`` as the step's own failure message."""
    if transient and _attempts_left(context):
        return dg.Failure(description=description, metadata=metadata, allow_retries=True)
    return dg.Failure(
        description=_gave_up(context, description) if transient else description,
        metadata=metadata,
        allow_retries=False,
    )


@contextlib.contextmanager
def stage_failures(context: Context) -> Iterator[None]:
    """Around a core stage call: its StageError becomes the step's Failure (see :func:`step_failure`)."""
    try:
        yield
    except StageError as exc:
        raise step_failure(context, str(exc), transient=exc.transient, metadata=exc.metadata) from exc


@contextlib.contextmanager
def final_attempt_says_why(context: Context, what: str) -> Iterator[None]:
    """Around a body whose every exception the retry policy retries: on the last attempt the
    exception becomes a final Failure whose message names ``what`` and the exception."""
    try:
        yield
    except dg.Failure as failure:
        # it already says what failed; only a retryable one on the last attempt needs making final
        if not failure.allow_retries or _attempts_left(context):
            raise
        raise dg.Failure(
            description=_gave_up(context, failure.description or what),
            metadata=failure.metadata,
            allow_retries=False,
        ) from failure
    except Exception as exc:
        if _attempts_left(context):
            raise
        raise dg.Failure(description=_gave_up(context, f"{what}: {exc}"), allow_retries=False) from exc
