"""``SandboxConfig(real_dwca_columns=True)``: a DWCA without publishingOrgKey, as GBIF writes it,
and the registry giving every row its publisher back (issue 16's "done when", without the snapshot layer).
"""

from __future__ import annotations

import csv
import io
import time
import xml.etree.ElementTree as ET
import zipfile

import pyarrow as pa
import pytest
import requests

from gbifdl_assets.gbif.registry import RegistryClient, with_registry_data
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox

pytestmark = pytest.mark.integration

DWC_TEXT = "{http://rs.tdwg.org/dwc/text/}"
PREDICATE = {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"}


@pytest.fixture(scope="module")
def sb():
    cfg = SandboxConfig(occurrences=3_000, species=60, download_seconds=(0.05, 0.05), real_dwca_columns=True)
    with start_sandbox(cfg) as running:
        yield running


def download(sb) -> zipfile.ZipFile:
    r = requests.post(
        sb.api_url + "/occurrence/download/request",
        json={"creator": "sandbox", "format": "DWCA", "predicate": PREDICATE},
        auth=("sandbox", "sandbox"),
    )
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = requests.get(f"{sb.api_url}/occurrence/download/{r.text}").json()
        if status["status"] == "SUCCEEDED":
            return zipfile.ZipFile(io.BytesIO(requests.get(status["downloadLink"]).content))
        time.sleep(0.05)
    raise AssertionError(f"download {r.text} did not succeed")


def search(sb) -> dict[str, dict]:
    out, offset = {}, 0
    while True:
        page = requests.get(
            sb.api_url + "/occurrence/search",
            params={"mediaType": "StillImage", "offset": offset, "limit": 300},
        ).json()
        out.update({r["gbifID"]: r for r in page["results"]})
        if page["endOfRecords"]:
            return out
        offset += 300


def test_real_columns_archive_has_no_publisher_and_the_registry_restores_it(sb):
    zf = download(sb)
    meta = ET.fromstring(zf.read("meta.xml"))
    core_terms = [f.get("term") for f in meta.find(f"{DWC_TEXT}core").findall(f"{DWC_TEXT}field")]
    assert "http://rs.gbif.org/terms/1.0/publishingOrgKey" not in core_terms
    assert "http://rs.gbif.org/terms/1.0/datasetKey" in core_terms
    header = zf.read("occurrence.txt").split(b"\n", 1)[0].decode().split("\t")
    assert header == [t.rsplit("/", 1)[1] for t in core_terms] and "publishingOrgKey" not in header

    rows = list(
        csv.DictReader(
            io.StringIO(zf.read("occurrence.txt").decode()), delimiter="\t", quoting=csv.QUOTE_NONE
        )
    )
    table = pa.table({"gbifID": [r["gbifID"] for r in rows], "datasetKey": [r["datasetKey"] for r in rows]})
    with RegistryClient(sb.api_url) as client:
        enriched, report = with_registry_data(table, client=client)
    assert report.missing() == {}

    by_search = search(sb)
    assert len(by_search) == len(rows) > 100
    for row in enriched.to_pylist():
        rec = by_search[row["gbifID"]]
        assert row["publishingOrgKey"] == rec["publishingOrgKey"]  # the same as a search-sourced snapshot
        assert row["publishingCountry"] == rec["publishingCountry"]
        assert row["datasetTitle"] == rec["datasetName"]
