"""Reading back the Markdown tables that the assets put in their metadata (tests only)."""

from __future__ import annotations


def markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table in ``text`` as dicts keyed by header (cells stripped,
    thousands separators kept); [] for a text without a table (e.g. "none")."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return []

    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]

    headers = cells(lines[0])
    return [dict(zip(headers, cells(line), strict=False)) for line in lines[2:]]


def markdown_column(text: str, key: str, value: str) -> dict[str, str]:
    """``{row[key]: row[value]}`` of a metadata table."""
    return {row[key]: row[value] for row in markdown_rows(text)}


def as_int(cell: str) -> int:
    """A table cell such as ``1,234`` as an int."""
    return int(cell.replace(",", ""))
