"""Value conversion from raw archive text to typed snapshot columns (vectorised).

Shared by the archive and the search-API paths: strings with invalid UTF-8 replaced and counted,
integers and floats that tolerate GBIF's quirks, issue lists, licence enum names, gbifIDs, and
whole occurrence tables (:func:`convert_occurrences`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.gbif.dwca.problems import RowProblems
from gbifdl_assets.gbif.dwca.schema import OCCURRENCE_SCHEMA
from gbifdl_assets.gbif.licenses import (
    GBIF_LICENSE_ENUMS,
    gbif_license_enum,
    normalize_license,
)

Column = pa.Array | pa.ChunkedArray


def _replace_invalid_utf8(chunk: pa.Array) -> tuple[pa.Array, int]:
    replaced = 0
    values = []
    for value in chunk.to_pylist():
        if value is None:
            values.append(None)
            continue
        try:
            values.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(value.decode("utf-8", "replace"))
            replaced += 1
    return pa.array(values, pa.string()), replaced


def as_strings(arr: Column, problems: RowProblems | None = None, where: str = "") -> Column:
    """binary -> string; invalid UTF-8 is replaced by U+FFFD and counted (per file) in ``problems``.

    Chunked columns stay chunked: combining chunks copies every byte, which costs more than the
    conversions themselves.
    """
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    fixed = []
    for chunk in chunks:
        try:
            fixed.append(chunk.cast(pa.string()))
        except pa.ArrowInvalid:
            good, replaced = _replace_invalid_utf8(chunk)
            fixed.append(good)
            if problems is not None:
                problems.replaced_utf8[where] += replaced
    return pa.chunked_array(fixed, pa.string()) if isinstance(arr, pa.ChunkedArray) else fixed[0]


_NULL_STR = pa.scalar(None, pa.string())


def to_int(arr: Column, typ: pa.DataType | None = None) -> Column:
    """Integers from text; '28417.0' -> 28417; anything else (or out of range) -> null."""
    typ = typ or pa.int64()
    arr = as_strings(arr)
    try:
        return pc.cast(arr, typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pc.replace_substring_regex(pc.utf8_trim_whitespace(arr), r"\.0*$", "")
    text = pc.if_else(pc.match_substring_regex(text, r"^[+-]?\d{1,18}$"), text, _NULL_STR)
    wide = pc.cast(text, pa.int64())
    if typ == pa.int64():
        return wide
    info = np.iinfo(typ.to_pandas_dtype())
    in_range = pc.and_(pc.greater_equal(wide, int(info.min)), pc.less_equal(wide, int(info.max)))
    return pc.cast(pc.if_else(in_range, wide, pa.scalar(None, pa.int64())), typ)


def to_float(arr: Column) -> Column:
    arr = as_strings(arr)
    try:
        return pc.cast(arr, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    trimmed = pc.utf8_trim_whitespace(arr)
    numeric = pc.match_substring_regex(trimmed, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    return pc.cast(pc.if_else(numeric, trimmed, _NULL_STR), pa.float64())


def map_distinct(arr: Column, mapper: Callable[[pa.Array], pa.Array]) -> Column:
    """Apply ``mapper`` to the distinct values only and gather the results (columns such as the
    issue list or the licence repeat a few hundred values over millions of rows)."""
    encoded = pc.dictionary_encode(arr)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    if not chunks:
        return mapper(arr)
    mapped = mapper(chunks[0].dictionary)  # dictionary_encode unifies the dictionary over chunks
    out = [mapped.take(chunk.indices) for chunk in chunks]
    return pa.chunked_array(out, mapped.type) if isinstance(encoded, pa.ChunkedArray) else out[0]


def _split_issues(values: pa.Array) -> pa.Array:
    lists = pc.split_pattern(values, ";")
    # rebuilding from offsets turns null entries (no issue) into empty lists, as the API has them
    return pa.ListArray.from_arrays(lists.offsets, lists.values)


def to_issue_lists(arr: Column) -> Column:
    """';'-joined issue names -> list<string>, empty list for none (as the search API has it)."""
    arr = as_strings(arr)
    lists = map_distinct(arr, _split_issues)
    return (
        pc.if_else(pc.is_null(lists), pa.scalar([], pa.list_(pa.string())), lists)
        if lists.null_count
        else lists
    )


@lru_cache(maxsize=4096)
def _license_enum(value: str) -> str:
    text = value.strip()
    upper = re.sub(r"[\s.-]", "_", text.upper())
    if upper in GBIF_LICENSE_ENUMS:
        return upper
    return gbif_license_enum(normalize_license(text)) or ("UNSPECIFIED" if not text else "UNSUPPORTED")


def _license_enum_array(values: pa.Array) -> pa.Array:
    return pa.array([None if v is None else _license_enum(v) for v in values.to_pylist()], pa.string())


def license_enum_names(values: Column | Sequence[str | None]) -> Column:
    """Record licences as GBIF enum names: archives already carry them (``CC_BY_4_0``); the search
    API gives legalcode URLs. Unreadable values become ``UNSUPPORTED``; missing ones stay null."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, pa.string())
    return map_distinct(as_strings(values), _license_enum_array)


def parse_ids(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ids, valid mask) from a gbifID column, tolerating stray whitespace ('  123 ')."""
    if pa.types.is_integer(arr.type):
        ints = arr.cast(pa.int64())
    else:
        text = as_strings(arr)
        try:
            ints = pc.cast(text, pa.int64())
        except pa.ArrowInvalid:
            ints = to_int(text)
    valid = ~np.asarray(ints.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    ids = ints.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return ids, valid


def _converter(f: pa.Field) -> Callable[[pa.Array], pa.Array]:
    if f.name == "issues":
        return to_issue_lists
    if f.name == "license":
        return license_enum_names
    if pa.types.is_integer(f.type):
        return lambda a, t=f.type: to_int(a, t)
    if pa.types.is_floating(f.type):
        return to_float
    return as_strings


def convert_occurrences(
    raw: pa.Table | pa.RecordBatch,
    sources: dict[str, str],
    problems: RowProblems | None = None,
    where: str = "",
    *,
    ids: np.ndarray | None = None,
) -> pa.Table:
    """Raw (binary) archive columns -> a typed :data:`OCCURRENCE_SCHEMA` table."""
    n = raw.num_rows
    columns = []
    for f in OCCURRENCE_SCHEMA:
        src = sources.get(f.name)
        if f.name == "gbifID" and ids is not None:
            columns.append(pa.array(ids, pa.int64()))
        elif src is None:
            columns.append(pa.array([[]] * n, f.type) if f.name == "issues" else pa.nulls(n, f.type))
        else:
            col = as_strings(raw.column(src), problems, where)
            columns.append(_converter(f)(col))
    return pa.Table.from_arrays(columns, schema=OCCURRENCE_SCHEMA)
