"""Named areas for rules: countries by ISO code or English name, the land, and WKT.

Outlines are Natural Earth (public domain) admin-0 countries at 1:50m and land at 1:50m, shipped in
``annotations/data`` (see ``data/SOURCES.md``; snapped to a 1e-4 degree grid). Natural Earth draws
countries by *de facto* status, and an admin-0 "country" includes its overseas departments (France
includes French Guiana, Réunion, ...), while dependencies such as Greenland (GL) are their own
features. ``-99`` codes of the original data are absent here: such areas (Northern Cyprus,
Somaliland, ...) are reachable by name only.

:func:`country_geometry` returns the shipped outline. :func:`resolve_area` returns a geometry a rule
can carry: at most ``max_vertices`` (GBIF's 2,500 by default) vertices, obtained by
topology-preserving simplification with a growing tolerance and, for countries with hundreds of
islands (Canada, Russia, Indonesia, ...), by dropping the smallest islands last — so a rule on a
big country may miss records on its tiniest islands; the area's ``note`` says so when that happens.

``world_outlines_path()`` is the 1:110m countries GeoJSON, light enough to use as a web-map basemap.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape

from gbifdl_assets.annotations.compiled import MAX_POLYGON_VERTICES
from gbifdl_assets.errors import GbifdlError

__all__ = [
    "Area",
    "AreaNotFoundError",
    "country_codes",
    "country_geometry",
    "country_name",
    "land_geometry",
    "land_parts",
    "resolve_area",
    "simplify_to_vertices",
    "world_outlines_path",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
COUNTRIES_50M = DATA_DIR / "ne_50m_admin_0_countries.geojson"
COUNTRIES_110M = DATA_DIR / "ne_110m_admin_0_countries.geojson"
LAND_50M = DATA_DIR / "ne_50m_land.geojson"

#: Everyday names that Natural Earth does not spell out (lower-case, accents removed) → ISO-2.
_ALIASES = {
    "usa": "US",
    "us": "US",
    "united states": "US",
    "america": "US",
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "holland": "NL",
    "russia": "RU",
    "czechia": "CZ",
    "czech republic": "CZ",
    "ivory coast": "CI",
    "cote d'ivoire": "CI",
    "burma": "MM",
    "swaziland": "SZ",
    "eswatini": "SZ",
    "east timor": "TL",
    "timor-leste": "TL",
    "cape verde": "CV",
    "cabo verde": "CV",
    "vatican": "VA",
    "holy see": "VA",
    "south korea": "KR",
    "north korea": "KP",
    "laos": "LA",
    "macedonia": "MK",
    "north macedonia": "MK",
    "drc": "CD",
    "dr congo": "CD",
    "congo-kinshasa": "CD",
    "congo-brazzaville": "CG",
    "turkiye": "TR",
    "bosnia": "BA",
    "uae": "AE",
}


@dataclass(frozen=True)
class Area:
    """A resolved area: ``kind`` is ``country`` or ``wkt``; ``code`` the ISO-2 code of a country."""

    name: str
    geometry: shapely.Geometry
    kind: str
    code: str | None = None
    note: str | None = None


class AreaNotFoundError(GbifdlError, ValueError):
    """The text names no known area; the message lists close matches."""


@dataclass(frozen=True)
class _Country:
    iso2: str | None
    iso3: str | None
    admin: str
    names: tuple[str, ...]
    geometry: shapely.Geometry


def _fold(text: str) -> str:
    """Lower case, accents removed, 'the ' dropped, whitespace collapsed: the key names match on."""
    text = text.replace("\u2019", "'")  # typographic apostrophe (Côte d’Ivoire)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text[4:] if text.startswith("the ") else text


@functools.lru_cache(maxsize=2)
def _countries(path: Path = COUNTRIES_50M) -> tuple[_Country, ...]:
    out = []
    for feature in json.loads(path.read_text())["features"]:
        p = feature["properties"]
        names = tuple(
            dict.fromkeys(
                str(p[k])
                for k in ("NAME", "NAME_LONG", "ADMIN", "FORMAL_EN", "NAME_ALT")
                if p.get(k) and str(p[k]).strip()
            )
        )
        geom = shape(feature["geometry"])
        out.append(_Country(p.get("ISO_A2"), p.get("ISO_A3"), p["ADMIN"], names, geom))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _index() -> tuple[dict[str, _Country], dict[str, _Country], dict[str, _Country]]:
    by2, by3, byname = {}, {}, {}
    for c in _countries():
        if c.iso2:
            by2[c.iso2.upper()] = c
        if c.iso3:
            by3[c.iso3.upper()] = c
        for name in c.names:
            byname.setdefault(_fold(name), c)
    for alias, iso2 in _ALIASES.items():
        if iso2 in by2:
            byname.setdefault(alias, by2[iso2])
    return by2, by3, byname


def country_codes() -> list[str]:
    """ISO-2 codes with an outline, sorted."""
    return sorted(_index()[0])


def country_name(iso2: str) -> str:
    """Natural Earth's name (ADMIN) for ``iso2``."""
    return _lookup_code(iso2).admin


def _lookup_code(code: str) -> _Country:
    by2, by3, _ = _index()
    key = code.strip().upper()
    country = by2.get(key) if len(key) == 2 else by3.get(key)
    if country is None:
        raise AreaNotFoundError(_unknown_message(code))
    return country


def country_geometry(iso2: str) -> shapely.Geometry:
    """The Natural Earth 1:50m outline of the country with ISO 3166-1 alpha-2 (or alpha-3) ``iso2``."""
    return _lookup_code(iso2).geometry


@functools.lru_cache(maxsize=1)
def land_geometry() -> shapely.Geometry:
    """Natural Earth 1:50m land (all continents and major islands) as one MultiPolygon."""
    parts = [shape(f["geometry"]) for f in json.loads(LAND_50M.read_text())["features"]]
    polys = [p for g in parts for p in shapely.get_parts(g)]
    return shapely.MultiPolygon(polys)


@functools.lru_cache(maxsize=1)
def land_parts() -> np.ndarray:
    """The land polygons as a numpy array of Polygons (for STRtree lookups)."""
    return shapely.get_parts(land_geometry())


def world_outlines_path() -> Path:
    """The 1:110m countries GeoJSON (properties ISO_A2, ISO_A3, NAME, ...): a ready-made basemap."""
    return COUNTRIES_110M


def simplify_to_vertices(
    geom: shapely.Geometry, max_vertices: int = MAX_POLYGON_VERTICES
) -> tuple[shapely.Geometry, str | None]:
    """Return ``geom`` with at most ``max_vertices`` coordinates, and a note when islands were dropped.

    Topology-preserving simplification with tolerances 0.005° … 0.16° first (keeps the result valid);
    if that is not enough (a few hundred islands need 4 coordinates each whatever the tolerance),
    the smallest parts are dropped until the rest fits.
    """
    if shapely.get_num_coordinates(geom) <= max_vertices:
        return geom, None
    out = geom
    tolerance = 0.005
    while tolerance <= 0.16:
        out = shapely.simplify(geom, tolerance, preserve_topology=True)
        if shapely.get_num_coordinates(out) <= max_vertices:
            return out, None
        tolerance *= 2
    parts = list(shapely.get_parts(out))
    parts.sort(key=lambda p: p.area, reverse=True)
    counts = np.cumsum([shapely.get_num_coordinates(p) for p in parts])
    keep = int(np.searchsorted(counts, max_vertices, side="right"))
    if keep == 0:  # one huge part: simplify it harder
        part = parts[0]
        while shapely.get_num_coordinates(part) > max_vertices:
            tolerance *= 2
            part = shapely.simplify(parts[0], tolerance, preserve_topology=True)
        return part, f"simplified with tolerance {tolerance:g} degrees; smaller parts dropped"
    dropped = len(parts) - keep
    result = shapely.MultiPolygon(parts[:keep]) if keep > 1 else parts[0]
    return result, f"simplified; {dropped} smallest of {len(parts)} parts (islands) dropped to fit"


def _unknown_message(text: str) -> str:
    by2, by3, byname = _index()
    folded = _fold(text)
    choices = list(byname) + [k.lower() for k in by2] + [k.lower() for k in by3]
    close = difflib.get_close_matches(folded, choices, n=4, cutoff=0.6)
    pretty = []
    for match in close:
        country = byname.get(match) or by2.get(match.upper()) or by3.get(match.upper())
        label = f"{country.admin} ({country.iso2})" if country and country.iso2 else match
        if label not in pretty:
            pretty.append(label)
    hint = f"; did you mean {', '.join(pretty)}?" if pretty else ""
    return (
        f"unknown area {text!r}: give an ISO 3166-1 code (GL, GRL), an English country name "
        f"(Greenland) or a WKT POLYGON/MULTIPOLYGON in lon/lat{hint}"
    )


def resolve_area(text: str, *, max_vertices: int | None = MAX_POLYGON_VERTICES) -> Area:
    """Resolve an ISO-2/ISO-3 code, an English country name (any case) or WKT to an :class:`Area`.

    Country outlines are reduced to ``max_vertices`` (None: the full shipped outline); WKT is parsed
    and returned as given (the rules table validates it). Unknown names raise
    :class:`AreaNotFoundError` listing close matches.
    """
    if not isinstance(text, str) or not text.strip():
        raise AreaNotFoundError("empty area: give an ISO country code, an English country name or WKT")
    stripped = text.strip()
    if re.match(r"^(MULTI)?POLYGON\b", stripped, re.IGNORECASE):
        try:
            geom = shapely.from_wkt(stripped)
        except (shapely.errors.GEOSException, ValueError) as exc:
            raise AreaNotFoundError(f"area is not valid WKT ({exc}): {stripped[:80]}") from None
        return Area(name="WKT polygon", geometry=geom, kind="wkt")
    by2, by3, byname = _index()
    key = stripped.upper()
    country = None
    if len(key) == 2 and key.isalpha():
        country = by2.get(key)
    elif len(key) == 3 and key.isalpha():
        country = by3.get(key)
    if country is None:
        country = byname.get(_fold(stripped))
    if country is None:
        raise AreaNotFoundError(_unknown_message(stripped))
    geom, note = country.geometry, None
    if max_vertices is not None:
        geom, note = simplify_to_vertices(geom, max_vertices)
    return Area(name=country.admin, geometry=geom, kind="country", code=country.iso2, note=note)
