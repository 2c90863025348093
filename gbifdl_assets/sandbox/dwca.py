"""Write download archives in GBIF's layouts (DWCA and SIMPLE_CSV), streaming.

DWCA, as real GBIF downloads (see :mod:`.dwca_text` for what was compared): a flat zip with
``occurrence.txt`` (the interpreted core), ``verbatim.txt`` (what the publishers sent, a second
Occurrence extension), ``multimedia.txt`` (always present, header-only when no record has media),
``meta.xml``, ``metadata.xml`` (EML whose packageId is the DOI), ``citations.txt``, ``rights.txt``
and one ``dataset/<datasetKey>.xml`` EML per dataset. Files are tab-separated with a header line,
no quoting (tabs/newlines inside values become spaces), arrays joined with ``;``, the ``license``
column holds enum names. ``real_columns`` leaves out the sandbox-only ``publishingOrgKey`` column of
``occurrence.txt``: the served archives do (``SandboxConfig.real_dwca_columns``, True by default);
:func:`write_archive` keeps the column unless asked, so the benchmark's cached archives stay the same.

Rows are rendered in chunks and written straight into the zip entry, so a million-row archive never
exists as one string in memory. Verbatim and multimedia rows go to temporary files during the
occurrence pass and are copied into the zip afterwards (a zip can only have one entry open for
writing).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .archive_cache import ArchiveCache
from .dwca_text import (
    MULTIMEDIA_COLUMNS,
    OCCURRENCE_COLUMNS,
    citations_txt,
    dataset_eml,
    meta_xml,
    metadata_xml,
    occurrence_columns,
    rights_txt,
)
from .records import render_record
from .verbatim import VERBATIM_NAMES, verbatim_values
from .vocab import GEOSPATIAL_ISSUE_MASK, LICENSE_URLS, LICENSES
from .world import World

__all__ = [
    "MULTIMEDIA_COLUMNS",
    "OCCURRENCE_COLUMNS",
    "SIMPLE_CSV_COLUMNS",
    "Stopped",
    "cell",
    "occurrence_row",
    "write_archive",
]

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
    real_columns: bool = False,
    creator: str = "sandbox",
    download_url: str | None = None,
    cache: ArchiveCache | None = None,
    cache_key: str = "",
) -> int:
    """Write the archive for ``rows`` to ``dest`` (atomically); return its size in bytes.

    ``real_columns`` leaves out the columns real downloads lack (``publishingOrgKey``);
    ``download_url`` is the link written into ``metadata.xml`` (default: under ``media_base``);
    ``cache`` keeps a DWCA's data entries under ``cache_key`` (:func:`.archive_cache.cache_key`) for
    the next download of the same rows.
    """
    dest = Path(dest)
    tmp = dest.with_suffix(dest.suffix + ".part")
    if fmt == "SIMPLE_CSV":
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as zf:
            _write_simple_csv(world, rows, zf, key, media_base, should_stop)
        tmp.replace(dest)
        return dest.stat().st_size

    def data(zf: zipfile.ZipFile) -> np.ndarray:
        return _write_dwca_data(world, rows, zf, media_base, should_stop, real_columns)

    def metadata(zf: zipfile.ZipFile, counts: np.ndarray) -> None:
        _write_dwca_metadata(
            world,
            zf,
            counts,
            key=key,
            doi=doi,
            created=created,
            predicate=predicate,
            real_columns=real_columns,
            creator=creator,
            download_url=download_url or f"{media_base}/v1/occurrence/download/request/{key}.zip",
        )

    try:
        if cache is None:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as zf:
                metadata(zf, data(zf))
        else:
            # the data entries from the cache (written there first on a miss), this download's
            # metadata appended to a copy: the same entries in the same order as without a cache
            cached, counts = cache.data_entries(cache_key, data)
            shutil.copyfile(cached, tmp)
            with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as zf:
                metadata(zf, counts)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
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


def _write_dwca_data(world, rows, zf, media_base, should_stop, real_columns) -> np.ndarray:
    """The data entries (occurrence, verbatim, multimedia); returns the records per dataset."""
    occ_cols = [c for c, _ in occurrence_columns(real_columns)]
    counts = np.zeros(len(world.datasets), dtype=np.int64)
    with tempfile.TemporaryFile() as vb_tmp, tempfile.TemporaryFile() as mm_tmp:
        vb_tmp.write(("\t".join(VERBATIM_NAMES) + "\n").encode())
        mm_tmp.write(("\t".join(MULTIMEDIA_COLUMNS) + "\n").encode())
        with zf.open("occurrence.txt", "w", force_zip64=True) as out:
            out.write(("\t".join(occ_cols) + "\n").encode())
            for start in range(0, len(rows), CHUNK):
                if should_stop():
                    raise Stopped
                recs, verbatim, media = [], [], []
                for i in rows[start : start + CHUNK]:
                    i = int(i)
                    r = render_record(world, i, media_base)
                    recs.append(occurrence_row(world, i, r))
                    verbatim.append({"gbifID": r["gbifID"], **verbatim_values(world, i, r)})
                    for m in r["media"]:
                        media.append({"gbifID": r["gbifID"], **m})
                out.write(_lines(recs, occ_cols).encode())
                vb_tmp.write(_lines(verbatim, VERBATIM_NAMES).encode())
                if media:
                    mm_tmp.write(_lines(media, MULTIMEDIA_COLUMNS).encode())
                chunk = world.occ.dataset[rows[start : start + CHUNK]].astype(np.int64)
                counts += np.bincount(chunk, minlength=len(world.datasets))
        for name, tmp in (("verbatim.txt", vb_tmp), ("multimedia.txt", mm_tmp)):
            tmp.seek(0)
            with zf.open(name, "w", force_zip64=True) as out:
                shutil.copyfileobj(tmp, out, 1 << 20)
    return counts


def _write_dwca_metadata(
    world, zf, counts, *, key, doi, created, predicate, real_columns, creator, download_url
) -> None:
    """The entries naming this download (meta.xml, EML with its DOI, one EML per dataset, citations)."""
    used = [(world.datasets[d], int(counts[d])) for d in np.flatnonzero(counts)]
    datasets = [d for d, _ in used]
    zf.writestr("meta.xml", meta_xml(real_columns))
    zf.writestr(
        "metadata.xml",
        metadata_xml(
            world,
            used,
            key=key,
            doi=doi,
            created=created,
            predicate=predicate,
            creator=creator,
            download_url=download_url,
        ),
    )
    for d in datasets:
        zf.writestr(f"dataset/{d.key}.xml", dataset_eml(world, d))
    zf.writestr("citations.txt", citations_txt(world, datasets, doi=doi, created=created))
    zf.writestr("rights.txt", rights_txt(datasets))
