"""The errors of the storage layer: what a user can fix in a storage URI, a key or a service."""

from __future__ import annotations

from gbifdl_assets.errors import GbifdlError


class StorageError(GbifdlError):
    """Base class of storage problems a user can fix (configuration, connectivity, bad keys)."""


class InvalidKeyError(StorageError, ValueError):
    """A key that is not a safe relative POSIX path."""


class StorageUnavailable(StorageError):
    """The storage backend cannot be used: endpoint unreachable, bucket missing, access refused."""
