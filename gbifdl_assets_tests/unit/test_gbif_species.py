"""Species endpoints against recorded GBIF answers: name matching (v1 and v2), lookup, usages."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from gbifdl_assets.gbif.client import BACKBONE_DATASET_KEY, GbifClient, NameMatch
from gbifdl_assets.gbif.errors import GbifNotFound
from gbifdl_assets_tests.unit.cassettes import PYGBIF, RGBIF, Interaction, load_cassette, replay_session


def client_for(interactions, **kwargs) -> tuple[GbifClient, object]:
    session, adapter = replay_session(interactions, **kwargs)
    return GbifClient(session=session, sleep=lambda s: None), adapter


# ----------------------------------------------------------------------------- v1 match
def test_v1_exact_match():
    client, adapter = client_for(load_cassette(PYGBIF / "test_name_backbone.yaml"), ignore={"limit"})
    m = client.match_name("Helianthus annuus")
    assert m == NameMatch(
        query="Helianthus annuus",
        usage_key=9206251,
        scientific_name="Helianthus annuus L.",
        canonical_name="Helianthus annuus",
        rank="SPECIES",
        status="ACCEPTED",
        match_type="EXACT",
        confidence=99,
        synonym=False,
        accepted_key=9206251,
        species_key=9206251,
        kingdom="Plantae",
        raw={},
    )
    assert m.matched and m.raw["genusKey"] == 3119134
    assert adapter.unused == []


def test_v1_none_has_no_usage_key():
    client, _ = client_for(
        load_cassette(PYGBIF / "test_name_backbone_multiple_matches.yaml"), ignore={"limit"}
    )
    m = client.match_name("Aso")
    assert (m.usage_key, m.accepted_key, m.species_key) == (None, None, None)
    assert m.match_type == "NONE" and m.confidence == 100 and not m.matched and not m.synonym


def test_v1_synonym_uses_accepted_usage_key():
    raw = {
        "usageKey": 3329049,
        "acceptedUsageKey": 8168319,
        "scientificName": "Amanita muscaria (L.) Hook.",
        "rank": "SPECIES",
        "status": "SYNONYM",
        "confidence": 97,
        "matchType": "EXACT",
        "speciesKey": 8168319,
        "synonym": True,
        "kingdom": "Fungi",
    }
    m = NameMatch.from_v1("Amanita muscaria", raw)
    assert m.synonym and m.usage_key == 3329049 and m.accepted_key == 8168319 and m.species_key == 8168319


# ----------------------------------------------------------------------------- v2 match
# (usage_key, match_type, confidence, synonym, accepted_key, species_key, kingdom, rank) per interaction
V2_EXPECTED = [
    (9206251, "EXACT", 99, False, 9206251, 9206251, "Plantae", "SPECIES"),
    (9206251, "EXACT", 99, False, 9206251, 9206251, "Plantae", "SPECIES"),
    (None, "NONE", 100, False, None, None, None, None),
    (3234109, "HIGHERRANK", 96, True, 7763613, None, "Plantae", "GENUS"),
    (None, "NONE", 99, False, None, None, None, None),
    (3234109, "HIGHERRANK", 96, True, 7763613, None, "Plantae", "GENUS"),
    (None, "NONE", 99, False, None, None, None, None),
    ("V2", "HIGHERRANK", 94, False, "V2", None, "Animalia", "CLASS"),  # not the backbone: keys stay str
    ("V2", "EXACT", 100, False, "V2", None, "Animalia", "CLASS"),  # usageKey given: names ignored
    (7349050, "EXACT", 100, False, 7349050, 7349050, "Animalia", "SPECIES"),
]


def test_every_v2_match_interaction():
    interactions = load_cassette(RGBIF / "name_backbone.yml")
    assert len(interactions) == len(V2_EXPECTED) == 10
    client, adapter = client_for(interactions, ignore={"verbose"})
    for interaction, expected in zip(interactions, V2_EXPECTED, strict=True):
        params = {k: v[0] for k, v in parse_qs(urlsplit(interaction.uri).query).items()}
        params.pop("verbose", None)
        if set(params) <= {"scientificName", "taxonRank", "kingdom", "strict", "checklistKey"}:
            m = client.match_name_v2(
                params["scientificName"],
                rank=params.get("taxonRank"),
                kingdom=params.get("kingdom"),
                strict=params.get("strict") == "TRUE",
                checklist_key=params.get("checklistKey"),
            )
        else:  # parameters beyond the convenience method: same parser on the raw answer
            m = NameMatch.from_v2("q", client.get_json(client.v2_base_url + "/species/match", params))
        got = (
            m.usage_key,
            m.match_type,
            m.confidence,
            m.synonym,
            m.accepted_key,
            m.species_key,
            m.kingdom,
            m.rank,
        )
        assert got == expected, interaction.uri
        assert interaction.used
    assert adapter.unused == []
    assert all(urlsplit(r.url).path == "/v2/species/match" for r in adapter.requests)


def test_v2_synonym_carries_accepted_usage():
    client, _ = client_for(load_cassette(RGBIF / "name_backbone_acceptedUsageKey.yml"))
    m = client.match_name_v2("Anastrophyllum minutum")
    assert m.usage_key == 4277323 and m.status == "SYNONYM" and m.synonym
    assert m.accepted_key == 2689422 and m.species_key == 2689422
    assert m.canonical_name == "Anastrophyllum minutum" and m.match_type == "EXACT" and m.confidence == 98


def test_v2_base_url_is_derived_from_v1():
    assert GbifClient("http://127.0.0.1:8080/v1/").v2_base_url == "http://127.0.0.1:8080/v2"


# ----------------------------------------------------------------------------- lookup, usages
def test_species_search_pages_by_1000():
    interactions = load_cassette(RGBIF / "name_lookup_paging3.yml")
    client, adapter = client_for(interactions, ignore={"limit"})
    results = list(client.iter_species_search({"datasetKey": "a5224e5b-6379-4d33-a29d-14b56015893d"}))
    assert len(results) == 1051 == len({r["key"] for r in results})
    assert [parse_qs(urlsplit(r.url).query)["limit"] for r in adapter.requests] == [["1000"], ["1000"]]
    assert adapter.unused == []


@pytest.mark.parametrize(
    ("params", "n"),
    [({"q": "Cnaemidophorus", "rank": "genus"}, 30)],
)
def test_species_search_single_page(params, n):
    client, _ = client_for(load_cassette(RGBIF / "name_lookup.yml"), ignore={"limit"})
    results = list(client.iter_species_search(params))
    assert len(results) == n and {r["rank"] for r in results} == {"GENUS"}


def test_species_search_no_results():
    client, _ = client_for(load_cassette(RGBIF / "name_lookup_no_results.yml"), ignore={"limit"})
    params = {
        "q": "Zwartbuikrotgans",
        "higherTaxonKey": 162310263,
        "datasetKey": "4dd32523-a3a3-43b7-84df-4cda02f15cf7",
    }
    assert list(client.iter_species_search(params)) == []


def test_pygbif_lookup_pages_parse():
    for name, count in [("test_name_lookup_paging.yaml", 3752), ("test_name_lookup_rank.yaml", 620)]:
        interaction = load_cassette(PYGBIF / name)[0]
        client, _ = client_for([interaction])
        page = client.get_json("/species/search", interaction.params)
        assert page["count"] == count and page["results"]


@pytest.mark.parametrize(("key", "n"), [(5231190, 15), (5135790, 12)])
def test_children(key, n):
    client, _ = client_for(load_cassette(RGBIF / "name_usage_data_children.yml"), ignore={"limit"})
    children = list(client.iter_children(key))
    assert len(children) == n
    assert all(c["parentKey"] == key for c in children)


@pytest.mark.parametrize(("key", "n"), [(5231190, 1), (5135790, 2)])
def test_synonyms(key, n):
    client, _ = client_for(load_cassette(RGBIF / "name_usage_data_synonyms.yml"), ignore={"limit"})
    synonyms = list(client.iter_synonyms(key))
    assert len(synonyms) == n and {s["acceptedKey"] for s in synonyms} == {key}


def test_parents():
    client, _ = client_for(load_cassette(RGBIF / "name_usage_data_parents.yml"), ignore={"limit"})
    parents = client.get_parents(5231190)
    assert [p["rank"] for p in parents] == ["KINGDOM", "PHYLUM", "CLASS", "ORDER", "FAMILY", "GENUS"]
    assert parents[0]["key"] == 1 and parents[-1]["key"] == 2492321


def test_get_species():
    client, _ = client_for(load_cassette(RGBIF / "name_usage.yml"), ignore={"limit"})
    usage = client.get_species(1)
    assert usage["key"] == 1 and usage["scientificName"] == "Animalia"


def test_accepted_key_follows_synonyms():
    synonym = load_cassette(RGBIF / "name_usage_data_synonyms.yml")[0].json()["results"][0]
    accepted = load_cassette(RGBIF / "name_usage.yml")[0].json()  # Animalia, accepted
    interactions = [
        Interaction(
            "GET", "https://api.gbif.org/v1/species/8933000", None, 200, {}, json.dumps(synonym).encode()
        ),
        Interaction("GET", "https://api.gbif.org/v1/species/1", None, 200, {}, json.dumps(accepted).encode()),
    ]
    client, _ = client_for(interactions)
    assert client.accepted_key(8933000) == 5231190  # HOMOTYPIC_SYNONYM → acceptedKey
    assert client.accepted_key(1) == 1


def test_404_json_becomes_not_found():
    client, adapter = client_for(load_cassette(RGBIF / "name_usage_fails_well.yml"), ignore={"limit"})
    with pytest.raises(GbifNotFound) as err:
        client.get_json("/species/5231190/verbatim")
    assert err.value.status == 404
    assert err.value.message == "Entity not found for uri: /species/5231190/verbatim"
    assert "https://api.gbif.org/v1/species/5231190/verbatim" in str(err.value)
    assert len(adapter.requests) == 1


def test_404_text_becomes_not_found():
    client, _ = client_for(load_cassette(RGBIF / "enumeration_fails_well.yml"))
    with pytest.raises(GbifNotFound, match="Entity not found for uri: /enumeration/basic/asdfadsf"):
        client.get_json("/enumeration/basic/asdfadsf")


# ----------------------------------------------------------------------------- descendants
def _species_page(offset: int, results: list[dict], end: bool, count: int) -> bytes:
    return json.dumps(
        {"offset": offset, "limit": 1000, "endOfRecords": end, "count": count, "results": results}
    ).encode()


def test_iter_descendants_queries_accepted_species_in_the_backbone():
    def usage(key, rank="SPECIES", status="ACCEPTED"):
        return {"key": key, "rank": rank, "taxonomicStatus": status, "scientificName": f"Sp {key}"}

    page1 = [usage(k) for k in range(1000, 2000)]
    page2 = [usage(k) for k in range(2000, 2100)] + [
        usage(5, "GENUS"),
        usage(9, status="SYNONYM"),
        usage(1000),
    ]
    base = "https://api.gbif.org/v1/species/search?highertaxonKey=797&rank=SPECIES&status=ACCEPTED"
    ds = f"&datasetKey={BACKBONE_DATASET_KEY}"
    interactions = [
        Interaction(
            "GET", base + ds + "&offset=0&limit=1000", None, 200, {}, _species_page(0, page1, False, 1103)
        ),
        Interaction(
            "GET",
            base + ds + "&offset=1000&limit=1000",
            None,
            200,
            {},
            _species_page(1000, page2, True, 1103),
        ),
    ]
    client, adapter = client_for(interactions)
    keys = [u["key"] for u in client.iter_descendants(797)]
    assert keys == list(range(1000, 2100)), "only accepted species, each once"
    assert adapter.unused == []

    # a server with a single taxonomy (the sandbox) can drop the checklist restriction
    interactions = [
        Interaction("GET", base + "&offset=0&limit=1000", None, 200, {}, _species_page(0, [], True, 0))
    ]
    session, adapter = replay_session(interactions)
    client = GbifClient(session=session, checklist_dataset_key=None)
    assert list(client.iter_descendants(797, rank="species")) == []
    assert "datasetKey" not in adapter.requests[0].url
