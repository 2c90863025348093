"""LocalStorage details, key validation and URI parsing (no services, no network)."""

from __future__ import annotations

import os
import pickle
import stat
import threading
from pathlib import Path

import pytest

from gbifdl_assets.storage import (
    TMP_PREFIX,
    InvalidKeyError,
    LocalStorage,
    S3Storage,
    StorageError,
    open_storage,
    validate_key,
)


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


# ------------------------------------------------------------------------ key validation
@pytest.mark.parametrize("key", ["a", "a/b/c.parquet", "images/ab/cd/ef.jpg", "with space/é.txt", ".hidden"])
def test_valid_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("/abs", "absolute"),
        ("../x", "'..'"),
        ("a/../b", "'..'"),
        ("a/..", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
    ],
)
def test_invalid_keys_say_why(key, reason):
    with pytest.raises(InvalidKeyError, match=reason) as info:
        validate_key(key)
    assert key == "" or repr(key) in str(info.value)
    assert isinstance(info.value, ValueError)  # callers may catch ValueError


def test_prefix_may_be_empty_or_end_with_slash():
    assert validate_key("", allow_empty=True, what="prefix") == ""
    assert validate_key("a/b/", allow_empty=True, what="prefix") == "a/b/"
    with pytest.raises(InvalidKeyError, match="prefix"):
        validate_key("../", allow_empty=True, what="prefix")


def test_non_string_key():
    with pytest.raises(InvalidKeyError, match="must be a string"):
        validate_key(Path("a"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- LocalStorage
def test_root_created_lazily_and_uri(tmp_path):
    store = LocalStorage(tmp_path / "not" / "yet")
    assert store.uri == (tmp_path / "not" / "yet").as_uri()
    assert list(store.list()) == []
    assert not (tmp_path / "not").exists()
    store.write_bytes("k", b"v")
    assert (tmp_path / "not" / "yet" / "k").read_bytes() == b"v"
    assert store.local_path("k") == tmp_path / "not" / "yet" / "k"
    assert store.uri_of("dir/a b") == (tmp_path / "not" / "yet" / "dir" / "a b").as_uri()


def test_written_files_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        LocalStorage(tmp_path).write_bytes("k", b"v")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o644  # not the 0600 of a temp file


def test_failed_write_removes_temp_file(tmp_path):
    store = LocalStorage(tmp_path)
    with pytest.raises(ValueError), store.open_write("d/k") as fh:
        fh.write(b"x" * 1000)
        assert len(_tmp_files(tmp_path)) == 1  # staged next to the target, same filesystem
        raise ValueError
    assert _tmp_files(tmp_path) == []
    assert not (tmp_path / "d" / "k").exists()


def test_list_skips_in_flight_temp_files(tmp_path):
    store = LocalStorage(tmp_path)
    store.write_bytes("a/done", b"1")
    with store.open_write("a/pending") as fh:
        fh.write(b"2")
        assert list(store.list()) == ["a/done"]
    assert list(store.list()) == ["a/done", "a/pending"]


def test_list_only_walks_matching_folders(tmp_path, monkeypatch):
    store = LocalStorage(tmp_path)
    for key in ["x/1", "y/deep/2", "y/deep/3", "yz/4"]:
        store.write_bytes(key, b"")
    walked: list[str] = []
    real_walk = os.walk

    def spy(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            walked.append(os.path.relpath(entry[0], tmp_path))
            yield entry

    monkeypatch.setattr(os, "walk", spy)
    assert list(store.list("y/")) == ["y/deep/2", "y/deep/3"]
    assert "x" not in walked and "yz" not in walked


def test_closing_file_inside_block_still_publishes(tmp_path):
    store = LocalStorage(tmp_path)
    with store.open_write("k") as fh:
        fh.write(b"data")
        fh.close()
    assert store.read_bytes("k") == b"data"


def test_concurrent_writers_never_produce_a_mix(tmp_path):
    store = LocalStorage(tmp_path)
    payloads = [bytes([i]) * 200_000 for i in range(8)]

    def write(p: bytes) -> None:
        with store.open_write("same") as fh:
            for i in range(0, len(p), 10_000):
                fh.write(p[i : i + 10_000])

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.read_bytes("same") in payloads
    assert _tmp_files(tmp_path) == []


def test_child_rejects_escape(tmp_path):
    store = LocalStorage(tmp_path / "root")
    assert store.child("sets/a/").root == tmp_path / "root" / "sets" / "a"
    with pytest.raises(InvalidKeyError):
        store.child("../other")


def test_missing_key_message(tmp_path):
    store = LocalStorage(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        store.read_bytes("nope/x.parquet")
    assert str(info.value) == (
        f"no object 'nope/x.parquet' in storage {store.uri} (looked for {store.uri_of('nope/x.parquet')})"
    )
    store.write_bytes("dir/file", b"")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("dir")  # a folder is not an object
    assert not store.exists("dir")


# --------------------------------------------------------------------------- open_storage
def test_open_storage_local_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_storage(str(tmp_path)).root == tmp_path
    assert open_storage(tmp_path).root == tmp_path
    assert open_storage(tmp_path.as_uri()).root == tmp_path
    assert open_storage("file://localhost" + str(tmp_path)).root == tmp_path
    assert open_storage("file:///tmp/a%20b").root == Path("/tmp/a b")
    assert open_storage("data/out").root == tmp_path / "data" / "out"  # relative to the cwd
    assert open_storage("~/gbifdl").root == Path.home() / "gbifdl"


def test_open_storage_s3_forms():
    store = open_storage("s3://my-bucket/training/sets/", endpoint_url="http://127.0.0.1:9")
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix, store.uri) == (
        "my-bucket",
        "training/sets",
        "s3://my-bucket/training/sets",
    )
    assert store.local_path("k") is None
    assert store.uri_of("a/b") == "s3://my-bucket/training/sets/a/b"
    root = open_storage("s3://my-bucket")
    assert (root.prefix, root.uri) == ("", "s3://my-bucket")
    assert root.child("x/y").uri == "s3://my-bucket/x/y"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://Bad_Bucket/x", "invalid S3 bucket name"),
        ("s3://bucket/../x", "'..'"),
        ("s3://bucket/x?versionId=1", "must not contain"),
        ("gs://bucket/x", "unsupported storage URI scheme 'gs'"),
        ("http://example.invalid/x", "unsupported storage URI scheme 'http'"),
        ("file://otherhost/x", "remote host"),
    ],
)
def test_open_storage_rejects_bad_uris(uri, message):
    with pytest.raises(StorageError, match=message):
        open_storage(uri)


def test_partial_credentials_rejected():
    with pytest.raises(StorageError, match="both access_key_id and secret_access_key"):
        open_storage("s3://bucket-a", access_key_id="only-the-id")


def test_s3_storage_repr_and_pickle_hide_nothing_extra():
    store = open_storage(
        "s3://bucket-a/p",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="ID123",
        secret_access_key="SEKRET",
    )
    assert repr(store) == "S3Storage('s3://bucket-a/p', endpoint_url='http://127.0.0.1:9')"
    assert "SEKRET" not in str(store) and "ID123" not in repr(store)
    clone = pickle.loads(pickle.dumps(store))  # e.g. handed to a worker process
    assert clone.uri == store.uri and clone._credentials == store._credentials
