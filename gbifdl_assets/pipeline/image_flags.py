"""image_flags: the annotation store's flags on single images, compiled into one versioned table; and
what the manifest stage takes out because of them.

Flags reach the manifest the way rules reach annotated_occurrences: compiled from the store into the
data storage (``annotations/image_flags/<version>/flags.parquet``, the version a content hash, so an
unchanged store compiles to the same version), read there by the stage. The manifest stage applies
the spec's ``annotations.image_flags`` policy and finds the flagged photo's other URLs through the
image store's ledgers (:mod:`gbifdl_assets.annotations.flag_matching`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from gbifdl_assets.annotations.flag_matching import effective_flags, flagged_images
from gbifdl_assets.annotations.image_flags import FLAGS_TABLE_SCHEMA
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.media.ledger import LEDGER_COLUMNS, list_ledgers, load_ledger
from gbifdl_assets.sampling.manifest import ImageExclusions
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout
from gbifdl_assets.vocabulary import IMAGE_FLAGS

_log = logging.getLogger(__name__)

__all__ = [
    "CompiledFlags",
    "FlagExclusions",
    "compile_image_flags",
    "flag_exclusions",
    "flags_fingerprint",
    "ledger_hashes",
    "newest_flags",
]


@dataclass(frozen=True)
class CompiledFlags:
    """A compiled flags table: its version, where it is, and what it holds."""

    version: str
    key: str
    uri: str
    flags: int
    store_flags_version: str
    by_flag: dict[str, int]  # every term of the vocabulary, in its order


def flags_fingerprint(store_url: str) -> str:
    """Changes with every flag, deletion and vote in the store (cheap: one row read)."""
    store = AnnotationStore(store_url)
    try:
        return hashlib.sha256(store.flags_version().encode()).hexdigest()[:16]
    finally:
        store.close()


def compile_image_flags(store_url: str, storage: Storage, *, log: logging.Logger = _log) -> CompiledFlags:
    """Compile the store's live flags into one table, store it under its version and make it the newest."""
    store = AnnotationStore(store_url)
    try:
        store_version = store.flags_version()
        table = store.compile_flags()
    finally:
        store.close()
    version = _table_version(table)
    folder = layout.image_flags()
    key = folder.commit_key(version)
    if not storage.exists(key):  # same content, same version: already there
        storage.write_parquet(key, table)
    layout.publish(storage, folder, version)
    counts: dict[str, int] = {}
    for term in table.column("flag").to_pylist():
        counts[term] = counts.get(term, 0) + 1
    log.info(f"compiled {table.num_rows} image flags (version {version}): {counts}")
    return CompiledFlags(
        version=version,
        key=key,
        uri=storage.uri_of(key),
        flags=table.num_rows,
        store_flags_version=store_version,
        by_flag={term: counts.get(term, 0) for term in IMAGE_FLAGS},
    )


def _table_version(table: pa.Table) -> str:
    digest = hashlib.sha256()
    for row in table.sort_by("flag_id").to_pylist():
        digest.update(repr(sorted(row.items())).encode())
    return digest.hexdigest()[:16]


def newest_flags(storage: Storage) -> tuple[str, pa.Table] | None:
    """The newest compiled flags (the storage layout's commit rule), or None when none were compiled."""
    folder = layout.image_flags()
    version = layout.newest_complete(storage, folder)
    if version is None:
        return None
    return version, storage.read_parquet(folder.commit_key(version)).cast(FLAGS_TABLE_SCHEMA)


def ledger_hashes(storage: Storage) -> pa.Table:
    """``url``, ``content_sha256`` (and ``phash`` where the ledger schema has it) of every ledger of
    the store: what finds a flagged photo under its other URLs, across training sets."""
    columns = ["url", "content_sha256"] + (["phash"] if "phash" in LEDGER_COLUMNS else [])
    tables = [load_ledger(storage, name, columns=columns) for name in list_ledgers(storage)]
    tables = [t.select(columns) for t in tables if t.num_rows]
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables(tables)


@dataclass(frozen=True)
class FlagExclusions:
    """What the flags take out of one training set's manifest, and the version they came from."""

    version: str | None  # the compiled flags' version; None when none were compiled or none apply
    exclude: ImageExclusions | None
    stats: dict[str, Any] = field(default_factory=dict)


def flag_exclusions(storage: Storage, spec: TrainingSetSpec) -> FlagExclusions:
    """The newest compiled flags under the spec's ``annotations.image_flags`` policy."""
    policy = spec.annotations.image_flags
    found = newest_flags(storage)
    if found is None:
        return FlagExclusions(None, None, {"compiled": False})
    version, table = found
    flags = effective_flags(
        table, drop=policy.drop, min_support=policy.min_support, exclude_contested=policy.exclude_contested
    )
    if flags.num_rows == 0:
        return FlagExclusions(None, None, {"compiled": True, "version": version, "flags": 0})
    matched = flagged_images(flags, ledger_hashes(storage))
    stats = {
        "compiled": True,
        "version": version,
        "flags": matched.flags,
        "by_flag": matched.by_flag,
        "urls_everywhere": len(matched.everywhere),
        "urls_scoped": len(matched.scoped),
        "urls_found_by_hash": matched.urls_by_hash,
    }
    return FlagExclusions(version, ImageExclusions(matched.everywhere, matched.scoped), stats)
