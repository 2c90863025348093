"""The image ledger: one status per image, kept next to the images, crash-safe and append-only.

Every image a download run handles gets an entry::

    ok       key, bytes, width, height, sha256, format, content_type, http_status, attempts,
             content_sha256 (of the downloaded body), phash (perceptual hash, see .phash)
    failed   reason (http_404, timeout, not_an_image, …), http_status, attempts, error
    skipped  reason (already_stored: another ledger of the same store holds it; duplicate), key…
    opted_out reason (robots_txt, x_robots_tag, tdm_reservation): the host opts out of our use; the
             body was never downloaded, and later runs do not ask again (``recheck_opted_out``)

plus ``content_key``, ``url``, ``started_at``, ``finished_at`` and ``run_id``; ``source`` and
``fetched_from`` say when the bytes came from GBIF's image cache rather than ``url`` (a dead link,
see .image_cache; ``url`` stays the original, which the credits name). A ``stored`` column
says whether the image is in the store (ok, or skipped as already stored), which is what
completeness counts.

Layout under ``ledgers/<name>/`` in the store's storage::

    seg-<seq:012d>-<run>.parquet    append-only segments, written atomically every N results or
                                    seconds by :class:`LedgerWriter`
    base-<seq:012d>-<run>.parquet   a compaction: the latest entry per image of every segment up to
                                    and including ``seq``

Why this is safe under ``kill -9``: a segment is written with the storage's atomic write, so it is
either there, complete, or absent; the writer only adds an entry after the image's object write
returned, so every ``ok`` points at a complete object. Killing a run loses at most the entries not
yet flushed, whose images are simply fetched again (overwriting their objects atomically). Compaction
writes the new base before deleting anything and readers ignore segments at or below the newest
base's ``seq``, so a crash at any point of a compaction leaves a readable ledger with the same
content. One writer per ledger name at a time (the Dagster partition or the CLI run).

:func:`load_ledger` returns the latest entry per ``content_key`` (a later entry wins: a failure that
later succeeded shows as ok).

What :func:`verify_store` (``gbifdl images verify``) can find, and what is legitimate:

* a stored entry whose object is missing: never legitimate (the entry is written only after its
  object write returned, and objects are never deleted by this code); the storage lost it or
  someone deleted it. The next download run of that ledger fetches it again (``verify_stored``).
* an object whose sha256 differs from its entry (``--deep``): never legitimate (writes are atomic).
* an object no ledger describes (an orphan): legitimate after an interrupted run (``kill -9``, a
  crash, a power cut) whose last entries were not flushed yet; the next run of that ledger fetches
  those images again, overwrites the objects and records them. Orphans that survive a complete
  re-run belong to manifest rows that were dropped since; they waste space but mislead no reader.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.media.store import IMAGES_PREFIX, LEDGERS_PREFIX, ImageStore
from gbifdl_assets.storage import Storage, validate_key

__all__ = [
    "LEDGER_SCHEMA",
    "LedgerFiles",
    "LedgerWriter",
    "UnknownLedgerError",
    "VerifyReport",
    "attribution_table",
    "compact_ledger",
    "completeness_table",
    "ledger_files",
    "list_ledgers",
    "load_ledger",
    "load_ledger_history",
    "summarize_ledger",
    "verify_store",
]

log = logging.getLogger(__name__)

_TS = pa.timestamp("ms", tz="UTC")
LEDGER_SCHEMA = pa.schema(
    [
        pa.field("content_key", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # ok | failed | skipped | opted_out
        pa.field("reason", pa.string()),  # null for ok
        pa.field("stored", pa.bool_(), nullable=False),  # the image is in the store under `key`
        pa.field("key", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("sha256", pa.string()),  # of the stored bytes
        pa.field("format", pa.string()),  # JPEG | PNG | WEBP | …
        pa.field("content_type", pa.string()),  # of the stored object
        pa.field("http_status", pa.int32()),
        pa.field("attempts", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("started_at", _TS),
        pa.field("finished_at", _TS),
        pa.field("run_id", pa.string()),
        # where the bytes came from when not from ``url`` itself: "gbif_image_cache" (a dead link
        # recovered from GBIF's image cache, or tried there), with the URL fetched
        pa.field("source", pa.string()),
        pa.field("fetched_from", pa.string()),
        # sha256 of the downloaded body (before any re-encoding): the same bytes under a second URL
        # are not stored again; that entry's ``key`` is the first image's and ``duplicate_of`` its
        # content_key (see .same_bytes)
        pa.field("content_sha256", pa.string()),
        pa.field("duplicate_of", pa.string()),
        # 256-bit perceptual hash (a PDQ-like DCT hash, 64 hex characters) of the stored pixels, upright;
        # null when the body was not an image or has no features, a flat colour (see .phash; clusters in .duplicates)
        pa.field("phash", pa.string()),
    ]
)
LEDGER_COLUMNS = tuple(LEDGER_SCHEMA.names)
_FILE_RE = re.compile(r"^(seg|base)-(\d{12})-([0-9a-z]+)\.parquet$")


def _prefix(name: str) -> str:
    validate_key(name, what="ledger name")
    return f"{LEDGERS_PREFIX}/{name}/"


def _storage_of(where: Storage | ImageStore) -> Storage:
    return where.storage if isinstance(where, ImageStore) else where


@dataclass(frozen=True)
class LedgerFiles:
    """The files that make up a ledger right now: the newest base and the segments after it."""

    base: str | None
    base_seq: int
    segments: tuple[str, ...]  # in order
    stale: tuple[str, ...]  # older bases and segments a compaction already covers
    next_seq: int


def ledger_files(storage: Storage | ImageStore, name: str) -> LedgerFiles:
    storage = _storage_of(storage)
    prefix = _prefix(name)
    bases: list[tuple[int, str]] = []
    segments: list[tuple[int, str]] = []
    for key in storage.list(prefix):
        rest = key[len(prefix) :]
        m = _FILE_RE.match(rest)
        if m is None:  # a nested ledger (name/child) or a foreign file: not ours
            continue
        (bases if m.group(1) == "base" else segments).append((int(m.group(2)), key))
    bases.sort()
    segments.sort()
    base_seq, base = bases[-1] if bases else (-1, None)
    live = tuple(k for s, k in segments if s > base_seq)
    stale = tuple(k for _, k in bases[:-1]) + tuple(k for s, k in segments if s <= base_seq)
    top = max([base_seq] + [s for s, _ in segments])
    return LedgerFiles(base, base_seq, live, stale, top + 1)


def list_ledgers(storage: Storage | ImageStore) -> list[str]:
    """Names of the ledgers in a store (``ledgers/<name>/`` folders holding ledger files)."""
    storage = _storage_of(storage)
    names = set()
    root = f"{LEDGERS_PREFIX}/"
    for key in storage.list(root):
        folder, _, file = key[len(root) :].rpartition("/")
        if folder and _FILE_RE.match(file):
            names.add(folder)
    return sorted(names)


def _conform(table: pa.Table, columns: list[str] | None) -> pa.Table:
    schema = LEDGER_SCHEMA if columns is None else pa.schema([LEDGER_SCHEMA.field(c) for c in columns])
    missing = [f for f in schema if f.name not in table.column_names]
    for f in missing:  # files of an older schema version: add what they lack as nulls
        table = table.append_column(f.name, pa.nulls(len(table), f.type))
    return table.select(schema.names).cast(schema)


def load_ledger_history(
    storage: Storage | ImageStore, name: str, *, columns: list[str] | None = None
) -> pa.Table:
    """Every entry still on file (the compacted base first, then segments in write order)."""
    storage = _storage_of(storage)
    files = ledger_files(storage, name)
    if columns is not None and "content_key" not in columns:
        columns = ["content_key", *columns]
    keys = ([files.base] if files.base else []) + list(files.segments)
    tables = [_conform(storage.read_parquet(k, columns=columns), columns) for k in keys]
    if not tables:
        return _conform(LEDGER_SCHEMA.empty_table(), columns)
    return pa.concat_tables(tables)


def _latest(table: pa.Table) -> pa.Table:
    """The last row of each content_key, in order of first appearance of the winning rows."""
    if table.num_rows == 0:
        return table
    if pc.count_distinct(table.column("content_key")).as_py() == table.num_rows:
        return table  # one entry per image already (a first run): no copy needed
    idx = pa.array(range(table.num_rows), pa.int64())
    grouped = (
        pa.table({"content_key": table.column("content_key"), "__i": idx})
        .group_by("content_key", use_threads=False)
        .aggregate([("__i", "max")])
    )
    winners = pc.sort_indices(grouped.column("__i_max"))
    return table.take(pc.take(grouped.column("__i_max"), winners))


def load_ledger(storage: Storage | ImageStore, name: str, *, columns: list[str] | None = None) -> pa.Table:
    """The latest entry per ``content_key`` (an empty table with the schema when there is none)."""
    return _latest(load_ledger_history(storage, name, columns=columns))


def compact_ledger(storage: Storage | ImageStore, name: str, *, store: ImageStore | None = None) -> int:
    """Fold the segments into one base file; return how many files it replaced (0: nothing to do)."""
    storage = _storage_of(storage)
    files = ledger_files(storage, name)
    if not files.segments:
        _delete_stale(storage, files.stale)
        return 0
    table = load_ledger(storage, name)
    last_seq = int(_FILE_RE.match(files.segments[-1].rsplit("/", 1)[1]).group(2))  # type: ignore[union-attr]
    key = f"{_prefix(name)}base-{last_seq:012d}-{uuid.uuid4().hex[:8]}.parquet"
    retrying = store or ImageStore(storage)  # the image store's retries of transient storage errors
    retrying.with_retries(lambda: storage.write_parquet(key, table), what=f"compacting ledger {name!r}")
    # Only now is it safe to delete: readers already prefer the new base.
    replaced = [k for k in (files.base, *files.segments) if k]
    _delete_stale(storage, (*files.stale, *replaced))
    return len(replaced)


def _delete_stale(storage: Storage, keys: Iterable[str]) -> None:
    for key in keys:
        try:
            storage.delete(key)
        except Exception as exc:  # harmless leftovers: readers skip them; next compaction retries
            log.warning("could not delete compacted ledger file %s: %s", key, exc)


class LedgerWriter:
    """Buffers entries and writes them as atomic segments; flushing is the caller's call.

    Not thread-safe by itself: the downloader adds from its event loop and flushes from one worker
    thread, handing over the buffer with :meth:`take` so that adding never waits for a write. A
    failed write puts the entries back (:meth:`restore`), so nothing is dropped.
    """

    def __init__(
        self,
        store: ImageStore,
        name: str,
        *,
        run_id: str | None = None,
        flush_rows: int = 2000,
        flush_seconds: float = 5.0,
        next_seq: int | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.prefix = _prefix(name)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._seq = next_seq if next_seq is not None else ledger_files(store.storage, name).next_seq
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self.segments_written = 0
        self.entries_written = 0

    def add(self, entry: Mapping[str, Any]) -> None:
        row = dict(entry)
        row.setdefault("run_id", self.run_id)
        self._buffer.append(row)

    def __len__(self) -> int:
        return len(self._buffer)

    def due(self) -> bool:
        return len(self._buffer) >= self.flush_rows or (
            bool(self._buffer) and time.monotonic() - self._last_flush >= self.flush_seconds
        )

    def take(self) -> list[dict[str, Any]]:
        rows, self._buffer = self._buffer, []
        return rows

    def restore(self, rows: list[dict[str, Any]]) -> None:
        self._buffer[:0] = rows

    def write(self, rows: list[dict[str, Any]]) -> str | None:
        """Write ``rows`` as the next segment (blocking, retried); returns its key."""
        if not rows:
            self._last_flush = time.monotonic()
            return None
        table = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
        key = f"{self.prefix}seg-{self._seq:012d}-{self.run_id}.parquet"
        storage = self.store.storage
        # The images these entries claim must be durable before the claim is.
        self.store.with_retries(self.store.sync, what="syncing the image store")
        self.store.with_retries(
            lambda: storage.write_parquet(key, table, compression="zstd"),
            what=f"writing ledger segment {key}",
        )
        self._seq += 1
        self.segments_written += 1
        self.entries_written += len(rows)
        self._last_flush = time.monotonic()
        return key

    def flush(self) -> str | None:
        """Write everything buffered now (from a single thread)."""
        rows = self.take()
        try:
            return self.write(rows)
        except BaseException:
            self.restore(rows)
            raise


# --------------------------------------------------------------------------------- reporting
def summarize_ledger(table: pa.Table) -> dict[str, Any]:
    """Counts by status and by reason (``failed_by_reason``/``skipped_by_reason``/
    ``opted_out_by_reason``) of a ledger table."""
    status = table.column("status").to_pylist()
    reason = table.column("reason").to_pylist()
    counts = Counter(status)
    failed = Counter(r for s, r in zip(status, reason, strict=True) if s == "failed")
    skipped = Counter(r for s, r in zip(status, reason, strict=True) if s == "skipped")
    opted = Counter(r for s, r in zip(status, reason, strict=True) if s == "opted_out")
    stored = pc.sum(table.column("stored")).as_py() or 0
    return {
        "images": table.num_rows,
        "ok": counts.get("ok", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "stored": stored,
        "bytes": pc.sum(pc.if_else(table.column("stored"), table.column("bytes"), 0)).as_py() or 0,
        "failed_by_reason": dict(failed.most_common()),
        "skipped_by_reason": dict(skipped.most_common()),
        "opted_out": counts.get("opted_out", 0),
        "opted_out_by_reason": dict(opted.most_common()),
    }


def completeness_table(
    manifest: pa.Table, ledger: pa.Table, *, by: str | list[str] = "label", threshold: float | None = None
) -> pa.Table:
    """Per class (``by`` columns of the manifest): expected images, stored images and their ratio.

    Images of the manifest without a ledger entry count as missing. With ``threshold``, a
    ``below_threshold`` column flags the classes whose ratio is under it.
    """
    by = [by] if isinstance(by, str) else list(by)
    stored = ledger.select(["content_key", "stored"])
    joined = manifest.select(["content_key", *by]).join(stored, "content_key", join_type="left outer")
    flag = pc.fill_null(joined.column("stored"), False)
    joined = joined.set_column(joined.schema.get_field_index("stored"), "stored", flag.cast(pa.int64()))
    agg = joined.group_by(by, use_threads=False).aggregate([("content_key", "count"), ("stored", "sum")])
    out = pa.table(
        {
            **{c: agg.column(c) for c in by},
            "expected": agg.column("content_key_count"),
            "stored": agg.column("stored_sum"),
        }
    )
    ratio = pc.divide(out.column("stored").cast(pa.float64()), out.column("expected").cast(pa.float64()))
    out = out.append_column("completeness", ratio)
    if threshold is not None:
        out = out.append_column("below_threshold", pc.less(ratio, threshold))
    return out.sort_by([(c, "ascending") for c in by])


_ATTRIBUTION_COLUMNS = (
    "content_key",
    "gbifID",
    "label",
    "label_name",
    "license",
    "license_raw",
    "rightsHolder",
    "creator",
    "publisher",
    "datasetKey",
    "references",
    "url",
)


def attribution_table(manifest: pa.Table, ledger: pa.Table) -> pa.Table:
    """One row per stored image: where it is, and who holds its rights under which licence, from where.

    The licence and attribution log of a training set: the manifest's licence fields joined with the
    ledger's ``key`` and ``sha256`` for every image that is in the store.
    """
    cols = [c for c in _ATTRIBUTION_COLUMNS if c in manifest.column_names]
    # ``source``: gbif_image_cache when the stored copy came from GBIF's cache (the credit still names
    # the original creator, licence and url, which come from the manifest)
    facts = ["content_key", "key", "sha256", "width", "height"] + (
        ["source"] if "source" in ledger.column_names else []
    )
    view = ledger.filter(pc.field("stored")).select(facts)
    joined = manifest.select(cols).join(view, "content_key", join_type="inner")
    return joined.sort_by([("content_key", "ascending")])


# ------------------------------------------------------------------------------ verification
class UnknownLedgerError(GbifdlError, ValueError):
    """``verify_store(ledger=...)`` named a ledger the store does not have."""


@dataclass
class VerifyReport:
    """What :func:`verify_store` found (see the module docstring for what each finding means)."""

    store: str
    ledgers: list[str]
    deep: bool
    #: stored entries checked (of the checked ledgers) and objects under images/ listed
    entries: int = 0
    objects: int = 0
    #: {"ledger", "content_key", "key"} of stored entries whose object is gone
    missing: list[dict[str, Any]] = field(default_factory=list)
    #: {"ledger", "content_key", "key", "expected_sha256", "actual_sha256", "expected_bytes",
    #: "actual_bytes"} of objects whose bytes differ from their entry (deep only)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    #: objects under images/ that no ledger's stored entry names
    orphans: list[str] = field(default_factory=list)
    #: {"ledger", "error"} of ledgers that could not be read
    unreadable: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def consistent(self) -> bool:
        """True when every stored entry of the checked ledgers has its object (with its bytes, if
        deep). Orphans do not count: they are legitimate after an interrupted run."""
        return not (self.missing or self.mismatched or self.unreadable)


def verify_store(
    store: ImageStore | Storage,
    *,
    ledger: str | None = None,
    deep: bool = False,
    threads: int = 16,
    progress: Callable[[str], None] | None = None,
    progress_interval: float = 5.0,
) -> VerifyReport:
    """Check the ledgers of ``store`` (or only ``ledger``) against its objects.

    One listing of ``images/`` answers which stored entries have no object and which objects no
    ledger describes (orphans are always judged against every ledger of the store, so an image
    another training set owns is never called an orphan). ``deep`` also reads every object the
    checked ledgers name (``threads`` at a time) and compares its sha256 and size with the entry.
    Raises :class:`UnknownLedgerError` for a ``ledger`` the store does not have.
    """
    started = time.monotonic()
    if not isinstance(store, ImageStore):
        store = ImageStore(store)
    storage = store.storage
    names = list_ledgers(storage)
    if ledger is not None and ledger not in names:
        known = ", ".join(names[:20]) + (" …" if len(names) > 20 else "") if names else "none"
        raise UnknownLedgerError(
            f"no ledger {ledger!r} in {storage.uri} (ledgers there: {known}); give one of those names "
            "or leave --ledger out to check them all"
        )
    checked = [ledger] if ledger is not None else names
    report = VerifyReport(store=storage.uri, ledgers=checked, deep=deep)
    described: set[str] = set()
    entries: dict[str, pa.Table] = {}
    for name in names:
        try:
            table = load_ledger(storage, name, columns=["stored", "key", "sha256", "bytes"])
        except Exception as exc:  # report it and go on: one broken ledger must not hide the rest
            if name in checked:
                report.unreadable.append({"ledger": name, "error": f"{type(exc).__name__}: {exc}"})
            log.warning("could not read ledger %r of %s: %s", name, storage.uri, exc)
            continue
        table = table.filter(pc.fill_null(table.column("stored"), False))
        described.update(k for k in table.column("key").to_pylist() if k is not None)
        if name in checked:
            entries[name] = table
            report.entries += table.num_rows

    present: set[str] = set()
    orphans: list[str] = []

    def scan() -> None:
        present.clear()
        orphans.clear()
        report.objects = 0
        for key in storage.list(f"{IMAGES_PREFIX}/"):
            report.objects += 1
            if key in described:
                present.add(key)
            else:
                orphans.append(key)

    store.with_retries(scan, what=f"listing {IMAGES_PREFIX}/")
    report.orphans = orphans

    to_read: dict[str, list[dict[str, Any]]] = {}
    present_keys = pa.array(sorted(present), pa.string())
    for name, table in entries.items():
        # Vectorized: only the problems (and, deep, the rows to read) become Python objects.
        found = pc.fill_null(pc.is_in(table.column("key"), value_set=present_keys), False)
        for row in table.filter(pc.invert(found)).select(["content_key", "key"]).to_pylist():
            report.missing.append({"ledger": name, **row})
        if deep:
            for row in table.filter(found).select(["content_key", "key", "sha256", "bytes"]).to_pylist():
                to_read.setdefault(row["key"], []).append({"ledger": name, **row})
    if deep and to_read:
        report.mismatched, vanished = _deep_check(store, to_read, threads, progress, progress_interval)
        report.missing.extend(vanished)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _deep_check(
    store: ImageStore,
    to_read: dict[str, list[dict[str, Any]]],
    threads: int,
    progress: Callable[[str], None] | None,
    interval: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read each object once and compare it with every entry that names it; (mismatched, vanished)."""

    def digest(key: str) -> tuple[str, str | None, int | None]:
        try:
            data = store.read(key)
        except FileNotFoundError:  # deleted between the listing and the read
            return key, None, None
        return key, hashlib.sha256(data).hexdigest(), len(data)

    mismatched: list[dict[str, Any]] = []
    vanished: list[dict[str, Any]] = []
    last = time.monotonic()
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="gbifdl-verify") as pool:
        for done, (key, actual, size) in enumerate(pool.map(digest, to_read), 1):
            for row in to_read[key]:
                if actual is None:
                    vanished.append({"ledger": row["ledger"], "content_key": row["content_key"], "key": key})
                elif actual != row["sha256"] or (row["bytes"] is not None and size != row["bytes"]):
                    mismatched.append(
                        {
                            "ledger": row["ledger"],
                            "content_key": row["content_key"],
                            "key": key,
                            "expected_sha256": row["sha256"],
                            "actual_sha256": actual,
                            "expected_bytes": row["bytes"],
                            "actual_bytes": size,
                        }
                    )
            if progress is not None and time.monotonic() - last >= interval:
                last = time.monotonic()
                progress(f"verify: {done:,} of {len(to_read):,} objects read, {len(mismatched):,} mismatched")
    return mismatched, vanished
