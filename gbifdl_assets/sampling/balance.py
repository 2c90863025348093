"""Exact, deterministic stratified sampling: per label, then within a label per stratum.

gbif-dl mixes per-stream generators at random (pescador), unseeded: asked for 20 images per
class it yields 18-25, and a different set on every call (anchors-downloaders.md §2.4). Here
the sample is a pure function of the rows, the spec and the seed, and exact:

**Order.** Every image gets an order key ``mix64(hash64(url) ^ seed_state(seed))`` (see
hashing.py: gbifdl-hash64 v1, stable across machines and library versions). Wherever images
compete for a limited number of places, the lowest keys win. The key depends only on the URL and
the seed, never on row order, so the same rows in any order give the same sample.

**Steps** (each row dropped is counted once, under the first step that drops it):

1. ``per_occurrence_cap``: at most ``max_per_occurrence`` images per gbifID (lowest keys kept).
2. ``class_below_min``: labels with fewer than ``min_per_class`` images left are dropped and
   reported (:attr:`BalanceResult.below_min`).
3. Class quotas. *exact* mode: ``min(available, max_per_class)``; with ``max_total`` and more
   than that in total, the quotas are water-filled to ``max_total`` (every class gets the same
   level; classes below the level keep all their images and their slack goes to the others).
   *weighted* mode: natural proportions: quotas ∝ ``min(available, max_per_class)``, scaled to
   ``max_total`` with largest-remainder rounding (exact integer arithmetic; ties broken by a
   seeded hash of the label). Rows over the quota count as ``max_per_class`` or ``max_total``.
4. Stratum quotas within a label (``by`` columns, publishingOrgKey by default; null is a
   stratum of its own). *exact*: water-filling, so the class quota is spread as evenly as the
   strata allow: strata smaller than their fair share give everything and their slack goes to
   the larger ones; the remainder of the integer division goes, one each, to the unfilled strata
   with the lowest seeded hash of (label, stratum values). *weighted*: proportional to stratum
   size (largest remainder). The quotas always sum to the class quota, so a class gets
   **exactly** ``max_per_class`` images wherever that many are available.
5. Within a stratum, the ``quota`` images with the lowest order keys.

**Refresh guarantee.** Without ``previous``: within a stratum the picks are the q lowest keys,
and adding images never changes the keys of existing ones. So a stratum whose images and quota
did not change keeps exactly the same picks; otherwise an earlier pick leaves only if (a) it no
longer passes the filters, (b) its stratum's quota shrank, or (c) a new image with a lower key
took its place (each displacement is caused by one new image in that stratum).
With ``previous`` (the URLs of the previous manifest) earlier picks sort before every other
image of their stratum (and of their occurrence, for the occurrence cap), so an earlier pick
leaves only under (a) or (b), and new images only fill places that were free. Ties between
identical 64-bit keys (probability ~n²/2⁶⁵) fall back to row order.

Vectorised: two or three sorts of the rows (composite uint64 keys: group code in the high bits,
order key in the low bits) and bincounts; no Python loop per row, per class or per stratum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gbifdl_assets.sampling.arrays import codes_of, combine_chunks, isin_mask
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.hashing import combine, hash_ints, hash_strings, mix64, seed_state
from gbifdl_assets.specs import BalancingSpec

__all__ = [
    "BalanceResult",
    "balance",
    "grouped_rank",
    "largest_remainder",
    "order_keys",
    "require_by_columns",
    "water_fill",
]

_TOP_BIT = np.uint64(1 << 63)
_NULL_VALUE_HASH = np.uint64(0x5A5A5A5A5A5A5A5A)


@dataclass
class BalanceResult:
    """Which rows were picked, and what happened to every class."""

    indices: np.ndarray  # positions of the picked rows in the input table, ascending
    per_class: dict[int, int]  # label -> images picked
    available: dict[int, int]  # label -> images after the occurrence cap (before class quotas)
    below_min: dict[int, int]  # label -> images available, for labels dropped by min_per_class
    shortfall: dict[int, int]  # exact mode with max_per_class: label -> images missing to the cap
    dropped: dict[str, int]
    stratum_count: int = 0  # strata that had to be sampled (in classes above their quota)
    previous: dict[str, int] = field(default_factory=dict)  # sticky refresh: kept / eligible


# ---------------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------------
def order_keys(url_hash: np.ndarray, seed: int, sticky: np.ndarray | None = None) -> np.ndarray:
    """Seeded order keys; with ``sticky`` (bool per row) those rows sort before all others."""
    key = mix64(np.asarray(url_hash, np.uint64) ^ np.uint64(seed_state(seed)))
    if sticky is not None and sticky.any():
        key >>= np.uint64(1)
        key[~sticky] |= _TOP_BIT
    return key


def grouped_rank(codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """0-based rank of each element among those with the same code, by ascending ``keys``.

    ``codes`` are non-negative ints. One argsort of a composite uint64 (code in the high bits,
    the key's top bits below); equal composites (truncated keys colliding) are re-sorted on the
    full key, so the result equals a lexicographic sort by (code, key).
    """
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.uint64)
    bits = max(1, int(codes.max()).bit_length())
    if bits <= 40:
        comp = (codes.astype(np.uint64) << np.uint64(64 - bits)) | (keys >> np.uint64(bits))
        order = np.argsort(comp)
        cs = comp[order]
        tie = cs[1:] == cs[:-1]
        if tie.any():
            in_run = np.zeros(n, dtype=bool)
            in_run[1:] |= tie
            in_run[:-1] |= tie
            pos = np.flatnonzero(in_run)
            sub = order[pos]
            order[pos] = sub[np.lexsort((keys[sub], comp[sub]))]
    else:
        order = np.lexsort((keys, codes))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = _positions_in_runs(codes[order])
    return rank


def _positions_in_runs(sorted_codes: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal values (``sorted_codes`` is
    non-empty and grouped: equal values stand together)."""
    n = len(sorted_codes)
    first = np.empty(n, dtype=bool)
    first[0] = True
    first[1:] = sorted_codes[1:] != sorted_codes[:-1]
    idx = np.arange(n, dtype=np.int64)
    return idx - np.maximum.accumulate(np.where(first, idx, 0))


def water_fill(group: np.ndarray, size: np.ndarray, budget: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Integer quotas per item: within each group, fill every item to a common level.

    ``group[i]`` (dense, 0..G-1) owns item i of ``size[i]`` > 0; ``budget[g]`` places per group.
    A group whose sizes sum to at most its budget takes everything. Otherwise the level t is the
    largest with sum(min(size, t)) <= budget; items smaller than t are taken whole, the others
    get t, and the r places left over go one each to the unfilled items with the lowest
    ``tiebreak``. Quotas sum to min(budget, total) per group and never exceed the size.
    """
    m = len(size)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    size = np.asarray(size, dtype=np.int64)
    budget = np.asarray(budget, dtype=np.int64)
    n_groups = len(budget)
    order = np.lexsort((tiebreak, size, group))
    g, s = group[order], size[order]
    cnt = np.bincount(group, minlength=n_groups)
    gstart = np.cumsum(cnt) - cnt
    k = np.arange(m, dtype=np.int64) - gstart[g]
    csum = np.cumsum(s)
    before_group = np.concatenate([[0], csum])[gstart]
    prefix_before = csum - s - before_group[g]
    level_total = prefix_before + s * (cnt[g] - k)  # taken in total if the level were s
    full = level_total <= budget[g]  # a prefix of each group: level_total grows with k
    n_full = np.bincount(g[full], minlength=n_groups)
    full_sum = np.zeros(n_groups, dtype=np.int64)
    np.add.at(full_sum, g[full], s[full])
    rest = cnt - n_full
    left = budget - full_sum
    level = np.where(rest > 0, left // np.maximum(rest, 1), 0)
    extra = left - level * rest
    quota_sorted = s.copy()
    open_ = ~full
    if open_.any():
        og = g[open_]
        rank = grouped_rank(og, np.asarray(tiebreak, np.uint64)[order][open_])
        quota_sorted[open_] = level[og] + (rank < extra[og])
    quota = np.empty(m, dtype=np.int64)
    quota[order] = quota_sorted
    return quota


def largest_remainder(
    group: np.ndarray, size: np.ndarray, budget: np.ndarray, tiebreak: np.ndarray
) -> np.ndarray:
    """Quotas proportional to ``size`` within each group, summing exactly to min(budget, total).

    floor(budget * size / total) each, then one more to the items with the largest remainders
    (exact integer arithmetic; equal remainders go to the lowest ``tiebreak``).
    """
    m = len(size)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    size = np.asarray(size, dtype=np.int64)
    budget = np.asarray(budget, dtype=np.int64)
    n_groups = len(budget)
    total = np.zeros(n_groups, dtype=np.int64)
    np.add.at(total, group, size)
    b = np.minimum(budget, total)[group]
    t = np.maximum(total[group], 1)
    num = b * size
    floor, rem = num // t, num % t
    given = np.zeros(n_groups, dtype=np.int64)
    np.add.at(given, group, floor)
    left = np.minimum(budget, total) - given
    order = np.lexsort((np.asarray(tiebreak, np.uint64), -rem, group))
    rank = np.empty(m, dtype=np.int64)
    rank[order] = _positions_in_runs(group[order])
    return floor + (rank < left[group])


def _over_occurrence_cap(gbif_id: np.ndarray, keys: np.ndarray, cap: int) -> np.ndarray:
    """True for rows beyond the first ``cap`` (by key) of their gbifID."""
    n = len(gbif_id)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    order = np.argsort(gbif_id)
    gs = gbif_id[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = gs[1:] != gs[:-1]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, n))
    if sizes.max() <= cap:
        return out
    big = np.repeat(sizes > cap, sizes)  # only occurrences with more images than the cap need ranking
    pos = np.flatnonzero(big)
    rows = order[pos]
    gcode = np.cumsum(new)[pos] - 1
    rank = grouped_rank(gcode - gcode.min(), keys[rows])
    out[rows[rank >= cap]] = True
    return out


def _densify(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique values, inverse) of non-negative ints, like np.unique but O(n) for small ranges."""
    if len(values) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    vmax = int(values.max())
    if vmax < max(1 << 22, 4 * len(values)):
        present = np.zeros(vmax + 1, dtype=bool)
        present[values] = True
        remap = np.cumsum(present, dtype=np.int64) - 1
        return np.flatnonzero(present), remap[values]
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, inverse.astype(np.int64)


def _value_hashes(dictionary: pa.Array, seed: int) -> np.ndarray:
    """Seeded hash of each dictionary value (strings by bytes, numbers by value), plus null's."""
    typ = dictionary.type
    if pa.types.is_integer(typ):
        h = hash_ints(dictionary.fill_null(0).to_numpy(zero_copy_only=False), seed)
    elif pa.types.is_floating(typ):
        h = hash_ints(dictionary.fill_null(0).to_numpy(zero_copy_only=False).view(np.int64), seed)
    else:
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            dictionary = dictionary.cast(pa.string())
        h = hash_strings(dictionary, seed)
    return np.append(h, mix64(np.array([_NULL_VALUE_HASH ^ np.uint64(seed_state(seed))])))


def _strata(table: pa.Table, by: list[str], rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(dense stratum code per row of ``rows``, seeded hash of each stratum's values)."""
    m = len(rows)
    code = np.zeros(m, dtype=np.int64)
    value_hash = np.zeros(m, dtype=np.uint64)
    card = 1
    for i, name in enumerate(by):
        c, dictionary = codes_of(table.column(name))
        c = c[rows]
        hashes = _value_hashes(dictionary, seed)
        c_hash = hashes[np.where(c < 0, len(hashes) - 1, c)]
        value_hash = c_hash if i == 0 else combine(value_hash, c_hash)
        c = c + 1  # null (-1) becomes 0
        width = len(dictionary) + 1
        if card * width >= 1 << 62:  # re-densify before the product overflows
            _, code = _densify(code)
            card = int(code.max()) + 1
        code = code * width + c
        card *= width
    if by:
        uniq, code = _densify(code)
        rep = np.empty(len(uniq), dtype=np.int64)
        rep[code] = np.arange(m)
        return code, value_hash[rep]
    return code, np.zeros(1, dtype=np.uint64)


def require_by_columns(available: Sequence[str], by: Sequence[str]) -> None:
    """SamplingError when a ``balancing.by`` column is not among the ``available`` ones."""
    missing = [c for c in by if c not in available]
    if missing:
        raise SamplingError(
            f"balancing.by names column{'s' if len(missing) > 1 else ''} {', '.join(missing)} that the "
            "input does not have; use snapshot columns such as publishingOrgKey, datasetKey, institutionCode, "
            f"countryCode, recordedBy (present: {', '.join(available[:40])})"
        )


def _check_columns(table: pa.Table, label_col: str, by: list[str]) -> None:
    require_by_columns(table.column_names, by)
    typ = table.column(label_col).type
    if not pa.types.is_integer(typ):
        raise SamplingError(f"label column {label_col} must hold integer taxon keys, got {typ}")


# ---------------------------------------------------------------------------------------------------
# balance
# ---------------------------------------------------------------------------------------------------
def balance(
    table: pa.Table,
    bal: BalancingSpec,
    *,
    label_col: str,
    rows: np.ndarray | None = None,
    url_hash: np.ndarray | None = None,
    previous_urls: pa.Array | pa.ChunkedArray | list[str] | None = None,
    sticky: np.ndarray | None = None,
) -> BalanceResult:
    """Pick rows of a filtered table (see the module docstring for the rules).

    ``rows`` restricts the candidates to those positions of ``table`` (apply_filters' rows, so
    the filtered table never has to be copied); ``url_hash`` is aligned with them. The result's
    ``indices`` are positions in ``table``. ``previous_urls`` (the previous manifest's URLs) or,
    already matched, ``sticky`` (bool per candidate row) turn on the sticky refresh.
    """
    _check_columns(table, label_col, list(bal.by))
    rows = np.arange(table.num_rows, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    n = len(rows)
    dropped: dict[str, int] = {
        "per_occurrence_cap": 0,
        "class_below_min": 0,
        "max_per_class": 0,
        "max_total": 0,
    }
    if n == 0:
        return BalanceResult(np.zeros(0, np.int64), {}, {}, {}, {}, dropped)
    label_codes, label_dict = codes_of(table.column(label_col))
    label_codes = label_codes[rows]
    if (label_codes < 0).any():
        raise SamplingError(f"label column {label_col} has nulls; filter them first (apply_filters does)")
    label_values = label_dict.to_numpy(zero_copy_only=False).astype(np.int64)
    n_labels = len(label_values)
    if url_hash is None:
        url_hash = hash_strings(table.column("identifier"), 0, rows=rows)
    previous: dict[str, int] = {}
    if sticky is None and previous_urls is not None:
        sticky = isin_mask(table.column("identifier"), previous_urls)[rows]
    if sticky is not None:
        sticky = np.asarray(sticky, dtype=bool)
        previous["eligible"] = int(sticky.sum())
    keys = order_keys(url_hash, bal.seed, sticky)

    alive = np.ones(n, dtype=bool)
    if bal.max_per_occurrence is not None:
        gbif_id = combine_chunks(table.column("gbifID")).to_numpy(zero_copy_only=False).astype(np.int64)[rows]
        over = _over_occurrence_cap(gbif_id, keys, bal.max_per_occurrence)
        dropped["per_occurrence_cap"] = int(over.sum())
        alive &= ~over

    avail = np.bincount(label_codes[alive], minlength=n_labels)
    small = (avail > 0) & (avail < bal.min_per_class)
    below_min = {int(label_values[i]): int(avail[i]) for i in np.flatnonzero(small)}
    if small.any():
        gone = alive & small[label_codes]
        dropped["class_below_min"] = int(gone.sum())
        alive &= ~gone
    present = (avail > 0) & ~small
    base = np.where(present, avail, 0)
    if bal.max_per_class is not None:
        base = np.minimum(base, bal.max_per_class)
    dropped["max_per_class"] = int((np.where(present, avail, 0) - base).sum())

    label_hash = hash_ints(label_values, bal.seed)
    quota = base.copy()
    if bal.max_total is not None and base.sum() > bal.max_total:
        idx = np.flatnonzero(present)
        fill = water_fill if bal.mode == "exact" else largest_remainder
        quota[idx] = fill(np.zeros(len(idx), np.int64), base[idx], np.array([bal.max_total]), label_hash[idx])
    dropped["max_total"] = int((base - quota).sum())
    shortfall: dict[int, int] = {}
    if bal.mode == "exact" and bal.max_per_class is not None:
        short = present & (avail < bal.max_per_class)
        shortfall = {int(label_values[i]): int(bal.max_per_class - avail[i]) for i in np.flatnonzero(short)}

    # classes at or under their quota keep every row; only the others are sampled
    sample_class = present & (quota < avail)
    selected = alive & ~sample_class[label_codes]
    stratum_count = 0
    todo = np.flatnonzero(alive & sample_class[label_codes])
    if len(todo):
        s_code, s_hash = _strata(table, list(bal.by), rows[todo], bal.seed)
        n_strata = int(s_code.max()) + 1
        lc = label_codes[todo]
        pair = lc * n_strata + s_code
        uniq_pair, pair_code = _densify(pair)
        pair_label = uniq_pair // n_strata
        pair_stratum = uniq_pair % n_strata
        pair_size = np.bincount(pair_code, minlength=len(uniq_pair))
        # dense class ids for the groups of the allocation
        cls_uniq, pair_group = _densify(pair_label)
        tiebreak = combine(label_hash[pair_label], s_hash[pair_stratum])
        fill = water_fill if bal.mode == "exact" else largest_remainder
        pair_quota = fill(pair_group, pair_size, quota[cls_uniq], tiebreak)
        rank = grouped_rank(pair_code, keys[todo])
        selected[todo[rank < pair_quota[pair_code]]] = True
        stratum_count = len(uniq_pair)

    picked = np.flatnonzero(selected)
    counts = np.bincount(label_codes[picked], minlength=n_labels)
    per_class = {int(label_values[i]): int(counts[i]) for i in np.flatnonzero(counts)}
    if sticky is not None:
        previous["kept"] = int(sticky[picked].sum())
    return BalanceResult(
        indices=rows[picked],
        per_class=per_class,
        available={int(label_values[i]): int(avail[i]) for i in np.flatnonzero(avail)},
        below_min=below_min,
        shortfall=shortfall,
        dropped=dropped,
        stratum_count=stratum_count,
        previous=previous,
    )
