"""Where the store lives by default, and the limits and names every part of the store shares."""

from __future__ import annotations

import os

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_STORE_URL",
    "LOCAL_SOURCE",
    "MAX_LIMIT",
    "SCHEMA_VERSION",
    "default_store_url",
]

DEFAULT_STORE_URL = "sqlite:///data/annotations.sqlite"
SCHEMA_VERSION = 1
#: GBIF's list defaults (no maximum at GBIF; we cap to keep one request bounded)
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
#: where a rule was made; mirrored sources are read-only here
LOCAL_SOURCE = "local"


def default_store_url() -> str:
    """``GBIFDL_ANNOTATIONS_DB`` or ``sqlite:///data/annotations.sqlite``."""
    return os.environ.get("GBIFDL_ANNOTATIONS_DB") or DEFAULT_STORE_URL
