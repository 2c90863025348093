"""Duplicate clusters: identical bytes and near-identical pixels, without comparing all pairs.

Two images are in one cluster when a chain of these links joins them:

* the same sha256 (of the stored bytes, or of the downloaded body: the same file under two URLs);
* perceptual hashes (:mod:`.phash`, 256 bits) at most ``max_distance`` bits apart.

Near pairs are found in two steps. The index holds the 64 bits of the 8x8 lowest frequencies of each
hash (a copy keeps them: within 4 bits for every copy of the sandbox's ground truth), in four 16-bit
bands (multi-index hashing, pigeonhole): two keys at most ``candidate_distance`` bits apart agree
within ``candidate_distance // 4`` bits on one band. Each band is sorted once; every key looks up the
band values within that radius (binary search) and only those candidates are compared, first on the
64-bit key, then on all 256 bits. The work grows with the candidates, about ``n**2 / 2**16`` per band
value looked up for unrelated hashes, not with ``n**2``: a million hashes take seconds
(``bench_duplicates.py``). Identical hashes are folded first, so a photo that recurs a thousand times
costs one lookup, and candidates are compared column by column (never a list of pairs), so memory
stays a few arrays of the input's size.

The index can miss a pair within ``max_distance`` whose low frequencies differ by more than
``candidate_distance`` (the price of not comparing all pairs); the benchmark measures the recall.

Links are merged with a vectorised union-find (hooking roots to the smaller root, then pointer
jumping), so a cluster's label is the smallest row index in it: callers that sort rows by a stable
key (the content key) get the stable representative for free.

Plain numpy and pyarrow; no Dagster (the export uses it through :mod:`gbifdl_assets.export.dedup`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.media.phash import HASH_BITS

__all__ = [
    "BANDS",
    "CANDIDATE_DISTANCE",
    "DEFAULT_MAX_DISTANCE",
    "MAX_DISTANCE_LIMIT",
    "Clusters",
    "DuplicateError",
    "find_clusters",
    "hashes_of",
    "index_keys",
    "near_pairs",
    "union_components",
]

#: bands of the multi-index (16 bits each)
BANDS = 4
_BAND_BITS = 64 // BANDS
#: the default largest Hamming distance (of 256 bits) of near duplicates, chosen by
#: bench_duplicates.py on the sandbox's ground truth (README "Duplicate images"): copies within ~24,
#: distinct photos beyond ~48; 31 is also PDQ's usual threshold
DEFAULT_MAX_DISTANCE = 31
#: the largest accepted: a quarter of the bits (unrelated photos sit near 128)
MAX_DISTANCE_LIMIT = 64
#: how far apart (of 64 bits) the index looks for candidates: 4 to 7 cost the same lookups
CANDIDATE_DISTANCE = 7
_INDEX_LIMIT = 10
_PARSE_ROWS = 1 << 17


class DuplicateError(GbifdlError, ValueError):
    """A bad argument to the duplicate search (the message names it and what to give)."""


def hashes_of(column: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes as an (n, 32) uint8 array, valid mask) of a column of 64-hex-character hashes; nulls and
    malformed values (not an image, an older ledger without ``phash``) are marked invalid."""
    arr = _strings(column)
    ok = pc.fill_null(pc.match_substring_regex(arr, r"^[0-9a-fA-F]{64}$"), False).to_numpy(
        zero_copy_only=False
    )
    out = np.zeros((len(arr), 32), dtype=np.uint8)
    rows = np.flatnonzero(ok)
    text = pc.utf8_lower(arr.filter(pa.array(ok)))  # a fresh array: offsets start at 0
    for start in range(0, len(rows), _PARSE_ROWS):  # in slices: the temporaries stay small
        part = text.slice(start, _PARSE_ROWS)
        offsets = np.frombuffer(part.buffers()[1], np.int32)[part.offset : part.offset + len(part) + 1]
        raw = np.frombuffer(part.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 64)
        digits = np.where(raw >= ord("a"), raw - (ord("a") - 10), raw - ord("0")).astype(np.uint8)
        out[rows[start : start + len(part)]] = (digits[:, 0::2] << 4) | digits[:, 1::2]
    return out, ok


def index_keys(hashes: np.ndarray) -> np.ndarray:
    """The 64-bit index key of each (n, 32) uint8 hash: the 8x8 lowest frequencies (the first byte of
    each of the first eight 16-bit rows)."""
    return np.ascontiguousarray(hashes[:, 0:16:2]).view(">u8").ravel().astype(np.uint64)


def _strings(column: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    arr = column if isinstance(column, pa.Array | pa.ChunkedArray) else pa.array(list(column), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def _masks(radius: int) -> np.ndarray:
    """Every 16-bit value with at most ``radius`` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(_BAND_BITS), r)]
    return np.array(masks, dtype=np.int64)


def _scan(
    ordered: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_distance: int,
    found: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    """Compare each position p of ``ordered`` (hashes in band order) with the positions [lo[p], hi[p]).

    Column by column rather than pair by pair: step k compares every p whose range is longer than k
    with lo[p] + k, so no pair list is ever built (memory: a few arrays of the queries) and the
    Python loop runs as many times as the longest range (a band value's run).
    """
    counts = hi - lo
    queries = np.flatnonzero(counts > 0)
    if not len(queries):
        return
    queries = queries[np.argsort(-counts[queries], kind="stable")]  # longest ranges first
    remaining = counts[queries]
    start = lo[queries]
    mine = ordered[queries]
    # remaining is descending: the queries still active at step k are a prefix of it
    active_at = np.searchsorted(-remaining, -np.arange(int(remaining[0])), side="left")
    for k, m in enumerate(active_at):
        other = start[:m] + k
        close = np.bitwise_count(mine[:m] ^ ordered[other]) <= max_distance
        if close.any():
            found.append((queries[:m][close], other[close]))


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of 64-bit ``hashes`` (uint64, best without repeats) at most ``max_distance``
    bits apart, through the multi-index of the module docstring; each pair once."""
    if not 0 <= max_distance <= _INDEX_LIMIT:
        raise DuplicateError(
            f"candidate distance {max_distance}: give a Hamming distance between 0 and {_INDEX_LIMIT} bits"
        )
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    if len(hashes) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    masks = _masks(max_distance // BANDS)
    positions = np.arange(len(hashes), dtype=np.int64)
    for band in range(BANDS):
        values = ((hashes >> np.uint64(band * _BAND_BITS)) & np.uint64(0xFFFF)).astype(np.int32)
        order = np.argsort(values, kind="stable")
        band_values = values[order]
        ordered = hashes[order]
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for mask in masks:
            if mask == 0:  # the same band value: the later positions of the same run
                lo = positions + 1
                hi = np.searchsorted(band_values, band_values, side="right")
            else:  # each unordered pair once: from the smaller band value to the larger
                query = band_values ^ np.int32(mask)
                wanted = query > band_values
                lo = np.searchsorted(band_values, query, side="left")
                hi = np.where(wanted, np.searchsorted(band_values, query, side="right"), lo)
            _scan(ordered, lo, hi, max_distance, found)
        for p, q in found:
            a, b = order[p], order[q]
            found_a.append(np.minimum(a, b))
            found_b.append(np.maximum(a, b))
    if not found_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # a pair close in several bands is found once per band: report it once
    pairs = np.unique(np.concatenate(found_a) * len(hashes) + np.concatenate(found_b))
    return pairs // len(hashes), pairs % len(hashes)


def union_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes joined by the edges (a, b): the smallest node in it."""
    labels = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while len(a):
        la, lb = labels[a], labels[b]
        differ = la != lb
        if not differ.any():
            break
        a, b, la, lb = a[differ], b[differ], la[differ], lb[differ]
        low = np.minimum(la, lb)
        np.minimum.at(labels, np.maximum(la, lb), low)  # hook the larger root under the smaller
        while True:  # pointer jumping: every node points at its root again
            nxt = labels[labels]
            if np.array_equal(nxt, labels):
                break
            labels = nxt
    return labels


@dataclass(frozen=True)
class Clusters:
    """Duplicate clusters of ``n`` rows: ``label[i]`` is the smallest row index of row i's cluster."""

    label: np.ndarray
    #: links found: by equal sha256 (rows that share one with an earlier row) and near pHash pairs
    exact_links: int
    near_links: int

    @property
    def n(self) -> int:
        return len(self.label)

    def sizes(self) -> np.ndarray:
        """Rows in each row's cluster."""
        return np.bincount(self.label, minlength=self.n)[self.label] if self.n else np.zeros(0, np.int64)

    @property
    def clusters(self) -> int:
        """Clusters of more than one row."""
        counts = np.bincount(self.label, minlength=self.n) if self.n else np.zeros(0, np.int64)
        return int((counts > 1).sum())

    @property
    def members(self) -> int:
        """Rows in clusters of more than one row."""
        return int((self.sizes() > 1).sum()) if self.n else 0


def _exact_edges(column: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(row, first row with the same value) of every row whose value (not null) an earlier row has."""
    encoded = pc.dictionary_encode(_strings(column))
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    valid = np.asarray(encoded.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.flatnonzero(valid)
    codes = codes[valid].astype(np.int64)
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    # the first row of each value: assign in reverse so the earliest row wins
    first[codes[::-1]] = rows[::-1]
    later = first[codes] != rows
    return rows[later], first[codes][later]


def _codes(encoded: pa.DictionaryArray) -> tuple[np.ndarray, np.ndarray]:
    """(rows with a value, their dictionary codes)."""
    valid = np.asarray(encoded.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return np.flatnonzero(valid), codes[valid].astype(np.int64)


def find_clusters(
    phash: pa.Array | pa.ChunkedArray | Sequence[str | None] | None,
    *sha256_columns: pa.Array | pa.ChunkedArray | Sequence[str | None],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    candidate_distance: int = CANDIDATE_DISTANCE,
    near: bool = True,
) -> Clusters:
    """Duplicate clusters of rows given their perceptual hashes (64 hex, null for none) and any number
    of sha256 columns (exact copies); ``near=False`` keeps exact copies (and identical hashes) only."""
    if not 0 <= max_distance <= MAX_DISTANCE_LIMIT:
        raise DuplicateError(
            f"max_distance={max_distance}: give a Hamming distance between 0 and {MAX_DISTANCE_LIMIT} bits "
            f"(of {HASH_BITS}; the default {DEFAULT_MAX_DISTANCE} keeps copies and distinct photos apart)"
        )
    lengths = {len(c) for c in (phash, *sha256_columns) if c is not None}
    if len(lengths) > 1:
        raise DuplicateError(f"the hash columns differ in length ({sorted(lengths)}): give one value per row")
    n = lengths.pop() if lengths else 0
    edges_a: list[np.ndarray] = []
    edges_b: list[np.ndarray] = []
    exact = 0
    for column in sha256_columns:
        a, b = _exact_edges(column)
        exact += len(a)
        edges_a.append(a)
        edges_b.append(b)
    near_links = 0
    if phash is not None and n:
        # identical hashes first (one dictionary entry each), then the index over the distinct ones
        encoded = pc.dictionary_encode(pc.utf8_lower(_strings(phash)))
        values, ok = hashes_of(encoded.dictionary)
        rows, codes = _codes(encoded)
        keep = ok[codes]
        rows, codes = rows[keep], codes[keep]
        first = np.full(len(values), -1, dtype=np.int64)
        first[codes[::-1]] = rows[::-1]
        same = first[codes] != rows
        edges_a.append(rows[same])
        edges_b.append(first[codes][same])
        near_links += int(same.sum())
        if near and max_distance > 0:
            present = np.flatnonzero(first >= 0)
            ua, ub = near_pairs(index_keys(values[present]), min(candidate_distance, max_distance))
            if len(ua):
                words = np.ascontiguousarray(values[present]).view(np.uint64)
                close = np.bitwise_count(words[ua] ^ words[ub]).sum(axis=1) <= max_distance
                ua, ub = present[ua[close]], present[ub[close]]
                edges_a.append(first[ua])
                edges_b.append(first[ub])
                near_links += len(ua)
    a = np.concatenate(edges_a) if edges_a else np.zeros(0, np.int64)
    b = np.concatenate(edges_b) if edges_b else np.zeros(0, np.int64)
    return Clusters(union_components(n, a, b), exact_links=exact, near_links=near_links)
