"""The datasets behind an export, by name: title, publisher and DOI, with their gbif.org pages.

GBIF asks that data be cited by the datasets it came from; a list of UUIDs says nothing to a reader.
The snapshot carries each row's registry data (``datasetTitle``, ``datasetDOI``,
``publishingOrgKey``, ``publishingOrganizationTitle``, ``datasetLicense``: see
:mod:`gbifdl_assets.gbif.registry`), so :func:`datasets_from_records` turns it into the ``datasets``
mapping the export takes (``datasetKey`` → ``{"title", "publisher", "publisher_key", "doi",
"license"}``; attribution uses ``title`` and ``publisher``), and :func:`contributing_datasets` lists
the exported images' datasets with links for CITATION.md and the data card.

:func:`search_page` turns the search-API parameters of a search-sourced snapshot into the
gbif.org occurrence search showing the same records (gbif.org spells parameters in snake case:
``taxonKey`` → ``taxon_key``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.export.escape import clean_text

__all__ = [
    "DATASET_PAGE",
    "PUBLISHER_PAGE",
    "SEARCH_PAGE",
    "contributing_datasets",
    "datasets_from_records",
    "doi_url",
    "search_page",
]

DATASET_PAGE = "https://www.gbif.org/dataset/{}"
PUBLISHER_PAGE = "https://www.gbif.org/publisher/{}"
SEARCH_PAGE = "https://www.gbif.org/occurrence/search"
#: snapshot column -> key of a ``datasets`` entry
_FIELDS = {
    "datasetTitle": "title",
    "publishingOrganizationTitle": "publisher",
    "publishingOrgKey": "publisher_key",
    "datasetDOI": "doi",
    "datasetLicense": "license",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def doi_url(doi: Any) -> str:
    """``https://doi.org/<doi>`` for a DOI given bare, as ``doi:…`` or as a doi.org URL."""
    text = clean_text(doi).strip()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    return f"https://doi.org/{text}"


def _page(template: str, key: Any) -> str:
    return template.format(quote(clean_text(key), safe=""))


def datasets_from_records(records: pa.Table | None) -> dict[str, dict[str, str]]:
    """``datasetKey`` → what the registry columns of ``records`` say of it (first non-empty value wins)."""
    if records is None or "datasetKey" not in records.column_names:
        return {}
    present = [c for c in _FIELDS if c in records.column_names]
    if not present:
        return {}
    table = records.select(["datasetKey", *present])
    table = table.filter(pc.is_valid(table.column("datasetKey")))
    first = table.group_by("datasetKey", use_threads=False).aggregate(
        [(c, "first", pc.ScalarAggregateOptions(skip_nulls=True)) for c in present]
    )
    out: dict[str, dict[str, str]] = {}
    for row in first.to_pylist():
        entry = {_FIELDS[c]: str(row[f"{c}_first"]) for c in present if row[f"{c}_first"] not in (None, "")}
        out[str(row["datasetKey"])] = entry
    return out


def contributing_datasets(
    table: pa.Table, datasets: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The exported images' datasets, most images first: key, images, title, publisher, DOI and links.

    ``table`` is the export table (``datasetKey``, and ``publisher``: the publishingOrgKey, per image);
    ``datasets`` the registry's names (:func:`datasets_from_records`). Missing names stay empty.
    """
    if "datasetKey" not in table.column_names:
        return []
    keys = table.column("datasetKey").to_pylist()
    counts = Counter(str(k) for k in keys if k)
    publisher_keys: dict[str, str] = {}
    if "publisher" in table.column_names:
        for key, pub in zip(keys, table.column("publisher").to_pylist(), strict=True):
            if key and pub:
                publisher_keys.setdefault(str(key), str(pub))
    datasets = datasets or {}
    out = []
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        known = datasets.get(key) or {}
        pub_key = clean_text(known.get("publisher_key") or publisher_keys.get(key) or "")
        doi = clean_text(known.get("doi") or "")
        out.append(
            {
                "key": clean_text(key),
                "images": n,
                "title": clean_text(known.get("title") or ""),
                "publisher": clean_text(known.get("publisher") or ""),
                "publisher_key": pub_key,
                "doi": doi,
                "license": clean_text(known.get("license") or ""),
                "url": _page(DATASET_PAGE, key),
                "publisher_url": _page(PUBLISHER_PAGE, pub_key) if pub_key else "",
                "doi_url": doi_url(doi) if doi else "",
            }
        )
    return out


def _snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def search_page(params: Any) -> str | None:
    """The gbif.org occurrence search for the search-API ``params`` (a mapping of name → value or
    values), or None when there are none. Paging parameters are left out."""
    if not isinstance(params, Mapping) or not params:
        return None
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if str(name) in ("limit", "offset"):
            continue
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if v is None:
                continue
            text = ("true" if v else "false") if isinstance(v, bool) else clean_text(v)
            pairs.append((_snake(clean_text(name)), text))
    return f"{SEARCH_PAGE}?{urlencode(pairs)}" if pairs else SEARCH_PAGE
