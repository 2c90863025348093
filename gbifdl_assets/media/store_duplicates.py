"""Duplicate clusters across the ledgers of one image store (several training sets, or shards).

The export clusters the images of its own training set (:mod:`gbifdl_assets.export.dedup`); this
looks at every ledger of a store at once (``gbifdl images duplicates``), so a photo that one training
set took from an iNaturalist record and another from its copy in a second dataset shows as one
cluster across both. Entries written before the ledger had a ``phash`` column match by their bytes
only, unless ``hash_missing`` reads their stored objects and hashes them (standalone hashing,
:func:`gbifdl_assets.media.phash.phash_of_bytes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.media.duplicates import DEFAULT_MAX_DISTANCE, find_clusters
from gbifdl_assets.media.ledger import list_ledgers, load_ledger
from gbifdl_assets.media.phash import phash_of_bytes
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.storage import Storage

__all__ = ["StoreDuplicates", "store_duplicates"]

_COLUMNS = ["stored", "key", "sha256", "content_sha256", "phash"]
_EXAMPLES = 10


@dataclass
class StoreDuplicates:
    """Every stored entry of the ledgers with its cluster (``cluster``: the representative's content
    key, the smallest of the cluster; ``cluster_size``), and the counts."""

    table: pa.Table
    ledgers: list[str]
    images: int = 0
    clusters: int = 0
    images_in_clusters: int = 0
    clusters_across_ledgers: int = 0
    without_phash: int = 0
    hashed_now: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledgers": self.ledgers,
            "images": self.images,
            "clusters": self.clusters,
            "images_in_clusters": self.images_in_clusters,
            "clusters_across_ledgers": self.clusters_across_ledgers,
            "without_phash": self.without_phash,
            "hashed_now": self.hashed_now,
            "examples": self.examples,
        }


def _stored_entries(storage: Storage, names: Sequence[str]) -> pa.Table:
    tables = []
    for name in names:
        table = load_ledger(storage, name, columns=_COLUMNS)
        table = table.filter(pc.fill_null(table.column("stored"), False)).drop_columns(["stored"])
        tables.append(table.append_column("ledger", pa.array([name] * table.num_rows, pa.string())))
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in ["content_key", *_COLUMNS[1:], "ledger"]})
    return pa.concat_tables(tables)


def store_duplicates(
    store: ImageStore | Storage,
    *,
    ledgers: Sequence[str] | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    hash_missing: bool = False,
) -> StoreDuplicates:
    """Cluster the stored images of ``ledgers`` (default: every ledger of the store)."""
    image_store = store if isinstance(store, ImageStore) else ImageStore(store)
    names = list(ledgers) if ledgers is not None else list_ledgers(image_store.storage)
    table = _stored_entries(image_store.storage, names)
    table = table.take(pc.sort_indices(table, [("content_key", "ascending"), ("ledger", "ascending")]))
    phash = table.column("phash").combine_chunks() if table.num_rows else pa.array([], pa.string())
    missing = np.flatnonzero(~np.asarray(phash.is_valid().to_numpy(zero_copy_only=False), dtype=bool))
    hashed = 0
    if hash_missing and len(missing):
        values = phash.to_pylist()
        keys = table.column("key").to_pylist()
        done: dict[str, str | None] = {}
        for i in missing.tolist():
            key = keys[i]
            if key not in done:
                try:
                    done[key] = phash_of_bytes(image_store.read(key))
                    hashed += 1
                except (OSError, ValueError, SyntaxError):  # gone or unreadable: bytes only
                    done[key] = None
            values[i] = done[key]
        phash = pa.array(values, pa.string())
        table = table.set_column(table.schema.get_field_index("phash"), "phash", phash)
    # the same object (one key) is one image however many entries name it
    clusters = find_clusters(
        phash,
        table.column("key"),
        table.column("sha256"),
        table.column("content_sha256"),
        max_distance=max_distance,
    )
    label = clusters.label
    keys = table.column("content_key").to_pylist()
    sizes = np.bincount(label, minlength=len(label))[label] if len(label) else np.zeros(0, np.int64)
    rep_keys = pa.array([keys[i] for i in label.tolist()], pa.string())
    out = table.append_column("cluster", rep_keys).append_column("cluster_size", pa.array(sizes, pa.int64()))
    result = StoreDuplicates(
        out,
        names,
        images=out.num_rows,
        clusters=clusters.clusters,
        images_in_clusters=clusters.members,
        without_phash=int(len(missing)) - hashed,
        hashed_now=hashed,
    )
    if clusters.clusters:
        ledger_codes = (
            pc.dictionary_encode(out.column("ledger")).combine_chunks().indices.to_numpy(zero_copy_only=False)
        )
        low = np.full(len(label), np.iinfo(np.int64).max)
        high = np.full(len(label), -1)
        np.minimum.at(low, label, ledger_codes.astype(np.int64))
        np.maximum.at(high, label, ledger_codes.astype(np.int64))
        across = np.flatnonzero((high >= 0) & (low != high))
        result.clusters_across_ledgers = len(across)
        shown = across if len(across) else np.unique(label[sizes > 1])
        names_col = out.column("ledger").to_pylist()
        for rep in shown[:_EXAMPLES].tolist():
            members = np.flatnonzero(label == rep).tolist()
            result.examples.append(
                {
                    "representative": keys[rep],
                    "members": [{"content_key": keys[i], "ledger": names_col[i]} for i in members],
                }
            )
    return result
