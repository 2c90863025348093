"""Who to credit for each image: a name for every image under an attribution (BY-family) licence.

CC BY and its variants require naming the creator "or other parties designated to receive
attribution". GBIF media items often lack a creator, so the export falls back along the chain a
person would follow, and records which link gave the name (``attribution_source``):

1. ``creator``              the media item's creator
2. ``rightsHolder``         the media item's rights holder
3. ``record_rightsHolder``  the occurrence record's rights holder
4. ``recordedBy``           the occurrence's recorder
5. ``publisher``            the dataset's publisher, with the dataset title ("Publisher (dataset: Title)")

Each link is used only when its column exists: in the manifest itself, in ``records`` (a table keyed
by ``gbifID``, e.g. the snapshot's media table: one row per occurrence is used), or for 5 in
``datasets`` (``datasetKey`` → ``{"title": ..., "publisher": ...}``, from the registry or the
download's dataset EML). Placeholders such as "unknown" or "—" are not names.

Images under a BY-family licence that still have no name are counted (``unattributed``); the export
keeps them by default (their credit line says so) or drops them (``unattributed="drop"``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.export.escape import clean_text, clean_value

__all__ = [
    "ATTRIBUTION_SOURCES",
    "AttributionReport",
    "attribute",
    "requires_attribution",
]

ATTRIBUTION_SOURCES = ("creator", "rightsHolder", "record_rightsHolder", "recordedBy", "publisher")
#: columns read for each link, first present wins (manifest, then ``records``)
_RECORD_RIGHTS = ("record_rightsHolder", "occurrence_rightsHolder", "recordRightsHolder")
_TITLE = ("datasetTitle", "dataset_title", "datasetName")
_PUBLISHER = (
    "publisherTitle",
    "publishingOrgTitle",
    "publishingOrganizationTitle",  # the snapshot's registry column
    "publisher_name",
    "publisherName",
)
_PLACEHOLDERS = frozenset({"", "-", "--", "—", "–", "?", "n/a", "na", "none", "null", "unknown", "anonymous"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def requires_attribution(license_id: Any) -> bool:
    """Whether a licence (normalised id or GBIF enum name) is one of the CC BY family."""
    return str(license_id or "").upper().replace("_", "-").startswith("CC-BY")


def _name(value: Any) -> str | None:
    s = " ".join(clean_text(value).split())
    return None if s.lower() in _PLACEHOLDERS else s


@dataclass
class AttributionReport:
    """What the attribution step found: where names came from, and who has none."""

    #: images credited per link of the chain (``creator`` … ``publisher``)
    sources: dict[str, int] = field(default_factory=dict)
    #: BY-family images with no name at all (kept or dropped)
    unattributed: int = 0
    #: of those, how many were left out of the export
    dropped: int = 0


def _column(table: pa.Table, names: tuple[str, ...]) -> list[Any] | None:
    for n in names:
        if n in table.column_names:
            return table.column(n).to_pylist()
    return None


def _record_columns(table: pa.Table, records: pa.Table | None) -> dict[str, list[Any] | None]:
    """The record-level columns for every row of ``table``, from ``table`` or joined from ``records``."""
    wanted = {
        "record_rightsHolder": _RECORD_RIGHTS,
        "recordedBy": ("recordedBy",),
        "datasetTitle": _TITLE,
        "publisherName": _PUBLISHER,
    }
    out = {k: _column(table, names) for k, names in wanted.items()}
    if records is None or "gbifID" not in records.column_names:
        return out
    cols: dict[str, str] = {}
    for k, names in wanted.items():
        if out[k] is None:
            hit = next((n for n in names if n in records.column_names), None)
            if hit:
                cols[k] = hit
    # the media table's "publisher" is the media item's publisher: a name (the manifest's is a key)
    media_publisher = out["publisherName"] is None and "publisher" in records.column_names
    if media_publisher and "publisherName" not in cols:
        cols["publisherName"] = "publisher"
    if not cols:
        return out
    rec = records.select(["gbifID", *dict.fromkeys(cols.values())])
    try:
        wanted = pc.unique(table.column("gbifID")).cast(rec.schema.field("gbifID").type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return out  # gbifIDs of another type match nothing
    rec = rec.filter(pc.is_in(rec.column("gbifID"), value_set=wanted))
    rec = rec.group_by("gbifID", use_threads=False).aggregate([(c, "first") for c in rec.column_names[1:]])
    lookup = {
        c: dict(zip(rec["gbifID"].to_pylist(), rec[f"{c}_first"].to_pylist(), strict=True))
        for c in cols.values()
    }
    ids = table.column("gbifID").to_pylist()
    for k, c in cols.items():
        values = [lookup[c].get(i) for i in ids]
        if k == "publisherName":
            values = [None if v is not None and _UUID.fullmatch(str(v)) else v for v in values]
        out[k] = values
    return out


def attribute(
    table: pa.Table,
    *,
    records: pa.Table | None = None,
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
    unattributed: str = "keep",
) -> tuple[pa.Table, AttributionReport]:
    """``table`` with ``attribution`` and ``attribution_source`` columns, and what was found.

    With ``unattributed="drop"`` the BY-family images without any name are removed.
    """
    if unattributed not in ("keep", "drop"):
        raise ValueError(f"unattributed must be 'keep' or 'drop', got {unattributed!r}")
    datasets = clean_value(dict(datasets or {}))
    n = table.num_rows
    creator = _column(table, ("creator",)) or [None] * n
    holder = _column(table, ("rightsHolder",)) or [None] * n
    extra = _record_columns(table, records)
    dkeys = _column(table, ("datasetKey",)) or [None] * n
    licenses = table.column("license").to_pylist()
    names: list[str | None] = []
    sources: list[str | None] = []
    for i in range(n):
        chain = (
            ("creator", creator[i]),
            ("rightsHolder", holder[i]),
            (
                "record_rightsHolder",
                extra["record_rightsHolder"][i] if extra["record_rightsHolder"] else None,
            ),
            ("recordedBy", extra["recordedBy"][i] if extra["recordedBy"] else None),
        )
        found = next(((src, nm) for src, v in chain if (nm := _name(v))), None)
        if found is None:
            ds = datasets.get(str(dkeys[i])) if dkeys[i] is not None else None
            pub = _name((ds or {}).get("publisher")) or (
                _name(extra["publisherName"][i]) if extra["publisherName"] else None
            )
            title = _name((ds or {}).get("title")) or (
                _name(extra["datasetTitle"][i]) if extra["datasetTitle"] else None
            )
            if pub and title:
                found = ("publisher", f"{pub} (dataset: {title})")
            elif pub:
                found = ("publisher", pub)
            elif title:
                found = ("publisher", f"publisher of the dataset {title}")
        names.append(found[1] if found else None)
        sources.append(found[0] if found else None)
    needs = [requires_attribution(v) for v in licenses]
    report = AttributionReport(
        sources=dict(sorted(Counter(s for s in sources if s).items())),
        unattributed=sum(1 for need, nm in zip(needs, names, strict=True) if need and nm is None),
    )
    out = table.append_column("attribution", pa.array(names, pa.string()))
    out = out.append_column("attribution_source", pa.array(sources, pa.string()))
    if unattributed == "drop" and report.unattributed:
        keep = pa.array([not (need and nm is None) for need, nm in zip(needs, names, strict=True)])
        out = out.filter(keep)
        report.dropped = report.unattributed
        report.sources = dict(sorted(Counter(s for s in out["attribution_source"].to_pylist() if s).items()))
    return out, report
