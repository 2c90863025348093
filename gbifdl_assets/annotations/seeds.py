"""Generated ("seed") rules: CoordinateCleaner-style tests as polygons, and Species Distribution data.

Every function returns a rules table (``compiled.RULES_TABLE_SCHEMA``) with ``source="seed"`` and
ids ``seed:<test>:<detail>``, validated. Reference data and licences: ``data/SOURCES.md``.

CoordinateCleaner tests (Zizka et al. 2019; defaults of ``clean_coordinates``, reference
annotations.md §11), expressed as polygons because a rule is a polygon:

============================ ====================================================================
CoordinateCleaner            seed rules (label)
============================ ====================================================================
``cc_zero`` (0.5° around     ``seed:zero-coords``: a 64-gon of radius 0.5° around (0, 0), planar as in
(0,0), lat or lon == 0)      CC (SUSPICIOUS); ``seed:zero-latitude`` / ``seed:zero-longitude``: bands
                             ±1e-6° (≈ 11 cm) around the equator / prime meridian, so an exact 0
                             is inside while real records near the lines are not (SUSPICIOUS)
``cc_equ`` (|lat| == |lon|)  ``seed:equal-coords``: the two diagonals lat = ±lon as ±1e-6° bands
                             (an X from -90 to 90) (SUSPICIOUS)
``cc_cen`` (1,000 m)         ``seed:centroid:<ISO2>``: a 1 km geodesic circle around the centroid of
                             the Natural Earth outline we compute ourselves (and
                             ``…:<ISO2>:main`` around the largest part's centroid when it lies more
                             than 1 km away, e.g. the contiguous USA) (SUSPICIOUS). CC's own
                             ``countryref`` is GPL-3 and is not used; province centroids are not
                             covered (no admin-1 data is shipped)
``cc_cap`` (10,000 m)        ``seed:capital:<ISO2 or NE code>``: 10 km geodesic circles around the
                             Natural Earth 1:50m admin-0 capitals (SUSPICIOUS)
``cc_inst`` (100 m)          ``seed:institution:<slug>``: 1 km circles (the listed positions are site
                             centres, good to a few hundred metres, and the sites are large; CC's
                             100 m assumes exact institution points) around a small curated list
                             of 35 famous zoos and botanical gardens (MANAGED). Illustrative only:
                             CC's 12,170-row list is GPL-3 and GRSciColl was unreachable
``cc_gbif`` (1,000 m)        ``seed:gbif-hq``: 500 m around GBIF's secretariat, Universitetsparken
                             15, Copenhagen (55.7023 N, 12.5584 E) (SUSPICIOUS); CC uses a point in
                             central Copenhagen (12.58, 55.67) with 1 km
``cc_sea`` (NE land 1:50m)   ``seed:sea:<taxonKey>:<n>``: the ocean (world minus Natural Earth 1:50m
                             land) cut into tiles, per terrestrial taxon (SUSPICIOUS). Default taxa:
                             Amphibia (131), Insecta (216), Arachnida (367); give your own
============================ ====================================================================

Not expressible as polygons, and left to issue flags or other stages: the outlier, duplicate and
dataset-level (ddmm, rounding) tests, which depend on other records, not on a place.

The sea as polygons: a polygon over the whole ocean would be huge and slow, so the world is cut into
30° tiles, each tile minus the land is one rule, and tiles whose remainder has more than 2,500
vertices are split in four until every piece fits. The seeds thus respect GBIF's vertex limit (they
could be pushed to GBIF) and no engine-level "not on land" rule kind is needed: the engine's bounding
box filter makes tiles cheap. A point exactly on a tile edge matches the tiles on both sides (same
label, several rule ids). ``coast_buffer_m`` widens the land first (CC's default: no buffer), which
spares coastal records whose coordinates fall just offshore at 1:50m.

Species Distribution extension → labels (:func:`distribution_to_rules`), in order of precedence:

=============================================================  ===========  ============================
value                                                          label        why
=============================================================  ===========  ============================
threatStatus EX/EXTINCT or RE/REGIONALLY_EXTINCT               FORMER       present once, not now
occurrenceStatus absent, excluded                              SUSPICIOUS   the checklist says it is not
                                                                            there: records need checking
occurrenceStatus doubtful                                      SUSPICIOUS   presence questioned
degreeOfEstablishment captive, cultivated, released            MANAGED      people keep/put it there
establishmentMeans native, nativeReintroduced                  NATIVE
establishmentMeans introduced, introducedAssistedColonisation  INTRODUCED
establishmentMeans naturalised, invasive (older vocabulary)    INTRODUCED   both are introduced species
establishmentMeans managed (older vocabulary)                  MANAGED
establishmentMeans vagrant                                     VAGRANT
degreeOfEstablishment native                                   NATIVE
degreeOfEstablishment casual, reproducing, established,        INTRODUCED   stages of an introduction
colonising, invasive, widespreadInvasive, failing                           (Blackburn et al. 2011);
                                                                            "casual" is an alien that
                                                                            fails to persist, not a
                                                                            vagrant (a natural visitor)
establishmentMeans uncertain; present/common/rare/irregular    (no rule)    says nothing about origin
without establishment information
=============================================================  ===========  ============================

The area is ``countryCode`` (or the species API's ``country``), else the first ISO code in
``locationID`` (``ISO:AR``, ``ISO3166-1:AR``), else ``locality`` when it names a country. TDWG
(WGSRPD) areas are not shipped, so such records are skipped and reported.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from shapely import affinity

from gbifdl_assets.annotations import areas
from gbifdl_assets.annotations.compiled import (
    MAX_POLYGON_VERTICES,
    rules_table_from_records,
    validate_rules_table,
)

__all__ = [
    "DEFAULT_TERRESTRIAL_TAXA",
    "GBIF_HEADQUARTERS",
    "SEED_CREATOR",
    "capital_rules",
    "centroid_rules",
    "coordinate_cleaner_rules",
    "distribution_label",
    "distribution_to_rules",
    "equal_coordinate_rules",
    "gbif_headquarters_rule",
    "geodesic_circle",
    "institution_rules",
    "ocean_tiles",
    "sea_rules",
    "zero_coordinate_rules",
]

SEED_CREATOR = "gbifdl-seeds"
#: GBIF secretariat, Universitetsparken 15, Copenhagen: (lat, lon).
GBIF_HEADQUARTERS = (55.7023, 12.5584)
#: GBIF backbone keys of classes whose records at sea are suspicious: Amphibia, Insecta, Arachnida.
DEFAULT_TERRESTRIAL_TAXA: tuple[int, ...] = (131, 216, 367)
_EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
_LINE_TOLERANCE_DEG = 1e-6


def _table(records: list[dict[str, Any]]) -> pa.Table:
    for rec in records:
        rec.setdefault("source", "seed")
        rec.setdefault("createdBy", SEED_CREATOR)
    return validate_rules_table(rules_table_from_records(records), max_vertices=None)


def _wkt(geom: shapely.Geometry) -> str:
    return shapely.to_wkt(geom, rounding_precision=7)


def geodesic_circle(lat: float, lon: float, radius_m: float, segments: int = 32) -> shapely.Geometry:
    """A polygon approximating the circle of ``radius_m`` metres around (lat, lon) on the sphere.

    Vertices are exact destination points (great-circle formula), so the polygon is the geodesic
    buffer CoordinateCleaner uses (``geod=TRUE``) to within the chord error of ``segments`` sides.
    A circle crossing the antimeridian is split into two parts.
    """
    phi1, lam1 = math.radians(lat), math.radians(lon)
    delta = radius_m / _EARTH_RADIUS_M
    bearings = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    phi2 = np.arcsin(np.sin(phi1) * np.cos(delta) + np.cos(phi1) * np.sin(delta) * np.cos(bearings))
    lam2 = lam1 + np.arctan2(
        np.sin(bearings) * np.sin(delta) * np.cos(phi1), np.cos(delta) - np.sin(phi1) * np.sin(phi2)
    )
    ring = np.column_stack([np.degrees(lam2), np.clip(np.degrees(phi2), -90, 90)])
    poly = shapely.Polygon(ring)
    world = shapely.box(-180, -90, 180, 90)
    if world.contains(poly):
        return poly
    parts = [poly.intersection(world)]
    for shift in (-360, 360):
        moved = affinity.translate(poly, xoff=shift).intersection(world)
        if not moved.is_empty:
            parts.append(moved)
    return shapely.union_all(parts)


def zero_coordinate_rules(*, radius_deg: float = 0.5) -> pa.Table:
    """``cc_zero``: near (0, 0) within ``radius_deg`` (planar degrees), and exactly on lat 0 or lon 0."""
    t = _LINE_TOLERANCE_DEG
    return _table(
        [
            {
                "id": "seed:zero-coords",
                "geometry": _wkt(shapely.Point(0, 0).buffer(radius_deg, quad_segs=16)),
                "label": "SUSPICIOUS",
                "description": f"CoordinateCleaner cc_zero: within {radius_deg} degrees of (0, 0)",
            },
            {
                "id": "seed:zero-latitude",
                "geometry": _wkt(shapely.box(-180, -t, 180, t)),
                "label": "SUSPICIOUS",
                "description": "CoordinateCleaner cc_zero: latitude exactly 0 (band of +-1e-6 degrees)",
            },
            {
                "id": "seed:zero-longitude",
                "geometry": _wkt(shapely.box(-t, -90, t, 90)),
                "label": "SUSPICIOUS",
                "description": "CoordinateCleaner cc_zero: longitude exactly 0 (band of +-1e-6 degrees)",
            },
        ]
    )


def equal_coordinate_rules() -> pa.Table:
    """``cc_equ`` (test="absolute"): |latitude| == |longitude|, as two thin diagonal bands."""
    t = _LINE_TOLERANCE_DEG
    diag = shapely.Polygon([(-90 - t, -90), (-90 + t, -90), (90 + t, 90), (90 - t, 90)])
    anti = shapely.Polygon([(90 - t, -90), (90 + t, -90), (-90 + t, 90), (-90 - t, 90)])
    x = shapely.union_all([diag, anti])
    return _table(
        [
            {
                "id": "seed:equal-coords",
                "geometry": _wkt(x),
                "label": "SUSPICIOUS",
                "description": "CoordinateCleaner cc_equ: |latitude| equals |longitude| (+-1e-6 degrees)",
            }
        ]
    )


def centroid_rules(*, radius_m: float = 1000.0) -> pa.Table:
    """``cc_cen``: ``radius_m`` around each country's centroid (computed from Natural Earth 1:50m)."""
    records = []
    for iso2 in areas.country_codes():
        geom = areas.country_geometry(iso2)
        points = [("", geom.centroid)]
        parts = shapely.get_parts(geom)
        if len(parts) > 1:
            main = max(parts, key=lambda p: p.area).centroid
            if _distance_m(points[0][1], main) > radius_m:
                points.append((":main", main))
        for suffix, pt in points:
            records.append(
                {
                    "id": f"seed:centroid:{iso2}{suffix}",
                    "geometry": _wkt(geodesic_circle(pt.y, pt.x, radius_m)),
                    "label": "SUSPICIOUS",
                    "description": (
                        f"CoordinateCleaner cc_cen: within {radius_m:g} m of the centroid of "
                        f"{areas.country_name(iso2)}{' (largest part)' if suffix else ''} "
                        f"({pt.y:.4f}, {pt.x:.4f}; computed from Natural Earth)"
                    ),
                }
            )
    return _table(records)


def _distance_m(a: shapely.Point, b: shapely.Point) -> float:
    """Great-circle distance (haversine) between two lon/lat points."""
    p1, p2 = math.radians(a.y), math.radians(b.y)
    dp, dl = p2 - p1, math.radians(b.x - a.x)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def capital_rules(*, radius_m: float = 10_000.0) -> pa.Table:
    """``cc_cap``: ``radius_m`` around each Natural Earth 1:50m admin-0 capital."""
    records, seen = [], set()
    with (areas.DATA_DIR / "ne_50m_capitals.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            code = row["iso_a2"] or row["adm0_a3"]
            rid = f"seed:capital:{code}"
            if rid in seen:  # a second capital (administrative/legislative): name it
                rid = f"{rid}:{_slug(row['name'])}"
            seen.add(rid)
            lat, lon = float(row["latitude"]), float(row["longitude"])
            records.append(
                {
                    "id": rid,
                    "geometry": _wkt(geodesic_circle(lat, lon, radius_m)),
                    "label": "SUSPICIOUS",
                    "description": (
                        f"CoordinateCleaner cc_cap: within {radius_m:g} m of {row['name']}, capital of "
                        f"{row['country']} (Natural Earth populated places)"
                    ),
                }
            )
    return _table(records)


def institution_rules(*, radius_m: float | None = None) -> pa.Table:
    """``cc_inst`` (illustrative): the curated zoos and botanical gardens, labelled MANAGED.

    ``radius_m`` overrides each entry's radius (1 km in the shipped list).
    """
    records = []
    with (areas.DATA_DIR / "institutions_curated.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            r = float(radius_m if radius_m is not None else row["radius_m"])
            records.append(
                {
                    "id": f"seed:institution:{_slug(row['name'])}",
                    "geometry": _wkt(geodesic_circle(float(row["latitude"]), float(row["longitude"]), r)),
                    "label": "MANAGED",
                    "description": (
                        f"{row['name']} ({row['kind'].replace('_', ' ')}, {row['city']}): within {r:g} m; "
                        "records there are likely captive or cultivated"
                    ),
                }
            )
    return _table(records)


def gbif_headquarters_rule(*, radius_m: float = 500.0) -> pa.Table:
    """``cc_gbif``: ``radius_m`` around GBIF's secretariat in Copenhagen."""
    lat, lon = GBIF_HEADQUARTERS
    return _table(
        [
            {
                "id": "seed:gbif-hq",
                "geometry": _wkt(geodesic_circle(lat, lon, radius_m)),
                "label": "SUSPICIOUS",
                "description": f"CoordinateCleaner cc_gbif: within {radius_m:g} m of GBIF's secretariat",
            }
        ]
    )


def ocean_tiles(
    *, tile_deg: float = 30.0, coast_buffer_m: float = 0.0, max_vertices: int = MAX_POLYGON_VERTICES
) -> tuple[str, ...]:
    """WKT pieces of the ocean (world minus Natural Earth 1:50m land), each <= ``max_vertices``.

    ``coast_buffer_m`` widens the land first (approximately: metres converted at 111,320 m per
    degree, planar). Computed once per process and arguments (about 2 s).
    """
    return _ocean_tiles(float(tile_deg), float(coast_buffer_m), int(max_vertices))


@functools.lru_cache(maxsize=4)
def _ocean_tiles(tile_deg: float, coast_buffer_m: float, max_vertices: int) -> tuple[str, ...]:
    land = areas.land_parts()
    if coast_buffer_m > 0:
        land = shapely.buffer(land, coast_buffer_m / 111_320.0, quad_segs=4)
    tree = shapely.STRtree(land)
    pieces: list[shapely.Geometry] = []

    def ocean_in(box: shapely.Geometry) -> shapely.Geometry:
        hits = tree.query(box, predicate="intersects")
        if not len(hits):
            return box
        return shapely.difference(box, shapely.union_all(land[hits]))

    def add(box: shapely.Geometry, depth: int = 0) -> None:
        ocean = ocean_in(box)
        if ocean.is_empty:
            return
        polys = [p for p in shapely.get_parts(ocean) if p.geom_type == "Polygon" and p.area > 0]
        if not polys:
            return
        ocean = shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0]
        if shapely.get_num_coordinates(ocean) <= max_vertices or depth > 12:
            pieces.append(ocean)
            return
        minx, miny, maxx, maxy = box.bounds
        mx, my = (minx + maxx) / 2, (miny + maxy) / 2
        for sub in (
            shapely.box(minx, miny, mx, my),
            shapely.box(mx, miny, maxx, my),
            shapely.box(minx, my, mx, maxy),
            shapely.box(mx, my, maxx, maxy),
        ):
            add(sub, depth + 1)

    lons = np.arange(-180, 180, tile_deg)
    lats = np.arange(-90, 90, tile_deg)
    for lat0 in lats:
        for lon0 in lons:
            add(shapely.box(lon0, lat0, min(lon0 + tile_deg, 180), min(lat0 + tile_deg, 90)))
    return tuple(_wkt(p) for p in pieces)


def sea_rules(
    taxon_keys: Sequence[int] = DEFAULT_TERRESTRIAL_TAXA,
    *,
    coast_buffer_m: float = 0.0,
    tile_deg: float = 30.0,
) -> pa.Table:
    """``cc_sea``: records of the (terrestrial) ``taxon_keys`` in the ocean are SUSPICIOUS."""
    tiles = ocean_tiles(tile_deg=tile_deg, coast_buffer_m=coast_buffer_m)
    records = [
        {
            "id": f"seed:sea:{int(key)}:{n:04d}",
            "taxonKey": int(key),
            "geometry": wkt,
            "label": "SUSPICIOUS",
            "description": (
                f"CoordinateCleaner cc_sea: at sea (outside Natural Earth 1:50m land"
                f"{f' + {coast_buffer_m:g} m' if coast_buffer_m else ''}), tile {n} of {len(tiles)}"
            ),
        }
        for key in taxon_keys
        for n, wkt in enumerate(tiles)
    ]
    return _table(records)


def coordinate_cleaner_rules(
    *,
    terrestrial_taxa: Sequence[int] = DEFAULT_TERRESTRIAL_TAXA,
    centroids_radius_m: float = 1000.0,
    capitals_radius_m: float = 10_000.0,
    zeros_radius_deg: float = 0.5,
    institutions_radius_m: float | None = None,
    gbif_radius_m: float = 500.0,
    seas: bool = True,
) -> pa.Table:
    """All CoordinateCleaner-style seeds with the defaults in the module docstring, as one table."""
    tables = [
        zero_coordinate_rules(radius_deg=zeros_radius_deg),
        equal_coordinate_rules(),
        centroid_rules(radius_m=centroids_radius_m),
        capital_rules(radius_m=capitals_radius_m),
        institution_rules(radius_m=institutions_radius_m),
        gbif_headquarters_rule(radius_m=gbif_radius_m),
    ]
    if seas and terrestrial_taxa:
        tables.append(sea_rules(terrestrial_taxa))
    return pa.concat_tables(tables)


# ----------------------------------------------------------------------------- distributions
_NORMALISE = re.compile(r"[^a-z]")
_EXTINCT = {"ex", "extinct", "re", "regionallyextinct"}
_STATUS_SUSPICIOUS = {"absent", "excluded", "doubtful"}
_DOE_MANAGED = {"captive", "cultivated", "released"}
_EM_LABELS = {
    "native": "NATIVE",
    "nativereintroduced": "NATIVE",
    "introduced": "INTRODUCED",
    "introducedassistedcolonisation": "INTRODUCED",
    "introducedassistedcolonization": "INTRODUCED",
    "naturalised": "INTRODUCED",
    "naturalized": "INTRODUCED",
    "invasive": "INTRODUCED",
    "managed": "MANAGED",
    "vagrant": "VAGRANT",
}
_DOE_LABELS = {
    "native": "NATIVE",
    **dict.fromkeys(
        (
            "casual",
            "reproducing",
            "established",
            "colonising",
            "colonizing",
            "invasive",
            "widespreadinvasive",
        ),
        "INTRODUCED",
    ),
    "failing": "INTRODUCED",
}


def _norm(value: Any) -> str:
    return _NORMALISE.sub("", str(value).lower()) if value is not None else ""


def _field(record: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


def distribution_label(record: Mapping[str, Any]) -> tuple[str | None, str]:
    """The label for one distribution record and why (see the mapping table in the module docstring)."""
    status = _norm(_field(record, "occurrenceStatus", "status"))
    em = _norm(_field(record, "establishmentMeans"))
    doe = _norm(_field(record, "degreeOfEstablishment"))
    threat = _norm(_field(record, "threatStatus"))
    if threat in _EXTINCT:
        return "FORMER", f"threatStatus {record.get('threatStatus')}"
    if status in _STATUS_SUSPICIOUS:
        return "SUSPICIOUS", f"occurrenceStatus {status}"
    if doe in _DOE_MANAGED:
        return "MANAGED", f"degreeOfEstablishment {doe}"
    if em in _EM_LABELS:
        return _EM_LABELS[em], f"establishmentMeans {em}"
    if doe in _DOE_LABELS:
        return _DOE_LABELS[doe], f"degreeOfEstablishment {doe}"
    if em:
        return None, f"establishmentMeans {em!r} says nothing about origin"
    return None, "no establishment information (presence alone says nothing about origin)"


_ISO_TOKEN = re.compile(r"^\s*ISO\s*(?:3166(?:-1)?)?\s*:\s*([A-Za-z]{2,3})\s*$", re.IGNORECASE)


def _distribution_area(record: Mapping[str, Any]) -> tuple[areas.Area | None, str]:
    country = _field(record, "countryCode", "country")
    if country is not None:
        try:
            return areas.resolve_area(str(country)), ""
        except areas.AreaNotFoundError:
            return None, f"unknown country {country!r}"
    location = _field(record, "locationID", "locationId")
    if location is not None:
        for token in re.split(r"[;|,]", str(location)):
            m = _ISO_TOKEN.match(token)
            if m:
                try:
                    return areas.resolve_area(m.group(1)), ""
                except areas.AreaNotFoundError:
                    return None, f"unknown ISO code in locationID {location!r}"
    locality = _field(record, "locality")
    if locality is not None:
        try:
            area = areas.resolve_area(str(locality))
            if area.kind == "country":
                return area, ""
        except areas.AreaNotFoundError:
            pass
    if location is not None:
        return None, f"locationID {location!r} has no ISO country code (TDWG/WGSRPD areas are not shipped)"
    return None, "no area: give countryCode, an ISO locationID or a country name in locality"


def distribution_to_rules(
    records: Iterable[Mapping[str, Any]], *, skipped: list[tuple[int, str]] | None = None
) -> pa.Table:
    """Rules from Species Distribution records (extension rows or GBIF species-API distributions).

    Each record needs ``taxonKey`` (the GBIF key the distribution belongs to). Records that give no
    label or no area are skipped; when ``skipped`` is a list, ``(record index, reason)`` pairs are
    appended to it. Identical (taxon, area, label) rules are merged.
    """
    out: dict[str, dict[str, Any]] = {}
    for index, record in enumerate(records):
        key = record.get("taxonKey")
        if key is None or not str(key).strip().isdigit():
            if skipped is not None:
                skipped.append((index, f"taxonKey {key!r} is not a GBIF taxon key"))
            continue
        label, why = distribution_label(record)
        if label is None:
            if skipped is not None:
                skipped.append((index, why))
            continue
        area, problem = _distribution_area(record)
        if area is None:
            if skipped is not None:
                skipped.append((index, problem))
            continue
        rid = f"seed:distribution:{int(key)}:{area.code or _slug(area.name)}:{label}"
        source = _field(record, "source")
        desc = f"Species Distribution: {why} in {area.name}" + (f" (source: {source})" if source else "")
        if area.note:
            desc += f"; area {area.note}"
        if rid in out:
            continue
        out[rid] = {
            "id": rid,
            "taxonKey": int(key),
            "geometry": _wkt(area.geometry),
            "label": label,
            "description": desc,
        }
    return _table(list(out.values()))
