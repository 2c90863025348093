"""Train/val/test splits by a stable hash of a group key: leakage-free by construction.

Every image belongs to a group (``splits.group_by``):

* ``occurrence`` (default): its gbifID, so the several photos of one observation never end up
  on both sides of the train/test boundary;
* ``observer``: ``recordedBy`` (trimmed, whitespace collapsed, case-folded: "J. Smith" and
  "j.  smith" are one observer), so a model is tested on photographers it has not seen;
* ``location``: the ``location_cell_degrees`` grid cell of (decimalLatitude, decimalLongitude),
  so test images come from places not seen in training (spatial autocorrelation);
* ``dataset``: ``datasetKey``.

A row without a value for its group key (no recordedBy, no coordinates, no datasetKey) falls back
to its occurrence as a group of its own; :attr:`SplitResult.fallback` counts them.

The group's identity hash (gbifdl-hash64 v1, seed 0) is mixed with ``splits.seed`` and mapped to
u uniform in [0, 1); ``u < train`` → train, ``u < train + val`` → val, else test. The split of a
group is a function of the group key and the seed alone, so no group can be in two splits, and a
refresh puts every image that was there before back into the same split (and new images of a
known group join that group's split). Fractions hold in expectation over groups; with few
groups (or a few very large ones) the realised image fractions, reported in
:attr:`SplitResult.fractions`, can differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.sampling.arrays import combine_chunks, numeric, valid_mask
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.hashing import (
    combine,
    hash_ints,
    hash_strings,
    mix64,
    seed_state,
    to_unit_interval,
)
from gbifdl_assets.specs import SplitSpec

__all__ = [
    "GROUP_COLUMNS",
    "SPLIT_NAMES",
    "SplitResult",
    "assign_splits",
    "group_keys",
    "require_group_columns",
]

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: the input columns each group_by option reads
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "occurrence": ("gbifID",),
    "observer": ("recordedBy", "gbifID"),
    "location": ("decimalLatitude", "decimalLongitude", "gbifID"),
    "dataset": ("datasetKey", "gbifID"),
}
_LOCATION_TAG = np.uint64(0x10CA7E)


@dataclass
class SplitResult:
    split: pa.Array  # "train" | "val" | "test" per row
    group: pa.Array  # the group key as text ("gbifID:123", "recordedBy:jane doe", "cell:1183:2064", ...)
    counts: dict[str, int]
    fractions: dict[str, float]  # realised, by images
    group_counts: dict[str, int]  # groups per split
    fallback: int = 0  # rows without a group value, grouped by their occurrence instead
    target: dict[str, float] = field(default_factory=dict)


def _text(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return arr


def _prefixed(prefix: str, values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(prefix, _text(values), "")


def require_group_columns(available: Sequence[str], splits: SplitSpec) -> None:
    """SamplingError when the columns ``splits.group_by`` groups by are not among the ``available`` ones."""
    missing = [c for c in GROUP_COLUMNS[splits.group_by] if c not in available]
    if missing:
        raise SamplingError(
            f"splits.group_by: {splits.group_by} needs column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}, which the input lacks; choose another group_by or give a full snapshot"
        )


def group_keys(table: pa.Table, splits: SplitSpec) -> tuple[np.ndarray, pa.Array, int]:
    """(identity hash per row, group key text per row, rows that fell back to their occurrence)."""
    require_group_columns(table.column_names, splits)
    gbif = combine_chunks(table.column("gbifID"))
    gbif_np = gbif.to_numpy(zero_copy_only=False).astype(np.int64)
    occ_hash = hash_ints(gbif_np, 0)
    occ_text = _prefixed("gbifID:", gbif)
    if splits.group_by == "occurrence":
        return occ_hash, occ_text, 0
    if splits.group_by == "location":
        lat = numeric(table.column("decimalLatitude"))
        lon = numeric(table.column("decimalLongitude"))
        ok = ~(np.isnan(lat) | np.isnan(lon))
        d = splits.location_cell_degrees
        with np.errstate(invalid="ignore"):
            i = np.floor((np.where(ok, lat, 0.0) + 90.0) / d).astype(np.int64)
            j = np.floor((np.where(ok, lon, 0.0) + 180.0) / d).astype(np.int64)
        h = combine(hash_ints(i, 0) ^ _LOCATION_TAG, hash_ints(j, 0))
        text = pc.binary_join_element_wise(
            "cell:", pc.cast(pa.array(i), pa.string()), ":", pc.cast(pa.array(j), pa.string()), ""
        )
    else:
        column = "recordedBy" if splits.group_by == "observer" else "datasetKey"
        values = _text(combine_chunks(table.column(column)))
        if splits.group_by == "observer":
            values = pc.utf8_lower(pc.replace_substring_regex(pc.utf8_trim_whitespace(values), r"\s+", " "))
        else:
            values = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        ok = valid_mask(values) & pc.fill_null(pc.not_equal(values, ""), False).to_numpy(zero_copy_only=False)
        h = hash_strings(values, 0)
        text = _prefixed(f"{column}:", values)
    fallback = int((~ok).sum())
    if fallback:
        h = np.where(ok, h, occ_hash)
        text = pc.if_else(pa.array(ok), text, occ_text)
    return h, combine_chunks(text), fallback


def assign_splits(table: pa.Table, splits: SplitSpec) -> SplitResult:
    """The split of every row, by its group key (see the module docstring)."""
    h, text, fallback = group_keys(table, splits)
    u = to_unit_interval(mix64(h ^ np.uint64(seed_state(splits.seed))))
    code = np.where(u < splits.train, 0, np.where(u < splits.train + splits.val, 1, 2)).astype(np.int8)
    names = pa.array(SPLIT_NAMES, pa.string())
    split = names.take(pa.array(code))
    n = len(code)
    counts = np.bincount(code, minlength=3)
    # groups per split: distinct identity hashes (one per group) per split
    order = np.lexsort((h, code)) if n else np.zeros(0, np.int64)
    hs, cs = h[order], code[order]
    first = np.ones(n, dtype=bool)
    if n:
        first[1:] = (hs[1:] != hs[:-1]) | (cs[1:] != cs[:-1])
    groups = np.bincount(cs[first], minlength=3) if n else np.zeros(3, np.int64)
    return SplitResult(
        split=split,
        group=text,
        counts={s: int(c) for s, c in zip(SPLIT_NAMES, counts, strict=True)},
        fractions={s: (float(c) / n if n else 0.0) for s, c in zip(SPLIT_NAMES, counts, strict=True)},
        group_counts={s: int(c) for s, c in zip(SPLIT_NAMES, groups, strict=True)},
        fallback=fallback,
        target={"train": splits.train, "val": splits.val, "test": splits.test},
    )
