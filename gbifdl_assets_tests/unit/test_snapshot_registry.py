"""Every snapshot gets GBIF's registry data, whatever its source (issue 16), without a network.

The registry's answers are replayed (``test_gbif_registry``'s helpers); the same against the sandbox
over HTTP is in integration/test_snapshot_sources.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest

from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA
from gbifdl_assets.gbif.registry import REGISTRY_COLUMNS, RegistryClient
from gbifdl_assets.occurrences.snapshots import (
    read_snapshot,
    write_snapshot_from_dwca,
    write_snapshot_from_search,
)
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.cassettes import PYGBIF, is_search_page, load_cassette
from gbifdl_assets_tests.unit.test_gbif_registry import client_for, dataset, not_found, ok, organization

ARCHIVE = "rgbif_0000066-140928181241064_DWCA.zip"
#: the three datasets of the rgbif archive (210 media rows) and made-up publishers for them
DS_A, DS_B, DS_C = (
    "aae308f4-9f9c-4cdd-b4ef-c026f48be551",
    "861e6afe-f762-11e1-a439-00145eb45e9a",
    "cd6e21c8-9e8a-493a-8a76-fbf7862069e5",
)
ORG_A, ORG_B = "28eb1a3f-1c15-4a95-931a-4af90ecb574d", "7ce8aef0-9e92-11dc-8738-b8a03c50a862"


@pytest.fixture
def archive(fixtures_dir: Path) -> Path:
    return fixtures_dir / "archives" / ARCHIVE


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


def registry_answers(*, third: str = "ok"):
    answers = [
        ok(f"/dataset/{DS_A}", dataset(DS_A, ORG_A, "Beetles of A")),
        ok(f"/dataset/{DS_B}", dataset(DS_B, ORG_B, "Beetles of B")),
        ok(f"/organization/{ORG_A}", organization(ORG_A, "Publisher A", "US")),
        ok(f"/organization/{ORG_B}", organization(ORG_B, "Publisher B", "GB")),
    ]
    if third == "ok":
        answers.append(ok(f"/dataset/{DS_C}", dataset(DS_C, ORG_A, "Beetles of C")))
    else:
        answers.append(not_found(f"/dataset/{DS_C}"))
    return answers


def test_a_download_without_publishers_gets_them_from_the_registry(archive, storage):
    client, adapter, _ = client_for(registry_answers())
    info = write_snapshot_from_dwca(archive, storage, "beetles", registry=client)
    assert adapter.unused == [] and len(adapter.requests) == 5  # one request per distinct key
    table = read_snapshot(storage, "beetles")
    assert table.schema.equals(SNAPSHOT_SCHEMA) and table.num_rows == 210
    for name in REGISTRY_COLUMNS:
        assert table.column(name).null_count == 0, name
    titles = dict(zip(table["datasetKey"].to_pylist(), table["datasetTitle"].to_pylist(), strict=True))
    assert titles == {DS_A: "Beetles of A", DS_B: "Beetles of B", DS_C: "Beetles of C"}
    publishers = set(zip(table["datasetKey"].to_pylist(), table["publishingOrgKey"].to_pylist(), strict=True))
    assert publishers == {(DS_A, ORG_A), (DS_B, ORG_B), (DS_C, ORG_A)}
    # the archive's own publishingCountry wins over the organization's
    assert set(table["publishingCountry"].to_pylist()) == {"US", "GB"}
    assert info.counts["registry"] == {
        "datasets": {"ok": 3},
        "organizations": {"ok": 2},
        "rows_without_publisher": 0,
    }
    meta = json.loads(storage.read_bytes(info.meta_key))
    assert meta["registry"]["api"] == client.api_url and meta["registry"]["gaps"] == {}
    assert meta["registry"]["requests"] == 5 and meta["registry"]["cache_written"] is True
    assert info.registry == meta["registry"]
    assert meta["columns"] == SNAPSHOT_SCHEMA.names


def test_the_cache_serves_a_later_snapshot_offline(archive, storage):
    client, _, _ = client_for(registry_answers())
    first = write_snapshot_from_dwca(archive, storage, "beetles", registry=client)
    second = write_snapshot_from_dwca(archive, storage, "beetles")  # no client: offline
    assert second.counts["registry"] == first.counts["registry"]
    assert second.registry["from_cache"] == 5 and second.registry["requests"] == 0
    assert read_snapshot(storage, "beetles", second.snapshot_id).equals(
        read_snapshot(storage, "beetles", first.snapshot_id)
    )


def test_some_keys_unknown_to_the_registry_keep_nulls_and_are_counted(archive, storage):
    client, _, _ = client_for(registry_answers(third="not_found"))
    info = write_snapshot_from_dwca(archive, storage, "beetles", registry=client)
    table = read_snapshot(storage, "beetles")
    unknown = pc.equal(table["datasetKey"], DS_C)
    rows_c = pc.sum(unknown).as_py()
    assert 0 < rows_c < table.num_rows
    assert table.filter(unknown)["publishingOrgKey"].null_count == rows_c
    assert table.filter(pc.invert(unknown))["publishingOrgKey"].null_count == 0
    assert info.counts["registry"]["datasets"] == {"ok": 2, "not_found": 1}
    assert info.counts["registry"]["rows_without_publisher"] == rows_c
    assert info.registry["gaps"]["datasetTitle"] == f"{rows_c} of 210 rows empty (registry: 1 not_found)"


def test_an_unreachable_registry_still_gives_a_snapshot_with_nulls_counted(archive, storage):
    client = RegistryClient("http://127.0.0.1:9/v1", max_retries=0, give_up_after=1, timeout=(0.5, 0.5))
    info = write_snapshot_from_dwca(archive, storage, "beetles", registry=client)
    table = read_snapshot(storage, "beetles")
    assert table.num_rows == 210 and table["publishingOrgKey"].null_count == 210
    assert info.counts["registry"]["datasets"] == {"unreachable": 3}
    assert info.counts["registry"]["rows_without_publisher"] == 210
    assert info.registry["gaps"]["publishingOrgKey"] == "210 of 210 rows empty (registry: 3 unreachable)"
    assert info.registry["cache_written"] is False and not storage.exists("registry/datasets.parquet")


def test_search_records_keep_their_publisher_and_gain_the_titles(storage):
    pages = [i for i in load_cassette(PYGBIF / "test_search.yaml") if is_search_page(i)]
    records = [r for page in pages for r in page.json()["results"]]
    keys = sorted({r["datasetKey"] for r in records})
    other = "00000000-0000-4000-8000-000000000001"  # the registry says otherwise: the record wins
    answers = [ok(f"/dataset/{k}", dataset(k, other, f"title {k[:4]}")) for k in keys]
    answers.append(ok(f"/organization/{other}", organization(other, "Somebody else", "DK")))
    client, _, _ = client_for(answers)
    info = write_snapshot_from_search(iter(records), storage, "amanita", {"params": {}}, registry=client)
    table = read_snapshot(storage, "amanita")
    with_media = {r["gbifID"]: r for r in records}
    for gbif_id, publisher in zip(
        table["gbifID"].to_pylist(), table["publishingOrgKey"].to_pylist(), strict=True
    ):
        assert publisher == with_media[str(gbif_id)]["publishingOrgKey"] != other
    assert table["datasetTitle"].null_count == 0 and table["datasetDOI"].null_count == 0
    assert info.counts["registry"]["datasets"] == {"ok": len(set(table["datasetKey"].to_pylist()))}
