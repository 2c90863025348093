"""The content-addressed image store: one object per (source URL, derivation), shared by training sets.

Layout inside a :class:`~gbifdl_assets.storage.Storage` (a local folder or an S3 prefix)::

    images/<variant>/<content_key[:2]>/<content_key>.<ext>    the images
    ledgers/<name>/…                                           status logs (see .ledger)

``content_key`` is the manifest's sha256 (hex) of the image URL, so the key is known before the
download and every training set listing the same URL addresses the same object: a second set finds
it in the first set's ledger and skips it (``already_stored``) instead of downloading it again.
``variant`` (e.g. ``jpeg-512-q90``, see ``ValidationOptions.variant``) names how the stored bytes
were derived, so sets with different image options never share a resized copy by mistake. The two
hex characters fan the keys out over 256 folders (local directories stay small; S3 spreads load).

Writes are atomic: an object is either absent or complete, and the ledger records ``ok`` only after
:meth:`ImageStore.put` returned. S3 objects go through the storage layer (PutObject makes them
visible whole). Local images take a faster path with the same visibility guarantee: a temporary file
(named like the storage layer's, so listings skip it) renamed over the target, but no fsync per
file: :meth:`ImageStore.sync` (one ``syncfs`` of the store's filesystem) runs before each ledger
segment is written, so every image a ledger entry claims is on disk before the claim. Measured on
the 2-core reference machine, two fsyncs per ~12 KB image (file and folder, what
``Storage.write_bytes`` does for single files) cost about half of the end-to-end throughput; one
``syncfs`` every few thousand images costs nothing visible. After a power cut, an image written
since the last sync may be empty on disk, but no ledger entry points at it, so the next run
fetches it again and overwrites it.
Transient storage errors (an S3 endpoint that is down, slow or answering 5xx) are retried with
exponential backoff and jitter for up to ``retry_seconds``; configuration errors (bucket missing,
access refused, local disk full) are raised at once.

The ledger is not trusted blindly: an object can vanish behind its back (an S3 bucket that lost
data, files deleted by hand). :meth:`ImageStore.missing_keys` tells which of a set of keys have no
object with one listing per variant prefix (paged by the storage layer: 1,000 keys per S3 request)
rather than one HEAD per object, which is what the downloader checks before trusting its ledger.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from gbifdl_assets.storage import LocalStorage, Storage, StorageUnavailable, staging_name, validate_key

__all__ = [
    "IMAGES_PREFIX",
    "LEDGERS_PREFIX",
    "ImageStore",
    "is_transient_storage_error",
    "listing_prefix",
]

IMAGES_PREFIX = "images"
LEDGERS_PREFIX = "ledgers"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PERMANENT_S3_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "InvalidBucketName",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidArgument",
}
_TRANSIENT_ERRNOS = {
    errno.EIO,
    errno.EAGAIN,
    errno.EINTR,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
}

T = TypeVar("T")


def listing_prefix(key: str) -> str:
    """The prefix one listing covers for ``key``: its variant folder (``images/<variant>/``).

    Listing whole variant folders keeps the request count at (objects / page size) however the keys
    of a ledger are spread over the 256 fan-out folders; a key outside the layout is its own prefix.
    """
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == IMAGES_PREFIX:
        return f"{parts[0]}/{parts[1]}/"
    return key


def is_transient_storage_error(exc: BaseException) -> bool:
    """True for errors worth retrying: endpoint unreachable or slow, throttling, 5xx."""
    if isinstance(exc, StorageUnavailable):
        cause = exc.__cause__
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in _PERMANENT_S3_CODES or status in (400, 403, 404):
                return False
        return True
    if isinstance(exc, OSError):
        # Local disks: only what a retry can cure (an NFS hiccup); ENOSPC, EROFS, EACCES… are not.
        return exc.errno in _TRANSIENT_ERRNOS
    return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _load_linkat() -> Callable[..., int] | None:
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).linkat
    except (OSError, AttributeError):
        return None


_LINKAT = _load_linkat()
_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def _write_linked(parent: Path, target: Path, data: bytes) -> bool:
    """Write into an unnamed file (O_TMPFILE) and give it its name once complete (linkat).

    Atomic like write-and-rename (the name only ever points at the complete file, and a crash
    leaves no temporary file behind) at about half the filesystem work, as the name is created once
    instead of created, then renamed. False when ``target`` already exists (linkat does not replace):
    the caller then takes the rename path.
    """
    fd = os.open(parent, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o666)
    try:
        _write_all(fd, data)
        if _LINKAT(
            _AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD, os.fsencode(target), _AT_SYMLINK_FOLLOW
        ):  # type: ignore[misc]
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                return False
            raise OSError(err, f"linkat to {target}: {os.strerror(err)}")
        return True
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    # Looked up once, in the symbols already loaded (like linkat above): ctypes.util.find_library
    # runs `ldconfig -p` in a subprocess on every call, i.e. a fork of this process at each ledger
    # flush (and a second copy of its memory in any per-process RSS sum while it ran).
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (Linux syncfs; os.sync elsewhere)."""
    syncfs = _SYNCFS
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


class ImageStore:
    """Images (and ledgers) in one :class:`Storage`; see the module docstring for the layout."""

    def __init__(
        self,
        storage: Storage,
        *,
        retry_seconds: float = 120.0,
        retry_base: float = 0.25,
        retry_max: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        batched_durability: bool = True,
    ) -> None:
        self.storage = storage
        #: local images: rename without fsync, made durable by sync() before the ledger claims them
        self.batched_durability = batched_durability and isinstance(storage, LocalStorage)
        self._dirs: set[Path] = set()
        self._dirty = False
        self._tmpfile_ok = True
        self._sync_lock = threading.Lock()
        self.retry_seconds = retry_seconds
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._sleep = sleep
        #: transient storage errors retried so far (for the run summary)
        self.retries = 0

    @property
    def uri(self) -> str:
        return self.storage.uri

    @property
    def is_local(self) -> bool:
        return isinstance(self.storage, LocalStorage)

    # ----------------------------------------------------------------------------- keys
    @staticmethod
    def variant_prefix(variant: str) -> str:
        return f"{IMAGES_PREFIX}/{validate_key(variant, what='image variant')}/"

    @staticmethod
    def image_key(content_key: str, variant: str, ext: str) -> str:
        """``images/<variant>/<ck[:2]>/<ck>.<ext>``; ``content_key`` must be 64 lowercase hex digits."""
        if not _HEX64.match(content_key or ""):
            raise ValueError(
                f"content_key {content_key!r} is not a sha256 hex digest (64 lowercase hex digits); "
                "it must be hashlib.sha256(url.encode()).hexdigest()"
            )
        return f"{IMAGES_PREFIX}/{variant}/{content_key[:2]}/{content_key}.{ext}"

    # ------------------------------------------------------------------------------ I/O
    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically under ``key``, retrying transient errors (blocking)."""
        if self.batched_durability:
            self.with_retries(lambda: self._put_local(key, data), what=f"writing {key}")
        else:
            self.with_retries(lambda: self.storage.write_bytes(key, data), what=f"writing {key}")

    def _put_local(self, key: str, data: bytes) -> None:
        path = self.storage.local_path(key)
        assert path is not None
        parent = path.parent
        if parent not in self._dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(parent)
        if _LINKAT is not None and self._tmpfile_ok:
            try:
                if _write_linked(parent, path, data):
                    self._dirty = True
                    return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV):
                    raise
                self._tmpfile_ok = False  # filesystem without O_TMPFILE (or no /proc): rename path
        # staging_name records host and pid: a sweep of this folder removes a killed writer's file at
        # once rather than after an hour (see LocalStorage.cleanup).
        tmp = parent / staging_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        self._dirty = True
        os.replace(tmp, path)

    def mark_dirty(self) -> None:
        """Another process wrote images into this store: the next :meth:`sync` must not be skipped."""
        self._dirty = True

    def sync(self) -> None:
        """Make every image written so far durable (local: one syncfs; S3 objects already are)."""
        if not self.batched_durability or not self._dirty:
            return
        with self._sync_lock:
            self._dirty = False
            root = self.storage.local_path(IMAGES_PREFIX)
            assert root is not None
            _syncfs(root if root.exists() else root.parent)

    def read(self, key: str) -> bytes:
        return self.with_retries(lambda: self.storage.read_bytes(key), what=f"reading {key}")

    def exists(self, key: str) -> bool:
        return self.with_retries(lambda: self.storage.exists(key), what=f"checking {key}")

    def missing_keys(self, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` that have no object in the store (blocking, retried).

        One listing per variant prefix the keys fall in, not one HEAD per key: on S3 a listing page
        answers 1,000 keys, so checking N stored images costs about N/1000 requests (and a local
        store one directory walk). Memory is the set of ``keys`` plus one listing's keys (the local
        backend sorts each listing in memory); the listing streams past the set.
        """
        pending = set(keys)
        if not pending:
            return set()
        prefixes = sorted({listing_prefix(k) for k in pending})

        def scan() -> set[str]:
            left = set(pending)
            for prefix in prefixes:
                for key in self.storage.list(prefix):
                    left.discard(key)
            return left

        # A listing interrupted by a transient error is started again from scratch (simplest, and
        # listings are cheap next to the downloads this check protects).
        return self.with_retries(scan, what=f"listing {', '.join(prefixes[:3])}")

    def with_retries(self, action: Callable[[], T], *, what: str) -> T:
        """Run ``action``; retry transient storage errors with backoff for up to ``retry_seconds``."""
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                return action()
            except Exception as exc:
                if not is_transient_storage_error(exc):
                    raise
                attempt += 1
                delay = random.uniform(0, min(self.retry_max, self.retry_base * 2**attempt))
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailable(
                        f"{what} in {self.storage.uri} kept failing for {self.retry_seconds:.0f} s "
                        f"({attempt} attempts): {exc}. Nothing half-written was recorded; fix the storage "
                        "and re-run: the run resumes from its ledger"
                    ) from exc
                self.retries += 1
                self._sleep(delay)

    def __repr__(self) -> str:
        return f"ImageStore({self.storage.uri!r})"
