"""Reading picked rows from Parquet with polars: the manifest build's last pass.

The last pass needs the output columns (URLs, creators, rights holders, references, ...) of a few
rows in every row group: about 670 k of 10 M in the benchmark. pyarrow can only decode whole
columns (no row selection below a row group), so that pass decoded ~10 M strings per column to
keep 7 %. polars' Parquet reader evaluates a row-index predicate first and materialises only the
selected rows of the other columns, on all cores: 2x faster than the pyarrow pass, measured on the
10 M-row bench input (README, "Performance"). That is why the core depends on polars; nothing
else in the build uses it, and the pyarrow pass stays as the fallback (inputs polars would read
differently, see :func:`take_parquet_rows`).

Memory: one polars query over the whole input held the selected columns of many row groups at
once, so the rows are read :data:`CHUNK_ROWS` at a time, one query per slice of the input: polars
skips the pages outside the slice, and a slice without a picked row is not read at all. Reading
670 k of the bench's 10 M rows (row groups of 1 M rows) alone in a process peaked at 1.96 GB in one
query, 0.65 GB in 512 K-row slices (0.55 GB in 256 K-row ones), in 2.4 s, 2.1 s and 2.7 s. The
low-cardinality text columns come back dictionary-encoded (``dictionary``), as the pyarrow pass
reads them: 1.16 M picked rows took 0.2 GB instead of 0.34 GB. The next slice is read while one is
converted: in interleaved runs of the whole 10 M-row build that kept it at the speed of the single
query (median 7.7 s against 7.6 s; 9.3 s without the overlap against 8.3 s at a higher load).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gbifdl_assets.sampling.arrays import combine_chunks

__all__ = ["take_parquet_rows"]

_ROW_INDEX = "__gbifdl_row"
_MAX_ROWS = (1 << 32) - 1  # polars' default row index is UInt32
#: input rows per polars query (see the module docstring, "Memory")
CHUNK_ROWS = 1 << 19


def _same_columns(files: list[tuple[Path, pq.ParquetFile]], schema: pa.Schema, columns: list[str]) -> bool:
    for _, pf in files:
        names = pf.schema_arrow.names
        for c in columns:
            if c not in names or pf.schema_arrow.field(c).type != schema.field(c).type:
                return False
    return True


def _readable(typ: pa.DataType) -> bool:
    """Types whose polars round trip gives the same Arrow values back (after a cast)."""
    if pa.types.is_dictionary(typ) or pa.types.is_decimal(typ) or pa.types.is_temporal(typ):
        return False
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _readable(typ.value_type)
    return (
        pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or pa.types.is_boolean(typ)
        or pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
    )


def take_parquet_rows(
    files: list[tuple[Path, pq.ParquetFile]],
    schema: pa.Schema,
    rows: np.ndarray,
    columns: list[str],
    *,
    chunk_rows: int = CHUNK_ROWS,
    dictionary: tuple[str, ...] = (),
) -> pa.Table | None:
    """The rows at sorted global positions ``rows`` of ``files`` read one after the other, as a table
    of ``schema``'s types, the ``dictionary`` columns dictionary-encoded (as the pyarrow pass reads
    them: a publisher or licence is then stored once, not once per row); None when polars cannot be
    used for this input (not installed, a part file lacking a column or typing it differently, a type
    polars would not give back as it was, more than 2^32 rows, a file polars fails to read), and the
    caller reads the rows itself. ``chunk_rows``: input rows per polars query (see "Memory")."""
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - polars is a dependency; a trimmed install still works
        return None
    total = sum(pf.metadata.num_rows for _, pf in files)
    if total > _MAX_ROWS or not _same_columns(files, schema, columns):
        return None
    if not all(_readable(schema.field(c).type) for c in columns):
        return None
    rows = np.asarray(rows, dtype=np.int64)
    scan = pl.scan_parquet([str(f) for f, _ in files], row_index_name=_ROW_INDEX, hive_partitioning=False)
    target = pa.schema([schema.field(c) for c in columns])
    chunks: dict[str, list[pa.Array]] = {c: [] for c in columns}
    # the positions of each slice of the input: a slice without any is skipped
    bounds = np.searchsorted(rows, np.arange(0, total + chunk_rows, chunk_rows))
    slices = [int(i) for i in np.flatnonzero(bounds[1:] > bounds[:-1])]

    def query(i: int) -> pl.DataFrame:
        wanted = pl.Series(_ROW_INDEX, rows[bounds[i] : bounds[i + 1]].astype(np.uint32))
        frame = (
            scan.slice(i * chunk_rows, chunk_rows)
            .filter(pl.col(_ROW_INDEX).is_in(wanted.implode()))
            .select(columns)
            .collect()
        )
        if frame.height != len(wanted):  # pragma: no cover - a row index beyond the files: the caller's bug
            raise ValueError(f"asked for {len(wanted)} rows, polars read {frame.height}")
        return frame

    # the next slice is read (polars lets go of the GIL) while this one is turned into Arrow arrays:
    # one query after the other left a core idle between them (see the module docstring)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(query, slices[0]) if slices else None
        for n in range(len(slices)):
            try:
                frame = pending.result()
            except pl.exceptions.PolarsError:
                # a file polars cannot read (damaged, or a Parquet feature it lacks): the pyarrow pass
                # reads it or raises the error the build has always raised for it
                return None
            pending = pool.submit(query, slices[n + 1]) if n + 1 < len(slices) else None
            part = frame.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(target)
            for c in columns:
                column = part.column(c)
                chunks[c] += (pc.dictionary_encode(column) if c in dictionary else column).chunks
            del frame, part
    if not chunks[columns[0]]:
        return target.empty_table()
    # one column at a time, its slices dropped as it is joined: never two copies of the whole table
    arrays = [combine_chunks(pa.chunked_array(chunks.pop(c))) for c in columns]
    fields = [target.field(c).with_type(a.type) for c, a in zip(columns, arrays, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
