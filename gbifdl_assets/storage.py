"""Where data lives: a local folder or an S3-compatible bucket, behind one small interface.

Every stage writes its Parquet tables, images and archives through a :class:`Storage`, so the same
pipeline runs on a laptop (``/data/gbifdl``) and on a cluster (``s3://bucket/prefix`` on MinIO,
Ceph or AWS). Guarantees that both backends keep:

* **Atomic writes.** A reader sees either the old object or the complete new one, never a partial
  one, and a failed write (an exception inside ``open_write``) leaves nothing behind. Local files are
  written to a temporary file in the same folder, fsynced and renamed over the target; S3 objects are
  only visible once a PutObject or CompleteMultipartUpload succeeds, so the data is staged in a
  spooled temporary file first and uploaded at the end (multipart uploads are aborted on failure).
* **Keys are relative POSIX paths** (``snapshots/v1/part-0.parquet``). Absolute paths, ``..``,
  ``.``, empty segments and backslashes are rejected, so a key can never escape the storage root.
* **Clear errors.** A missing key raises :class:`FileNotFoundError` naming the storage and the key;
  an unreachable endpoint, a missing bucket or refused credentials raise :class:`StorageUnavailable`
  naming the endpoint and bucket and what to check. Credentials never appear in ``repr``/``str`` or
  in error messages.

This module is part of the core and must not import dagster.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "InvalidKeyError",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "open_storage",
    "staging_name",
    "validate_key",
]

#: Temporary files of in-flight local writes start with this; ``list`` never returns them.
TMP_PREFIX = ".gbifdl-tmp-"
#: A staging file nobody has modified for this long is abandoned, whoever wrote it (see
#: :meth:`LocalStorage.cleanup`). Live writes touch their file all the time; an hour of silence is a
#: writer that was killed on another machine (where its pid cannot be checked).
STALE_AFTER_SECONDS = 3600.0
#: A process sweeps a folder for abandoned staging files on its first write there, then at most this often.
SWEEP_INTERVAL_SECONDS = 600.0
#: Up to this size an S3 write is one PutObject; above it, a multipart upload.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
#: Part size for multipart uploads (S3 requires >= 5 MiB for all but the last part).
MULTIPART_PART_SIZE = 16 * 1024 * 1024
#: ``open_write`` on S3 keeps this much in memory before spilling to a temporary file.
SPOOL_MAX_MEMORY = 8 * 1024 * 1024

_ACCESS_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class StorageError(Exception):
    """Base class of storage problems a user can fix (configuration, connectivity, bad keys)."""


class InvalidKeyError(StorageError, ValueError):
    """A key that is not a safe relative POSIX path."""


class StorageUnavailable(StorageError):
    """The storage backend cannot be used: endpoint unreachable, bucket missing, access refused."""


def validate_key(key: str, *, allow_empty: bool = False, what: str = "key") -> str:
    """Return ``key`` if it is a safe relative POSIX path, else raise :class:`InvalidKeyError`.

    Why so strict: keys come from specs, partition names and GBIF data (species names, media URLs).
    A key that could climb out of the storage root (``../x``, ``/etc/x``) or that means different
    things on a filesystem and in S3 (``a//b``, ``a/./b``, ``a\\b``) must never reach either backend.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"storage {what} must be a string, got {type(key).__name__}: {key!r}")
    if key == "":
        if allow_empty:
            return key
        raise InvalidKeyError(
            f"storage {what} is empty: give a relative path such as 'tables/part-0.parquet'"
        )
    problem = None
    if key.startswith("/"):
        problem = "is absolute (starts with '/')"
    elif "\\" in key:
        problem = "contains a backslash; use '/' to separate folders"
    elif "\x00" in key:
        problem = "contains a NUL character"
    else:
        parts = key.split("/")
        body = parts[:-1] if allow_empty and key.endswith("/") else parts
        if any(p == ".." for p in parts):
            problem = "contains a '..' segment"
        elif any(p == "." for p in parts):
            problem = "contains a '.' segment"
        elif any(p == "" for p in body):
            problem = "has an empty segment ('//' or a trailing '/')"
    if problem:
        raise InvalidKeyError(
            f"invalid storage {what} {key!r}: it {problem}. Keys are relative POSIX paths "
            "inside the storage root, e.g. 'snapshots/v1/occurrences.parquet'."
        )
    return key


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix and key else prefix or key


class Storage(ABC):
    """A flat namespace of objects addressed by relative POSIX keys (see the module docstring)."""

    #: ``file:///abs/path`` or ``s3://bucket/prefix``; safe to log (never contains credentials).
    uri: str

    # ------------------------------------------------------------ abstract
    def open_write(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Context manager yielding a binary file; the object appears only after a clean exit.

        The key is checked here, at the call, not when the with-block is entered.
        """
        validate_key(key)
        return self._open_write(key)

    @abstractmethod
    def _open_write(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A binary file-like object for reading (caller closes it). FileNotFoundError if missing."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a plain string prefix, as in S3), in sorted order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error (as in S3)."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes. FileNotFoundError if missing."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """Filesystem path of ``key`` for local storage (may not exist yet), None for S3."""

    @abstractmethod
    def child(self, prefix: str) -> Storage:
        """A storage rooted at ``prefix`` inside this one (e.g. one folder per training set)."""

    def cleanup(self, prefix: str = "", *, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
        """Remove what killed writers left behind under ``prefix``; returns the keys concerned.

        Local storage removes abandoned staging files, S3 aborts abandoned multipart uploads (see
        the subclasses); a backend that stages nothing inside the storage has nothing to remove.
        """
        validate_key(prefix, allow_empty=True, what="prefix")
        return []

    # ------------------------------------------------------------- generic
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically."""
        with self.open_write(key) as fh:
            fh.write(data)

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def uri_of(self, key: str) -> str:
        """Full URI of ``key`` (for manifests, logs and error messages)."""
        validate_key(key)
        return f"{self.uri.rstrip('/')}/{key}"

    def write_parquet(self, key: str, table: pa.Table, *, compression: str = "zstd") -> int:
        """Write ``table`` as Parquet atomically; return the number of bytes written."""
        import pyarrow.parquet as pq

        with self.open_write(key) as fh:
            pq.write_table(table, fh, compression=compression)
            return fh.tell()

    def read_parquet(self, key: str, *, columns: list[str] | None = None) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.local_path(key)
        if path is not None:
            if not path.is_file():
                raise self._not_found(key)
            return pq.read_table(path, columns=columns)
        return pq.read_table(pa.BufferReader(self.read_bytes(key)), columns=columns)

    def _not_found(self, key: str) -> FileNotFoundError:
        # A one-argument FileNotFoundError keeps str() exactly this message (setting errno/filename
        # would turn it into "[Errno 2] ...").
        return FileNotFoundError(f"no object {key!r} in storage {self.uri} (looked for {self.uri_of(key)})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    __str__ = __repr__


# ---------------------------------------------------------------------------------------- local
class LocalStorage(Storage):
    """A folder on the local filesystem. The folder is created on the first write."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def uri_of(self, key: str) -> str:
        return self._path(key).as_uri()

    def child(self, prefix: str) -> LocalStorage:
        return LocalStorage(self._path(prefix.rstrip("/")))

    @contextlib.contextmanager
    def _open_write(self, key: str) -> Iterator[BinaryIO]:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_on_write(self.root, target.parent)
        tmp = target.parent / staging_name()
        # os.open with 0o666 lets the umask decide permissions, like a plain open() would;
        # NamedTemporaryFile would leave every stored file at 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        fh = os.fdopen(fd, "wb")
        try:
            yield fh  # type: ignore[misc]
            if fh.closed:  # the caller closed it early; reopen just to make the data durable
                with open(tmp, "rb+") as again:
                    os.fsync(again.fileno())
            else:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            os.replace(tmp, target)
        except BaseException:
            fh.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(target.parent)

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(key)
        return path.stat().st_size

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _walk(self, prefix: str) -> Iterator[tuple[str, str, list[str]]]:
        """(folder path, folder key, file names) of the folders that can hold keys under ``prefix``.

        Only the folder the prefix points into is walked, not the whole tree; folders that cannot
        contain a matching key and staging folders are pruned.
        """
        validate_key(prefix, allow_empty=True, what="prefix")
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / base_rel if base_rel else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            dirnames[:] = [
                d
                for d in dirnames
                if _could_match(_join(rel_dir, d) + "/", prefix) and not d.startswith(TMP_PREFIX)
            ]
            yield dirpath, rel_dir, filenames

    def list(self, prefix: str = "") -> Iterator[str]:
        found: list[str] = []
        for _, rel_dir, filenames in self._walk(prefix):
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                key = _join(rel_dir, name)
                if key.startswith(prefix):
                    found.append(key)
        return iter(sorted(found))

    def cleanup(self, prefix: str = "", *, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
        """Remove abandoned staging files (``.gbifdl-tmp-*``) in the folders under ``prefix``.

        A staging file is abandoned when its writer is known to be dead (its name records host and
        pid, see :func:`staging_name`, and that process is gone on this host) or when nobody has
        modified it for ``stale_after`` seconds. A live write, by this process or by a concurrent run,
        is never removed: its pid is alive and it keeps touching its file. Staging *folders* (export
        trees) are left alone. Returns the removed files as paths relative to the root.
        """
        removed: list[str] = []
        for dirpath, rel_dir, _ in self._walk(prefix):
            keys = _remove_stale(
                Path(dirpath), stale_after, wanted=lambda name, d=rel_dir: _join(d, name).startswith(prefix)
            )
            removed += [_join(rel_dir, name) for name in keys]
        return sorted(removed)


def _could_match(folder_prefix: str, prefix: str) -> bool:
    """True if keys under ``folder_prefix`` ('a/b/') can start with ``prefix``."""
    return folder_prefix.startswith(prefix) or prefix.startswith(folder_prefix)


def _writer_tag() -> str:
    """This machine and pid namespace, so that a pid in a staging name is only checked where it
    means the same process (containers sharing a hostname have their own pid namespaces)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


_WRITER_TAG = _writer_tag()
# .gbifdl-tmp-<writer tag>-<pid>-<random>[suffix]; other staging names (older releases, other
# modules) carry no pid and are judged by age alone.
_STAGING_RE = re.compile(re.escape(TMP_PREFIX) + r"(?P<tag>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{32}")


def staging_name(suffix: str = "") -> str:
    """A name for a staging file that records who writes it (machine, pid), for :meth:`LocalStorage.cleanup`."""
    return f"{TMP_PREFIX}{_WRITER_TAG}-{os.getpid()}-{uuid.uuid4().hex}{suffix}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return True  # cannot tell: keep the file
    return True


def _is_abandoned(path: Path, name: str, stale_after: float, now: float) -> bool:
    match = _STAGING_RE.match(name)
    if match and match["tag"] == _WRITER_TAG and not _pid_alive(int(match["pid"])):
        return True
    try:
        return now - path.stat().st_mtime > stale_after
    except FileNotFoundError:
        return False  # committed or removed meanwhile


def _remove_stale(
    folder: Path, stale_after: float, wanted: Callable[[str], bool] = lambda name: True
) -> list[str]:
    """Remove the abandoned staging files directly in ``folder`` (those ``wanted``); their names."""
    now = time.time()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX) or not wanted(entry.name):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if _is_abandoned(path, entry.name, stale_after, now):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(entry.name)
    return removed


_SWEPT: dict[Path, float] = {}
_SWEPT_LOCK = threading.Lock()


def _sweep_on_write(root: Path, folder: Path) -> None:
    """Before a write into ``folder``: remove abandoned staging files there and in the folders above
    it up to the storage root (a crashed snapshot ingest stages one level above the snapshot it
    would have committed), at most once per folder every SWEEP_INTERVAL_SECONDS in this process, so
    a burst of writes (images) lists each folder once, not once per file."""
    now = time.monotonic()
    folders = [folder, *(p for p in folder.parents if p == root or root in p.parents)]
    with _SWEPT_LOCK:
        due = [f for f in folders if now - _SWEPT.get(f, -SWEEP_INTERVAL_SECONDS) >= SWEEP_INTERVAL_SECONDS]
        for f in due:
            _SWEPT[f] = now
    for f in due:
        with contextlib.suppress(OSError):  # housekeeping must never fail a write
            _remove_stale(f, STALE_AFTER_SECONDS)


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not supported on every platform/filesystem, which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------- S3
_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def _shared_loader() -> Any:
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            import botocore.loaders

            _LOADER = botocore.loaders.create_loader()
        return _LOADER


class S3Storage(Storage):
    """Objects under ``prefix`` in an S3-compatible bucket (AWS, MinIO, Ceph, moto).

    Credentials: explicit ``access_key_id``/``secret_access_key``, else boto3's usual chain
    (environment variables, shared config files, instance metadata). A custom ``endpoint_url``
    switches to path-style addressing and to checksums "when required", which S3-compatible
    servers expect. The boto3 client is created lazily, so constructing a storage never does I/O;
    call :meth:`check` to fail fast on a wrong endpoint, bucket or credentials.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        region_name: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if not _BUCKET_RE.match(bucket or ""):
            raise StorageError(
                f"invalid S3 bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
                "starting and ending with a letter or digit"
            )
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix, what="prefix")
        if (access_key_id is None) != (secret_access_key is None):
            raise StorageError(
                "S3 credentials are incomplete: give both access_key_id and secret_access_key, "
                "or neither (then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS config are used)"
            )
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = (
            endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.region_name = (
            region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._client_options = {
            "max_attempts": max_attempts,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        self._client_obj: Any = None
        self._lock = threading.Lock()
        self._bucket_checked = False

    # ----------------------------------------------------------- plumbing
    @property
    def endpoint(self) -> str:
        """The endpoint for messages: the configured one, or AWS's regional default."""
        return self.endpoint_url or f"https://s3.{self.region_name}.amazonaws.com"

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                import boto3
                import botocore.session
                from botocore.config import Config

                key_id, secret, token = self._credentials
                # A fresh botocore session per storage keeps credential resolution independent (the
                # default chain is read when the client is made), while the shared loader avoids
                # re-parsing the S3 service model each time (~65 ms -> ~15 ms per client).
                botocore_session = botocore.session.Session()
                botocore_session.register_component("data_loader", _shared_loader())
                session = boto3.session.Session(
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    aws_session_token=token,
                    region_name=self.region_name,
                    botocore_session=botocore_session,
                )
                extra: dict[str, Any] = {}
                if self.endpoint_url:
                    extra = {
                        "s3": {"addressing_style": "path"},
                        # Newer botocore adds CRC checksums to every upload by default, which some
                        # S3-compatible servers reject; send them only where the API requires them.
                        "request_checksum_calculation": "when_required",
                        "response_checksum_validation": "when_required",
                    }
                config = Config(
                    retries={"max_attempts": self._client_options["max_attempts"], "mode": "standard"},
                    connect_timeout=self._client_options["connect_timeout"],
                    read_timeout=self._client_options["read_timeout"],
                    max_pool_connections=32,
                    **extra,
                )
                self._client_obj = session.client("s3", endpoint_url=self.endpoint_url, config=config)
            return self._client_obj

    def __getstate__(self) -> dict[str, Any]:
        # boto3 clients and locks do not pickle; rebuild them lazily in the other process.
        state = self.__dict__.copy()
        state["_client_obj"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Storage({self.uri!r}{endpoint})"

    __str__ = __repr__

    def _key(self, key: str) -> str:
        return _join(self.prefix, validate_key(key))

    def _scrub(self, text: str) -> str:
        for secret in self._credentials:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _translate(self, exc: Exception, key: str | None) -> Exception:
        """Map a botocore exception to FileNotFoundError / StorageUnavailable with a clear message."""
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        where = f"bucket {self.bucket!r} at endpoint {self.endpoint}"
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = self._scrub(f"{code}: {err.get('Message', '')}".strip(": "))
            if code in {"NoSuchBucket"} or (key is None and code in {"404", "NotFound"}):
                return StorageUnavailable(
                    f"S3 {where} does not exist: create it or fix the bucket name in {self.uri!r}"
                )
            if key is not None and code in {"NoSuchKey", "404", "NotFound"}:
                return self._not_found(key)
            if code in _ACCESS_DENIED_CODES or status == 403:
                return StorageUnavailable(
                    f"S3 refused access to {where} ({detail}): check the access key and secret "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the storage configuration) and the "
                    "bucket policy"
                )
            return StorageUnavailable(f"S3 request to {where} failed ({detail or status})")
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return StorageUnavailable(
                f"cannot reach S3 endpoint {self.endpoint} (bucket {self.bucket!r}): check that the "
                "server is running and that endpoint_url / AWS_ENDPOINT_URL is right"
            )
        if isinstance(exc, ReadTimeoutError):
            return StorageUnavailable(
                f"S3 endpoint {self.endpoint} (bucket {self.bucket!r}) stopped answering (read timeout): "
                "check the server's health and network"
            )
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageUnavailable(
                f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
                "pass access_key_id/secret_access_key"
            )
        return exc

    @contextlib.contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            translated = self._translate(exc, key)
            if translated is exc:
                raise StorageUnavailable(
                    f"S3 request to bucket {self.bucket!r} at endpoint {self.endpoint} failed: "
                    f"{self._scrub(str(exc))}"
                ) from exc
            raise translated from exc

    # ----------------------------------------------------------------- API
    def check(self) -> None:
        """Fail fast with :class:`StorageUnavailable` if the endpoint, bucket or credentials are wrong."""
        with self._errors(None):
            self._client().head_bucket(Bucket=self.bucket)

    def local_path(self, key: str) -> Path | None:
        validate_key(key)
        return None

    def child(self, prefix: str) -> S3Storage:
        sub = S3Storage.__new__(S3Storage)
        sub.__dict__.update(self.__getstate__())
        sub._lock = threading.Lock()
        sub.prefix = _join(self.prefix, validate_key(prefix.rstrip("/"), what="prefix"))
        sub.uri = f"s3://{self.bucket}/{sub.prefix}"
        return sub

    def write_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        if len(data) <= MULTIPART_THRESHOLD:
            with self._errors(key):
                self._client().put_object(Bucket=self.bucket, Key=full, Body=data)
        else:
            self._multipart_upload(key, io.BytesIO(data))

    @contextlib.contextmanager
    def _open_write(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        # Stage locally: nothing is sent until the block finishes cleanly, so an exception in the
        # block can never leave a partial (or any) object behind.
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY, prefix=TMP_PREFIX) as spool:
            yield spool  # type: ignore[misc]
            if spool.closed:
                raise StorageError(
                    f"the file for {self.uri_of(key)} was closed inside the open_write block, so its "
                    "data is lost and nothing was uploaded: let the with-statement close it"
                )
            spool.seek(0, io.SEEK_END)
            size = spool.tell()
            spool.seek(0)
            if size <= MULTIPART_THRESHOLD:
                with self._errors(key):
                    self._client().put_object(Bucket=self.bucket, Key=full, Body=spool.read())
            else:
                self._multipart_upload(key, spool)

    def _multipart_upload(self, key: str, source: IO[bytes]) -> None:
        full = self._key(key)
        client = self._client()
        with self._errors(key):
            upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
        try:
            parts = []
            number = 1
            while chunk := source.read(MULTIPART_PART_SIZE):
                with self._errors(key):
                    resp = client.upload_part(
                        Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                number += 1
            with self._errors(key):
                client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            # Uploaded parts cost storage until aborted, and are never visible as an object.
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def open_read(self, key: str) -> BinaryIO:
        with self._errors(key):
            return self._client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            body = self._client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        try:
            with self._errors(key):
                head = self._client().head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            # HEAD answers a bare 404 both for a missing key and a missing bucket; tell them apart
            # once, so a typo in the bucket name is not reported as "every object is missing".
            if not self._bucket_checked:
                self.check()
                self._bucket_checked = True
            raise
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        with self._errors(key):
            self._client().delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_key(prefix, allow_empty=True, what="prefix")
        return self._list(prefix)

    def cleanup(self, prefix: str = "", *, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
        """Abort the abandoned multipart uploads of keys under ``prefix``; returns their keys.

        How S3 writes are done (``write_bytes``/``open_write``): the data is staged on the writer's
        machine; up to MULTIPART_THRESHOLD (16 MiB) it is sent in one PutObject, which leaves nothing
        behind when the writer dies; above it ``_multipart_upload`` (our own loop of
        CreateMultipartUpload/UploadPart/CompleteMultipartUpload, not boto3's upload_fileobj)
        aborts the upload on any exception. Only a writer that dies without running its handler
        (kill -9, power loss, the network gone during the abort) leaves an unfinished upload, whose
        parts are billed until it is aborted but which never becomes a visible object.

        An upload is abandoned when it was initiated more than ``stale_after`` seconds ago *and*
        none of its parts was uploaded in that time: initiation alone would condemn a live writer
        whose large upload simply takes longer than ``stale_after``, while a live writer sends a
        part every few seconds. Upload names carry no pid to check, so age is the only test (the
        comparison uses the server's timestamps against this machine's clock, so keep
        ``stale_after`` well above any clock skew). A key is listed once per upload aborted.
        """
        validate_key(prefix, allow_empty=True, what="prefix")
        base = f"{self.prefix}/" if self.prefix else ""
        client = self._client()
        cutoff = time.time() - stale_after
        aborted: list[str] = []
        with self._errors(None):
            pages = client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                for upload in page.get("Uploads", ()):
                    full, upload_id = upload["Key"], upload["UploadId"]
                    if not full.startswith(base + prefix) or upload["Initiated"].timestamp() >= cutoff:
                        continue
                    if self._upload_active_since(full, upload_id, cutoff):
                        continue
                    try:
                        client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
                    except client.exceptions.NoSuchUpload:
                        continue  # completed or aborted meanwhile (by its writer or another sweep)
                    aborted.append(full[len(base) :])
        return sorted(aborted)

    def _upload_active_since(self, full: str, upload_id: str, cutoff: float) -> bool:
        """True if a part of the upload was sent after ``cutoff`` (or it is already gone)."""
        client = self._client()
        try:
            for page in client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=full, UploadId=upload_id
            ):
                if any(part["LastModified"].timestamp() >= cutoff for part in page.get("Parts", ())):
                    return True
        except client.exceptions.NoSuchUpload:
            return True  # nothing left to abort
        return False

    def _list(self, prefix: str, page_size: int = 1000) -> Iterator[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client().get_paginator("list_objects_v2")
        with self._errors(None):
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": page_size}
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(base) :]
                    if name and not name.endswith("/"):  # skip "folder" marker objects
                        yield name


# ------------------------------------------------------------------------------------ factory
def open_storage(
    uri: str | os.PathLike[str],
    *,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region_name: str | None = None,
    session_token: str | None = None,
    max_attempts: int = 5,
) -> Storage:
    """A storage for ``uri``: ``/path``, ``relative/path``, ``file:///path`` or ``s3://bucket[/prefix]``."""
    if isinstance(uri, os.PathLike):
        return LocalStorage(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise StorageError(
            f"storage URI {uri!r} is empty: give a folder ('/data/gbifdl') or a bucket ('s3://bucket/prefix')"
        )
    uri = uri.strip()
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise StorageError(f"storage URI {uri!r} has no bucket: use 's3://<bucket>/<optional prefix>'")
        if parts.query or parts.fragment:
            raise StorageError(
                f"storage URI {uri!r} must not contain '?' or '#': use 's3://<bucket>/<prefix>'"
            )
        return S3Storage(
            parts.netloc,
            parts.path.strip("/"),
            endpoint_url=endpoint_url,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            region_name=region_name,
            max_attempts=max_attempts,
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(
                f"storage URI {uri!r} names a remote host {parts.netloc!r}: use 'file:///absolute/path'"
            )
        return LocalStorage(unquote(parts.path))
    if scheme and len(scheme) > 1:  # one letter: a Windows drive such as C:\data
        raise StorageError(
            f"unsupported storage URI scheme {parts.scheme!r} in {uri!r}: use a folder path, "
            "'file:///path' or 's3://bucket/prefix' (S3-compatible servers via endpoint_url)"
        )
    return LocalStorage(uri)
