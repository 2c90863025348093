"""What killed writers leave behind: a snapshot ingest's or the image store's staging file in a local
folder (recognised by its dead writer pid and swept on the next write, without waiting for the
hour-of-silence rule), and an unfinished S3 multipart upload (aborted by ``cleanup`` once it is
older than ``stale_after``, while a live upload is kept)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

import gbifdl_assets.storage.s3 as storage_module
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.occurrences.snapshots import list_snapshots, write_snapshot_from_search
from gbifdl_assets.storage import STALE_AFTER_SECONDS, TMP_PREFIX, LocalStorage
from gbifdl_assets_tests.unit.cassettes import PYGBIF, is_search_page, load_cassette

# A snapshot ingest from the search API that stalls after its first batch is in the staging file.
SNAPSHOT_WRITER = """
import json, sys
from gbifdl_assets.occurrences.snapshots import write_snapshot_from_search
from gbifdl_assets.storage import LocalStorage
records = json.loads(open(sys.argv[2]).read())
def stalling():
    yield from records
    print("writing", flush=True)
    sys.stdin.read()
write_snapshot_from_search(stalling(), LocalStorage(sys.argv[1]), "owls", batch_records=1)
"""

# An image write through the store's local rename path (as on a filesystem without O_TMPFILE) that
# stalls after writing part of the image.
IMAGE_WRITER = """
import sys
from gbifdl_assets.media import store as m
from gbifdl_assets.storage import LocalStorage
images = m.ImageStore(LocalStorage(sys.argv[1]))
images._tmpfile_ok = False
real_write_all = m._write_all
def stall(fd, data):
    real_write_all(fd, data[:4])
    print("writing", flush=True)
    sys.stdin.read()
m._write_all = stall
images.put(sys.argv[2], b"JPEG image bytes")
"""

# A large S3 write (multipart, thresholds lowered) that stalls after its first part is uploaded.
S3_WRITER = """
import sys
import gbifdl_assets.storage.s3 as s
from gbifdl_assets.storage import open_storage
s.MULTIPART_THRESHOLD = s.MULTIPART_PART_SIZE = 1024
store = open_storage(sys.argv[1], endpoint_url=sys.argv[2])
client = store._client()
real_upload_part = client.upload_part
def stall(**kwargs):
    answer = real_upload_part(**kwargs)
    print("writing", flush=True)
    sys.stdin.read()
    return answer
client.upload_part = stall
store.write_bytes(sys.argv[3], b"x" * 4096)
"""


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "writing":
        proc.kill()
        proc.wait(timeout=30)
        pytest.fail(f"writer did not start (exit {proc.returncode}): {line!r}")
    return proc


def _kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _staged(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"{TMP_PREFIX}*") if p.is_file())


def _assert_recent(path: Path) -> None:
    # so a sweep that removes it did so because its writer is dead, not because it is old
    assert time.time() - path.stat().st_mtime < STALE_AFTER_SECONDS / 2


# ------------------------------------------------------------------------------------------ local
def test_a_killed_snapshot_ingest_leaves_a_file_the_next_snapshot_sweeps(tmp_path: Path) -> None:
    pages = load_cassette(PYGBIF / "test_search.yaml")
    records = [r for i in pages if is_search_page(i) for r in i.json()["results"]][:20]
    records_file = tmp_path / "records.json"
    records_file.write_text(json.dumps(records))
    root = tmp_path / "data"
    killed = _start(SNAPSHOT_WRITER, str(root), str(records_file))
    _kill9(killed)
    folder = root / "snapshots" / "owls"
    (leftover,) = _staged(folder)
    assert f"-{killed.pid}-" in leftover.name and leftover.name.endswith(".parquet")
    _assert_recent(leftover)
    storage = LocalStorage(root)
    assert list_snapshots(storage, "owls") == []

    info = write_snapshot_from_search(iter(records), storage, "owls", batch_records=5)
    assert _staged(folder) == []
    assert [s.snapshot_id for s in list_snapshots(storage, "owls")] == [info.snapshot_id]


def test_a_killed_image_write_leaves_a_file_swept_at_once(tmp_path: Path) -> None:
    root = tmp_path / "store"
    content_key = hashlib.sha256(b"https://example.org/a.jpg").hexdigest()
    key = ImageStore.image_key(content_key, "jpeg-512-q90", "jpg")
    killed = _start(IMAGE_WRITER, str(root), key)
    _kill9(killed)
    folder = (root / key).parent
    (leftover,) = _staged(folder)
    assert f"-{killed.pid}-" in leftover.name
    _assert_recent(leftover)
    storage = LocalStorage(root)
    assert not storage.exists(key) and list(storage.list("images/")) == []

    # recognised as abandoned with the default (one hour) staleness rule, i.e. by its dead pid
    assert storage.cleanup("images/") == [f"{folder.relative_to(root).as_posix()}/{leftover.name}"]
    assert _staged(folder) == []


def test_the_next_image_write_into_the_folder_sweeps_a_killed_writers_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first = hashlib.sha256(b"https://example.org/a.jpg").hexdigest()
    # same two-hex-digit folder as the killed write
    second = next(
        h
        for i in range(10_000)
        if (h := hashlib.sha256(f"https://example.org/{i}.jpg".encode()).hexdigest())[:2] == first[:2]
    )
    key = ImageStore.image_key(first, "jpeg-512-q90", "jpg")
    killed = _start(IMAGE_WRITER, str(root), key)
    _kill9(killed)
    folder = (root / key).parent
    (leftover,) = _staged(folder)
    _assert_recent(leftover)

    images = ImageStore(LocalStorage(root), batched_durability=False)  # writes through the storage
    other = ImageStore.image_key(second, "jpeg-512-q90", "jpg")
    images.put(other, b"another image")
    assert _staged(folder) == []
    assert images.read(other) == b"another image"


# --------------------------------------------------------------------------------------------- S3
def _uploads(client: Any, bucket: str) -> dict[str, Any]:
    return {u["Key"]: u for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())}


def _fake_now(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    # only the storage module's clock (boto3 signs requests with the real one)
    fake = types.SimpleNamespace(time=lambda: now, monotonic=time.monotonic)
    monkeypatch.setattr(storage_module, "time", fake)


def test_s3_cleanup_aborts_old_uploads_under_the_prefix_only(s3_bucket: Any) -> None:
    client = s3_bucket.client()
    for key in ("run1/a/old.bin", "run1/a/older.bin", "run1/b/other.bin", "run2/a/x.bin"):
        client.create_multipart_upload(Bucket=s3_bucket.name, Key=key)
    storage = s3_bucket.storage("run1")

    assert storage.cleanup("a/", stale_after=0) == ["a/old.bin", "a/older.bin"]
    assert set(_uploads(client, s3_bucket.name)) == {"run1/b/other.bin", "run2/a/x.bin"}
    assert storage.cleanup(stale_after=0) == ["b/other.bin"]
    assert set(_uploads(client, s3_bucket.name)) == {"run2/a/x.bin"}  # outside the storage's prefix
    assert storage.cleanup(stale_after=0) == []


def test_s3_cleanup_keeps_an_upload_younger_than_stale_after(
    s3_bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = s3_bucket.client()
    client.create_multipart_upload(Bucket=s3_bucket.name, Key="young.bin")
    initiated = _uploads(client, s3_bucket.name)["young.bin"]["Initiated"].timestamp()
    _fake_now(monkeypatch, initiated + 10)  # the server's clock (moto reports a fixed date)
    storage = s3_bucket.storage()

    assert storage.cleanup(stale_after=60) == []
    assert set(_uploads(client, s3_bucket.name)) == {"young.bin"}
    assert storage.cleanup(stale_after=5) == ["young.bin"]
    assert _uploads(client, s3_bucket.name) == {}


def test_s3_a_killed_multipart_writer_is_aborted_but_a_live_one_is_kept(
    s3_bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = s3_bucket.client()
    uri = f"{s3_bucket.uri}/run1"
    writer = _start(S3_WRITER, uri, s3_bucket.endpoint_url, "tables/big.parquet")
    try:
        upload = _uploads(client, s3_bucket.name)["run1/tables/big.parquet"]
        parts = client.list_parts(
            Bucket=s3_bucket.name, Key="run1/tables/big.parquet", UploadId=upload["UploadId"]
        )["Parts"]
        assert len(parts) == 1
        last_part = parts[0]["LastModified"].timestamp()
        storage = s3_bucket.storage("run1")

        # initiated long before the cutoff, but a part went up since: a live writer, kept
        now = last_part + 30
        assert now - upload["Initiated"].timestamp() > 60, "moto reports a fixed initiation date in 2010"
        _fake_now(monkeypatch, now)
        assert storage.cleanup(stale_after=60) == []
        assert "run1/tables/big.parquet" in _uploads(client, s3_bucket.name)
    finally:
        _kill9(writer)

    _fake_now(monkeypatch, last_part + 120)  # nothing sent for two minutes: abandoned
    assert storage.cleanup(stale_after=60) == ["tables/big.parquet"]
    assert _uploads(client, s3_bucket.name) == {}
    assert not storage.exists("tables/big.parquet")
