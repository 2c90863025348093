"""training_set_refresh_schedule: rebuild each training set on the cron of its spec (``refresh:``).

One schedule ticks every :data:`~gbifdl_assets.pipeline.refresh.REFRESH_TICK_MINUTES` minutes and asks
every spec whether its cron fired since the previous tick (:mod:`gbifdl_assets.pipeline.refresh`); the
run key (training set + the spec's fire time) keeps a fire time from ever starting two refreshes.

A refresh re-runs the training-set stages from the species list to the balanced manifest in one run
(new GBIF data, current rules). ``image_store`` and ``training_export`` follow through their eager
automation conditions once the new manifest exists. The refresh is incremental by construction: the
image ledger skips images already stored, and splits are stable hashes, so an image keeps its split
across refreshes (``gbifdl_assets_tests/integration/test_refresh_incremental.py``).
"""

from __future__ import annotations

import dagster as dg

from gbifdl_assets.defs.assets import TRAINING_SET_STAGES
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import SpecsResource
from gbifdl_assets.pipeline.refresh import REFRESH_TICK_CRON, REFRESH_TICK_MINUTES, refresh_tick

#: The stages one refresh run materializes for a training set (same partitions: one run).
REFRESH_SELECTION = TRAINING_SET_STAGES


@dg.schedule(
    name="training_set_refresh_schedule",
    cron_schedule=REFRESH_TICK_CRON,
    execution_timezone="UTC",
    target=REFRESH_SELECTION,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        f"Every {REFRESH_TICK_MINUTES} minutes: refreshes the training sets whose spec's refresh cron fired "
        "since the previous tick (species list to balanced manifest; images and export follow)."
    ),
)
def training_set_refresh_schedule(context: dg.ScheduleEvaluationContext, specs: SpecsResource):
    folder = specs.load()
    for path, problem in folder.problems.items():
        context.log.warning(f"spec file {path} is not valid and is not refreshed: {problem}")
    # evaluated outside a tick (e.g. a test without a time): now
    tick = refresh_tick(
        folder.specs.values(),
        context.scheduled_execution_time,
        context.instance.get_dynamic_partitions(TRAINING_SET_PARTITION),
    )
    if tick.waiting:
        # training_set_specs_sensor registers new specs within a minute; the next fire time catches up.
        context.log.info(f"not yet registered as training_set partitions, not refreshed now: {tick.waiting}")
    if not tick.due:
        return dg.SkipReason(tick.nothing_due())
    context.log.info(f"refreshing {[d.training_set for d in tick.due]}")
    return [
        dg.RunRequest(
            partition_key=d.training_set,
            run_key=d.run_key,
            tags={
                "gbifdl/trigger": "refresh",
                "gbifdl/refresh_fire_time": d.fire_time.isoformat(),
                "gbifdl/target": f"species_list..balanced_manifest[{d.training_set}]",
            },
        )
        for d in tick.due
    ]
