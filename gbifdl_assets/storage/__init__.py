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

The modules: ``errors`` (the error classes), ``keys`` (what a key may be), ``base`` (the
:class:`Storage` interface), ``staging`` (staging files of local writes and their sweeping),
``local`` (:class:`LocalStorage`), ``s3`` (:class:`S3Storage`, with its multipart tunables),
``layout`` (every key the pipeline's stages use, and the commit rule for their newest output); this
``__init__`` holds :func:`open_storage`, which picks the backend for a URI.

This package is part of the core and must not import dagster.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from gbifdl_assets.storage.base import Storage
from gbifdl_assets.storage.errors import InvalidKeyError, StorageError, StorageUnavailable
from gbifdl_assets.storage.keys import join_key, validate_key
from gbifdl_assets.storage.local import LocalStorage
from gbifdl_assets.storage.s3 import S3Storage
from gbifdl_assets.storage.staging import STALE_AFTER_SECONDS, TMP_PREFIX, staging_name

__all__ = [
    "STALE_AFTER_SECONDS",
    "TMP_PREFIX",
    "InvalidKeyError",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "join_key",
    "open_storage",
    "staging_name",
    "validate_key",
]


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
