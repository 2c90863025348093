"""The client against every recorded occurrence search, count and facet answer of real GBIF."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.errors import GbifBadRequest, GbifRateLimited
from gbifdl_assets_tests.unit.cassettes import (
    PYGBIF,
    RGBIF,
    Interaction,
    cassette_files,
    is_search_page,
    load_cassette,
    replay_session,
)

# (records, records with media, media items) per cassette, from the fixtures' README
EXPECTED_PAGES = {
    "test_search.yaml": (300, 287, 487),
    "test_search_identified_by_id.yaml": (3, 3, 3),
    "test_search_key1.yaml": (300, 263, 437),
    "occ_data_occurrenceId.yml": (10, 0, 0),
    "occ_search.yml": (22, 22, 49),
    "occ_search_identifiedBy.yml": (10, 10, 14),
    "occ_search_looping_works.yml": (750, 712, 1267),
    "occ_search_taxonkey.yml": (2, 2, 7),
}
#: recorded retry-after values of the 429 answers per cassette
EXPECTED_WAITS = {"gbif_get_wait.yml": [31.0] * 5, "occ_data_occurrenceId.yml": [3.0]}


def search_params(interaction: Interaction) -> tuple[dict[str, list[str]], int, int]:
    params: dict[str, list[str]] = {}
    offset, limit = 0, 20
    for name, value in interaction.params:
        if name == "offset":
            offset = int(value)
        elif name == "limit":
            limit = int(value)
        elif value != "":
            params.setdefault(name, []).append(value)
    return params, offset, limit


def make_client(interactions: list[Interaction], **kwargs) -> tuple[GbifClient, list[float], object]:
    session, adapter = replay_session(interactions, **kwargs)
    sleeps: list[float] = []
    client = GbifClient(session=session, sleep=sleeps.append, backoff_max=60.0)
    return client, sleeps, adapter


def search_cassettes() -> list[Path]:
    return [
        f
        for f in cassette_files()
        if any(i.path.endswith("/occurrence/search") and i.method == "GET" for i in load_cassette(f))
        and not f.name.startswith("occ_count_facet")
    ]


def test_every_recorded_search_page_is_covered():
    with_pages = {f.name for f in cassette_files() if any(is_search_page(i) for i in load_cassette(f))}
    assert with_pages == set(EXPECTED_PAGES), "a cassette with occurrence pages is not checked below"


@pytest.mark.parametrize("path", search_cassettes(), ids=lambda p: p.name)
def test_replay_every_search_interaction(path: Path):
    """Each recorded search/count request goes through the client; 429s are retried, 400s raise."""
    interactions = load_cassette(path)
    # R asked for limit=500 in the error cassettes; our client caps it to 300 as GBIF would
    over_cap = any(int(dict(i.params).get("limit", 0)) > 300 for i in interactions)
    client, sleeps, adapter = make_client(interactions, ignore={"limit"} if over_cap else ())
    records: list[dict] = []
    for interaction in interactions:
        if interaction.used:
            continue
        if not interaction.path.endswith("/occurrence/search"):
            # e.g. the species search gbif_get_wait.yml starts with
            endpoint = interaction.path.removeprefix("/v1")
            assert client.get_json(endpoint, dict(interaction.params)) == interaction.json()
            continue
        if interaction.status == 429:
            continue  # answered first to the request recorded next; the client must retry it
        params, offset, limit = search_params(interaction)
        if interaction.status == 400:
            with pytest.raises(GbifBadRequest) as err:
                client.search_page(params, offset=offset, limit=min(limit, 300))
            assert err.value.message == interaction.text.strip()
            continue
        expected = interaction.json()
        if limit == 0:
            assert client.count(params) == expected["count"]
            continue
        page = client.search_page(params, offset=offset, limit=limit)
        assert page["count"] == expected["count"]
        assert page["offset"] == offset
        assert [r["key"] for r in page["results"]] == [r["key"] for r in expected["results"]]
        records.extend(page["results"])
    assert adapter.unused == [], "every recorded interaction was requested"
    assert sleeps == EXPECTED_WAITS.get(path.name, [])

    if path.name in EXPECTED_PAGES:
        n, with_media, media_items = EXPECTED_PAGES[path.name]
        assert len(records) == n
        assert sum(1 for r in records if r.get("media")) == with_media
        assert sum(len(r.get("media") or []) for r in records) == media_items
    for record in records:
        assert isinstance(record["key"], int)
        assert record["gbifID"] == str(record["key"])
        assert "datasetKey" in record and "basisOfRecord" in record


def test_test_search_page_content():
    client, _, _ = make_client(load_cassette(PYGBIF / "test_search.yaml"))
    page = client.search_page({"taxonKey": 3329049}, limit=300)
    assert (page["count"], page["limit"], page["endOfRecords"]) == (765, 300, False)
    records = page["results"]
    # taxonKey 3329049 is a synonym: label by the accepted key, which GBIF puts in speciesKey
    synonym_records = [r for r in records if r["taxonKey"] == 3329049]
    assert synonym_records
    assert {(r["speciesKey"], r["acceptedTaxonKey"]) for r in synonym_records} == {(8168319, 8168319)}
    assert {r["taxonomicStatus"] for r in synonym_records} == {"SYNONYM"}
    first = records[0]
    assert first["key"] == 4909740830
    # the order of media[] need not match the Multimedia extension's order
    assert {m["identifier"] for m in first["media"]} == {
        "https://arter.dk/media/01d74793-009f-419a-a162-b1b2010dc980.jpg",
        "https://arter.dk/media/747389ab-7915-4a92-8ae8-b1b2010dcb62.jpg",
    }
    identifiers = [m.get("identifier") for r in records for m in r["media"]]
    assert all(i.startswith(("http://", "https://")) for i in identifiers if i)


def test_taxonkey_record_fields():
    client, _, _ = make_client(load_cassette(RGBIF / "occ_search_taxonkey.yml"))
    page = client.search_page({"occurrenceStatus": "PRESENT", "taxonKey": 3118771}, limit=2)
    record = page["results"][0]
    assert record["key"] == 5006703001 and record["gbifID"] == "5006703001"
    assert record["speciesKey"] == record["acceptedTaxonKey"] == 3118771
    assert record["media"][0]["identifier"] == (
        "https://inaturalist-open-data.s3.amazonaws.com/photos/462132678/original.jpg"
    )


def test_looping_iter_occurrences_with_recorded_pages():
    """iter_occurrences counts, then pages with its page size: replay the 3 recorded pages of 250."""
    interactions = load_cassette(RGBIF / "occ_search_looping_works.yml")
    first = interactions[0]
    count_only = {**first.json(), "limit": 0, "results": []}  # the count call rgbif did not record
    count_uri = first.uri.replace("limit=250", "limit=0")
    interactions.insert(0, Interaction("GET", count_uri, None, 200, {}, json.dumps(count_only).encode()))
    client, _, adapter = make_client(interactions)
    params = {"occurrenceStatus": "PRESENT", "taxonKey": 3118771}
    records = []
    for record in client.iter_occurrences(params, page_size=250):
        records.append(record)
        if len(records) == 750:
            break
    assert len(records) == 750 == len({r["key"] for r in records})
    assert adapter.unused == []


def test_limit_is_capped_at_300():
    interactions = load_cassette(PYGBIF / "test_search.yaml")
    client, _, adapter = make_client(interactions)
    client.search_page({"taxonKey": 3329049}, limit=5000)
    assert "limit=300" in adapter.requests[0].url


@pytest.mark.parametrize(
    ("field", "index", "name"),
    [
        ("year", 0, "YEAR"),
        ("year", 1, "YEAR"),
        ("country", 2, "COUNTRY"),
        ("occurrenceStatus", 3, "OCCURRENCE_STATUS"),
        ("basisOfRecord", 4, "BASIS_OF_RECORD"),
        ("coordinateUncertaintyInMeters", 5, "COORDINATE_UNCERTAINTY_IN_METERS"),
    ],
)
def test_facet_counts_map_upper_snake_names_back(field: str, index: int, name: str):
    interactions = load_cassette(RGBIF / "occ_count_facet.yml")
    recorded = interactions[index]
    params, _, _ = search_params(recorded)
    params.pop("facet")
    client, _, adapter = make_client(interactions, ignore={"facetLimit"})
    buckets = client.facet_counts(params, field, limit=10)
    expected = [f for f in recorded.json()["facets"] if f["field"] == name][0]["counts"]
    assert buckets == [(c["name"], c["count"]) for c in expected]
    assert recorded.used
    sent = adapter.requests[0].url
    assert f"facet={field}" in sent and "limit=0" in sent


def test_count_of_everything():
    client, _, _ = make_client(load_cassette(RGBIF / "occ_count.yml"))
    assert client.count({"occurrenceStatus": "PRESENT"}) == 3509696929
    assert client.count({"occurrenceStatus": "PRESENT", "year": "2000,2011", "taxonKey": 212}) == 239462287


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"taxonKey": 3189815, "continent": "asia,oceania"},
            "Cannot parse asia,oceania into a known Continent",
        ),
        ({"decimalLatitude": 334}, "334 is not valid value, latitude must be between -90 and 90."),
    ],
)
def test_400_text_bodies_become_bad_request(params, message):
    client, sleeps, adapter = make_client(
        load_cassette(RGBIF / "occ_search_fails_well.yml"), ignore={"limit"}
    )
    with pytest.raises(GbifBadRequest) as err:
        client.search_page({"occurrenceStatus": "PRESENT", **params}, limit=500)
    assert err.value.status == 400
    assert err.value.message == message
    assert message in str(err.value)
    assert "https://api.gbif.org/v1/occurrence/search?" in str(err.value)
    assert sleeps == [] and len(adapter.requests) == 1, "400 is not retried"


def test_bad_wkt_message_is_gbifs():
    interactions = load_cassette(RGBIF / "occ_search_geometry_errors.yml")
    client, _, _ = make_client(interactions, ignore={"limit"})
    for interaction in interactions:
        params, _, _ = search_params(interaction)
        with pytest.raises(GbifBadRequest) as err:
            client.search_page(params)
        assert err.value.message.startswith("Cannot parse simple WKT: POLYGON((30.1 10.1,40 40")
        assert err.value.message == interaction.text


def test_429_retry_is_logged_and_honours_retry_after(caplog):
    interactions = load_cassette(RGBIF / "occ_data_occurrenceId.yml")
    client, sleeps, _ = make_client(interactions)
    params = {"occurrenceStatus": "PRESENT", "taxonKey": 212, "occurrenceId": 1}
    with caplog.at_level(logging.WARNING, logger="gbifdl_assets.gbif"):
        page = client.search_page(params, limit=2)
    assert page["count"] == 49
    assert sleeps == [3.0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1 and "429" in warnings[0].getMessage() and "retry 1/5" in warnings[0].getMessage()
    )


def test_429_persisting_becomes_rate_limited():
    recorded_429 = next(i for i in load_cassette(RGBIF / "gbif_get_wait.yml") if i.status == 429)
    copies = [
        Interaction(recorded_429.method, recorded_429.uri, None, 429, recorded_429.headers, recorded_429.body)
        for _ in range(3)
    ]
    session, _ = replay_session(copies)
    sleeps: list[float] = []
    client = GbifClient(session=session, sleep=sleeps.append, max_retries=2, backoff_max=10)
    params, _, _ = search_params(recorded_429)
    with pytest.raises(GbifRateLimited) as err:
        client.count(params)
    assert sleeps == [10.0, 10.0], "Retry-After 31 is capped by backoff_max"
    assert err.value.status == 429
    assert "To download GBIF occurrence data in bulk" in err.value.message
