"""The reader's errors: :class:`DwcaError` for the user, :class:`RowTooLong` for the block retry."""

from __future__ import annotations

from gbifdl_assets.errors import GbifdlError


class DwcaError(GbifdlError, ValueError):
    """A problem with an archive that the user must fix (the message names the archive and the fix)."""


class RowTooLong(DwcaError):
    """A line did not fit in one CSV block; retried with a larger block when allowed."""

    @classmethod
    def of(cls, label: str, block_size: int) -> RowTooLong:
        return cls(f"{label} has a line longer than the CSV block of {block_size} bytes")
