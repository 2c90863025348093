"""Re-derive the Natural Earth files in this folder from the original GeoJSON (see SOURCES.md).

Run by hand when updating the reference data, never at run time::

    python gbifdl_assets/annotations/data/derive_natural_earth.py SOURCE_DIR

SOURCE_DIR holds ``ne_50m_admin_0_countries.json``, ``ne_110m_admin_0_countries.json``,
``ne_50m_land.json`` and ``ne_50m_populated_places_simple.json`` (Natural Earth 4.0 as GeoJSON).
What it does, and why:

* keeps only the attributes the project uses (codes, names, type, continent): the originals carry
  ~70 attributes per country, mostly irrelevant here and 6x the size;
* snaps coordinates to a 1e-4 degree grid (about 11 m), far below the accuracy of a 1:50m map, with
  ``shapely.set_precision`` (which keeps polygons valid) to halve the file size;
* fills the ISO codes that Natural Earth 4.0 leaves as ``-99`` for France (FR/FRA), Norway (NO/NOR)
  and Kosovo (XK/XKX, the user-assigned code GBIF uses), so those can be named by code;
* writes the capitals (Admin-0 capital, capital alt, region capital) of the populated places as CSV.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import shapely
from shapely.geometry import mapping, shape

HERE = Path(__file__).resolve().parent
GRID = 1e-4
KEEP = ("ISO_A2", "ISO_A3", "ADM0_A3", "NAME", "NAME_LONG", "ADMIN", "FORMAL_EN", "NAME_ALT", "SOVEREIGNT")
KEEP += ("TYPE", "CONTINENT")
CODE_FIXES = {"France": ("FR", "FRA"), "Norway": ("NO", "NOR"), "Kosovo": ("XK", "XKX")}
CAPITAL_CLASSES = ("Admin-0 capital", "Admin-0 capital alt", "Admin-0 region capital")


def _snap(geometry: dict) -> dict:
    geom = shapely.set_precision(shape(geometry), GRID)
    if not geom.is_valid:  # set_precision output is valid; this guards against surprises
        geom = shapely.make_valid(geom)
    return mapping(geom)


def _write_geojson(path: Path, features: list[dict]) -> None:
    text = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
    path.write_text(text + "\n")


def countries(source: Path, target: Path) -> None:
    features = []
    for feature in json.loads(source.read_text())["features"]:
        props = {key: feature["properties"].get(key) for key in KEEP}
        props = {key: (None if value in ("-99", -99) else value) for key, value in props.items()}
        if props["ADMIN"] in CODE_FIXES:
            props["ISO_A2"], props["ISO_A3"] = CODE_FIXES[props["ADMIN"]]
        features.append({"type": "Feature", "properties": props, "geometry": _snap(feature["geometry"])})
    features.sort(key=lambda f: f["properties"]["ADMIN"])
    _write_geojson(target, features)


def land(source: Path, target: Path) -> None:
    features = []
    for feature in json.loads(source.read_text())["features"]:
        geometry = _snap(feature["geometry"])
        if geometry["coordinates"]:
            features.append({"type": "Feature", "properties": {}, "geometry": geometry})
    _write_geojson(target, features)


def capitals(source: Path, target: Path) -> None:
    rows = []
    for feature in json.loads(source.read_text())["features"]:
        p = feature["properties"]
        if p["featurecla"] not in CAPITAL_CLASSES:
            continue
        iso2 = None if p["iso_a2"] in ("-99", None) else p["iso_a2"]
        rows.append(
            {
                "name": p["name"],
                "country": p["adm0name"],
                "iso_a2": iso2 or "",
                "adm0_a3": p["adm0_a3"],
                "featurecla": p["featurecla"],
                "latitude": round(float(p["latitude"]), 5),
                "longitude": round(float(p["longitude"]), 5),
            }
        )
    rows.sort(key=lambda r: (r["adm0_a3"], r["name"]))
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(source_dir: str) -> None:
    src = Path(source_dir)
    countries(src / "ne_50m_admin_0_countries.json", HERE / "ne_50m_admin_0_countries.geojson")
    countries(src / "ne_110m_admin_0_countries.json", HERE / "ne_110m_admin_0_countries.geojson")
    land(src / "ne_50m_land.json", HERE / "ne_50m_land.geojson")
    capitals(src / "ne_50m_populated_places_simple.json", HERE / "ne_50m_capitals.csv")


if __name__ == "__main__":
    main(sys.argv[1])
