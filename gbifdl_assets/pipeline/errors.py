"""The one error a stage raises when it cannot produce its output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.gbif.errors import GbifRateLimited, GbifUnavailable


class StageError(GbifdlError):
    """A stage could not produce its output; the message says what failed and what to do.

    ``transient``: waiting can fix it (GBIF unavailable or rate-limiting), so a retry may succeed;
    otherwise a retry fails the same way (a missing input, a spec asking for what does not exist).
    ``metadata``: facts worth showing next to the message (a download key and its status).
    """

    def __init__(self, message: str, *, transient: bool = False, metadata: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.transient = transient
        self.metadata = dict(metadata or {})


def service_failure(step: str, exc: Exception) -> StageError:
    """``<step>: <exc>`` for an error of GBIF or of its data; transient when GBIF is unavailable or
    rate-limiting (only waiting helps then)."""
    return StageError(f"{step}: {exc}", transient=isinstance(exc, GbifUnavailable | GbifRateLimited))
