"""The annotation engine on hand-made cases: every rule attribute, boundaries, votes, conflicts."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from gbifdl_assets.annotations import engine as engine_module
from gbifdl_assets.annotations.compiled import rules_table_from_records, validate_rules_table
from gbifdl_assets.annotations.engine import (
    ANNOTATION_COLUMNS,
    KEY_COLUMNS,
    MATCHES_SCHEMA,
    apply_rules,
)

BOX = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"


def occurrences(rows: list[dict]) -> pa.Table:
    """A snapshot-like table: defaults for every column the engine reads."""
    full = []
    for i, row in enumerate(rows):
        base = {"gbifID": i + 1, "decimalLatitude": 5.0, "decimalLongitude": 5.0}
        base.update({k: None for k in KEY_COLUMNS})
        base.update({"datasetKey": None, "basisOfRecord": None, "year": None})
        base.update(row)
        full.append(base)
    schema = pa.schema(
        [
            ("gbifID", pa.int64()),
            ("decimalLatitude", pa.float64()),
            ("decimalLongitude", pa.float64()),
            *[(k, pa.int64()) for k in KEY_COLUMNS],
            ("datasetKey", pa.string()),
            ("basisOfRecord", pa.string()),
            ("year", pa.int32()),
        ]
    )
    return pa.Table.from_pylist(full, schema=schema)


def rules(*recs: dict) -> pa.Table:
    out = []
    for i, rec in enumerate(recs):
        base = {"id": f"local:{i + 1}", "source": "local", "geometry": BOX, "label": "SUSPICIOUS"}
        base.update(rec)
        out.append(base)
    return validate_rules_table(rules_table_from_records(out))


def matched(result, rule_id: str | None = None) -> set[int]:
    rows = result.matches.to_pylist()
    return {r["gbifID"] for r in rows if rule_id is None or r["rule_id"] == rule_id}


# ----------------------------------------------------------------------------- taxonomy
@pytest.mark.parametrize("column", KEY_COLUMNS)
def test_a_rule_matches_through_every_key_column(column: str) -> None:
    occ = occurrences([{column: 77}, {column: 78}, {}])
    result = apply_rules(occ, rules({"taxonKey": 77}))
    assert matched(result) == {1}


def test_a_key_in_several_columns_matches_once() -> None:
    occ = occurrences([{"taxonKey": 5, "speciesKey": 5, "acceptedTaxonKey": 5, "genusKey": 4}])
    result = apply_rules(occ, rules({"taxonKey": 5}, {"taxonKey": 4}))
    assert result.matches.num_rows == 2
    assert result.annotated.column("annotation_rule_ids").to_pylist() == [["local:1", "local:2"]]


@pytest.mark.parametrize("dense_factor", [0, 10**9])  # the key listed, or scanned (engine._Group)
def test_a_key_mostly_in_one_column_is_found_in_another(dense_factor: int, monkeypatch) -> None:
    monkeypatch.setattr(engine_module, "_DENSE_FACTOR", dense_factor)
    many = [{"genusKey": 4, "decimalLongitude": 50.0} for _ in range(300)]
    occ = occurrences(
        [*many, {"taxonKey": 4, "genusKey": None}, {"acceptedTaxonKey": 4, "decimalLatitude": 9.0}]
    )
    assert matched(apply_rules(occ, rules({"taxonKey": 4}))) == {301, 302}


def test_a_rule_without_taxon_matches_every_taxon() -> None:
    occ = occurrences([{"kingdomKey": 1}, {"kingdomKey": 6}, {}])
    assert matched(apply_rules(occ, rules({}))) == {1, 2, 3}


def test_higher_rank_rule_and_unrelated_keys() -> None:
    occ = occurrences(
        [
            {"kingdomKey": 1, "classKey": 131, "speciesKey": 1000},
            {"kingdomKey": 1, "classKey": 212, "speciesKey": 2000},
        ]
    )
    result = apply_rules(occ, rules({"taxonKey": 131}, {"taxonKey": 2000}, {"taxonKey": 999}))
    assert matched(result, "local:1") == {1}
    assert matched(result, "local:2") == {2}
    assert matched(result, "local:3") == set()


# ----------------------------------------------------------------------------- space
def test_boundary_points_are_inside() -> None:
    hole = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (4 4, 6 4, 6 6, 4 6, 4 4))"
    pts = [
        (0.0, 0.0),  # a vertex
        (10.0, 5.0),  # on an edge
        (5.0, 0.0),  # on the bottom edge
        (4.0, 5.0),  # on the hole's boundary
        (5.0, 5.0),  # inside the hole: outside the polygon
        (2.0, 2.0),  # inside
        (10.000001, 5.0),  # just outside
    ]
    occ = occurrences([{"decimalLongitude": x, "decimalLatitude": y} for x, y in pts])
    assert matched(apply_rules(occ, rules({"geometry": hole}))) == {1, 2, 3, 4, 6}


def test_multipolygon_parts() -> None:
    multi = "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 1, 0 0)), ((20 20, 21 20, 21 21, 20 21, 20 20)))"
    pts = [(0.5, 0.5), (20.5, 20.5), (10, 10), (21, 21)]
    occ = occurrences([{"decimalLongitude": x, "decimalLatitude": y} for x, y in pts])
    assert matched(apply_rules(occ, rules({"geometry": multi}))) == {1, 2, 4}


def test_records_without_coordinates_never_match() -> None:
    occ = occurrences(
        [
            {"decimalLatitude": None, "decimalLongitude": None},
            {"decimalLatitude": math.nan, "decimalLongitude": 5.0},
            {"decimalLatitude": 95.0, "decimalLongitude": 5.0},  # impossible latitude
            {"decimalLatitude": 5.0, "decimalLongitude": 5.0},
        ]
    )
    world = "POLYGON ((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"
    result = apply_rules(occ, rules({"geometry": world}))
    assert matched(result) == {4}
    assert result.annotated.column("annotation_labels").to_pylist() == [[], [], [], ["SUSPICIOUS"]]
    assert result.stats["located"] == 1


def test_points_at_the_edges_of_the_world() -> None:
    pts = [(-180.0, 0.0), (180.0, 0.0), (0.0, 90.0), (0.0, -90.0)]
    occ = occurrences([{"decimalLongitude": x, "decimalLatitude": y} for x, y in pts])
    west = "POLYGON ((-180 -1, -179 -1, -179 1, -180 1, -180 -1))"
    east = "POLYGON ((179 -1, 180 -1, 180 1, 179 1, 179 -1))"
    poles = "MULTIPOLYGON (((-1 89, 1 89, 1 90, -1 90, -1 89)), ((-1 -90, 1 -90, 1 -89, -1 -89, -1 -90)))"
    result = apply_rules(occ, rules({"geometry": west}, {"geometry": east}, {"geometry": poles}))
    assert matched(result, "local:1") == {1}
    assert matched(result, "local:2") == {2}
    assert matched(result, "local:3") == {3, 4}


# ----------------------------------------------------------------------------- attributes
def test_dataset_key() -> None:
    ds = "50c9509d-22c7-4a22-a47d-8c48425ef4a7"
    occ = occurrences([{"datasetKey": ds}, {"datasetKey": "other"}, {"datasetKey": None}])
    result = apply_rules(occ, rules({"datasetKey": ds.upper()}, {}))
    assert matched(result, "local:1") == {1}
    assert matched(result, "local:2") == {1, 2, 3}


def test_dataset_key_column_missing_means_no_dataset() -> None:
    occ = occurrences([{}]).drop_columns(["datasetKey"])
    result = apply_rules(occ, rules({"datasetKey": "abc"}, {}))
    assert matched(result, "local:1") == set()
    assert matched(result, "local:2") == {1}


def test_basis_of_record_and_negation() -> None:
    occ = occurrences(
        [
            {"basisOfRecord": "PRESERVED_SPECIMEN"},
            {"basisOfRecord": "HUMAN_OBSERVATION"},
            {"basisOfRecord": None},
            {"basisOfRecord": "PreservedSpecimen"},  # DwC spelling in a raw archive
            {"basisOfRecord": "FOSSIL_SPECIMEN"},
        ]
    )
    bor = ["PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"]
    result = apply_rules(
        occ,
        rules(
            {"basisOfRecord": bor},
            {"basisOfRecord": bor, "basisOfRecordNegated": True},
            {"basisOfRecord": ["LIVING_SPECIMEN"]},
        ),
    )
    assert matched(result, "local:1") == {1, 4, 5}
    assert matched(result, "local:2") == {2, 3}  # records without basisOfRecord match a negated rule
    assert matched(result, "local:3") == set()


@pytest.mark.parametrize(
    ("year_range", "expected"),
    [
        ("1900,2000", {2, 3, 4}),  # inclusive ends
        ("*,1950", {1, 2, 3}),
        ("1950,*", {3, 4, 5}),
        ("1950", {3}),
        ("*,*", {1, 2, 3, 4, 5, 6}),  # no filter (normalised to null): even the record without a year
    ],
)
def test_year_range(year_range: str, expected: set[int]) -> None:
    years = [1899, 1900, 1950, 2000, 2024, None]
    occ = occurrences([{"year": y} for y in years])
    assert matched(apply_rules(occ, rules({"yearRange": year_range}))) == expected


def test_records_without_year_do_not_match_a_year_rule() -> None:
    occ = occurrences([{"year": None}]).drop_columns(["year"])
    assert matched(apply_rules(occ, rules({"yearRange": "*,2100"}))) == set()


# ----------------------------------------------------------------------------- votes
def test_votes_policy() -> None:
    occ = occurrences([{}])
    table = rules(
        {"supportCount": 0, "contestCount": 0},
        {"supportCount": 2, "contestCount": 0},
        {"supportCount": 3, "contestCount": 1},
    )
    assert matched(apply_rules(occ, table)) == {1}
    everything = apply_rules(occ, table)
    assert everything.matches.column("rule_id").to_pylist() == ["local:1", "local:2", "local:3"]
    assert everything.rules_applied == 3
    at_least_two = apply_rules(occ, table, min_support=2)
    assert at_least_two.matches.column("rule_id").to_pylist() == ["local:2", "local:3"]
    assert at_least_two.rules_skipped_by_votes == 1
    uncontested = apply_rules(occ, table, min_support=2, exclude_contested=True)
    assert uncontested.matches.column("rule_id").to_pylist() == ["local:2"]
    assert uncontested.annotated.column("annotation_rule_ids").to_pylist() == [["local:2"]]
    with pytest.raises(ValueError, match="min_support"):
        apply_rules(occ, table, min_support=-1)


# ----------------------------------------------------------------------------- output
def test_conflicts_are_kept_and_flagged() -> None:
    occ = occurrences([{"decimalLongitude": 1.0}, {"decimalLongitude": 9.0}, {"decimalLongitude": 50.0}])
    left = "POLYGON ((0 0, 6 0, 6 10, 0 10, 0 0))"
    table = rules(
        {"label": "native"},  # whole box
        {"label": "SUSPICIOUS", "geometry": left},
        {"label": "NATIVE", "geometry": left, "id": "file:a"},
    )
    result = apply_rules(occ, table)
    labels = result.annotated.column("annotation_labels").to_pylist()
    assert labels == [["NATIVE", "SUSPICIOUS"], ["NATIVE"], []]
    assert result.annotated.column("annotation_conflict").to_pylist() == [True, False, False]
    assert result.annotated.column("annotation_rule_ids").to_pylist() == [
        ["file:a", "local:1", "local:2"],
        ["local:1"],
        [],
    ]
    assert result.label_counts() == {
        "NATIVE": 2,
        "INTRODUCED": 0,
        "MANAGED": 0,
        "FORMER": 0,
        "VAGRANT": 0,
        "SUSPICIOUS": 1,
        "OTHER": 0,
    }


def test_one_row_per_media_item_is_annotated_per_occurrence() -> None:
    occ = occurrences(
        [
            {"gbifID": 30, "decimalLongitude": 5.0},
            {"gbifID": 10, "decimalLongitude": 50.0},
            {"gbifID": 30, "decimalLongitude": 5.0},
            {"gbifID": 20, "decimalLongitude": 5.0},
            {"gbifID": 10, "decimalLongitude": 50.0},
        ]
    )
    occ = occ.append_column("identifier", pa.array([f"http://img/{i}" for i in range(5)]))
    result = apply_rules(occ, rules({}, {"label": "MANAGED"}))
    assert result.matches.to_pylist() == [
        {"gbifID": 20, "rule_id": "local:1", "label": "SUSPICIOUS", "source": "local"},
        {"gbifID": 20, "rule_id": "local:2", "label": "MANAGED", "source": "local"},
        {"gbifID": 30, "rule_id": "local:1", "label": "SUSPICIOUS", "source": "local"},
        {"gbifID": 30, "rule_id": "local:2", "label": "MANAGED", "source": "local"},
    ]
    labels = result.annotated.column("annotation_labels").to_pylist()
    assert labels == [["MANAGED", "SUSPICIOUS"], [], ["MANAGED", "SUSPICIOUS"], ["MANAGED", "SUSPICIOUS"], []]
    assert result.annotated.column("identifier").to_pylist() == occ.column("identifier").to_pylist()
    assert result.stats["occurrences"] == 3 and result.stats["rows"] == 5 and result.stats["matched"] == 2


def test_schemas_and_replacing_earlier_annotations() -> None:
    occ = occurrences([{}, {"decimalLongitude": 50.0}])
    first = apply_rules(occ, rules({}))
    assert first.matches.schema == MATCHES_SCHEMA
    for f in ANNOTATION_COLUMNS:
        assert first.annotated.schema.field(f.name).type == f.type
    again = apply_rules(first.annotated, rules({"label": "FORMER"}))
    assert again.annotated.column_names.count("annotation_labels") == 1
    assert again.annotated.column("annotation_labels").to_pylist() == [["FORMER"], []]


def test_no_rules_and_no_occurrences() -> None:
    occ = occurrences([{}, {}])
    result = apply_rules(occ, rules())
    assert result.matches.num_rows == 0
    assert result.annotated.column("annotation_labels").to_pylist() == [[], []]
    assert result.annotated.column("annotation_conflict").to_pylist() == [False, False]
    empty = apply_rules(occurrences([]), rules({}))
    assert empty.matches.num_rows == 0 and empty.annotated.num_rows == 0


def test_threads_do_not_change_the_result() -> None:
    rng = np.random.default_rng(5)
    occ = occurrences(
        [
            {"decimalLongitude": float(x), "decimalLatitude": float(y), "classKey": int(k)}
            for x, y, k in zip(
                rng.uniform(-5, 15, 3000), rng.uniform(-5, 15, 3000), rng.integers(1, 4, 3000), strict=True
            )
        ]
    )
    table = rules(*[{"taxonKey": k % 3 + 1, "label": "NATIVE" if k % 2 else "INTRODUCED"} for k in range(40)])
    one = apply_rules(occ, table, threads=1)
    two = apply_rules(occ, table, threads=2)
    assert one.matches.equals(two.matches)
    assert one.annotated.equals(two.annotated)


# ----------------------------------------------------------------------------- errors
def test_occurrence_errors() -> None:
    table = rules({})
    with pytest.raises(ValueError, match="decimalLatitude"):
        apply_rules(occurrences([{}]).drop_columns(["decimalLatitude"]), table)
    with pytest.raises(ValueError, match="gbifID"):
        apply_rules(occurrences([{"gbifID": None}]), table)


def test_unvalidated_bad_rules_are_named() -> None:
    bad = rules_table_from_records(
        [
            {"id": "local:7", "source": "local", "geometry": "POLYGON ((0 0, 1 0", "label": "NATIVE"},
            {"id": "local:8", "source": "local", "geometry": "POINT (1 1)", "label": "NATIVE"},
            {"id": "local:9", "source": "local", "geometry": BOX, "label": "nope"},
        ]
    )
    with pytest.raises(ValueError) as info:
        apply_rules(occurrences([{}]), bad)
    message = str(info.value)
    assert "rule local:7" in message and "WKT" in message
    assert "rule local:8" in message and "POINT" in message
    assert "rule local:9" in message and "SUSPICIOUS" in message
