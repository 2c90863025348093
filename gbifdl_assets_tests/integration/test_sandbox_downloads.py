"""The sandbox download API end to end over HTTP: lifecycle, archive layout, limits, auth, faults."""

from __future__ import annotations

import csv
import io
import re
import time
import xml.etree.ElementTree as ET
import zipfile

import pytest
import requests

from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.sandbox.vocab import LICENSE_URLS, LICENSES

pytestmark = pytest.mark.integration

AUTH = ("sandbox", "sandbox")
KEY_RE = re.compile(r"^\d{7}-\d{15}$")
DWC_TEXT = "{http://rs.tdwg.org/dwc/text/}"

PREDICATE = {
    "type": "and",
    "predicates": [
        {"type": "equals", "key": "TAXON_KEY", "value": "797"},
        {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"},
        {"type": "in", "key": "COUNTRY", "values": ["GB", "NL", "SE"]},
    ],
}
SEARCH_PARAMS = [
    ("taxonKey", "797"),
    ("mediaType", "StillImage"),
    ("country", "GB"),
    ("country", "NL"),
    ("country", "SE"),
]


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    cfg = SandboxConfig(
        occurrences=20_000,
        seed=42,
        download_seconds=(0.3, 0.3),
        work_dir=str(tmp_path_factory.mktemp("sandbox-downloads")),
    )
    with start_sandbox(cfg) as running:
        yield running


@pytest.fixture(scope="module")
def slow_sb():
    """Downloads stay PREPARING/RUNNING long enough to hit the concurrency limit."""
    with start_sandbox(SandboxConfig(occurrences=2_000, seed=3, download_seconds=(30, 30))) as running:
        yield running


@pytest.fixture()
def http():
    with requests.Session() as s:
        yield s


def request_download(sb, http, predicate, **extra) -> requests.Response:
    body = {
        "creator": "sandbox",
        "notificationAddresses": ["sandbox@example.org"],
        "sendNotification": False,
        "format": "DWCA",
        "predicate": predicate,
        **extra,
    }
    return http.post(sb.api_url + "/occurrence/download/request", json=body, auth=AUTH)


def wait_for(sb, http, key, done=("SUCCEEDED", "FAILED", "KILLED", "CANCELLED", "FILE_ERASED"), timeout=20):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"{sb.api_url}/occurrence/download/{key}").json()
        if not seen or seen[-1]["status"] != status["status"]:
            seen.append(status)
        if status["status"] in done:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"download {key} did not finish: {[s['status'] for s in seen]}")


def all_search_results(sb, http, params):
    out, offset = [], 0
    while True:
        page = http.get(
            sb.api_url + "/occurrence/search", params=[*params, ("offset", offset), ("limit", 300)]
        ).json()
        out += page["results"]
        if page["endOfRecords"]:
            return out
        offset += 300


def read_tsv(zf: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    text = zf.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


def test_download_lifecycle_and_archive_match_the_search_api(sb, http):
    r = request_download(sb, http, PREDICATE)
    assert r.status_code == 201 and KEY_RE.match(r.text), r.text
    key = r.text
    seen = wait_for(sb, http, key)
    statuses = [s["status"] for s in seen]
    assert statuses[-1] == "SUCCEEDED"
    assert statuses == [s for s in ("PREPARING", "RUNNING", "SUCCEEDED") if s in statuses]
    first, final = seen[0], seen[-1]
    if first["status"] == "PREPARING":
        assert "doi" not in first and first["size"] == 0 and first["license"] == "unspecified"
    assert final["doi"].startswith("10.15468/dl.") and final["downloadLink"].endswith(f"/{key}.zip")
    assert final["request"]["predicate"]["predicates"][0]["matchCase"] is False
    assert "creator" not in final["request"]  # only in the authenticated listing

    redirect = http.get(final["downloadLink"], allow_redirects=False)
    assert redirect.status_code == 302
    blob = http.get(final["downloadLink"]).content
    assert len(blob) == final["size"]
    zf = zipfile.ZipFile(io.BytesIO(blob))
    names = zf.namelist()
    assert {
        "meta.xml",
        "metadata.xml",
        "occurrence.txt",
        "verbatim.txt",
        "multimedia.txt",
        "citations.txt",
        "rights.txt",
    } <= set(names)
    assert all("/" not in n or n.startswith("dataset/") for n in names)  # flat, no top folder

    meta = ET.fromstring(zf.read("meta.xml"))
    assert meta.get("metadata") == "metadata.xml"
    core = meta.find(f"{DWC_TEXT}core")
    assert core.get("rowType") == "http://rs.tdwg.org/dwc/terms/Occurrence"
    assert core.find(f"{DWC_TEXT}files/{DWC_TEXT}location").text == "occurrence.txt"
    assert core.find(f"{DWC_TEXT}id").get("index") == "0"
    assert core.get("fieldsEnclosedBy") == "" and core.get("ignoreHeaderLines") == "1"
    assert core.get("fieldsTerminatedBy") == "\\t"
    fields = core.findall(f"{DWC_TEXT}field")
    assert fields[0].get("term") == "http://rs.gbif.org/terms/1.0/gbifID"
    # as in real downloads: verbatim.txt (a second Occurrence file) and multimedia.txt, in either order
    extensions = {
        e.find(f"{DWC_TEXT}files/{DWC_TEXT}location").text: e for e in meta.findall(f"{DWC_TEXT}extension")
    }
    assert {name: e.get("rowType") for name, e in extensions.items()} == {
        "verbatim.txt": "http://rs.tdwg.org/dwc/terms/Occurrence",
        "multimedia.txt": "http://rs.gbif.org/terms/1.0/Multimedia",
    }
    assert all(e.find(f"{DWC_TEXT}coreid").get("index") == "0" for e in extensions.values())

    occ_rows = read_tsv(zf, "occurrence.txt")
    header = zf.read("occurrence.txt").split(b"\n", 1)[0].decode().split("\t")
    assert header == [f.get("term").rsplit("/", 1)[1] for f in fields]

    expected = all_search_results(sb, http, SEARCH_PARAMS)
    assert final["totalRecords"] == len(expected) == len(occ_rows) > 20
    assert [r["gbifID"] for r in occ_rows] == [e["gbifID"] for e in expected]
    to_enum = dict(zip(LICENSE_URLS, LICENSES, strict=True))
    for row, rec in zip(occ_rows, expected, strict=True):
        assert row["license"] == to_enum[rec["license"]]
        assert row["speciesKey"] == str(rec.get("speciesKey", ""))
        assert row["taxonKey"] == str(rec["taxonKey"]) and row["acceptedTaxonKey"] == str(
            rec["acceptedTaxonKey"]
        )
        assert row["issue"] == ";".join(rec["issues"])
        assert row["countryCode"] == rec["countryCode"]
        assert "StillImage" in row["mediaType"].split(";")
        assert row["eventDate"] == rec.get("eventDate", "")
        assert "publishingOrgKey" not in row  # as in real downloads: the publisher comes from the registry
        assert row["publishingCountry"] == rec["publishingCountry"]

    verbatim_rows = read_tsv(zf, "verbatim.txt")
    verbatim_fields = extensions["verbatim.txt"].findall(f"{DWC_TEXT}field")
    assert list(verbatim_rows[0]) == [f.get("term").rsplit("/", 1)[1] for f in verbatim_fields]
    assert [r["gbifID"] for r in verbatim_rows] == [r["gbifID"] for r in occ_rows]
    for row, rec in zip(verbatim_rows, expected, strict=True):
        verbatim = http.get(f"{sb.api_url}/occurrence/{rec['key']}/verbatim").json()
        for field in verbatim_fields:
            assert row[field.get("term").rsplit("/", 1)[1]] == verbatim.get(field.get("term"), "")
        assert row["scientificName"].startswith(rec["scientificName"].split(" ")[0])

    media_rows = read_tsv(zf, "multimedia.txt")
    expected_media = [
        (e["gbifID"], m.get("identifier", ""), m.get("license", "")) for e in expected for m in e["media"]
    ]
    assert [(m["gbifID"], m["identifier"], m["license"]) for m in media_rows] == expected_media
    assert list(media_rows[0]) == [
        "gbifID",
        "type",
        "format",
        "identifier",
        "references",
        "title",
        "description",
        "source",
        "audience",
        "created",
        "creator",
        "contributor",
        "publisher",
        "license",
        "rightsHolder",
    ]

    eml = zf.read("metadata.xml").decode()
    assert f'packageId="{final["doi"]}"' in eml and key in eml
    assert f'<url function="download">{final["downloadLink"]}</url>' in eml
    datasets = {e["datasetKey"] for e in expected}
    assert {n for n in names if n.startswith("dataset/")} == {f"dataset/{d}.xml" for d in datasets}
    assert final["numberDatasets"] == len(datasets)
    citations = zf.read("citations.txt").decode()
    rights = zf.read("rights.txt").decode()
    abstract = ET.fromstring(zf.read("metadata.xml")).find("dataset/abstract/para").text
    assert f"includes {len(expected)} records from {len(datasets)} constituent datasets" in abstract
    assert final["doi"] in citations
    for dataset_key in datasets:
        registry = http.get(f"{sb.api_url}/dataset/{dataset_key}").json()
        assert registry["citation"]["text"] in citations.splitlines()
        assert f"Dataset: {registry['title']}\nRights as supplied: {registry['license']}\n" in rights
        n = sum(1 for e in expected if e["datasetKey"] == dataset_key)
        assert f"{n} records from {registry['title']}." in abstract.splitlines()
        ds_eml = ET.fromstring(zf.read(f"dataset/{dataset_key}.xml"))
        assert ds_eml.get("packageId") == dataset_key
        assert ds_eml.find("dataset/title").text == registry["title"]
        assert registry["doi"] in [a.text for a in ds_eml.findall("dataset/alternateIdentifier")]
        assert registry["publishingOrganizationKey"] not in zf.read(f"dataset/{dataset_key}.xml").decode()


def test_status_by_doi_citation_listing_and_dedup(sb, http):
    pred = {"type": "equals", "key": "TAXON_KEY", "value": "1898286"}
    key = request_download(sb, http, pred).text
    final = wait_for(sb, http, key)[-1]
    by_doi = http.get(f"{sb.api_url}/occurrence/download/{final['doi']}").json()
    assert by_doi["key"] == key
    citation = http.get(f"{sb.api_url}/occurrence/download/{key}/citation").text
    assert citation.startswith("GBIF.org (") and final["doi"] in citation
    # GBIF hands back the existing download for an identical request
    assert request_download(sb, http, pred).text == key
    listing = http.get(
        sb.api_url + "/occurrence/download/user/sandbox", params={"limit": 2}, auth=AUTH
    ).json()
    assert listing["count"] >= 1 and listing["limit"] == 2
    created = [d["created"] for d in listing["results"]]
    assert created == sorted(created, reverse=True)
    assert listing["results"][0]["request"]["creator"] == "sandbox"
    bad = http.get(sb.api_url + "/occurrence/download/user/sandbox", auth=("sandbox", "wrong"))
    assert bad.status_code == 401 and bad.text == "Failed to authenticate user sandbox"
    assert http.get(f"{sb.api_url}/occurrence/download/0000000-000000000000000").status_code == 404
    assert (
        http.get(f"{sb.api_url}/occurrence/download/request/0000000-000000000000000.zip").status_code == 404
    )


def test_authentication_and_bad_requests(sb, http):
    body = {"creator": "sandbox", "predicate": PREDICATE}
    r = http.post(sb.api_url + "/occurrence/download/request", json=body, auth=("x", "y"))
    assert r.status_code == 401 and r.text == "Failed to authenticate user x"
    assert http.post(sb.api_url + "/occurrence/download/request", json=body).status_code == 401
    other = http.post(
        sb.api_url + "/occurrence/download/request", json={**body, "creator": "someone"}, auth=AUTH
    )
    assert other.status_code == 401 and "creator" in other.text
    bad = request_download(sb, http, {"type": "equals", "key": "BASIS_OF_RECORD", "value": "NOPE"})
    assert bad.status_code == 400 and "BASIS_OF_RECORD" in bad.text
    fmt = request_download(sb, http, PREDICATE, format="SIMPLE_PARQUET")
    assert fmt.status_code == 400 and "SIMPLE_PARQUET" in fmt.text


def test_simple_csv_format(sb, http):
    key = request_download(
        sb, http, {"type": "equals", "key": "TAXON_KEY", "value": "5219404"}, format="SIMPLE_CSV"
    ).text
    final = wait_for(sb, http, key)[-1]
    zf = zipfile.ZipFile(io.BytesIO(http.get(final["downloadLink"]).content))
    assert zf.namelist() == [f"{key}.csv"]
    rows = read_tsv(zf, f"{key}.csv")
    assert len(rows) == final["totalRecords"] and len(rows[0]) == 50
    assert {r["speciesKey"] for r in rows} == {"5219404"}


@pytest.mark.parametrize(("word", "zip_status"), [("KILLED", 404), ("FAILED", 404), ("FILE_ERASED", 410)])
def test_downloads_can_be_made_to_fail(sb, http, word, zip_status):
    key = request_download(sb, http, PREDICATE, description=f"fault test sandbox:{word}").text
    final = wait_for(sb, http, key)[-1]
    assert final["status"] == word
    assert ("doi" in final) is (word == "FILE_ERASED")
    r = http.get(f"{sb.api_url}/occurrence/download/request/{key}.zip")
    assert r.status_code == zip_status
    if zip_status == 410:
        assert r.text == "This download was erased, but the metadata is retained."


def test_more_than_three_running_downloads_get_420_and_cancel_frees_a_slot(slow_sb, http):
    keys = []
    for year in (2001, 2002, 2003):
        r = request_download(slow_sb, http, {"type": "equals", "key": "YEAR", "value": str(year)})
        assert r.status_code == 201
        keys.append(r.text)
    assert http.get(f"{slow_sb.api_url}/occurrence/download/{keys[0]}").json()["status"] == "PREPARING"
    fourth = request_download(slow_sb, http, {"type": "equals", "key": "YEAR", "value": "2004"})
    assert fourth.status_code == 420 and "3" in fourth.text
    cancel = http.delete(f"{slow_sb.api_url}/occurrence/download/request/{keys[0]}", auth=AUTH)
    assert cancel.status_code == 204 and cancel.content == b""
    assert http.get(f"{slow_sb.api_url}/occurrence/download/{keys[0]}").json()["status"] == "CANCELLED"
    assert (
        request_download(slow_sb, http, {"type": "equals", "key": "YEAR", "value": "2004"}).status_code == 201
    )
    assert (
        http.delete(f"{slow_sb.api_url}/occurrence/download/request/{keys[1]}", auth=("x", "y")).status_code
        == 401
    )
    running = http.get(
        slow_sb.api_url + "/occurrence/download/user/sandbox", params={"status": "PREPARING"}, auth=AUTH
    ).json()
    assert running["count"] == 3


def test_a_download_gbif_already_holds_is_served_by_its_doi_and_key(sb, http):
    """The example spec sunflowers-from-doi cites GBIF download 10.15468/dl.np3k7j: the sandbox knows it
    as GBIF does (recorded key, DOI, creation time and predicate; SUCCEEDED; a real-layout DWCA of the
    sandbox's sunflowers in the US and Canada since 1975)."""
    by_doi = http.get(f"{sb.api_url}/occurrence/download/10.15468/dl.np3k7j").json()
    key = "0026011-250827131500795"
    assert (by_doi["key"], by_doi["doi"], by_doi["status"]) == (key, "10.15468/dl.np3k7j", "SUCCEEDED")
    assert by_doi["created"] == "2025-09-04T12:11:34.648+00:00"
    assert http.get(f"{sb.api_url}/occurrence/download/{key}").json() == by_doi
    assert "creator" not in by_doi["request"]
    terms = {p["key"] for p in by_doi["request"]["predicate"]["predicates"]}
    assert terms == {"TAXON_KEY", "COUNTRY", "YEAR"}
    citation = http.get(f"{sb.api_url}/occurrence/download/{key}/citation").text
    assert (
        citation == "GBIF.org (4 September 2025) GBIF Occurrence Download https://doi.org/10.15468/dl.np3k7j"
    )
    archive = http.get(f"{sb.api_url}/occurrence/download/request/{key}.zip")
    assert archive.status_code == 200 and len(archive.content) == by_doi["size"]
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert {"occurrence.txt", "multimedia.txt", "meta.xml", "metadata.xml"} <= set(zf.namelist())
        rows = read_tsv(zf, "occurrence.txt")
    assert len(rows) == by_doi["totalRecords"] > 0
    assert {r["countryCode"] for r in rows} <= {"US", "CA"}
    assert all(int(r["year"]) >= 1975 for r in rows)
    assert {r["species"] for r in rows} == {"Helianthus annuus"}
    # not the sandbox account's own download
    mine = http.get(f"{sb.api_url}/occurrence/download/user/sandbox", auth=AUTH).json()["results"]
    assert key not in {d["key"] for d in mine}


def test_a_second_sandbox_serves_the_same_records_from_the_archive_cache(tmp_path, http):
    """Two sandbox runs with one archive cache (what a load run does between runs): the second
    renders no record, and its archive has the first's data entries and its own key and DOI."""
    archives, cached, records = [], [], 0
    for _ in range(2):
        cfg = SandboxConfig(
            occurrences=20_000,
            seed=42,
            download_seconds=(0.1, 0.1),
            archive_cache_dir=str(tmp_path / "cache"),
            media_base_url="http://127.0.0.1:47613",  # the same media URLs whatever the port
        )
        with start_sandbox(cfg) as sb:
            r = request_download(sb, http, PREDICATE)
            assert r.status_code == 201
            assert wait_for(sb, http, r.text)[-1]["status"] == "SUCCEEDED"
            body = http.get(f"{sb.api_url}/occurrence/download/request/{r.text}.zip").content
            archives.append(zipfile.ZipFile(io.BytesIO(body)))
            records = len(all_search_results(sb, http, SEARCH_PARAMS))
        cached.append({p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.json")})
    # the second run wrote no data entries (the sandbox's published downloads are cached as well)
    assert cached[0] and cached[1] == cached[0]
    first, second = archives
    assert first.namelist() == second.namelist()
    for name in ("occurrence.txt", "verbatim.txt", "multimedia.txt"):
        assert first.read(name) == second.read(name)
    assert first.read("metadata.xml") != second.read("metadata.xml")  # each its own key, DOI and date
    assert len(read_tsv(second, "occurrence.txt")) == records > 0
