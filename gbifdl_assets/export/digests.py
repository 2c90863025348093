"""A storage that remembers the sha256 and size of every object written through it.

``croissant.json`` lists every file of an export with its sha256. Hashing while writing costs one
pass over bytes already in memory; reading the files back would mean a second read of every
WebDataset shard (gigabytes, and a download on S3). Objects placed without going through
``open_write`` (hardlinked images) have no digest here; :meth:`DigestingStorage.digest` reads those.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gbifdl_assets.storage import Storage

__all__ = ["DigestingStorage"]


class _HashingWriter:
    """A binary file proxy that hashes what is written and passes everything else through."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += view.nbytes
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


class DigestingStorage(Storage):
    """Wraps ``inner``; ``digests[key]`` is ``(sha256 hex, bytes)`` of each object written."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.digests: dict[str, tuple[str, int]] = {}

    @contextlib.contextmanager
    def _open_write(self, key: str) -> Iterator[BinaryIO]:
        with self.inner.open_write(key) as fh:
            writer = _HashingWriter(fh)
            yield writer  # type: ignore[misc]
        self.digests[key] = (writer.sha.hexdigest(), writer.size)

    def digest(self, key: str) -> tuple[str, int]:
        """``(sha256 hex, bytes)`` of ``key``: remembered, else read and hashed."""
        if key not in self.digests:
            sha = hashlib.sha256()
            size = 0
            with self.inner.open_read(key) as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
                    size += len(chunk)
            self.digests[key] = (sha.hexdigest(), size)
        return self.digests[key]

    def open_read(self, key: str) -> BinaryIO:
        return self.inner.open_read(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.digests.pop(key, None)
        self.inner.delete(key)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def local_path(self, key: str) -> Path | None:
        # a caller writing through the path (a hardlink) bypasses the digest: forget any old one
        self.digests.pop(key, None)
        return self.inner.local_path(key)

    def child(self, prefix: str) -> Storage:
        return self.inner.child(prefix)
