"""The compiled rules table and the vocabulary: every refusal names the rule and says what to do."""

from __future__ import annotations

import pyarrow as pa
import pytest
import shapely

from gbifdl_assets.annotations.compiled import (
    RULES_TABLE_SCHEMA,
    RulesTableError,
    count_vertices,
    parse_year_range,
    rules_table_from_records,
    validate_rules_table,
)
from gbifdl_assets.annotations.vocabulary import LABELS, normalize_label

BOX = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"
BOWTIE = "POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))"


def table(**fields) -> pa.Table:
    rec = {"id": "local:12", "source": "local", "geometry": BOX, "label": "SUSPICIOUS", **fields}
    return rules_table_from_records([rec])


def refused(**fields) -> str:
    with pytest.raises(RulesTableError) as info:
        validate_rules_table(table(**fields))
    message = str(info.value)
    assert "rule local:12" in message
    return message


# ----------------------------------------------------------------------------- vocabulary
def test_labels_are_gbifs() -> None:
    assert LABELS == ("NATIVE", "INTRODUCED", "MANAGED", "FORMER", "VAGRANT", "SUSPICIOUS", "OTHER")
    assert normalize_label(" suspicious ") == "SUSPICIOUS"
    assert normalize_label("Managed") == "MANAGED"
    with pytest.raises(
        ValueError, match=r"'ESCAPED'.*NATIVE, INTRODUCED, MANAGED, FORMER, VAGRANT, SUSPICIOUS, OTHER"
    ):
        normalize_label("ESCAPED")
    with pytest.raises(ValueError, match="unknown annotation label"):
        normalize_label(None)


# ----------------------------------------------------------------------------- refusals
def test_invalid_wkt() -> None:
    assert "not valid WKT" in refused(geometry="POLYGON ((0 0, 1 0, 1 1")


@pytest.mark.parametrize("wkt", ["POINT (1 2)", "LINESTRING (0 0, 1 1)", "GEOMETRYCOLLECTION (POINT (1 1))"])
def test_non_polygons(wkt: str) -> None:
    kind = wkt.split(" ")[0]
    assert f"is a {kind}" in refused(geometry=wkt) and "POLYGON or MULTIPOLYGON" in refused(geometry=wkt)


def test_empty_and_missing_geometry() -> None:
    assert "empty polygon" in refused(geometry="POLYGON EMPTY")
    assert "no geometry" in refused(geometry="  ")


def test_coordinates_out_of_range() -> None:
    message = refused(geometry="POLYGON ((0 0, 200 0, 200 10, 0 10, 0 0))")
    assert "outside lon -180..180" in message and "longitude first" in message


def test_self_intersecting_user_polygon_is_refused() -> None:
    message = refused(geometry=BOWTIE)
    assert "Self-intersection" in message and "refused rather than guessed" in message


@pytest.mark.parametrize("source", ["gbif", "seed"])
def test_self_intersecting_pulled_polygon_is_repaired(source: str) -> None:
    out = validate_rules_table(table(geometry=BOWTIE, source=source, description="from GBIF"))
    geom = shapely.from_wkt(out.column("geometry")[0].as_py())
    assert geom.is_valid and geom.area == pytest.approx(50.0)
    assert out.column("description")[0].as_py().startswith("from GBIF [geometry repaired: Self-intersection")


def _ring(n: int) -> str:
    poly = shapely.Point(0, 0).buffer(5, quad_segs=max(1, (n - 1) // 4))
    coords = list(poly.exterior.coords)
    assert len(coords) == n
    return shapely.to_wkt(shapely.Polygon(coords), rounding_precision=6)


def test_vertex_limit() -> None:
    ok, too_many = _ring(2497), _ring(2501)
    assert count_vertices(too_many) == 2501
    validate_rules_table(table(geometry=ok))
    message = refused(geometry=too_many)
    assert "2,501 vertices" in message and "at most 2,500" in message and "simplify" in message
    # GBIF admins are exempt, so pulled rules may be larger; seeds too
    for source in ("gbif", "seed"):
        assert validate_rules_table(table(geometry=too_many, source=source)).num_rows == 1
    assert validate_rules_table(table(geometry=too_many), max_vertices=None).num_rows == 1


def test_unknown_label() -> None:
    message = refused(label="escaped")
    assert "unknown annotation label 'escaped'" in message and "SUSPICIOUS" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [("1990-2000", "not a year range"), ("2000,1990", "starts after it ends"), ("abc", "not a year range")],
)
def test_bad_year_range(text: str, reason: str) -> None:
    assert reason in refused(yearRange=text)


def test_other_refusals() -> None:
    assert "unknown basisOfRecord 'SIGHTING'" in refused(basisOfRecord=["SIGHTING"])
    assert "supportCount must be a count" in refused(supportCount=-1)
    assert "unknown source 'wiki'" in refused(source="wiki")
    assert "not a GBIF taxon key" in refused(taxonKey=0)


def test_ids_must_exist_and_be_unique() -> None:
    rows = [
        {"id": "a", "geometry": BOX, "label": "NATIVE"},
        {"id": "a", "geometry": BOX, "label": "NATIVE"},
        {"id": "", "geometry": BOX, "label": "NATIVE"},
    ]
    with pytest.raises(RulesTableError) as info:
        validate_rules_table(rules_table_from_records(rows))
    assert "rule a: id is used twice (rows 0 and 1)" in str(info.value)
    assert "rule (row 2): has no id" in str(info.value)
    assert len(info.value.problems) == 2


def test_all_problems_are_reported_and_skip_mode() -> None:
    rows = [
        {"id": "good", "geometry": BOX, "label": "native"},
        {"id": "bad1", "geometry": "POINT (0 0)", "label": "NATIVE"},
        {"id": "bad2", "geometry": BOX, "label": "x", "yearRange": "x"},
    ]
    with pytest.raises(RulesTableError) as info:
        validate_rules_table(rules_table_from_records(rows))
    assert [rid for rid, _ in info.value.problems] == ["bad1", "bad2", "bad2"]
    assert str(info.value).startswith("3 invalid rules:")
    problems: list[tuple[str, str]] = []
    kept = validate_rules_table(rules_table_from_records(rows), errors="skip", problems=problems)
    assert kept.column("id").to_pylist() == ["good"]
    assert {rid for rid, _ in problems} == {"bad1", "bad2"}


def test_missing_required_columns() -> None:
    with pytest.raises(RulesTableError, match="lacks the required column"):
        validate_rules_table(pa.table({"id": ["a"], "label": ["NATIVE"]}))
    with pytest.raises(ValueError, match="unknown rules-table field"):
        rules_table_from_records([{"id": "a", "wkt": BOX}])


# ----------------------------------------------------------------------------- normalisation
def test_normalisation_and_defaults() -> None:
    raw = pa.table(
        {
            "id": ["local:1"],
            "geometry": [BOX],
            "label": ["vagrant"],
            "yearRange": ["1950"],
            "basisOfRecord": [["PreservedSpecimen", "PRESERVED_SPECIMEN", "HumanObservation"]],
            "datasetKey": [" 50C9509D-22C7-4A22-A47D-8C48425EF4A7 "],
            "extra": [1],
        }
    )
    out = validate_rules_table(raw)
    assert out.schema == RULES_TABLE_SCHEMA
    row = out.to_pylist()[0]
    assert row["label"] == "VAGRANT"
    assert row["yearRange"] == "1950,1950"
    assert row["basisOfRecord"] == ["PRESERVED_SPECIMEN", "HUMAN_OBSERVATION"]
    assert row["datasetKey"] == "50c9509d-22c7-4a22-a47d-8c48425ef4a7"
    assert row["source"] == "local" and row["supportCount"] == 0 and row["basisOfRecordNegated"] is False
    assert "extra" not in out.column_names
    assert validate_rules_table(table(yearRange="*,*")).column("yearRange")[0].as_py() is None
    assert validate_rules_table(table(basisOfRecord=[])).column("basisOfRecord")[0].as_py() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1900,2000", (1900, 2000)),
        (" * , 1950 ", (None, 1950)),
        ("1950,*", (1950, None)),
        ("1950", (1950, 1950)),
        ("*", (None, None)),
        (None, None),
        ("", None),
    ],
)
def test_parse_year_range(text, expected) -> None:
    assert parse_year_range(text) == expected
