"""One behaviour suite for both storage backends: a local folder and S3 over HTTP (moto server)."""

from __future__ import annotations

import traceback
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

import gbifdl_assets.storage.s3 as storage_mod
from gbifdl_assets.storage import (
    InvalidKeyError,
    LocalStorage,
    S3Storage,
    Storage,
    StorageUnavailable,
    open_storage,
)
from gbifdl_assets_tests.harness import S3Server, free_port

SECRET_ID = "AKIAGBIFDLTESTKEYID1"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/gbifdlSecretKeyXYZ"


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return bucket.storage("runs/r1")  # under a prefix, the common production layout


def _is_s3(storage: Storage) -> bool:
    return isinstance(storage, S3Storage)


# ----------------------------------------------------------------------------- basic I/O
def test_bytes_roundtrip_and_overwrite(storage):
    storage.write_bytes("a/b/c.bin", b"\x00\x01binary")
    assert storage.read_bytes("a/b/c.bin") == b"\x00\x01binary"
    storage.write_bytes("a/b/c.bin", b"second")
    assert storage.read_bytes("a/b/c.bin") == b"second"
    storage.write_bytes("empty", b"")
    assert storage.read_bytes("empty") == b""
    with storage.open_read("a/b/c.bin") as fh:
        assert fh.read() == b"second"


def test_open_write_publishes_only_on_clean_exit(storage):
    with storage.open_write("img/x.jpg") as fh:
        fh.write(b"partial")
        assert not storage.exists("img/x.jpg")  # not visible while being written
        fh.write(b"-rest")
    assert storage.read_bytes("img/x.jpg") == b"partial-rest"


def test_failed_open_write_leaves_nothing(storage):
    with pytest.raises(RuntimeError, match="boom"), storage.open_write("new/obj") as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert not storage.exists("new/obj")
    assert list(storage.list()) == []  # no temp files or partial objects either


def test_failed_overwrite_keeps_old_object(storage):
    storage.write_bytes("table.parquet", b"old")
    with pytest.raises(KeyboardInterrupt), storage.open_write("table.parquet") as fh:
        fh.write(b"new but incomplete")
        raise KeyboardInterrupt
    assert storage.read_bytes("table.parquet") == b"old"
    assert list(storage.list()) == ["table.parquet"]


def test_parquet_roundtrip(storage):
    table = pa.table(
        {
            "gbif_id": pa.array([1, 2, 3], pa.int64()),
            "species": ["Vanessa atalanta", "Aglais io", None],
            "lat": [51.5, -33.9, 0.0],
        }
    )
    written = storage.write_parquet("snap/v1/occ.parquet", table)
    assert written == storage.size("snap/v1/occ.parquet") > 0
    assert storage.read_parquet("snap/v1/occ.parquet").equals(table)
    assert storage.read_parquet("snap/v1/occ.parquet", columns=["species"]).column_names == ["species"]


def test_exists_size_delete(storage):
    assert not storage.exists("k")
    storage.write_bytes("k", b"12345")
    assert storage.exists("k")
    assert storage.size("k") == 5
    storage.delete("k")
    assert not storage.exists("k")
    storage.delete("k")  # idempotent, like S3


@pytest.mark.parametrize("op", ["read_bytes", "open_read", "size", "read_parquet"])
def test_missing_key_names_storage_and_key(storage, op):
    with pytest.raises(FileNotFoundError) as info:
        getattr(storage, op)("no/such.parquet")
    message = str(info.value)
    assert "'no/such.parquet'" in message
    assert storage.uri in message


def test_list_prefix_semantics(storage):
    for key in ["a/1", "a/2", "ab/3", "b/4", "a/deep/5"]:
        storage.write_bytes(key, b"x")
    assert list(storage.list()) == ["a/1", "a/2", "a/deep/5", "ab/3", "b/4"]
    assert list(storage.list("a")) == ["a/1", "a/2", "a/deep/5", "ab/3"]
    assert list(storage.list("a/")) == ["a/1", "a/2", "a/deep/5"]
    assert list(storage.list("a/d")) == ["a/deep/5"]
    assert list(storage.list("zzz")) == []
    assert list(storage.list("nothing/here/")) == []


def test_list_paginates_over_1000_keys(storage):
    keys = [f"many/{i:05d}" for i in range(1001)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda k: storage.write_bytes(k, b""), keys))
    storage.write_bytes("other/x", b"")
    if _is_s3(storage):  # prove the server really splits this listing into pages
        page = storage._client().list_objects_v2(Bucket=storage.bucket, Prefix=f"{storage.prefix}/many/")
        assert page["IsTruncated"] and page["KeyCount"] == 1000
    assert list(storage.list("many/")) == keys


def test_child_storage_shares_the_namespace(storage):
    child = storage.child("sets/butterflies")
    child.write_bytes("manifest.parquet", b"m")
    assert storage.read_bytes("sets/butterflies/manifest.parquet") == b"m"
    assert list(child.list()) == ["manifest.parquet"]
    assert child.uri == storage.uri_of("sets/butterflies")


@pytest.mark.parametrize(
    "key", ["../escape", "/etc/passwd", "a/../../b", "a//b", "a/./b", "", "a\\b", "dir/", "."]
)
def test_path_traversal_and_malformed_keys_rejected(storage, key):
    for op in (storage.write_bytes,):
        with pytest.raises(InvalidKeyError, match="storage key"):
            op(key, b"x")
    for op in (storage.read_bytes, storage.exists, storage.delete, storage.size, storage.open_write):
        with pytest.raises(ValueError, match="key"):
            op(key)
    with pytest.raises(InvalidKeyError):
        list(storage.list("../"))


def test_local_traversal_writes_nothing_outside(tmp_path):
    store = LocalStorage(tmp_path / "root")
    with pytest.raises(InvalidKeyError):
        store.write_bytes("../outside", b"x")
    assert not (tmp_path / "outside").exists()


# ------------------------------------------------------------------------------ S3 specifics
def test_s3_large_stream_uses_multipart(s3_bucket, monkeypatch):
    # Shrink the thresholds (parts must still be >= 5 MiB for the server to accept them).
    monkeypatch.setattr(storage_mod, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(storage_mod, "MULTIPART_PART_SIZE", 5 * 1024 * 1024)
    monkeypatch.setattr(storage_mod, "SPOOL_MAX_MEMORY", 1024 * 1024)  # also spill to disk
    store = s3_bucket.storage()
    payload = bytes(range(256)) * (11 * 4096)  # 11 MiB -> 3 parts
    with store.open_write("big.bin") as fh:
        for i in range(0, len(payload), 1 << 20):
            fh.write(payload[i : i + (1 << 20)])
    head = s3_bucket.client().head_object(Bucket=s3_bucket.name, Key="big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart ETag: <md5>-<parts>
    assert store.read_bytes("big.bin") == payload
    store.write_bytes("big2.bin", payload)
    assert store.size("big2.bin") == len(payload)


def test_s3_failed_multipart_is_aborted(s3_bucket, monkeypatch):
    monkeypatch.setattr(storage_mod, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(storage_mod, "MULTIPART_PART_SIZE", 5 * 1024 * 1024)
    store = s3_bucket.storage()
    client = store._client()
    real_upload_part = client.upload_part
    calls = []

    def flaky_upload_part(**kwargs):
        calls.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            raise ConnectionResetError("network dropped")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(client, "upload_part", flaky_upload_part)
    with pytest.raises(ConnectionResetError):
        store.write_bytes("big.bin", b"z" * (11 * 1024 * 1024))
    assert calls == [1, 2]
    assert not store.exists("big.bin")
    assert s3_bucket.client().list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []


def test_s3_check_and_missing_bucket(s3_server):
    opts = s3_server.storage_options()
    s3_server.make_bucket("present-bucket")
    open_storage("s3://present-bucket", **opts).check()
    missing = open_storage("s3://absent-bucket/p", **opts)
    for op in (missing.check, lambda: missing.exists("k"), lambda: list(missing.list())):
        with pytest.raises(StorageUnavailable) as info:
            op()
        assert "'absent-bucket'" in str(info.value) and s3_server.endpoint_url in str(info.value)
        assert "does not exist" in str(info.value)


def test_unreachable_endpoint_is_one_clear_error():
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = open_storage(
        "s3://data-bucket/x",
        endpoint_url=endpoint,
        access_key_id=SECRET_ID,
        secret_access_key=SECRET_KEY,
        max_attempts=2,
    )
    for op in (lambda: store.write_bytes("k", b"v"), lambda: store.read_bytes("k"), store.check):
        with pytest.raises(StorageUnavailable) as info:
            op()
        message = str(info.value)
        assert endpoint in message and "'data-bucket'" in message and "server is running" in message
        full = "".join(traceback.format_exception(info.value))  # including the chained cause
        assert SECRET_ID not in full and SECRET_KEY not in full


def test_hanging_endpoint_times_out_clearly(s3_bucket):
    store = S3Storage(
        s3_bucket.name, **s3_bucket.storage_options(), max_attempts=1, connect_timeout=1, read_timeout=0.5
    )
    store.write_bytes("k", b"v")
    s3_bucket.server.suspend()
    try:
        with pytest.raises(StorageUnavailable, match="stopped answering"):
            store.read_bytes("k")
    finally:
        s3_bucket.server.resume()
    assert store.read_bytes("k") == b"v"


def test_credentials_never_in_repr_or_str(s3_bucket):
    store = open_storage(
        f"s3://{s3_bucket.name}/p",
        endpoint_url=s3_bucket.endpoint_url,
        access_key_id=SECRET_ID,
        secret_access_key=SECRET_KEY,
    )
    store.write_bytes("k", b"v")  # moto accepts any credentials
    for text in (repr(store), str(store), store.uri, store.uri_of("k"), repr(store.child("c"))):
        assert SECRET_ID not in text and SECRET_KEY not in text
    with pytest.raises(FileNotFoundError) as info:
        store.read_bytes("missing")
    assert SECRET_KEY not in "".join(traceback.format_exception(info.value))


def test_default_credentials_come_from_environment(s3_bucket):
    # s3_bucket sets dummy AWS_* variables; no explicit keys and no ~/.aws needed.
    store = open_storage(s3_bucket.uri, endpoint_url=s3_bucket.endpoint_url)
    store.write_bytes("env", b"ok")
    assert store.read_bytes("env") == b"ok"


def test_s3_server_restart_keeps_endpoint():
    with S3Server() as server:
        endpoint = server.endpoint_url
        server.make_bucket("before")
        server.restart()
        assert server.endpoint_url == endpoint and server.running
        names = [b["Name"] for b in server.client().list_buckets()["Buckets"]]
        assert names == []  # moto state is in memory
    assert not server.running


def test_s3_to_s3_copy_stays_on_the_server(s3_bucket, s3_server, tmp_path, monkeypatch):
    """The export places stored images with a server-side copy when both ends are on one endpoint:
    no image bytes are read by this process; elsewhere (local, another account) it reads and writes."""
    from gbifdl_assets.export.imagefolder import copy_object

    images = s3_bucket.storage("images-store")
    out = s3_bucket.storage("exports/one")
    images.write_bytes("images/a.jpg", b"\xff\xd8 photo bytes")

    def no_reads(*args, **kwargs):
        raise AssertionError("the bytes went through this process")

    with monkeypatch.context() as mp:
        mp.setattr(type(images), "read_bytes", no_reads)
        mp.setattr(type(images), "open_read", no_reads)
        assert copy_object(images, "images/a.jpg", out, "train/0/a.jpg") == 14
    assert out.read_bytes("train/0/a.jpg") == b"\xff\xd8 photo bytes"
    with pytest.raises(FileNotFoundError, match="images/missing.jpg"):
        copy_object(images, "images/missing.jpg", out, "train/0/b.jpg")
    local = LocalStorage(tmp_path)  # another backend: read and written as before
    assert copy_object(images, "images/a.jpg", local, "train/0/a.jpg") == 14
    assert (tmp_path / "train/0/a.jpg").read_bytes() == b"\xff\xd8 photo bytes"
