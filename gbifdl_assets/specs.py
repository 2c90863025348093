"""The training-set spec: one YAML file describes one training set (= one Dagster partition).

The model is strict on purpose: a spec drives long, expensive runs (GBIF downloads, hundreds
of thousands of images), so a typo must fail at load time with a message that names the field
and the fix, not half-way through a backfill. Every problem becomes one line
``<field path>: <what is wrong>; <what to do>`` in :class:`SpecError`; pydantic's own error
format never reaches the user.

Values are normalised on load (GBIF parameter names to their canonical camelCase, enum values
to GBIF's spelling, licences to normalised ids, filter values sorted), so two specs that mean
the same thing have the same :meth:`TrainingSetSpec.fingerprint`.

This module is part of the core: no dagster import.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gbifdl_assets.gbif import licenses as lic
from gbifdl_assets.gbif.vocabulary import BASIS_OF_RECORD

__all__ = [
    "ANNOTATION_LABELS",
    "DEFAULT_LICENSE_ALLOWLIST",
    "OCCURRENCE_SEARCH_PARAMETERS",
    "AnnotationPolicy",
    "BalancingSpec",
    "ImageOptions",
    "RefreshSpec",
    "SourceSpec",
    "SpecError",
    "SplitSpec",
    "TaxonRef",
    "TrainingSetSpec",
    "canonical_search_parameter",
    "example_specs_dir",
    "load_spec",
    "load_spec_folder",
    "normalize_search_filters",
    "parse_spec",
    "record_field",
]

# ---------------------------------------------------------------------------------------------------
# vocabularies
# ---------------------------------------------------------------------------------------------------
#: Ranks a higher taxon can be expanded to (GBIF Rank names).
RANKS: tuple[str, ...] = (
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
#: Ranks a label can be taken at: each has a ``<rank>Key`` on every interpreted occurrence.
LABEL_RANKS: tuple[str, ...] = ("KINGDOM", "PHYLUM", "CLASS", "ORDER", "FAMILY", "GENUS", "SPECIES")
#: Kingdoms of the GBIF backbone (the kingdom hint disambiguates homonyms across kingdoms).
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
#: GBIF's default annotation vocabulary (reference annotations.md §5).
ANNOTATION_LABELS: tuple[str, ...] = (
    "NATIVE",
    "INTRODUCED",
    "MANAGED",
    "FORMER",
    "VAGRANT",
    "SUSPICIOUS",
    "OTHER",
)
CONFLICT_MODES: tuple[str, ...] = ("exclude_any", "keep_conflicting", "exclude_all")
SPLIT_GROUPS: tuple[str, ...] = ("occurrence", "observer", "location", "dataset")
IMAGE_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "original")
SOURCE_TYPES: tuple[str, ...] = ("auto", "search", "download", "download_key", "doi")
BALANCING_MODES: tuple[str, ...] = ("exact", "weighted")

#: License-clean default: images anyone may reuse, including commercially, given attribution.
#: CC0 and the public-domain mark carry no conditions; CC BY only asks for credit, which the
#: export writes for every image; CC BY-SA asks for credit and that adapted *images* keep the
#: licence, which the per-image licence log satisfies. NC (no commercial use) and ND (no
#: adaptations: resizing or cropping may already count) are left out, as are "all rights
#: reserved" and unknown licences; a spec can opt into any of them explicitly.
DEFAULT_LICENSE_ALLOWLIST: tuple[str, ...] = ("CC0", "PDM", "CC-BY", "CC-BY-SA")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DOWNLOAD_KEY_RE = re.compile(r"^\d{7}-\d{15}$")
_GBIF_DOI_RE = re.compile(r"^10\.15468/dl\.[a-z0-9]+$")
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# ---------------------------------------------------------------------------------------------------
# GBIF occurrence search parameters
# ---------------------------------------------------------------------------------------------------
_MEDIA_TYPES = ("StillImage", "MovingImage", "Sound", "InteractiveResource")
_CONTINENTS = ("AFRICA", "ANTARCTICA", "ASIA", "EUROPE", "NORTH_AMERICA", "OCEANIA", "SOUTH_AMERICA")
_GBIF_REGIONS = ("AFRICA", "ANTARCTICA", "ASIA", "EUROPE", "LATIN_AMERICA", "NORTH_AMERICA", "OCEANIA")
_OCCURRENCE_STATUS = ("PRESENT", "ABSENT")
_TAXONOMIC_STATUS = (
    "ACCEPTED",
    "DOUBTFUL",
    "SYNONYM",
    "HETEROTYPIC_SYNONYM",
    "HOMOTYPIC_SYNONYM",
    "PROPARTE_SYNONYM",
    "MISAPPLIED",
)
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
_ISSUES = tuple(_ISSUE_NAMES.split())
# ISO 3166-1 alpha-2, plus GBIF's user-assigned XK (Kosovo), XZ (international waters), ZZ (unknown)
_COUNTRY_CODES = """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG
    EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR
    HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR
    LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG
    NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE
    SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA
    UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK XZ ZZ"""
_COUNTRIES = frozenset(_COUNTRY_CODES.split())
_COUNTRY_MISTAKES = {"UK": "GB", "EL": "GR", "EN": "GB"}

# Value kinds: how a parameter's values are checked and normalised.
_STR, _UUID, _INT, _BOOL, _COUNTRY, _GEOMETRY, _LICENSE, _DATE_RANGE = (
    "str",
    "uuid",
    "int",
    "bool",
    "country",
    "geometry",
    "license",
    "date_range",
)
_NUM_RANGE = "num_range"  # ("num_range", low, high, integer?)

# GBIF OccurrenceSearchParameter (gbif-api model/occurrence/search/OccurrenceSearchParameter.java).
# Keys are GBIF's UPPER_SNAKE names (what download predicates use); the canonical spec name is
# the camelCase form GBIF documents for the search API.
_PARAM_KINDS: dict[str, Any] = {
    "DATASET_KEY": _UUID,
    "YEAR": (_NUM_RANGE, None, None, True),
    "MONTH": (_NUM_RANGE, 1, 12, True),
    "START_DAY_OF_YEAR": (_NUM_RANGE, 1, 366, True),
    "END_DAY_OF_YEAR": (_NUM_RANGE, 1, 366, True),
    "EVENT_DATE": _DATE_RANGE,
    "EVENT_ID": _STR,
    "PARENT_EVENT_ID": _STR,
    "SAMPLING_PROTOCOL": _STR,
    "PREVIOUS_IDENTIFICATIONS": _STR,
    "LAST_INTERPRETED": _DATE_RANGE,
    "MODIFIED": _DATE_RANGE,
    "DECIMAL_LATITUDE": (_NUM_RANGE, -90, 90, False),
    "DECIMAL_LONGITUDE": (_NUM_RANGE, -180, 180, False),
    "COORDINATE_UNCERTAINTY_IN_METERS": (_NUM_RANGE, 0, None, False),
    "COUNTRY": _COUNTRY,
    "GBIF_REGION": ("enum", _GBIF_REGIONS),
    "CONTINENT": ("enum", _CONTINENTS),
    "PUBLISHING_COUNTRY": _COUNTRY,
    "PUBLISHED_BY_GBIF_REGION": ("enum", _GBIF_REGIONS),
    "ELEVATION": (_NUM_RANGE, None, None, False),
    "DEPTH": (_NUM_RANGE, None, None, False),
    "INSTITUTION_CODE": _STR,
    "COLLECTION_CODE": _STR,
    "CATALOG_NUMBER": _STR,
    "RECORDED_BY": _STR,
    "IDENTIFIED_BY": _STR,
    "RECORD_NUMBER": _STR,
    "BASIS_OF_RECORD": ("enum", BASIS_OF_RECORD),
    "SEX": _STR,
    "IS_SEQUENCED": _BOOL,
    "KINGDOM_KEY": _INT,
    "PHYLUM_KEY": _INT,
    "CLASS_KEY": _INT,
    "ORDER_KEY": _INT,
    "FAMILY_KEY": _INT,
    "GENUS_KEY": _INT,
    "SUBGENUS_KEY": _INT,
    "SCIENTIFIC_NAME": _STR,
    "VERBATIM_SCIENTIFIC_NAME": _STR,
    "TAXON_ID": _STR,
    "TAXON_CONCEPT_ID": _STR,
    "TAXONOMIC_STATUS": ("enum", _TAXONOMIC_STATUS),
    "HAS_COORDINATE": _BOOL,
    "GEOMETRY": _GEOMETRY,
    "GEO_DISTANCE": _STR,
    "DISTANCE_FROM_CENTROID_IN_METERS": (_NUM_RANGE, 0, None, False),
    "HAS_GEOSPATIAL_ISSUE": _BOOL,
    "ISSUE": ("enum", _ISSUES),
    "TYPE_STATUS": _STR,
    "MEDIA_TYPE": ("enum", _MEDIA_TYPES),
    "OCCURRENCE_ID": _STR,
    "ESTABLISHMENT_MEANS": _STR,
    "DEGREE_OF_ESTABLISHMENT": _STR,
    "PATHWAY": _STR,
    "REPATRIATED": _BOOL,
    "ORGANISM_ID": _STR,
    "STATE_PROVINCE": _STR,
    "WATER_BODY": _STR,
    "LOCALITY": _STR,
    "PROTOCOL": _STR,
    "LICENSE": _LICENSE,
    "PUBLISHING_ORG": _UUID,
    "NETWORK_KEY": _UUID,
    "INSTALLATION_KEY": _UUID,
    "HOSTING_ORGANIZATION_KEY": _UUID,
    "CRAWL_ID": _INT,
    "PROJECT_ID": _STR,
    "PROGRAMME": _STR,
    "ORGANISM_QUANTITY": (_NUM_RANGE, None, None, False),
    "ORGANISM_QUANTITY_TYPE": _STR,
    "SAMPLE_SIZE_UNIT": _STR,
    "SAMPLE_SIZE_VALUE": (_NUM_RANGE, None, None, False),
    "RELATIVE_ORGANISM_QUANTITY": (_NUM_RANGE, None, None, False),
    "COLLECTION_KEY": _STR,
    "INSTITUTION_KEY": _STR,
    "RECORDED_BY_ID": _STR,
    "IDENTIFIED_BY_ID": _STR,
    "OCCURRENCE_STATUS": ("enum", _OCCURRENCE_STATUS),
    "GADM_GID": _STR,
    "GADM_LEVEL_0_GID": _STR,
    "GADM_LEVEL_1_GID": _STR,
    "GADM_LEVEL_2_GID": _STR,
    "GADM_LEVEL_3_GID": _STR,
    "LIFE_STAGE": _STR,
    "IS_IN_CLUSTER": _BOOL,
    "DWCA_EXTENSION": _STR,
    "IUCN_RED_LIST_CATEGORY": _STR,
    "DATASET_ID": _STR,
    "DATASET_NAME": _STR,
    "OTHER_CATALOG_NUMBERS": _STR,
    "PREPARATIONS": _STR,
    "ISLAND": _STR,
    "ISLAND_GROUP": _STR,
    "GEOREFERENCED_BY": _STR,
    "HIGHER_GEOGRAPHY": _STR,
    "FIELD_NUMBER": _STR,
    "EARLIEST_EON_OR_LOWEST_EONOTHEM": _STR,
    "LATEST_EON_OR_HIGHEST_EONOTHEM": _STR,
    "EARLIEST_ERA_OR_LOWEST_ERATHEM": _STR,
    "LATEST_ERA_OR_HIGHEST_ERATHEM": _STR,
    "EARLIEST_PERIOD_OR_LOWEST_SYSTEM": _STR,
    "LATEST_PERIOD_OR_HIGHEST_SYSTEM": _STR,
    "EARLIEST_EPOCH_OR_LOWEST_SERIES": _STR,
    "LATEST_EPOCH_OR_HIGHEST_SERIES": _STR,
    "EARLIEST_AGE_OR_LOWEST_STAGE": _STR,
    "LATEST_AGE_OR_HIGHEST_STAGE": _STR,
    "LOWEST_BIOSTRATIGRAPHIC_ZONE": _STR,
    "HIGHEST_BIOSTRATIGRAPHIC_ZONE": _STR,
    "GROUP": _STR,
    "FORMATION": _STR,
    "MEMBER": _STR,
    "BED": _STR,
    "ASSOCIATED_SEQUENCES": _STR,
    "GBIF_ID": _STR,
    "GEOLOGICAL_TIME": _STR,
    "LITHOSTRATIGRAPHY": _STR,
    "BIOSTRATIGRAPHY": _STR,
    "CHECKLIST_KEY": _STR,
    "Q": _STR,
}


def _camel(upper_snake: str) -> str:
    head, *rest = upper_snake.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def _key(name: str) -> str:
    """GBIF's lookup key for parameter names and enum values: upper case, no ``. _ -`` or spaces."""
    return re.sub(r"[\s._-]", "", name).upper()


#: canonical camelCase search parameter -> GBIF's UPPER_SNAKE name (download predicate key)
OCCURRENCE_SEARCH_PARAMETERS: dict[str, str] = {_camel(p): p for p in _PARAM_KINDS}
_PARAM_BY_KEY: dict[str, str] = {_key(p): _camel(p) for p in _PARAM_KINDS}


def parameter_kind(param: str) -> Any:
    """The value kind of a GBIF search parameter given by its camelCase name (None when unknown)."""
    upper = OCCURRENCE_SEARCH_PARAMETERS.get(param)
    return _PARAM_KINDS.get(upper) if upper else None


# record field names people copy from occurrence JSON, mapped to the parameter that filters them
_PARAM_ALIASES = {"PUBLISHINGORGKEY": "publishingOrg", "COUNTRYCODE": "country"}
_TAXA_MSG = "taxa are given under `taxa:` (names or keys), the snapshot adds {} itself; remove it here"
_NOT_FILTERS = {
    "TAXONKEY": _TAXA_MSG.format("taxonKey"),
    "SPECIESKEY": _TAXA_MSG.format("the taxon keys"),
    "ACCEPTEDTAXONKEY": _TAXA_MSG.format("the taxon keys"),
    "LIMIT": "'limit' is a paging parameter, not a filter; remove it",
    "OFFSET": "'offset' is a paging parameter, not a filter; remove it",
}
#: record (occurrence JSON / DWCA) column for the parameters whose name differs from it
_RECORD_FIELDS = {"publishingOrg": "publishingOrgKey", "country": "countryCode", "issue": "issues"}


def record_field(parameter: str) -> str:
    """The occurrence record column a canonical search parameter filters (for post-filtering)."""
    return _RECORD_FIELDS.get(parameter, parameter)


def canonical_search_parameter(name: str) -> str:
    """GBIF's canonical camelCase name for a search parameter given in any case or separator style.

    ValueError (with a did-you-mean) for names GBIF's occurrence search does not know.
    """
    key = _key(str(name))
    if key in _PARAM_BY_KEY:
        return _PARAM_BY_KEY[key]
    if key in _PARAM_ALIASES:
        return _PARAM_ALIASES[key]
    if key in _NOT_FILTERS:
        raise ValueError(_NOT_FILTERS[key])
    if key.startswith("FACET"):
        raise ValueError(f"'{name}' is a facet parameter, not a filter; remove it")
    close = difflib.get_close_matches(key, list(_PARAM_BY_KEY), n=1, cutoff=0.75)
    hint = (
        f"did you mean '{_PARAM_BY_KEY[close[0]]}'?" if close else "see GBIF's occurrence search parameters"
    )
    raise ValueError(f"unknown GBIF occurrence search parameter; {hint}")


# ---------------------------------------------------------------------------------------------------
# problems: the one-line-per-problem error
# ---------------------------------------------------------------------------------------------------
class SpecError(ValueError):
    """A spec that cannot be used; ``problems`` holds one line per problem (``<field>: <fix>``)."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.path}: invalid training-set spec ({n} problem{'' if n == 1 else 's'})"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])

    def __reduce__(self):  # keep path and problems when pickled across processes
        return (type(self), (self.path, self.problems))


class _Problems(ValueError):
    """Raised inside validators to report several problems at sub-paths of the validated field."""

    def __init__(self, items: Sequence[tuple[str, str]]):
        self.items = list(items)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.items))


def _suggest(value: str, options: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    options = list(options)
    by_key = {_key(o): o for o in options}
    if _key(value) in by_key:
        return by_key[_key(value)]
    close = difflib.get_close_matches(_key(value), list(by_key), n=1, cutoff=cutoff)
    return by_key[close[0]] if close else None


def _choice(value: Any, options: Sequence[str], what: str) -> str:
    """Match ``value`` against ``options`` ignoring case and separators; a did-you-mean otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected one of {', '.join(options)}; got {_show(value)}")
    by_key = {_key(o): o for o in options}
    if _key(value) in by_key:
        return by_key[_key(value)]
    suggestion = _suggest(value, options)
    listing = f" (one of: {', '.join(options)})" if len(options) <= 12 else ""
    hint = f"; did you mean '{suggestion}'?{listing}" if suggestion else f"; use one of: {', '.join(options)}"
    if suggestion is None and len(options) > 12:
        hint = f"; see GBIF's list of {what} values"
    raise ValueError(f"'{value.strip()}' is not a valid {what}{hint}")


def _show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: Any) -> str:
    kind = {dict: "a mapping", list: "a list", bool: "a boolean", float: "a number"}.get(type(value))
    return f"{kind} {_show(value)}" if kind else _show(value)


# ---------------------------------------------------------------------------------------------------
# filter values
# ---------------------------------------------------------------------------------------------------
def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _scalar_text(value: Any) -> str:
    if value is None:
        raise ValueError("empty value (null); give a value or remove the filter")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _fmt_num(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("empty value; give a value or remove the filter")
        return value.strip()
    raise ValueError(f"expected a value or a list of values, got {_describe(value)}")


def _parse_number(text: str, integer: bool) -> float:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        pass
    kind = "a whole number" if integer else "a number"
    if re.fullmatch(r"-?[\d.]+\s*-\s*-?[\d.]+", text):
        low, high = re.split(r"(?<=\d)\s*-\s*", text, maxsplit=1)
        raise ValueError(f"'{text}' is not {kind}; write a range as 'low,high', e.g. '{low},{high}'")
    raise ValueError(f"'{text}' is not {kind} or a range 'low,high' ('*' for an open end)")


def _num_range(text: str, low: float | None, high: float | None, integer: bool) -> str:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2:
        raise ValueError(f"'{text}' is not a value or a range 'low,high'")
    bounds: list[float | None] = []
    for part in parts:
        if part in ("*", "") and len(parts) == 2:
            bounds.append(None)
            continue
        x = _parse_number(part, integer)
        if (low is not None and x < low) or (high is not None and x > high):
            raise ValueError(f"{part} is outside {low}..{high}")
        bounds.append(x)
    if len(bounds) == 2:
        a, b = bounds
        if a is None and b is None:
            raise ValueError(f"'{text}' matches everything; remove the filter instead")
        if a is not None and b is not None and a > b:
            raise ValueError(
                f"range '{text}' has its low end above its high end; write '{parts[1]},{parts[0]}'"
            )
    return ",".join("*" if x is None else _fmt_num(x) for x in bounds)


_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)


def _date_range(text: str) -> str:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2:
        raise ValueError(f"'{text}' is not a date or a range 'from,to'")
    for part in parts:
        if part == "*" and len(parts) == 2:
            continue
        m = _DATE_RE.match(part)
        try:
            if m is None:
                raise ValueError
            dt.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
        except ValueError:
            raise ValueError(
                f"'{part}' is not an ISO date (yyyy, yyyy-MM or yyyy-MM-dd); ranges are 'from,to', e.g. '2015,2024-06'"
            ) from None
    if parts == ["*", "*"]:
        raise ValueError(f"'{text}' matches everything; remove the filter instead")
    return ",".join(parts)


#: GBIF's occurrence search and download API refuse larger geometries; checking at load time turns a
#: rejected request hours into a backfill into a spec error.
MAX_WKT_CHARS = 125_000
MAX_GEOMETRY_VERTICES = 2_500


def _geometry(text: str) -> list[str]:
    # shapely is imported lazily: only specs with a geometry filter pay for it
    import shapely
    from shapely.geometry.polygon import orient

    if len(text) > MAX_WKT_CHARS:
        raise ValueError(
            f"the WKT has {len(text):,} characters, more than GBIF accepts ({MAX_WKT_CHARS:,}); "
            "simplify the polygon (fewer vertices, fewer decimals)"
        )
    try:
        geom = shapely.from_wkt(text)
    except Exception:  # shapely raises GEOSException with a long message
        raise ValueError(
            f"cannot parse WKT {_show(text)}; write e.g. 'POLYGON((10 50, 12 50, 12 52, 10 52, 10 50))'"
        ) from None
    kind = geom.geom_type
    if kind not in ("Polygon", "MultiPolygon", "Point", "LineString", "LinearRing"):
        raise ValueError(f"GBIF cannot search by {kind.upper()}; use POLYGON or MULTIPOLYGON")
    if geom.is_empty:
        raise ValueError("the geometry is empty; give coordinates or remove the filter")
    if not geom.is_valid:
        from shapely.validation import explain_validity

        raise ValueError(f"the geometry is not valid ({explain_validity(geom)}); fix the WKT")
    vertices = shapely.get_num_coordinates(geom)
    if vertices > MAX_GEOMETRY_VERTICES:
        raise ValueError(
            f"the geometry has {vertices:,} vertices, more than GBIF accepts ({MAX_GEOMETRY_VERTICES:,}); "
            "simplify the polygon, e.g. shapely's simplify(), or split the area"
        )
    # GBIF reads a clockwise polygon as "everything except this area": orient counter-clockwise.
    # A MULTIPOLYGON becomes several geometry values (GBIF ORs repeated values, and its search
    # API does not take multi-geometries).
    polys = list(geom.geoms) if kind == "MultiPolygon" else [geom]
    return [shapely.to_wkt(orient(p, 1.0) if p.geom_type == "Polygon" else p, trim=True) for p in polys]


def _filter_values(param: str, value: Any) -> list[str]:
    """Normalised text values of one raw filter value (a geometry can yield several)."""
    kind = _PARAM_KINDS[OCCURRENCE_SEARCH_PARAMETERS[param]]
    text = _scalar_text(value)
    if isinstance(kind, tuple) and kind[0] == _NUM_RANGE:
        return [_num_range(text, kind[1], kind[2], kind[3])]
    if isinstance(kind, tuple) and kind[0] == "enum":
        return [_choice(text, kind[1], f"{param} value")]
    if kind == _STR:
        return [text]
    if kind == _UUID:
        try:
            return [str(uuid.UUID(text))]
        except ValueError:
            raise ValueError(
                f"'{text}' is not a GBIF key (a UUID such as 50c9509d-22c7-4a22-a47d-8c48425ef4a7)"
            ) from None
    if kind == _INT:
        if not text.isdigit() or int(text) <= 0:
            raise ValueError(f"'{text}' is not a GBIF key (a positive whole number)")
        return [str(int(text))]
    if kind == _BOOL:
        low = text.lower()
        if low in ("true", "yes", "1"):
            return ["true"]
        if low in ("false", "no", "0"):
            return ["false"]
        raise ValueError(f"expected true or false, got {_show(value)}")
    if kind == _COUNTRY:
        code = text.upper()
        if code in _COUNTRIES:
            return [code]
        if code in _COUNTRY_MISTAKES:
            raise ValueError(
                f"'{text}' is not an ISO 3166-1 alpha-2 code; did you mean '{_COUNTRY_MISTAKES[code]}'?"
            )
        raise ValueError(
            f"'{text}' is not an ISO 3166-1 alpha-2 country code; use codes such as DE, FR, GB, US"
        )
    if kind == _DATE_RANGE:
        return [_date_range(text)]
    if kind == _GEOMETRY:
        return _geometry(text)
    if kind == _LICENSE:
        enum = _key(text) if _key(text) in {_key(e) for e in lic.GBIF_LICENSE_ENUMS} else None
        if enum is not None:
            return [next(e for e in lic.GBIF_LICENSE_ENUMS if _key(e) == enum)]
        as_enum = lic.gbif_license_enum(lic.normalize_license(text))
        if as_enum is not None:
            return [as_enum]
        raise ValueError(
            f"'{text}' is not a GBIF record licence; use CC0_1_0, CC_BY_4_0 or CC_BY_NC_4_0 (this filters "
            "the record's licence; filter image licences with the top-level `licenses:` allowlist)"
        )
    raise AssertionError(f"unhandled parameter kind {kind!r}")  # pragma: no cover


def normalize_search_filters(filters: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Canonical parameter name -> sorted, deduplicated, normalised values.

    Raises a ValueError subclass carrying one problem per bad name or value.
    """
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise ValueError(
            f"expected a mapping of GBIF search parameters (e.g. country: DE), got {_describe(filters)}"
        )
    problems: list[tuple[str, str]] = []
    out: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}
    for raw_name, raw_value in filters.items():
        name = str(raw_name)
        try:
            param = canonical_search_parameter(name)
        except ValueError as exc:
            problems.append((name, str(exc)))
            continue
        if param in spelled:
            problems.append(
                (name, f"given twice (also as '{spelled[param]}'); merge the values into one list")
            )
            continue
        spelled[param] = name
        raw_values = list(raw_value) if isinstance(raw_value, list | tuple) else [raw_value]
        if not raw_values:
            problems.append((param, "empty list; give at least one value or remove the filter"))
            continue
        values: set[str] = set()
        for value in raw_values:
            try:
                values.update(_filter_values(param, value))
            except ValueError as exc:
                problems.append((param, str(exc)))
        out[param] = sorted(values)
    if problems:
        raise _Problems(problems)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _none_is_default(cls, data: Any) -> Any:
        # `balancing:` with nothing under it is YAML null: take the defaults
        return {} if data is None else data


def _kingdom(value: Any) -> str | None:
    if value is None:
        return None
    return _choice(value, KINGDOMS, "kingdom")


class TaxonRef(_Section):
    """One entry of ``taxa``: a scientific name or a GBIF taxon key, optionally expanded.

    YAML shorthand: ``- Vanessa atalanta`` (name), ``- 1898286`` (key), or a mapping
    ``{name: Nymphalidae, expand_to: SPECIES, kingdom: Animalia}``.
    """

    name: str | None = None
    key: int | None = None
    expand_to: str | None = None  # a rank: the taxon stands for all its accepted descendants there
    kingdom: str | None = None  # hint for name matching (homonyms across kingdoms)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("expected a scientific name, a GBIF key or a mapping; got a boolean")
        if isinstance(data, int):
            return {"key": data}
        if isinstance(data, str):
            text = " ".join(data.split())
            return {"key": int(text)} if text.isdigit() else {"name": text}
        if data is None:
            raise ValueError("empty entry; give a scientific name or a GBIF key")
        if not isinstance(data, Mapping | TaxonRef):
            raise ValueError(
                f"expected a scientific name, a GBIF key or a mapping with name or key; got {_describe(data)}"
            )
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(
                f"expected a scientific name as text, got {_show(value)}; for a GBIF key use `key:`"
            )
        text = " ".join(value.split())
        if not text:
            raise ValueError("empty name; give a scientific name such as 'Vanessa atalanta'")
        return text

    @field_validator("key", mode="before")
    @classmethod
    def _taxon_key(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"expected a GBIF taxon key (a positive whole number), got {_show(value)}")
        return value

    @field_validator("expand_to", mode="before")
    @classmethod
    def _rank(cls, value: Any) -> Any:
        if value is None:
            return None
        return _choice(value, RANKS, "rank")

    @field_validator("kingdom", mode="before")
    @classmethod
    def _kingdom_hint(cls, value: Any) -> Any:
        return _kingdom(value)

    @model_validator(mode="after")
    def _name_or_key(self) -> TaxonRef:
        if self.name is None and self.key is None:
            raise ValueError("give a scientific name (name: ...) or a GBIF taxon key (key: ...)")
        if self.name is not None and self.key is not None:
            raise ValueError("give either name or key, not both (a key already names the taxon)")
        return self

    @property
    def label(self) -> str:
        """How to name this entry in reports: the name, or ``key 1898286``."""
        return self.name if self.name is not None else f"key {self.key}"


class SourceSpec(_Section):
    """Where occurrences come from.

    ``auto`` (default) pages the search API when the query matches at most
    ``search_max_records`` occurrences and requests a download above that; ``search`` and
    ``download`` force one; ``download_key`` and ``doi`` reuse an existing GBIF download.
    """

    type: str = "auto"
    key: str | None = None
    doi: str | None = None
    format: str = "DWCA"
    # Paging 300 records per request, 20,000 records is ~70 requests (seconds); a download takes
    # minutes whatever its size, and GBIF asks bulk users to use downloads.
    search_max_records: int = Field(default=20_000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        if isinstance(data, Mapping) and "type" not in data:
            if data.get("key") is not None:
                return {**data, "type": "download_key"}
            if data.get("doi") is not None:
                return {**data, "type": "doi"}
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return _choice(value, SOURCE_TYPES, "source type")

    @field_validator("key", mode="before")
    @classmethod
    def _download_key(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        if not _DOWNLOAD_KEY_RE.match(text):
            raise ValueError(
                f"{_show(value)} is not a GBIF download key; keys look like 0000066-140928181241064"
            )
        return text

    @field_validator("doi", mode="before")
    @classmethod
    def _doi(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        text = re.sub(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)", "", text, flags=re.IGNORECASE).lower()
        if not _GBIF_DOI_RE.match(text):
            raise ValueError(f"{_show(value)} is not a GBIF download DOI; they look like 10.15468/dl.np3k7j")
        return text

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        fmt = _choice(value, ("DWCA", "SIMPLE_CSV", "SIMPLE_PARQUET"), "download format")
        if fmt != "DWCA":
            raise ValueError(f"{fmt} archives carry no image URLs; use DWCA (the default)")
        return fmt

    @model_validator(mode="after")
    def _key_or_doi(self) -> SourceSpec:
        problems = []
        if self.type == "download_key":
            if self.key is None:
                problems.append(
                    (
                        "key",
                        "required when source.type is download_key; give the key, e.g. 0000066-140928181241064",
                    )
                )
            if self.doi is not None:
                problems.append(("doi", "not used with source.type download_key; remove it"))
        elif self.type == "doi":
            if self.doi is None:
                problems.append(
                    ("doi", "required when source.type is doi; give the DOI, e.g. 10.15468/dl.np3k7j")
                )
            if self.key is not None:
                problems.append(("key", "not used with source.type doi; remove it"))
        else:
            for field, needs in (("key", "download_key"), ("doi", "doi")):
                if getattr(self, field) is not None:
                    problems.append(
                        (field, f"only used with source.type {needs}; set type: {needs} or remove {field}")
                    )
        if problems:
            raise _Problems(problems)
        return self


class BalancingSpec(_Section):
    """Exact, seeded stratified sampling: by label, then within a label by ``by`` columns."""

    label_rank: str = "SPECIES"  # labels are the accepted keys at this rank
    max_per_class: int | None = Field(default=None, ge=1)  # None: no cap
    min_per_class: int = Field(default=1, ge=0)  # classes with fewer images are dropped and reported
    max_total: int | None = Field(default=None, ge=1)  # overall cap (weighted mode samples to it)
    by: list[str] = Field(default_factory=lambda: ["publishingOrgKey"])  # strata within a class
    max_per_occurrence: int | None = Field(default=1, ge=1)  # images taken from one occurrence
    mode: str = "exact"  # exact: equal classes up to max_per_class; weighted: natural proportions
    seed: int = Field(default=0, ge=0)
    # The balance check passes when the smallest class has at least (1 - tolerance) x the images
    # of the largest one (0: perfectly equal; 0.5: at most 2x apart). Not checked in weighted mode.
    tolerance: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("label_rank", mode="before")
    @classmethod
    def _rank(cls, value: Any) -> Any:
        return _choice(value, LABEL_RANKS, "label rank")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        return _choice(value, BALANCING_MODES, "balancing mode").lower()

    @field_validator("by", mode="before")
    @classmethod
    def _by(cls, value: Any) -> Any:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            raise ValueError(f"expected a list of column names, got {_describe(value)}")
        out: list[str] = []
        for column in values:
            if not isinstance(column, str) or not _COLUMN_RE.match(column.strip()):
                raise ValueError(f"{_show(column)} is not a column name (e.g. publishingOrgKey, datasetKey)")
            if column.strip() not in out:
                out.append(column.strip())
        return out

    @model_validator(mode="after")
    def _min_max(self) -> BalancingSpec:
        if self.max_per_class is not None and self.min_per_class > self.max_per_class:
            raise _Problems(
                [
                    (
                        "min_per_class",
                        f"{self.min_per_class} is above max_per_class ({self.max_per_class}); lower it",
                    )
                ]
            )
        return self

    @property
    def max_class_ratio(self) -> float:
        """Largest / smallest class size the balance check accepts."""
        return float("inf") if self.tolerance >= 1.0 else 1.0 / (1.0 - self.tolerance)


class SplitSpec(_Section):
    """Train/val/test fractions, assigned by a stable hash of a group key (no group crosses splits)."""

    train: float = Field(default=0.8, ge=0.0, le=1.0)
    val: float = Field(default=0.1, ge=0.0, le=1.0)
    test: float = Field(default=0.1, ge=0.0, le=1.0)
    group_by: str = "occurrence"  # occurrence | observer | location | dataset
    location_cell_degrees: float = Field(default=0.1, gt=0.0, le=90.0)  # grid cell for group_by location
    seed: int = Field(default=0, ge=0)  # salt of the hash: change it to draw different splits

    @field_validator("group_by", mode="before")
    @classmethod
    def _group(cls, value: Any) -> Any:
        return _choice(value, SPLIT_GROUPS, "split group").lower()

    @model_validator(mode="after")
    def _sum(self) -> SplitSpec:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            parts = " + ".join(
                f"{getattr(self, f):g}" + ("" if f in self.model_fields_set else f" ({f} by default)")
                for f in ("train", "val", "test")
            )
            raise ValueError(f"train + val + test = {parts} = {total:g}; the fractions must sum to 1")
        if self.train <= 0:
            raise _Problems([("train", "must be above 0: a training set needs training images")])
        return self


class AnnotationPolicy(_Section):
    """Which annotation rules apply and which labelled records stay out of the training set."""

    rulesets: list[str] | None = None  # None: every ruleset; []: ignore annotations
    drop_labels: list[str] = Field(default_factory=lambda: ["MANAGED", "FORMER", "SUSPICIOUS"])
    min_support: int = Field(default=0, ge=0)  # rules with fewer supporting votes are ignored
    exclude_contested: bool = False  # ignore rules that anyone contested
    # A record matched by rules with several labels, some to drop and some not:
    # exclude_any drops it (any drop label excludes), keep_conflicting keeps it unless every label
    # on it is a drop label, exclude_all drops every conflicting record as well as drop-labelled ones.
    conflicts: str = "exclude_any"

    @field_validator("rulesets", mode="before")
    @classmethod
    def _rulesets(cls, value: Any) -> Any:
        if value is None:
            return None
        values = [value] if isinstance(value, str | int) else value
        if not isinstance(values, list):
            raise ValueError(f"expected a list of ruleset names or ids, got {_describe(value)}")
        out: list[str] = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
                raise ValueError(f"{_show(item)} is not a ruleset name or id")
            if str(item).strip() not in out:
                out.append(str(item).strip())
        return out

    @field_validator("drop_labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            raise ValueError(f"expected a list of labels, got {_describe(value)}")
        labels = {_choice(v, ANNOTATION_LABELS, "annotation label") for v in values}
        return [label for label in ANNOTATION_LABELS if label in labels]

    @field_validator("conflicts", mode="before")
    @classmethod
    def _conflicts(cls, value: Any) -> Any:
        return _choice(value, CONFLICT_MODES, "conflict mode").lower()


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


class ImageOptions(_Section):
    """How images are fetched, validated and stored."""

    max_side: int | None = Field(default=512, ge=16)  # resize so the longer side is at most this; None: keep
    min_side: int = Field(default=64, ge=1)  # smaller images are rejected as unusable
    format: str = "jpeg"  # jpeg | png | webp | original (keep the downloaded bytes)
    quality: int = Field(default=90, ge=1, le=100)  # jpeg/webp encoder quality
    max_bytes: int = Field(default=20_000_000, ge=1024)  # larger downloads are refused ("20MB" accepted)
    completeness_threshold: float = Field(default=0.95, ge=0.0, le=1.0)  # share of images that must arrive
    shards: int = Field(default=8, ge=1, le=256)  # image_store partitions per training set

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "jpg":
            return "jpeg"
        return _choice(value, IMAGE_FORMATS, "image format").lower()

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = _SIZE_RE.match(value)
            if m is None:
                raise ValueError(f"{_show(value)} is not a size; write bytes (20000000) or e.g. '20MB'")
            unit = (m.group(2) or "").lower().rstrip("b")
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
        return value

    @model_validator(mode="after")
    def _sides(self) -> ImageOptions:
        problems = []
        if self.max_side is not None and self.min_side > self.max_side:
            problems.append(("min_side", f"{self.min_side} is above max_side ({self.max_side}); lower it"))
        if self.format == "original" and self.max_side is not None:
            problems.append(
                (
                    "max_side",
                    "format original keeps the downloaded bytes and cannot resize; "
                    "set max_side: null or choose jpeg, png or webp",
                )
            )
        if problems:
            raise _Problems(problems)
        return self


_CRON_ALIASES = ("@hourly", "@daily", "@weekly", "@monthly")


class RefreshSpec(_Section):
    """When the training set is rebuilt from fresh GBIF data; ``cron: null`` = never automatically."""

    cron: str | None = None
    timezone: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"cron": data} if isinstance(data, str) else data

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: Any) -> Any:
        if value is None:
            return None
        text = " ".join(str(value).split())
        example = "e.g. '0 3 1 * *' (03:00 on the 1st of every month) or @daily, @weekly, @monthly"
        if text.startswith("@"):
            if text.lower() in _CRON_ALIASES:
                return text.lower()
            raise ValueError(f"'{text}' is not a cron alias; use {', '.join(_CRON_ALIASES)}")
        if len(text.split()) != 5 or not croniter.is_valid(text):
            raise ValueError(
                f"'{text}' is not a valid cron expression; give 5 fields "
                f"(minute hour day-of-month month day-of-week), {example}"
            )
        return text

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> Any:
        text = str(value).strip() if value is not None else "UTC"
        try:
            ZoneInfo(text)
        except Exception:
            raise ValueError(
                f"'{text}' is not an IANA time zone; use e.g. UTC or Europe/Copenhagen"
            ) from None
        return text


class TrainingSetSpec(_Section):
    """One training set. See ``gbifdl_assets/examples/*.yaml`` for annotated examples."""

    name: str  # the partition key
    description: str = ""
    kingdom: str | None = None  # default kingdom hint for taxa given by name
    taxa: list[TaxonRef]
    occurrence_filters: dict[str, list[str]] = Field(default_factory=lambda: {"mediaType": ["StillImage"]})
    exclude_filters: dict[str, list[str]] = Field(default_factory=dict)  # records matching any are dropped
    source: SourceSpec = Field(default_factory=SourceSpec)
    balancing: BalancingSpec = Field(default_factory=BalancingSpec)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    annotations: AnnotationPolicy = Field(default_factory=AnnotationPolicy)
    images: ImageOptions = Field(default_factory=ImageOptions)
    licenses: list[str] = Field(
        default_factory=lambda: lic.parse_license_allowlist(DEFAULT_LICENSE_ALLOWLIST)
    )  # normalised media-licence ids allowed in the set
    refresh: RefreshSpec = Field(default_factory=RefreshSpec)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not _NAME_RE.match(value):
            slug = re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-_")[:63] or "my-training-set"
            raise ValueError(
                f"{_show(value)} is not a valid training-set name; use 1-63 lowercase letters, digits, "
                f"'-' or '_', starting with a letter or digit, e.g. '{slug}'"
            )
        return value

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("kingdom", mode="before")
    @classmethod
    def _kingdom_hint(cls, value: Any) -> Any:
        return _kingdom(value)

    @field_validator("taxa", mode="before")
    @classmethod
    def _taxa(cls, value: Any) -> Any:
        if isinstance(value, str | int | Mapping) and not isinstance(value, bool):
            value = [value]
        if value is None or (isinstance(value, list) and not value):
            raise ValueError(
                "empty; list at least one scientific name or GBIF key, e.g. taxa: [Vanessa atalanta]"
            )
        return value

    @field_validator("occurrence_filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> Any:
        filters = normalize_search_filters(value)
        # an image training set only wants records that have images
        media = filters.setdefault("mediaType", ["StillImage"])
        if "StillImage" not in media:
            raise _Problems(
                [("mediaType", "an image training set needs StillImage; add it or remove mediaType")]
            )
        return dict(sorted(filters.items()))

    @field_validator("exclude_filters", mode="before")
    @classmethod
    def _exclude(cls, value: Any) -> Any:
        return normalize_search_filters(value)

    @field_validator("licenses", mode="before")
    @classmethod
    def _licenses(cls, value: Any) -> Any:
        if value is None:
            return lic.parse_license_allowlist(DEFAULT_LICENSE_ALLOWLIST)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError(f"expected a list of licences, got {_describe(value)}")
        if not items:
            raise ValueError(
                f"an empty allowlist admits no image; list licences, e.g. {list(DEFAULT_LICENSE_ALLOWLIST)}"
            )
        allowed: set[str] = set()
        problems: list[tuple[str, str]] = []
        for i, item in enumerate(items):
            try:
                allowed.update(lic.resolve_license_entry(item))
            except ValueError as exc:
                problems.append((f"[{i}]", str(exc)))
        if problems:
            raise _Problems(problems)
        return [x for x in lic.KNOWN_LICENSES if x in allowed]

    @model_validator(mode="after")
    def _taxa_checks(self) -> TrainingSetSpec:
        problems: list[tuple[str, str]] = []
        seen: dict[Any, int] = {}
        for i, taxon in enumerate(self.taxa):
            ident = ("key", taxon.key) if taxon.key is not None else ("name", (taxon.name or "").casefold())
            if ident in seen:
                problems.append(
                    (f"taxa[{i}]", f"'{taxon.label}' repeats taxa[{seen[ident]}]; remove one of them")
                )
            seen.setdefault(ident, i)
        if problems:
            raise _Problems(problems)
        if self.kingdom is not None:
            taxa = [
                t.model_copy(update={"kingdom": self.kingdom}) if t.kingdom is None and t.name else t
                for t in self.taxa
            ]
            object.__setattr__(self, "taxa", taxa)  # frozen model: fill the hint in once, here
        return self

    # -- derived ------------------------------------------------------------------------------------
    def search_params(self, taxon_keys: Iterable[int] | None = None) -> dict[str, list[str]]:
        """``occurrence_filters`` as GBIF search parameters (a list = repeated parameter = OR).

        With ``taxon_keys`` (the resolved taxa) a ``taxonKey`` parameter is added.
        """
        params = {k: list(v) for k, v in self.occurrence_filters.items()}
        if taxon_keys is not None:
            params["taxonKey"] = [str(k) for k in sorted(set(taxon_keys))]
        return params

    def fingerprint(self, *sections: str) -> str:
        """Stable sha256 of the normalised spec (or of some top-level fields only).

        Key order, spelling of parameter names, case of enum values and the order of filter
        values do not change it; any change of meaning does. ``fingerprint("taxa", "kingdom")``
        fingerprints only what a stage depends on.
        """
        data = self.model_dump(mode="json")
        if sections:
            unknown = [s for s in sections if s not in data]
            if unknown:
                raise ValueError(f"unknown spec fields {unknown}; fields: {', '.join(data)}")
            data = {s: data[s] for s in sections}
        payload = json.dumps({"spec_format": 1, "spec": data}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------
# pydantic errors -> problem lines
# ---------------------------------------------------------------------------------------------------
def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    model: type[BaseModel] = TrainingSetSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        stack, found = [field.annotation], None
        while stack and found is None:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                found = ann
            else:
                stack.extend(get_args(ann))
        if found is None:
            return None
        model = found
    return model


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part):  # pydantic-internal steps such as function-after[...]
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _join(base: str, sub: str) -> str:
    if not sub:
        return base
    if sub.startswith("[") or not base:
        return base + sub
    return f"{base}.{sub}"


_REQUIRED_HINTS = {
    "name": "required; add e.g. `name: my-training-set` (lowercase letters, digits, '-' and '_')",
    "taxa": "required; list the taxa, e.g. taxa: [Vanessa atalanta, Aglais io]",
}


def _message(err: Mapping[str, Any]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "missing":
        return _REQUIRED_HINTS.get(str(err["loc"][-1]), "required; add it")
    if kind.startswith("int_"):
        return f"expected a whole number, got {_show(value)}"
    if kind.startswith("float_"):
        return f"expected a number, got {_show(value)}"
    if kind.startswith("bool_"):
        return f"expected true or false, got {_show(value)}"
    if kind.startswith("string_"):
        return f"expected text, got {_show(value)}"
    if kind == "list_type":
        return f"expected a list, got {_describe(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of fields, got {_describe(value)}"
    for bound, words in (
        ("ge", "at least"),
        ("gt", "greater than"),
        ("le", "at most"),
        ("lt", "less than"),
    ):
        if bound in ctx:
            return f"must be {words} {ctx[bound]}, got {_show(value)}"
    return str(err["msg"])


def _unknown_field(loc: Sequence[Any]) -> str:
    model = _model_at(loc[:-1])
    field = str(loc[-1])
    valid = list(model.model_fields) if model is not None else []
    suggestion = _suggest(field, valid) if valid else None
    if suggestion:
        return f"unknown field; did you mean '{suggestion}'?"
    return (
        f"unknown field; remove it (fields here: {', '.join(valid)})" if valid else "unknown field; remove it"
    )


def _problems_from(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        base = _path(loc)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            items = [(_join(base, sub), msg) for sub, msg in cause.items]
        elif err["type"] == "extra_forbidden":
            items = [(base, _unknown_field(loc))]
        else:
            items = [(base, _message(err))]
        for path, msg in items:
            line = f"{path}: {msg}" if path else msg
            if line not in lines:
                lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------------
class _SpecLoader(yaml.SafeLoader):
    """Safe YAML with the surprises removed.

    YAML 1.1 reads ``NO`` (Norway), ``yes``, ``on`` and ``off`` as booleans and bare dates as
    date objects; in a spec they are country codes and date strings. Only true/false are
    booleans here. Duplicate keys, which PyYAML silently resolves to the last one, are errors.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable keys are reported by the model
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key '{key}' (first given on line {first.line + 1}); keep only one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_SpecLoader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    hint = (
        ""
        if "duplicate key" in problem
        else "; fix the YAML (indentation, a missing ':', or quote the value)"
    )
    return f"{where}{problem}{hint}"


# ---------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------
def parse_spec(
    text_or_dict: str | Mapping[str, Any],
    *,
    source: str = "<string>",
    default_name: str | None = None,
) -> TrainingSetSpec:
    """A spec from YAML text or an already-parsed mapping; SpecError(source, problems) if invalid.

    ``default_name`` is used when the spec has no ``name`` (load_spec passes the file's stem).
    """
    if isinstance(text_or_dict, str):
        try:
            data = yaml.load(text_or_dict, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise SpecError(source, [_yaml_problem(exc)]) from None
    else:
        data = text_or_dict
    if data is None:
        raise SpecError(source, ["the spec is empty; give at least name: and taxa:"])
    if not isinstance(data, Mapping):
        raise SpecError(source, [f"a spec is a mapping of fields (name:, taxa:, ...), got {_describe(data)}"])
    if "name" not in data and default_name is not None:
        data = {"name": default_name, **data}
    try:
        return TrainingSetSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(source, _problems_from(exc)) from None


def load_spec(path: str | Path) -> TrainingSetSpec:
    """Load and validate one YAML spec file; SpecError naming the file and every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, ["file not found; check the path"]) from None
    except IsADirectoryError:
        raise SpecError(path, ["is a folder; give a .yaml file (or use load_spec_folder)"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(path, [f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"]) from None
    return parse_spec(text, source=str(path), default_name=path.stem)


def load_spec_folder(
    folder: str | Path, *, errors: list[SpecError] | None = None, files: dict[str, Path] | None = None
) -> dict[str, TrainingSetSpec]:
    """Every ``*.yaml``/``*.yml`` spec in a folder, by name.

    With ``errors`` (a list), invalid files are appended to it and skipped; without it, one
    SpecError listing the problems of every invalid file is raised after all were read. With
    ``files`` (a dict), the file of each valid spec is stored in it by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError(folder, ["spec folder not found; give a folder of training-set YAML files"])
    specs: dict[str, TrainingSetSpec] = {}
    files = {} if files is None else files
    failed: list[SpecError] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed.append(exc)
            continue
        if spec.name in specs:
            failed.append(
                SpecError(
                    path,
                    [
                        f"name: '{spec.name}' is already used by {files[spec.name].name}; give every set a unique name"
                    ],
                )
            )
            continue
        specs[spec.name] = spec
        files[spec.name] = path
    if errors is not None:
        errors.extend(failed)
    elif failed:
        raise SpecError(folder, [f"{Path(e.path).name}: {p}" for e in failed for p in e.problems])
    return specs


def example_specs_dir() -> Path:
    """The example specs shipped in the package (the demo's spec folder)."""
    return Path(__file__).resolve().parent / "examples"
