"""The store's errors (besides :class:`~gbifdl_assets.annotations.model.RuleError` and
:class:`~gbifdl_assets.annotations.permissions.PermissionDenied`)."""

from __future__ import annotations

__all__ = ["Conflict", "NotFound", "StoreError"]


class StoreError(Exception):
    """Base of the store's errors (besides :class:`RuleError` and :class:`PermissionDenied`)."""


class NotFound(StoreError, LookupError):
    """No object with that id (or name)."""


class Conflict(StoreError, ValueError):
    """The request contradicts the stored state (a deleted object, a duplicate user, …)."""
