"""One document, two renderings: the data card as Markdown and as HTML from the same blocks.

Blocks are plain data; every piece of text from a record goes through :mod:`.escape` here and only
here, so the two renderings cannot drift apart and neither can carry live markup:

* ``Heading(text)``, ``Para(parts)`` (a part is text or a :class:`Link`), ``Table(headers, rows)``
  (a cell is text or a :class:`Link`), ``Bullets(items)`` (each item a list of parts),
  ``Image(src, alt)`` (our own files only), ``Code(text, lang)`` (our own code only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gbifdl_assets.export.escape import html_link, html_text, md_link, md_text

__all__ = ["Bullets", "Code", "Heading", "Image", "Link", "Para", "Table", "to_html", "to_markdown"]


@dataclass(frozen=True)
class Link:
    text: Any
    url: Any


@dataclass(frozen=True)
class Heading:
    text: Any
    level: int = 2


@dataclass(frozen=True)
class Para:
    parts: Sequence[Any]


@dataclass(frozen=True)
class Table:
    headers: Sequence[Any]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Bullets:
    items: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Image:
    src: str
    alt: str


@dataclass(frozen=True)
class Code:
    text: str
    lang: str = "python"
    caption: Sequence[Any] = field(default_factory=tuple)


Block = Heading | Para | Table | Bullets | Image | Code


def _md_part(part: Any, *, line_start: bool = True) -> str:
    return md_link(part.text, part.url) if isinstance(part, Link) else md_text(part, line_start=line_start)


def _md_cell(part: Any) -> str:
    return _md_part(part, line_start=False)


def _html_part(part: Any) -> str:
    return html_link(part.text, part.url) if isinstance(part, Link) else html_text(part)


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + md_text(b.text), ""]
        elif isinstance(b, Para):
            out += ["".join(_md_part(p) for p in b.parts), ""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Bullets):
            out += ["- " + "".join(_md_part(p) for p in item) for item in b.items]
            out.append("")
        elif isinstance(b, Image):
            out += [f"![{md_text(b.alt)}]({b.src})", ""]
        elif isinstance(b, Code):
            if b.caption:
                out += ["".join(_md_part(p) for p in b.caption), ""]
            out += [f"```{b.lang}", b.text.rstrip("\n"), "```", ""]
    return "\n".join(out)


_STYLE = (
    "body{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    # long values (a search query as JSON, a link to the same search) wrap instead of widening the page
    "td{overflow-wrap:anywhere;vertical-align:top}"
    "img{max-width:100%}pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"
)


def to_html(title: Any, blocks: Sequence[Block]) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html_text(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append("<p>" + "".join(_html_part(p) for p in b.parts) + "</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_html_part(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_html_part(c)}</td>" for c in r) + "</tr>" for r in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Bullets):
            items = "".join("<li>" + "".join(_html_part(p) for p in item) + "</li>" for item in b.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(b, Image):
            body.append(f'<img src="{html_text(b.src)}" alt="{html_text(b.alt)}">')
        elif isinstance(b, Code):
            if b.caption:
                body.append("<p>" + "".join(_html_part(p) for p in b.caption) + "</p>")
            body.append(f'<pre><code class="language-{html_text(b.lang)}">{_html_lines(b.text)}</code></pre>')
    t = html_text(title)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{t}</title>\n'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _html_lines(text: str) -> str:
    """Our own multi-line code, escaped line by line (html_text would fold the newlines)."""
    return "\n".join(html_text(line) for line in text.rstrip("\n").split("\n"))
