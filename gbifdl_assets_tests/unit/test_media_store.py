"""Image store: keys, atomic local writes, retries of transient storage errors only."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from gbifdl_assets.media import store as store_mod
from gbifdl_assets.media.store import ImageStore, is_transient_storage_error
from gbifdl_assets.storage import TMP_PREFIX, LocalStorage, StorageUnavailable

CK = hashlib.sha256(b"http://example.org/a.jpg").hexdigest()


def test_image_key_layout_and_validation() -> None:
    assert ImageStore.image_key(CK, "jpeg-512-q90", "jpg") == f"images/jpeg-512-q90/{CK[:2]}/{CK}.jpg"
    for bad in ("abc", CK.upper(), CK[:-1] + "g", "../" + CK[3:]):
        with pytest.raises(ValueError, match="sha256"):
            ImageStore.image_key(bad, "jpeg-512-q90", "jpg")
    assert ImageStore.variant_prefix("original") == "images/original/"


@pytest.mark.parametrize("linkat", [True, False])
def test_local_put_is_atomic_and_overwrites(tmp_path, monkeypatch: pytest.MonkeyPatch, linkat: bool) -> None:
    if not linkat:
        monkeypatch.setattr(store_mod, "_LINKAT", None)
    store = ImageStore(LocalStorage(tmp_path))
    key = ImageStore.image_key(CK, "v", "jpg")
    store.put(key, b"first")
    store.put(key, b"second")  # linkat cannot replace: falls back to rename
    assert store.read(key) == b"second"
    assert list(store.storage.list("images/")) == [key]
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(TMP_PREFIX)]
    assert leftovers == []
    store.sync()  # syncfs of the store's filesystem: must not fail
    assert store.exists(key)


def test_failed_local_write_leaves_nothing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(LocalStorage(tmp_path))
    key = ImageStore.image_key(CK, "v", "jpg")

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod.os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.put(key, b"data")
    monkeypatch.undo()
    assert not store.exists(key)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


class _FlakyStorage(LocalStorage):
    """Fails the first ``n`` writes with a given exception."""

    def __init__(self, root, n: int, exc: Exception) -> None:
        super().__init__(root)
        self.n = n
        self.exc = exc
        self.calls = 0

    def write_bytes(self, key: str, data: bytes) -> None:
        self.calls += 1
        if self.calls <= self.n:
            raise self.exc
        super().write_bytes(key, data)


def test_transient_errors_are_retried(tmp_path) -> None:
    outage = StorageUnavailable("cannot reach S3 endpoint")
    storage = _FlakyStorage(tmp_path, 3, outage)
    store = ImageStore(storage, sleep=lambda s: None, batched_durability=False)
    store.put(ImageStore.image_key(CK, "v", "jpg"), b"x")
    assert storage.calls == 4 and store.retries == 3


def test_retry_budget_then_clear_error(tmp_path) -> None:
    storage = _FlakyStorage(tmp_path, 10**6, StorageUnavailable("endpoint down"))
    store = ImageStore(storage, retry_seconds=0.05, retry_base=0.01, retry_max=0.01, batched_durability=False)
    with pytest.raises(StorageUnavailable, match="kept failing .* re-run"):
        store.put(ImageStore.image_key(CK, "v", "jpg"), b"x")


def test_permanent_errors_are_not_retried(tmp_path) -> None:
    storage = _FlakyStorage(tmp_path, 1, PermissionError(errno.EACCES, "denied"))
    store = ImageStore(storage, sleep=lambda s: pytest.fail("must not wait"), batched_durability=False)
    with pytest.raises(PermissionError):
        store.put(ImageStore.image_key(CK, "v", "jpg"), b"x")
    assert storage.calls == 1


def test_transient_classification() -> None:
    class _ClientError(Exception):
        def __init__(self, code: str, status: int) -> None:
            self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}

    def wrapped(cause: Exception) -> StorageUnavailable:
        exc = StorageUnavailable("S3 said no")
        exc.__cause__ = cause
        return exc

    assert is_transient_storage_error(StorageUnavailable("cannot reach S3 endpoint"))
    assert is_transient_storage_error(wrapped(_ClientError("SlowDown", 503)))
    assert is_transient_storage_error(wrapped(_ClientError("InternalError", 500)))
    assert not is_transient_storage_error(wrapped(_ClientError("AccessDenied", 403)))
    assert not is_transient_storage_error(wrapped(_ClientError("NoSuchBucket", 404)))
    assert not is_transient_storage_error(OSError(errno.ENOSPC, "full"))
    assert is_transient_storage_error(OSError(errno.EIO, "io"))
    assert not is_transient_storage_error(ValueError("bug"))
    assert not is_transient_storage_error(FileNotFoundError(os.strerror(errno.ENOENT)))
