"""The registry client against the sandbox over HTTP: values, 404, 429 then ok, 5xx, refused connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow as pa
import pytest
import requests

from gbifdl_assets.gbif.registry import REGISTRY_COLUMNS, RegistryClient, lookup_registry, with_registry_data
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.storage import LocalStorage

pytestmark = pytest.mark.integration

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def sb():
    with start_sandbox(SandboxConfig(occurrences=3_000, species=60, retry_after=0)) as running:
        yield running


@pytest.fixture(scope="module")
def records(sb) -> list[dict]:
    return requests.get(sb.api_url + "/occurrence/search", params={"limit": 300}).json()["results"]


@pytest.fixture()
def faults(sb):
    def set_faults(**values):
        r = requests.post(sb.url + "/sandbox/faults", json={**values, "reset": True})
        assert r.status_code == 200, r.text
        return r.json()

    yield set_faults
    requests.delete(sb.url + "/sandbox/faults")


def injected(sb) -> dict:
    return requests.get(sb.url + "/sandbox/faults").json()["injected"]


def test_a_snapshot_without_publishers_gets_them_from_the_registry(sb, records, tmp_path: Path):
    table = pa.table(
        {
            "gbifID": [r["key"] for r in records] + [1],
            "datasetKey": [r["datasetKey"] for r in records] + [MISSING],
            "publishingOrgKey": pa.nulls(len(records) + 1, pa.string()),  # as from a real DWCA
        }
    )
    with RegistryClient(sb.api_url) as client:
        out, report = with_registry_data(table, client=client, storage=LocalStorage(tmp_path))
    distinct = {r["datasetKey"] for r in records}
    assert report.datasets == {"ok": len(distinct), "not_found": 1}
    assert report.organizations == {"ok": len({r["publishingOrgKey"] for r in records})}
    assert report.requests == len(distinct) + 1 + sum(report.organizations.values())
    assert out.column_names == ["gbifID", "datasetKey", *REGISTRY_COLUMNS]
    rows = out.to_pylist()
    for row, rec in zip(rows, records, strict=False):
        assert row["publishingOrgKey"] == rec["publishingOrgKey"]
        assert row["publishingCountry"] == rec["publishingCountry"]
        assert row["datasetTitle"] == rec["datasetName"]
        assert row["datasetDOI"].startswith("10.15468/") and row["publishingOrganizationTitle"]
    assert all(rows[-1][c] is None for c in REGISTRY_COLUMNS)


def test_429_then_ok_every_key_still_answered(sb, records, faults):
    faults(api_429_every=2, api_fault_path_prefix="/v1/dataset/")
    keys = sorted({r["datasetKey"] for r in records})
    # one worker, so the sequence is fixed: every second request is a 429, and its retry succeeds
    with RegistryClient(sb.api_url, workers=1) as client:
        data = lookup_registry(keys, client=client)
    assert data.report.datasets == {"ok": len(keys)}
    assert injected(sb)["429"] == len(keys) - 1  # the first key ok, each later one 429 then ok


def test_5xx_everywhere_gives_unavailable_and_stops_asking(sb, records, faults):
    faults(api_503_every=1, api_fault_path_prefix="/v1/dataset/")
    keys = sorted({r["datasetKey"] for r in records})
    assert len(keys) > 8
    with RegistryClient(sb.api_url, workers=1, max_retries=1, give_up_after=3) as client:
        data = lookup_registry(keys, client=client)
    assert data.report.datasets == {"unavailable": len(keys)} and data.report.organizations == {}
    assert injected(sb)["503"] == 3 * 2  # three keys, two attempts each; the rest was not requested
    assert data.datasets.column("publishingOrgKey").null_count == len(keys)


def test_connection_refused_gives_unreachable(records):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    keys = sorted({r["datasetKey"] for r in records})
    with RegistryClient(f"http://127.0.0.1:{port}/v1", max_retries=1, sleep=lambda s: None) as client:
        data = lookup_registry(keys, client=client)
    assert data.report.datasets == {"unreachable": len(keys)}
    assert "no response" in data.datasets.column("message")[0].as_py()
