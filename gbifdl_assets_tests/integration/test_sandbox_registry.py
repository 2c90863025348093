"""The sandbox's registry endpoints agree with the occurrences it serves and with GBIF's answers."""

from __future__ import annotations

import pytest
import requests

from gbifdl_assets.sandbox import SandboxConfig, start_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb():
    with start_sandbox(
        SandboxConfig(occurrences=3_000, species=60, download_seconds=(0.05, 0.05))
    ) as running:
        yield running


@pytest.fixture()
def http():
    with requests.Session() as s:
        yield s


def test_every_dataset_and_publisher_of_the_records_is_in_the_registry(sb, http):
    records = http.get(sb.api_url + "/occurrence/search", params={"limit": 300}).json()["results"]
    by_dataset = {r["datasetKey"]: r for r in records}
    assert len(by_dataset) > 5
    for key, rec in by_dataset.items():
        r = http.get(f"{sb.api_url}/dataset/{key}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        ds = r.json()
        assert ds["key"] == key and ds["type"] == "OCCURRENCE"
        assert ds["publishingOrganizationKey"] == rec["publishingOrgKey"]
        assert ds["installationKey"] == rec["installationKey"]
        assert ds["title"] == rec["datasetName"]
        assert ds["doi"].startswith("10.15468/") and len(ds["doi"]) == len("10.15468/") + 6
        assert ds["license"].startswith("http://creativecommons.org/") and ds["license"].endswith(
            "/legalcode"
        )
        assert f"https://doi.org/{ds['doi']}" in ds["citation"]["text"]
        org = http.get(f"{sb.api_url}/organization/{ds['publishingOrganizationKey']}").json()
        assert org["key"] == rec["publishingOrgKey"]
        assert org["country"] == rec["publishingCountry"]
        assert ds["citation"]["text"].startswith(org["title"])
        assert org["numPublishedDatasets"] >= 1


def test_unknown_keys_are_404_json_and_malformed_keys_400(sb, http):
    missing = "00000000-0000-4000-8000-000000000000"
    for path in (f"/dataset/{missing}", f"/organization/{missing}"):
        r = http.get(sb.api_url + path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["status"] == 404 and body["message"] == f"Entity not found for uri: {path}"
    r = http.get(sb.api_url + "/dataset/not-a-key")
    assert r.status_code == 400 and r.text == "Invalid UUID string: not-a-key"
    # an upper-case UUID names the same dataset, as GBIF parses UUIDs case-insensitively
    key = http.get(sb.api_url + "/occurrence/search", params={"limit": 1}).json()["results"][0]["datasetKey"]
    assert http.get(f"{sb.api_url}/dataset/{key.upper()}").json()["key"] == key


def test_download_dataset_listing_uses_the_registry_doi_and_citation(sb, http):
    pred = {"type": "equals", "key": "BASIS_OF_RECORD", "value": "HUMAN_OBSERVATION"}
    r = http.post(
        sb.api_url + "/occurrence/download/request",
        json={"creator": "sandbox", "format": "DWCA", "predicate": pred},
        auth=("sandbox", "sandbox"),
    )
    assert r.status_code == 201
    listing = http.get(f"{sb.api_url}/occurrence/download/{r.text}/datasets", params={"limit": 1000}).json()
    assert listing["results"]
    for item in listing["results"]:
        ds = http.get(f"{sb.api_url}/dataset/{item['datasetKey']}").json()
        assert item["datasetDOI"] == ds["doi"]
        assert item["datasetTitle"] == ds["title"]
        assert item["datasetCitation"] == ds["citation"]["text"]
