"""The image store heals itself: objects the ledger records as stored but that are gone are fetched
again, never adopted from another ledger, and ``gbifdl images verify`` reports every inconsistency.

Local folder and S3 (moto over real HTTP), images from the sandbox media server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import load_ledger, load_ledger_history
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.harness.media_urls import sandbox_image_urls as image_urls
from gbifdl_assets_tests.harness.media_urls import url_manifest as manifest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def config(**changes) -> DownloadConfig:
    fetch = FetchConfig(allow_loopback=True, backoff_base=0.05, concurrency=16)
    return DownloadConfig(fetch=fetch, ledger_flush_seconds=0.5, **changes)


def cli(*args: str, env: dict[str, str] | None = None, module: str = "gbifdl_assets.media.cli"):
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def stored_rows(storage, ledger: str) -> list[dict]:
    table = load_ledger(storage, ledger)
    return table.filter(table.column("stored")).to_pylist()


def this_run(storage, ledger: str, run_id: str) -> pa.Table:
    history = load_ledger_history(storage, ledger)
    return history.filter(pc.equal(history.column("run_id"), run_id))


def assert_every_stored_object_is_right(storage, ledger: str) -> None:
    for row in stored_rows(storage, ledger):
        assert hashlib.sha256(storage.read_bytes(row["key"])).hexdigest() == row["sha256"], row["key"]


# ------------------------------------------------------------------------------------- local
@pytest.mark.timeout(120)
def test_local_lost_objects_are_reported_then_refetched_exactly(sandbox, tmp_path) -> None:
    urls = image_urls(sandbox, 60, start=7000)
    path = tmp_path / "set-v.parquet"
    pq.write_table(manifest(urls), path)
    root = tmp_path / "store"
    storage = LocalStorage(root)
    first = download_images(manifest(urls), storage, ledger="set-v", config=config())
    assert (first.ok, first.missing_refetched) == (60, 0)

    rc, summary, stderr = cli("verify", "--store", str(root))
    assert rc == 0, stderr
    assert summary["consistent"] is True and summary["command"] == "images verify"
    assert (summary["entries"], summary["objects"], summary["missing"], summary["orphans"]) == (60, 60, 0, 0)

    rows = stored_rows(storage, "set-v")
    lost = {r["key"]: r["content_key"] for r in rows[5:12]}  # someone deletes files from the folder
    for key in lost:
        (root / key).unlink()

    rc, summary, stderr = cli("verify", "--store", str(root), "--ledger", "set-v")
    assert rc == 1
    assert summary["consistent"] is False and summary["missing"] == len(lost)
    assert set(summary["missing_keys"]) == set(lost)
    assert all(f"missing   set-v  {key}" in stderr for key in lost)
    assert "images fetch" in stderr  # says how to heal it

    # the same CLI that fetched them heals the store: exactly the lost images are fetched again
    rc, summary, stderr = cli("fetch", str(path), "--store", str(root), "--allow-loopback")
    assert rc == 0, stderr
    assert summary["missing_refetched"] == len(lost)
    assert (summary["ok"], summary["already_done"], summary["ledger_entries"]) == (len(lost), 53, len(lost))
    assert summary["verify_seconds"] >= 0
    fresh = this_run(storage, "set-v", summary["run_id"])
    assert set(fresh.column("content_key").to_pylist()) == set(lost.values())
    assert set(fresh.column("status").to_pylist()) == {"ok"}

    rc, summary, stderr = cli("verify", "--store", str(root), "--deep")
    assert rc == 0, stderr
    assert (summary["missing"], summary["mismatched"], summary["orphans"]) == (0, 0, 0)
    assert_every_stored_object_is_right(storage, "set-v")

    # and through the main `gbifdl` command
    rc, summary, _ = cli("images", "verify", "--store", str(root), module="gbifdl_assets.cli")
    assert rc == 0 and summary["consistent"] is True


@pytest.mark.timeout(120)
def test_other_ledgers_entry_is_never_adopted_when_its_object_is_gone(sandbox, tmp_path) -> None:
    urls = image_urls(sandbox, 30, start=7100)
    storage = LocalStorage(tmp_path / "store")
    a = download_images(manifest(urls), storage, ledger="a", config=config())
    assert a.ok == 30
    gone = {r["content_key"]: r["key"] for r in stored_rows(storage, "a")[:4]}
    for key in gone.values():
        storage.delete(key)

    b = download_images(manifest(urls), storage, ledger="b", config=config())
    assert (b.ok, b.skipped_by_reason, b.failed) == (4, {"already_stored": 26}, 0)
    assert b.missing_refetched == 0  # b never had them: a plain fetch, not a re-fetch
    fetched = this_run(storage, "b", b.run_id).filter(pc.equal(pc.field("status"), "ok"))
    assert set(fetched.column("content_key").to_pylist()) == set(gone)
    # content addressing: b's fetch put the objects back where a's entries point, with the same bytes
    assert_every_stored_object_is_right(storage, "a")
    assert_every_stored_object_is_right(storage, "b")
    again = download_images(manifest(urls), storage, ledger="a", config=config())
    assert (again.already_done, again.missing_refetched, again.ledger_entries) == (30, 0, 0)


@pytest.mark.timeout(120)
def test_retry_failed_also_heals_and_opting_out_trusts_the_ledger(sandbox, tmp_path) -> None:
    urls = image_urls(sandbox, 20, start=7200)
    storage = LocalStorage(tmp_path / "store")
    download_images(manifest(urls), storage, ledger="r", config=config())
    rows = stored_rows(storage, "r")
    for row in rows[:3]:
        storage.delete(row["key"])

    trusting = download_images(manifest(urls), storage, ledger="r", config=config(verify_stored=False))
    assert (trusting.already_done, trusting.ok, trusting.missing_refetched) == (20, 0, 0)
    assert trusting.verify_seconds == 0

    progress = []
    healed = download_images(
        manifest(urls), storage, ledger="r", config=config(only_failed=True), progress=progress.append
    )
    assert (healed.ok, healed.missing_refetched, healed.already_done) == (3, 3, 17)
    assert progress[-1].final and progress[-1].missing_refetched == 3
    assert "3 missing objects re-fetched" in progress[-1].message()
    assert_every_stored_object_is_right(storage, "r")


@pytest.mark.timeout(120)
def test_verify_deep_damage_orphans_and_user_errors(sandbox, tmp_path) -> None:
    urls = image_urls(sandbox, 12, start=7300)
    root = tmp_path / "store"
    storage = LocalStorage(root)
    download_images(manifest(urls), storage, ledger="d", config=config())
    rows = stored_rows(storage, "d")
    damaged = rows[0]["key"]
    storage.write_bytes(damaged, b"not the image the ledger describes")
    variant_dir = rows[1]["key"].rsplit("/", 2)[0]
    orphan = f"{variant_dir}/ff/{'f' * 64}.jpg"  # as a killed run leaves it: stored, not yet recorded
    storage.write_bytes(orphan, storage.read_bytes(rows[1]["key"]))

    rc, summary, stderr = cli("verify", "--store", str(root))
    assert rc == 0, stderr  # existence is fine; an orphan is legitimate after an interrupted run
    assert (summary["missing"], summary["mismatched"], summary["orphans"]) == (0, None, 1)
    assert summary["orphan_keys"] == [orphan] and f"orphan    {orphan}" in stderr
    rc, summary, _ = cli("verify", "--store", str(root), "--strict")
    assert rc == 1 and summary["consistent"] is False

    rc, summary, stderr = cli("verify", "--store", str(root), "--deep")
    assert rc == 1
    assert summary["mismatched"] == 1 and summary["mismatched_keys"] == [damaged]
    assert f"mismatch  d  {damaged}" in stderr and "delete the damaged objects" in stderr

    # user errors: exit 2 and one clear message
    rc, summary, stderr = cli("verify", "--store", str(root), "--ledger", "nope")
    assert rc == 2 and "no ledger 'nope'" in summary["error"] and "d" in summary["error"]
    rc, summary, _ = cli("verify", "--store", str(tmp_path / "no-such-store"))
    assert rc == 2 and "does not exist" in summary["error"]
    (tmp_path / "empty").mkdir()
    rc, summary, _ = cli("verify", "--store", str(tmp_path / "empty"))
    assert rc == 2 and "not an image store" in summary["error"]


# ---------------------------------------------------------------------------------------- S3
@pytest.mark.timeout(150)
def test_s3_lost_objects_are_reported_then_refetched_exactly(sandbox, s3_bucket) -> None:
    storage = s3_bucket.storage("imgs")
    urls = image_urls(sandbox, 40, start=7400)
    first = download_images(manifest(urls), storage, ledger="s3set", config=config())
    assert first.ok == 40
    env = {"GBIFDL_S3_ENDPOINT_URL": s3_bucket.endpoint_url}
    uri = f"{s3_bucket.uri}/imgs"
    rc, summary, stderr = cli("verify", "--store", uri, env=env)
    assert rc == 0 and (summary["entries"], summary["objects"]) == (40, 40), stderr

    lost = {r["key"]: r["content_key"] for r in stored_rows(storage, "s3set")[10:16]}
    for key in lost:  # the bucket loses data
        storage.delete(key)
    rc, summary, _ = cli("verify", "--store", uri, env=env)
    assert rc == 1 and set(summary["missing_keys"]) == set(lost)

    healed = download_images(manifest(urls), storage, ledger="s3set", config=config())
    assert (healed.ok, healed.missing_refetched, healed.already_done) == (len(lost), len(lost), 34)
    fresh = this_run(storage, "s3set", healed.run_id)
    assert set(fresh.column("content_key").to_pylist()) == set(lost.values())
    rc, summary, stderr = cli("verify", "--store", uri, "--deep", env=env)
    assert rc == 0 and summary["mismatched"] == 0, stderr
    assert_every_stored_object_is_right(storage, "s3set")

    rc, summary, _ = cli("verify", "--store", f"s3://no-such-bucket-{s3_bucket.name[-8:]}", env=env)
    assert rc == 2 and "does not exist" in summary["error"]
    rc, summary, _ = cli("verify", "--store", f"{s3_bucket.uri}/wrong-prefix", env=env)
    assert rc == 2 and "not an image store" in summary["error"]
