"""The one rule of the sensors that rebuild an unpartitioned asset when its source changes (the rules,
the image flags): a run per new fingerprint of the source, none for a fingerprint already built."""

from __future__ import annotations

import dagster as dg


def rebuild_on_change(
    context: dg.SensorEvaluationContext,
    fingerprint: str,
    *,
    asset_key: dg.AssetKey,
    metadata_key: str,
    what: str,
    trigger: str,
    run_key_prefix: str,
) -> dg.SensorResult | dg.SkipReason:
    """A run of ``asset_key`` when ``fingerprint`` differs from the cursor.

    A fresh sensor (no cursor, e.g. ``make dev`` after ``make demo``) first compares it with the
    fingerprint the asset's latest materialization recorded under ``metadata_key``: the instance may
    already hold that build, and then nothing runs.
    """
    if fingerprint == context.cursor:
        return dg.SkipReason(f"{what} unchanged")
    if context.cursor is None:
        event = context.instance.get_latest_materialization_event(asset_key)
        built = event.asset_materialization.metadata.get(metadata_key) if event else None
        if built is not None and str(built.value) == fingerprint:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"{what} unchanged since the last build"), cursor=fingerprint
            )
    target = asset_key.to_user_string()
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{run_key_prefix}:{fingerprint}",
                tags={"gbifdl/trigger": trigger, "gbifdl/target": target},
            )
        ],
        cursor=fingerprint,
    )
