"""The occurrence-snapshot schema: one row per media item, whatever the source.

Both sources (the search API and GBIF downloads in DwC-A form) produce exactly this schema, so
the stages after the snapshot never need to know where the data came from. Occurrence fields keep
GBIF's term names (``gbifID``, ``speciesKey``, ``decimalLatitude``, ...) so a user can look them up
in GBIF's documentation; media fields that would clash with occurrence fields are prefixed
``media_`` (the occurrence ``license`` is the record's licence, ``media_license`` the image's,
which GBIF lets differ).

The registry columns (``publishingOrgKey`` and the dataset's title, DOI and licence, the publishing
organization's title and country; :data:`gbifdl_assets.gbif.registry.REGISTRY_COLUMNS`) are filled
from GBIF's registry per dataset when a snapshot is written: a real DWCA download has no
``publishingOrgKey`` column, and neither source carries the titles. They sit in the occurrence part,
so an archive or record that does carry one of them (``publishingCountry``) is read as it is.
"""

from __future__ import annotations

import pyarrow as pa

#: Taxonomy keys from kingdom down to species (a rule on any rank matches through these).
TAXON_RANK_KEYS = ("kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey", "genusKey", "speciesKey")

SNAPSHOT_SCHEMA = pa.schema(
    [
        # --- occurrence ---
        pa.field("gbifID", pa.int64(), nullable=False),
        pa.field("occurrenceID", pa.string()),
        pa.field("taxonKey", pa.int64()),
        pa.field("acceptedTaxonKey", pa.int64()),
        *(pa.field(name, pa.int64()) for name in TAXON_RANK_KEYS),
        pa.field("scientificName", pa.string()),
        pa.field("acceptedScientificName", pa.string()),
        pa.field("species", pa.string()),
        pa.field("taxonRank", pa.string()),
        pa.field("datasetKey", pa.string()),
        pa.field("publishingOrgKey", pa.string()),
        # --- registry (gbif.registry: the dataset's and its publisher's, filled for every source) ---
        pa.field("datasetTitle", pa.string()),
        pa.field("datasetDOI", pa.string()),
        pa.field("datasetLicense", pa.string()),  # the dataset's licence URL (the record's is `license`)
        pa.field("publishingOrganizationTitle", pa.string()),
        pa.field("publishingCountry", pa.string()),  # ISO 3166 alpha-2 of the publishing organization
        pa.field("basisOfRecord", pa.string()),
        pa.field("occurrenceStatus", pa.string()),
        pa.field("establishmentMeans", pa.string()),
        pa.field("decimalLatitude", pa.float64()),
        pa.field("decimalLongitude", pa.float64()),
        pa.field("coordinateUncertaintyInMeters", pa.float64()),
        pa.field("countryCode", pa.string()),
        pa.field("eventDate", pa.string()),
        pa.field("year", pa.int32()),
        pa.field("month", pa.int32()),
        pa.field("recordedBy", pa.string()),  # the observer: a split group option
        pa.field("institutionCode", pa.string()),
        pa.field("issues", pa.list_(pa.string())),
        pa.field("license", pa.string()),  # record licence as GBIF's enum name (CC_BY_4_0, ...)
        # --- media item ---
        pa.field("media_index", pa.int32()),  # position of the item within its occurrence
        pa.field("identifier", pa.string(), nullable=False),  # the image URL
        pa.field("format", pa.string()),
        pa.field("media_license", pa.string()),  # normalised id (gbif.licenses), e.g. CC-BY-4.0
        pa.field("media_license_raw", pa.string()),  # as GBIF carried it
        pa.field("rightsHolder", pa.string()),
        pa.field("creator", pa.string()),
        pa.field("publisher", pa.string()),
        pa.field("references", pa.string()),  # the media item's landing page (for credits)
        pa.field("title", pa.string()),
    ]
)

SNAPSHOT_COLUMNS = tuple(SNAPSHOT_SCHEMA.names)


def empty_snapshot() -> pa.Table:
    return SNAPSHOT_SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """Cast/reorder ``table`` to the snapshot schema; missing optional columns become nulls."""
    columns = []
    for field in SNAPSHOT_SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"snapshot table lacks the required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=SNAPSHOT_SCHEMA)
