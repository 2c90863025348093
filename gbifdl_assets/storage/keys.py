"""Storage keys: the one rule of what a key may look like, and how keys are joined.

Both backends address objects by relative POSIX keys (``snapshots/v1/part-0.parquet``); checking
them here, in one place, is what keeps a key from escaping the storage root on either backend.
"""

from __future__ import annotations

from gbifdl_assets.storage.errors import InvalidKeyError


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


def join_key(prefix: str, key: str) -> str:
    """``prefix/key``, or whichever of the two is not empty (keys and prefixes are already valid)."""
    return f"{prefix}/{key}" if prefix and key else prefix or key
