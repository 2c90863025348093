"""What download runs learned about each media host, kept next to the images for the next run.

A small JSON object under one storage key (``hosts/rates.json`` by default; the caller chooses)::

    {"version": 1,
     "hosts": {"static.inaturalist.org": {"rate": 18.2, "ceiling": 20.0, "concurrency": 4,
                                          "latency_ms": 85.0, "requests": 5120, "throttled": 31,
                                          "timeouts": 0, "failed": 0, "skipped": null,
                                          "updated_at": "2027-01-05T10:12:00Z"}, …}}

A run reads it before it starts (each host then starts from its learned rate and ceiling instead of
from scratch, :class:`~.hosts.HostControl`), and writes what it learned every ``save_seconds`` and
at the end, so the other shards of the same training set, running at the same time or after it,
start from it too. Writing merges: the file is read again, the hosts this run contacted replace
their entries, the others stay (entries older than ``max_age_days`` are dropped, and the file is
capped to the most recently updated 20,000 hosts). Two shards writing at the same moment can lose
one's update of a host; the file is a hint, never a source of truth, so that is harmless.
A missing, unreadable or malformed file is an empty one (logged), never an error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gbifdl_assets.storage import Storage

__all__ = ["DEFAULT_HOST_RATES_KEY", "HostBook", "load_host_rates", "merge_worker_states", "save_host_rates"]

log = logging.getLogger(__name__)

DEFAULT_HOST_RATES_KEY = "hosts/rates.json"
_MAX_HOSTS = 20_000
_FIELDS = (
    "rate",
    "ceiling",
    "ceiling_soft",
    "concurrency",
    "latency_ms",
    "background_answers",
    "background_refusals",
    "requests",
    "throttled",
    "timeouts",
    "failed",
    "skipped",
)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age_days(stamp: Any) -> float:
    try:
        when = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (time.time() - when.timestamp()) / 86400


def load_host_rates(
    storage: Storage, key: str = DEFAULT_HOST_RATES_KEY, *, max_age_days: float = 90.0
) -> dict[str, dict[str, Any]]:
    """``{host: state}`` from the rates file (empty when there is none or it cannot be read)."""
    try:
        if not storage.exists(key):
            return {}
        doc = json.loads(storage.read_bytes(key))
    except Exception as exc:  # a hint only: a broken file must not stop a download
        log.warning("ignoring the host rates file %s: %s", storage.uri_of(key), exc)
        return {}
    hosts = doc.get("hosts") if isinstance(doc, dict) else None
    if not isinstance(hosts, dict):
        log.warning("ignoring the host rates file %s: no 'hosts' object", storage.uri_of(key))
        return {}
    out: dict[str, dict[str, Any]] = {}
    for host, state in hosts.items():
        if (
            isinstance(host, str)
            and isinstance(state, dict)
            and _age_days(state.get("updated_at")) <= max_age_days
        ):
            out[host] = state
    return out


def save_host_rates(
    storage: Storage,
    states: Mapping[str, Mapping[str, Any]],
    key: str = DEFAULT_HOST_RATES_KEY,
    *,
    max_age_days: float = 90.0,
) -> int:
    """Merge ``states`` (``{host: HostControl.state()}``) into the rates file; returns hosts written."""
    if not states:
        return 0
    merged = load_host_rates(storage, key, max_age_days=max_age_days)
    stamp = _now_iso()
    for host, state in states.items():
        entry = {f: state.get(f) for f in _FIELDS}
        entry["updated_at"] = stamp
        merged[host] = entry
    if len(merged) > _MAX_HOSTS:
        newest = sorted(merged.items(), key=lambda kv: str(kv[1].get("updated_at")), reverse=True)
        merged = dict(newest[:_MAX_HOSTS])
    doc = {"version": 1, "hosts": dict(sorted(merged.items()))}
    storage.write_bytes(key, json.dumps(doc, indent=1, sort_keys=True).encode())
    return len(states)


def merge_worker_states(per_worker: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One state per host from the states several downloader processes hold for it.

    A host served by two processes at once was sent the sum of their rates; that sum is what it
    bore. Counters add up; the latency is the larger; a skip in any process is kept.
    """
    out: dict[str, dict[str, Any]] = {}
    ceilings: dict[str, list[tuple[float | None, float | None]]] = {}
    for states in per_worker:
        for host, state in states.items():
            ceilings.setdefault(host, []).append((state.get("ceiling"), state.get("rate")))
            have = out.get(host)
            if have is None:
                out[host] = dict(state)
                continue
            if have.get("rate") is not None and state.get("rate") is not None:
                have["rate"] = round(have["rate"] + state["rate"], 3)
            elif state.get("rate") is not None:
                have["rate"] = state["rate"]
            for f in (
                "concurrency",
                "requests",
                "throttled",
                "timeouts",
                "failed",
                "background_answers",
                "background_refusals",
            ):
                have[f] = (have.get(f) or 0) + (state.get(f) or 0)
            if state.get("latency_ms") is not None:
                have["latency_ms"] = max(have.get("latency_ms") or 0, state["latency_ms"])
            have["skipped"] = have.get("skipped") or state.get("skipped")
            # the sum is a guess as soon as one share of it is
            have["ceiling_soft"] = bool(have.get("ceiling_soft") or state.get("ceiling_soft"))
    for host, pairs in ceilings.items():
        if len(pairs) > 1 and any(c is not None for c, _ in pairs):
            # each process's ceiling is its share; one without a ceiling yet bears at least its rate
            out[host]["ceiling"] = round(sum(c if c is not None else (r or 0.0) for c, r in pairs), 3)
    return out


class HostBook:
    """The run's view of its hosts: learned states from every downloader process, saved now and then.

    ``update(source, states)`` takes ``{host: state}`` from one process (0 in-process; the worker
    index in a pool), ``maybe_save()`` writes the merged states every ``save_seconds``, ``save()``
    at the end. Saving never raises: a failed write is logged and the run goes on.
    """

    def __init__(self, storage: Storage | None, key: str | None, *, save_seconds: float = 30.0) -> None:
        self.storage = storage
        self.key = key
        self.save_seconds = save_seconds
        self.learned: dict[str, dict[str, Any]] = {}
        self._by_source: dict[int, dict[str, dict[str, Any]]] = {}
        self._saved_at = time.monotonic()
        self._dirty = False

    def load(self) -> dict[str, dict[str, Any]]:
        if self.storage is not None and self.key:
            self.learned = load_host_rates(self.storage, self.key)
        return self.learned

    def update(self, source: int, states: Mapping[str, Mapping[str, Any]]) -> None:
        if states:
            self._by_source.setdefault(source, {}).update({h: dict(s) for h, s in states.items()})
            self._dirty = True

    def keep_only(self, host: str, source: int) -> None:
        """Forget what other processes said about ``host``: ``source`` paces it alone from now on."""
        for other, states in self._by_source.items():
            if other != source:
                states.pop(host, None)

    def merged(self) -> dict[str, dict[str, Any]]:
        return merge_worker_states(self._by_source.values())

    def maybe_save(self) -> None:
        """Every ``save_seconds``: write what this run learned, and read what the other runs of the
        store (the other shards of a training set, running now) wrote meanwhile."""
        if time.monotonic() - self._saved_at >= self.save_seconds:
            self.save()

    def save(self) -> None:
        self._saved_at = time.monotonic()
        if self.storage is None or not self.key:
            return
        try:
            if self._dirty:
                self._dirty = False
                save_host_rates(self.storage, self.merged(), self.key)
            self._adopt_others(load_host_rates(self.storage, self.key))
        except Exception as exc:  # a hint for later runs; never worth failing this one
            log.warning("could not save host rates to %s: %s", self.storage.uri_of(self.key), exc)

    def _adopt_others(self, in_file: Mapping[str, Mapping[str, Any]]) -> None:
        """Hosts this run has not contacted yet start from what other runs have learned since it
        began (``learned`` is updated in place: the fetcher reads it when it meets a new host); a
        host already under way keeps its own controller."""
        seen = {host for states in self._by_source.values() for host in states}
        for host, state in in_file.items():
            if host not in seen:
                self.learned[host] = dict(state)

    def summary(self, top: int = 20) -> dict[str, Any]:
        """For the run summary: busiest hosts, skipped hosts with their reason, throttling in all."""
        merged = self.merged()
        busiest = sorted(merged.items(), key=lambda kv: -(kv[1].get("requests") or 0))[:top]
        return {
            "hosts_contacted": len(merged),
            "throttled": sum(s.get("throttled") or 0 for s in merged.values()),
            "hosts_skipped": {h: s["skipped"] for h, s in sorted(merged.items()) if s.get("skipped")},
            "hosts": {
                h: {
                    k: s.get(k)
                    for k in ("requests", "throttled", "rate", "ceiling", "concurrency", "latency_ms")
                }
                for h, s in busiest
            },
        }
