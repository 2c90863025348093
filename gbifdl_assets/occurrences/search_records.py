"""Search-API occurrence records (JSON, with ``media[]``) as snapshot rows.

The search path builds the same in-between tables as the archive path
(:func:`gbifdl_assets.gbif.dwca.raw_media_table`, :class:`~gbifdl_assets.gbif.dwca.MediaSide`,
:func:`~gbifdl_assets.gbif.dwca.join_media`), so media filtering, ``media_index`` numbering and type
conversion cannot drift apart; only the value parsing differs (JSON numbers instead of text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from gbifdl_assets.gbif.dwca import (
    MEDIA_SOURCE_COLUMNS,
    OCCURRENCE_SCHEMA,
    IngestReport,
    MediaSide,
    join_media,
    license_enum_names,
    raw_media_table,
)

__all__ = ["records_to_snapshot_table"]


def _json_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _json_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _json_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = ";".join(str(v) for v in value if v is not None)
    text = str(value)
    return text if text != "" else None


_OCC_FIELDS = [f for f in OCCURRENCE_SCHEMA if f.name not in ("gbifID", "issues", "license")]


def records_to_snapshot_table(
    records: Iterable[Mapping[str, Any]], *, first_media_row: int = 0, seen: set[int] | None = None
) -> tuple[pa.Table, IngestReport]:
    """Search-API occurrence records (with ``media[]``) -> snapshot rows, plus counts.

    The same classification, numbering and join as the archive path, on the same in-between
    tables; only the value parsing differs (JSON numbers instead of text). A record seen before
    (paging over a changing index can return one twice; ``seen`` carries ids across batches) is
    skipped and counted as ``duplicate``.
    """
    seen = set() if seen is None else seen
    report = IngestReport(archive="search", kind="search")
    ids: list[int] = []
    columns: dict[str, list[Any]] = {f.name: [] for f in _OCC_FIELDS}
    issues: list[list[str]] = []
    licenses: list[str | None] = []
    media_ids: list[int] = []
    media_cols: dict[str, list[Any]] = {c: [] for c in MEDIA_SOURCE_COLUMNS}
    for record in records:
        gbif_id = _json_int(record.get("gbifID", record.get("key")))
        if gbif_id is None:
            report.skipped["bad_id"] += 1
            continue
        if gbif_id in seen:
            report.skipped["duplicate"] += 1
            continue
        seen.add(gbif_id)
        ids.append(gbif_id)
        for f in _OCC_FIELDS:
            value = record.get(f.name)
            if pa.types.is_integer(f.type):
                columns[f.name].append(_json_int(value))
            elif pa.types.is_floating(f.type):
                columns[f.name].append(_json_float(value))
            else:
                columns[f.name].append(_json_str(value))
        issues.append([str(i) for i in record.get("issues") or [] if i])
        licenses.append(_json_str(record.get("license")))
        for item in record.get("media") or []:
            if not isinstance(item, Mapping):
                continue
            media_ids.append(gbif_id)
            for c in MEDIA_SOURCE_COLUMNS:
                media_cols[c].append(_json_str(item.get(c)))
    report.occurrences = len(ids)
    report.media_rows = len(media_ids)
    id_array = np.asarray(ids, dtype=np.int64)
    occ_columns = []
    for f in OCCURRENCE_SCHEMA:
        if f.name == "gbifID":
            occ_columns.append(pa.array(id_array, pa.int64()))
        elif f.name == "issues":
            occ_columns.append(pa.array(issues, f.type))
        elif f.name == "license":
            occ_columns.append(license_enum_names(pa.array(licenses, pa.string())))
        else:
            occ_columns.append(pa.array(columns[f.name], f.type))
    occurrences = pa.Table.from_arrays(occ_columns, schema=OCCURRENCE_SCHEMA)
    rownum = np.arange(first_media_row, first_media_row + len(media_ids), dtype=np.int64)
    raw, skipped = raw_media_table(
        np.asarray(media_ids, dtype=np.int64),
        rownum,
        {c: pa.array(v, pa.string()) for c, v in media_cols.items()},
    )
    report.skipped.update(skipped)
    media = MediaSide.build(raw)
    table = join_media(occurrences, media)
    with_media = np.unique(table.column("gbifID").to_numpy()) if table.num_rows else np.empty(0)
    report.occurrences_with_media = int(len(with_media))
    report.media = table.num_rows
    return table, report
