"""The balanced manifest: filters → balance → splits, one row per image.

``build_manifest(table, spec, snapshot_id=...)`` turns a snapshot (or annotated_occurrences)
table into :data:`MANIFEST_SCHEMA` rows plus statistics, and the ``check_*`` functions are the
asset checks' logic (the Dagster layer only wraps them). Nothing here imports dagster.

``content_key`` is the sha256 (hex) of the image URL's UTF-8 bytes: the key under which the
downloader stores the image. It addresses the *source URL*, so it is known before anything is
downloaded and two training sets that list the same URL share one stored image; the downloader
records the sha256 of the downloaded *content* separately (two URLs serving identical bytes are
found there, not here).

Rows are sorted by (label, content_key): the order does not depend on the input's row order or
the seed, so two manifests of the same set diff cleanly.

Memory: the input is processed in batches of ``batch_rows`` rows (Parquet is read batch by
batch, with the next batch decoded in a background thread; a table is sliced), keeping only
~50 bytes per surviving row between the passes (row position, URL hash, label, gbifID, media
index, stratum and licence codes). A last pass reads the output columns of the picked rows only,
plus the URLs of duplicate candidates (equal hashes), which are compared there. Peak memory is one
batch plus the compact arrays, not the snapshot (1.5 GB instead of 4.7 GB for 10 M rows): on the
2-core VM this was built on, touching fresh memory costs ~2.5 s per GB in page faults, which made
the read-everything version 2-3x slower in a fresh process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gbifdl_assets.gbif import licenses as lic
from gbifdl_assets.sampling.arrays import codes_of, combine_chunks, isin_mask, take
from gbifdl_assets.sampling.balance import balance
from gbifdl_assets.sampling.filters import (
    SamplingError,
    apply_filters,
    duplicate_candidates,
    label_column,
    label_name_column,
    resolve_duplicates,
)
from gbifdl_assets.sampling.splits import GROUP_COLUMNS, SPLIT_NAMES, assign_splits
from gbifdl_assets.specs import TrainingSetSpec, record_field

__all__ = [
    "MANIFEST_COLUMNS",
    "MANIFEST_METADATA_KEY",
    "MANIFEST_SCHEMA",
    "ManifestResult",
    "SamplingError",
    "build_manifest",
    "build_manifest_from_parquet",
    "check_balance",
    "check_licenses",
    "check_split_leakage",
    "check_unique_urls",
    "class_counts_markdown",
    "content_keys",
    "input_columns",
    "read_input",
    "write_manifest",
]

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("content_key", pa.string(), nullable=False),  # sha256(url) hex: the image-store key
        pa.field("url", pa.string(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),  # accepted taxon key at the label rank
        pa.field("label_name", pa.string()),  # canonical name at the label rank, when the input has it
        pa.field("speciesKey", pa.int64()),
        pa.field("gbifID", pa.int64(), nullable=False),
        pa.field("media_index", pa.int32()),
        pa.field("datasetKey", pa.string()),
        pa.field("publisher", pa.string()),  # publishingOrgKey
        pa.field("license", pa.string(), nullable=False),  # normalised id (gbif.licenses)
        pa.field("license_raw", pa.string()),  # the media licence as GBIF carried it
        pa.field("creator", pa.string()),
        pa.field("rightsHolder", pa.string()),
        pa.field("references", pa.string()),
        pa.field("split", pa.string(), nullable=False),  # train | val | test
        pa.field("split_group", pa.string(), nullable=False),  # the group key the split was drawn for
        pa.field("stratum", pa.string(), nullable=False),  # values of balancing.by, joined by "|"
        pa.field("snapshot_id", pa.string(), nullable=False),
    ]
)
MANIFEST_COLUMNS = tuple(MANIFEST_SCHEMA.names)
#: Parquet schema-metadata key holding the build statistics as JSON
MANIFEST_METADATA_KEY = b"gbifdl.manifest.stats"

log = logging.getLogger(__name__)

# manifest column <- input column (optional ones become nulls when absent)
_COPIED = {
    "speciesKey": "speciesKey",
    "media_index": "media_index",
    "datasetKey": "datasetKey",
    "publisher": "publishingOrgKey",
    "license_raw": "media_license_raw",
    "creator": "creator",
    "rightsHolder": "rightsHolder",
    "references": "references",
}
# low-cardinality text columns worth reading as dictionaries (fewer bytes decoded, faster filters);
# not for high-cardinality ones such as rightsHolder or creator, which read 10x slower that way
_DICTIONARY_COLUMNS = (
    "basisOfRecord",
    "occurrenceStatus",
    "countryCode",
    "media_license",
    "media_license_raw",
    "license",
    "publishingOrgKey",
    "datasetKey",
    "taxonRank",
    "establishmentMeans",
    "institutionCode",
    "species",
    "genus",
    "family",
    "order",
    "class",
    "phylum",
    "kingdom",
    "format",
)


@dataclass
class ManifestResult:
    table: pa.Table  # MANIFEST_SCHEMA
    stats: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------------------------------
def _filter_columns(spec: TrainingSetSpec) -> list[str]:
    cols = []
    for params in (spec.occurrence_filters, spec.exclude_filters):
        for param in params:
            cols.append(record_field(param))
            if param in ("geometry", "hasCoordinate"):
                cols += ["decimalLatitude", "decimalLongitude"]
            if param == "hasGeospatialIssue":
                cols.append("issues")
    return cols


def _resolve(wanted: Iterable[str], available: Iterable[str]) -> list[str]:
    available = list(available)
    by_lower = {c.lower(): c for c in available}
    out: list[str] = []
    for name in wanted:
        real = name if name in available else by_lower.get(name.lower())
        if real is not None and real not in out:
            out.append(real)
    return out


def _pass1_columns(spec: TrainingSetSpec, available: Iterable[str]) -> list[str]:
    """Columns the filters and the balancer read."""
    wanted = [
        "gbifID",
        "identifier",
        "media_index",
        label_column(spec.balancing.label_rank),
        "media_license",
        "media_license_raw",
        "annotation_labels",
        "annotation_conflict",
        *spec.balancing.by,
        *_filter_columns(spec),
    ]
    return _resolve(wanted, available)


def _pass2_columns(spec: TrainingSetSpec, available: Iterable[str]) -> list[str]:
    """Columns the manifest rows and the splits read (for the picked rows only)."""
    rank = spec.balancing.label_rank
    raw = "media_license_raw" if "media_license_raw" in list(available) else "media_license"
    wanted = [
        "gbifID",
        "identifier",
        label_column(rank),
        label_name_column(rank),
        raw,
        *spec.balancing.by,
        *GROUP_COLUMNS[spec.splits.group_by],
        *(c for c in _COPIED.values() if c != "media_license_raw"),
    ]
    return _resolve(wanted, available)


def input_columns(spec: TrainingSetSpec, available: Iterable[str]) -> list[str]:
    """Every input column a manifest build reads (the others are never loaded)."""
    available = list(available)
    return _resolve([*_pass1_columns(spec, available), *_pass2_columns(spec, available)], available)


class _Source:
    """Rows in batches: an in-memory table (sliced) or Parquet files (read batch by batch)."""

    def __init__(self, names: list[str], num_rows: int, label: str):
        self.names = names
        self.num_rows = num_rows
        self.label = label

    def batches(self, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:  # pragma: no cover
        raise NotImplementedError

    def schema_of(self, column: str) -> pa.DataType:  # pragma: no cover
        raise NotImplementedError

    def take(self, rows: np.ndarray, columns: list[str]) -> pa.Table:
        """The rows at sorted global positions ``rows`` (one streaming pass)."""
        if len(rows) == 0:
            return self.empty(columns)
        parts = []
        for offset, batch in self.batches(columns):
            lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
            if hi > lo:
                parts.append(take(batch, rows[lo:hi] - offset))
        if not parts:
            return self.empty(columns)
        return pa.concat_tables(parts, promote_options="permissive").combine_chunks()

    def empty(self, columns: list[str]) -> pa.Table:  # pragma: no cover
        raise NotImplementedError


class _TableSource(_Source):
    def __init__(self, table: pa.Table, batch_rows: int, label: str):
        super().__init__(table.column_names, table.num_rows, label)
        self.table = table
        self.batch_rows = batch_rows

    def batches(self, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
        sub = self.table.select(columns)
        for offset in range(0, max(self.num_rows, 1), self.batch_rows):
            yield offset, sub.slice(offset, self.batch_rows)

    def empty(self, columns: list[str]) -> pa.Table:
        return self.table.select(columns).slice(0, 0)

    def schema_of(self, column: str) -> pa.DataType:
        return self.table.schema.field(column).type


class _ParquetSource(_Source):
    def __init__(self, path: Path, batch_rows: int):
        self.path = path
        self.batch_rows = batch_rows
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
            if not files:
                raise SamplingError(
                    f"{path}: folder holds no .parquet files; give a snapshot Parquet file or folder"
                )
        else:
            files = [path]
        self.files: list[tuple[Path, pq.ParquetFile]] = []
        try:
            for f in files:
                self.files.append((f, pq.ParquetFile(f)))
        except (pa.ArrowInvalid, OSError) as exc:
            raise SamplingError(
                f"{path}: cannot read it as Parquet ({exc}); give a snapshot Parquet file"
            ) from None
        self.schema = self.files[0][1].schema_arrow
        super().__init__(self.schema.names, sum(pf.metadata.num_rows for _, pf in self.files), str(path))

    def _dictionary_columns(self, columns: list[str]) -> list[str]:
        return [
            c for c in columns if c in _DICTIONARY_COLUMNS and pa.types.is_string(self.schema.field(c).type)
        ]

    def batches(self, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
        offset = 0
        for f, _ in self.files:
            try:
                # a fresh reader per pass: read_dictionary is a property of the reader
                pf = pq.ParquetFile(f, read_dictionary=self._dictionary_columns(columns))
                present = [c for c in columns if c in pf.schema_arrow.names]
                batches = pf.iter_batches(batch_size=self.batch_rows, columns=present, use_threads=True)
                for batch in _prefetch(batches):
                    table = pa.Table.from_batches([batch])
                    for c in columns:
                        if c not in present:  # a part file without an optional column
                            table = table.append_column(
                                c, pa.nulls(table.num_rows, self.schema.field(c).type)
                            )
                    yield offset, table.select(columns)
                    offset += table.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise SamplingError(
                    f"{f}: cannot read it as Parquet ({exc}); is the file complete?"
                ) from None

    def empty(self, columns: list[str]) -> pa.Table:
        return pa.schema([self.schema.field(c) for c in columns]).empty_table()

    def schema_of(self, column: str) -> pa.DataType:
        return self.schema.field(column).type


def _prefetch(iterator: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Decode the next batch in a background thread while the caller works on this one.

    Parquet decoding releases the GIL, so on 2 cores reading and filtering overlap.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, iterator, None)
        while True:
            batch = pending.result()
            if batch is None:
                return
            pending = pool.submit(next, iterator, None)
            yield batch


def read_input(path: str | os.PathLike[str], spec: TrainingSetSpec) -> pa.Table:
    """Read the columns a build needs from a Parquet file or folder into memory.

    :func:`build_manifest_from_parquet` streams instead and needs far less memory; this is for
    callers that want the table itself.
    """
    path = Path(path)
    if not path.exists():
        raise SamplingError(
            f"{path}: not found; give a snapshot or annotated_occurrences Parquet file or folder"
        )
    source = _ParquetSource(path, 1 << 20)
    columns = input_columns(spec, source.names)
    parts = [batch for _, batch in source.batches(columns)]
    return pa.concat_tables(parts) if parts else source.empty(columns)


# ---------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------
def content_keys(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """sha256 hex of each URL's UTF-8 bytes."""
    return _content_keys(urls)[0]


def _content_keys(urls: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(sha256 hex per URL, its first 8 bytes as a big-endian uint64: sorts like the hex)."""
    arr = combine_chunks(urls)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    digests = [hashlib.sha256(v).digest() for v in arr.cast(pa.binary()).to_pylist()]
    prefix = np.frombuffer(b"".join(d[:8] for d in digests), dtype=">u8").astype(np.uint64)
    return pa.array([d.hex() for d in digests], pa.string()), prefix


def _as_text(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = combine_chunks(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def _column_or_null(table: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, typ)
    arr = combine_chunks(table.column(name))
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr if arr.type == typ else pc.cast(arr, typ)


def _stratum(table: pa.Table, by: list[str]) -> pa.Array:
    if not by:
        return pa.array([""] * table.num_rows, pa.string())
    parts = [pc.fill_null(_as_text(table.column(c)), "") for c in by]
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "|")


def _manifest_order(labels: np.ndarray, key_prefix: np.ndarray, keys: pa.Array) -> np.ndarray:
    """Row order by (label, content_key): numpy on the keys' 64-bit prefixes (Table.sort_by on
    the hex strings took 0.7 s for 460 k rows); equal prefixes (never seen in practice) fall back
    to a full sort."""
    order = np.lexsort((key_prefix, labels))
    same = (labels[order][1:] == labels[order][:-1]) & (key_prefix[order][1:] == key_prefix[order][:-1])
    if same.any():
        table = pa.table({"label": labels, "content_key": keys})
        return pc.sort_indices(table, [("label", "ascending"), ("content_key", "ascending")]).to_numpy()
    return order


def _label_names(labels: np.ndarray, names: pa.Array | None) -> pa.Array:
    """The most frequent non-null name of each label (ties: the alphabetically first)."""
    if names is None:
        return pa.nulls(len(labels), pa.string())
    import pandas as pd

    df = pd.DataFrame({"label": labels, "name": names.to_pandas()})
    counts = df.dropna().groupby(["label", "name"], sort=True).size().reset_index(name="n")
    if counts.empty:
        return pa.nulls(len(labels), pa.string())
    counts = counts.sort_values(["label", "n", "name"], ascending=[True, False, True], kind="stable")
    best = counts.drop_duplicates("label").set_index("label")["name"]
    return pa.array(pd.Series(labels).map(best).to_numpy(dtype=object), pa.string())


def _previous_urls(previous: pa.Table | pa.Array | pa.ChunkedArray | Iterable[str] | None) -> pa.Array | None:
    if previous is None:
        return None
    if isinstance(previous, pa.Table):
        if "url" not in previous.column_names:
            raise SamplingError("the previous manifest has no url column; give a manifest built by this tool")
        return _as_text(previous.column("url"))
    if isinstance(previous, pa.Array | pa.ChunkedArray):
        return _as_text(previous)
    return pa.array(list(previous), pa.string())


def _ordered(d: dict[int, int]) -> dict[int, int]:
    return {k: d[k] for k in sorted(d)}


def _ints(col: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> np.ndarray:
    arr = combine_chunks(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)[rows]


@dataclass
class _Kept:
    """Phase-1 survivors, compact: one entry per kept row, batches appended."""

    rows: list[np.ndarray] = field(default_factory=list)
    url_hash: list[np.ndarray] = field(default_factory=list)
    label: list[np.ndarray] = field(default_factory=list)
    gbif: list[np.ndarray] = field(default_factory=list)
    media_index: list[np.ndarray] = field(default_factory=list)
    licenses: list[pa.Array] = field(default_factory=list)
    sticky: list[np.ndarray] = field(default_factory=list)
    by: dict[str, list[pa.Array]] = field(default_factory=dict)


def _encoded(parts: list[pa.Array], keep: np.ndarray) -> pa.DictionaryArray:
    """Batches of one column as one dictionary array, rows where ``keep``.

    Filtering the codes in numpy: ``ChunkedArray.filter`` on 8 M dictionary rows took 1.5 s.
    """
    codes, dictionary = codes_of(pa.chunked_array(parts))
    codes = codes[keep]
    indices = pa.array(np.where(codes < 0, 0, codes).astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _provisional_duplicates(
    cand: np.ndarray, url_hash: np.ndarray, gbif: np.ndarray, media_index: np.ndarray
) -> np.ndarray:
    """Candidates that repeat an earlier one by (gbifID, media_index), equal hashes taken as equal URLs."""
    if len(cand) == 0:
        return cand
    order = np.lexsort((cand, media_index[cand], gbif[cand], url_hash[cand]))
    h = url_hash[cand][order]
    repeat = np.zeros(len(cand), dtype=bool)
    repeat[1:] = h[1:] == h[:-1]
    return np.sort(cand[order][repeat])


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _build(
    source: _Source,
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None,
) -> ManifestResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bal = spec.balancing
    rank = bal.label_rank
    label_col = label_column(rank)
    prev_urls = _previous_urls(previous)
    # required columns: checked up front so a bad input fails before a long read
    missing = [c for c in ("gbifID", "identifier", label_col) if c not in source.names]
    if missing:
        raise SamplingError(
            f"the input lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (gbifID and "
            f"identifier are in every snapshot; labels are taken at rank {rank}); "
            f"columns present: {', '.join(source.names[:40])}"
        )
    label_type = source.schema_of(label_col)
    if not pa.types.is_integer(label_type):
        raise SamplingError(
            f"label column {label_col} holds {label_type}, not integer taxon keys; give a snapshot whose "
            f"{label_col} is GBIF's accepted key"
        )
    missing_by = [c for c in bal.by if c not in source.names]
    if missing_by:
        raise SamplingError(
            f"balancing.by names column{'s' if len(missing_by) > 1 else ''} {', '.join(missing_by)} that the "
            "input does not have; use snapshot columns such as publishingOrgKey, datasetKey, institutionCode, "
            f"countryCode, recordedBy (present: {', '.join(source.names[:40])})"
        )
    missing_group = [c for c in GROUP_COLUMNS[spec.splits.group_by] if c not in source.names]
    if missing_group:
        raise SamplingError(
            f"splits.group_by: {spec.splits.group_by} needs column{'s' if len(missing_group) > 1 else ''} "
            f"{', '.join(missing_group)}, which the input lacks; choose another group_by or give a full snapshot"
        )

    # pass 1: filters, batch by batch, keeping compact per-row data
    kept = _Kept(by={b: [] for b in bal.by})
    dropped: dict[str, int] = {}
    not_applied: dict[str, str] = {}
    notes: list[str] = []
    input_rows = 0
    cols1 = _pass1_columns(spec, source.names)
    for offset, batch in source.batches(cols1):
        fr = apply_filters(batch, spec, label_col=label_col, dedup=False)
        input_rows += fr.input_rows
        for reason, count in fr.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        not_applied, notes = fr.not_applied, fr.notes
        r = fr.rows
        if len(r) == 0:
            continue
        kept.rows.append(r + offset)
        kept.url_hash.append(fr.url_hash)
        kept.label.append(_ints(batch.column(label_col), r))
        kept.gbif.append(_ints(batch.column("gbifID"), r))
        kept.media_index.append(
            _ints(batch.column("media_index"), r) if "media_index" in batch.column_names else np.zeros(len(r))
        )
        kept.licenses.append(fr.licenses.take(pa.array(r)))
        for b in bal.by:
            kept.by[b].append(take(batch.select([b]), r).column(0))
        if prev_urls is not None:
            kept.sticky.append(isin_mask(batch.column("identifier"), prev_urls)[r])
    timings["filters_s"] = time.perf_counter() - t0
    log.info("filtered %d rows in %.1f s", input_rows, timings["filters_s"])

    rows = _concat(kept.rows, np.int64)
    url_hash = _concat(kept.url_hash, np.uint64)
    media_index = _concat(kept.media_index, np.int64)
    gbif = _concat(kept.gbif, np.int64)
    labels_all = _concat(kept.label, np.int64)
    sticky_all = _concat(kept.sticky, bool) if prev_urls is not None else None
    by_parts, lic_parts = kept.by, kept.licenses
    del kept

    # Duplicate URLs across the whole input. Rows with equal 64-bit hashes are candidates; they
    # are resolved as if equal hashes meant equal URLs (first by gbifID, media_index kept), and
    # the candidates' strings are read with the picked rows in the last pass and compared: only
    # a true hash collision between different URLs (~n²/2⁶⁵) redoes the selection.
    cand = duplicate_candidates(url_hash)
    dup = _provisional_duplicates(cand, url_hash, gbif, media_index)
    pass2 = _pass2_columns(spec, source.names)
    if "media_index" in source.names and "media_index" not in pass2:
        pass2.append("media_index")
    for _attempt in range(2):  # the second round only after a hash collision
        keep = np.ones(len(rows), dtype=bool)
        keep[dup] = False
        kept_pos = np.flatnonzero(keep)
        br = None
        if len(kept_pos):
            compact = pa.table(
                {
                    label_col: labels_all[keep],
                    "gbifID": gbif[keep],
                    **{b: _encoded(by_parts[b], keep) for b in bal.by},
                }
            )
            t1 = time.perf_counter()
            br = balance(
                compact,
                bal,
                label_col=label_col,
                url_hash=url_hash[keep],
                sticky=sticky_all[keep] if sticky_all is not None else None,
            )
            timings["balance_s"] = time.perf_counter() - t1
        # last pass: the output columns of the picked rows, and the candidates' URLs
        t2 = time.perf_counter()
        picked_pos = kept_pos[br.indices] if br is not None else np.zeros(0, np.int64)
        wanted = np.union1d(picked_pos, cand)
        got = source.take(rows[wanted], pass2)
        timings["read_picked_s"] = time.perf_counter() - t2
        if len(cand):
            at = np.searchsorted(wanted, cand)
            cols = [c for c in ("identifier", "gbifID", "media_index") if c in got.column_names]
            exact = resolve_duplicates(take(got.select(cols), at), cand)
            if not np.array_equal(exact, dup):
                log.warning("URL hash collision between different URLs: redoing the selection")
                dup = exact
                continue
        break
    if br is None:
        reasons = ", ".join(f"{k}: {v}" for k, v in {**dropped, "duplicate_url": len(dup)}.items() if v)
        raise SamplingError(
            f"no images left after filtering {input_rows} rows ({reasons or 'the input is empty'}); "
            "loosen occurrence_filters/exclude_filters, the licence allowlist or the annotation policy"
        )
    if len(br.indices) == 0:
        raise SamplingError(
            f"no class keeps min_per_class={bal.min_per_class} images: all {len(br.below_min)} classes "
            f"are below it (largest: {max(br.below_min.values(), default=0)} images); lower "
            "balancing.min_per_class or widen the taxa and filters"
        )
    dropped["duplicate_url"] = len(dup)
    sel = take(got, np.searchsorted(wanted, picked_pos))
    lic_picked = combine_chunks(_encoded(lic_parts, keep).take(pa.array(br.indices)))
    t3 = time.perf_counter()
    sp = assign_splits(sel, spec.splits)
    timings["splits_s"] = time.perf_counter() - t3

    t4 = time.perf_counter()
    urls = _as_text(sel.column("identifier"))
    labels = combine_chunks(sel.column(label_col)).cast(pa.int64())
    name_col = label_name_column(rank)
    names = _as_text(sel.column(name_col)) if name_col in sel.column_names else None
    keys, key_prefix = _content_keys(urls)
    raw_col = "media_license_raw" if "media_license_raw" in sel.column_names else "media_license"
    columns: dict[str, pa.Array] = {
        "content_key": keys,
        "url": urls,
        "label": labels,
        "label_name": _label_names(labels.to_numpy(zero_copy_only=False), names),
        "gbifID": combine_chunks(sel.column("gbifID")).cast(pa.int64()),
        "license": _as_text(lic_picked),
        "license_raw": _column_or_null(sel, raw_col, pa.string()),
        "split": sp.split,
        "split_group": sp.group,
        "stratum": _stratum(sel, list(bal.by)),
        "snapshot_id": pa.array([snapshot_id] * sel.num_rows, pa.string()),
    }
    for out_name, in_name in _COPIED.items():
        if out_name not in columns:
            columns[out_name] = _column_or_null(sel, in_name, MANIFEST_SCHEMA.field(out_name).type)
    out = pa.Table.from_arrays([columns[n] for n in MANIFEST_COLUMNS], schema=MANIFEST_SCHEMA)
    out = out.take(pa.array(_manifest_order(labels.to_numpy(zero_copy_only=False), key_prefix, keys)))
    timings["assemble_s"] = time.perf_counter() - t4
    timings["total_s"] = time.perf_counter() - t0

    licence_counts = pc.value_counts(out.column("license")).to_pylist()
    licence_mix = {d["values"]: int(d["counts"]) for d in sorted(licence_counts, key=lambda d: -d["counts"])}
    per_class = _ordered(br.per_class)
    counts = list(per_class.values())
    stats: dict[str, Any] = {
        "snapshot_id": snapshot_id,
        "source": source.label,
        "training_set": spec.name,
        "spec_fingerprint": spec.fingerprint(
            "balancing", "splits", "annotations", "licenses", "occurrence_filters", "exclude_filters"
        ),
        "label_rank": rank,
        "label_column": label_col,
        "mode": bal.mode,
        "seed": bal.seed,
        "input_rows": input_rows,
        "images": out.num_rows,
        "classes": len(per_class),
        "min_class_images": min(counts),
        "max_class_images": max(counts),
        "per_class": per_class,
        "per_split": sp.counts,
        "split_fractions": {k: round(v, 6) for k, v in sp.fractions.items()},
        "split_groups": sp.group_counts,
        "split_group_by": spec.splits.group_by,
        "split_fallback_rows": sp.fallback,
        "licenses": licence_mix,
        "dropped": {**dropped, **br.dropped},
        "classes_below_min": _ordered(br.below_min),
        "shortfall": _ordered(br.shortfall),
        "shortfall_classes": len(br.shortfall),
        "shortfall_images": int(sum(br.shortfall.values())),
        "strata_sampled": br.stratum_count,
        "filters_not_applied": not_applied,
        "notes": notes,
        "previous": br.previous,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    log.info(
        "manifest: %d images in %d classes from %d rows in %.1f s",
        out.num_rows,
        len(per_class),
        input_rows,
        timings["total_s"],
    )
    return ManifestResult(table=out, stats=stats)


def build_manifest(
    table: pa.Table,
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None = None,
    source: str = "input table",
    batch_rows: int = 1 << 20,
) -> ManifestResult:
    """Filter, balance and split ``table`` into a manifest; SamplingError (naming ``source``) on bad input.

    ``previous``: the previous manifest of this training set (or its URLs); its images are kept
    wherever the quotas allow (see balance.py, "Refresh guarantee").
    """
    try:
        return _build(
            _TableSource(table, batch_rows, source), spec, snapshot_id=snapshot_id, previous=previous
        )
    except SamplingError as exc:
        raise SamplingError(f"{source}: {exc}") from None


def build_manifest_from_parquet(
    path: str | os.PathLike[str],
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None = None,
    batch_rows: int = 1 << 20,
) -> ManifestResult:
    """:func:`build_manifest` streaming a Parquet file or folder (bounded memory)."""
    path = Path(path)
    if not path.exists():
        raise SamplingError(
            f"{path}: not found; give a snapshot or annotated_occurrences Parquet file or folder"
        )
    source = _ParquetSource(path, batch_rows)
    try:
        return _build(source, spec, snapshot_id=snapshot_id, previous=previous)
    except SamplingError as exc:
        text = str(exc)
        raise SamplingError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def write_manifest(result: ManifestResult, path: str | os.PathLike[str]) -> int:
    """Write the manifest Parquet atomically (temp file + rename), stats in the schema metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(result.table.schema.metadata or {})
    meta[MANIFEST_METADATA_KEY] = json.dumps(result.stats, sort_keys=True, default=str).encode()
    table = result.table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


# ---------------------------------------------------------------------------------------------------
# checks (the Dagster asset checks call these)
# ---------------------------------------------------------------------------------------------------
def _class_counts(table: pa.Table, label: str = "label") -> dict[int, int]:
    vc = pc.value_counts(table.column(label)).to_pylist()
    return {int(d["values"]): int(d["counts"]) for d in vc if d["values"] is not None}


def check_balance(table: pa.Table, tolerance: float) -> tuple[bool, dict[str, Any]]:
    """Passes when the smallest class has at least (1 - tolerance) x the images of the largest."""
    counts = _class_counts(table)
    if not counts:
        return False, {"error": "the manifest is empty", "classes": 0}
    lo, hi = min(counts.values()), max(counts.values())
    ratio = lo / hi
    threshold = 1.0 - float(tolerance)
    ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    details = {
        "classes": len(counts),
        "min_class_images": lo,
        "max_class_images": hi,
        "min_max_ratio": round(ratio, 6),
        "threshold": round(threshold, 6),
        "smallest": [{"label": k, "images": v} for k, v in ranked[:5]],
        "largest": [{"label": k, "images": v} for k, v in ranked[-5:][::-1]],
    }
    return ratio >= threshold - 1e-12, details


def check_licenses(table: pa.Table, allowlist: Iterable[str]) -> tuple[bool, dict[str, Any]]:
    """Passes when every image's licence is in the allowlist (ids or families, as in a spec)."""
    allowed = set(lic.parse_license_allowlist(list(allowlist)))
    vc = pc.value_counts(table.column("license")).to_pylist()
    counts = {(d["values"] if d["values"] is not None else "null"): int(d["counts"]) for d in vc}
    bad = {k: v for k, v in counts.items() if k not in allowed}
    return not bad, {"licenses": counts, "disallowed": bad, "allowed": sorted(allowed)}


def check_split_leakage(table: pa.Table, group_column: str = "split_group") -> tuple[bool, dict[str, Any]]:
    """Passes when no value of ``group_column`` appears in more than one split."""
    if group_column not in table.column_names:
        return False, {"error": f"no column {group_column!r} in the manifest"}
    agg = (
        table.select([group_column, "split"]).group_by(group_column).aggregate([("split", "count_distinct")])
    )
    leaking = agg.filter(pc.greater(agg.column("split_count_distinct"), 1))
    examples = [str(v) for v in leaking.column(group_column).to_pylist()[:10]]
    return leaking.num_rows == 0, {
        "group_column": group_column,
        "groups": agg.num_rows,
        "leaking_groups": leaking.num_rows,
        "examples": examples,
    }


def check_unique_urls(table: pa.Table) -> tuple[bool, dict[str, Any]]:
    """Passes when no URL appears twice."""
    vc = pc.value_counts(table.column("url"))
    counts = vc.field("counts").to_numpy(zero_copy_only=False) if len(vc) else np.zeros(0, np.int64)
    dup = counts > 1
    examples = (
        [str(v) for v in vc.field("values").filter(pa.array(dup)).to_pylist()[:10]] if dup.any() else []
    )
    return not dup.any(), {
        "rows": table.num_rows,
        "distinct_urls": len(vc),
        "duplicated_urls": int(dup.sum()),
        "examples": examples,
    }


def class_counts_markdown(table: pa.Table, *, limit: int = 100) -> str:
    """A markdown table of images per class and split (the smallest classes first)."""
    import pandas as pd

    df = table.select(["label", "label_name", "split"]).to_pandas()
    if df.empty:
        return "_empty manifest_"
    pivot = pd.crosstab([df["label"], df["label_name"].fillna("")], df["split"])
    for name in SPLIT_NAMES:
        if name not in pivot.columns:
            pivot[name] = 0
    pivot = pivot[list(SPLIT_NAMES)]
    pivot["images"] = pivot.sum(axis=1)
    pivot = pivot.reset_index().sort_values(["images", "label"], kind="stable")
    lines = ["| label | name | images | train | val | test |", "|---:|---|---:|---:|---:|---:|"]
    for row in pivot.head(limit).itertuples(index=False):
        lines.append(
            f"| {row.label} | {row.label_name} | {row.images} | {row.train} | {row.val} | {row.test} |"
        )
    if len(pivot) > limit:
        lines.append(f"| … | {len(pivot) - limit} more classes | | | | |")
    return "\n".join(lines)
