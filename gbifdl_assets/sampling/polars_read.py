"""Reading picked rows from Parquet with polars: the manifest build's last pass.

The last pass needs the output columns (URLs, creators, rights holders, references, ...) of a few
rows in every row group: about 670 k of 10 M in the benchmark. pyarrow can only decode whole
columns (no row selection below a row group), so that pass decoded ~10 M strings per column to
keep 7 %. polars' Parquet reader evaluates a row-index predicate first and materialises only the
selected rows of the other columns, on all cores: 2x faster than the pyarrow pass, measured on the
10 M-row bench input (README, "Performance"). That is why the core depends on polars; nothing
else in the build uses it, and the pyarrow pass stays as the fallback (inputs polars would read
differently, see :func:`take_parquet_rows`).

Memory: polars decodes row group by row group and keeps only the selected rows, so the pass holds
the picked rows plus the row groups in flight, as the pyarrow pass did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["take_parquet_rows"]

_ROW_INDEX = "__gbifdl_row"
_MAX_ROWS = (1 << 32) - 1  # polars' default row index is UInt32


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
    files: list[tuple[Path, pq.ParquetFile]], schema: pa.Schema, rows: np.ndarray, columns: list[str]
) -> pa.Table | None:
    """The rows at sorted global positions ``rows`` of ``files`` read one after the other, as a table
    of ``schema``'s types; None when polars cannot be used for this input (not installed, a part file
    lacking a column or typing it differently, a type polars would not give back as it was, more
    than 2^32 rows, a file polars fails to read), and the caller reads the rows itself."""
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - polars is a dependency; a trimmed install still works
        return None
    total = sum(pf.metadata.num_rows for _, pf in files)
    if total > _MAX_ROWS or not _same_columns(files, schema, columns):
        return None
    if not all(_readable(schema.field(c).type) for c in columns):
        return None
    wanted = pl.Series(_ROW_INDEX, np.asarray(rows, dtype=np.uint32))
    try:
        frame = (
            pl.scan_parquet([str(f) for f, _ in files], row_index_name=_ROW_INDEX, hive_partitioning=False)
            .filter(pl.col(_ROW_INDEX).is_in(wanted.implode()))
            .select(columns)
            .collect()
        )
    except pl.exceptions.PolarsError:
        # a file polars cannot read (damaged, or a Parquet feature it lacks): the pyarrow pass reads
        # it or raises the error the build has always raised for it
        return None
    if frame.height != len(rows):  # pragma: no cover - a row index beyond the files: the caller's bug
        raise ValueError(f"asked for {len(rows)} rows, polars read {frame.height}")
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    target = pa.schema([schema.field(c) for c in columns])
    return table.cast(target).combine_chunks()
