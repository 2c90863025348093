"""The image store on S3 (moto over real HTTP), including an S3 outage in the middle of a run."""

from __future__ import annotations

import hashlib
import threading
import time

import pyarrow as pa
import pytest

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import ledger_files, list_ledgers, load_ledger
from gbifdl_assets.storage import S3Storage
from gbifdl_assets_tests.harness.media_urls import sandbox_image_urls as image_urls
from gbifdl_assets_tests.harness.media_urls import url_manifest as manifest

pytestmark = pytest.mark.integration


def check_against_s3(storage, ledger: str) -> pa.Table:
    table = load_ledger(storage, ledger)
    stored = table.filter(table.column("stored"))
    assert set(stored.column("key").to_pylist()) == set(storage.list("images/"))
    for row in stored.to_pylist():
        assert hashlib.sha256(storage.read_bytes(row["key"])).hexdigest() == row["sha256"]
    return table


@pytest.mark.timeout(90)
def test_s3_store_ledger_and_dedup(sandbox, s3_bucket) -> None:
    storage = s3_bucket.storage("imgs")
    urls = image_urls(sandbox, 60, start=2000)
    cfg = DownloadConfig(fetch=FetchConfig(allow_loopback=True, concurrency=16), ledger_flush_rows=20)
    first = download_images(manifest(urls[:40]), storage, ledger="set-a/shard-0", config=cfg)
    assert (first.ok, first.failed) == (40, 0)
    assert check_against_s3(storage, "set-a/shard-0").num_rows == 40
    assert ledger_files(storage, "set-a/shard-0").base is not None  # compacted in S3 too
    second = download_images(manifest(urls[20:]), storage, ledger="set-b/shard-0", config=cfg)
    assert (second.ok, second.skipped_by_reason) == (20, {"already_stored": 20})
    assert list_ledgers(storage) == ["set-a/shard-0", "set-b/shard-0"]
    assert len(list(storage.list("images/"))) == 60
    again = download_images(manifest(urls[:40]), storage, ledger="set-a/shard-0", config=cfg)
    assert again.already_done == 40 and again.ledger_entries == 0


@pytest.mark.timeout(120)
def test_s3_outage_mid_run_loses_nothing(sandbox, s3_server, s3_bucket) -> None:
    # short client timeouts so the frozen endpoint is noticed quickly; our retry loop rides it out
    storage = S3Storage(
        s3_bucket.name,
        "outage",
        endpoint_url=s3_bucket.endpoint_url,
        access_key_id=s3_bucket.access_key_id,
        secret_access_key=s3_bucket.secret_access_key,
        region_name=s3_bucket.region_name,
        max_attempts=1,
        connect_timeout=1,
        read_timeout=1.5,
    )
    urls = image_urls(sandbox, 400, start=2100)
    cfg = DownloadConfig(
        fetch=FetchConfig(allow_loopback=True, concurrency=8, per_host=8),
        io_threads=8,
        ledger_flush_rows=25,
        ledger_flush_seconds=0.2,
        store_retry_seconds=60,
    )
    progress = []
    outage = {}

    def freeze_when_busy() -> None:
        while len(progress) < 1 or progress[-1].ok < 60:  # some objects and segments are written
            if outage.get("stop"):
                return
            time.sleep(0.02)
        s3_server.suspend()
        outage["at"] = progress[-1].ok
        time.sleep(7)  # longer than a client timeout (~5 s with botocore's own read retries)
        s3_server.resume()
        outage["resumed"] = True

    thread = threading.Thread(target=freeze_when_busy, daemon=True)
    thread.start()
    try:
        cfg = DownloadConfig(**{**cfg.__dict__, "progress_interval": 0.05})
        summary = download_images(manifest(urls), storage, ledger="o", config=cfg, progress=progress.append)
    finally:
        outage["stop"] = True
        thread.join(10)
        s3_server.resume()
    assert outage.get("resumed"), "the outage never happened: the run was too short"
    assert outage["at"] < len(urls)
    assert summary.storage_retries > 0
    assert (summary.ok, summary.failed) == (len(urls), 0)
    table = check_against_s3(storage, "o")
    assert table.num_rows == len(urls) and set(table.column("status").to_pylist()) == {"ok"}
