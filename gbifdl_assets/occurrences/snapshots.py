"""Occurrence snapshots in a :class:`~gbifdl_assets.storage.Storage`: write, find, read.

A snapshot is one training set's occurrences with images at one time, from the search API or a GBIF
download, as one row per image (:data:`~gbifdl_assets.gbif.media_schema.SNAPSHOT_SCHEMA`). Its keys
and the rule that finds the newest one are those of :mod:`gbifdl_assets.storage.layout`
(``snapshots/<training_set>/<snapshot_id>/``, ``media.parquet`` and the commit file ``snapshot.json``).

Snapshots are immutable. ``snapshot_id`` is ``<UTC time, ms>Z-<first 12 hex of the Parquet
file's sha256>``, so ids sort by creation time and name their content.

**Atomic appearance.** The Parquet file is written completely to a temporary file first (its hash
is the id), then stored under the id, then ``snapshot.json`` is written, *last*: a snapshot
without ``snapshot.json`` does not exist for any reader here (a crash can leave an orphan
``media.parquet``, never a half snapshot). ``latest`` is written after the commit; since snapshot ids
carry their creation time, the newest snapshot is found by listing, so a crash between the two cannot
hide a commit.

Both sources produce identical rows (:mod:`.search_records` converts search-API records with the
archive path's own building blocks), and both get GBIF's registry data before the commit
(:mod:`.snapshot_registry`: publisher, dataset title, DOI and licence per row, counted by outcome in
``counts["registry"]`` and described in ``snapshot.json``'s ``registry``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.gbif.dwca import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MEDIA_MEMORY_BUDGET,
    MAX_BLOCK_SIZE,
    DwcaError,
    IngestReport,
    SnapshotParquetWriter,
    convert_to_snapshot,
)
from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA
from gbifdl_assets.gbif.registry import DEFAULT_MAX_AGE, RegistryClient
from gbifdl_assets.occurrences.search_records import records_to_snapshot_table
from gbifdl_assets.occurrences.snapshot_registry import RegistrySummary, add_registry_data
from gbifdl_assets.storage import Storage, layout, staging_name

log = logging.getLogger("gbifdl_assets.occurrences.snapshots")

__all__ = [
    "DwcaError",
    "SNAPSHOT_FORMAT_VERSION",
    "SnapshotInfo",
    "SnapshotNotFound",
    "get_snapshot",
    "latest_snapshot",
    "latest_snapshots",
    "list_snapshots",
    "read_snapshot",
    "write_snapshot_from_dwca",
    "write_snapshot_from_search",
]

#: version of the snapshot.json layout (bump when readers must change)
SNAPSHOT_FORMAT_VERSION = 1
SEARCH_BATCH_RECORDS = 50_000


class SnapshotNotFound(GbifdlError, FileNotFoundError):
    """No committed snapshot matches (the message names the storage and the training set)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """A committed snapshot: where it is and what its snapshot.json says."""

    training_set: str
    snapshot_id: str
    metadata: dict[str, Any]
    storage_uri: str = ""

    @property
    def prefix(self) -> str:
        return layout.snapshots(self.training_set).folder(self.snapshot_id)

    @property
    def media_key(self) -> str:
        return layout.snapshots(self.training_set).key(self.snapshot_id, layout.SNAPSHOT_MEDIA_FILE)

    @property
    def meta_key(self) -> str:
        return layout.snapshots(self.training_set).commit_key(self.snapshot_id)

    @property
    def counts(self) -> dict[str, Any]:
        return dict(self.metadata.get("counts", {}))

    @property
    def source(self) -> dict[str, Any]:
        return dict(self.metadata.get("source", {}))

    @property
    def created(self) -> str:
        return str(self.metadata.get("created", ""))

    @property
    def bytes(self) -> int:
        return int(self.metadata.get("bytes", 0))

    @property
    def registry(self) -> dict[str, Any]:
        """What GBIF's registry gave this snapshot (outcomes, requests, empty columns and why)."""
        return dict(self.metadata.get("registry", {}))


# ---------------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------------
def list_snapshots(storage: Storage, training_set: str) -> list[SnapshotInfo]:
    """Committed snapshots of a training set, oldest first."""
    folder = layout.snapshots(training_set)
    return [get_snapshot(storage, training_set, sid) for sid in layout.complete_outputs(storage, folder)]


def get_snapshot(storage: Storage, training_set: str, snapshot_id: str) -> SnapshotInfo:
    """One committed snapshot; :class:`SnapshotNotFound` when it has no snapshot.json."""
    key = layout.snapshots(training_set).commit_key(snapshot_id)
    try:
        metadata = json.loads(storage.read_bytes(key))
    except FileNotFoundError:
        raise SnapshotNotFound(
            f"no committed snapshot {snapshot_id!r} of training set {training_set!r} in {storage.uri} "
            f"(no {key}); list them with list_snapshots()"
        ) from None
    return SnapshotInfo(training_set, snapshot_id, metadata, storage.uri)


def latest_snapshot(storage: Storage, training_set: str) -> SnapshotInfo | None:
    """The newest committed snapshot (the storage layout's commit rule), or None."""
    snapshot_id = layout.newest_complete(storage, layout.snapshots(training_set))
    return get_snapshot(storage, training_set, snapshot_id) if snapshot_id else None


def latest_snapshots(storage: Storage, training_sets: Iterable[str] | None = None) -> list[SnapshotInfo]:
    """The newest committed snapshot of each training set (every one in the storage when None).

    Training sets without a committed snapshot are left out; a name that cannot be a training set
    raises the ValueError of :func:`~gbifdl_assets.storage.layout.check_training_set`.
    """
    names = layout.snapshot_training_sets(storage) if training_sets is None else list(training_sets)
    found = (latest_snapshot(storage, name) for name in names)
    return [info for info in found if info is not None]


def read_snapshot(
    storage: Storage,
    training_set: str,
    snapshot_id: str | None = None,
    *,
    columns: list[str] | None = None,
) -> pa.Table:
    """The rows of a snapshot (the latest when ``snapshot_id`` is None)."""
    if snapshot_id is None:
        info = latest_snapshot(storage, training_set)
        if info is None:
            raise SnapshotNotFound(
                f"training set {training_set!r} has no committed snapshot in {storage.uri}; "
                "materialize occurrence_snapshot first (or run 'gbifdl dwca ingest')"
            )
    else:
        info = get_snapshot(storage, training_set, snapshot_id)
    return storage.read_parquet(info.media_key, columns=columns)


# ---------------------------------------------------------------------------------------------------
# commit
# ---------------------------------------------------------------------------------------------------
class _Staging:
    """Where the Parquet file is written before it has an id: next to its final place for local
    storage (a rename then publishes it), a temporary file for S3 (uploaded on commit)."""

    def __init__(self, storage: Storage, training_set: str, tmp_dir: str | Path | None):
        self.storage = storage
        self.training_set = training_set
        base = storage.local_path(layout.snapshots(training_set).prefix)
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
            # staging_name records this host and pid, so a sweep removes what a killed ingest left
            # at once instead of after the hour-of-silence rule (see LocalStorage.cleanup).
            self.path = base / staging_name(".parquet")
            self._tmpdir = None
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="gbifdl-snapshot-", dir=tmp_dir)
            self.path = Path(self._tmpdir.name) / layout.SNAPSHOT_MEDIA_FILE

    def cleanup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _commit(
    staging: _Staging,
    *,
    source: dict[str, Any],
    counts: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> SnapshotInfo:
    storage, training_set = staging.storage, staging.training_set
    sha = _sha256(staging.path)
    size = staging.path.stat().st_size
    created = dt.datetime.now(dt.UTC)
    snapshot_id = layout.new_snapshot_id(sha, created)
    folder = layout.snapshots(training_set)
    media_key = folder.key(snapshot_id, layout.SNAPSHOT_MEDIA_FILE)
    metadata = {
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "training_set": training_set,
        "snapshot_id": snapshot_id,
        "created": created.isoformat().replace("+00:00", "Z"),
        "source": source,
        "counts": counts,
        "bytes": size,
        "files": {
            "media": {
                "key": layout.SNAPSHOT_MEDIA_FILE,
                "bytes": size,
                "sha256": sha,
                "rows": counts.get("media", 0),
            }
        },
        "columns": SNAPSHOT_SCHEMA.names,
        **(extra or {}),
    }
    target = storage.local_path(media_key)
    try:
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(staging.path, "rb+") as fh:  # durable before it becomes visible
                os.fsync(fh.fileno())
            os.replace(staging.path, target)
        else:
            with open(staging.path, "rb") as src, storage.open_write(media_key) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        # the commit marker, last: until it exists the snapshot does not
        storage.write_bytes(
            folder.commit_key(snapshot_id), json.dumps(metadata, indent=2, default=str).encode()
        )
    except BaseException:
        with contextlib.suppress(Exception):
            storage.delete(media_key)
        raise
    try:
        layout.publish(storage, folder, snapshot_id)
    except Exception as exc:  # the snapshot is committed; the pointer is a convenience
        log.warning(
            "snapshot %s committed, but the latest pointer could not be written: %s", snapshot_id, exc
        )
    return SnapshotInfo(training_set, snapshot_id, metadata, storage.uri)


def _with_registry(staging: _Staging, client: RegistryClient | None, max_age: timedelta) -> RegistrySummary:
    """Registry data into the staged file (every source, before the commit; never fails for the registry)."""
    return add_registry_data(staging.path, client=client, storage=staging.storage, max_age=max_age)


def _counts(report: IngestReport) -> dict[str, Any]:
    return {
        "occurrences": report.occurrences,
        "occurrences_with_media": report.occurrences_with_media,
        "occurrences_without_media": report.occurrences_without_media,
        "media_rows": report.media_rows,
        "media": report.media,
        "species": report.species,
        "skipped": report.skipped_counts(),
    }


# ---------------------------------------------------------------------------------------------------
# from a GBIF download archive
# ---------------------------------------------------------------------------------------------------
#: Real GBIF archives compress text about 5-30x; a member that claims far more and is big is a zip bomb
#: (or damage), refused from the zip directory before a byte is inflated.
MAX_COMPRESSION_RATIO = 200
BOMB_CHECK_MIN_BYTES = 16 << 20


def check_not_a_zip_bomb(archive_path: Path) -> None:
    """Raise DwcaError naming the member when its declared inflation is implausible for a DWCA."""
    try:
        with zipfile.ZipFile(archive_path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError):
        return  # the reader gives the precise message for damaged or missing archives
    for info in members:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > BOMB_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise DwcaError(
                f"archive {archive_path.name}: member {info.filename!r} inflates {ratio:,.0f}x "
                f"({info.compress_size:,} -> {info.file_size:,} bytes), more than any GBIF archive "
                f"(limit {MAX_COMPRESSION_RATIO}x); this looks like a zip bomb: download the archive "
                "again from GBIF"
            )


def write_snapshot_from_dwca(
    archive_path: str | Path,
    storage: Storage,
    training_set: str,
    source_info: Mapping[str, Any] | None = None,
    *,
    media_memory_budget: int = DEFAULT_MEDIA_MEMORY_BUDGET,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_block_size: int = MAX_BLOCK_SIZE,
    tmp_dir: str | Path | None = None,
    registry: RegistryClient | None = None,
    registry_max_age: timedelta = DEFAULT_MAX_AGE,
) -> SnapshotInfo:
    """Ingest a DWCA download into a new snapshot and return it.

    ``source_info`` describes the download (``key``, ``doi``, ``citation``, ``license``,
    ``totalRecords``, typically from the download status); the archive's own metadata fills what
    is missing. ``registry`` is the client for GBIF's registry (publisher, dataset title, DOI and
    licence, which a real DWCA lacks); None uses only what the storage's registry cache holds.
    Raises :class:`~gbifdl_assets.gbif.dwca.DwcaError` (nothing is written) for archives without
    image URLs (SIMPLE_CSV, no multimedia extension) or that are damaged.
    """
    layout.check_training_set(training_set)
    archive_path = Path(archive_path)
    check_not_a_zip_bomb(archive_path)
    with _Staging(storage, training_set, tmp_dir) as staging:
        report = convert_to_snapshot(
            archive_path,
            staging.path,
            media_memory_budget=media_memory_budget,
            block_size=block_size,
            max_block_size=max_block_size,
            tmp_dir=tmp_dir,
        )
        source: dict[str, Any] = {"type": "download", **dict(source_info or {})}
        meta = report.metadata
        for name, value in (
            ("key", meta.download_key),
            ("doi", meta.doi),
            ("citation", meta.citation),
            ("format", "DWCA"),
        ):
            if source.get(name) in (None, ""):  # the caller's value wins; the archive fills gaps
                source[name] = value
        source["archive"] = archive_path.name
        source["archive_bytes"] = archive_path.stat().st_size
        registry_data = _with_registry(staging, registry, registry_max_age)
        extra = {
            "archive": {
                "bad_rows": report.bad_row_numbers,
                "replaced_utf8": report.replaced_utf8,
                "ignored_members": [f"{n} ({why})" for n, why in report.ignored_members],
                "buckets": report.buckets,
                "seconds": round(report.seconds, 3),
            },
            "registry": registry_data.metadata(),
        }
        counts = {**_counts(report), "registry": registry_data.counts()}
        return _commit(staging, source=_jsonable(source), counts=counts, extra=extra)


# ---------------------------------------------------------------------------------------------------
# from the search API
# ---------------------------------------------------------------------------------------------------
def _batches(records: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    batch: list[Mapping[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_snapshot_from_search(
    records: Iterable[Mapping[str, Any]],
    storage: Storage,
    training_set: str,
    source_info: Mapping[str, Any] | None = None,
    *,
    batch_records: int = SEARCH_BATCH_RECORDS,
    tmp_dir: str | Path | None = None,
    registry: RegistryClient | None = None,
    registry_max_age: timedelta = DEFAULT_MAX_AGE,
) -> SnapshotInfo:
    """Write search-API records (an iterator, e.g. ``GbifClient.iter_occurrences``) as a snapshot.

    Records are converted ``batch_records`` at a time into a ParquetWriter, so memory holds one
    batch. ``source_info`` should carry the query (``params``); ``type``/``date`` are filled in.
    ``registry``: as for :func:`write_snapshot_from_dwca` (search records carry the publisher's key
    but not the dataset's title, DOI or licence, nor the publisher's name).
    An error while iterating (GBIF unreachable, ...) leaves no snapshot.
    """
    layout.check_training_set(training_set)
    total = IngestReport(archive="search", kind="search")
    media_rows = 0
    seen: set[int] = set()
    with _Staging(storage, training_set, tmp_dir) as staging:
        writer = SnapshotParquetWriter(staging.path)
        try:
            for batch in _batches(records, batch_records):
                table, report = records_to_snapshot_table(batch, first_media_row=media_rows, seen=seen)
                media_rows += report.media_rows
                _add(total, report)
                writer.write(table)
        except BaseException:
            writer.close(raise_errors=False)
            raise
        writer.close()
        total.species = writer.species
        source: dict[str, Any] = {"type": "search", **dict(source_info or {})}
        source.setdefault("date", dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))
        registry_data = _with_registry(staging, registry, registry_max_age)
        counts = {**_counts(total), "registry": registry_data.counts()}
        return _commit(
            staging, source=_jsonable(source), counts=counts, extra={"registry": registry_data.metadata()}
        )


def _add(total: IngestReport, part: IngestReport) -> None:
    total.occurrences += part.occurrences
    total.occurrences_with_media += part.occurrences_with_media
    total.media_rows += part.media_rows
    total.media += part.media
    total.skipped.update(part.skipped)


def _jsonable(value: Any) -> Any:
    """Source descriptions come from callers (download status JSON, query params): keep them
    JSON-serialisable and drop empty values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)
