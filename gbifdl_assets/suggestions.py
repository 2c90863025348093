"""Did-you-mean: match what the user typed against a closed list of names, forgivingly.

Specs, search parameters and annotation rules all validate names against fixed lists (ranks,
GBIF enums, field names). A near miss should be answered with the intended name, not only with
"invalid": these helpers find it with :mod:`difflib`, comparing names by a key that ignores
what people get wrong without meaning anything (case; for :func:`lookup_key` also separators).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gbifdl_assets.quoting import show

__all__ = ["close_matches", "lookup_key", "match_choice", "suggest"]


def lookup_key(name: str) -> str:
    """GBIF's lookup key for parameter names and enum values: upper case, no ``. _ -`` or spaces."""
    return re.sub(r"[\s._-]", "", name).upper()


def close_matches(
    value: str,
    options: Iterable[str],
    *,
    n: int = 1,
    cutoff: float = 0.6,
    key: Callable[[str], str] = str.upper,
) -> list[str]:
    """Up to ``n`` options closest to ``value``, best first, comparing ``key(value)`` with ``key(option)``."""
    by_key = {key(o): o for o in options}
    return [by_key[k] for k in difflib.get_close_matches(key(value), list(by_key), n=n, cutoff=cutoff)]


def suggest(value: str, options: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The option ``value`` most likely means (same :func:`lookup_key`, else the closest); None if none is close."""
    options = list(options)
    by_key = {lookup_key(o): o for o in options}
    if lookup_key(value) in by_key:
        return by_key[lookup_key(value)]
    close = close_matches(value, options, cutoff=cutoff, key=lookup_key)
    return close[0] if close else None


def match_choice(value: Any, options: Sequence[str], what: str) -> str:
    """Match ``value`` against ``options`` ignoring case and separators; ValueError with a did-you-mean otherwise.

    ``what`` names the kind of value in the message (``'rank'``, ``'kingdom'``, ``'country value'``).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected one of {', '.join(options)}; got {show(value)}")
    by_key = {lookup_key(o): o for o in options}
    if lookup_key(value) in by_key:
        return by_key[lookup_key(value)]
    suggestion = suggest(value, options)
    listing = f" (one of: {', '.join(options)})" if len(options) <= 12 else ""
    hint = f"; did you mean '{suggestion}'?{listing}" if suggestion else f"; use one of: {', '.join(options)}"
    if suggestion is None and len(options) > 12:
        hint = f"; see GBIF's list of {what} values"
    raise ValueError(f"'{value.strip()}' is not a valid {what}{hint}")
