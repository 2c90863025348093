"""Leakage-free splits by construction: a duplicate cluster never spans splits.

The manifest assigns splits by group (an occurrence, an observer ...; :mod:`gbifdl_assets.sampling.splits`),
which cannot see that one photo hangs on two occurrences. At export, every stored image is clustered
with its exact copies (the same stored bytes or downloaded body) and near copies (perceptual hashes
within ``max_distance`` bits; :mod:`gbifdl_assets.media.duplicates`), and:

* every member of a cluster goes to the split of the cluster's **representative**, the member with
  the smallest content key (the sha256 of its URL): stable, so a refresh keeps images where they were
  unless a copy with a smaller key joins the cluster;
* inside that split, copies are kept once per class by default (the representative's row where it is
  in that class, else the smallest content key): a photo that appears twice in train weighs twice.
  ``keep_copies_within_split`` keeps them all. Members under different labels (a multi-species photo)
  are different training examples and stay, in the one split.

:func:`check_no_duplicates_across_splits` checks the written manifest again, from its own columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.media.duplicates import DEFAULT_MAX_DISTANCE, find_clusters

__all__ = [
    "EXAMPLES",
    "DuplicatePolicy",
    "DuplicateReport",
    "check_no_duplicates_across_splits",
    "resolve_duplicates",
]

#: clusters shown as examples (metadata, the check, the data card)
EXAMPLES = 10
_SHA_COLUMNS = ("sha256", "content_sha256")


@dataclass(frozen=True)
class DuplicatePolicy:
    """What the export does with duplicate photos (the spec's ``images.duplicates``)."""

    max_distance: int = DEFAULT_MAX_DISTANCE
    keep_copies_within_split: bool = False
    #: False: export as the manifest says (no clustering)
    enabled: bool = True


@dataclass
class DuplicateReport:
    """What :func:`resolve_duplicates` found and did."""

    max_distance: int = DEFAULT_MAX_DISTANCE
    clusters: int = 0  # clusters of two or more stored images
    images_in_clusters: int = 0
    moved: int = 0  # images put in their representative's split
    dropped: int = 0  # copies left out inside one split
    #: up to EXAMPLES clusters: representative, members with their split before and after and fate
    examples: list[dict[str, Any]] = field(default_factory=list)
    dropped_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_distance": self.max_distance,
            "clusters": self.clusters,
            "images_in_clusters": self.images_in_clusters,
            "moved": self.moved,
            "dropped": self.dropped,
            "examples": self.examples,
        }


def _clusters(table: pa.Table, max_distance: int) -> np.ndarray:
    """Cluster label (smallest row index) of each row of ``table``."""
    phash = table.column("phash") if "phash" in table.column_names else None
    shas = [table.column(c) for c in _SHA_COLUMNS if c in table.column_names]
    return find_clusters(phash, *shas, max_distance=max_distance).label


def resolve_duplicates(
    table: pa.Table, policy: DuplicatePolicy | None = None
) -> tuple[pa.Table, DuplicateReport]:
    """``table`` (content_key, split, label and the ledger's sha256/content_sha256/phash) with every
    cluster in one split and copies dropped per ``policy``; sorted by content key."""
    policy = policy or DuplicatePolicy()
    report = DuplicateReport(max_distance=policy.max_distance)
    if not policy.enabled or table.num_rows < 2:
        return table, report
    table = table.take(pc.sort_indices(table, [("content_key", "ascending")]))
    label = _clusters(table, policy.max_distance)
    n = table.num_rows
    sizes = np.bincount(label, minlength=n)[label]
    in_cluster = sizes > 1
    report.clusters = int((np.bincount(label, minlength=n) > 1).sum())
    report.images_in_clusters = int(in_cluster.sum())
    if not report.clusters:
        return table, report
    split = table.column("split").combine_chunks()
    new_split = split.take(pa.array(label))
    moved = pc.not_equal(split, new_split).to_numpy(zero_copy_only=False)
    report.moved = int(moved.sum())
    keep = np.ones(n, dtype=bool)
    if not policy.keep_copies_within_split:
        # one row per (cluster, class): the first in content-key order (the representative's own row
        # in its class, since it has the smallest key of the cluster)
        classes = pc.dictionary_encode(pc.cast(table.column("label"), pa.string())).combine_chunks()
        codes = classes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        pair = label * (len(classes.dictionary) + 1) + codes
        _, first = np.unique(pair, return_index=True)
        keep[:] = False
        keep[first] = True
    report.dropped = int((~keep).sum())
    keys = table.column("content_key").to_pylist()
    report.dropped_keys = [keys[i] for i in np.flatnonzero(~keep)]
    report.examples = _examples(table, label, sizes, split, new_split, keep, keys)
    out = table.set_column(table.schema.get_field_index("split"), "split", new_split)
    return out.filter(pa.array(keep)), report


def _examples(
    table: pa.Table,
    label: np.ndarray,
    sizes: np.ndarray,
    split: pa.Array,
    new_split: pa.Array,
    keep: np.ndarray,
    keys: list[str],
) -> list[dict[str, Any]]:
    """The first clusters that moved or dropped something (else the first clusters), for reports."""
    before, after = split.to_pylist(), new_split.to_pylist()
    labels = table.column("label").to_pylist()
    changed = np.asarray(pc.not_equal(split, new_split).to_numpy(zero_copy_only=False), dtype=bool) | ~keep
    # clusters that moved or dropped something first (in content-key order), else any cluster
    busy = np.unique(label[changed])
    chosen = (busy if len(busy) else np.unique(label[sizes > 1]))[:EXAMPLES]
    examples = []
    for rep in chosen.tolist():
        members = np.flatnonzero(label == rep)
        examples.append(
            {
                "representative": keys[rep],
                "split": after[rep],
                "members": [
                    {
                        "content_key": keys[i],
                        "label": labels[i],
                        "split_before": before[i],
                        "kept": bool(keep[i]),
                    }
                    for i in members
                ],
            }
        )
    return examples


def check_no_duplicates_across_splits(
    exported: pa.Table, *, max_distance: int = DEFAULT_MAX_DISTANCE, summary: Mapping[str, Any] | None = None
) -> tuple[bool, dict[str, Any]]:
    """Passes when no cluster of the exported images (``exported``: content_key, split and the hash
    columns the manifest carries) sits in more than one split; details carry counts and examples
    (``summary``: the export's :meth:`DuplicateReport.to_dict`, for what was found and done)."""
    summary = dict(summary or {})
    details: dict[str, Any] = {"exported": exported.num_rows, "max_distance": max_distance}
    details.update(
        clusters_found=int(summary.get("clusters", 0)),
        images_in_clusters=int(summary.get("images_in_clusters", 0)),
        moved_to_representative_split=int(summary.get("moved", 0)),
        copies_dropped=int(summary.get("dropped", 0)),
    )
    spanning: list[dict[str, Any]] = []
    count = 0
    if exported.num_rows > 1:
        table = exported.take(pc.sort_indices(exported, [("content_key", "ascending")]))
        label = _clusters(table, max_distance)
        split = pc.dictionary_encode(table.column("split")).combine_chunks()
        code = split.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        low = np.full(len(label), np.iinfo(np.int64).max)
        high = np.full(len(label), -1)
        np.minimum.at(low, label, code)
        np.maximum.at(high, label, code)
        across = np.flatnonzero((high >= 0) & (low != high))  # cluster labels spanning splits
        count = len(across)
        keys = table.column("content_key").to_pylist()
        names = split.dictionary.to_pylist()
        for rep in across[:EXAMPLES].tolist():
            members = np.flatnonzero(label == rep)
            spanning.append(
                {
                    "representative": keys[rep],
                    "splits": sorted({names[c] for c in code[members].tolist()}),
                    "members": [keys[i] for i in members.tolist()],
                }
            )
    details["clusters_across_splits"] = count
    details["examples"] = spanning[:EXAMPLES] or list(summary.get("examples", []))[:EXAMPLES]
    if count:
        details["message"] = (
            f"{count} duplicate clusters sit in more than one split (first: {spanning[0]['members'][:3]}); "
            "export again with images.duplicates enabled in the spec"
        )
    return not count, details
