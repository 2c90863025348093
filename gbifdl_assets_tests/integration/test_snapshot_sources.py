"""Both snapshot sources against the sandbox: a DWCA download and the search API give the same rows.

Drives the real client: request a download, poll it to SUCCEEDED, fetch the zip, ingest it; then
page the search API with the same filters and compare the two snapshots row by row. The sandbox's
DWCA has no publishingOrgKey, as GBIF's has none: both snapshots take the publisher (and the
dataset's title, DOI and licence) from the sandbox's registry and must hold the same values. Also
writes to the S3 endpoint, and checks a failed ingest leaves the bucket untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.dwca import DwcaError
from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA
from gbifdl_assets.gbif.registry import REGISTRY_COLUMNS, RegistryClient
from gbifdl_assets.occurrences.snapshots import (
    latest_snapshot,
    read_snapshot,
    write_snapshot_from_dwca,
    write_snapshot_from_search,
)
from gbifdl_assets.storage import LocalStorage

pytestmark = pytest.mark.integration

PREDICATE = {
    "type": "and",
    "predicates": [
        {"type": "equals", "key": "TAXON_KEY", "value": "797"},
        {"type": "in", "key": "COUNTRY", "values": ["GB", "NL", "SE", "DE", "FR"]},
    ],
}
PARAMS = {"taxonKey": 797, "country": ["GB", "NL", "SE", "DE", "FR"]}
KEYS = [("gbifID", "ascending"), ("media_index", "ascending")]


@pytest.fixture(scope="module")
def download(sandbox, tmp_path_factory) -> tuple[GbifClient, dict, Path]:
    client = GbifClient(sandbox.api_url, username="sandbox", password="sandbox", checklist_dataset_key=None)
    key = client.request_download(PREDICATE, format="DWCA")
    seen: list[str] = []
    status = client.wait_for_download(
        key, poll_seconds=0.05, timeout_seconds=60, on_status=lambda s: seen.append(s["status"])
    )
    assert status["status"] == "SUCCEEDED", seen
    path = client.fetch_download(key, tmp_path_factory.mktemp("dl") / f"{key}.zip")
    return client, status, path


def _columns_in_sandbox_archive() -> list[str]:
    from gbifdl_assets.sandbox import SandboxConfig
    from gbifdl_assets.sandbox.dwca_text import MULTIMEDIA_COLUMNS, occurrence_columns

    served = occurrence_columns(SandboxConfig().real_dwca_columns)
    terms = {name for name, _ in served} | set(MULTIMEDIA_COLUMNS) | {"issues", "media_index"}
    terms |= {"media_license", "media_license_raw"}  # from the multimedia licence column
    return [c for c in SNAPSHOT_SCHEMA.names if c in terms]


def test_download_and_search_give_the_same_snapshot(download, tmp_path: Path) -> None:
    client, status, path = download
    storage = LocalStorage(tmp_path / "store")
    source = {k: status.get(k) for k in ("key", "doi", "license", "totalRecords")}
    with RegistryClient(client.base_url) as registry:
        from_download = write_snapshot_from_dwca(path, storage, "dl", source, registry=registry)
    # a storage of its own: the search side must not profit from the registry cache of the download
    other = LocalStorage(tmp_path / "other")
    with RegistryClient(client.base_url) as registry:
        from_search = write_snapshot_from_search(
            client.iter_occurrences(PARAMS), other, "search", {"params": PARAMS}, registry=registry
        )

    assert from_download.source["doi"] == status["doi"] and from_download.source["key"] == status["key"]
    assert from_download.counts["occurrences"] == status["totalRecords"] == from_search.counts["occurrences"]
    for name in ("occurrences", "occurrences_with_media", "media_rows", "media", "species"):
        assert from_download.counts[name] == from_search.counts[name], name
    assert from_download.counts["skipped"] == from_search.counts["skipped"]
    assert from_download.counts["media"] > 50  # the comparison is about something
    assert from_download.counts["registry"] == from_search.counts["registry"]
    assert from_download.counts["registry"]["rows_without_publisher"] == 0
    assert set(from_download.counts["registry"]["datasets"]) == {"ok"}

    a = read_snapshot(storage, "dl").sort_by(KEYS)
    b = read_snapshot(other, "search").sort_by(KEYS)
    assert a.schema.equals(SNAPSHOT_SCHEMA) and b.schema.equals(SNAPSHOT_SCHEMA)
    shared = _columns_in_sandbox_archive()
    assert len(shared) > 30 and "publishingOrgKey" not in shared  # as in real GBIF downloads
    for name in shared:
        assert a.column(name).equals(b.column(name)), name
    # the same publisher values whatever the source: the download's from the registry, the search's
    # from its records (the registry fills the titles)
    for name in REGISTRY_COLUMNS:
        assert a.column(name).null_count == 0, name
        assert a.column(name).equals(b.column(name)), name
    # the sandbox's occurrence.txt lacks these terms, so only the search side has them
    for name in set(SNAPSHOT_SCHEMA.names) - set(shared) - set(REGISTRY_COLUMNS):
        assert a.column(name).null_count == a.num_rows, name


def test_snapshot_in_s3(download, s3_bucket) -> None:
    _, status, path = download
    storage = s3_bucket.storage("gbifdl")
    info = write_snapshot_from_dwca(path, storage, "dl", {"key": status["key"]})
    keys = sorted(storage.list("snapshots/"))
    assert keys == [f"{info.prefix}/media.parquet", f"{info.prefix}/snapshot.json", "snapshots/dl/latest"]
    assert latest_snapshot(storage, "dl").snapshot_id == info.snapshot_id
    local = LocalStorage(path.parent / "local")
    write_snapshot_from_dwca(path, local, "dl")
    assert read_snapshot(storage, "dl").sort_by(KEYS).equals(read_snapshot(local, "dl").sort_by(KEYS))


def test_failed_ingest_leaves_the_bucket_empty(download, s3_bucket, tmp_path: Path) -> None:
    _, _, path = download
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    storage = s3_bucket.storage("gbifdl")
    with pytest.raises(DwcaError, match="not a complete zip file"):
        write_snapshot_from_dwca(cut, storage, "dl")
    assert list(storage.list("")) == []
    assert latest_snapshot(storage, "dl") is None


def test_simple_csv_download_is_refused_plainly(sandbox, tmp_path: Path) -> None:
    client = GbifClient(sandbox.api_url, username="sandbox", password="sandbox", checklist_dataset_key=None)
    key = client.request_download(PREDICATE, format="SIMPLE_CSV")
    client.wait_for_download(key, poll_seconds=0.05, timeout_seconds=60)
    path = client.fetch_download(key, tmp_path / f"{key}.zip")
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(DwcaError, match=r"is SIMPLE_CSV and has no media URLs; request a DWCA download"):
        write_snapshot_from_dwca(path, storage, "t")
    assert latest_snapshot(storage, "t") is None
