"""Download API: request, status polling, DOI lookup, listing, cancel, and streaming the zip."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path

import pytest
import requests
import responses

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.downloads import normalize_doi
from gbifdl_assets.gbif.errors import (
    GbifAuthError,
    GbifBadRequest,
    GbifDownloadNotReady,
    GbifNotFound,
    GbifRateLimited,
    GbifUnavailable,
)
from gbifdl_assets.gbif.predicates import predicate_from_filters
from gbifdl_assets_tests.unit.cassettes import (
    FIXTURES_DIR,
    PYGBIF,
    RGBIF,
    Interaction,
    load_cassette,
    replay_session,
)

USER, PASSWORD = "<gbif_user>", "s3cret-pw"


def client_for(interactions, *, username=USER, password=PASSWORD, **kwargs):
    session, adapter = replay_session(interactions, **kwargs)
    sleeps: list[float] = []
    client = GbifClient(session=session, username=username, password=password, sleep=sleeps.append)
    return client, adapter, sleeps


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ----------------------------------------------------------------------------- request + first status
REQUESTS = [
    ("occ_download_1.yml", {"country": ["US", "CA"], "year": "1979,*"}, [9206251], "DWCA"),
    (
        "occ_download_2.yml",
        {"geometry": "POLYGON((-14 42,-7 26,9 38,-14 42))", "elevation": "5000,*"},
        [],
        "DWCA",
    ),
    ("occ_download_3.yml", {"decimalLatitude": "75,*"}, [], "SPECIES_LIST"),
    ("occ_download_4.yml", None, [], "SIMPLE_CSV"),  # and/or/not/isNull/like: sent as recorded
    ("occ_download_5.yml", {"verbatimScientificName": "Calopteryx"}, [], "SIMPLE_CSV"),
    ("occ_download_cancel_prep.yml", {"country": ["US", "CA"], "year": "1979,*"}, [9206251], "DWCA"),
]


@pytest.mark.parametrize(("cassette", "filters", "taxa", "fmt"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_request_download_and_first_status(cassette, filters, taxa, fmt):
    interactions = load_cassette(RGBIF / cassette)
    recorded_post, recorded_status = interactions
    recorded_body = recorded_post.request_json()
    predicate = (
        recorded_body["predicate"] if filters is None else predicate_from_filters(filters, taxon_keys=taxa)
    )
    client, adapter, sleeps = client_for(interactions)
    key = client.request_download(predicate, format=fmt, notification_addresses=[f"{USER}@gbif.org"])
    assert key == recorded_post.text.strip()  # 201 with a bare, unquoted key

    sent = adapter.requests[0]
    assert sent.method == "POST"
    assert sent.headers["Authorization"] == basic(USER, PASSWORD)
    assert sent.headers["Content-Type"] == "application/json"
    body = json.loads(sent.body)
    assert body == {
        "creator": USER,
        "notificationAddresses": [f"{USER}@gbif.org"],
        "sendNotification": True,
        "format": recorded_body["format"],
        "predicate": recorded_body["predicate"],
    }

    status = client.download_status(key)
    assert status["key"] == key and status["status"] == "PREPARING"
    assert status["request"]["format"] == fmt
    assert "Authorization" not in adapter.requests[1].headers, "the status endpoint is public"
    assert adapter.unused == [] and sleeps == []


def test_pygbif_request_and_cancel():
    interactions = load_cassette(PYGBIF / "test_download_cancel.yaml")
    client, adapter, _ = client_for(interactions, username="jwaller")
    recorded = interactions[0].request_json()
    key = client.request_download(recorded["predicate"], format="SIMPLE_CSV", description="a test")
    assert key == "0040513-240906103802322"
    body = json.loads(adapter.requests[0].body)
    assert body["sendNotification"] is False and body["notificationAddresses"] == []
    assert body["description"] == "a test" and body["creator"] == "jwaller"
    assert client.cancel_download(key) is None
    assert adapter.requests[1].method == "DELETE"
    assert adapter.requests[1].headers["Authorization"] == basic("jwaller", PASSWORD)


def test_rgbif_cancel():
    client, adapter, _ = client_for(load_cassette(RGBIF / "occ_download_cancel.yml"))
    client.cancel_download("0025653-250827131500795")
    assert adapter.unused == []


@pytest.mark.parametrize("status", [420, 429])
def test_too_many_downloads_is_rate_limited_without_retry(status):
    body = b"Too many simultaneous downloads"
    interactions = [
        Interaction("POST", "https://api.gbif.org/v1/occurrence/download/request", None, status, {}, body)
    ]
    client, adapter, sleeps = client_for(interactions)
    with pytest.raises(GbifRateLimited) as err:
        client.request_download({"type": "equals", "key": "TAXON_KEY", "value": "1"})
    assert err.value.status == status
    assert "3 concurrent downloads" in str(err.value)
    assert "Too many simultaneous downloads" in str(err.value)
    assert len(adapter.requests) == 1 and sleeps == []


def test_bad_predicate_is_bad_request():
    body = b"Invalid predicate: unknown key FOO"
    interactions = [
        Interaction("POST", "https://api.gbif.org/v1/occurrence/download/request", None, 400, {}, body)
    ]
    client, _, _ = client_for(interactions)
    with pytest.raises(GbifBadRequest, match="Invalid predicate: unknown key FOO"):
        client.request_download({"type": "equals", "key": "FOO", "value": "1"})


def test_download_needs_credentials_before_any_request():
    client, adapter, _ = client_for([], username=None, password=None)
    with pytest.raises(GbifAuthError, match="GBIF_USERNAME and GBIF_PASSWORD"):
        client.request_download({"type": "equals", "key": "TAXON_KEY", "value": "1"})
    with pytest.raises(GbifAuthError):
        next(client.iter_user_downloads())
    assert adapter.requests == []


def test_unknown_format_is_rejected():
    client, _, _ = client_for([])
    with pytest.raises(ValueError, match="SIMPLE_PARQUET"):
        client.request_download({"type": "equals", "key": "TAXON_KEY", "value": "1"}, format="CSV")


# ----------------------------------------------------------------------------- status polling
def test_wait_for_download_follows_the_recorded_sequence():
    interactions = load_cassette(RGBIF / "occ_download_wait_request.yml")
    client, adapter, sleeps = client_for(interactions)
    key = client.request_download(
        predicate_from_filters({"country": ["US", "CA"], "year": "1975,*"}, taxon_keys=[9206251])
    )
    seen: list[str] = []
    final = client.wait_for_download(key, poll_seconds=3.0, on_status=lambda s: seen.append(s["status"]))
    assert seen == ["PREPARING"] * 23 + ["RUNNING"] * 32 + ["SUCCEEDED"]
    assert sleeps == [3.0] * 55
    assert (
        final["doi"] == "10.15468/dl.np3k7j" and final["size"] == 8329717 and final["totalRecords"] == 22235
    )
    assert adapter.unused == []


def test_wait_for_download_times_out():
    interactions = load_cassette(RGBIF / "occ_download_wait_request.yml")[1:]
    client, _, _ = client_for(interactions)
    with pytest.raises(GbifDownloadNotReady, match="still PREPARING") as err:
        client.wait_for_download("0026011-250827131500795", poll_seconds=10, timeout_seconds=30)
    assert err.value.status == "PREPARING"


# ----------------------------------------------------------------------------- DOI, listing, auth
@pytest.mark.parametrize(
    "doi",
    [
        "10.15468/dl.hx3uzz",
        "doi:10.15468/dl.hx3uzz",
        "https://doi.org/10.15468/dl.hx3uzz",
        " DOI:10.15468/dl.hx3uzz ",
    ],
)
def test_download_key_for_doi(doi):
    client, adapter, _ = client_for(load_cassette(RGBIF / "occ_download_doi.yml"))
    assert client.download_key_for_doi(doi) == "0108986-200613084148143"
    assert adapter.requests[0].url == "https://api.gbif.org/v1/occurrence/download/10.15468/dl.hx3uzz"


def test_status_by_doi_and_bad_references():
    client, _, _ = client_for(load_cassette(RGBIF / "occ_download_doi.yml"))
    status = client.download_status("https://doi.org/10.15468/dl.hx3uzz")
    assert status["status"] == "SUCCEEDED" and status["size"] == 38857
    with pytest.raises(ValueError, match="not a DOI"):
        client.download_key_for_doi("0108986-200613084148143")
    with pytest.raises(ValueError, match="not a GBIF download key"):
        client.download_status("../../etc/passwd")
    assert normalize_doi("https://dx.doi.org/10.15468/dl.abc") == "10.15468/dl.abc"
    assert normalize_doi("0012150-260108223611665") is None


def test_other_recorded_statuses_parse():
    for name, key in [
        ("gbif_citation_downloadkey.yml", "0000122-171020152545675"),
        ("occ_download_meta.yml", "0068181-200221144449610"),
    ]:
        client, _, _ = client_for(load_cassette(RGBIF / name))
        status = client.download_status(key)
        assert status["key"] == key and status["doi"].startswith("10.15468/dl.")
        assert status["status"] in ("SUCCEEDED", "CANCELLED")


def test_iter_user_downloads_first_page():
    interactions = load_cassette(RGBIF / "occ_download_list.yml")
    client, adapter, _ = client_for(interactions, ignore={"limit"})
    first = list(itertools.islice(client.iter_user_downloads(), 20))
    recorded = interactions[0].json()["results"]
    assert [d["key"] for d in first] == [d["key"] for d in recorded]
    assert first[0]["status"] == "CANCELLED"
    assert adapter.requests[0].headers["Authorization"] == basic(USER, PASSWORD)
    assert adapter.requests[0].url.startswith(
        "https://api.gbif.org/v1/occurrence/download/user/%3Cgbif_user%3E?"
    )


def test_iter_user_downloads_pages_to_the_end():
    def page(offset, keys, end):
        results = [{"key": k, "status": "SUCCEEDED"} for k in keys]
        body = {"offset": offset, "limit": 2, "endOfRecords": end, "count": 3, "results": results}
        return json.dumps(body).encode()

    base = "https://api.gbif.org/v1/occurrence/download/user/me?status=SUCCEEDED"
    interactions = [
        Interaction("GET", base + "&limit=100&offset=0", None, 200, {}, page(0, ["a", "b"], False)),
        Interaction("GET", base + "&limit=100&offset=2", None, 200, {}, page(2, ["c"], True)),
    ]
    client, adapter, _ = client_for(interactions, username="me")
    assert [d["key"] for d in client.iter_user_downloads(status="SUCCEEDED")] == ["a", "b", "c"]
    assert adapter.unused == []


def test_unauthorized_listing_is_auth_error(caplog):
    client, adapter, sleeps = client_for(
        load_cassette(RGBIF / "occ_download_list_unauthorized.yml"), username="foobar", ignore={"limit"}
    )
    with pytest.raises(GbifAuthError) as err:
        next(client.iter_user_downloads(), None)
    assert err.value.status == 401
    assert err.value.message == "Failed to authenticate user foobar"
    assert "GBIF_USERNAME/GBIF_PASSWORD" in str(err.value)
    assert PASSWORD not in str(err.value) and PASSWORD not in caplog.text
    assert len(adapter.requests) == 1 and sleeps == []


def test_password_never_in_repr():
    client = GbifClient(username="me", password=PASSWORD)
    assert PASSWORD not in repr(client) and "me" in repr(client)


# ----------------------------------------------------------------------------- fetching the zip
API = "https://api.gbif.org/v1"
KEY = "0000066-140928181241064"
ARCHIVE = FIXTURES_DIR / "archives" / f"rgbif_{KEY}_DWCA.zip"


def status_body(state="SUCCEEDED", size=None, key=KEY):
    size = ARCHIVE.stat().st_size if size is None else size
    return {"key": key, "status": state, "size": size if state == "SUCCEEDED" else 0, "totalRecords": 470}


def add_status(rsps, **kwargs):
    rsps.add(responses.GET, f"{API}/occurrence/download/{KEY}", json=status_body(**kwargs))


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_fetch_download_follows_redirect_and_is_atomic(tmp_path):
    data = ARCHIVE.read_bytes()
    assert len(data) == 143097
    progress: list[tuple[int, int | None]] = []
    with responses.RequestsMock() as rsps:
        add_status(rsps)
        rsps.add(
            responses.GET,
            f"{API}/occurrence/download/request/{KEY}.zip",
            status=302,
            headers={"Location": f"https://archive.example.org/{KEY}.zip"},
        )
        rsps.add(
            responses.GET, f"https://archive.example.org/{KEY}.zip", body=data, content_type="application/zip"
        )
        client = GbifClient(sleep=lambda s: None)
        dest = client.fetch_download(KEY, tmp_path, progress=lambda n, total: progress.append((n, total)))
    assert dest == tmp_path / f"{KEY}.zip"
    assert dest.read_bytes() == data
    assert files_in(tmp_path) == [f"{KEY}.zip"], "no temp file left behind"
    assert progress[-1] == (143097, 143097)


def test_fetch_download_retries_a_truncated_transfer(tmp_path):
    data = ARCHIVE.read_bytes()
    sleeps: list[float] = []
    with responses.RequestsMock() as rsps:
        add_status(rsps)
        url = f"{API}/occurrence/download/request/{KEY}.zip"
        rsps.add(responses.GET, url, body=data[:1000])
        rsps.add(responses.GET, url, body=requests.exceptions.ChunkedEncodingError("connection broken"))
        rsps.add(responses.GET, url, body=data)
        client = GbifClient(sleep=sleeps.append)
        dest = client.fetch_download(KEY, tmp_path / "sub" / "x.zip")
    assert dest.read_bytes() == data
    assert len(sleeps) == 2
    assert files_in(tmp_path / "sub") == ["x.zip"]


def test_fetch_download_gives_up_without_leaving_files(tmp_path):
    with responses.RequestsMock() as rsps:
        add_status(rsps)
        rsps.add(responses.GET, f"{API}/occurrence/download/request/{KEY}.zip", body=b"short")
        client = GbifClient(sleep=lambda s: None, max_retries=2)
        with pytest.raises(GbifUnavailable, match="got 5 bytes but GBIF reports the file has 143097"):
            client.fetch_download(KEY, tmp_path / "x.zip")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("status", [404, 410])
def test_fetch_download_missing_file(tmp_path, status):
    with responses.RequestsMock() as rsps:
        add_status(rsps)
        rsps.add(
            responses.GET,
            f"{API}/occurrence/download/request/{KEY}.zip",
            status=status,
            body="This download was erased, but the metadata is retained.",
        )
        with pytest.raises(GbifNotFound, match="erased") as err:
            GbifClient(sleep=lambda s: None).fetch_download(KEY, tmp_path / "x.zip")
    assert err.value.status == status
    assert "request a new download" in str(err.value)
    assert files_in(tmp_path) == []


def test_fetch_unknown_download(tmp_path):
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.GET,
            f"{API}/occurrence/download/{KEY}",
            status=404,
            body="Download with this key not found.",
        )
        with pytest.raises(
            GbifNotFound, match="Download with this key not found.*does not know this download"
        ):
            GbifClient().fetch_download(KEY, tmp_path / "x.zip")


@pytest.mark.parametrize(
    ("state", "exc", "match"),
    [
        ("RUNNING", GbifDownloadNotReady, "is RUNNING, its file is not ready"),
        ("KILLED", GbifDownloadNotReady, "ended with status KILLED"),
        ("FILE_ERASED", GbifNotFound, "erased"),
    ],
)
def test_fetch_download_checks_status_first(tmp_path, state, exc, match):
    with responses.RequestsMock() as rsps:
        add_status(rsps, state=state)
        with pytest.raises(exc, match=match):
            GbifClient().fetch_download(KEY, tmp_path / "x.zip")
    assert files_in(tmp_path) == []
