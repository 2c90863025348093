"""Named areas: ISO codes, English names, WKT, the land, and the shipped outlines."""

from __future__ import annotations

import json

import pytest
import shapely

from gbifdl_assets.annotations import areas
from gbifdl_assets.annotations.compiled import count_vertices, rules_table_from_records, validate_rules_table

PARIS = shapely.Point(2.35, 48.86)
INLAND_GREENLAND = shapely.Point(-40.0, 72.0)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("GL", "GL"),
        ("gl", "GL"),
        ("GRL", "GL"),
        ("Greenland", "GL"),
        ("  greenland ", "GL"),
        ("FR", "FR"),  # Natural Earth leaves France's code at -99: filled in
        ("France", "FR"),
        ("NO", "NO"),
        ("Kosovo", "XK"),
        ("United States of America", "US"),
        ("USA", "US"),
        ("the Netherlands", "NL"),
        ("Côte d’Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("curacao", "CW"),
        ("Russian Federation", "RU"),  # FORMAL_EN
        ("uk", "GB"),
    ],
)
def test_countries_by_code_and_name(text: str, code: str) -> None:
    area = areas.resolve_area(text)
    assert area.kind == "country" and area.code == code
    assert area.geometry.is_valid


def test_outlines_contain_their_places() -> None:
    assert areas.country_geometry("FR").contains(PARIS)
    assert areas.country_geometry("GL").contains(INLAND_GREENLAND)
    assert not areas.country_geometry("DK").contains(INLAND_GREENLAND)  # Greenland is its own feature
    assert areas.resolve_area("Greenland").geometry.contains(INLAND_GREENLAND)
    assert areas.country_name("GL") == "Greenland"


def test_unknown_names_list_close_matches() -> None:
    with pytest.raises(areas.AreaNotFoundError) as info:
        areas.resolve_area("Grenland")
    message = str(info.value)
    assert "unknown area 'Grenland'" in message and "Greenland (GL)" in message
    assert "ISO 3166-1 code" in message and "WKT" in message
    with pytest.raises(areas.AreaNotFoundError, match="unknown area 'Narnia'"):
        areas.resolve_area("Narnia")
    with pytest.raises(areas.AreaNotFoundError, match="unknown area 'QQ'"):
        areas.resolve_area("QQ")
    with pytest.raises(areas.AreaNotFoundError, match="empty area"):
        areas.resolve_area(" ")
    with pytest.raises(areas.AreaNotFoundError):
        areas.country_geometry("ZZ")


def test_wkt_areas() -> None:
    area = areas.resolve_area("polygon ((0 0, 1 0, 1 1, 0 0))")
    assert area.kind == "wkt" and area.geometry.area == pytest.approx(0.5)
    multi = areas.resolve_area("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))")
    assert multi.geometry.geom_type == "MultiPolygon"
    with pytest.raises(areas.AreaNotFoundError, match="not valid WKT"):
        areas.resolve_area("POLYGON ((0 0, 1 0")


def test_every_country_fits_gbifs_vertex_limit_and_makes_a_valid_rule() -> None:
    records = []
    for code in areas.country_codes():
        area = areas.resolve_area(code)
        wkt = shapely.to_wkt(area.geometry, rounding_precision=-1)
        assert count_vertices(wkt) <= 2500, code
        records.append({"id": f"local:{code}", "geometry": wkt, "label": "NATIVE"})
    table = validate_rules_table(rules_table_from_records(records))
    assert table.num_rows == len(areas.country_codes()) > 200
    # The big ones were simplified, not emptied: Canada still contains Ottawa.
    assert areas.resolve_area("CA").geometry.contains(shapely.Point(-75.7, 45.42))
    assert shapely.get_num_coordinates(areas.country_geometry("CA")) > 2500  # the full outline


def test_simplify_to_vertices_drops_islands_last() -> None:
    islands = [shapely.box(i, 0, i + 0.5, 0.5) for i in range(0, 1000, 2)]  # 500 parts x 5 coords
    main = shapely.Point(-100, 0).buffer(20, quad_segs=100)
    geom = shapely.MultiPolygon([main, *islands])
    out, note = areas.simplify_to_vertices(geom, 2500)
    assert shapely.get_num_coordinates(out) <= 2500
    assert out.is_valid and out.contains(shapely.Point(-100, 0))
    assert note and "parts (islands) dropped" in note
    same, none = areas.simplify_to_vertices(main, 2500)
    assert same is main and none is None


def test_land() -> None:
    land = areas.land_geometry()
    assert land.contains(shapely.Point(10, 50))  # Germany
    assert land.contains(shapely.Point(100, -75))  # Antarctica
    assert not land.contains(shapely.Point(-30, 30))  # mid-Atlantic
    assert len(areas.land_parts()) > 1000


def test_world_outlines_are_a_basemap() -> None:
    data = json.loads(areas.world_outlines_path().read_text())
    assert data["type"] == "FeatureCollection"
    assert len(data["features"]) > 150
    codes = {f["properties"]["ISO_A2"] for f in data["features"]}
    assert {"FR", "GL", "US", "BR"} <= codes
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in data["features"])
