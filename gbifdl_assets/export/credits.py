"""Credits (per-image attribution) and the citation of the data behind an export.

``credits.csv`` and ``CREDITS.md`` list every exported image: creator, rights holder, licence
(label and deed URL), a source link (the record's ``references`` or its GBIF occurrence page) and
the image URL — what CC BY-style licences require when images are redistributed.

``CITATION.md`` follows GBIF's citation guidelines: an occurrence download is cited by its DOI
("GBIF.org (date) GBIF Occurrence Download https://doi.org/…"); data taken through the search API
has no DOI, so the file records the query and date and says to register a *derived dataset* (which
mints a DOI citing the contributing datasets, listed here with their record counts).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from gbifdl_assets.export.attribution import requires_attribution
from gbifdl_assets.export.datasets import contributing_datasets, doi_url, search_page
from gbifdl_assets.export.escape import clean_text, clean_value, http_url, md_link, md_text
from gbifdl_assets.export.license_display import license_label_or_code, license_url_or_blank
from gbifdl_assets.storage import Storage

__all__ = [
    "CREDIT_COLUMNS",
    "citation_markdown",
    "citation_sources",
    "citation_text",
    "credit_rows",
    "doi_url",
    "query_json",
    "query_text",
    "write_citation",
    "write_credits",
]

CREDIT_COLUMNS = (
    "content_key",
    "file",
    "split",
    "gbifID",
    "label",
    "label_name",
    "attribution",
    "attribution_source",
    "creator",
    "rightsHolder",
    "license",
    "license_label",
    "license_url",
    "source_url",
    "image_url",
    "datasetKey",
)
OCCURRENCE_PAGE = "https://www.gbif.org/occurrence/{}"
DERIVED_DATASET_PAGE = "https://www.gbif.org/derived-dataset/register"


def credit_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One attribution row per exported image, in the export's order."""
    rows = []
    for r in table.to_pylist():
        refs = clean_text(r.get("references")).strip()
        source = refs if http_url(refs) else OCCURRENCE_PAGE.format(quote(clean_text(r["gbifID"]), safe=""))
        rows.append(
            {
                "content_key": r["content_key"],
                "file": r.get("imagefolder_path") or r.get("key") or "",
                "split": r["split"],
                "gbifID": r["gbifID"],
                "label": r["label"],
                "label_name": r.get("label_name") or "",
                # a table that did not go through attribution.attribute: creator, else rights holder
                "attribution": r.get("attribution", r.get("creator") or r.get("rightsHolder")) or "",
                "attribution_source": r.get(
                    "attribution_source",
                    "creator" if r.get("creator") else "rightsHolder" if r.get("rightsHolder") else None,
                )
                or "",
                "creator": r.get("creator") or "",
                "rightsHolder": r.get("rightsHolder") or "",
                "license": r["license"],
                "license_label": license_label_or_code(r["license"]),
                "license_url": license_url_or_blank(r["license"]),
                "source_url": source,
                "image_url": r.get("url") or "",
                "datasetKey": r.get("datasetKey") or "",
            }
        )
    return rows


# A cell that starts with one of these is run as a formula by spreadsheet programs (CSV injection);
# creators and rights holders are free text from thousands of publishers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(row: dict[str, Any]) -> dict[str, Any]:
    return {k: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v for k, v in row.items()}


_SOURCE_NOTE = {
    "record_rightsHolder": "rights holder of the record",
    "recordedBy": "recorded by",
    "publisher": "publisher",
}


def _credit_md(row: Mapping[str, Any]) -> str:
    name = row.get("attribution") or ""
    if not name:
        return "no name on record" if requires_attribution(row["license"]) else "—"
    note = _SOURCE_NOTE.get(row.get("attribution_source") or "")
    return f"{md_text(name)} ({note})" if note else md_text(name)


def write_credits(table: pa.Table, out: Storage) -> int:
    """Write ``credits.csv`` and ``CREDITS.md``; return the number of images credited."""
    rows = credit_rows(table)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CREDIT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_safe({k: clean_text(v) for k, v in r.items()}) for r in rows)
    out.write_bytes("credits.csv", buf.getvalue().encode("utf-8"))

    lines = [
        "# Image credits",
        "",
        f"{len(rows)} images. Each is used under the licence named here; reuse must keep this attribution.",
        "The same list, machine-readable: `credits.csv`. The credit is the media creator, else the first of",
        "the media rights holder, the record's rights holder, the recorder, the dataset's publisher",
        "(marked after the name).",
        "",
    ]
    lacking = sum(1 for r in rows if requires_attribution(r["license"]) and not r["attribution"])
    if lacking:
        lines += [
            f"**{lacking} images under an attribution licence have no creator, rights holder, recorder or",
            "publisher on record**; they are marked 'no name on record'. Credit them by linking their source",
            'record, or export with `unattributed="drop"` to leave them out.',
            "",
        ]
    by_class: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_class.setdefault((r["label"], r["label_name"]), []).append(r)
    for (label, name), items in sorted(by_class.items(), key=lambda kv: kv[0][0]):
        lines += [
            f"## {md_text(name) or 'taxon'} ({md_text(label)})",
            "",
            "| Image | Credit | Rights holder | Licence | Source |",
        ]
        lines.append("|---|---|---|---|---|")
        for r in items:
            record = "record " + clean_text(r["gbifID"])
            lines.append(
                f"| {md_link(r['content_key'][:12], r['image_url'])} | {_credit_md(r)} | "
                f"{md_text(r['rightsHolder']) or '—'} | {md_link(r['license_label'], r['license_url'])} | "
                f"{md_link(record, r['source_url'])} |"
            )
        lines.append("")
    out.write_bytes("CREDITS.md", "\n".join(lines).encode("utf-8"))
    return len(rows)


def citation_sources(
    citation: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    if citation is None:
        return []
    citation = clean_value(citation)
    if isinstance(citation, Mapping):
        if "sources" in citation:
            return [dict(s) for s in citation["sources"]]
        return [dict(citation)] if citation else []
    return [dict(s) for s in citation]


def _date(source: Mapping[str, Any]) -> str:
    for key in ("created", "modified", "date", "eraseAfter"):
        value = source.get(key)
        if value:
            return str(value)[:10]
    return "n.d."


def query_text(source: Mapping[str, Any]) -> str:
    """The search query of a search-API source, as text (JSON for a mapping)."""
    params = source.get("params", source.get("query"))
    return params if isinstance(params, str) else json.dumps(params, ensure_ascii=False, sort_keys=True)


def query_json(source: Mapping[str, Any]) -> str:
    """The search query of a search-API source as indented JSON (for a code block)."""
    params = source.get("params", source.get("query"))
    return json.dumps(params, ensure_ascii=False, sort_keys=True, indent=2)


def citation_text(source: Mapping[str, Any]) -> str:
    """How to cite one source: GBIF's text for a download (by DOI), the query and date for a search."""
    if source.get("doi"):
        text = clean_text(source.get("citation")).strip()
        return text or f"GBIF.org ({_date(source)}) GBIF Occurrence Download {doi_url(source['doi'])}"
    return f"GBIF.org ({source.get('date', 'n.d.')}) GBIF occurrence search {query_text(source)}"


def citation_markdown(
    table: pa.Table,
    citation: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    *,
    training_set: str,
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """CITATION.md: the download DOIs, or the search query (JSON and a gbif.org link), and the
    contributing datasets by title, publisher and DOI (``datasets``: see :mod:`.datasets`)."""
    sources = citation_sources(citation)
    lines = [f"# How to cite the data of {md_text(training_set)}", ""]
    downloads = [s for s in sources if s.get("doi")]
    searches = [s for s in sources if not s.get("doi")]
    if downloads:
        lines += ["## GBIF occurrence downloads", "", "Cite each download by its DOI:", ""]
        for s in downloads:
            lines.append(f"> {md_text(citation_text(s))}")
            lines.append("")
            lines.append(f"Download DOI: {md_link(doi_url(s['doi']), doi_url(s['doi']))}")
            lines.append("")
    if searches:
        lines += ["## Data retrieved through the GBIF search API", ""]
        for s in searches:
            page = search_page(s.get("params", s.get("query")))
            seen = f" ({md_link('the same search on gbif.org', page)})" if page else ""
            query = query_json(s)
            # JSON in a fenced block: data never becomes Markdown; the fence is longer than any run of
            # backticks inside, so no value can close it
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", query)), default=0))
            lines += [
                f"Retrieved {md_text(s.get('date', 'n.d.'))} with this query{seen}:",
                "",
                f"{fence}json",
                query,
                fence,
                "",
            ]
        lines += [
            "Search-API data has no DOI of its own. GBIF's citation guidelines ask that data used in a",
            "publication be cited with a DOI: register a **derived dataset** at",
            f"<{DERIVED_DATASET_PAGE}> listing the contributing datasets below (with their record counts),",
            "and cite the DOI it mints.",
            "",
        ]
    if not sources:
        lines += [
            "No source information was given for this export; cite the GBIF download DOI of its snapshot.",
            "",
        ]
    contributing = contributing_datasets(table, datasets)
    if contributing:
        lines += [
            "## Contributing datasets",
            "",
            "| Dataset | Publisher | DOI | Images |",
            "|---|---|---|---|",
        ]
        for d in contributing:
            title = md_link(d["title"] or d["key"], d["url"])
            publisher = md_link(d["publisher"] or d["publisher_key"] or "—", d["publisher_url"])
            doi = md_link(d["doi"], d["doi_url"]) if d["doi"] else "—"
            lines.append(f"| {title} | {publisher} | {doi} | {d['images']} |")
        lines.append("")
    lines += ["Per-image attribution (creators, rights holders, licences): `CREDITS.md` / `credits.csv`.", ""]
    return "\n".join(lines)


def write_citation(
    table: pa.Table,
    out: Storage,
    citation: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    *,
    training_set: str,
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    text = citation_markdown(table, citation, training_set=training_set, datasets=datasets)
    out.write_bytes("CITATION.md", text.encode("utf-8"))
