"""training_set_refresh_schedule: rebuild each training set on the cron of its spec (``refresh:``).

Specs carry their own cron (``refresh: {cron: "0 3 1 * *", timezone: Europe/Copenhagen}``), so one
schedule cannot have "the" cron of all of them. Instead one schedule ticks every
:data:`REFRESH_TICK_MINUTES` minutes and, on each tick, asks every spec whether its cron fired in the
window since the previous tick (``(previous tick, this tick]``, evaluated in the spec's time zone). The
window is derived from the tick time alone, so the decision is stateless and deterministic: a
re-evaluated tick emits the same requests, and the ``run_key`` (training set + the spec's fire time)
keeps a fire time from ever starting two refreshes.

A refresh re-runs the training-set stages from the species list to the balanced manifest in one run
(new GBIF data, current rules). ``image_store`` and ``training_export`` follow through their eager
automation conditions once the new manifest exists. The refresh is incremental by construction: the
image ledger skips images already stored, and splits are stable hashes, so an image keeps its split
across refreshes (``gbifdl_assets_tests/integration/test_refresh_incremental.py``).

A spec whose cron is finer-grained than the tick (say every 5 minutes) is refreshed at most once per
tick; specs are meant to refresh daily to monthly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg
from croniter import croniter

from gbifdl_assets.defs.annotations import annotated_occurrences
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import SpecCatalog
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.specs import TrainingSetSpec

REFRESH_TICK_MINUTES = 15
REFRESH_TICK_CRON = f"*/{REFRESH_TICK_MINUTES} * * * *"
#: The stages one refresh run materializes for a training set (same partitions: one run).
REFRESH_SELECTION = [
    species_list,
    gbif_download,
    occurrence_snapshot,
    annotated_occurrences,
    balanced_manifest,
]


@dataclass(frozen=True)
class DueRefresh:
    """A training set whose refresh cron fired at ``fire_time`` (in the spec's time zone)."""

    training_set: str
    fire_time: dt.datetime

    @property
    def run_key(self) -> str:
        return f"refresh:{self.training_set}:{self.fire_time.astimezone(dt.UTC):%Y-%m-%dT%H:%MZ}"


def previous_tick(tick: dt.datetime) -> dt.datetime:
    """The schedule's tick before ``tick`` (a timezone-aware datetime)."""
    return croniter(REFRESH_TICK_CRON, tick.astimezone(dt.UTC)).get_prev(dt.datetime)


def due_refreshes(
    specs: Iterable[TrainingSetSpec], window_start: dt.datetime, window_end: dt.datetime
) -> list[DueRefresh]:
    """Specs whose ``refresh.cron`` fires in ``(window_start, window_end]``; the latest fire time each.

    Both ends must be timezone-aware. A spec with ``cron: null`` is never due.
    """
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise ValueError("due_refreshes needs timezone-aware datetimes (e.g. datetime.now(datetime.UTC))")
    due = []
    for spec in specs:
        if not spec.refresh.cron:
            continue
        zone = ZoneInfo(spec.refresh.timezone)
        fire = croniter(spec.refresh.cron, window_end.astimezone(zone)).get_prev(dt.datetime)
        # croniter.get_prev is strictly before its start: a fire exactly at window_end counts too.
        if croniter.match(spec.refresh.cron, window_end.astimezone(zone)):
            fire = window_end.astimezone(zone).replace(second=0, microsecond=0)
        if window_start < fire <= window_end:
            due.append(DueRefresh(spec.name, fire))
    return sorted(due, key=lambda d: d.training_set)


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
def training_set_refresh_schedule(context: dg.ScheduleEvaluationContext, specs: SpecCatalog):
    tick = context.scheduled_execution_time
    if tick is None:  # evaluated outside a tick (e.g. a test without a time): use now
        tick = dt.datetime.now(dt.UTC)
    if tick.tzinfo is None:
        tick = tick.replace(tzinfo=dt.UTC)
    valid, errors = specs.load_all()
    for path, problem in errors.items():
        context.log.warning(f"spec file {path} is not valid and is not refreshed: {problem}")
    due = due_refreshes([spec for _, spec in valid.values()], previous_tick(tick), tick)
    registered = set(context.instance.get_dynamic_partitions(TRAINING_SET_PARTITION))
    waiting = [d.training_set for d in due if d.training_set not in registered]
    if waiting:
        # training_set_specs_sensor registers new specs within a minute; the next fire time catches up.
        context.log.info(f"not yet registered as training_set partitions, not refreshed now: {waiting}")
    requests = [
        dg.RunRequest(
            partition_key=d.training_set,
            run_key=d.run_key,
            tags={"gbifdl/trigger": "refresh", "gbifdl/refresh_fire_time": d.fire_time.isoformat()},
        )
        for d in due
        if d.training_set in registered
    ]
    if not requests:
        with_cron = sum(1 for _, spec in valid.values() if spec.refresh.cron)
        return dg.SkipReason(
            f"no refresh due in ({previous_tick(tick):%Y-%m-%d %H:%M}, {tick:%Y-%m-%d %H:%M}] UTC "
            f"({with_cron} of {len(valid)} specs have a refresh cron)"
        )
    context.log.info(f"refreshing {[r.partition_key for r in requests]}")
    return requests
