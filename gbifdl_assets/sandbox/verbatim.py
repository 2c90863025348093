"""The verbatim view of a record: what the publisher sent, before GBIF interpreted it.

One function renders it for both places GBIF shows it: ``verbatim.txt`` of a DWCA download and
``GET /v1/occurrence/{key}/verbatim`` (term URI -> string). Values are strings as published: the
record licence as a CC URL without ``legalcode``, the rank in lower case, the name with its
authorship, numbers as text. Columns are a subset of GBIF's current verbatim list
(``describe/dwca`` → ``verbatim``, rgbif ``occ_download_describe.yml``), in its order.
"""

from __future__ import annotations

from typing import Any

from .world import World

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
GBIF = "http://rs.gbif.org/terms/1.0/"

#: (column, term namespace) of verbatim.txt, in GBIF's order
VERBATIM_COLUMNS: tuple[tuple[str, str], ...] = (
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
    ("country", DWC),
    ("countryCode", DWC),
    ("decimalLatitude", DWC),
    ("decimalLongitude", DWC),
    ("geodeticDatum", DWC),
    ("coordinateUncertaintyInMeters", DWC),
    ("identifiedBy", DWC),
    ("scientificName", DWC),
    ("kingdom", DWC),
    ("phylum", DWC),
    ("class", DWC),
    ("order", DWC),
    ("family", DWC),
    ("genus", DWC),
    ("specificEpithet", DWC),
    ("infraspecificEpithet", DWC),
    ("taxonRank", DWC),
    ("scientificNameAuthorship", DWC),
    ("vernacularName", DWC),
)
VERBATIM_NAMES = tuple(name for name, _ in VERBATIM_COLUMNS)


def verbatim_values(world: World, i: int, r: dict[str, Any]) -> dict[str, str]:
    """Column -> published string for record ``i`` whose interpreted JSON is ``r`` (empties left out)."""
    taxon = world.taxonomy.taxa[int(world.occ.taxon[i])]
    out: dict[str, str] = {}
    for name in VERBATIM_NAMES:
        if name == "license":
            value: Any = r["license"].replace("/legalcode", "/")
        elif name == "taxonRank":
            value = r["taxonRank"].lower()
        elif name == "scientificNameAuthorship":
            value = taxon.authorship or None
        else:
            value = r.get(name)
        if value is None or value == "":
            continue
        out[name] = str(value)
    return out


def verbatim_terms(world: World, i: int, r: dict[str, Any]) -> dict[str, str]:
    """The same values keyed by term URI, as ``/occurrence/{key}/verbatim`` answers them."""
    values = verbatim_values(world, i, r)
    return {ns + name: values[name] for name, ns in VERBATIM_COLUMNS if name in values}
