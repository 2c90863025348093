"""The one-line JSON summary every ``gbifdl`` command ends with, and the one-line error before it.

Scripts and CI read the last stdout line; people read stderr. Kept in one place so every command
prints the same shape (``ok``, ``command``, ``error``).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)


def fail(message: str, *, command: str | None = None, **extra: Any) -> int:
    """Print ``error: message`` to stderr and a failed summary to stdout; returns exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    summary: dict[str, Any] = {"ok": False, "error": message, **extra}
    if command:
        summary["command"] = command
    emit(summary)
    return 2
