"""The interface every storage backend implements (see the package docstring for its guarantees)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gbifdl_assets.storage.keys import validate_key
from gbifdl_assets.storage.staging import STALE_AFTER_SECONDS

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq


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

    def copy_within(self, src: Storage, src_key: str, key: str) -> int | None:
        """Copy ``src``'s object to ``key`` without the bytes passing through this process, when the
        backend can (an S3 server-side copy in the same account and endpoint); its size, or None when
        it cannot (the caller then reads and writes)."""
        return None

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
        import pyarrow.parquet as pq

        return pq.read_table(self._parquet_source(key), columns=columns)

    def parquet_file(self, key: str) -> pq.ParquetFile:
        """``key`` opened for reading in batches (``iter_batches``): the table is never whole in memory
        (a remote object is fetched compressed, as a file)."""
        import pyarrow.parquet as pq

        return pq.ParquetFile(self._parquet_source(key))

    def _parquet_source(self, key: str) -> Any:
        import pyarrow as pa

        path = self.local_path(key)
        if path is not None:
            if not path.is_file():
                raise self._not_found(key)
            return path
        return pa.BufferReader(self.read_bytes(key))

    def _not_found(self, key: str) -> FileNotFoundError:
        # A one-argument FileNotFoundError keeps str() exactly this message (setting errno/filename
        # would turn it into "[Errno 2] ...").
        return FileNotFoundError(f"no object {key!r} in storage {self.uri} (looked for {self.uri_of(key)})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    __str__ = __repr__
