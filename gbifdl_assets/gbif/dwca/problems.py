"""What was wrong in a data file and skipped or repaired: ragged lines and replaced bytes, per file.

Counted by the parser (ragged lines) and by the conversion (bytes that are not UTF-8), read by the
ingest report.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gbifdl_assets.gbif.dwca")  # one logger name for the whole reader

#: ragged-row line numbers kept per file for the report (the count is always complete)
MAX_REPORTED_ROWS = 100


@dataclass
class RowProblems:
    """Ragged lines and replaced bytes, per file (the handler runs inside pyarrow's parser)."""

    bad_rows: Counter = field(default_factory=Counter)
    bad_row_numbers: dict[str, list[int]] = field(default_factory=dict)
    replaced_utf8: Counter = field(default_factory=Counter)

    def handler(self, location: str) -> Callable[[Any], str]:
        numbers = self.bad_row_numbers.setdefault(location, [])

        def on_invalid(row: Any) -> str:
            self.bad_rows[location] += 1
            if len(numbers) < MAX_REPORTED_ROWS and row.number is not None:
                numbers.append(int(row.number))
            if self.bad_rows[location] <= 5:
                log.warning(
                    "%s line %s has %s fields, expected %s: skipped",
                    location,
                    row.number,
                    row.actual_columns,
                    row.expected_columns,
                )
            return "skip"

        return on_invalid

    def merge(self, other: RowProblems) -> None:
        """Add what a parse thread counted in its own piece (replaced bytes; ragged rows are
        recorded in file order by the consumer)."""
        self.replaced_utf8.update(other.replaced_utf8)

    def record(self, location: str, rows: list[tuple[int | None, int, int]]) -> None:
        """Ragged lines found by a parallel parse: (line number, fields, expected), in file order."""
        numbers = self.bad_row_numbers.setdefault(location, [])
        for number, actual, expected in rows:
            self.bad_rows[location] += 1
            if len(numbers) < MAX_REPORTED_ROWS and number is not None:
                numbers.append(number)
            if self.bad_rows[location] <= 5:
                log.warning(
                    "%s line %s has %s fields, expected %s: skipped", location, number, actual, expected
                )
