"""The sampling package's one user-facing error."""

from __future__ import annotations

from gbifdl_assets.errors import GbifdlError


class SamplingError(GbifdlError, ValueError):
    """A problem with the input table or the spec that the user must fix (one clear message)."""
