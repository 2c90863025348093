"""How a value the user wrote is quoted in an error message.

Messages name the offending value so the user can find it in their file; a long value (a WKT
polygon, a pasted list) is cut so the message stays one readable line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["describe", "show"]


def show(value: Any) -> str:
    """``repr`` of the value, at most 60 characters; ``nothing (null)`` for None."""
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(value: Any) -> str:
    """:func:`show` with the kind of value in front when the kind is the problem (``a list [...]``)."""
    kind = {dict: "a mapping", list: "a list", bool: "a boolean", float: "a number"}.get(type(value))
    return f"{kind} {show(value)}" if kind else show(value)
