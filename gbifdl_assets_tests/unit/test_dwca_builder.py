"""Builds small GBIF-layout DwC-A zips for the reader tests (real archives are in the fixtures).

``build_dwca(path, occurrences, media)`` writes meta.xml + occurrence.txt (+ multimedia.txt) the way
GBIF does (tab-separated, unquoted, one header line, ';'-joined arrays) from lists of dicts; every
knob a bad-input test needs (raw lines, meta.xml text, extra members, encodings) can be overridden.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
GBIF = "http://rs.gbif.org/terms/1.0/"

OCC_COLUMNS = (
    ("gbifID", GBIF),
    ("license", DC),
    ("occurrenceID", DWC),
    ("basisOfRecord", DWC),
    ("scientificName", DWC),
    ("decimalLatitude", DWC),
    ("decimalLongitude", DWC),
    ("coordinateUncertaintyInMeters", DWC),
    ("countryCode", DWC),
    ("year", DWC),
    ("month", DWC),
    ("eventDate", DWC),
    ("issue", GBIF),
    ("datasetKey", GBIF),
    ("taxonKey", GBIF),
    ("kingdomKey", GBIF),
    ("speciesKey", GBIF),
)
MM_COLUMNS = (
    ("gbifID", GBIF),
    ("type", DC),
    ("format", DC),
    ("identifier", DC),
    ("references", DC),
    ("title", DC),
    ("creator", DC),
    ("publisher", DC),
    ("license", DC),
    ("rightsHolder", DC),
)
ATTRS = (
    'encoding="{encoding}" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" '
    'ignoreHeaderLines="1"'
)


def meta_xml(
    occ_columns: Sequence[tuple[str, str]] = OCC_COLUMNS,
    mm_columns: Sequence[tuple[str, str]] | None = MM_COLUMNS,
    *,
    core_location: str = "occurrence.txt",
    mm_location: str = "multimedia.txt",
    encoding: str = "UTF-8",
    core_id: bool = True,
    row_type: str = DWC + "Occurrence",
) -> str:
    attrs = ATTRS.format(encoding=encoding)
    core_fields = "\n".join(
        f'    <field index="{i}" term="{ns}{n}"/>' for i, (n, ns) in enumerate(occ_columns)
    )
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">',
        f'  <core {attrs} rowType="{row_type}">',
        f"    <files><location>{core_location}</location></files>",
        '    <id index="0"/>' if core_id else "",
        core_fields,
        "  </core>",
    ]
    if mm_columns is not None:
        mm_fields = "\n".join(
            f'    <field index="{i}" term="{ns}{n}"/>' for i, (n, ns) in enumerate(mm_columns)
        )
        out += [
            f'  <extension {attrs} rowType="{GBIF}Multimedia">',
            f"    <files><location>{mm_location}</location></files>",
            '    <coreid index="0"/>',
            mm_fields,
            "  </extension>",
        ]
    out.append("</archive>")
    return "\n".join(out) + "\n"


def tsv(rows: Iterable[Mapping[str, object]], columns: Sequence[tuple[str, str]]) -> bytes:
    names = [n for n, _ in columns]
    lines = ["\t".join(names)]
    for row in rows:
        cells = []
        for n in names:
            v = row.get(n)
            if v is None:
                cells.append("")
            elif isinstance(v, list | tuple):
                cells.append(";".join(map(str, v)))
            else:
                cells.append(str(v))
        lines.append("\t".join(cells))
    return ("\n".join(lines) + "\n").encode()


def occurrence(gbif_id: int, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "gbifID": gbif_id,
        "license": "CC_BY_4_0",
        "occurrenceID": f"occ-{gbif_id}",
        "basisOfRecord": "HUMAN_OBSERVATION",
        "scientificName": "Panthera leo (Linnaeus, 1758)",
        "decimalLatitude": "-1.5",
        "decimalLongitude": "36.25",
        "coordinateUncertaintyInMeters": "28417.0",
        "countryCode": "KE",
        "year": "2020",
        "month": "7",
        "eventDate": "2020-07-14",
        "issue": ["COORDINATE_ROUNDED", "CONTINENT_DERIVED_FROM_COORDINATES"],
        "datasetKey": "50c9509d-22c7-4a22-a47d-8c48425ef4a7",
        "taxonKey": "5219404",
        "kingdomKey": "1",
        "speciesKey": "5219404",
    }
    row.update(values)
    return row


def image(gbif_id: int | str, n: int = 0, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "gbifID": gbif_id,
        "type": "StillImage",
        "format": "image/jpeg",
        "identifier": f"https://images.example.org/{str(gbif_id).strip()}/{n}.jpg",
        "references": f"https://observations.example.org/{str(gbif_id).strip()}",
        "creator": "A. Observer",
        "publisher": "Example Naturalists",
        "license": "http://creativecommons.org/licenses/by-nc/4.0/",
        "rightsHolder": "A. Observer",
    }
    row.update(values)
    return row


def build_dwca(
    path: Path,
    occurrences: Iterable[Mapping[str, object]] = (),
    media: Iterable[Mapping[str, object]] | None = (),
    *,
    occ_columns: Sequence[tuple[str, str]] = OCC_COLUMNS,
    mm_columns: Sequence[tuple[str, str]] = MM_COLUMNS,
    meta: str | None = None,
    occurrence_bytes: bytes | None = None,
    multimedia_bytes: bytes | None = None,
    extra: Mapping[str, bytes] | None = None,
    include_meta: bool = True,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write a GBIF-layout DWCA zip; ``*_bytes`` replace the generated file contents verbatim."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr(
            "occurrence.txt",
            occurrence_bytes if occurrence_bytes is not None else tsv(occurrences, occ_columns),
        )
        if media is not None or multimedia_bytes is not None:
            zf.writestr(
                "multimedia.txt",
                multimedia_bytes if multimedia_bytes is not None else tsv(media or (), mm_columns),
            )
        if include_meta:
            mm = mm_columns if (media is not None or multimedia_bytes is not None) else None
            zf.writestr("meta.xml", meta if meta is not None else meta_xml(occ_columns, mm))
        zf.writestr(
            "metadata.xml",
            '<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1" packageId="10.15468/dl.abc123">'
            "<dataset><alternateIdentifier>10.15468/dl.abc123</alternateIdentifier>"
            "<alternateIdentifier>0001234-260101000000001</alternateIdentifier>"
            "<title>GBIF Occurrence Download 0001234-260101000000001</title></dataset></eml:eml>",
        )
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def test_builder_writes_the_gbif_layout(tmp_path: Path) -> None:
    """The helper itself: a flat zip, tab-separated, one header, ';'-joined arrays."""
    import csv
    import io

    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)])
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["meta.xml", "metadata.xml", "multimedia.txt", "occurrence.txt"]
        rows = list(
            csv.DictReader(
                io.StringIO(zf.read("occurrence.txt").decode()), delimiter="\t", quoting=csv.QUOTE_NONE
            )
        )
    assert rows[0]["gbifID"] == "1"
    assert rows[0]["issue"] == "COORDINATE_ROUNDED;CONTINENT_DERIVED_FROM_COORDINATES"
