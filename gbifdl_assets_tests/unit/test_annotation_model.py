"""The rule model: GBIF's JSON shape both ways, and one clear message per invalid rule."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import shapely

from gbifdl_assets.annotations.model import (
    Comment,
    Project,
    Rule,
    RuleError,
    Ruleset,
    check_geometry,
    format_timestamp,
    normalize_year_range,
    parse_rule,
    parse_year_range,
)

# The shape of r-package/gbifrules/tests/testthat/fixtures/clean_download/.../rule.json (annotations.md §2)
GBIF_RULE_JSON = """{"id": 60, "taxonKey": 10, "datasetKey": null,
 "geometry": "POLYGON ((-13.0 11.7, 13.0 11.7, 13.0 -12.7, -13.0 -12.7, -13.0 11.7))",
 "annotation": "SUSPICIOUS", "basisOfRecord": null, "basisOfRecordNegated": false, "yearRange": null,
 "rulesetId": null, "projectId": null, "supportedBy": [], "contestedBy": [],
 "created": "2025-11-20T08:09:43.949+00:00", "createdBy": "jwaller", "deleted": null, "deletedBy": null}"""

SQUARE = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"
BOWTIE = "POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))"


def rule(**changes):
    return {"taxonKey": 5219404, "geometry": SQUARE, "annotation": "SUSPICIOUS", **changes}


def test_gbif_rule_json_round_trips_exactly():
    raw = json.loads(GBIF_RULE_JSON)
    r = Rule.model_validate(raw)
    assert r.created == dt.datetime(2025, 11, 20, 8, 9, 43, 949000, tzinfo=dt.UTC)
    out = r.to_gbif()
    assert out == raw
    assert list(out) == list(raw)  # same field order as GBIF
    assert json.loads(json.dumps(out)) == raw


def test_full_rule_round_trips_and_votes_count():
    raw = {
        **json.loads(GBIF_RULE_JSON),
        "datasetKey": "50c9509d-22c7-4a22-a47d-8c48425ef4a7",
        "basisOfRecord": ["PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"],
        "basisOfRecordNegated": True,
        "yearRange": "1900,1950",
        "rulesetId": 3,
        "projectId": 2,
        "supportedBy": ["a", "b"],
        "contestedBy": ["c"],
        "deleted": "2025-12-01T10:00:00.000+00:00",
        "deletedBy": "jwaller",
    }
    r = Rule.model_validate(raw)
    assert r.to_gbif() == raw
    assert (r.support_count, r.contest_count, r.years) == (2, 1, (1900, 1950))


def test_other_objects_have_gbif_shapes():
    ruleset = Ruleset.model_validate({"id": 1, "projectId": 2, "name": " lions ", "members": ["a", "a", "b"]})
    assert list(ruleset.to_gbif()) == [
        "id",
        "projectId",
        "name",
        "description",
        "members",
        "created",
        "createdBy",
        "modified",
        "modifiedBy",
        "deleted",
        "deletedBy",
    ]
    assert ruleset.name == "lions" and ruleset.members == ["a", "b"]
    assert "projectId" not in Project.model_validate({"name": "p"}).to_gbif()
    assert list(Comment.model_validate({"comment": "hi", "ruleId": 4}).to_gbif()) == [
        "id",
        "ruleId",
        "comment",
        "created",
        "createdBy",
        "deleted",
        "deletedBy",
    ]


def test_from_gbif_ignores_fields_gbif_adds_later_but_user_input_does_not():
    raw = {**json.loads(GBIF_RULE_JSON), "customVocabulary": None, "somethingNew": 1}
    assert Rule.from_gbif(raw).id == 60
    with pytest.raises(
        RuleError, match=r"rule 60: customVocabulary is not a rule field.*; somethingNew is not"
    ):
        parse_rule(raw)


def test_label_is_normalised_case_insensitively_and_other_accepted():
    assert parse_rule(rule(annotation=" suspicious ")).annotation == "SUSPICIOUS"
    assert parse_rule(rule(annotation="Other")).annotation == "OTHER"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"geometry": "POLYGON ((0 0, 1 1"}, r"geometry is not valid WKT"),
        (
            {"geometry": "POLYGON ((0 0, 1 0, 1 1, 0 0.5))"},
            r"geometry is not valid WKT \(Points of LinearRing",
        ),
        ({"geometry": "POINT (1 2)"}, r"geometry is a POINT; a rule needs a POLYGON or MULTIPOLYGON"),
        ({"geometry": "POLYGON EMPTY"}, r"geometry is an empty polygon"),
        ({"geometry": ""}, r"geometry is empty"),
        ({"geometry": "POLYGON ((0 0, 200 0, 200 10, 0 10, 0 0))"}, r"reaches outside lon -180..180"),
        ({"geometry": BOWTIE}, r"not a valid polygon \(Self-intersection\[5 5\]\); refused"),
        ({"annotation": "LOVELY"}, r"annotation: unknown annotation label 'LOVELY'"),
        ({"annotation": None}, r"annotation is missing"),
        ({"yearRange": "1950,1900"}, r"yearRange: '1950,1900' starts after it ends"),
        ({"yearRange": "last year"}, r"yearRange: 'last year' is not a year range"),
        ({"taxonKey": "Panthera"}, r"taxonKey: 'Panthera' is not a GBIF taxon key"),
        ({"taxonKey": -3}, r"taxonKey: -3 is not a GBIF taxon key"),
        ({"datasetKey": "not-a-uuid"}, r"datasetKey: 'not-a-uuid' is not a GBIF dataset key"),
        (
            {"basisOfRecord": ["HUMAN_OBSERVATON"]},
            r"unknown basisOfRecord 'HUMAN_OBSERVATON' \(did you mean HUMAN_OBSERVATION",
        ),
        ({"taxonkey": 1}, r"taxonkey is not a rule field"),
    ],
)
def test_each_invalid_rule_gets_its_message_naming_the_rule(changes, message):
    with pytest.raises(RuleError, match=r"^rule \(taxon") as info:
        parse_rule(rule(**changes))
    assert re.search(message, str(info.value)), str(info.value)


def test_errors_name_the_rule_by_id_or_given_name_and_list_every_problem():
    with pytest.raises(RuleError) as info:
        parse_rule(rule(id=12, annotation="x", yearRange="2000,1"))
    text = str(info.value)
    assert text.startswith("rule 12: ") and "annotation" in text and "yearRange" in text
    with pytest.raises(RuleError, match=r"^lions.yaml rule 3: geometry"):
        parse_rule(rule(geometry="POINT (0 0)"), name="lions.yaml rule 3")


def test_vertex_and_length_limits_are_gbifs():
    circle = shapely.Point(0, 0).buffer(10, quad_segs=700)  # 2,801 vertices
    wkt = shapely.to_wkt(circle, rounding_precision=4)
    with pytest.raises(RuleError, match=r"has 2,801 vertices; GBIF allows at most 2,500"):
        parse_rule(rule(geometry=wkt))
    small = shapely.to_wkt(shapely.Point(0, 0).buffer(10, quad_segs=600), rounding_precision=4)  # 2,401
    assert parse_rule(rule(geometry=small)).geometry == small
    # pulled GBIF rules are exempt (GBIF exempts its admins)
    assert parse_rule(rule(geometry=wkt), gbif=True).geometry == wkt
    with pytest.raises(ValueError, match=r"WKT characters; GBIF allows at most 125,000"):
        check_geometry("POLYGON ((" + "1.0000000001 " * 20000 + "))")


def test_self_intersection_is_repaired_only_when_asked():
    repaired = parse_rule(rule(geometry=BOWTIE), repair=True).geometry
    geom = shapely.from_wkt(repaired)
    assert geom.is_valid and geom.geom_type == "MultiPolygon"
    assert geom.area == pytest.approx(50.0)


def test_multipolygon_and_polygon_with_hole_are_accepted():
    multi = "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 1, 0 0)), ((5 5, 6 5, 6 6, 5 6, 5 5)))"
    holed = "POLYGON ((-180 -85, 180 -85, 180 85, -180 85, -180 -85), (0 0, 0 10, 10 10, 10 0, 0 0))"
    assert parse_rule(rule(geometry=multi)).geometry == multi
    assert parse_rule(rule(geometry=holed)).geometry == holed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1900,2000", "1900,2000"),
        (" 1900 , 2000 ", "1900,2000"),
        ("*,1950", "*,1950"),
        ("1950,*", "1950,*"),
        ("1950", "1950,1950"),
        (1950, "1950,1950"),
        ([1900, None], "1900,*"),
        ("*,*", None),
        ("", None),
        (None, None),
    ],
)
def test_year_range_forms(value, expected):
    assert normalize_year_range(value) == expected
    assert parse_rule(rule(yearRange=value)).yearRange == expected


def test_parse_year_range_bounds():
    assert parse_year_range("*,1950") == (None, 1950)
    assert parse_year_range("1950") == (1950, 1950)
    assert parse_year_range(None) is None


def test_basis_of_record_accepts_dwc_spelling_and_commas():
    r = parse_rule(rule(basisOfRecord="PreservedSpecimen, fossil_specimen"))
    assert r.basisOfRecord == ["PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"]
    assert parse_rule(rule(basisOfRecord=[])).basisOfRecord is None


def test_timestamps_are_gbifs_format():
    assert format_timestamp(dt.datetime(2023, 11, 10, 14, 8, 4, 182000, tzinfo=dt.UTC)) == (
        "2023-11-10T14:08:04.182+00:00"
    )
    naive = dt.datetime(2023, 11, 10, 14, 8, 4)
    assert format_timestamp(naive) == "2023-11-10T14:08:04.000+00:00"
    other_zone = dt.datetime(2023, 11, 10, 16, 8, 4, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_timestamp(other_zone) == "2023-11-10T14:08:04.000+00:00"


def test_ruleset_and_comment_validation():
    with pytest.raises(ValueError, match="name"):
        Ruleset.model_validate({"name": "  "})
    with pytest.raises(ValueError, match="comment"):
        Comment.model_validate({"comment": ""})
