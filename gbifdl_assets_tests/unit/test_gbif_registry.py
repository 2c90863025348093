"""The registry client, its cache and the enrichment, without a network.

GBIF's answers are scripted as :class:`Interaction` objects replayed through ``requests`` (the
429 is the one GBIF really sent, taken from rgbif's ``gbif_get_wait.yml``); the HTTP behaviour
against a running server is in integration/test_registry_sandbox.py.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from requests.adapters import BaseAdapter

from gbifdl_assets.gbif.registry import (
    DATASET_SCHEMA,
    DATASETS_KEY,
    ORGANIZATION_SCHEMA,
    ORGANIZATIONS_KEY,
    REGISTRY_COLUMNS,
    RegistryClient,
    enrich_with_registry,
    lookup_registry,
    with_registry_data,
)
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.cassettes import RGBIF, Interaction, load_cassette, replay_session

API = "https://api.gbif.org/v1"
DS1, DS2, DS3 = (
    "50c9509d-22c7-4a22-a47d-8c48425ef4a7",
    "8138eb72-f762-11e1-a439-00145eb45e9a",
    "4bfac3ea-8763-4f4b-a71a-76a6f5f243d3",
)
ORG1, ORG2 = "28eb1a3f-1c15-4a95-931a-4af90ecb574d", "7ce8aef0-9e92-11dc-8738-b8a03c50a862"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def dataset(key: str, org: str, title: str) -> dict:
    return {
        "key": key,
        "publishingOrganizationKey": org,
        "doi": f"10.15468/{key[:6]}",
        "type": "OCCURRENCE",
        "title": title,
        "license": "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
    }


def organization(key: str, title: str, country: str) -> dict:
    return {"key": key, "title": title, "country": country, "endorsementApproved": True}


def ok(path: str, body: dict) -> Interaction:
    return Interaction(
        "GET", f"{API}{path}", None, 200, {"content-type": "application/json"}, json.dumps(body).encode()
    )


def status(path: str, code: int, body: str = "", headers: dict | None = None) -> Interaction:
    return Interaction(
        "GET", f"{API}{path}", None, code, headers or {"content-type": "text/plain"}, body.encode()
    )


def recorded_429(path: str) -> Interaction:
    """The 429 GBIF sent (retry-after 31, JSON array body), re-aimed at ``path``."""
    real = next(i for i in load_cassette(RGBIF / "gbif_get_wait.yml") if i.status == 429)
    assert real.headers["retry-after"] == "31"
    return Interaction("GET", f"{API}{path}", None, 429, real.headers, real.body)


def not_found(path: str) -> Interaction:
    body = {
        "timestamp": "2026-12-07T12:00:00.000+00:00",
        "status": 404,
        "error": "",
        "message": f"Entity not found for uri: {path}",
    }
    return Interaction(
        "GET", f"{API}{path}", None, 404, {"content-type": "application/json"}, json.dumps(body).encode()
    )


def client_for(interactions, **kwargs) -> tuple[RegistryClient, object, list[float]]:
    session, adapter = replay_session(interactions)
    slept: list[float] = []
    clock = {"t": 0.0}

    def sleep(s: float) -> None:
        slept.append(s)
        clock["t"] += s

    client = RegistryClient(API, session=session, sleep=sleep, clock=lambda: clock["t"], **kwargs)
    return client, adapter, slept


def good() -> list[Interaction]:
    """Fresh answers for DS1, DS2 and their publishers (replay marks interactions used)."""
    return [
        ok(f"/dataset/{DS1}", dataset(DS1, ORG1, "iNaturalist research-grade observations")),
        ok(f"/dataset/{DS2}", dataset(DS2, ORG2, "RBINS collections")),
        ok(f"/organization/{ORG1}", organization(ORG1, "iNaturalist.org", "US")),
        ok(f"/organization/{ORG2}", organization(ORG2, "Royal Belgian Institute of Natural Sciences", "BE")),
    ]


# ---------------------------------------------------------------------------------- the client
def test_one_request_per_distinct_key_and_every_outcome_counted():
    client, adapter, _ = client_for([*good(), not_found(f"/dataset/{DS3}")])
    keys = pa.chunked_array([[DS1, DS2, DS1, None], [DS3, DS1, "not-a-uuid"]])
    data = lookup_registry(keys, client=client, now=NOW)
    assert adapter.unused == [] and len(adapter.requests) == 5  # 3 datasets + 2 organizations
    assert data.report.datasets == {"ok": 2, "not_found": 1, "invalid_key": 1}
    assert data.report.organizations == {"ok": 2}
    assert data.report.requests == 5 and data.report.missing() == {"not_found": 1, "invalid_key": 1}
    assert data.datasets.schema.equals(DATASET_SCHEMA) and data.organizations.schema.equals(
        ORGANIZATION_SCHEMA
    )
    rows = {r["datasetKey"]: r for r in data.datasets.to_pylist()}
    assert rows[DS1]["publishingOrgKey"] == ORG1 and rows[DS1]["datasetDOI"] == "10.15468/50c950"
    assert rows[DS3]["outcome"] == "not_found" and rows[DS3]["publishingOrgKey"] is None
    assert "Entity not found for uri" in rows[DS3]["message"]
    assert "2 ok, 1 not_found" in data.report.summary()


def test_429_is_waited_out_with_retry_after_and_then_answered():
    client, adapter, slept = client_for([recorded_429(f"/dataset/{DS1}"), *good()[:1], *good()[2:3]])
    data = lookup_registry([DS1], client=client, now=NOW)
    assert data.report.datasets == {"ok": 1} and data.report.organizations == {"ok": 1}
    assert slept == [30.0]  # GBIF's retry-after 31, capped at the client's backoff_max of 30 s
    assert adapter.unused == []


def test_a_retry_after_pauses_every_worker():
    clock = {"t": 0.0}
    lock = threading.Lock()
    slept: list[float] = []

    def sleep(s: float) -> None:
        with lock:
            slept.append(s)
            clock["t"] += s

    client = RegistryClient(API, sleep=sleep, clock=lambda: clock["t"])
    gate = client.http.sleep  # what GbifHttp calls before a retry
    gate(10.0)
    assert slept == [10.0]
    clock["t"] = 4.0  # another worker, 6 s before the pause ends, waits too
    client.fetch_dataset("not-a-uuid")  # an invalid key is answered without waiting or a request
    assert slept == [10.0]
    session, adapter = replay_session([good()[0]])
    client.http.session = session
    assert client.fetch_dataset(DS1).outcome == "ok"
    assert slept == [10.0, 6.0]


def test_rate_limited_5xx_and_unreachable_keys_keep_nulls_and_are_counted():
    throttled = [recorded_429(f"/dataset/{DS1}") for _ in range(3)]
    broken = [status(f"/dataset/{DS2}", 503, "Service Unavailable") for _ in range(3)]
    client, adapter, _ = client_for([*throttled, *broken], max_retries=2)
    data = lookup_registry([DS1, DS2], client=client, now=NOW)
    assert data.report.datasets == {"rate_limited": 1, "unavailable": 1}
    assert data.report.organizations == {}
    assert adapter.unused == []
    table = pa.table({"datasetKey": [DS1, DS2]})
    out = enrich_with_registry(table, data.datasets, data.organizations)
    assert out.column_names == ["datasetKey", *REGISTRY_COLUMNS]
    assert all(v is None for c in REGISTRY_COLUMNS for v in out.column(c).to_pylist())


class RefusingAdapter(BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def send(self, request, **kwargs):
        self.calls += 1
        raise requests.ConnectionError("[Errno 111] Connection refused")

    def close(self) -> None:
        pass


def test_an_unreachable_registry_is_given_up_after_a_few_keys():
    adapter = RefusingAdapter()
    session = requests.Session()
    session.mount("https://", adapter)
    keys = [f"00000000-0000-4000-8000-{i:012d}" for i in range(40)]
    client = RegistryClient(
        API, session=session, sleep=lambda s: None, max_retries=1, give_up_after=3, workers=1
    )
    data = lookup_registry(keys, client=client, now=NOW)
    assert data.report.datasets == {"unreachable": 40}
    assert adapter.calls == 3 * 2  # three keys, each tried twice; the other 37 never sent
    messages = data.datasets.column("message").to_pylist()
    assert "Connection refused" in messages[0] and messages[-1].startswith(
        "not requested: the registry failed 3 times"
    )


def test_an_answer_that_is_not_registry_json_is_unavailable():
    html = Interaction(
        "GET", f"{API}/dataset/{DS1}", None, 200, {"content-type": "text/html"}, b"<html>maintenance</html>"
    )
    client, _, _ = client_for([html])
    fetched = client.fetch_dataset(DS1)
    assert fetched.outcome == "unavailable" and "expected JSON" in fetched.message


# ----------------------------------------------------------------------------------- the cache
def test_cache_is_used_while_fresh_and_refreshed_when_old(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    client, adapter, _ = client_for([*good(), not_found(f"/dataset/{DS3}")])
    lookup_registry([DS1, DS2, DS3], client=client, storage=storage, now=NOW)
    assert storage.exists(DATASETS_KEY) and storage.exists(ORGANIZATIONS_KEY)
    cached = storage.read_parquet(DATASETS_KEY)
    assert sorted(cached.column("datasetKey").to_pylist()) == sorted([DS1, DS2, DS3])  # not_found cached too

    # fresh: no request at all (the replay adapter has nothing left to answer)
    client2, adapter2, _ = client_for([])
    data = lookup_registry([DS1, DS2, DS3], client=client2, storage=storage, now=NOW + timedelta(days=29))
    assert data.report.requests == 0 and data.report.from_cache == 5
    assert data.report.datasets == {"ok": 2, "not_found": 1}

    # older than max_age: fetched again, the new answer replaces the old one
    renamed = ok(f"/dataset/{DS1}", dataset(DS1, ORG1, "iNaturalist research-grade observations (2027)"))
    client3, adapter3, _ = client_for([renamed, good()[2]])
    data = lookup_registry([DS1], client=client3, storage=storage, now=NOW + timedelta(days=31))
    assert adapter3.unused == [] and data.report.requests == 2
    assert data.datasets.column("datasetTitle").to_pylist() == [
        "iNaturalist research-grade observations (2027)"
    ]
    cached = {r["datasetKey"]: r for r in storage.read_parquet(DATASETS_KEY).to_pylist()}
    assert cached[DS1]["fetched_at"] == NOW + timedelta(days=31)
    assert cached[DS2]["fetched_at"] == NOW  # other entries kept as they were


def test_max_age_is_configurable(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    lookup_registry([DS1], client=client_for(good())[0], storage=storage, now=NOW)
    client, adapter, _ = client_for(good())
    lookup_registry(
        [DS1], client=client, storage=storage, now=NOW + timedelta(hours=2), max_age=timedelta(hours=1)
    )
    assert len(adapter.requests) == 2


def test_a_stale_entry_is_kept_when_its_refresh_fails_and_failures_are_not_cached(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    lookup_registry([DS1], client=client_for(good())[0], storage=storage, now=NOW)
    later = NOW + timedelta(days=40)
    failing = [status(f"/dataset/{DS1}", 503, "down"), status(f"/organization/{ORG1}", 503, "down")]
    client, _, _ = client_for(failing, max_retries=0)
    data = lookup_registry([DS1], client=client, storage=storage, now=later)
    assert data.report.stale == 2 and data.report.datasets == {"ok": 1}
    assert data.datasets.column("publishingOrgKey").to_pylist() == [ORG1]
    cached = storage.read_parquet(DATASETS_KEY).to_pylist()
    assert [r["fetched_at"] for r in cached] == [NOW]  # the failure did not overwrite the answer
    # a key never answered and failing now is not cached at all
    client, _, _ = client_for([status(f"/dataset/{DS2}", 503, "down")], max_retries=0)
    lookup_registry([DS2], client=client, storage=storage, now=later)
    assert DS2 not in storage.read_parquet(DATASETS_KEY).column("datasetKey").to_pylist()


def test_offline_uses_the_cache_and_says_why_the_rest_is_empty(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    lookup_registry([DS1], client=client_for(good())[0], storage=storage, now=NOW)
    table = pa.table({"datasetKey": [DS1, DS2]})
    out, report = with_registry_data(table, client=None, storage=storage, now=NOW)
    assert report.datasets == {"ok": 1, "offline": 1} and report.requests == 0
    assert out.column("publishingOrgKey").to_pylist() == [ORG1, None]
    assert out.column("publishingCountry").to_pylist() == ["US", None]
    gaps = report.gaps(out)
    assert set(gaps) == set(REGISTRY_COLUMNS)
    assert gaps["datasetTitle"] == "1 of 2 rows empty (registry: 1 offline)"
    assert report.gaps(out.filter(pa.array([True, False]))) == {}


def test_an_unreadable_cache_is_reported_and_refetched(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    storage.write_bytes(DATASETS_KEY, b"this is not parquet")
    client, adapter, _ = client_for(good()[:1] + good()[2:3])
    data = lookup_registry([DS1], client=client, storage=storage, datasets_key=DATASETS_KEY, now=NOW)
    assert data.report.datasets == {"ok": 1} and adapter.unused == []
    assert any("not read" in p for p in data.report.problems)
    assert storage.read_parquet(DATASETS_KEY).num_rows == 1  # rewritten, readable again


def test_cache_keys_are_parameters(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    lookup_registry(
        [DS1],
        client=client_for(good())[0],
        storage=storage,
        datasets_key="reg/d.parquet",
        organizations_key="reg/o.parquet",
        now=NOW,
    )
    assert sorted(storage.list("")) == ["reg/d.parquet", "reg/o.parquet"]


# ------------------------------------------------------------------------------- the enrichment
def registry_tables():
    datasets = pa.table(
        {
            "datasetKey": [DS1, DS2, DS3],
            "publishingOrgKey": [ORG1, ORG2, None],
            "datasetTitle": ["Obs", "RBINS", None],
            "datasetDOI": ["10.15468/ab3s5x", "10.15468/qxxwhk", None],
            "datasetLicense": ["http://creativecommons.org/licenses/by-nc/4.0/legalcode"] * 2 + [None],
        }
    )
    organizations = pa.table(
        {
            "publishingOrgKey": [ORG1, ORG2],
            "publishingOrganizationTitle": ["iNaturalist.org", "RBINS"],
            "publishingCountry": ["US", "BE"],
        }
    )
    return datasets, organizations


def test_enrichment_fills_nulls_keeps_values_and_adds_columns():
    datasets, organizations = registry_tables()
    table = pa.table(
        {
            "gbifID": [1, 2, 3, 4, 5],
            "datasetKey": [DS1, DS2, DS1, "ffffffff-0000-4000-8000-000000000000", None],
            # a search-API row already knows its publisher; the registry must not overwrite it
            "publishingOrgKey": [None, ORG1, None, None, None],
        }
    )
    out = enrich_with_registry(table, datasets, organizations)
    assert out.column_names == ["gbifID", "datasetKey", "publishingOrgKey", *REGISTRY_COLUMNS[1:]]
    assert out.column("gbifID").to_pylist() == [1, 2, 3, 4, 5]
    assert out.column("publishingOrgKey").to_pylist() == [ORG1, ORG1, ORG1, None, None]
    assert out.column("datasetTitle").to_pylist() == ["Obs", "RBINS", "Obs", None, None]
    assert out.column("datasetDOI").to_pylist() == [
        "10.15468/ab3s5x",
        "10.15468/qxxwhk",
        "10.15468/ab3s5x",
        None,
        None,
    ]
    # the organization follows the row's final publisher (row 2: its own ORG1, not the dataset's ORG2)
    assert out.column("publishingOrganizationTitle").to_pylist() == ["iNaturalist.org"] * 3 + [None, None]
    assert out.column("publishingCountry").to_pylist() == ["US", "US", "US", None, None]


def test_enrichment_keeps_an_existing_publishing_country_and_handles_chunked_dictionary_keys():
    datasets, organizations = registry_tables()
    keys = pa.chunked_array([pa.array([DS2, DS1]).dictionary_encode(), pa.array([DS2]).dictionary_encode()])
    table = pa.table({"datasetKey": keys, "publishingCountry": pa.chunked_array([["NL", None], [None]])})
    out = enrich_with_registry(table, datasets, organizations)
    assert out.column("publishingCountry").to_pylist() == ["NL", "US", "BE"]
    assert out.column("publishingOrgKey").to_pylist() == [ORG2, ORG1, ORG2]
    assert out.num_rows == 3


def test_enrichment_with_empty_registry_tables_or_no_dataset_key():
    table = pa.table({"gbifID": [1, 2], "datasetKey": [DS1, DS2]})
    out = enrich_with_registry(table, DATASET_SCHEMA.empty_table(), ORGANIZATION_SCHEMA.empty_table())
    assert out.column_names == ["gbifID", "datasetKey", *REGISTRY_COLUMNS]
    assert out.column("publishingOrgKey").null_count == 2
    bare = enrich_with_registry(pa.table({"gbifID": [1]}), *registry_tables())
    assert bare.column_names == ["gbifID", *REGISTRY_COLUMNS] and bare.column("datasetTitle").null_count == 1
    empty = enrich_with_registry(pa.table({"datasetKey": pa.array([], pa.string())}), *registry_tables())
    assert empty.num_rows == 0 and empty.column_names == ["datasetKey", *REGISTRY_COLUMNS]


def test_with_registry_data_end_to_end():
    client, adapter, _ = client_for(good())
    table = pa.table({"datasetKey": [DS2, DS1, DS2]})
    out, report = with_registry_data(table, client=client, now=NOW)
    assert report.datasets == {"ok": 2} and adapter.unused == []
    assert out.column("publishingOrganizationTitle").to_pylist() == [
        "Royal Belgian Institute of Natural Sciences",
        "iNaturalist.org",
        "Royal Belgian Institute of Natural Sciences",
    ]
    assert out.column("datasetLicense").to_pylist()[0].endswith("/by-nc/4.0/legalcode")


@pytest.mark.parametrize("workers", [1, 4])
def test_many_keys_in_parallel_give_the_same_answer(workers):
    keys = [f"00000000-0000-4000-8000-{i:012d}" for i in range(30)]
    inter = [ok(f"/dataset/{k}", dataset(k, ORG1, f"Dataset {i}")) for i, k in enumerate(keys)] + [good()[2]]
    client, adapter, _ = client_for(inter, workers=workers)
    data = lookup_registry(reversed(keys), client=client, now=NOW)
    assert adapter.unused == [] and data.report.datasets == {"ok": 30}
    assert data.datasets.column("datasetKey").to_pylist() == keys  # sorted, whatever the finishing order
    assert data.datasets.column("datasetTitle").to_pylist() == [f"Dataset {i}" for i in range(30)]
