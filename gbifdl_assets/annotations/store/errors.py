"""The store's errors (besides :class:`~gbifdl_assets.annotations.model.RuleError` and
:class:`~gbifdl_assets.annotations.permissions.PermissionDenied`); like every user-facing error of the
library they derive from :class:`~gbifdl_assets.errors.GbifdlError`."""

from __future__ import annotations

from gbifdl_assets.errors import GbifdlError

__all__ = ["Conflict", "DuplicateRule", "NotFound", "StoreError"]


class StoreError(GbifdlError):
    """Base of the store's errors (besides :class:`RuleError` and :class:`PermissionDenied`)."""


class NotFound(StoreError, LookupError):
    """No object with that id (or name)."""


class Conflict(StoreError, ValueError):
    """The request contradicts the stored state (a deleted object, a duplicate user, …)."""


class DuplicateRule(Conflict):
    """An identical live rule exists already; ``existing_id`` is its id (support it instead)."""

    def __init__(self, message: str, existing_id: int) -> None:
        super().__init__(message)
        self.existing_id = existing_id
