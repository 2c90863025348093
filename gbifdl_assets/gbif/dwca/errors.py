"""The reader's errors: :class:`DwcaError` for the user, :class:`_RowTooLong` for the block retry."""

from __future__ import annotations


class DwcaError(ValueError):
    """A problem with an archive that the user must fix (the message names the archive and the fix)."""


class _RowTooLong(DwcaError):
    """A line did not fit in one CSV block; retried with a larger block when allowed."""

    @classmethod
    def of(cls, label: str, block_size: int) -> _RowTooLong:
        return cls(f"{label} has a line longer than the CSV block of {block_size} bytes")
