"""Snapshot layout, atomic commit and the search-API path (on recorded GBIF responses)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA
from gbifdl_assets.occurrences.search_records import records_to_snapshot_table
from gbifdl_assets.occurrences.snapshots import (
    SnapshotNotFound,
    get_snapshot,
    latest_snapshot,
    list_snapshots,
    read_snapshot,
    write_snapshot_from_dwca,
    write_snapshot_from_search,
)
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.cassettes import PYGBIF, RGBIF, cassette_files, is_search_page, load_cassette

RGBIF_DWCA = "rgbif_0000066-140928181241064_DWCA.zip"
ID_RE = re.compile(r"^\d{8}T\d{9}Z-[0-9a-f]{12}$")
KEYS = [("gbifID", "ascending"), ("media_index", "ascending")]


def search_records(path: Path) -> list[dict]:
    return [r for i in load_cassette(path) if is_search_page(i) for r in i.json()["results"]]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


# ------------------------------------------------------------------------------------- layout
def test_dwca_snapshot_layout_and_metadata(fixtures_dir: Path, storage: LocalStorage) -> None:
    archive = fixtures_dir / "archives" / RGBIF_DWCA
    info = write_snapshot_from_dwca(
        archive, storage, "beetles", {"key": None, "doi": None, "totalRecords": 470}
    )
    assert ID_RE.match(info.snapshot_id)
    prefix = f"snapshots/beetles/{info.snapshot_id}"
    assert sorted(storage.list("snapshots/")) == [
        f"{prefix}/media.parquet",
        f"{prefix}/snapshot.json",
        "snapshots/beetles/latest",
    ]
    assert storage.read_bytes("snapshots/beetles/latest").decode().strip() == info.snapshot_id
    meta = json.loads(storage.read_bytes(f"{prefix}/snapshot.json"))
    assert meta["source"]["type"] == "download" and meta["source"]["key"] == "0000066-140928181241064"
    assert meta["source"]["totalRecords"] == 470 and meta["source"]["archive"] == RGBIF_DWCA
    counts = meta["counts"]
    assert (counts["occurrences"], counts["media_rows"], counts["media"]) == (470, 215, 210)
    assert counts["occurrences_without_media"] == 470 - counts["occurrences_with_media"]
    assert counts["skipped"]["no_url"] == 5 and counts["species"] > 0
    assert meta["bytes"] == storage.size(f"{prefix}/media.parquet")
    assert meta["files"]["media"]["sha256"].startswith(info.snapshot_id[-12:])
    assert meta["columns"] == SNAPSHOT_SCHEMA.names
    table = read_snapshot(storage, "beetles")
    assert table.schema.equals(SNAPSHOT_SCHEMA) and table.num_rows == 210


def test_latest_ignores_uncommitted_snapshots(fixtures_dir: Path, storage: LocalStorage) -> None:
    archive = fixtures_dir / "archives" / RGBIF_DWCA
    assert latest_snapshot(storage, "t") is None
    with pytest.raises(SnapshotNotFound, match="has no committed snapshot"):
        read_snapshot(storage, "t")
    first = write_snapshot_from_dwca(archive, storage, "t")
    second = write_snapshot_from_dwca(archive, storage, "t")
    assert second.snapshot_id > first.snapshot_id
    assert first.snapshot_id[-12:] == second.snapshot_id[-12:]  # same content, same hash
    assert latest_snapshot(storage, "t").snapshot_id == second.snapshot_id
    assert [s.snapshot_id for s in list_snapshots(storage, "t")] == [first.snapshot_id, second.snapshot_id]
    # a snapshot whose commit marker is missing does not exist, even if the pointer names it
    storage.delete(f"{second.prefix}/snapshot.json")
    assert latest_snapshot(storage, "t").snapshot_id == first.snapshot_id
    with pytest.raises(SnapshotNotFound):
        get_snapshot(storage, "t", second.snapshot_id)
    assert read_snapshot(storage, "t", first.snapshot_id, columns=["gbifID"]).num_rows == 210


def test_training_set_names_are_checked(storage: LocalStorage) -> None:
    with pytest.raises(ValueError, match="cannot name a snapshot folder"):
        write_snapshot_from_search([], storage, "../up")
    with pytest.raises(ValueError, match="cannot name a snapshot folder"):
        latest_snapshot(storage, "a/b")


# ------------------------------------------------------------------------------------- search
def test_search_records_pygbif_test_search(storage: LocalStorage) -> None:
    records = search_records(PYGBIF / "test_search.yaml")
    assert len(records) == 300
    table, report = records_to_snapshot_table(records)
    assert table.schema.equals(SNAPSHOT_SCHEMA)
    assert (report.occurrences, report.occurrences_with_media, report.media_rows) == (300, 287, 487)
    assert table.num_rows == 487 and report.skipped_counts()["no_url"] == 0
    row = table.slice(0, 1).to_pylist()[0]
    first = records[0]
    assert row["gbifID"] == int(first["gbifID"]) == first["key"]
    assert row["license"] in ("CC_BY_4_0", "CC_BY_NC_4_0", "CC0_1_0")
    assert row["identifier"] == first["media"][0]["identifier"]
    # the synonym in this response: taxonKey 3329049 is accepted as 8168319
    assert set(table.column("taxonKey").to_pylist()) >= {3329049}
    assert set(table.column("acceptedTaxonKey").to_pylist()) == {8168319}
    info = write_snapshot_from_search(iter(records), storage, "amanita", {"params": {"taxonKey": 3329049}})
    assert info.source["type"] == "search" and info.source["params"] == {"taxonKey": 3329049}
    assert "date" in info.source
    assert info.counts["media"] == 487 and info.counts["occurrences_with_media"] == 287
    assert read_snapshot(storage, "amanita").sort_by(KEYS).equals(table.sort_by(KEYS))


@pytest.mark.parametrize("path", [p for p in cassette_files() if search_records(p)], ids=lambda p: p.name)
def test_every_recorded_search_page_converts(path: Path) -> None:
    records = search_records(path)
    table, report = records_to_snapshot_table(records)
    assert table.schema.equals(SNAPSHOT_SCHEMA)
    expected = 0
    unique = {int(r["gbifID"]): r for r in reversed(records)}  # recordings repeat pages: first wins
    assert report.skipped_counts()["duplicate"] == len(records) - len(unique)
    for r in unique.values():
        for m in r.get("media") or []:
            url = str(m.get("identifier") or "")
            kind = m.get("type")
            image = kind == "StillImage" or (not kind and str(m.get("format", "")).startswith("image/"))
            expected += bool(url.lower().startswith(("http://", "https://")) and image)
    assert table.num_rows == expected
    assert report.media_rows == sum(len(r.get("media") or []) for r in unique.values())
    assert (
        len(
            set(zip(table.column("gbifID").to_pylist(), table.column("media_index").to_pylist(), strict=True))
        )
        == expected
    )
    assert table.column("identifier").null_count == 0
    assert table.column("media_license").null_count == 0


def test_search_and_dwca_give_the_same_schema(fixtures_dir: Path, tmp_path: Path) -> None:
    from gbifdl_assets.gbif.dwca import convert_to_snapshot

    convert_to_snapshot(fixtures_dir / "archives" / RGBIF_DWCA, tmp_path / "a.parquet")
    dwca_schema = pq.read_schema(tmp_path / "a.parquet")
    table, _ = records_to_snapshot_table(search_records(RGBIF / "occ_search_looping_works.yml"))
    assert dwca_schema.equals(table.schema) and dwca_schema.equals(SNAPSHOT_SCHEMA)
    assert [f.nullable for f in dwca_schema] == [f.nullable for f in SNAPSHOT_SCHEMA]


def test_search_batches_give_the_same_snapshot(storage: LocalStorage) -> None:
    records = search_records(RGBIF / "occ_search_looping_works.yml")
    assert len(records) == 750
    whole = write_snapshot_from_search(records, storage, "whole")
    batched = write_snapshot_from_search(records, storage, "batched", batch_records=100)
    assert whole.counts == batched.counts
    a = read_snapshot(storage, "whole").sort_by(KEYS)
    b = read_snapshot(storage, "batched").sort_by(KEYS)
    assert a.equals(b)


def test_media_index_is_the_position_in_the_media_list() -> None:
    record = {
        "key": 7,
        "gbifID": "7",
        "license": "http://creativecommons.org/licenses/by/4.0/legalcode",
        "issues": [],
        "media": [
            {"type": "StillImage", "identifier": "https://x.org/0.jpg"},
            {"type": "Sound", "identifier": "https://x.org/1.mp3"},
            {"type": "StillImage"},  # no identifier (48 of 5,027 recorded items)
            {"type": "StillImage", "identifier": "https://x.org/3.jpg", "license": "All rights reserved"},
        ],
    }
    table, report = records_to_snapshot_table([record])
    assert table.column("media_index").to_pylist() == [0, 3]
    assert table.column("media_license").to_pylist() == ["UNKNOWN", "ALL-RIGHTS-RESERVED"]
    assert table.column("license").to_pylist() == ["CC_BY_4_0", "CC_BY_4_0"]
    assert report.skipped_counts()["not_image"] == 1 and report.skipped_counts()["no_url"] == 1


def test_failing_search_leaves_no_snapshot(storage: LocalStorage) -> None:
    records = search_records(PYGBIF / "test_search.yaml")

    def flaky() -> Iterator[dict]:
        yield from records[:150]
        raise ConnectionError("GBIF went away")

    with pytest.raises(ConnectionError):
        write_snapshot_from_search(flaky(), storage, "t", batch_records=100)
    assert latest_snapshot(storage, "t") is None
    assert list(storage.list("")) == []
    assert [p for p in storage.root.rglob("*") if p.is_file()] == []


def test_empty_search_gives_an_empty_snapshot(storage: LocalStorage) -> None:
    info = write_snapshot_from_search([], storage, "empty")
    assert info.counts["media"] == 0
    table = read_snapshot(storage, "empty")
    assert table.num_rows == 0 and table.schema.equals(SNAPSHOT_SCHEMA)
    assert isinstance(table, pa.Table)
