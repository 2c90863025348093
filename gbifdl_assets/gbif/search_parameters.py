"""GBIF's occurrence search parameters: their names, the kind of value each takes, and the checks.

A training-set spec filters occurrences with GBIF's own search parameters, and the same filters
become download predicates and, after a snapshot, record filters. This module knows GBIF's
grammar for them (gbif-api ``OccurrenceSearchParameter``): which names exist, how any spelling
maps to the canonical camelCase name, and how each value kind (number range, date range, enum,
country, UUID, licence, WKT geometry ...) is checked and normalised, so that a mistake is found
before a request is sent and two spellings of one query compare equal.

It knows nothing of training sets: a bad name or value raises :class:`SearchParameterError`
(one ``(parameter, problem)`` pair per mistake), which the spec layer turns into its problem lines.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.gbif import licenses as lic
from gbifdl_assets.quoting import describe, show
from gbifdl_assets.suggestions import close_matches, lookup_key, match_choice
from gbifdl_assets.vocabulary import (
    BASIS_OF_RECORD,
    CONTINENTS,
    COUNTRY_CODES,
    GBIF_REGIONS,
    MAX_GEOMETRY_VERTICES,
    MAX_WKT_CHARS,
    MEDIA_TYPES,
    OCCURRENCE_ISSUES,
    OCCURRENCE_STATUSES,
    TAXONOMIC_STATUSES,
)

__all__ = [
    "OCCURRENCE_SEARCH_PARAMETERS",
    "SearchParameterError",
    "canonical_search_parameter",
    "normalize_search_filters",
    "parameter_kind",
    "record_field",
]


class SearchParameterError(GbifdlError, ValueError):
    """Search parameters GBIF would refuse; ``problems`` holds one ``(parameter, what to do)`` per mistake.

    The parameter is ``""`` when the problem concerns the filters as a whole.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.problems))

    def __reduce__(self):  # keep the problems when pickled across processes
        return (type(self), (self.problems,))


# ---------------------------------------------------------------------------------------------------
# parameters and their value kinds
# ---------------------------------------------------------------------------------------------------
_COUNTRIES = frozenset(COUNTRY_CODES)
# codes people write for a country whose ISO code differs (the UK, Greece in EU usage, England)
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
    "GBIF_REGION": ("enum", GBIF_REGIONS),
    "CONTINENT": ("enum", CONTINENTS),
    "PUBLISHING_COUNTRY": _COUNTRY,
    "PUBLISHED_BY_GBIF_REGION": ("enum", GBIF_REGIONS),
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
    "TAXONOMIC_STATUS": ("enum", TAXONOMIC_STATUSES),
    "HAS_COORDINATE": _BOOL,
    "GEOMETRY": _GEOMETRY,
    "GEO_DISTANCE": _STR,
    "DISTANCE_FROM_CENTROID_IN_METERS": (_NUM_RANGE, 0, None, False),
    "HAS_GEOSPATIAL_ISSUE": _BOOL,
    "ISSUE": ("enum", OCCURRENCE_ISSUES),
    "TYPE_STATUS": _STR,
    "MEDIA_TYPE": ("enum", MEDIA_TYPES),
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
    "OCCURRENCE_STATUS": ("enum", OCCURRENCE_STATUSES),
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


#: canonical camelCase search parameter -> GBIF's UPPER_SNAKE name (download predicate key)
OCCURRENCE_SEARCH_PARAMETERS: dict[str, str] = {_camel(p): p for p in _PARAM_KINDS}
_PARAM_BY_KEY: dict[str, str] = {lookup_key(p): _camel(p) for p in _PARAM_KINDS}


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

    SearchParameterError (a ValueError, with a did-you-mean) for names GBIF's occurrence search
    does not know.
    """
    key = lookup_key(str(name))
    if key in _PARAM_BY_KEY:
        return _PARAM_BY_KEY[key]
    if key in _PARAM_ALIASES:
        return _PARAM_ALIASES[key]
    if key in _NOT_FILTERS:
        raise SearchParameterError([("", _NOT_FILTERS[key])])
    if key.startswith("FACET"):
        raise SearchParameterError([("", f"'{name}' is a facet parameter, not a filter; remove it")])
    close = close_matches(key, list(_PARAM_BY_KEY), cutoff=0.75, key=lookup_key)
    hint = (
        f"did you mean '{_PARAM_BY_KEY[close[0]]}'?" if close else "see GBIF's occurrence search parameters"
    )
    raise SearchParameterError([("", f"unknown GBIF occurrence search parameter; {hint}")])


# ---------------------------------------------------------------------------------------------------
# values
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
    raise ValueError(f"expected a value or a list of values, got {describe(value)}")


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
            f"cannot parse WKT {show(text)}; write e.g. 'POLYGON((10 50, 12 50, 12 52, 10 52, 10 50))'"
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
        return [match_choice(text, kind[1], f"{param} value")]
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
        raise ValueError(f"expected true or false, got {show(value)}")
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
        enum = (
            lookup_key(text) if lookup_key(text) in {lookup_key(e) for e in lic.GBIF_LICENSE_ENUMS} else None
        )
        if enum is not None:
            return [next(e for e in lic.GBIF_LICENSE_ENUMS if lookup_key(e) == enum)]
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

    Raises :class:`SearchParameterError` (a ValueError) carrying one problem per bad name or value.
    """
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise SearchParameterError(
            [
                (
                    "",
                    f"expected a mapping of GBIF search parameters (e.g. country: DE), got {describe(filters)}",
                )
            ]
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
        raise SearchParameterError(problems)
    return dict(sorted(out.items()))
