"""The outcome of one check of a stage's output, as the stages report it and the Dagster layer wraps it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CheckOutcome"]


@dataclass(frozen=True)
class CheckOutcome:
    """One check of a stage's output: passed or not, and the facts behind it."""

    name: str
    passed: bool
    details: dict[str, Any]
    text: str  # what passing means
    warning: bool = False  # a failure warns (the output is usable) instead of blocking

    @property
    def description(self) -> str:
        if self.passed:
            return self.text
        if isinstance(self.details.get("message"), str):
            return f"{self.text} Failed: {self.details['message']}"
        # the scalar facts of the details, for a one-line description
        facts = ", ".join(f"{k}={v}" for k, v in self.details.items() if isinstance(v, int | float | str))
        return f"{self.text} Failed: {facts[:300]}"
