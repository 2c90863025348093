"""Download runs against the sandbox: store/ledger agreement, resume, dedup, retry-failed, CLI, kill -9."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import ledger_files, load_ledger, load_ledger_history
from gbifdl_assets.media.validate import ValidationOptions
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.harness.media_urls import sandbox_image_urls as image_urls
from gbifdl_assets_tests.harness.media_urls import url_manifest
from gbifdl_assets_tests.harness.procfs import STATE, stat_fields

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def manifest(urls: list[str], labels: list[int] | None = None) -> pa.Table:
    return url_manifest(urls, labels or [i % 3 for i in range(len(urls))])


def config(**fetch) -> DownloadConfig:
    fetch.setdefault("allow_loopback", True)
    fetch.setdefault("backoff_base", 0.05)
    return DownloadConfig(fetch=FetchConfig(**fetch), ledger_flush_seconds=0.5)


def assert_store_matches_ledger(storage: LocalStorage, ledger: str) -> pa.Table:
    """Every stored entry points at a complete object whose sha256 matches, and nothing else is stored."""
    table = load_ledger(storage, ledger)
    stored = table.filter(table.column("stored"))
    objects = set(storage.list("images/"))
    assert set(stored.column("key").to_pylist()) == objects
    for row in stored.to_pylist():
        data = storage.read_bytes(row["key"])
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["key"]
        assert len(data) == row["bytes"]
        Image.open(io.BytesIO(data)).load()
    return table


@pytest.mark.timeout(60)
def test_download_resume_and_store_agreement(sandbox, tmp_path) -> None:
    urls = image_urls(sandbox, 120)
    storage = LocalStorage(tmp_path / "store")
    first = download_images(manifest(urls), storage, ledger="set/shard-0", config=config())
    assert (first.ok, first.failed, first.skipped) == (120, 0, 0)
    assert first.images_per_s > 0 and first.bytes > 100 * 5000
    table = assert_store_matches_ledger(storage, "set/shard-0")
    assert table.num_rows == 120 and set(table.column("status").to_pylist()) == {"ok"}
    assert ledger_files(storage, "set/shard-0").segments == ()  # compacted at the end

    again = download_images(manifest(urls), storage, ledger="set/shard-0", config=config())
    assert (again.ok, again.already_done, again.ledger_entries) == (0, 120, 0)
    assert again.skipped_by_reason == {"already_done": 120}

    more = urls + image_urls(sandbox, 10, start=120)  # the manifest grew: only the new ones are fetched
    grown = download_images(manifest(more), storage, ledger="set/shard-0", config=config())
    assert (grown.ok, grown.already_done) == (10, 120)
    assert_store_matches_ledger(storage, "set/shard-0")


@pytest.mark.timeout(60)
def test_two_training_sets_share_images(sandbox, tmp_path) -> None:
    urls = image_urls(sandbox, 100, start=200)
    storage = LocalStorage(tmp_path / "store")
    a = download_images(manifest(urls[:60]), storage, ledger="a", config=config())
    b = download_images(manifest(urls[40:]), storage, ledger="b", config=config())
    assert a.ok == 60
    assert (b.ok, b.skipped_by_reason) == (40, {"already_stored": 20})
    assert len(list(storage.list("images/"))) == 100  # each image stored once
    ledger_a = {r["content_key"]: r for r in load_ledger(storage, "a").to_pylist()}
    for row in load_ledger(storage, "b").to_pylist():
        if row["status"] == "skipped":
            assert row["stored"] and row["key"] == ledger_a[row["content_key"]]["key"]
            assert row["sha256"] == ledger_a[row["content_key"]]["sha256"]
    # other image options are another variant: nothing is shared with it
    c = download_images(
        manifest(urls[:10]), storage, ledger="c", options=ValidationOptions(max_side=128), config=config()
    )
    assert c.ok == 10 and c.skipped == 0
    assert len(list(storage.list("images/jpeg-128-q90/"))) == 10
    # a stricter min_side rejects a shared image without fetching it
    d = download_images(
        manifest(urls[:5]), storage, ledger="d", options=ValidationOptions(min_side=300), config=config()
    )
    assert d.failed_by_reason == {"too_small": 5}


@pytest.mark.timeout(60)
def test_retry_failed_retries_only_failures(sandbox, tmp_path) -> None:
    good = image_urls(sandbox, 8, start=400)
    flaky = image_urls(sandbox, 3, start=410, fault="flaky")  # 503 on the first request only
    storage = LocalStorage(tmp_path / "store")
    first = download_images(manifest(good + flaky), storage, ledger="r", config=config(max_attempts=1))
    assert (first.ok, first.failed_by_reason) == (8, {"http_503": 3})

    newer = image_urls(sandbox, 4, start=420)  # not in the ledger yet: retry-failed leaves them alone
    cfg = DownloadConfig(fetch=FetchConfig(allow_loopback=True, max_attempts=1), only_failed=True)
    retry = download_images(manifest(good + flaky + newer), storage, ledger="r", config=cfg)
    assert retry.ok == 3 and retry.skipped_by_reason == {"already_done": 8, "not_failed": 4}
    history = load_ledger_history(storage, "r")
    assert history.num_rows == 11  # compacted to the latest entries
    statuses = load_ledger(storage, "r").column("status").to_pylist()
    assert statuses.count("ok") == 11

    no_retry = download_images(
        manifest(good + newer),
        storage,
        ledger="r",
        config=DownloadConfig(fetch=FetchConfig(allow_loopback=True), retry_failed=False),
    )
    assert no_retry.ok == 4


def _cli(*args: str, timeout: float = 60) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gbifdl_assets.media.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    last = proc.stdout.strip().splitlines()[-1]
    return proc.returncode, json.loads(last), proc.stderr


@pytest.mark.timeout(90)
def test_cli_fetch_and_retry_failed(sandbox, tmp_path) -> None:
    urls = image_urls(sandbox, 20, start=500) + image_urls(sandbox, 2, start=530, fault="404")
    path = tmp_path / "set-a.parquet"
    pq.write_table(manifest(urls), path)
    store = str(tmp_path / "store")
    rc, summary, stderr = _cli(
        "fetch", str(path), "--store", store, "--allow-loopback", "--progress-seconds", "0.2"
    )
    assert rc == 0, stderr
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (20, 2, 0)
    assert summary["failed_by_reason"] == {"http_404": 2} and summary["images_per_s"] > 0
    assert summary["ledger"] == "set-a" and summary["command"] == "images fetch"
    assert "images:" in stderr  # progress lines
    rc, summary, _ = _cli("retry-failed", str(path), "--store", store, "--allow-loopback")
    assert rc == 0 and (summary["ok"], summary["failed"]) == (0, 2)
    assert summary["skipped_by_reason"] == {"already_done": 20}

    # without --allow-loopback, the sandbox (on 127.0.0.1) is refused
    rc, summary, _ = _cli("fetch", str(path), "--store", str(tmp_path / "other"))
    assert summary["failed_by_reason"] == {"blocked_address": 22}


@pytest.mark.timeout(60)
def test_cli_user_errors(tmp_path) -> None:
    rc, summary, stderr = _cli("fetch", str(tmp_path / "missing.parquet"), "--store", str(tmp_path))
    assert rc == 2 and summary["ok"] is False and "not found" in summary["error"]
    pq.write_table(pa.table({"identifier": ["http://x/1.jpg"]}), tmp_path / "m.parquet")
    rc, summary, _ = _cli("fetch", str(tmp_path / "m.parquet"), "--store", str(tmp_path))
    assert rc == 2 and "no 'url' column" in summary["error"]
    rc, summary, _ = _cli("fetch", str(tmp_path / "m.parquet"), "--store", "gs://bucket/x")
    assert rc == 2


_DRIVER = textwrap.dedent(
    """
    import sys
    import pyarrow.parquet as pq
    from gbifdl_assets.media.download import DownloadConfig, download_images
    from gbifdl_assets.media.fetch import FetchConfig
    from gbifdl_assets.storage import LocalStorage

    rows = pq.read_table(sys.argv[1])
    processes = int(sys.argv[3])
    config = DownloadConfig(
        fetch=FetchConfig(allow_loopback=True, concurrency=2 * processes, per_host=2 * processes),
        ledger_flush_rows=50, ledger_flush_seconds=0.2, io_threads=2, processes=processes,
    )
    download_images(rows, LocalStorage(sys.argv[2]), ledger="k", config=config)
    """
)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[STATE] != "Z"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", [1, 2])
def test_kill_9_mid_run_then_resume(sandbox, tmp_path, processes: int) -> None:
    urls = image_urls(sandbox, 1000, start=1000 + 2000 * processes)
    path = tmp_path / "m.parquet"
    pq.write_table(manifest(urls), path)
    root = tmp_path / "store"
    storage = LocalStorage(root)
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(path), str(root), str(processes)], cwd=REPO)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until a few segments are on disk, then kill -9
            if proc.poll() is not None:
                pytest.fail("the download finished before it could be killed: make it longer")
            if len(ledger_files(storage, "k").segments) >= 3:
                break
            time.sleep(0.02)
        workers = [p for p in _children(proc.pid) if p != proc.pid]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    if processes > 1:
        assert len(workers) >= processes
        deadline = time.monotonic() + 10  # orphaned workers notice and stop by themselves
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "download workers outlived the killed run"
    recorded = load_ledger(storage, "k")
    assert 0 < recorded.num_rows < len(urls), "killed mid-run"
    # everything the ledger recorded before the kill is complete and correct
    for row in recorded.to_pylist():
        data = storage.read_bytes(row["key"])
        assert hashlib.sha256(data).hexdigest() == row["sha256"]

    resumed = download_images(
        manifest(urls), storage, ledger="k", config=replace(config(concurrency=16), processes=processes)
    )
    assert resumed.already_done == recorded.num_rows  # nothing recorded is fetched again
    assert resumed.ok == len(urls) - recorded.num_rows and resumed.failed == 0
    final = assert_store_matches_ledger(storage, "k")  # no lost, corrupt or unrecorded image
    assert final.num_rows == len(urls) and final.column("status").to_pylist() == ["ok"] * len(urls)
    keys = list(storage.list("images/"))
    assert len(keys) == len(set(keys)) == len(urls)  # no duplicate
    assert [p for p in root.rglob(".gbifdl-tmp-*")] == []  # O_TMPFILE writes leave no temp files


@pytest.mark.timeout(90)
def test_worker_processes_give_the_same_ledger(sandbox, tmp_path) -> None:
    good = image_urls(sandbox, 300, start=5000)
    bad = image_urls(sandbox, 4, start=5400, fault="404") + image_urls(sandbox, 3, start=5410, fault="html")
    shared = image_urls(sandbox, 20, start=5500)
    storage = LocalStorage(tmp_path / "store")
    download_images(manifest(shared), storage, ledger="other", config=config())
    seen = []
    cfg = replace(config(concurrency=32, per_host=16), processes=2, progress_interval=0.1)
    summary = download_images(
        manifest(good + bad + shared + good[:5]), storage, ledger="p", config=cfg, progress=seen.append
    )
    assert (summary.ok, summary.failed) == (300, 7)
    assert summary.failed_by_reason == {"http_404": 4, "not_an_image": 3}
    assert summary.skipped_by_reason == {"already_stored": 20, "duplicate": 5}
    assert seen[-1].final and seen[-1].ok == 300
    table = assert_store_matches_ledger(storage, "p")
    assert table.num_rows == 327
    again = download_images(
        manifest(good + bad), storage, ledger="p", config=replace(cfg, retry_failed=False)
    )
    assert again.already_done == 307 and again.ledger_entries == 0
