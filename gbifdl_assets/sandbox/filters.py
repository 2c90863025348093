"""Vectorised occurrence filters shared by the search API and download predicates.

Each GBIF occurrence field the sandbox understands is described once (:data:`FIELDS`): its canonical
search-parameter name, its UPPER_SNAKE enum name (used by predicates and facets), how a value is
parsed and validated, and the numpy array it compares against. Taxonomic and dataset fields are
evaluated on the small taxonomy/dataset tables first and then expanded to occurrences with one
``take``, which keeps a filter over a million records in the millisecond range.

Validation messages imitate GBIF's (``Invalid integer range: x``, ``Value X invalid for filter
parameter BASIS_OF_RECORD`` …) because clients surface them to users.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np

from gbifdl_assets.vocabulary import (
    BASIS_OF_RECORD,
    CONTINENTS,
    KEY_RANKS,
    MEDIA_TYPES,
    OCCURRENCE_STATUSES,
    RECORD_LICENSES,
)

from .vocab import COUNTRIES, COUNTRY_INDEX, GEOSPATIAL_ISSUE_MASK, ISSUE_NAMES, LICENSES, NO_COUNTRY
from .world import FLAG_ABSENT, World


class BadRequest(ValueError):
    """A user error; the message is sent as a 400 text/plain body, GBIF style."""


def norm(name: str) -> str:
    """GBIF's lookup normalisation: upper-case, drop ``. _ -`` (and spaces)."""
    return re.sub(r"[._\-\s]", "", name).upper()


_DECIMAL = r"-?\d+(?:\.\d+)?"
_RANGE = re.compile(rf"^\s*({_DECIMAL}|\*)\s*,\s*({_DECIMAL}|\*)\s*$")
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


@dataclass(frozen=True)
class Field:
    name: str  # canonical camelCase search parameter
    enum: str  # UPPER_SNAKE (predicate key, facet name, error messages)
    kind: str  # int | decimal | enum | bits | bool | key | uuid | country | date | taxon | geometry | name | string
    level: str = "occ"  # occ | taxon | dataset | country: which table ``values`` are defined on
    values: Callable[[World], np.ndarray] | None = None
    null: int | float | None = None  # the value meaning "missing" (NaN handled for decimals)
    vocab: tuple[str, ...] = ()
    facet: bool = True


def _tax(r: int) -> Callable[[World], np.ndarray]:
    return lambda w: w.taxonomy.cls_keys[:, r]


def _dataset_attr(attr: str) -> Callable[[World], np.ndarray]:
    return lambda w: np.array([getattr(d, attr) for d in w.datasets])


_COUNTRY_CONTINENT = np.full(256, 255, dtype=np.int64)
for _i, _c in enumerate(COUNTRIES):
    _COUNTRY_CONTINENT[_i] = CONTINENTS.index(_c[2])

FIELDS: tuple[Field, ...] = (
    Field("taxonKey", "TAXON_KEY", "taxon", "taxon"),
    *(Field(f"{r.lower()}Key", f"{r}_KEY", "key", "taxon", _tax(i), null=0) for i, r in enumerate(KEY_RANKS)),
    Field(
        "acceptedTaxonKey",
        "ACCEPTED_TAXON_KEY",
        "key",
        "taxon",
        lambda w: w.taxonomy.keys[w.taxonomy.accepted],
        null=0,
    ),
    Field("scientificName", "SCIENTIFIC_NAME", "name", "taxon", facet=False),
    Field("datasetKey", "DATASET_KEY", "uuid", "dataset", lambda w: np.arange(len(w.datasets))),
    Field("publishingOrg", "PUBLISHING_ORG", "uuid", "dataset", lambda w: w.dataset_publisher),
    Field(
        "publishingCountry",
        "PUBLISHING_COUNTRY",
        "country",
        "dataset",
        lambda w: np.array([COUNTRY_INDEX.get(w.publishers[d.publisher].country, 254) for d in w.datasets]),
    ),
    Field("institutionCode", "INSTITUTION_CODE", "string", "dataset", _dataset_attr("institution_code")),
    Field("collectionCode", "COLLECTION_CODE", "string", "dataset", _dataset_attr("collection_code")),
    Field("basisOfRecord", "BASIS_OF_RECORD", "enum", "occ", lambda w: w.occ.basis, vocab=BASIS_OF_RECORD),
    Field("license", "LICENSE", "enum", "occ", lambda w: w.occ.license, vocab=RECORD_LICENSES),
    Field(
        "occurrenceStatus",
        "OCCURRENCE_STATUSES",
        "enum",
        "occ",
        lambda w: (w.occ.flags & FLAG_ABSENT).astype(np.uint8),
        vocab=OCCURRENCE_STATUSES,
    ),
    Field("country", "COUNTRY", "country", "occ", lambda w: w.occ.country, null=NO_COUNTRY),
    Field(
        "continent", "CONTINENT", "enum", "country", lambda w: _COUNTRY_CONTINENT, null=255, vocab=CONTINENTS
    ),
    Field("year", "YEAR", "int", "occ", lambda w: w.occ.year, null=0),
    Field("month", "MONTH", "int", "occ", lambda w: w.occ.month, null=0),
    Field("day", "DAY", "int", "occ", lambda w: w.occ.day, null=0, facet=False),
    Field(
        "eventDate",
        "EVENT_DATE",
        "date",
        "occ",
        lambda w: w.occ.date_ordinal(),
        null=int(np.iinfo(np.int32).min),
        facet=False,
    ),
    Field("gbifId", "GBIF_ID", "int", "occ", lambda w: w.occ.key, facet=False),
    Field("decimalLatitude", "DECIMAL_LATITUDE", "decimal", "occ", lambda w: w.occ.lat, facet=False),
    Field("decimalLongitude", "DECIMAL_LONGITUDE", "decimal", "occ", lambda w: w.occ.lon, facet=False),
    Field(
        "coordinateUncertaintyInMeters",
        "COORDINATE_UNCERTAINTY_IN_METERS",
        "decimal",
        "occ",
        lambda w: w.occ.uncertainty,
        facet=False,
    ),
    Field("mediaType", "MEDIA_TYPE", "bits", "occ", lambda w: w.occ.media_types, vocab=MEDIA_TYPES),
    Field("issue", "ISSUE", "bits", "occ", lambda w: w.occ.issues, vocab=ISSUE_NAMES),
    Field("hasCoordinate", "HAS_COORDINATE", "bool", "occ", lambda w: ~np.isnan(w.occ.lat)),
    Field(
        "hasGeospatialIssue",
        "HAS_GEOSPATIAL_ISSUE",
        "bool",
        "occ",
        lambda w: (w.occ.issues & np.uint32(GEOSPATIAL_ISSUE_MASK)) != 0,
    ),
    Field("geometry", "GEOMETRY", "geometry", "occ", facet=False),
)

_BY_NORM: dict[str, Field] = {}
for _f in FIELDS:
    _BY_NORM[norm(_f.name)] = _f
    _BY_NORM[norm(_f.enum)] = _f
# aliases GBIF accepts
_BY_NORM["PUBLISHINGORGKEY"] = _BY_NORM["PUBLISHINGORG"]
_BY_NORM["GBIFID"] = _BY_NORM["GBIFID"]
_BY_NORM["HASGEOSPATIALISSUES"] = _BY_NORM["HASGEOSPATIALISSUE"]


def lookup(name: str) -> Field | None:
    """The field for a parameter or predicate key, whatever its case or separators."""
    return _BY_NORM.get(norm(name))


# ---------------------------------------------------------------------------------------------------
# value parsing
# ---------------------------------------------------------------------------------------------------
def _enum_index(f: Field, value: str) -> int:
    target = norm(value)
    for i, v in enumerate(f.vocab):
        if norm(v) == target:
            return i
    if f.name == "continent":
        raise BadRequest(f"Cannot parse {value} into a known Continent")
    raise BadRequest(f"Value {value} invalid for filter parameter {f.enum}")


def _parse_int(f: Field, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise BadRequest(f"Invalid integer range: {value}") from None


def _parse_number(f: Field, text: str, value: str) -> float:
    try:
        x = float(text)
    except ValueError:
        if f.kind == "int" or f.kind == "key":
            raise BadRequest(f"Invalid integer range: {value}") from None
        raise BadRequest(f"Invalid decimal range: {value}") from None
    if f.kind in ("int", "key") and x != int(x):
        raise BadRequest(f"Invalid integer range: {value}")
    return x


def _check_bounds(f: Field, lo: float | None, hi: float | None, value: str) -> None:
    limits = {"decimalLatitude": (90, "latitude"), "decimalLongitude": (180, "longitude")}
    if f.name in limits:
        lim, what = limits[f.name]
        for x in (lo, hi):
            if x is not None and abs(x) > lim:
                raise BadRequest(f"{value} is not valid value, {what} must be between -{lim} and {lim}.")
    if f.name == "month":
        for x in (lo, hi):
            if x is not None and not 1 <= x <= 12:
                raise BadRequest("Month needs to be between 1 - 12")


def parse_range(f: Field, value: str) -> tuple[float | None, float | None] | None:
    """``(lo, hi)`` for ``a,b`` / ``*,b`` / ``a,*``; None when the value is not a range."""
    if "," not in value:
        return None
    m = _RANGE.match(value)
    if not m:
        if f.kind == "int" or f.kind == "key":
            raise BadRequest(f"Invalid integer range: {value}")
        raise BadRequest(f"Invalid decimal range: {value}")
    lo = None if m.group(1) == "*" else _parse_number(f, m.group(1), value)
    hi = None if m.group(2) == "*" else _parse_number(f, m.group(2), value)
    _check_bounds(f, lo, hi, value)
    return lo, hi


def _parse_date(value: str, *, end: bool) -> int:
    """Days since epoch of the first (or last, with ``end``) day of a YYYY[-MM[-DD]] period."""
    m = _DATE.match(value.strip())
    if not m:
        raise BadRequest(f"Invalid date: {value}. Use YYYY, YYYY-MM or YYYY-MM-DD, or a range 'from,to'.")
    y, mo, d = int(m.group(1)), m.group(2), m.group(3)
    try:
        if d is not None:
            day = date(y, int(mo), int(d))
        elif mo is not None:
            mo_i = int(mo)
            if end:
                nxt = date(y + (mo_i == 12), mo_i % 12 + 1, 1)
                day = date.fromordinal(nxt.toordinal() - 1)
            else:
                day = date(y, mo_i, 1)
        else:
            day = date(y, 12, 31) if end else date(y, 1, 1)
    except ValueError:
        raise BadRequest(f"Invalid date: {value}") from None
    return day.toordinal() - date(1970, 1, 1).toordinal()


def _level_index(world: World, level: str) -> np.ndarray | None:
    occ = world.occ
    return {"taxon": occ.taxon, "dataset": occ.dataset, "country": occ.country}.get(level)


def _expand(world: World, f: Field, level_mask: np.ndarray) -> np.ndarray:
    idx = _level_index(world, f.level)
    return level_mask if idx is None else level_mask[idx]


# ---------------------------------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------------------------------
def _taxon_level(world: World, value: str, f: Field) -> np.ndarray:
    key = _parse_int(f, value)
    tax = world.taxonomy
    idx = tax.by_key.get(key)
    if idx is None:
        return np.zeros(len(tax.taxa), dtype=bool)
    return tax.descendant_mask(idx)


def _name_level(world: World, value: str) -> np.ndarray:
    # GBIF resolves scientificName through the backbone matcher and filters by the matched key
    tax = world.taxonomy
    mask = np.zeros(len(tax.taxa), dtype=bool)
    for t in tax.find(value):
        mask |= tax.descendant_mask(t.idx)
    return mask


def compare(world: World, f: Field, op: str, value: str) -> np.ndarray:
    """Mask of records whose field compares ``op`` (lt, le, gt, ge) to ``value``."""
    if f.kind not in ("int", "decimal", "key", "date"):
        raise BadRequest(f"Comparison {op} is not supported for {f.enum}")
    if f.kind == "date":
        x = _parse_date(value, end=op in ("le", "gt"))
    else:
        x = _parse_number(f, value.strip(), value)
    vals = f.values(world)
    with np.errstate(invalid="ignore"):
        m = {"lt": vals < x, "le": vals <= x, "gt": vals > x, "ge": vals >= x}[op]
    if f.null is not None:
        m &= vals != f.null
    return _expand(world, f, m)


def _raw_null(world: World, f: Field) -> np.ndarray:
    if f.kind == "decimal":
        return np.isnan(f.values(world))
    if f.kind == "bits":
        return f.values(world) == 0
    if f.kind in ("taxon", "name"):
        return np.zeros(len(world.taxonomy.taxa), dtype=bool)
    if f.values is None:
        raise BadRequest(f"isNull is not supported for {f.enum}")
    vals = f.values(world)
    if f.null is None:
        return np.zeros(vals.shape, dtype=bool)
    return vals == f.null


def null_mask(world: World, f: Field) -> np.ndarray:
    """Records where the field is missing (``isNull``)."""
    return _expand(world, f, _raw_null(world, f))


def value_mask(world: World, f: Field, value: str) -> np.ndarray:
    """Records matching one search-parameter value (a single value or an ``a,b`` range)."""
    return _expand(world, f, raw_value_mask(world, f, value))


def raw_value_mask(world: World, f: Field, value: str) -> np.ndarray:
    """Like :func:`value_mask`, on the field's own table (taxa, datasets, countries or occurrences)."""
    value = value.strip()
    k = f.kind
    if value == "*" and k != "geometry":
        return ~_raw_null(world, f)
    if k == "taxon":
        return _taxon_level(world, value, f)
    if k == "name":
        return _name_level(world, value)
    if k == "geometry":
        return geometry_mask(world, value)
    if k in ("int", "key", "decimal"):
        rng = parse_range(f, value)
        vals = f.values(world)
        if rng is None:
            x = _parse_number(f, value, value)
            _check_bounds(f, x, None, value)
            return vals == x
        lo, hi = rng
        m = np.ones(vals.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            if lo is not None:
                m &= vals >= lo
            if hi is not None:
                m &= vals <= hi
        if f.null is not None:
            m &= vals != f.null
        return m
    if k == "date":
        parts = value.split(",")
        if len(parts) == 1:
            lo, hi = _parse_date(parts[0], end=False), _parse_date(parts[0], end=True)
        elif len(parts) == 2:
            lo = None if parts[0].strip() in ("*", "") else _parse_date(parts[0], end=False)
            hi = None if parts[1].strip() in ("*", "") else _parse_date(parts[1], end=True)
        else:
            raise BadRequest(f"Invalid date range: {value}")
        vals = f.values(world)
        m = vals != f.null
        if lo is not None:
            m &= vals >= lo
        if hi is not None:
            m &= vals <= hi
        return m
    if k == "enum":
        return f.values(world) == _enum_index(f, value)
    if k == "bits":
        i = _enum_index(f, value)
        vals = f.values(world)
        return (vals & vals.dtype.type(1 << i)) != 0
    if k == "bool":
        if value.lower() not in ("true", "false"):
            raise BadRequest(f"Value {value} is no valid boolean")
        m = f.values(world)
        return m if value.lower() == "true" else ~m
    if k == "uuid":
        try:
            u = str(uuid.UUID(value))
        except ValueError:
            raise BadRequest(f"Invalid UUID string: {value}") from None
        lookup_ = world.dataset_by_key if f.name == "datasetKey" else world.publisher_by_key
        return f.values(world) == lookup_.get(u, -1)
    if k == "country":
        code = value.upper()
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise BadRequest(f"Value {value} invalid for filter parameter {f.enum}")
        # a valid ISO code the sandbox has no data for matches nothing
        return f.values(world) == COUNTRY_INDEX.get(code, 254)
    if k == "string":
        return f.values(world) == value
    raise BadRequest(f"Unsupported filter {f.name}")


def like_mask(world: World, f: Field, pattern: str) -> np.ndarray:
    """GBIF ``like``: ``*`` any run, ``?`` one character; only for string-valued fields here."""
    if f.kind != "string":
        raise BadRequest(f"like is not supported for {f.enum}")
    rx = re.compile("^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$", re.IGNORECASE)
    vals = f.values(world)
    return _expand(world, f, np.array([bool(rx.match(str(v))) for v in vals], dtype=bool))


def geometry_mask(world: World, wkt: str) -> np.ndarray:
    import shapely
    from shapely import wkt as shapely_wkt

    try:
        geom = shapely_wkt.loads(wkt)
    except Exception as exc:  # shapely raises several types for bad WKT
        raise BadRequest(f"Cannot parse simple WKT: {wkt} {exc}") from None
    if geom.is_empty:
        raise BadRequest(f"Empty geometry: {wkt}")
    if geom.geom_type not in ("Polygon", "MultiPolygon", "Point", "LineString"):
        raise BadRequest(f"Unsupported simple WKT (unsupported type {geom.geom_type}): {wkt}")
    if not geom.is_valid:
        raise BadRequest(f"Invalid geometry: {shapely.is_valid_reason(geom)}")
    occ = world.occ
    has = ~np.isnan(occ.lat)
    out = np.zeros(len(occ), dtype=bool)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        idx = np.flatnonzero(has)
        shapely.prepare(geom)
        minx, miny, maxx, maxy = geom.bounds
        lon, lat = occ.lon[idx], occ.lat[idx]
        box = (lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)
        idx = idx[box]
        out[idx] = shapely.contains_xy(geom, occ.lon[idx].astype(np.float64), occ.lat[idx].astype(np.float64))
    return out


def geo_distance_mask(world: World, lat: str, lon: str, distance: str) -> np.ndarray:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|km|mi)?\s*", str(distance))
    try:
        lat0, lon0 = float(lat), float(lon)
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid geoDistance point: {lat},{lon}") from None
    if not m:
        raise BadRequest(f"Invalid distance: {distance}. Use e.g. 10km, 500m or 3mi")
    metres = float(m.group(1)) * {"m": 1.0, "km": 1000.0, "mi": 1609.344, None: 1.0}[m.group(2)]
    occ = world.occ
    la1, lo1 = math.radians(lat0), math.radians(lon0)
    la2 = np.radians(occ.lat.astype(np.float64))
    lo2 = np.radians(occ.lon.astype(np.float64))
    a = np.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
    d = 2 * 6_371_008.8 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    with np.errstate(invalid="ignore"):
        return d <= metres


def params_mask(world: World, filters: dict[Field, list[str]]) -> np.ndarray:
    """AND over fields of (OR over each field's values)."""
    mask = np.ones(len(world.occ), dtype=bool)
    for f, values in filters.items():
        # OR on the field's own table (small for taxonomic/dataset fields), expand once
        level = raw_value_mask(world, f, values[0])
        for v in values[1:]:
            level = level | raw_value_mask(world, f, v)
        mask &= _expand(world, f, level)
    return mask


__all__ = [
    "BadRequest",
    "Field",
    "FIELDS",
    "lookup",
    "norm",
    "params_mask",
    "value_mask",
    "compare",
    "null_mask",
    "like_mask",
    "geometry_mask",
    "geo_distance_mask",
    "LICENSES",
]
