"""Search filters → download predicates, including the predicates rgbif recorded against GBIF."""

from __future__ import annotations

import pytest

from gbifdl_assets.gbif.predicates import predicate_from_filters, predicate_key
from gbifdl_assets_tests.unit.cassettes import RGBIF, load_cassette


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("taxonKey", "TAXON_KEY"),
        ("publishingOrg", "PUBLISHING_ORG"),
        ("country", "COUNTRY"),
        ("basisOfRecord", "BASIS_OF_RECORD"),
        ("mediaType", "MEDIA_TYPE"),
        ("hasCoordinate", "HAS_COORDINATE"),
        ("hasGeospatialIssue", "HAS_GEOSPATIAL_ISSUE"),
        ("coordinateUncertaintyInMeters", "COORDINATE_UNCERTAINTY_IN_METERS"),
        ("decimalLatitude", "DECIMAL_LATITUDE"),
        ("identifiedByID", "IDENTIFIED_BY_ID"),
        ("gbifID", "GBIF_ID"),
        ("license", "LICENSE"),
        ("datasetKey", "DATASET_KEY"),
        ("iucnRedListCategory", "IUCN_RED_LIST_CATEGORY"),
        ("OCCURRENCE_STATUS", "OCCURRENCE_STATUS"),
    ],
)
def test_parameter_names_become_upper_snake(name, key):
    assert predicate_key(name) == key


def test_single_and_multiple_values():
    p = predicate_from_filters(
        {"country": "DK", "mediaType": ["StillImage"], "basisOfRecord": ["A", "B"]}, taxon_keys=[]
    )
    assert p == {
        "type": "and",
        "predicates": [
            {"type": "equals", "key": "COUNTRY", "value": "DK"},
            {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"},
            {"type": "in", "key": "BASIS_OF_RECORD", "values": ["A", "B"]},
        ],
    }


def test_values_are_strings():
    p = predicate_from_filters(
        {"hasCoordinate": True, "hasGeospatialIssue": [False], "month": 5}, taxon_keys=[7]
    )
    values = [q.get("value") for q in p["predicates"]]
    assert values == ["7", "true", "false", "5"]


def test_taxon_keys():
    assert predicate_from_filters({}, taxon_keys=[1898286]) == {
        "type": "equals",
        "key": "TAXON_KEY",
        "value": "1898286",
    }
    p = predicate_from_filters({}, taxon_keys=[1, 2, 2, 3])
    assert p == {"type": "in", "key": "TAXON_KEY", "values": ["1", "2", "3"]}


def test_ranges():
    p = predicate_from_filters({"year": "1990,2000"}, taxon_keys=[5])
    assert p["predicates"][1:] == [
        {"type": "greaterThanOrEquals", "key": "YEAR", "value": "1990"},
        {"type": "lessThanOrEquals", "key": "YEAR", "value": "2000"},
    ]
    assert predicate_from_filters({"year": "*,1999"}, taxon_keys=[]) == {
        "type": "lessThanOrEquals",
        "key": "YEAR",
        "value": "1999",
    }
    assert predicate_from_filters({"coordinateUncertaintyInMeters": "0,1000"}, taxon_keys=[])["type"] == "and"
    assert predicate_from_filters({"year": "2001,2001"}, taxon_keys=[]) == {
        "type": "equals",
        "key": "YEAR",
        "value": "2001",
    }


def test_several_ranges_are_ored_and_mixed_with_single_values():
    p = predicate_from_filters({"year": ["1850", "1900,1910", "2000,*"]}, taxon_keys=[])
    assert p == {
        "type": "or",
        "predicates": [
            {"type": "equals", "key": "YEAR", "value": "1850"},
            {
                "type": "and",
                "predicates": [
                    {"type": "greaterThanOrEquals", "key": "YEAR", "value": "1900"},
                    {"type": "lessThanOrEquals", "key": "YEAR", "value": "1910"},
                ],
            },
            {"type": "greaterThanOrEquals", "key": "YEAR", "value": "2000"},
        ],
    }


def test_commas_outside_range_parameters_are_values():
    p = predicate_from_filters({"recordedBy": "Smith, J."}, taxon_keys=[])
    assert p == {"type": "equals", "key": "RECORDED_BY", "value": "Smith, J."}


def test_geometry_and_geo_distance():
    wkt = "POLYGON((-14 42,-7 26,9 38,-14 42))"
    assert predicate_from_filters({"geometry": wkt}, taxon_keys=[]) == {"type": "within", "geometry": wkt}
    two = predicate_from_filters({"geometry": [wkt, wkt.replace("42", "43")]}, taxon_keys=[])
    assert two["type"] == "or" and [q["type"] for q in two["predicates"]] == ["within", "within"]
    assert predicate_from_filters({"geoDistance": "52.5,13.4,10km"}, taxon_keys=[]) == {
        "type": "geoDistance",
        "latitude": "52.5",
        "longitude": "13.4",
        "distance": "10km",
    }


def test_taxon_key_filter_narrows_the_taxa():
    p = predicate_from_filters({"taxonKey": [212]}, taxon_keys=[5, 6])
    assert p["predicates"] == [
        {"type": "in", "key": "TAXON_KEY", "values": ["5", "6"]},
        {"type": "equals", "key": "TAXON_KEY", "value": "212"},
    ]


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ({}, "all of GBIF"),
        ({"country": []}, "all of GBIF"),
        ({"q": "butterfly"}, "'q'"),
        ({"year": "1,2,3"}, "low,high"),
        ({"geoDistance": "1,2"}, "latitude,longitude,distance"),
    ],
)
def test_errors(filters, match):
    with pytest.raises(ValueError, match=match):
        predicate_from_filters(filters, taxon_keys=[])


# the recorded rgbif requests whose predicate is expressible as search filters
RECORDED = [
    ("occ_download_1.yml", {"country": ["US", "CA"], "year": "1979,*"}, [9206251]),
    ("occ_download_2.yml", {"geometry": "POLYGON((-14 42,-7 26,9 38,-14 42))", "elevation": "5000,*"}, []),
    ("occ_download_3.yml", {"decimalLatitude": "75,*"}, []),
    ("occ_download_5.yml", {"verbatimScientificName": "Calopteryx"}, []),
    ("occ_download_cancel_prep.yml", {"country": ["US", "CA"], "year": "1979,*"}, [9206251]),
    ("occ_download_wait_request.yml", {"country": ["US", "CA"], "year": ["1975,*"]}, [9206251]),
]


@pytest.mark.parametrize(("cassette", "filters", "taxa"), RECORDED, ids=[r[0] for r in RECORDED])
def test_matches_predicates_rgbif_sent(cassette, filters, taxa):
    request = load_cassette(RGBIF / cassette)[0]
    assert request.method == "POST"
    assert predicate_from_filters(filters, taxon_keys=taxa) == request.request_json()["predicate"]
