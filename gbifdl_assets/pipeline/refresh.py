"""Which training sets are due for a refresh: each spec carries its own cron (``refresh:``).

Specs carry their own cron (``refresh: {cron: "0 3 1 * *", timezone: Europe/Copenhagen}``), so one
schedule cannot have "the" cron of all of them. Instead one schedule ticks every
:data:`REFRESH_TICK_MINUTES` minutes and, on each tick, asks every spec whether its cron fired in the
window since the previous tick (``(previous tick, this tick]``, evaluated in the spec's time zone). The
window is derived from the tick time alone, so the decision is stateless and deterministic: a
re-evaluated tick gives the same answer, and the run key (training set + the spec's fire time) keeps a
fire time from ever starting two refreshes.

A spec whose cron is finer-grained than the tick (say every 5 minutes) is refreshed at most once per
tick; specs are meant to refresh daily to monthly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import croniter

from gbifdl_assets.specs import TrainingSetSpec

REFRESH_TICK_MINUTES = 15
REFRESH_TICK_CRON = f"*/{REFRESH_TICK_MINUTES} * * * *"


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


@dataclass(frozen=True)
class RefreshTick:
    """One tick's decision: the refreshes to start, and the due ones that must wait."""

    window_start: dt.datetime
    window_end: dt.datetime
    due: list[DueRefresh]  # due and registered as partitions: start these
    waiting: list[str]  # due, but not registered as partitions yet (the next fire time catches up)
    with_cron: int  # specs that have a refresh cron
    specs: int

    def nothing_due(self) -> str:
        return (
            f"no refresh due in ({self.window_start:%Y-%m-%d %H:%M}, {self.window_end:%Y-%m-%d %H:%M}] UTC "
            f"({self.with_cron} of {self.specs} specs have a refresh cron)"
        )


def refresh_tick(
    specs: Iterable[TrainingSetSpec], tick: dt.datetime | None, registered: Iterable[str]
) -> RefreshTick:
    """What the tick at ``tick`` (now when None; naive means UTC) refreshes among ``specs``."""
    if tick is None:
        tick = dt.datetime.now(dt.UTC)
    if tick.tzinfo is None:
        tick = tick.replace(tzinfo=dt.UTC)
    specs = list(specs)
    start = previous_tick(tick)
    due = due_refreshes(specs, start, tick)
    known = set(registered)
    return RefreshTick(
        window_start=start,
        window_end=tick,
        due=[d for d in due if d.training_set in known],
        waiting=[d.training_set for d in due if d.training_set not in known],
        with_cron=sum(1 for spec in specs if spec.refresh.cron),
        specs=len(specs),
    )
