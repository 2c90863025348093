"""Registry data for snapshots: who published each dataset, its title, DOI and licence.

Why: a real GBIF DWCA download has no ``publishingOrgKey`` column (only the search API's JSON and
SIMPLE_CSV carry it; reference real-world.md), so a snapshot built from a download cannot balance or
filter by publisher unless the publisher comes from GBIF's registry, per dataset:
``GET {api}/dataset/{key}`` (``title``, ``publishingOrganizationKey``, ``doi``, ``license``) and
``GET {api}/organization/{key}`` (``title``, ``country``). A download of millions of records spans
tens to a few thousand datasets, so this is one request per *distinct* key, never per row.

Three parts:

* :class:`RegistryClient` fetches keys in parallel within GBIF's politeness: a small worker pool
  (3 by default) on one pooled :class:`~gbifdl_assets.gbif.http.GbifHttp` session; a ``Retry-After``
  of a 429 (or a 5xx backoff) pauses *every* worker, not only the one that was told to wait; after
  ``give_up_after`` failures in a row the registry is taken to be down and the remaining keys are not
  requested. Every key gets an outcome, counted by reason (:data:`OUTCOMES`); nothing raises for a
  key that is missing, throttled or unreachable, the rows of that key just keep nulls.
* :func:`lookup_registry` adds a cache: two Parquet tables in a
  :class:`~gbifdl_assets.storage.Storage` (``registry/datasets.parquet`` and
  ``registry/organizations.parquet`` by default) with a ``fetched_at`` per key. Entries younger than
  ``max_age`` (30 days by default) are used without a request; older or missing ones are fetched.
  Only GBIF's answers (``ok``, ``not_found``) are cached, never a transient failure; a stale entry
  whose refresh fails is still used (and counted as ``stale``), since yesterday's publisher beats
  none. Tables are written with ``Storage.write_parquet`` (atomic); a cache that cannot be read or
  written is reported and skipped, never fatal.
* :func:`enrich_with_registry` is pure and vectorised (pyarrow ``index_in`` + ``take``): it fills
  and adds the registry columns to any table with a ``datasetKey`` column, keeping existing
  non-null values (a search-API snapshot already has ``publishingOrgKey``).

Column names (:data:`REGISTRY_COLUMNS`), GBIF's where GBIF has one:

* ``publishingOrgKey``: GBIF's occurrence field (search JSON, SIMPLE_CSV) for the registry's
  ``publishingOrganizationKey``;
* ``datasetTitle``, ``datasetDOI``: the names of GBIF's download dataset listing
  (``/occurrence/download/{key}/datasets``);
* ``publishingOrganizationTitle``: the name of GBIF's dataset search results;
* ``publishingCountry``: GBIF's occurrence field (ISO 3166 alpha-2 of the publishing organization);
* ``datasetLicense``: ours (GBIF calls it ``license`` on the dataset, which would clash with the
  record licence); the registry's value as given, a Creative Commons legalcode URL.

Use::

    client = RegistryClient(api_url)
    data = lookup_registry(table["datasetKey"], client=client, storage=storage)
    table = enrich_with_registry(table, data.datasets, data.organizations)
    data.report.to_dict()  # counts by outcome, for metadata and summaries

or :func:`with_registry_data`, which does both.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import requests

from gbifdl_assets.gbif.client import DEFAULT_BASE_URL
from gbifdl_assets.gbif.errors import (
    GbifBadRequest,
    GbifError,
    GbifHTTPError,
    GbifNotFound,
    GbifRateLimited,
)
from gbifdl_assets.gbif.http import GbifHttp
from gbifdl_assets.storage import layout
from gbifdl_assets.storage.errors import StorageError

if TYPE_CHECKING:
    from gbifdl_assets.storage import Storage

log = logging.getLogger(__name__)

DATASETS_KEY = layout.REGISTRY_DATASETS_KEY
ORGANIZATIONS_KEY = layout.REGISTRY_ORGANIZATIONS_KEY
DEFAULT_MAX_AGE = timedelta(days=30)
DEFAULT_WORKERS = 3

#: Why a key has (or lacks) registry data. ``ok``: GBIF answered the object; ``not_found``: 404/410;
#: ``rate_limited``: still 429/420 after the retries; ``unavailable``: 5xx after the retries, or an
#: answer that is not the registry's JSON; ``unreachable``: no answer at all (refused, DNS, timeout);
#: ``invalid_key``: not a UUID, never sent; ``offline``: no client was given (an offline run).
OUTCOMES = ("ok", "not_found", "rate_limited", "unavailable", "unreachable", "invalid_key", "offline")
#: outcomes that are GBIF's answer about the key (cached); the others say nothing about the key
ANSWERS = frozenset({"ok", "not_found"})
#: outcomes that count towards giving up on the registry
_FAILURES = frozenset({"rate_limited", "unavailable", "unreachable"})

#: the columns :func:`enrich_with_registry` fills or adds, in this order
REGISTRY_COLUMNS = (
    "publishingOrgKey",
    "datasetTitle",
    "datasetDOI",
    "datasetLicense",
    "publishingOrganizationTitle",
    "publishingCountry",
)
_DATASET_VALUES = ("publishingOrgKey", "datasetTitle", "datasetDOI", "datasetLicense")
_ORGANIZATION_VALUES = ("publishingOrganizationTitle", "publishingCountry")
#: registry JSON field -> our column
_DATASET_FIELDS = {
    "publishingOrganizationKey": "publishingOrgKey",
    "title": "datasetTitle",
    "doi": "datasetDOI",
    "license": "datasetLicense",
}
_ORGANIZATION_FIELDS = {"title": "publishingOrganizationTitle", "country": "publishingCountry"}

_BOOKKEEPING = [
    pa.field("outcome", pa.string(), nullable=False),
    pa.field("message", pa.string()),
    pa.field("fetched_at", pa.timestamp("ms", tz="UTC")),
]
DATASET_SCHEMA = pa.schema(
    [
        pa.field("datasetKey", pa.string(), nullable=False),
        *(pa.field(c, pa.string()) for c in _DATASET_VALUES),
        *_BOOKKEEPING,
    ]
)
ORGANIZATION_SCHEMA = pa.schema(
    [
        pa.field("publishingOrgKey", pa.string(), nullable=False),
        *(pa.field(c, pa.string()) for c in _ORGANIZATION_VALUES),
        *_BOOKKEEPING,
    ]
)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# ------------------------------------------------------------------------------------- fetching
@dataclass(frozen=True)
class Fetched:
    """The outcome for one key: GBIF's object (``ok``) or why there is none."""

    key: str
    outcome: str
    record: dict[str, Any] | None = None
    message: str = ""


class _PoliteGate:
    """One pause shared by all workers: whoever is told to wait makes everybody wait.

    :class:`GbifHttp` calls ``sleep(delay)`` before each retry (``Retry-After`` of a 429, or the
    backoff after a 5xx or a refused connection); routed here, the delay pauses every worker until
    it has passed, so three workers never hammer a server that asked for a break.
    """

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self._clock() + max(0.0, seconds))
        self.wait()

    def wait(self) -> None:
        """Sleep until the pause is over; again only if someone extended it meanwhile."""
        waited_for = None
        while True:
            with self._lock:
                until = self._until
                left = until - self._clock()
            if left <= 0 or until == waited_for:
                return
            self._sleep(left)
            waited_for = until


class RegistryClient:
    """Fetches GBIF registry objects, one request per key, a few in parallel (module docstring).

    ``sleep`` and ``clock`` are injectable so tests replay ``Retry-After`` waits without waiting;
    ``session`` lets a caller share a pooled session (or tests mount a replaying adapter).
    """

    def __init__(
        self,
        api_url: str = DEFAULT_BASE_URL,
        *,
        workers: int = DEFAULT_WORKERS,
        timeout: float | tuple[float, float] = (5, 30),
        max_retries: int = 3,
        backoff_max: float = 30.0,
        give_up_after: int = 5,
        user_agent: str | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.workers = max(1, int(workers))
        self.give_up_after = max(1, int(give_up_after))
        self._gate = _PoliteGate(sleep, clock)
        self.http = GbifHttp(
            timeout=timeout,
            max_retries=max_retries,
            backoff_max=backoff_max,
            user_agent=user_agent,
            session=session,
            pool_size=self.workers,
            sleep=self._gate.pause,
        )
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient({self.api_url!r}, workers={self.workers})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one key
    def fetch_dataset(self, key: str) -> Fetched:
        return self._fetch("dataset", key)

    def fetch_organization(self, key: str) -> Fetched:
        return self._fetch("organization", key)

    def _fetch(self, kind: str, key: str) -> Fetched:
        if not _UUID.fullmatch(key):
            return Fetched(key, "invalid_key", message=f"{key!r} is not a GBIF registry key (a UUID)")
        self._gate.wait()
        with self._count_lock:
            self.requests_sent += 1
        url = f"{self.api_url}/{kind}/{key}"
        try:
            record = self.http.get_json(url)
        except GbifNotFound as exc:
            return Fetched(key, "not_found", message=str(exc))
        except GbifRateLimited as exc:
            return Fetched(key, "rate_limited", message=str(exc))
        except GbifBadRequest as exc:
            return Fetched(key, "invalid_key", message=str(exc))
        except GbifHTTPError as exc:
            return Fetched(key, "unreachable" if exc.status == 0 else "unavailable", message=str(exc))
        except GbifError as exc:  # a 2xx that is not JSON (a proxy's HTML page ...)
            return Fetched(key, "unavailable", message=str(exc))
        if not isinstance(record, dict) or not record.get("key"):
            return Fetched(key, "unavailable", message=f"GBIF sent no {kind} object for {url}")
        return Fetched(key, "ok", record=record)

    # ------------------------------------------------------------------ many keys
    def fetch_datasets(self, keys: Iterable[str]) -> list[Fetched]:
        return self._fetch_many("dataset", keys)

    def fetch_organizations(self, keys: Iterable[str]) -> list[Fetched]:
        return self._fetch_many("organization", keys)

    def _fetch_many(self, kind: str, keys: Iterable[str]) -> list[Fetched]:
        """One outcome per distinct key, in first-seen order; stops asking once the registry is down."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return []
        lock = threading.Lock()
        state = {"failures": 0, "last": None, "done": 0}
        started = time.monotonic()

        def one(key: str) -> Fetched:
            with lock:
                last: Fetched | None = state["last"]  # type: ignore[assignment]
                down = state["failures"] >= self.give_up_after
            if down and last is not None:
                return Fetched(
                    key,
                    last.outcome,
                    message=f"not requested: the registry failed {self.give_up_after} times in a row "
                    f"(last: {last.message})",
                )
            result = self._fetch(kind, key)
            with lock:
                if result.outcome in _FAILURES:
                    state["failures"] += 1
                    state["last"] = result
                elif result.outcome in ANSWERS:
                    state["failures"] = 0
                state["done"] += 1
                done = state["done"]
            if done % 200 == 0:
                rate = done / max(time.monotonic() - started, 1e-6)
                log.info("registry: %d/%d %s keys looked up (%.1f/s)", done, len(unique), kind, rate)
            return result

        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"registry-{kind}") as pool:
            return list(pool.map(one, unique))


# ---------------------------------------------------------------------------------------- cache
@dataclass
class RegistryReport:
    """What the lookup did, per distinct key: outcome counts and where the values came from."""

    datasets: dict[str, int] = field(default_factory=dict)
    organizations: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    from_cache: int = 0
    stale: int = 0
    cache_written: bool = False
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": dict(self.datasets),
            "organizations": dict(self.organizations),
            "requests": self.requests,
            "from_cache": self.from_cache,
            "stale": self.stale,
            "cache_written": self.cache_written,
            "problems": list(self.problems),
        }

    def missing(self) -> dict[str, int]:
        """Keys without registry data, by reason (datasets and organizations together)."""
        out: dict[str, int] = {}
        for counts in (self.datasets, self.organizations):
            for outcome, n in counts.items():
                if outcome != "ok" and n:
                    out[outcome] = out.get(outcome, 0) + n
        return out

    def gaps(self, table: pa.Table) -> dict[str, str]:
        """Registry columns of an enriched ``table`` with empty rows, each with how many and why.

        For summaries that must say which columns stayed empty: ``{"datasetTitle": "12 of 40 rows
        empty (registry: 2 unreachable)"}``. Columns filled in every row are left out.
        """
        nulls = {
            name: table.column(name).null_count if name in table.column_names else None
            for name in REGISTRY_COLUMNS
        }
        return self.gaps_of(table.num_rows, nulls)

    def gaps_of(self, rows: int, nulls: Mapping[str, int | None]) -> dict[str, str]:
        """:meth:`gaps` from counts: ``nulls`` maps a registry column to its empty rows (None: no column)."""
        why = ", ".join(
            f"{n} {o}" for o, n in sorted(self.missing().items(), key=lambda x: OUTCOMES.index(x[0]))
        )
        out = {}
        for name in REGISTRY_COLUMNS:
            empty = nulls.get(name)
            if empty is None:
                out[name] = "column missing"
            elif empty:
                out[name] = f"{empty} of {rows} rows empty" + (
                    f" (registry: {why})" if why else " (no registry value, or no datasetKey)"
                )
        return out

    def summary(self) -> str:
        """One line for logs and CLI summaries."""

        def part(name: str, counts: dict[str, int]) -> str:
            total = sum(counts.values())
            detail = ", ".join(
                f"{n} {o}" for o, n in sorted(counts.items(), key=lambda x: OUTCOMES.index(x[0]))
            )
            return f"{total} {name}" + (f" ({detail})" if detail else "")

        text = (
            f"registry: {part('datasets', self.datasets)}, {part('organizations', self.organizations)}; "
            f"{self.requests} requests, {self.from_cache} from cache"
        )
        if self.stale:
            text += f", {self.stale} stale entries kept"
        if self.problems:
            text += "; " + "; ".join(self.problems)
        return text


@dataclass
class RegistryData:
    """Registry rows for the requested keys (the ``*_SCHEMA`` tables) and the report."""

    datasets: pa.Table
    organizations: pa.Table
    report: RegistryReport


def _read_cache(storage: Storage | None, key: str, schema: pa.Schema, report: RegistryReport) -> pa.Table:
    if storage is None:
        return schema.empty_table()
    try:
        if not storage.exists(key):
            return schema.empty_table()
        table = storage.read_parquet(key)
        return table.select(schema.names).cast(schema)
    except (StorageError, OSError, ValueError, KeyError, pa.ArrowException) as exc:
        report.problems.append(f"registry cache {key} not read ({exc}); fetching everything")
        log.warning("registry cache %s could not be read: %s", key, exc)
        return schema.empty_table()


def _cached_rows(table: pa.Table) -> dict[str, dict[str, Any]]:
    key_column = table.schema.names[0]
    return {row[key_column]: row for row in table.to_pylist()}


def _row(key_column: str, fetched: Fetched, fields: dict[str, str], now: datetime) -> dict[str, Any]:
    record = fetched.record or {}
    row: dict[str, Any] = {key_column: fetched.key}
    for source, column in fields.items():
        value = record.get(source)
        row[column] = str(value) if value not in (None, "") else None
    row.update(outcome=fetched.outcome, message=fetched.message or None, fetched_at=now)
    return row


def _resolve(
    keys: Sequence[str],
    *,
    kind: str,
    key_column: str,
    fields: dict[str, str],
    schema: pa.Schema,
    client: RegistryClient | None,
    storage: Storage | None,
    storage_key: str,
    max_age: timedelta,
    now: datetime,
    report: RegistryReport,
) -> tuple[pa.Table, dict[str, int]]:
    """Rows for ``keys`` from the cache or the registry; writes the refreshed cache back."""
    cached = _cached_rows(_read_cache(storage, storage_key, schema, report))
    rows: dict[str, dict[str, Any]] = {}
    to_fetch: list[str] = []
    for key in keys:
        hit = cached.get(key)
        fresh = hit is not None and hit["fetched_at"] is not None and now - hit["fetched_at"] < max_age
        if fresh and hit is not None and hit["outcome"] in ANSWERS:
            rows[key] = hit
            report.from_cache += 1
        else:
            to_fetch.append(key)
    fetched: list[Fetched]
    if client is None:
        fetched = [Fetched(k, "offline", message="no registry client (offline run)") for k in to_fetch]
    else:
        before = client.requests_sent
        fetched = (
            client.fetch_datasets(to_fetch) if kind == "dataset" else client.fetch_organizations(to_fetch)
        )
        report.requests += client.requests_sent - before
    changed = False
    for item in fetched:
        old = cached.get(item.key)
        if item.outcome not in ANSWERS and old is not None and old["outcome"] == "ok":
            rows[item.key] = old  # stale beats nothing; counted, not refreshed
            report.stale += 1
            continue
        rows[item.key] = _row(key_column, item, fields, now)
        if item.outcome in ANSWERS:
            cached[item.key] = rows[item.key]
            changed = True
    counts: dict[str, int] = {}
    for key in keys:
        outcome = rows[key]["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
    if changed and storage is not None:
        try:
            storage.write_parquet(storage_key, pa.Table.from_pylist(list(cached.values()), schema=schema))
            report.cache_written = True
        except (StorageError, OSError) as exc:
            report.problems.append(f"registry cache {storage_key} not written ({exc})")
            log.warning("registry cache %s could not be written: %s", storage_key, exc)
    table = pa.Table.from_pylist([rows[k] for k in keys], schema=schema)
    return table, counts


def _distinct_keys(keys: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> list[str]:
    if isinstance(keys, pa.Array | pa.ChunkedArray):
        values = pc.unique(keys.cast(pa.string())).drop_null().to_pylist()
    else:
        values = list(keys)
    out = (str(v).strip() for v in values if v is not None)
    return sorted({v for v in out if v})


def lookup_registry(
    dataset_keys: Iterable[str | None] | pa.Array | pa.ChunkedArray,
    *,
    client: RegistryClient | None,
    storage: Storage | None = None,
    datasets_key: str = DATASETS_KEY,
    organizations_key: str = ORGANIZATIONS_KEY,
    max_age: timedelta = DEFAULT_MAX_AGE,
    now: datetime | None = None,
) -> RegistryData:
    """Registry rows for the distinct ``dataset_keys`` and their publishers (module docstring).

    ``client=None`` is an offline run: cached entries are used, every other key is ``offline``.
    ``storage=None`` turns the cache off. Never raises for a key GBIF cannot answer.
    """
    now = now or datetime.now(UTC)
    report = RegistryReport()
    keys = _distinct_keys(dataset_keys)
    datasets, report.datasets = _resolve(
        keys,
        kind="dataset",
        key_column="datasetKey",
        fields=_DATASET_FIELDS,
        schema=DATASET_SCHEMA,
        client=client,
        storage=storage,
        storage_key=datasets_key,
        max_age=max_age,
        now=now,
        report=report,
    )
    org_keys = _distinct_keys(datasets.column("publishingOrgKey"))
    organizations, report.organizations = _resolve(
        org_keys,
        kind="organization",
        key_column="publishingOrgKey",
        fields=_ORGANIZATION_FIELDS,
        schema=ORGANIZATION_SCHEMA,
        client=client,
        storage=storage,
        storage_key=organizations_key,
        max_age=max_age,
        now=now,
        report=report,
    )
    log.info("%s", report.summary())
    return RegistryData(datasets, organizations, report)


# ------------------------------------------------------------------------------------ enriching
def _as_string(column: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string())


def _lookup(keys: pa.ChunkedArray, table: pa.Table, key_column: str, columns: Sequence[str]) -> dict:
    """``columns`` of ``table`` aligned with ``keys`` (null where a key is null or not in the table)."""
    value_set = _as_string(table.column(key_column)) if table.num_rows else pa.chunked_array([], pa.string())
    index = pc.index_in(keys, value_set=value_set.combine_chunks())
    out = {}
    for name in columns:
        if name in table.column_names and table.num_rows:
            out[name] = _as_string(table.column(name)).combine_chunks().take(index)
        else:
            out[name] = pa.nulls(len(keys), pa.string())
    return out


def _put(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Fill the nulls of column ``name`` from ``values`` (or add the column at the end)."""
    if name in table.column_names:
        i = table.column_names.index(name)
        merged = pc.coalesce(_as_string(table.column(name)), _as_string(values))
        return table.set_column(i, pa.field(name, pa.string()), merged)
    return table.append_column(pa.field(name, pa.string()), _as_string(values))


def enrich_with_registry(table: pa.Table, datasets: pa.Table, organizations: pa.Table) -> pa.Table:
    """``table`` with :data:`REGISTRY_COLUMNS` filled from the registry rows (existing values win).

    ``datasets`` needs ``datasetKey`` and any of ``publishingOrgKey datasetTitle datasetDOI
    datasetLicense``; ``organizations`` needs ``publishingOrgKey`` and any of
    ``publishingOrganizationTitle publishingCountry`` (the tables of :func:`lookup_registry` fit).
    The organization is looked up by the row's final ``publishingOrgKey``, its own or the dataset's.
    A table without ``datasetKey`` gets the columns, null. Row order and count are unchanged.
    """
    n = table.num_rows
    if "datasetKey" in table.column_names:
        keys = _as_string(table.column("datasetKey"))
    else:
        keys = pa.chunked_array([pa.nulls(n, pa.string())])
    for name, values in _lookup(keys, datasets, "datasetKey", _DATASET_VALUES).items():
        table = _put(table, name, values)
    org_keys = _as_string(table.column("publishingOrgKey"))
    for name, values in _lookup(org_keys, organizations, "publishingOrgKey", _ORGANIZATION_VALUES).items():
        table = _put(table, name, values)
    return table


def with_registry_data(
    table: pa.Table,
    *,
    client: RegistryClient | None,
    storage: Storage | None = None,
    datasets_key: str = DATASETS_KEY,
    organizations_key: str = ORGANIZATIONS_KEY,
    max_age: timedelta = DEFAULT_MAX_AGE,
    now: datetime | None = None,
) -> tuple[pa.Table, RegistryReport]:
    """:func:`lookup_registry` for the table's ``datasetKey`` values, then :func:`enrich_with_registry`."""
    keys = table.column("datasetKey") if "datasetKey" in table.column_names else []
    data = lookup_registry(
        keys,
        client=client,
        storage=storage,
        datasets_key=datasets_key,
        organizations_key=organizations_key,
        max_age=max_age,
        now=now,
    )
    return enrich_with_registry(table, data.datasets, data.organizations), data.report


__all__ = [
    "ANSWERS",
    "DATASETS_KEY",
    "DATASET_SCHEMA",
    "DEFAULT_MAX_AGE",
    "DEFAULT_WORKERS",
    "ORGANIZATIONS_KEY",
    "ORGANIZATION_SCHEMA",
    "OUTCOMES",
    "REGISTRY_COLUMNS",
    "Fetched",
    "RegistryClient",
    "RegistryData",
    "RegistryReport",
    "enrich_with_registry",
    "lookup_registry",
    "with_registry_data",
]
