"""Transport behaviour: retries, backoff, Retry-After, error mapping, user agent, logging."""

from __future__ import annotations

import logging
import pickle
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.errors import (
    GbifAuthError,
    GbifBadRequest,
    GbifHTTPError,
    GbifNotFound,
    GbifRateLimited,
    GbifResponseError,
    GbifUnavailable,
    strip_credentials,
)
from gbifdl_assets.gbif.http import GbifHttp, parse_retry_after

API = "https://api.gbif.org/v1"
SEARCH = f"{API}/occurrence/search"
PAGE = {"offset": 0, "limit": 0, "endOfRecords": False, "count": 7, "results": [], "facets": []}


def make_client(**kwargs) -> tuple[GbifClient, list[float]]:
    sleeps: list[float] = []
    return GbifClient(sleep=sleeps.append, **kwargs), sleeps


def test_user_agent_and_pool():
    client, _ = make_client(pool_size=24)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, json=PAGE)
        assert client.count({}) == 7
        ua = rsps.calls[0].request.headers["User-Agent"]
    assert re.fullmatch(r"gbifdl_assets/\S+ \(\+https://github\.com/gbifdl/gbifdl_assets\)", ua)
    adapter = client.http.session.get_adapter("https://api.gbif.org")
    assert adapter._pool_maxsize == 24
    assert adapter.max_retries.total == 0, "retries are ours, not urllib3's"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 420])
def test_transient_statuses_are_retried(status):
    client, sleeps = make_client(backoff_base=1.0, backoff_max=60.0)
    client.http._random = lambda: 0.5
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, status=status, body="busy")
        rsps.add(responses.GET, SEARCH, status=status, body="busy")
        rsps.add(responses.GET, SEARCH, json=PAGE)
        assert client.count({"taxonKey": 1}) == 7
        assert len(rsps.calls) == 3
    assert sleeps == [0.5, 1.0], "full jitter: random() * base * 2**attempt"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, GbifBadRequest),
        (401, GbifAuthError),
        (403, GbifAuthError),
        (404, GbifNotFound),
        (410, GbifNotFound),
    ],
)
def test_client_errors_are_not_retried(status, cls):
    client, sleeps = make_client()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, status=status, body="nope", content_type="text/plain")
        with pytest.raises(cls) as err:
            client.count({"taxonKey": 1})
        assert len(rsps.calls) == 1
    assert sleeps == []
    assert err.value.status == status and err.value.message == "nope"


def test_persistent_5xx_becomes_unavailable_after_max_retries():
    client, sleeps = make_client(max_retries=3, backoff_base=2.0, backoff_max=5.0)
    client.http._random = lambda: 1.0
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.GET,
            SEARCH,
            status=503,
            body="<html><body><h1>503 Service Unavailable</h1></body></html>",
        )
        with pytest.raises(GbifUnavailable) as err:
            client.count({"taxonKey": 1})
        assert len(rsps.calls) == 4
    assert sleeps == [2.0, 4.0, 5.0], "exponential, capped by backoff_max"
    assert err.value.message == "503 Service Unavailable"
    assert "HTTP 503" in str(err.value) and "taxonKey=1" in str(err.value)


@pytest.mark.parametrize(
    "exc",
    [requests.ConnectionError("refused"), requests.ReadTimeout("slow"), requests.ConnectTimeout("slow")],
)
def test_connection_errors_and_timeouts_are_retried(exc):
    client, sleeps = make_client(max_retries=2)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, body=exc)
        rsps.add(responses.GET, SEARCH, json=PAGE)
        assert client.count({}) == 7
    assert len(sleeps) == 1
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, body=exc)
        with pytest.raises(GbifUnavailable) as err:
            client.count({})
        assert len(rsps.calls) == 3
    assert err.value.status == 0 and "no response" in str(err.value) and type(exc).__name__ in str(err.value)


def test_retry_after_seconds_and_http_date_are_honoured_and_capped():
    now = datetime(2025, 9, 4, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("31") == 31.0
    assert parse_retry_after("0") == 0.0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=lambda: now) == 90.0
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=lambda: now) == 0.0
    )
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None

    client, sleeps = make_client(backoff_max=20.0)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=600), usegmt=True)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, status=429, headers={"Retry-After": "3"}, json=["slow down"])
        rsps.add(responses.GET, SEARCH, status=503, headers={"Retry-After": later}, body="x")
        rsps.add(responses.GET, SEARCH, json=PAGE)
        assert client.count({}) == 7
    assert sleeps == [3.0, 20.0]


def test_429_json_array_message():
    body = [
        "To download GBIF occurrence data in bulk, please request a download.",
        "Contact helpdesk@gbif.org.",
    ]
    client, _ = make_client(max_retries=0)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, status=429, json=body)
        with pytest.raises(GbifRateLimited) as err:
            client.count({})
    assert err.value.message == " ".join(body)


def test_non_json_body_is_response_error():
    client, _ = make_client()
    html = "<html><head><title>Maintenance</title></head><body>" + "x" * 500 + "</body></html>"
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, body=html, content_type="text/html")
        with pytest.raises(GbifResponseError) as err:
            client.count({"taxonKey": 5})
    text = str(err.value)
    assert f"{SEARCH}?taxonKey=5" in text and "text/html" in text
    assert "<html><head><title>Maintenance" in text
    assert len(err.value.body_start) <= 200


def test_json_but_not_a_search_page_is_response_error():
    client, _ = make_client()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SEARCH, json={"unexpected": True})
        with pytest.raises(GbifResponseError, match="count"):
            client.search_page({})


def test_credentials_never_shown_or_logged(caplog):
    assert (
        strip_credentials("https://me:pw@api.example.org:8443/v1/x?a=1")
        == "https://api.example.org:8443/v1/x?a=1"
    )
    client, _ = make_client(username="me", password="hunter2-secret", max_retries=1)
    client.base_url = "https://me:hunter2-secret@api.gbif.org/v1"
    with caplog.at_level(logging.DEBUG), responses.RequestsMock() as rsps:
        rsps.add(responses.GET, re.compile(r".*/occurrence/download/user/me.*"), status=503, body="down")
        with pytest.raises(GbifUnavailable) as err:
            next(client.iter_user_downloads())
        assert rsps.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert "hunter2-secret" not in str(err.value)
    assert (
        "hunter2-secret" not in caplog.text
        and "Authorization" not in caplog.text
        and "Basic " not in caplog.text
    )
    assert "retry 1/1" in caplog.text


def test_errors_pickle():
    for exc in [
        GbifBadRequest(400, "https://x/y", "bad", method="POST"),
        GbifResponseError("https://x", "expected JSON", "<html>"),
    ]:
        clone = pickle.loads(pickle.dumps(exc))
        assert type(clone) is type(exc) and str(clone) == str(exc)


def test_error_classes_share_the_base():
    assert issubclass(GbifRateLimited, GbifHTTPError) and issubclass(GbifUnavailable, GbifHTTPError)
    err = GbifAuthError(401, "https://u:p@h/v1/x", "Failed to authenticate user foobar")
    assert str(err) == (
        "GBIF HTTP 401 for GET https://h/v1/x: Failed to authenticate user foobar — "
        "check GBIF_USERNAME/GBIF_PASSWORD: your gbif.org user name (not the e-mail address) and password"
    )


def test_given_session_is_used_as_is():
    session = requests.Session()
    http = GbifHttp(session=session)
    assert http.session is session
    http.close()  # not ours to close: still usable
    assert session.adapters
