"""GBIF's conventions for query parameters: ``null`` for IS NULL, repeated or comma lists, paging."""

from __future__ import annotations

from typing import Any

from gbifdl_assets.annotations.model import RuleError
from gbifdl_assets.annotations.store.settings import DEFAULT_LIMIT, MAX_LIMIT

__all__ = ["clip_limit", "int_filter", "is_null", "listify"]


def is_null(value: Any) -> bool:
    """GBIF's convention: the literal text ``null`` in a filter means IS NULL."""
    return isinstance(value, str) and value.strip().lower() == "null"


def int_filter(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise RuleError(f"{name}={value!r} is not a number (or the literal null)") from None


def listify(value: Any) -> list[str]:
    """Repeated or comma-separated parameter values."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        out += [p.strip() for p in str(item).split(",") if p.strip()]
    return out


def clip_limit(limit: int | None, offset: int | None) -> tuple[int, int]:
    limit = DEFAULT_LIMIT if limit is None else int(limit)
    offset = 0 if offset is None else int(offset)
    if limit < 0 or offset < 0:
        raise RuleError(f"limit={limit} offset={offset}: neither may be negative")
    return min(limit, MAX_LIMIT), offset
