"""Sandbox search semantics (paging, filters, facets), species matching and predicates, without HTTP."""

from __future__ import annotations

import numpy as np
import pytest

from gbifdl_assets.sandbox import get_world
from gbifdl_assets.sandbox.filters import BadRequest
from gbifdl_assets.sandbox.predicates import echo, evaluate
from gbifdl_assets.sandbox.records import render_record
from gbifdl_assets.sandbox.search import SearchIndex, parse_query
from gbifdl_assets.sandbox.species_api import match_v1, match_v2, species_search
from gbifdl_assets.sandbox.world import FLAG_ABSENT

AGLAIS_IO, INACHIS_IO, VANESSA_ATALANTA, LEPIDOPTERA, PANTHERA = 4535827, 5881450, 1898286, 797, 2435194


@pytest.fixture(scope="module")
def world():
    return get_world(42, 20_000, 1_500)


@pytest.fixture(scope="module")
def index(world):
    return SearchIndex(world)


def count(index, **params) -> int:
    items = [(k, str(x)) for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
    return len(index.matches(parse_query(items)))


def records(world, index, **params):
    items = [(k, str(x)) for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
    return [render_record(world, int(i), "http://x") for i in index.matches(parse_query(items))]


# ------------------------------------------------------------------------------ paging
def test_limit_defaults_to_20_and_is_silently_capped_at_300():
    assert parse_query([]).limit == 20
    assert parse_query([("limit", "500")]).limit == 300
    assert parse_query([("limit", "0")]).limit == 0


@pytest.mark.parametrize(
    ("offset", "limit", "ok"),
    [(99_700, 300, True), (99_701, 300, False), (100_000, 0, True), (99_900, 500, False)],
)
def test_offset_plus_limit_beyond_the_cap_is_a_400_with_gbifs_message(offset, limit, ok):
    items = [("offset", str(offset)), ("limit", str(limit))]
    if ok:
        parse_query(items)
    else:
        capped = min(limit, 300)
        with pytest.raises(BadRequest, match=rf"^Max offset of 100000 exceeded: {offset} \+ {capped}$"):
            parse_query(items)


def test_parameter_names_are_case_and_separator_insensitive(index):
    n = count(index, taxonKey=LEPIDOPTERA)
    assert n > 0
    assert count(index, TAXON_KEY=LEPIDOPTERA) == count(index, **{"taxon-key": LEPIDOPTERA}) == n
    assert count(index, taxonkey=LEPIDOPTERA) == n
    assert count(index, basisOfRecord="human_observation") == count(index, basisOfRecord="HUMAN_OBSERVATION")


def test_unknown_parameters_are_ignored_like_gbif(index, world):
    assert count(index, notAParameter="x") == len(world.occ)


def test_repeated_parameters_are_ored_and_different_ones_anded(index):
    a = count(index, country="GB")
    b = count(index, country="FR")
    assert count(index, country=["GB", "FR"]) == a + b
    both = count(index, country="GB", basisOfRecord="HUMAN_OBSERVATION")
    assert 0 < both < a


# ------------------------------------------------------------------------------ filters
def test_taxon_key_matches_descendants_and_synonyms(world, index):
    recs = records(world, index, taxonKey=AGLAIS_IO)
    assert {r["acceptedTaxonKey"] for r in recs} == {AGLAIS_IO}
    assert {r["taxonKey"] for r in recs} == {AGLAIS_IO, INACHIS_IO}  # records identified as Inachis io too
    assert len(recs) == count(index, speciesKey=AGLAIS_IO)
    # a synonym key matches only the records identified under it
    syn = records(world, index, taxonKey=INACHIS_IO)
    assert syn and {r["taxonKey"] for r in syn} == {INACHIS_IO}
    # a higher taxon matches everything below it, including genus-level records
    lep = records(world, index, taxonKey=LEPIDOPTERA)
    assert all(r["orderKey"] == LEPIDOPTERA for r in lep)
    assert len(lep) == count(index, orderKey=LEPIDOPTERA)
    assert any("speciesKey" not in r for r in lep)


def test_filters_agree_with_the_rendered_records(world, index):
    def check(params, pred):
        recs = records(world, index, **params)
        assert recs, params
        assert all(pred(r) for r in recs), params
        # and nothing outside the result satisfies the predicate
        everything = [render_record(world, i, "http://x") for i in range(0, len(world.occ), 13)]
        keys = {r["key"] for r in recs}
        assert all(pred(r) == (r["key"] in keys) for r in everything), params

    check({"basisOfRecord": "PRESERVED_SPECIMEN"}, lambda r: r["basisOfRecord"] == "PRESERVED_SPECIMEN")
    check({"license": "CC0_1_0"}, lambda r: r["license"].endswith("zero/1.0/legalcode"))
    check({"country": "SE"}, lambda r: r.get("countryCode") == "SE")
    check({"year": "2000,2010"}, lambda r: 2000 <= r.get("year", 0) <= 2010)
    check({"year": "*,1900"}, lambda r: 0 < r.get("year", 0) <= 1900)
    check({"month": 6}, lambda r: r.get("month") == 6)
    check({"hasCoordinate": "false"}, lambda r: "decimalLatitude" not in r)
    check({"mediaType": "StillImage"}, lambda r: any(m["type"] == "StillImage" for m in r["media"]))
    check({"issue": "ZERO_COORDINATE"}, lambda r: "ZERO_COORDINATE" in r["issues"])
    check(
        {"hasGeospatialIssue": "true"},
        lambda r: bool(
            {
                "ZERO_COORDINATE",
                "COUNTRY_COORDINATE_MISMATCH",
                "COORDINATE_OUT_OF_RANGE",
                "PRESUMED_NEGATED_LONGITUDE",
            }
            & set(r["issues"])
        ),
    )
    check({"kingdomKey": 6}, lambda r: r.get("kingdomKey") == 6)
    check({"acceptedTaxonKey": VANESSA_ATALANTA}, lambda r: r["acceptedTaxonKey"] == VANESSA_ATALANTA)
    ds = world.datasets[3]
    check({"datasetKey": ds.key}, lambda r: r["datasetKey"] == ds.key)
    pub = world.publishers[0].key
    check({"publishingOrg": pub}, lambda r: r["publishingOrgKey"] == pub)
    check({"decimalLatitude": "50,60"}, lambda r: 50 <= r.get("decimalLatitude", -999) <= 60)
    check({"occurrenceStatus": "ABSENT"}, lambda r: r["occurrenceStatus"] == "ABSENT")
    first = int(world.occ.key[5])
    check({"gbifId": first}, lambda r: r["key"] == first)
    check({"eventDate": "2020-06"}, lambda r: r.get("year") == 2020 and r.get("month") == 6)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"basisOfRecord": "FOO"}, "Value FOO invalid for filter parameter BASIS_OF_RECORD"),
        ({"year": "19x0"}, "Invalid integer range: 19x0"),
        ({"year": "1990-2000"}, "Invalid integer range: 1990-2000"),
        ({"decimalLatitude": "5-10"}, "Invalid decimal range: 5-10"),
        ({"decimalLatitude": "334"}, "334 is not valid value, latitude must be between -90 and 90."),
        ({"month": "13"}, "Month needs to be between 1 - 12"),
        ({"hasCoordinate": "yes"}, "Value yes is no valid boolean"),
        ({"datasetKey": "nope"}, "Invalid UUID string: nope"),
        ({"continent": "asia,oceania"}, "Cannot parse asia,oceania into a known Continent"),
        ({"mediaType": "Photo"}, "Value Photo invalid for filter parameter MEDIA_TYPE"),
        ({"geometry": "POLYGON((1 2"}, "Cannot parse simple WKT: POLYGON((1 2"),
        ({"limit": "ten"}, "Invalid limit: ten"),
        ({"facet": "nothing"}, "Unknown facet field: nothing"),
    ],
)
def test_bad_values_are_400s_with_gbif_like_messages(index, params, message):
    with pytest.raises(BadRequest) as err:
        index.matches(parse_query(list(params.items())))
    assert str(err.value).startswith(message)


def test_geometry_filter(world, index):
    wkt = "POLYGON((-10 35,30 35,30 70,-10 70,-10 35))"
    recs = records(world, index, geometry=wkt)
    assert recs
    assert all(-10 <= r["decimalLongitude"] <= 30 and 35 <= r["decimalLatitude"] <= 70 for r in recs)


# ------------------------------------------------------------------------------ facets
def test_facets_are_upper_snake_sorted_descending_and_limited(world, index):
    q = parse_query(
        [("facet", "basisOfRecord"), ("facet", "speciesKey"), ("facetLimit", "5"), ("limit", "0")]
    )
    rows = index.matches(q)
    facets = index.facets(q, rows)
    assert [f["field"] for f in facets] == ["BASIS_OF_RECORD", "SPECIES_KEY"]
    for f in facets:
        counts = [c["count"] for c in f["counts"]]
        assert counts == sorted(counts, reverse=True) and len(counts) <= 5
    bor = {c["name"]: c["count"] for c in facets[0]["counts"]}
    assert bor["HUMAN_OBSERVATION"] == count(index, basisOfRecord="HUMAN_OBSERVATION")
    top_species = facets[1]["counts"][0]
    assert top_species["count"] == count(index, speciesKey=top_species["name"])


def test_facet_offset_mincount_and_per_field_limit(index):
    base = [("facet", "country"), ("limit", "0")]
    all_ = index.facets(q := parse_query([*base, ("facetLimit", "100")]), index.matches(q))[0]["counts"]
    paged = index.facets(
        q := parse_query([*base, ("facetLimit", "3"), ("facetOffset", "2")]), index.matches(q)
    )[0]
    assert paged["counts"] == all_[2:5]
    per_field = parse_query([*base, ("country.facetLimit", "2")])
    assert len(index.facets(per_field, index.matches(per_field))[0]["counts"]) == 2
    mincount = all_[3]["count"]
    q = parse_query([*base, ("facetLimit", "100"), ("facetMincount", str(mincount))])
    assert all(c["count"] >= mincount for c in index.facets(q, index.matches(q))[0]["counts"])


def test_dataset_facet_sums_to_the_count(index):
    q = parse_query([("facet", "datasetKey"), ("facetLimit", "1000"), ("taxonKey", str(LEPIDOPTERA))])
    rows = index.matches(q)
    assert sum(c["count"] for c in index.facets(q, rows)[0]["counts"]) == len(rows)


# ------------------------------------------------------------------------------ species
@pytest.mark.parametrize(
    ("name", "match_type", "key"),
    [
        ("Vanessa atalanta", "EXACT", VANESSA_ATALANTA),
        ("vanessa  ATALANTA", "EXACT", VANESSA_ATALANTA),
        ("Helianthus annuus L.", "EXACT", 9206251),
        ("Vanesa atalanta", "FUZZY", VANESSA_ATALANTA),
        ("Vanessa nonexistentia", "HIGHERRANK", 1898184),
        ("Zzyzx qqqq", "NONE", None),
        ("Panthera", "EXACT", PANTHERA),
    ],
)
def test_v1_match_types(world, name, match_type, key):
    m = match_v1(world.taxonomy, {"name": name})
    assert m["matchType"] == match_type
    assert m.get("usageKey") == key
    if match_type == "NONE":
        assert "usageKey" not in m and m["synonym"] is False and "confidence" in m


def test_v1_match_of_a_synonym_points_to_the_accepted_name(world):
    m = match_v1(world.taxonomy, {"name": "Inachis io"})
    assert m["usageKey"] == INACHIS_IO and m["acceptedUsageKey"] == AGLAIS_IO
    assert m["status"] == "SYNONYM" and m["synonym"] is True and m["speciesKey"] == AGLAIS_IO


def test_kingdom_hint_resolves_homonyms(world):
    tax = world.taxonomy
    assert match_v1(tax, {"name": "Morus"})["matchType"] == "NONE"  # plant and bird genus
    plant = match_v1(tax, {"name": "Morus", "kingdom": "Plantae"})
    bird = match_v1(tax, {"name": "Morus", "kingdom": "Animalia"})
    assert plant["kingdom"] == "Plantae" and bird["kingdom"] == "Animalia"
    assert plant["usageKey"] != bird["usageKey"]
    assert match_v1(tax, {"name": "Vanessa atalanta", "kingdom": "Plantae"})["matchType"] == "NONE"


def test_strict_match_disables_fuzzy_and_higher_rank(world):
    assert match_v1(world.taxonomy, {"name": "Vanesa atalanta", "strict": "true"})["matchType"] == "NONE"


def test_v2_match_shape(world):
    m = match_v2(world.taxonomy, {"scientificName": "Inachis io"})
    assert m["usage"]["key"] == str(INACHIS_IO) and m["acceptedUsage"]["key"] == str(AGLAIS_IO)
    assert m["synonym"] is True and m["diagnostics"]["matchType"] == "EXACT"
    assert [c["rank"] for c in m["classification"]] == [
        "KINGDOM",
        "PHYLUM",
        "CLASS",
        "ORDER",
        "FAMILY",
        "GENUS",
        "SPECIES",
    ]
    assert all(isinstance(c["key"], str) for c in m["classification"])
    none = match_v2(world.taxonomy, {"scientificName": "Zzyzx qqqq"})
    assert set(none) == {"diagnostics", "synonym"} and none["diagnostics"]["matchType"] == "NONE"


def test_species_search_finds_accepted_descendants(world):
    found = species_search(
        world.taxonomy, {"highertaxonKey": ["5473"], "rank": ["SPECIES"], "status": ["ACCEPTED"]}
    )
    assert {"Pieris rapae", "Pieris brassicae"} <= {t.canonical for t in found}
    assert all(t.rank == "SPECIES" and t.status == "ACCEPTED" for t in found)
    syn = species_search(world.taxonomy, {"q": ["Inachis"], "status": ["SYNONYM"]})
    assert [t.canonical for t in syn] == ["Inachis", "Inachis io"]


# ------------------------------------------------------------------------------ predicates
def _search_rows(index, items):
    return index.matches(parse_query(items))


def test_predicates_select_the_same_records_as_the_equivalent_search(world, index):
    cases = [
        ({"type": "equals", "key": "TAXON_KEY", "value": str(AGLAIS_IO)}, [("taxonKey", str(AGLAIS_IO))]),
        (
            {
                "type": "and",
                "predicates": [
                    {"type": "in", "key": "COUNTRY", "values": ["GB", "SE"]},
                    {"type": "greaterThanOrEquals", "key": "YEAR", "value": "2015"},
                    {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"},
                ],
            },
            [("country", "GB"), ("country", "SE"), ("year", "2015,*"), ("mediaType", "StillImage")],
        ),
        (
            {
                "type": "and",
                "predicates": [
                    {"type": "equals", "key": "KINGDOM_KEY", "value": "6"},
                    {"type": "lessThan", "key": "YEAR", "value": "1950"},
                    {"type": "isNotNull", "parameter": "DECIMAL_LATITUDE"},
                ],
            },
            [("kingdomKey", "6"), ("year", "*,1949"), ("hasCoordinate", "true")],
        ),
        (
            {"type": "in", "key": "LICENSE", "values": ["CC0_1_0", "CC_BY_4_0"]},
            [("license", "CC0_1_0"), ("license", "CC_BY_4_0")],
        ),
    ]
    for pred, items in cases:
        assert np.array_equal(np.flatnonzero(evaluate(world, pred)), _search_rows(index, items)), pred


def test_or_not_and_null_predicates(world):
    occ = world.occ
    gb = evaluate(world, {"type": "equals", "key": "COUNTRY", "value": "GB"})
    fr = evaluate(world, {"type": "equals", "key": "country", "value": "fr"})
    either = evaluate(
        world,
        {
            "type": "or",
            "predicates": [
                {"type": "equals", "key": "COUNTRY", "value": "GB"},
                {"type": "equals", "key": "COUNTRY", "value": "FR"},
            ],
        },
    )
    assert np.array_equal(either, gb | fr)
    assert np.array_equal(
        evaluate(world, {"type": "not", "predicate": {"type": "equals", "key": "COUNTRY", "value": "GB"}}),
        ~gb,
    )
    assert np.array_equal(evaluate(world, {"type": "isNull", "parameter": "YEAR"}), occ.year == 0)
    assert np.array_equal(
        evaluate(world, {"type": "isNull", "parameter": "MEDIA_TYPE"}), occ.media_types == 0
    )
    absent = evaluate(world, {"type": "equals", "key": "OCCURRENCE_STATUS", "value": "ABSENT"})
    assert np.array_equal(absent, (occ.flags & FLAG_ABSENT) != 0)
    assert evaluate(world, None).all()
    within = evaluate(world, {"type": "within", "geometry": "POLYGON((-10 35,30 35,30 70,-10 70,-10 35))"})
    assert 0 < within.sum() < len(occ)


@pytest.mark.parametrize(
    "pred",
    [
        {"type": "equals", "key": "NOT_A_FIELD", "value": "1"},
        {"type": "frobnicate"},
        {"type": "and", "predicates": []},
        {"type": "in", "key": "COUNTRY"},
        {"type": "equals", "key": "BASIS_OF_RECORD", "value": "NOPE"},
        {"type": "lessThan", "key": "BASIS_OF_RECORD", "value": "X"},
        "not a predicate",
    ],
)
def test_bad_predicates_are_bad_requests(world, pred):
    with pytest.raises(BadRequest):
        evaluate(world, pred)


def test_predicate_echo_adds_match_case_on_leaves():
    pred = {
        "type": "and",
        "predicates": [
            {"type": "equals", "key": "TAXON_KEY", "value": "1"},
            {"type": "isNull", "parameter": "YEAR"},
        ],
    }
    out = echo(pred)
    assert out["predicates"][0]["matchCase"] is False and "matchCase" not in out["predicates"][1]
    assert "matchCase" not in pred["predicates"][0]  # the input is not modified
