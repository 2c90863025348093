"""When a RetryPolicy runs out, the step fails with the asset's own message, not "Exceeded max_retries"."""

# No `from __future__ import annotations`: Dagster reads the assets' context annotations at definition.
import dagster as dg
import pytest

from gbifdl_assets.defs.retries import final_attempt_says_why, step_failure

FAST = dg.RetryPolicy(max_retries=2, delay=0)


def _run(asset: dg.AssetsDefinition) -> tuple[str, int]:
    result = dg.materialize([asset], raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    # Dagster renders a Failure as "dagster._core.definitions.events.Failure: <description>"
    message = failure.event_specific_data.error.message.strip()
    return message.removeprefix("dagster._core.definitions.events.Failure: "), len(restarts)


def test_a_transient_failure_is_retried_then_final_with_its_message() -> None:
    @dg.asset(retry_policy=FAST)
    def rate_limited(context: dg.AssetExecutionContext) -> None:
        raise step_failure(
            context, "species_list[cats]: GBIF HTTP 429 for GET /species/match", transient=True
        )

    message, restarts = _run(rate_limited)
    assert restarts == 2
    assert message.startswith("species_list[cats]: GBIF HTTP 429"), message
    assert "still failing after 2 retries" in message and "Exceeded max_retries" not in message


def test_a_permanent_failure_is_not_retried() -> None:
    @dg.asset(retry_policy=FAST)
    def bad_request(context: dg.AssetExecutionContext) -> None:
        raise step_failure(context, "species_list[cats]: GBIF HTTP 400: bad name", transient=False)

    message, restarts = _run(bad_request)
    assert (message, restarts) == ("species_list[cats]: GBIF HTTP 400: bad name", 0)


@pytest.mark.parametrize(
    "raised",
    [
        OSError("S3 endpoint refused the connection"),
        dg.Failure("S3 endpoint refused the connection", allow_retries=True),
    ],
)
def test_any_exception_under_a_retry_policy_ends_with_what_failed(raised: Exception) -> None:
    @dg.asset(retry_policy=FAST)
    def shard(context: dg.AssetExecutionContext) -> None:
        with final_attempt_says_why(context, "image_store[00|cats]"):
            raise raised

    message, restarts = _run(shard)
    assert restarts == 2
    assert "S3 endpoint refused the connection" in message and "still failing after 2 retries" in message, (
        message
    )
    assert "Exceeded max_retries" not in message


def test_without_a_retry_policy_the_first_failure_is_final() -> None:
    @dg.asset
    def once(context: dg.AssetExecutionContext) -> None:
        raise step_failure(context, "gbif_download[cats]: GBIF HTTP 503", transient=True)

    message, restarts = _run(once)
    assert (message, restarts) == ("gbif_download[cats]: GBIF HTTP 503", 0)
