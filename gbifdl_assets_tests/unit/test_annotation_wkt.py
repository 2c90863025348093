"""Reading user WKT: every text is a usable 2-D geometry or a ValueError that says why (issue 21)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbifdl_assets.annotations.compiled import check_polygon, count_vertices
from gbifdl_assets.annotations.model import RuleError, parse_rule
from gbifdl_assets.annotations.wkt import read_wkt


@pytest.mark.parametrize(
    ("wkt", "needle"),
    [
        ("CURVEPOLYGON (CIRCULARSTRING (0 0, 4 0, 4 4, 0 4, 0 0))", "is a CURVEPOLYGON, a curved geometry"),
        ("MULTISURFACE (((0 0, 1 0, 1 1, 0 0)))", "is a MULTISURFACE"),
        ("GEOMETRYCOLLECTION (CIRCULARSTRING (0 0, 1 1, 2 0))", "has a CIRCULARSTRING"),
        ("POINT (nan nan)", "not finite"),
        ("POINT (1e400 0)", "not finite"),
        ("POLYGON M ((0 0 1, 1 0 1, 1 1 1, 0 0 1))", "Z or M"),
        ("POLYGONM((0 0 1, 1 0 1, 1 1 1, 0 0 1))", "Z or M"),
        ("POLYGON ZM ((0 0 1 1, 1 0 1 1, 1 1 1 1, 0 0 1 1))", "Z or M"),
        ("POLYGON ((0 0 1, 1 0 1, 1 1 1, 0 0 1))", "Z or M"),
        ("POLYGON Z EMPTY", "Z or M"),
        ("TIN (((0 0, 1 0, 1 1, 0 0)))", "not valid WKT"),
        ("  ", "is empty"),
    ],
)
def test_unusable_text_is_a_value_error_that_says_why(wkt, needle):
    with pytest.raises(ValueError, match=needle):
        read_wkt(wkt)


def test_usable_text_of_any_straight_type_reads():
    for wkt in ("POINT (1 2)", "LINEARRING (0 0, 1 0, 1 1, 0 0)", "POLYGON EMPTY", "GEOMETRYCOLLECTION EMPTY",
                "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))", "POINT (.5 -.95)"):  # fmt: skip
        assert read_wkt(wkt) is not None


def test_vertices_are_counted_as_shapely_counts_them():
    square = "POLYGON ((.1 .1, .9 .1, .9 .9, .1 .9, .1 .1))"
    assert count_vertices(square) == 5  # GBIF's regex finds no pair in this text
    assert count_vertices("POLYGON ((0 0, 1 0, 1 1, 0 0), (0.2 0.1, 0.5 0.1, 0.5 0.4, 0.2 0.1))") == 8
    assert count_vertices("not WKT 1 2, 3 4") == 2  # unparseable: GBIF's count of the text
    ring = [f"{i * 0.02:.2f} .1" for i in range(1300)] + [f"{(1299 - i) * 0.02:.2f} .9" for i in range(1300)]
    wkt = "POLYGON ((" + ", ".join([*ring, ring[0]]) + "))"
    with pytest.raises(ValueError, match="has 2,601 vertices; GBIF allows at most 2,500"):
        check_polygon(wkt, max_vertices=2500)
    with pytest.raises(RuleError, match="2,601 vertices"):
        parse_rule({"taxonKey": 1, "geometry": wkt, "annotation": "OTHER"})


def test_a_repair_is_held_to_the_limits_too():
    # a bow-tie is repaired into two triangles: more vertices than the 5 it was sent with
    bowtie = "POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))"
    text, reason = check_polygon(bowtie, repair=True, max_vertices=10)
    assert reason and text.startswith("MULTIPOLYGON")
    with pytest.raises(ValueError, match="vertices after repair"):
        check_polygon(bowtie, repair=True, max_vertices=6)


_TOKENS = st.sampled_from(
    ["POINT", "POLYGON", "MULTIPOLYGON", "LINEARRING", "GEOMETRYCOLLECTION", "CURVEPOLYGON", "MULTISURFACE",
     "CIRCULARSTRING", "TRIANGLE", " Z ", " M ", " ZM ", "EMPTY", "(", ")", ",", " ", "nan", "inf", "1e400",
     "-1e400", ".5", "-.95", "0", "1", "180", "90", "-0", "1e-400", "9" * 40, "1.2.3", "SRID=4326;"]
)  # fmt: skip


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(st.one_of(st.lists(_TOKENS, max_size=40).map("".join), st.text(max_size=80)))
def test_no_text_raises_anything_but_a_value_error(text):
    for fn in (read_wkt, lambda t: check_polygon(t, max_vertices=2500, max_wkt_length=125_000),
               lambda t: check_polygon(t, repair=True)):  # fmt: skip
        try:
            fn(text)
        except ValueError as exc:
            assert str(exc).startswith(("is ", "has ", "reaches ")), str(exc)
