"""GBIF's fixed vocabularies and limits, one copy each, for the product and the offline sandbox.

Enums, annotation labels, download statuses and request limits that GBIF defines and that more
than one part of the code checks against. This module is plain data and imports nothing from the
product, so that the sandbox (which imitates GBIF and may import nothing else of the product) and
every layer of the product can share it.

Orders matter where noted: the sandbox stores some columns as an index into these tuples.
"""

from __future__ import annotations

__all__ = [
    "ANNOTATION_LABELS",
    "ANNOTATION_LABEL_DESCRIPTIONS",
    "IMAGE_FLAGS",
    "IMAGE_FLAG_DESCRIPTIONS",
    "BACKBONE_DATASET_KEY",
    "BASIS_OF_RECORD",
    "CONTINENTS",
    "COUNTRY_CODES",
    "DEAD_STATUSES",
    "DEPRECATED_BASIS_OF_RECORD",
    "FAILED_STATUSES",
    "GBIF_REGIONS",
    "KEY_RANKS",
    "KINGDOMS",
    "MAX_GEOMETRY_VERTICES",
    "MAX_WKT_CHARS",
    "MEDIA_TYPES",
    "OCCURRENCE_ISSUES",
    "OCCURRENCE_STATUSES",
    "RECORD_LICENSES",
    "RULE_BASIS_OF_RECORD",
    "RUNNING_STATUSES",
    "TAXONOMIC_STATUSES",
    "TAXON_RANKS",
]

# ---------------------------------------------------------------------------------------------------
# taxonomy
# ---------------------------------------------------------------------------------------------------
#: The GBIF backbone taxonomy's dataset key.
BACKBONE_DATASET_KEY = "d7dddbf4-2cf0-4f39-9b2a-bb099caae36c"

#: GBIF Rank names, from kingdom down, that a higher taxon can be expanded to.
TAXON_RANKS: tuple[str, ...] = (
    "KINGDOM",
    "PHYLUM",
    "CLASS",
    "ORDER",
    "FAMILY",
    "GENUS",
    "SPECIES",
    "SUBSPECIES",
    "VARIETY",
    "FORM",
)
#: The ranks with a ``<rank>Key`` field on every interpreted occurrence and name usage.
KEY_RANKS: tuple[str, ...] = TAXON_RANKS[:7]

#: Kingdoms of the GBIF backbone (a kingdom hint disambiguates homonyms across kingdoms).
KINGDOMS: tuple[str, ...] = (
    "Animalia",
    "Archaea",
    "Bacteria",
    "Chromista",
    "Fungi",
    "Plantae",
    "Protozoa",
    "Viruses",
    "incertae sedis",
)

#: GBIF's TaxonomicStatus enum.
TAXONOMIC_STATUSES: tuple[str, ...] = (
    "ACCEPTED",
    "DOUBTFUL",
    "SYNONYM",
    "HETEROTYPIC_SYNONYM",
    "HOMOTYPIC_SYNONYM",
    "PROPARTE_SYNONYM",
    "MISAPPLIED",
)

# ---------------------------------------------------------------------------------------------------
# occurrences
# ---------------------------------------------------------------------------------------------------
#: GBIF's BasisOfRecord enumeration, in GBIF's order (the sandbox stores records by index into it).
BASIS_OF_RECORD: tuple[str, ...] = (
    "PRESERVED_SPECIMEN",
    "FOSSIL_SPECIMEN",
    "LIVING_SPECIMEN",
    "OBSERVATION",
    "HUMAN_OBSERVATION",
    "MACHINE_OBSERVATION",
    "MATERIAL_SAMPLE",
    "LITERATURE",
    "MATERIAL_CITATION",
    "OCCURRENCE",
)
#: BasisOfRecord values GBIF no longer issues but that old annotation rules still carry.
DEPRECATED_BASIS_OF_RECORD: tuple[str, ...] = ("UNKNOWN",)
#: What an annotation rule's ``basisOfRecord`` may hold: the current values and the retired ones.
RULE_BASIS_OF_RECORD: tuple[str, ...] = BASIS_OF_RECORD + DEPRECATED_BASIS_OF_RECORD

#: GBIF's MediaType enum (the sandbox stores a bit set in this order).
MEDIA_TYPES: tuple[str, ...] = ("StillImage", "MovingImage", "Sound", "InteractiveResource")

#: GBIF's OccurrenceStatus enum (the sandbox stores the index).
OCCURRENCE_STATUSES: tuple[str, ...] = ("PRESENT", "ABSENT")

#: GBIF's Continent enum (the sandbox stores the index).
CONTINENTS: tuple[str, ...] = (
    "AFRICA",
    "ANTARCTICA",
    "ASIA",
    "EUROPE",
    "NORTH_AMERICA",
    "OCEANIA",
    "SOUTH_AMERICA",
)

#: GBIF's GbifRegion enum (``gbifRegion`` and ``publishedByGbifRegion``).
GBIF_REGIONS: tuple[str, ...] = (
    "AFRICA",
    "ANTARCTICA",
    "ASIA",
    "EUROPE",
    "LATIN_AMERICA",
    "NORTH_AMERICA",
    "OCEANIA",
)

#: The record licences GBIF's License enum allows (``license=`` and the download ``license`` column);
#: UNSPECIFIED and UNSUPPORTED are valid parameter values that no well-formed record carries.
RECORD_LICENSES: tuple[str, ...] = ("CC0_1_0", "CC_BY_4_0", "CC_BY_NC_4_0", "UNSPECIFIED", "UNSUPPORTED")

# GBIF's OccurrenceIssue enum (gbif-api vocabulary/OccurrenceIssue.java)
_ISSUE_NAMES = """ZERO_COORDINATE COORDINATE_OUT_OF_RANGE COORDINATE_INVALID COORDINATE_ROUNDED GEODETIC_DATUM_INVALID
    GEODETIC_DATUM_ASSUMED_WGS84 COORDINATE_REPROJECTED COORDINATE_REPROJECTION_FAILED
    COORDINATE_REPROJECTION_SUSPICIOUS COORDINATE_ACCURACY_INVALID COORDINATE_PRECISION_INVALID
    COORDINATE_UNCERTAINTY_METERS_INVALID COORDINATE_PRECISION_UNCERTAINTY_MISMATCH FOOTPRINT_SRS_INVALID
    FOOTPRINT_WKT_MISMATCH FOOTPRINT_WKT_INVALID COUNTRY_COORDINATE_MISMATCH COUNTRY_MISMATCH COUNTRY_INVALID
    COUNTRY_DERIVED_FROM_COORDINATES CONTINENT_COORDINATE_MISMATCH CONTINENT_COUNTRY_MISMATCH
    CONTINENT_INVALID CONTINENT_DERIVED_FROM_COUNTRY CONTINENT_DERIVED_FROM_COORDINATES
    PRESUMED_SWAPPED_COORDINATE PRESUMED_NEGATED_LONGITUDE PRESUMED_NEGATED_LATITUDE RECORDED_DATE_MISMATCH
    RECORDED_DATE_INVALID RECORDED_DATE_UNLIKELY TAXON_MATCH_FUZZY TAXON_MATCH_HIGHERRANK
    TAXON_MATCH_AGGREGATE TAXON_MATCH_SCIENTIFIC_NAME_ID_IGNORED TAXON_MATCH_TAXON_CONCEPT_ID_IGNORED
    TAXON_MATCH_TAXON_ID_IGNORED SCIENTIFIC_NAME_ID_NOT_FOUND TAXON_CONCEPT_ID_NOT_FOUND TAXON_ID_NOT_FOUND
    SCIENTIFIC_NAME_AND_ID_INCONSISTENT TAXON_MATCH_NONE TAXON_MATCH_NAME_AND_ID_AMBIGUOUS DEPTH_NOT_METRIC
    DEPTH_UNLIKELY DEPTH_MIN_MAX_SWAPPED DEPTH_NON_NUMERIC ELEVATION_UNLIKELY ELEVATION_MIN_MAX_SWAPPED
    ELEVATION_NOT_METRIC ELEVATION_NON_NUMERIC MODIFIED_DATE_INVALID MODIFIED_DATE_UNLIKELY
    IDENTIFIED_DATE_UNLIKELY IDENTIFIED_DATE_INVALID BASIS_OF_RECORD_INVALID TYPE_STATUS_INVALID
    SUSPECTED_TYPE MULTIMEDIA_DATE_INVALID MULTIMEDIA_URI_INVALID REFERENCES_URI_INVALID
    INTERPRETATION_ERROR INDIVIDUAL_COUNT_INVALID INDIVIDUAL_COUNT_CONFLICTS_WITH_OCCURRENCE_STATUS
    OCCURRENCE_STATUS_UNPARSABLE OCCURRENCE_STATUS_INFERRED_FROM_INDIVIDUAL_COUNT
    OCCURRENCE_STATUS_INFERRED_FROM_BASIS_OF_RECORD GEOREFERENCED_DATE_UNLIKELY GEOREFERENCED_DATE_INVALID
    AMBIGUOUS_INSTITUTION AMBIGUOUS_COLLECTION INSTITUTION_MATCH_NONE COLLECTION_MATCH_NONE
    INSTITUTION_MATCH_FUZZY COLLECTION_MATCH_FUZZY INSTITUTION_COLLECTION_MISMATCH POSSIBLY_ON_LOAN
    DIFFERENT_OWNER_INSTITUTION ERA_OR_ERATHEM_INFERRED_FROM_PARENT_RANK
    PERIOD_OR_SYSTEM_INFERRED_FROM_PARENT_RANK EPOCH_OR_SERIES_INFERRED_FROM_PARENT_RANK
    AGE_OR_STAGE_INFERRED_FROM_PARENT_RANK EON_OR_EONOTHEM_RANK_MISMATCH ERA_OR_ERATHEM_RANK_MISMATCH
    PERIOD_OR_SYSTEM_RANK_MISMATCH EPOCH_OR_SERIES_RANK_MISMATCH AGE_OR_STAGE_RANK_MISMATCH
    EON_OR_EONOTHEM_INVALID_RANGE ERA_OR_ERATHEM_INVALID_RANGE PERIOD_OR_SYSTEM_INVALID_RANGE
    EPOCH_OR_SERIES_INVALID_RANGE AGE_OR_STAGE_INVALID_RANGE EON_OR_EONOTHEM_AND_ERA_OR_ERATHEM_MISMATCH
    ERA_OR_ERATHEM_AND_PERIOD_OR_SYSTEM_MISMATCH PERIOD_OR_SYSTEM_AND_EPOCH_OR_SERIES_MISMATCH
    EPOCH_OR_SERIES_AND_AGE_OR_STAGE_MISMATCH"""
#: GBIF's OccurrenceIssue enum, in GBIF's order.
OCCURRENCE_ISSUES: tuple[str, ...] = tuple(_ISSUE_NAMES.split())

_COUNTRY_CODES = """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG
    EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR
    HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR
    LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG
    NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE
    SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA
    UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK XZ ZZ"""
#: ISO 3166-1 alpha-2 codes GBIF's Country enum knows, plus its user-assigned XK (Kosovo),
#: XZ (international waters) and ZZ (unknown).
COUNTRY_CODES: tuple[str, ...] = tuple(_COUNTRY_CODES.split())

# ---------------------------------------------------------------------------------------------------
# annotations
# ---------------------------------------------------------------------------------------------------
#: GBIF's default annotation vocabulary, in GBIF's order (reference annotations.md §5).
ANNOTATION_LABELS: tuple[str, ...] = (
    "NATIVE",
    "INTRODUCED",
    "MANAGED",
    "FORMER",
    "VAGRANT",
    "SUSPICIOUS",
    "OTHER",
)
#: One line per label, as GBIF's default vocabulary describes it.
ANNOTATION_LABEL_DESCRIPTIONS: dict[str, str] = {
    "NATIVE": "Native to the area",
    "INTRODUCED": "Introduced to the area",
    "MANAGED": "Managed population (captive, zoo, garden, cultivated)",
    "FORMER": "Formerly present (fossil, extinct, historic records)",
    "VAGRANT": "Vagrant occurrence",
    "SUSPICIOUS": "Suspicious or questionable: occurrences in the area might be in error",
    "OTHER": "Other annotation type",
}

#: What a user can say about one image (a media item of an occurrence, and the same photo wherever it
#: recurs): GBIF has no image-level annotation; these are ours (the spec's ``annotations.image_flags``).
IMAGE_FLAGS: tuple[str, ...] = ("NOT_ORGANISM", "WRONG_TAXON", "DUPLICATE", "POOR_QUALITY")
IMAGE_FLAG_DESCRIPTIONS: dict[str, str] = {
    "NOT_ORGANISM": "Shows no organism: a label, a herbarium sheet without the plant, a landscape",
    "WRONG_TAXON": "Shows another taxon than the occurrence's (or the training class's)",
    "DUPLICATE": "A copy of another image of the training set",
    "POOR_QUALITY": "Too blurred, dark, small or cropped to learn from",
}

# ---------------------------------------------------------------------------------------------------
# downloads
# ---------------------------------------------------------------------------------------------------
#: Download statuses from which GBIF may still produce an archive (SUSPENDED downloads resume).
RUNNING_STATUSES: frozenset[str] = frozenset({"PREPARING", "RUNNING", "SUSPENDED"})
#: Statuses of a download that ended without an archive.
FAILED_STATUSES: frozenset[str] = frozenset({"CANCELLED", "KILLED", "FAILED"})
#: End states that will never give an archive to fetch: failed, or SUCCEEDED once and since erased.
DEAD_STATUSES: frozenset[str] = FAILED_STATUSES | {"FILE_ERASED"}

# ---------------------------------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------------------------------
#: GBIF's limits for a WKT geometry, in occurrence search and downloads as in annotation rules
#: (occurrence-annotation ``GeometryValidationService.java``). Checking them before a request turns
#: a refusal hours into a backfill into an error at load time.
MAX_WKT_CHARS = 125_000
MAX_GEOMETRY_VERTICES = 2_500
