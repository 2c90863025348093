"""Manifest rows as the download pipeline reads them, and the content key that names each image.

The pipeline accepts rows in every shape a caller has at hand (a Parquet table, record batches, a
batch reader, plain dicts) and reads them in bounded batches, so a manifest of millions of rows is
never held as Python objects at once. A row's ``content_key`` is ``sha256(url)``: it names the image
in the store and the ledger, so a row that carries a different one is refused rather than trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

#: One manifest row: at least ``url``, usually ``content_key`` and the label columns.
Row = Mapping[str, Any]


def row_batches(rows: Any, size: int = 1024) -> Iterator[list[dict[str, Any]]]:
    """Rows as lists of dicts, from a Table, RecordBatch(es), a RecordBatchReader or dicts."""
    if isinstance(rows, pa.Table):
        for batch in rows.to_batches(size):
            yield batch.to_pylist()
        return
    if isinstance(rows, pa.RecordBatch):
        rows = [rows]
    chunk: list[dict[str, Any]] = []
    for item in rows:
        if isinstance(item, pa.RecordBatch):
            if chunk:
                yield chunk
                chunk = []
            for start in range(0, item.num_rows, size):
                yield item.slice(start, size).to_pylist()
            continue
        chunk.append(item if isinstance(item, dict) else dict(item))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def row_count(rows: Any) -> int | None:
    """How many rows there are, when that is known without reading them (for progress reports)."""
    if isinstance(rows, (pa.Table, pa.RecordBatch)):
        return rows.num_rows
    try:
        return len(rows)
    except TypeError:
        return None


def content_key_of(row: Row) -> tuple[str | None, str | None, str | None]:
    """(content_key, url, problem) of a row; content_key is computed when the row lacks it."""
    url = row.get("url")
    if not isinstance(url, str) or not url:
        return row.get("content_key"), None, "row has no url"
    expected = hashlib.sha256(url.encode("utf-8")).hexdigest()
    given = row.get("content_key")
    if given is None:
        return expected, url, None
    if given != expected:
        return given, url, f"content_key {given} is not sha256(url) = {expected}"
    return given, url, None
