"""Staging files a killed writer left in a local folder: never listed, removed on the next write into
that folder (or by ``cleanup``), while a concurrent live write keeps its file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gbifdl_assets.storage import TMP_PREFIX, LocalStorage, StorageUnavailable, open_storage

# A writer in its own process: opens an atomic write, writes some bytes, says so, then waits
# (until killed, or until stdin closes for a clean exit).
WRITER = """
import sys
from gbifdl_assets.storage import open_storage
store = open_storage(sys.argv[1])
with store.open_write(sys.argv[2]) as fh:
    fh.write(b"PAR1 half a table")
    fh.flush()
    print("writing", flush=True)
    sys.stdin.read()
"""


def _start_writer(root: Path, key: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def _staged(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"{TMP_PREFIX}*") if p.is_file())


def _kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_a_killed_writers_file_is_never_listed_and_goes_with_the_next_write(root: Path) -> None:
    killed = _start_writer(root, "snapshots/cats/media.parquet")
    _kill9(killed)
    folder = root / "snapshots" / "cats"
    (leftover,) = _staged(folder)
    assert str(killed.pid) in leftover.name  # the name records its writer
    store = open_storage(str(root))
    assert list(store.list("")) == []
    assert list(store.list("snapshots/cats/")) == []

    store.write_bytes("snapshots/cats/other.parquet", b"x")  # the next write into that folder
    assert _staged(folder) == []
    assert list(store.list("")) == ["snapshots/cats/other.parquet"]


def test_a_concurrent_live_write_keeps_its_staging_file(root: Path) -> None:
    live = _start_writer(root, "snapshots/dogs/media.parquet")
    killed = _start_writer(root, "snapshots/dogs/media2.parquet")
    _kill9(killed)
    folder = root / "snapshots" / "dogs"
    assert len(_staged(folder)) == 2
    store = LocalStorage(root)
    try:
        store.write_bytes("snapshots/dogs/a.parquet", b"a")
        assert store.cleanup() == []  # the dead writer's file went with the write; the live one stays
        (kept,) = _staged(folder)
        assert str(live.pid) in kept.name
        assert list(store.list("")) == ["snapshots/dogs/a.parquet"]
    finally:
        live.stdin.close()  # a clean exit commits the live write
        assert live.wait(timeout=30) == 0
    assert _staged(folder) == []
    assert store.read_bytes("snapshots/dogs/media.parquet") == b"PAR1 half a table"


def test_cleanup_removes_old_files_of_any_writer_and_keeps_fresh_ones(root: Path) -> None:
    folder = root / "snapshots" / "owls"
    folder.mkdir(parents=True)
    # staging names without a writer pid (a snapshot ingest, image writes) are judged by age
    old = folder / f"{TMP_PREFIX}0123456789abcdef0123456789abcdef.parquet"
    fresh = folder / f"{TMP_PREFIX}fedcba9876543210fedcba9876543210.parquet"
    elsewhere = root / "images" / f"{TMP_PREFIX}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    elsewhere.parent.mkdir(parents=True)
    for path in (old, fresh, elsewhere):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(elsewhere, (two_hours_ago, two_hours_ago))
    store = LocalStorage(root)

    assert store.cleanup("snapshots/") == [f"snapshots/owls/{old.name}"]  # only under the prefix
    assert not old.exists() and fresh.exists() and elsewhere.exists()
    assert store.cleanup() == [f"images/{elsewhere.name}"]
    assert store.cleanup(stale_after=0) == [f"snapshots/owls/{fresh.name}"]
    assert _staged(folder) == []


def test_a_write_sweeps_the_folders_above_it_too(root: Path) -> None:
    # a crashed snapshot ingest stages in snapshots/<set>/, the commit writes into snapshots/<set>/<id>/
    staging = root / "snapshots" / "bats" / f"{TMP_PREFIX}0123456789abcdef0123456789abcdef.parquet"
    staging.parent.mkdir(parents=True)
    staging.write_bytes(b"partial")
    long_ago = time.time() - 2 * 3600
    os.utime(staging, (long_ago, long_ago))
    LocalStorage(root).write_bytes("snapshots/bats/20260101-abc/media.parquet", b"x")
    assert not staging.exists()


def test_s3_cleanup_without_credentials_is_a_clear_error() -> None:
    """S3 cleanup aborts stale multipart uploads (integration/test_staging_cleanup.py), so it needs
    the endpoint: without credentials it says which and how to give them."""
    store = open_storage("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageUnavailable, match="no S3 credentials for bucket 'bucket'.*AWS_ACCESS_KEY_ID"):
        store.cleanup()
