"""Write download archives in GBIF's layouts (DWCA and SIMPLE_CSV), streaming.

DWCA: a flat zip with ``meta.xml`` (core ``occurrence.txt``, rowType Occurrence, ``<id index="0"/>`` =
gbifID; extension ``multimedia.txt`` with ``<coreid index="0"/>``), ``metadata.xml`` (EML whose
packageId is the DOI), ``citations.txt``, ``rights.txt`` and one ``dataset/<datasetKey>.xml`` per
dataset. Files are tab-separated with a header line, no quoting (tabs/newlines inside values become
spaces), arrays joined with ``;``, the ``license`` column holds enum names.

Rows are rendered in chunks and written straight into the zip entry, so a million-row archive never
exists as one string in memory. Multimedia rows go to a temporary file during the occurrence pass and
are copied into the zip afterwards (a zip can only have one entry open for writing).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from .records import render_record
from .vocab import GEOSPATIAL_ISSUE_MASK, LICENSE_URLS, LICENSES
from .world import World

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
GBIF = "http://rs.gbif.org/terms/1.0/"

#: (column, term namespace), in the order of GBIF's describe/dwca "interpreted" list (a subset)
OCCURRENCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("gbifID", GBIF),
    ("license", DC),
    ("modified", DC),
    ("references", DC),
    ("rightsHolder", DC),
    ("institutionCode", DWC),
    ("collectionCode", DWC),
    ("datasetName", DWC),
    ("basisOfRecord", DWC),
    ("occurrenceID", DWC),
    ("catalogNumber", DWC),
    ("recordedBy", DWC),
    ("individualCount", DWC),
    ("occurrenceStatus", DWC),
    ("eventDate", DWC),
    ("year", DWC),
    ("month", DWC),
    ("day", DWC),
    ("continent", DWC),
    ("countryCode", DWC),
    ("decimalLatitude", DWC),
    ("decimalLongitude", DWC),
    ("coordinateUncertaintyInMeters", DWC),
    ("identifiedBy", DWC),
    ("scientificName", DWC),
    ("kingdom", DWC),
    ("phylum", DWC),
    ("class", DWC),
    ("order", DWC),
    ("family", DWC),
    ("genus", DWC),
    ("genericName", DWC),
    ("specificEpithet", DWC),
    ("infraspecificEpithet", DWC),
    ("taxonRank", DWC),
    ("vernacularName", DWC),
    ("taxonomicStatus", DWC),
    ("establishmentMeans", DWC),
    ("datasetKey", GBIF),
    ("publishingOrgKey", GBIF),
    ("publishingCountry", GBIF),
    ("lastInterpreted", GBIF),
    ("issue", GBIF),
    ("mediaType", GBIF),
    ("hasCoordinate", GBIF),
    ("hasGeospatialIssues", GBIF),
    ("taxonKey", GBIF),
    ("acceptedTaxonKey", GBIF),
    ("kingdomKey", GBIF),
    ("phylumKey", GBIF),
    ("classKey", GBIF),
    ("orderKey", GBIF),
    ("familyKey", GBIF),
    ("genusKey", GBIF),
    ("speciesKey", GBIF),
    ("species", GBIF),
    ("acceptedScientificName", GBIF),
    ("verbatimScientificName", GBIF),
    ("lastParsed", GBIF),
    ("lastCrawled", GBIF),
)
MULTIMEDIA_COLUMNS = (
    "gbifID",
    "type",
    "format",
    "identifier",
    "references",
    "title",
    "description",
    "source",
    "audience",
    "created",
    "creator",
    "contributor",
    "publisher",
    "license",
    "rightsHolder",
)
SIMPLE_CSV_COLUMNS = [
    "gbifID",
    "datasetKey",
    "occurrenceID",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
    "species",
    "infraspecificEpithet",
    "taxonRank",
    "scientificName",
    "verbatimScientificName",
    "verbatimScientificNameAuthorship",
    "countryCode",
    "locality",
    "stateProvince",
    "occurrenceStatus",
    "individualCount",
    "publishingOrgKey",
    "decimalLatitude",
    "decimalLongitude",
    "coordinateUncertaintyInMeters",
    "coordinatePrecision",
    "elevation",
    "elevationAccuracy",
    "depth",
    "depthAccuracy",
    "eventDate",
    "day",
    "month",
    "year",
    "taxonKey",
    "speciesKey",
    "basisOfRecord",
    "institutionCode",
    "collectionCode",
    "catalogNumber",
    "recordNumber",
    "identifiedBy",
    "dateIdentified",
    "license",
    "rightsHolder",
    "recordedBy",
    "typeStatus",
    "establishmentMeans",
    "lastInterpreted",
    "mediaType",
    "issue",
]

_BAD = re.compile("[\t\r\n\x0b\x0c\x85\u2028\u2029\x00]")
_LICENSE_ENUM = dict(zip(LICENSE_URLS, LICENSES, strict=True))
CHUNK = 2_000


def cell(v: Any) -> str:
    """One TSV value the way GBIF writes it."""
    if v is None:
        return ""
    t = type(v)
    if t is str:
        # tab, CR, LF, VT, FF, NEL, U+2028/2029 and NUL are all non-printable: one C-level check
        return v if v.isprintable() else _BAD.sub(" ", v)
    if t is bool:
        return "true" if v else "false"
    if t is list or t is tuple:
        return ";".join(map(cell, v))
    return str(v)


def occurrence_row(world: World, i: int, r: dict[str, Any]) -> dict[str, Any]:
    """Archive values of a record (derived from its JSON so search and archive always agree)."""
    row = dict(r)
    row["license"] = _LICENSE_ENUM.get(r["license"], "")
    row["issue"] = r.get("issues", [])
    row["mediaType"] = list(dict.fromkeys(m["type"] for m in r.get("media", [])))
    row["hasCoordinate"] = "decimalLatitude" in r
    row["hasGeospatialIssues"] = bool(int(world.occ.issues[i]) & GEOSPATIAL_ISSUE_MASK)
    row["verbatimScientificName"] = r.get("scientificName")
    for k in ("decimalLatitude", "decimalLongitude", "coordinateUncertaintyInMeters"):
        if k in row:
            row[k] = float(row[k])
    return row


def _lines(rows: Iterable[dict[str, Any]], columns: Iterable[str]) -> str:
    cols = list(columns)
    return "".join("\t".join(map(cell, map(row.get, cols))) + "\n" for row in rows)


def meta_xml() -> str:
    core_fields = "\n".join(
        f'    <field index="{i}" term="{ns}{name}"/>' for i, (name, ns) in enumerate(OCCURRENCE_COLUMNS)
    )
    mm_fields = "\n".join(
        f'    <field index="{i}" term="{GBIF if name == "gbifID" else DC}{name}"/>'
        for i, name in enumerate(MULTIMEDIA_COLUMNS)
    )
    attrs = 'encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" ignoreHeaderLines="1"'
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">\n'
        f'  <core {attrs} rowType="http://rs.tdwg.org/dwc/terms/Occurrence">\n'
        "    <files>\n      <location>occurrence.txt</location>\n    </files>\n"
        '    <id index="0" />\n'
        f"{core_fields}\n  </core>\n"
        f'  <extension {attrs} rowType="http://rs.gbif.org/terms/1.0/Multimedia">\n'
        "    <files>\n      <location>multimedia.txt</location>\n    </files>\n"
        '    <coreid index="0" />\n'
        f"{mm_fields}\n  </extension>\n</archive>\n"
    )


def metadata_xml(key: str, doi: str, created: str, predicate: Any, datasets: list, total: int) -> str:
    parties = "\n".join(
        f"<associatedParty><organizationName>{escape(world_pub)}</organizationName>"
        f"<role>CONTENT_PROVIDER</role></associatedParty>"
        for world_pub in sorted({p for _, p in datasets})
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="eml://ecoinformatics.org/eml-2.1.1 http://rs.gbif.org/schema/eml-gbif-profile/1.0.2/eml.xsd"
         packageId="{escape(doi)}" system="http://gbif.org" scope="system" xml:lang="en">
<dataset>
  <alternateIdentifier>{escape(doi)}</alternateIdentifier>
  <alternateIdentifier>{escape(key)}</alternateIdentifier>
  <title>GBIF Occurrence Download {escape(key)}</title>
  <creator><individualName><surName>GBIF Download Service</surName></individualName></creator>
  <metadataProvider><individualName><surName>GBIF Download Service</surName></individualName></metadataProvider>
{parties}
  <pubDate>{created[:10]}</pubDate>
  <language>ENGLISH</language>
  <abstract><para>A dataset containing {total} species occurrences available in GBIF matching the query: {escape(json.dumps(predicate))}</para>
  <para>The dataset includes {total} records from {len(datasets)} constituent datasets.</para></abstract>
  <intellectualRights><para>Data from some individual datasets included in this download may be licensed under less restrictive terms; review the details below.</para></intellectualRights>
  <distribution><online><url function="download">https://doi.org/{escape(doi)}</url></online></distribution>
</dataset>
</eml:eml>
"""


def dataset_eml(ds_key: str, title: str, publisher: str, license_url: str) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1" packageId="{ds_key}" system="http://gbif.org" scope="system" xml:lang="en">
<dataset>
  <alternateIdentifier>{ds_key}</alternateIdentifier>
  <title xml:lang="en">{escape(title)}</title>
  <creator><organizationName>{escape(publisher)}</organizationName></creator>
  <intellectualRights><para>This work is licensed under <ulink url="{escape(license_url)}"><citetitle>{escape(license_url)}</citetitle></ulink>.</para></intellectualRights>
</dataset>
</eml:eml>
"""


def write_archive(
    world: World,
    rows: np.ndarray,
    dest: Path,
    *,
    key: str,
    doi: str,
    created: str,
    predicate: Any,
    fmt: str,
    media_base: str,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Write the archive for ``rows`` to ``dest`` (atomically); return its size in bytes."""
    dest = Path(dest)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as zf:
        if fmt == "SIMPLE_CSV":
            _write_simple_csv(world, rows, zf, key, media_base, should_stop)
        else:
            _write_dwca(
                world,
                rows,
                zf,
                key=key,
                doi=doi,
                created=created,
                predicate=predicate,
                media_base=media_base,
                should_stop=should_stop,
            )
    tmp.replace(dest)
    return dest.stat().st_size


class Stopped(Exception):
    """The download was cancelled while its archive was being written."""


def _write_simple_csv(world, rows, zf, key, media_base, should_stop) -> None:
    with zf.open(f"{key}.csv", "w", force_zip64=True) as out:
        out.write(("\t".join(SIMPLE_CSV_COLUMNS) + "\n").encode())
        for start in range(0, len(rows), CHUNK):
            if should_stop():
                raise Stopped
            recs = []
            for i in rows[start : start + CHUNK]:
                i = int(i)
                r = render_record(world, i, media_base)
                row = occurrence_row(world, i, r)
                row["verbatimScientificNameAuthorship"] = world.taxonomy.taxa[
                    int(world.occ.taxon[i])
                ].authorship
                recs.append(row)
            out.write(_lines(recs, SIMPLE_CSV_COLUMNS).encode())


def _write_dwca(world, rows, zf, *, key, doi, created, predicate, media_base, should_stop) -> None:
    occ_cols = [c for c, _ in OCCURRENCE_COLUMNS]
    used_datasets: set[int] = set()
    with tempfile.TemporaryFile() as mm_tmp:
        mm_tmp.write(("\t".join(MULTIMEDIA_COLUMNS) + "\n").encode())
        with zf.open("occurrence.txt", "w", force_zip64=True) as out:
            out.write(("\t".join(occ_cols) + "\n").encode())
            for start in range(0, len(rows), CHUNK):
                if should_stop():
                    raise Stopped
                recs, media = [], []
                for i in rows[start : start + CHUNK]:
                    i = int(i)
                    r = render_record(world, i, media_base)
                    recs.append(occurrence_row(world, i, r))
                    for m in r["media"]:
                        media.append({"gbifID": r["gbifID"], **m})
                out.write(_lines(recs, occ_cols).encode())
                if media:
                    mm_tmp.write(_lines(media, MULTIMEDIA_COLUMNS).encode())
                used_datasets.update(np.unique(world.occ.dataset[rows[start : start + CHUNK]]).tolist())
        mm_tmp.seek(0)
        with zf.open("multimedia.txt", "w", force_zip64=True) as out:
            shutil.copyfileobj(mm_tmp, out, 1 << 20)
    datasets = [world.datasets[d] for d in sorted(used_datasets)]
    pubs = [(d.key, world.publishers[d.publisher].title) for d in datasets]
    zf.writestr("meta.xml", meta_xml())
    zf.writestr("metadata.xml", metadata_xml(key, doi, created, predicate, pubs, len(rows)))
    citations = [
        "Please cite this data as follows, and pay attention to the rights documented in the rights.txt:",
        f"GBIF.org ({_human_date(created)}) GBIF Occurrence Download https://doi.org/{doi}",
        "",
    ]
    rights = ["Please respect the rights declared for each dataset in the download:", ""]
    for d in datasets:
        pub = world.publishers[d.publisher].title
        citations.append(f"{pub}: {d.title}")
        rights.append(f"Dataset: {d.title}\nRights as supplied: {LICENSE_URLS[d.license]}\n")
        zf.writestr(f"dataset/{d.key}.xml", dataset_eml(d.key, d.title, pub, LICENSE_URLS[d.license]))
    zf.writestr("citations.txt", "\n".join(citations) + "\n")
    zf.writestr("rights.txt", "\n".join(rights) + "\n")


def _human_date(iso: str) -> str:
    import datetime as _dt

    d = _dt.date.fromisoformat(iso[:10])
    return f"{d.day} {d.strftime('%B')} {d.year}"
