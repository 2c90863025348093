"""The registry client against the sandbox over HTTP: values, 404, 429 then ok, 5xx, refused connections;
and ``gbifdl dwca ingest --api-url`` filling a real-layout DWCA's publishers from it."""

from __future__ import annotations

import argparse
import json
import socket
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
import requests

from gbifdl_assets.gbif.registry import REGISTRY_COLUMNS, RegistryClient, lookup_registry, with_registry_data
from gbifdl_assets.occurrences.ingest_cli import add_dwca_parser
from gbifdl_assets.occurrences.snapshots import read_snapshot
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


# ------------------------------------------------------------------------ gbifdl dwca ingest
def _sandbox_download(sb, tmp_path: Path) -> Path:
    r = requests.post(
        sb.api_url + "/occurrence/download/request",
        json={
            "creator": "sandbox",
            "format": "DWCA",
            "predicate": {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"},
        },
        auth=("sandbox", "sandbox"),
    )
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(f"{sb.api_url}/occurrence/download/{r.text}").json()
        if status["status"] == "SUCCEEDED":
            path = tmp_path / f"{r.text}.zip"
            path.write_bytes(requests.get(status["downloadLink"]).content)
            return path
        time.sleep(0.1)
    raise AssertionError(f"sandbox download {r.text} did not succeed")


def test_dwca_ingest_with_api_url_gives_every_row_its_publisher(sb, tmp_path: Path, capsys) -> None:
    """Issue 16's "done when": a DWCA without publishingOrgKey, ingested with --api-url pointing at
    the sandbox, gives every media row its dataset's publishingOrgKey and title."""
    archive = _sandbox_download(sb, tmp_path)
    with zipfile.ZipFile(archive) as zf:
        header = zf.read("occurrence.txt").split(b"\n", 1)[0].decode().split("\t")
    assert "publishingOrgKey" not in header and "datasetKey" in header  # as GBIF writes it
    parser = argparse.ArgumentParser(prog="gbifdl")
    add_dwca_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out"
    args = parser.parse_args(["dwca", "ingest", str(archive), str(out), "--api-url", sb.api_url])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["registry"]["empty"] == {} and "fix" not in summary["registry"]
    assert set(summary["registry"]["datasets"]) == {"ok"}
    table = read_snapshot(LocalStorage(out), summary["training_set"])
    assert table.num_rows == summary["media"] > 100
    for name in REGISTRY_COLUMNS:
        assert table.column(name).null_count == 0, name
    datasets = {
        key: requests.get(f"{sb.api_url}/dataset/{key}").json()
        for key in set(table.column("datasetKey").to_pylist())
    }
    for row in table.select(["datasetKey", "publishingOrgKey", "datasetTitle"]).to_pylist():
        answer = datasets[row["datasetKey"]]
        assert row["publishingOrgKey"] == answer["publishingOrganizationKey"]
        assert row["datasetTitle"] == answer["title"]
