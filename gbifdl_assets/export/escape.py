"""Text from GBIF made safe to write: control characters removed, Markdown and HTML made inert.

Creators, rights holders, names, URLs and citations come from thousands of publishers and reach
CREDITS.md, CITATION.md, the data card, CSV, JSON and WebDataset metadata. Two rules hold for every
file an export writes:

* **No control characters.** NUL and the other C0/C1 controls, DEL, the Unicode bidi overrides and
  isolates (which can make a name display as something else) and unpaired surrogates (which cannot
  be written as UTF-8) are dropped; tabs, newlines and line/paragraph separators become a space, so
  every field stays on one line. :func:`clean_table` does this once to the export table; the
  mappings given by the caller (citation, provenance) go through :func:`clean_value`.
* **No live markup from data.** :func:`md_text` escapes every Markdown special and writes ``<``,
  ``>`` and ``&`` as entities, so a value renders as the text it is in any CommonMark or GFM viewer,
  inside a table cell too. Only ``http``/``https`` URLs become links (:func:`md_link`,
  :func:`html_link`), with the characters that could end the link percent-encoded; anything else
  (``javascript:``, ``data:``, relative paths) is shown as text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "KEEP_COLUMNS",
    "clean_table",
    "clean_text",
    "clean_value",
    "html_link",
    "html_text",
    "http_url",
    "md_code",
    "md_link",
    "md_text",
]

# Python and RE2 (pyarrow) spell the same two classes.
_SPACE_PY = "[\t\n\r\x0b\x0c\x85\u2028\u2029]"
_DROP_PY = "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
_SPACE_RE2 = r"[\t\n\r\x0b\x0c\x{85}\x{2028}\x{2029}]"
_DROP_RE2 = r"[\x00-\x08\x0e-\x1f\x7f-\x{84}\x{86}-\x{9f}\x{202a}-\x{202e}\x{2066}-\x{2069}\x{feff}]"
_SPACE = re.compile(_SPACE_PY)
_DROP = re.compile(_DROP_PY)
_ANY = re.compile(f"{_SPACE_PY}|{_DROP_PY}")

#: Columns :func:`clean_table` leaves alone: storage keys and paths address objects and files, and
#: changing one would lose the image (they are validated where they are made).
KEEP_COLUMNS = frozenset({"key", "local_path", "storage_uri", "content_key"})

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that start markup
# anywhere in a line or a GFM table cell (links and images need an unescaped "[", so "(", ")" and
# "!" are inert once brackets are escaped). <, > and & become entities instead (see md_text).
_MD_SPECIALS = "\\`*_[]|~#"
_MD_ESCAPE = re.compile("[" + re.escape(_MD_SPECIALS) + "]")
# at the start of a line: list items, setext/thematic breaks, ordered lists ("1." / "1)")
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))")
# Characters that may not appear raw in a link destination written into Markdown or an attribute.
_URL_SAFE = "/:?#@!$&+,;=%~*-._"


def clean_text(value: Any) -> str:
    """``value`` as one line of text without control characters (``None`` → "")."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if not _ANY.search(s):
        return s
    return _DROP.sub("", _SPACE.sub(" ", s))


def clean_value(value: Any) -> Any:
    """Strings in a JSON-like value (mappings, lists, scalars) cleaned with :func:`clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_value(v) for v in value]
    return value


def _clean_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    if not pc.any(pc.match_substring_regex(arr, f"{_SPACE_RE2}|{_DROP_RE2}")).as_py():
        return arr
    arr = pc.replace_substring_regex(arr, _SPACE_RE2, " ")
    return pc.replace_substring_regex(arr, _DROP_RE2, "")


def clean_table(table: pa.Table, *, keep: frozenset[str] = KEEP_COLUMNS) -> pa.Table:
    """Every text column of ``table`` (but ``keep``) without control characters."""
    for i, f in enumerate(table.schema):
        if f.name in keep:
            continue
        value_type = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            col = _clean_array(table.column(i))
            if col is not table.column(i):
                table = table.set_column(i, pa.field(f.name, col.type, f.nullable), col)
    return table


def md_text(value: Any, *, line_start: bool = True) -> str:
    """``value`` as inert Markdown text (also safe in a GFM table cell).

    ``line_start=False`` for text that never begins a line (a table cell): a leading "1." or "-"
    needs no escape there.
    """
    s = clean_text(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_ESCAPE.sub(lambda m: "\\" + m.group(0), s)
    m = _MD_LINE_START.match(s) if line_start else None
    if m:  # "- x" or "1. x" is a list where a value starts a line (a block quote, a heading)
        mark = m.group(2)
        s = m.group(1) + (mark + "\\" if mark[0].isdigit() else "\\" + mark) + s[m.end() :]
    return s


def md_code(value: Any) -> str:
    """``value`` as a Markdown code span: fenced with more backticks than any run inside it."""
    s = clean_text(value)
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def http_url(value: Any) -> str | None:
    """``value`` as an http(s) URL that is safe to put in a link, or ``None`` when it is not one.

    Percent-encodes what could end a Markdown link destination or an HTML attribute (spaces, quotes,
    ``<>()[]|\\``` and non-ASCII); existing ``%XX`` escapes are kept.
    """
    s = clean_text(value).strip()
    try:
        parts = urlsplit(s)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(s, safe=_URL_SAFE)


def md_link(text: Any, url: Any) -> str:
    """A Markdown link when ``url`` is http(s), else the text alone (both inert)."""
    href = http_url(url)
    label = md_text(text)
    if href is None:
        return label
    return f"[{label}]({href})"


def html_text(value: Any) -> str:
    return html.escape(clean_text(value), quote=True)


def html_link(text: Any, url: Any) -> str:
    """An ``<a>`` when ``url`` is http(s), else the escaped text alone."""
    href = http_url(url)
    label = html_text(text)
    if href is None:
        return label
    return f'<a href="{html.escape(href, quote=True)}" rel="nofollow noopener">{label}</a>'
