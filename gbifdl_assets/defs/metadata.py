"""Helpers that turn core results into Dagster metadata a person reads.

What the Dagster UI does with each kind of value decides the shape: a Markdown value under 1000
characters is rendered inline on an asset's page (a longer one behind "[Show Markdown]"), int and
float values are plotted over materializations ("Plots"), and a JSON value is shown as a blob. So
counts go out as numbers, breakdowns as small Markdown tables (largest first, zeros left out where
they are noise), and taxon keys with their names beside them. A check's page shows numbers and text inline but
Markdown only behind a button, so :func:`check_metadata` gives every number of a check's details a
value of its own and every list or mapping one line of text.

:data:`STORAGE_KIND` is the kind tag of the data storage (``s3`` or ``file``), decided when the code
location loads, as the storage resource's default is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

#: Markdown values up to this length are rendered inline on an asset's page.
INLINE_MARKDOWN = 1000
NONE = "none"


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    elif isinstance(value, int):
        text = str(value)  # no thousands separators: taxon keys are ints too
    elif isinstance(value, list | tuple):
        text = ", ".join(_cell(v) for v in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    limit: int = 25,
    headers: Sequence[str] | None = None,
    inline: bool = False,
) -> str:
    """A markdown table of the first ``limit`` rows, with a line saying how many were left out.

    ``inline``: as many rows as keep the table short enough for the UI to show it on the page
    (:data:`INLINE_MARKDOWN`), for previews whose rows are long."""
    lines = ["| " + " | ".join(headers or columns) + " |", "|" + "---|" * len(columns)]
    budget = INLINE_MARKDOWN - 40 - len(lines[0]) - len(lines[1]) if inline else None
    shown = 0
    for row in rows[:limit]:
        line = "| " + " | ".join(_cell(row.get(c)) for c in columns) + " |"
        if budget is not None:
            budget -= len(line) + 1
            if budget < 0 and shown:
                break
        lines.append(line)
        shown += 1
    if len(rows) > shown:
        lines.append(f"\n… {len(rows) - shown} more rows")
    return "\n".join(lines)


def percent(part: float, whole: float) -> str:
    """``part`` as a share of ``whole``: ``"80.4%"`` (``"–"`` of nothing)."""
    return f"{100 * part / whole:.1f}%" if whole else "–"


def taxon(key: Any, names: Mapping[str, str] | None) -> str:
    """A taxon key with its name: ``"Vanessa atalanta (1898286)"``; the key alone when unknown."""
    name = (names or {}).get(str(key))
    return f"{name} ({key})" if name else str(key)


def count_table(
    counts: Mapping[Any, int | float],
    columns: tuple[str, str],
    *,
    names: Mapping[str, str] | None = None,
    share: bool = True,
    skip_zero: bool = False,
    limit: int = 25,
) -> str:
    """``{key: count}`` as a table, largest first: key, (name), count, (share of the total).

    ``names`` (key -> taxon name) adds a name column; ``skip_zero`` leaves out the zero counts.
    "none" when nothing is left.
    """
    items = [(k, v) for k, v in counts.items() if not (skip_zero and not v)]
    if not items:
        return NONE
    items.sort(key=lambda kv: -(kv[1] or 0))
    total = sum(v or 0 for _, v in items)
    key_header, count_header = columns
    rows = [
        {"key": k, "name": (names or {}).get(str(k), ""), "count": v, "share": percent(v or 0, total)}
        for k, v in items
    ]
    cols = ["key", *(["name"] if names is not None else []), "count", *(["share"] if share else [])]
    headers = [
        key_header,
        *(["name"] if names is not None else []),
        count_header,
        *(["share"] if share else []),
    ]
    return markdown_table(rows, cols, headers=headers, limit=limit)


def _flatten(fields: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append({"field": name, "value": NONE if value in ({}, [], None, "") else value})
    return rows


def fields_table(fields: Mapping[str, Any], *, columns: tuple[str, str] = ("field", "value")) -> str:
    """A mapping as a two-column table, nested mappings flattened to dotted names; "none" when empty."""
    rows = _flatten(fields)
    return markdown_table(rows, ("field", "value"), headers=columns, limit=60) if rows else NONE


def md(text: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(text)


def number(value: Any) -> dg.MetadataValue:
    """An int or float metadata value (plotted by the UI)."""
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    return dg.MetadataValue.float(float(value))


def numbers(counts: Mapping[str, int | float], prefix: str) -> dict[str, dg.MetadataValue]:
    """One number per key, named ``<prefix><key>`` (e.g. ``images_train``), for the UI's plots."""
    return {f"{prefix}{key}": number(value) for key, value in counts.items()}


# ------------------------------------------------------------------------------ check metadata
def _row_text(row: Mapping[str, Any], names: Mapping[str, str] | None) -> str:
    row = dict(row)
    head = taxon(row.pop("label"), names) if "label" in row else ""
    rest = ", ".join(f"{k} {_cell(v)}" for k, v in row.items())
    return f"{head}: {rest}" if head and rest else head or rest


def _detail_value(value: Any, names: Mapping[str, str] | None) -> dg.MetadataValue:
    """One detail of a check as a value the check's page shows inline: a number, or one line of text
    (the UI keeps Markdown behind a button there)."""
    if isinstance(value, bool | int | float):
        return number(value)
    if value is None or value in ({}, [], ""):
        return dg.MetadataValue.text(NONE)
    if isinstance(value, list | tuple):
        parts = [_row_text(v, names) if isinstance(v, Mapping) else _cell(v) for v in value[:20]]
        more = f"; … {len(value) - 20} more" if len(value) > 20 else ""
        return dg.MetadataValue.text("; ".join(parts) + more)
    if isinstance(value, Mapping):
        items = list(value.items())
        if all(isinstance(v, int | float) and not isinstance(v, bool) for _, v in items):
            items.sort(key=lambda kv: -kv[1])  # counts: largest first
        parts = [
            f"{k}: {_row_text(v, names)}" if isinstance(v, Mapping) else f"{k}: {_cell(v)}" for k, v in items
        ]
        return dg.MetadataValue.text("; ".join(parts))
    return dg.MetadataValue.text(str(value))


def check_metadata(
    details: Mapping[str, Any], *, names: Mapping[str, str] | None = None
) -> dict[str, dg.MetadataValue]:
    """A check's details as metadata its page shows inline: numbers as numbers (plotted), lists and
    mappings as one line each (``"Papilio machaon (1938125): images 24; …"``, taxon names from
    ``names`` beside labels). The ``message`` is left out: the check's description says it."""
    return {key: _detail_value(value, names) for key, value in details.items() if key != "message"}


def check_result(
    outcome: Any, *, names: Mapping[str, str] | None = None, **extra: dg.MetadataValue
) -> dg.AssetCheckResult:
    """A stage's :class:`~gbifdl_assets.pipeline.checks.CheckOutcome` as an AssetCheckResult."""
    return dg.AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN if outcome.warning else dg.AssetCheckSeverity.ERROR,
        metadata={**check_metadata(outcome.details, names=names), **extra},
        description=outcome.description,
    )


# -------------------------------------------------------------------------------------- kinds
def storage_kind(uri: str | None = None) -> str:
    """The kind tag of the data storage: ``s3`` for an ``s3://`` URI, ``file`` for a folder.

    ``uri`` defaults to GBIFDL_DATA_URI, which the storage resource reads too (a local folder when
    unset). Kinds are fixed when the definitions load; run config that points one run elsewhere
    does not change them.
    """
    uri = os.environ.get("GBIFDL_DATA_URI", "") if uri is None else uri
    return "s3" if uri.strip().lower().startswith("s3://") else "file"


#: The kind of every asset whose output lives in the data storage.
STORAGE_KIND = storage_kind()
