"""Citations with names (issue 16, part 4): CITATION.md and the data card list the contributing
datasets by title, publisher and DOI with gbif.org links, the download DOI, and a search's query as
JSON with the same search on gbif.org; every value from the data stays inert."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pytest

from gbifdl_assets.export.datasets import contributing_datasets, datasets_from_records, search_page
from gbifdl_assets.export.layout import export_training_set
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.test_export_writers import CITATION, build_inputs

DS0, DS1 = "ds-0", "ds-1"
PUB0 = "28eb1a3f-1c15-4a95-931a-4af90ecb574d"
SEARCH = {
    "type": "search",
    "date": "2026-01-02T03:04:05Z",
    "query": {"taxonKey": ["5219404", "5219416"], "mediaType": ["StillImage"], "hasCoordinate": ["true"]},
}
HOSTILE = "[x](javascript:alert(1)) <img src=x onerror=alert(1)>"


def records(title1: str = "Big cats of B") -> pa.Table:
    """A snapshot-like table: registry columns per row (two rows per occurrence, one not exported)."""
    rows = []
    for gid in range(1000, 1040):
        ds = DS0 if (gid - 1000) % 2 == 0 else DS1
        for media in (0, 1):
            rows.append(
                {
                    "gbifID": gid,
                    "media_index": media,
                    "datasetKey": ds,
                    "datasetTitle": "Big cats of A" if ds == DS0 else title1,
                    "datasetDOI": "10.15468/aaaa01" if ds == DS0 else None,
                    "publishingOrgKey": PUB0 if ds == DS0 else None,
                    "publishingOrganizationTitle": "Publisher A" if ds == DS0 else "Publisher B",
                    "datasetLicense": "http://creativecommons.org/licenses/by/4.0/legalcode",
                }
            )
    return pa.Table.from_pylist(rows)


def export(tmp_path, *, citation, recs=None, **kw):
    inputs = build_inputs(tmp_path)
    out = tmp_path / "export"
    export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        inputs["store"],
        LocalStorage(out),
        training_set="cats",
        citation=citation,
        records=recs if recs is not None else records(),
        **kw,
    )
    return out


def test_datasets_from_records_takes_the_registry_columns():
    got = datasets_from_records(records())
    assert got[DS0] == {
        "title": "Big cats of A",
        "publisher": "Publisher A",
        "publisher_key": PUB0,
        "doi": "10.15468/aaaa01",
        "license": "http://creativecommons.org/licenses/by/4.0/legalcode",
    }
    assert got[DS1]["title"] == "Big cats of B" and "doi" not in got[DS1]
    assert datasets_from_records(None) == {} and datasets_from_records(pa.table({"gbifID": [1]})) == {}


def test_search_page_is_gbif_orgs_spelling():
    url = search_page(SEARCH["query"])
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "www.gbif.org", "/occurrence/search")
    assert parse_qsl(parts.query) == [
        ("taxon_key", "5219404"),
        ("taxon_key", "5219416"),
        ("media_type", "StillImage"),
        ("has_coordinate", "true"),
    ]
    assert search_page({"limit": 300, "offset": 0}) == "https://www.gbif.org/occurrence/search"
    assert search_page(None) is None and search_page({}) is None


def test_citation_of_a_download_names_the_doi_and_the_datasets(tmp_path):
    out = export(tmp_path, citation=CITATION)
    text = (out / "CITATION.md").read_text()
    assert "Download DOI: [https://doi.org/10.15468/dl.abc123](https://doi.org/10.15468/dl.abc123)" in text
    section = text.split("## Contributing datasets", 1)[1]
    assert "| Dataset | Publisher | DOI | Images |" in section
    assert (
        f"| [Big cats of A](https://www.gbif.org/dataset/{DS0}) | "
        f"[Publisher A](https://www.gbif.org/publisher/{PUB0}) | "
        "[10\\.15468/aaaa01](https://doi.org/10.15468/aaaa01) | 15 |"  # md_text escapes the dot
    ) in section
    # no DOI and no publisher key in the registry row: the manifest's publisher key, no DOI link
    assert (
        f"| [Big cats of B](https://www.gbif.org/dataset/{DS1}) | [Publisher B](https://www.gbif.org/publisher/pub) | — | 15 |"
        in section
    )
    card = (out / "datacard.md").read_text()
    assert "## Contributing datasets" in card and "The images come from 2 GBIF datasets" in card
    assert re.search(r"the largest \(Big cats of [AB]\) provides 50%", card)  # a title, not a key
    assert f"[Big cats of A](https://www.gbif.org/dataset/{DS0})" in card
    html = (out / "datacard.html").read_text()
    assert f'<a href="https://www.gbif.org/dataset/{DS0}" rel="nofollow noopener">Big cats of A</a>' in html
    assert '<a href="https://doi.org/10.15468/aaaa01" rel="nofollow noopener">10.15468/aaaa01</a>' in html


def test_citation_of_a_search_holds_the_query_as_json_and_the_gbif_org_search(tmp_path):
    out = export(tmp_path, citation=SEARCH)
    text = (out / "CITATION.md").read_text()
    assert "## Data retrieved through the GBIF search API" in text
    block = re.search(r"```json\n(.*?)\n```", text, re.S)
    assert block is not None and json.loads(block.group(1)) == SEARCH["query"]
    link = search_page(SEARCH["query"])
    assert f"[the same search on gbif.org]({link})" in text
    card = (out / "datacard.md").read_text()
    assert f"({link})" in card
    html = (out / "datacard.html").read_text()
    assert "the same search on gbif.org" in html and "taxon_key=5219404&amp;taxon_key=5219416" in html


def test_hostile_titles_publishers_and_queries_stay_inert(tmp_path):
    query = {"q": ["```\n<script>alert(1)</script>"], "taxonKey": ["1"]}
    out = export(tmp_path, citation={**SEARCH, "query": query}, recs=records(title1=HOSTILE))
    text = (out / "CITATION.md").read_text()
    assert "\\[x\\](javascript:" in text and "<img" not in text  # escaped: text, never a link
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    block = re.search(r"(`{4,})json\n(.*?)\n\1", text, re.S)  # the fence outgrows the backticks inside
    # control characters never reach the files: the newline became a space
    assert block is not None and json.loads(block.group(2)) == {
        **query,
        "q": ["``` <script>alert(1)</script>"],
    }
    html = (out / "datacard.html").read_text()
    assert (
        "<script>" not in html
        and "<img src=x" not in html
        and "javascript:" not in html.replace("javascript:alert", "")
    )
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("datasets", [None, {}])
def test_contributing_datasets_without_names_fall_back_to_keys(datasets):
    table = pa.table({"datasetKey": [DS0, DS0, DS1, None], "publisher": [PUB0, PUB0, None, None]})
    got = contributing_datasets(table, datasets)
    assert [(d["key"], d["images"], d["title"], d["publisher_key"]) for d in got] == [
        (DS0, 2, "", PUB0),
        (DS1, 1, "", ""),
    ]
    assert got[1]["publisher_url"] == "" and got[0]["url"] == f"https://www.gbif.org/dataset/{DS0}"
