"""The manifest build's input: which columns it reads, and rows in batches from a table or Parquet.

Parquet is read batch by batch with the next batch decoded in a background thread, so a build
holds one batch at a time (see :mod:`gbifdl_assets.sampling.manifest`, "Memory").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gbifdl_assets.sampling.arrays import take
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.filters import label_column, label_name_column
from gbifdl_assets.sampling.manifest_table import COPIED_COLUMNS
from gbifdl_assets.sampling.polars_read import take_parquet_rows
from gbifdl_assets.sampling.splits import GROUP_COLUMNS
from gbifdl_assets.specs import TrainingSetSpec, record_field

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


def first_pass_columns(spec: TrainingSetSpec, available: Iterable[str]) -> list[str]:
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


def last_pass_columns(spec: TrainingSetSpec, available: Iterable[str]) -> list[str]:
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
        *(c for c in COPIED_COLUMNS.values() if c != "media_license_raw"),
    ]
    return _resolve(wanted, available)


def input_columns(spec: TrainingSetSpec, available: Iterable[str]) -> list[str]:
    """Every input column a manifest build reads (the others are never loaded)."""
    available = list(available)
    return _resolve([*first_pass_columns(spec, available), *last_pass_columns(spec, available)], available)


class RowSource:
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


class TableSource(RowSource):
    """An in-memory table, sliced into batches of ``batch_rows``."""

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


class ParquetSource(RowSource):
    """A Parquet file, or every ``*.parquet`` under a folder, read batch by batch (one file after the other)."""

    def __init__(self, path: Path, batch_rows: int):
        if not path.exists():
            raise SamplingError(
                f"{path}: not found; give a snapshot or annotated_occurrences Parquet file or folder"
            )
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

    def take(self, rows: np.ndarray, columns: list[str]) -> pa.Table:
        """The rows at sorted global positions ``rows``: polars reads only them (see polars_read.py)."""
        if len(rows):
            try:
                got = take_parquet_rows(
                    self.files,
                    self.schema,
                    rows,
                    columns,
                    dictionary=tuple(self._dictionary_columns(columns)),
                )
            except (pa.ArrowInvalid, OSError) as exc:
                raise SamplingError(
                    f"{self.path}: cannot read it as Parquet ({exc}); is the file complete?"
                ) from None
            if got is not None:
                return got
        return super().take(rows, columns)

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
    source = ParquetSource(Path(path), 1 << 20)
    columns = input_columns(spec, source.names)
    parts = [batch for _, batch in source.batches(columns)]
    return pa.concat_tables(parts) if parts else source.empty(columns)
