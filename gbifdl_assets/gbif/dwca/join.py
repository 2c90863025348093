"""Media rows and the join: which multimedia rows are kept, and matching them to occurrences.

The media side is sorted by gbifID once (:class:`MediaSide`); occurrences are matched against it
with binary searches (:func:`join_indices`), piece by piece, so the occurrences never need to be
held in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.gbif.dwca.convert import Column, as_strings, map_distinct
from gbifdl_assets.gbif.dwca.parse import PARSE_THREADS
from gbifdl_assets.gbif.dwca.problems import RowProblems
from gbifdl_assets.gbif.dwca.schema import MEDIA_RAW_SCHEMA, MEDIA_SCHEMA, MEDIA_SOURCE_COLUMNS
from gbifdl_assets.gbif.licenses import normalize_licenses
from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA

_IMAGE_TYPES = [
    "stillimage",
    "image",
    "http://purl.org/dc/dcmitype/stillimage",
    "http://purl.org/dc/dcmitype/image",
]
_REASON_CODES = {0: None, 1: "no_url", 2: "not_image"}


def _distinct_flags(arr: Column, test: Callable[[pa.Array], pa.Array]) -> np.ndarray:
    """``test`` (string array -> bool array) on the distinct values only, as a numpy bool mask."""
    flags = map_distinct(arr, test)
    return np.asarray(pc.fill_null(flags, False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_image_type(values: pa.Array) -> pa.Array:
    return pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)), value_set=pa.array(_IMAGE_TYPES))


def _is_blank(values: pa.Array) -> pa.Array:
    return pc.equal(pc.utf8_trim_whitespace(values), "")


def _is_image_format(values: pa.Array) -> pa.Array:
    return pc.starts_with(pc.utf8_trim_whitespace(values), "image/", ignore_case=True)


def classify_media(type_: Column, format_: Column, identifier: Column) -> np.ndarray:
    """Reason codes per media row: 0 keep, 1 no_url, 2 not_image (first failing check wins).

    Kept: an ``http(s)://`` identifier and type StillImage (or no type and an ``image/*`` format).
    ``type`` and ``format`` have a handful of distinct values, so they are tested once each.
    """
    url = pc.or_(
        pc.starts_with(identifier, "http://", ignore_case=True),
        pc.starts_with(identifier, "https://", ignore_case=True),
    )
    has_url = np.asarray(pc.fill_null(url, False).to_numpy(zero_copy_only=False), dtype=bool)
    image_type = _distinct_flags(type_, _is_image_type)
    no_type = np.asarray(type_.is_null().to_numpy(zero_copy_only=False), dtype=bool) | _distinct_flags(
        type_, _is_blank
    )
    image_format = _distinct_flags(format_, _is_image_format)
    is_image = image_type | (no_type & image_format)
    return np.where(~has_url, 1, np.where(is_image, 0, 2)).astype(np.uint8)


def raw_media_table(
    ids: np.ndarray,
    rownum: np.ndarray,
    columns: dict[str, pa.Array],
    problems: RowProblems | None = None,
    where: str = "",
) -> tuple[pa.Table, Counter]:
    """The in-between media table (MEDIA_RAW_SCHEMA) plus skip counts, from string/binary columns."""
    n = len(ids)
    strings = {
        c: as_strings(columns[c], problems, where) if c in columns else pa.nulls(n, pa.string())
        for c in MEDIA_SOURCE_COLUMNS
    }
    strings["identifier"] = pc.utf8_trim_whitespace(strings["identifier"])
    reason = classify_media(strings["type"], strings["format"], strings["identifier"])
    counts = Counter({name: int((reason == code).sum()) for code, name in _REASON_CODES.items() if name})
    table = pa.Table.from_arrays(
        [pa.array(ids, pa.int64()), pa.array(rownum, pa.int64()), pa.array(reason, pa.uint8())]
        + [strings[c] for c in MEDIA_SOURCE_COLUMNS if c != "type"],
        schema=MEDIA_RAW_SCHEMA,
    )
    return table, counts


@dataclass
class MediaSide:
    """Kept media rows, ready to join: their gbifIDs sorted (``ids``) and where each sits in ``table``.

    ``table`` (:data:`MEDIA_SCHEMA`) keeps the rows in file order, one contiguous array per column;
    ``rows[i]`` is the table row of the i-th sorted id. Sorting only the ids and a permutation
    instead of every string column saves a gather of all the media strings: the join gathers the
    rows it needs from the table once anyway.
    """

    ids: np.ndarray
    table: pa.Table
    matched: np.ndarray
    rows: np.ndarray

    @classmethod
    def build(cls, raw: pa.Table | list[pa.Table]) -> MediaSide:
        """Sort by (gbifID, file order), number items within their occurrence, keep the images.

        ``media_index`` counts every media row of the occurrence (skipped ones too), so it is the
        item's position in GBIF's list for that record and does not shift when a filter changes.
        A list of tables is consumed (emptied): columns are then combined one at a time and each
        original is released right after, so peak memory is the media table plus one column.
        """
        tables = raw if isinstance(raw, list) else [raw]
        schema = tables[0].schema if tables else MEDIA_RAW_SCHEMA
        columns = {
            name: pa.chunked_array(
                [c for t in tables for c in t.column(name).chunks], schema.field(name).type
            )
            for name in schema.names
        }
        if isinstance(raw, list):
            raw.clear()
        del tables, raw
        n = len(columns["gbifID"])
        if n == 0:
            empty = np.empty(0, np.int64)
            return cls(empty, MEDIA_SCHEMA.empty_table(), np.empty(0, bool), empty)
        ids = columns.pop("gbifID").to_numpy()
        order = np.lexsort((columns.pop("rownum").to_numpy(), ids))
        sorted_ids = ids[order]
        del ids
        positions = np.arange(n)
        starts = np.ones(n, dtype=bool)
        starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
        media_index = np.empty(n, np.int32)
        media_index[order] = positions - np.maximum.accumulate(np.where(starts, positions, 0))
        keep = columns.pop("reason").to_numpy()[order] == 0
        del positions, starts
        # one contiguous array per column (a take from many chunks concatenates them on every
        # call); two columns at a time, as the copies are mostly first touches of fresh memory
        with ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="dwca-media") as pool:
            combined = pool.map(lambda name: (name, columns.pop(name).combine_chunks()), list(columns))
            whole: dict[str, pa.Array] = dict(combined)
            licenses = normalize_licenses(whole["license"])
        license_raw = whole["license"]
        table = pa.Table.from_arrays(
            [
                pa.array(media_index),
                whole["identifier"],
                whole["format"],
                licenses,
                license_raw,
                whole["rightsHolder"],
                whole["creator"],
                whole["publisher"],
                whole["references"],
                whole["title"],
            ],
            schema=MEDIA_SCHEMA,
        )
        return cls(sorted_ids[keep], table, np.zeros(int(keep.sum()), dtype=bool), order[keep])

    def match(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(left, counts): where each id's media start in ``self.ids`` and how many it has."""
        left = np.searchsorted(self.ids, ids, side="left")
        counts = np.searchsorted(self.ids, ids, side="right") - left
        return left, counts

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Which ``ids`` have at least one kept media item (one binary search per id)."""
        return isin_sorted(self.ids, ids)

    def gather(self, media_idx: np.ndarray) -> pa.Table:
        """The table rows of sorted positions ``media_idx`` (from :func:`join_indices`)."""
        return self.table.take(pa.array(self.rows[media_idx]))

    @property
    def orphans(self) -> int:
        return int((~self.matched).sum())


def join_indices(
    ids: np.ndarray, media: MediaSide, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(occurrence row, media position) pairs of the inner join, occurrence order then media order.

    Marks the matched media rows (for the orphan count). Parse threads call this concurrently:
    they only ever set marks to True, so interleaved writes cannot lose one."""
    left, counts = media.match(ids)
    if valid is not None:
        counts[~valid] = 0
    total = int(counts.sum())
    occ_idx = np.repeat(np.arange(len(ids)), counts)
    block_start = np.cumsum(counts) - counts
    media_idx = np.arange(total) + np.repeat(left - block_start, counts)
    media.matched[media_idx] = True
    return occ_idx, media_idx


def snapshot_rows(occurrences: pa.Table, media: MediaSide, media_idx: np.ndarray) -> pa.Table:
    med = media.gather(media_idx)
    return pa.Table.from_arrays(occurrences.columns + med.columns, schema=SNAPSHOT_SCHEMA)


def join_media(occurrences: pa.Table, media: MediaSide) -> pa.Table:
    """Inner join of typed occurrences with their media: one SNAPSHOT_SCHEMA row per media item."""
    occ_idx, media_idx = join_indices(occurrences.column("gbifID").to_numpy(), media)
    if len(occ_idx) == 0:
        return SNAPSHOT_SCHEMA.empty_table()
    return snapshot_rows(occurrences.take(pa.array(occ_idx)), media, media_idx)


def isin_sorted(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``ids`` occur in the sorted array ``sorted_ids``."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids
