"""Small Arrow → numpy helpers shared by the sampling modules.

Columns arrive either plain or dictionary-encoded (reading Parquet with ``read_dictionary`` keeps
low-cardinality strings such as licences, publishers and basisOfRecord as dictionaries, which
saves decoding 10 M strings only to re-encode them). Every helper here accepts both, as an
Array or a ChunkedArray, and works on the dictionary (a few hundred values) wherever it can.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "codes_of",
    "combine_chunks",
    "isin_mask",
    "int32_array",
    "numeric",
    "take",
    "valid_mask",
]

Column = pa.Array | pa.ChunkedArray


def combine_chunks(col: Column) -> pa.Array:
    """One Array (dictionary chunks are unified first, so their indices share one dictionary)."""
    if isinstance(col, pa.Array):
        return col
    if col.num_chunks == 0:
        return pa.array([], col.type)
    if col.num_chunks == 1:
        return col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.unify_dictionaries()
        indices = pa.concat_arrays([c.indices for c in col.chunks])
        return pa.DictionaryArray.from_arrays(indices, col.chunk(0).dictionary)
    return col.combine_chunks()


def int32_array(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """An int32 Array of ``values``, null where ``null`` is True.

    Built from buffers: ``pa.array(values, mask=null)`` took 0.6 s for 1.7 M rows, this 20 ms.
    """
    data = np.ascontiguousarray(values, dtype=np.int32)
    if null is None or not null.any():
        return pa.Array.from_buffers(pa.int32(), len(data), [None, pa.py_buffer(data)])
    data = np.where(null, 0, data).astype(np.int32)
    validity = pa.py_buffer(np.packbits(~null, bitorder="little"))
    return pa.Array.from_buffers(pa.int32(), len(data), [validity, pa.py_buffer(data)], int(null.sum()))


def decoded(col: Column) -> pa.Array:
    """One array with dictionary-encoded values decoded (what value-wise compute functions want)."""
    arr = combine_chunks(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def valid_mask(col: Column) -> np.ndarray:
    """True where the value is not null."""
    if col.null_count == 0:
        return np.ones(len(col), dtype=bool)
    return np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=bool)


def codes_of(col: Column) -> tuple[np.ndarray, pa.Array]:
    """(codes, dictionary): int64 codes into ``dictionary``, -1 for null.

    Codes follow the dictionary, whose order depends on the input's row order: use them as
    internal group ids only, never to break ties (hash the dictionary values for that).
    """
    arr = combine_chunks(col)
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    indices = arr.indices
    codes = indices.to_numpy(zero_copy_only=False) if indices.null_count else indices.to_numpy()
    if indices.null_count:
        codes = np.where(indices.is_valid().to_numpy(zero_copy_only=False), codes, -1)
    codes = codes.astype(np.int64, copy=False)
    dictionary = arr.dictionary
    if dictionary.null_count:  # a null stored in the dictionary (null_encoding="encode") is a null
        null_ids = np.flatnonzero(~dictionary.is_valid().to_numpy(zero_copy_only=False))
        codes = np.where(np.isin(codes, null_ids), -1, codes)
    return codes, dictionary


def _value_set(values: Iterable[object], typ: pa.DataType) -> pa.Array:
    values = list(values)
    if pa.types.is_integer(typ):
        return pa.array([int(v) for v in values], pa.int64())
    if pa.types.is_floating(typ):
        return pa.array([float(v) for v in values], pa.float64())
    if pa.types.is_boolean(typ):
        return pa.array([str(v).lower() in ("true", "1", "yes") for v in values], pa.bool_())
    return pa.array([str(v) for v in values], pa.string())


def isin_mask(col: Column, values: Iterable[object], *, casefold: bool = False) -> np.ndarray:
    """True where the value is one of ``values`` (nulls never match).

    ``values`` are converted to the column's kind (GBIF filter values are text in the spec).
    ``casefold`` compares strings case-insensitively.
    """
    arr = combine_chunks(col)
    if pa.types.is_dictionary(arr.type):
        codes, dictionary = codes_of(arr)
        hit = isin_mask(dictionary, values, casefold=casefold)
        hit = np.append(hit, False)  # code -1 (null) indexes the appended False
        return hit[codes]
    value_type = arr.type
    if pa.types.is_large_string(value_type) or pa.types.is_string(value_type):
        value_set = _value_set(values, pa.string())
        if casefold:
            arr = pc.utf8_lower(arr)
            value_set = pc.utf8_lower(value_set)
    else:
        value_set = _value_set(values, value_type)
        if not pa.types.is_integer(value_type) or not pa.types.is_integer(value_set.type):
            value_set = value_set.cast(value_type)
    out = pc.is_in(arr, value_set=value_set, skip_nulls=True)
    return pc.fill_null(out, False).to_numpy(zero_copy_only=False)


def numeric(col: Column) -> np.ndarray:
    """A float64 numpy array, NaN for null (numbers as text are parsed)."""
    arr = decoded(col)
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        arr = pc.cast(arr, pa.float64())
    return pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _take_column(col: Column, indices: np.ndarray, sorted_: bool) -> Column:
    if isinstance(col, pa.Array):
        return col.take(pa.array(indices, pa.int64()))
    if not sorted_ or col.num_chunks <= 1:
        return col.take(pa.array(indices, pa.int64()))
    bounds = np.cumsum([0, *(len(c) for c in col.chunks)])
    cut = np.searchsorted(indices, bounds)
    parts = [
        col.chunk(i).take(pa.array(indices[cut[i] : cut[i + 1]] - bounds[i], pa.int64()))
        for i in range(col.num_chunks)
        if cut[i + 1] > cut[i]
    ]
    return pa.chunked_array(parts, col.type)


def take(table: pa.Table, indices: np.ndarray) -> pa.Table:
    """``table.take(indices)`` without its cost on many-chunk tables.

    ``Table.take`` on a table read from Parquet (one chunk per row group) was measured at 1.6 s
    for 60 k rows of 10 M, against 7 ms when each chunk takes its own (sorted) indices.
    """
    indices = np.asarray(indices, dtype=np.int64)
    sorted_ = bool(len(indices) < 2 or (np.diff(indices) >= 0).all())
    columns = [_take_column(table.column(i), indices, sorted_) for i in range(table.num_columns)]
    return pa.Table.from_arrays(columns, schema=table.schema)
