"""The annotation service against a browser on another site and against password guessing (issue 21).

* **CSRF**: writes take only ``application/json`` (415 otherwise) and refuse requests that a browser
  marks as coming from another origin (``Origin``, ``Sec-Fetch-Site``: 403); 401 answers never ask a
  browser for Basic credentials, so it has none cached for another site to ride on. Scripts and curl
  (Basic credentials sent up front, no ``Origin``) keep working. The same attack from a real page in
  headless Chromium is in ``e2e/test_annotation_map_browser.py``.
* **Guessing**: failed logins are counted before the password check, per client and per account, so
  concurrent guesses cannot overrun the limit; ``X-Forwarded-For`` counts only from a configured
  trusted proxy; password checks run in a small pool of their own, so anonymous reads keep answering
  while many (scrypt-expensive) bad logins arrive at once.

One live ``gbifdl annotations serve`` process per module on a SQLite store.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService

ALICE = ("alice", "alice-secret-1")
BOB = ("bob", "bob-secret-22")
UK = "POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnnotationService]:
    url = f"sqlite:///{tmp_path_factory.mktemp('annsec') / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(*ALICE)
        store.add_user(*BOB)
    with AnnotationService(url, tmp_path_factory.mktemp("annsec-log")) as svc:
        yield svc


@pytest.fixture
def rule(service: AnnotationService) -> dict:
    n = len(requests.get(f"{service.api}/rule", params={"limit": 10_000}, timeout=30).json())
    body = {"taxonKey": 5219404, "geometry": UK, "annotation": "SUSPICIOUS", "yearRange": f"{1000 + n},*"}
    r = requests.post(f"{service.api}/rule", json=body, auth=ALICE, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def votes_and_comments(service: AnnotationService, rule_id: int) -> tuple[list, list, list]:
    now = requests.get(f"{service.api}/rule/{rule_id}", timeout=30).json()
    comments = requests.get(f"{service.api}/rule/{rule_id}/comment", timeout=30).json()
    return now["supportedBy"], now["contestedBy"], comments


# ---------------------------------------------------------------------------------------------------
# CSRF
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", b""),  # a plain <form method=post> without fields
        ("application/x-www-form-urlencoded", b"comment=pwned"),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n",
        ),
        ("text/plain", b'{"comment": "pwned", "x": "="}'),  # <form enctype=text/plain> with a JSON body
        (None, b'{"comment": "pwned"}'),  # fetch(..., {body: new Blob([json])}) sends no Content-Type
        ("application/jsonx", b'{"comment": "pwned"}'),
    ],
)
def test_writes_take_only_json(service, rule, content_type, data):
    headers = {"Content-Type": content_type} if content_type else {}
    rid = rule["id"]
    for path in (f"/rule/{rid}/comment", f"/rule/{rid}/contest", f"/rule/{rid}/support"):
        r = requests.post(service.api + path, data=data, headers=headers, auth=BOB, timeout=30)
        assert r.status_code == 415, (path, r.status_code, r.text)
        assert "application/json" in r.json()["message"]
    r = requests.put(f"{service.api}/rule/{rid}", data=data, headers=headers, auth=ALICE, timeout=30)
    assert r.status_code == 415
    assert votes_and_comments(service, rid) == ([], [], [])


def test_json_writes_and_bodyless_votes_from_scripts_keep_working(service, rule):
    rid = rule["id"]
    # curl -u / requests auth=: Basic credentials up front, no Origin, no Sec-Fetch-* headers
    r = requests.post(f"{service.api}/rule/{rid}/comment", json={"comment": "ok"}, auth=BOB, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(
        f"{service.api}/rule/{rid}/comment",
        data=b'{"comment": "with a charset"}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
        auth=BOB,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert requests.post(f"{service.api}/rule/{rid}/support", auth=BOB, timeout=30).status_code == 200
    assert (
        requests.post(
            f"{service.api}/rule/{rid}/removeSupport",
            headers={"Content-Type": "application/json"},
            auth=BOB,
            timeout=30,
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # sandboxed frames, data: pages
        {"Origin": "http://127.0.0.1:1"},  # another port on the same host is another origin
        {"Origin": "https://{own}"},  # another scheme too
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # e.g. another port on the same host, without Origin
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://{own}"},
    ],
)
def test_cross_site_writes_are_refused(service, rule, headers):
    own = service.url.removeprefix("http://")
    headers = {k: v.replace("{own}", own) for k, v in headers.items()}
    rid = rule["id"]
    for method, path, body in (
        ("POST", f"/rule/{rid}/contest", None),
        ("POST", f"/rule/{rid}/comment", {"comment": "pwned"}),
        ("DELETE", f"/rule/{rid}", None),
        ("POST", "/ruleset", {"name": "pwned"}),
    ):
        user = ALICE if method == "DELETE" else BOB
        r = requests.request(method, service.api + path, json=body, headers=headers, auth=user, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "cross-site" in r.json()["message"]
    assert votes_and_comments(service, rid) == ([], [], [])
    assert requests.get(f"{service.api}/rule/{rid}", timeout=30).json()["deleted"] is None
    # reads stay open to every site (they are public, and the browser keeps the answer from the other page)
    assert requests.get(f"{service.api}/rule/{rid}", headers=headers, timeout=30).status_code == 200


def test_same_origin_writes_from_the_page_are_accepted(service, rule):
    rid = rule["id"]
    page = {"Origin": service.url, "Sec-Fetch-Site": "same-origin", "X-Requested-With": "gbifdl-map"}
    r = requests.post(
        f"{service.api}/rule/{rid}/comment",
        json={"comment": "from the page"},
        headers=page,
        auth=BOB,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    r = requests.post(f"{service.api}/rule/{rid}/contest", headers=page, auth=BOB, timeout=30)
    assert r.status_code == 200 and r.json()["contestedBy"] == ["bob"]
    r = requests.delete(f"{service.api}/rule/{rid}", headers=page, auth=ALICE, timeout=30)
    assert r.status_code == 200 and r.json()["deletedBy"] == "alice"


def test_401_answers_never_ask_a_browser_for_basic_credentials(service):
    body = {"taxonKey": 1, "geometry": UK, "annotation": "NATIVE"}
    for method, url, kwargs in (
        ("POST", f"{service.api}/rule", {"json": body}),
        ("POST", f"{service.api}/rule", {"json": body, "auth": ("alice", "wrong-password")}),
        ("GET", f"{service.api}/rule/my", {}),
        ("GET", f"{service.url}/v1{service.api.removeprefix(service.url)}/rule/my", {}),
        ("GET", f"{service.url}/user/login", {}),
        ("GET", f"{service.url}/v1/user/login", {"auth": ("bob", "wrong-password")}),
    ):
        r = requests.request(method, url, timeout=30, **kwargs)
        assert r.status_code == 401, (method, url, r.text)
        assert "www-authenticate" not in r.headers, (method, url)
        assert r.json()["message"]
    # Basic credentials sent up front (curl -u, requests, httr2, gbifrules) work as before
    assert requests.get(f"{service.url}/user/login", auth=ALICE, timeout=30).json()["userName"] == "alice"
    assert requests.get(f"{service.api}/rule/my", auth=ALICE, timeout=30).status_code == 200


# ---------------------------------------------------------------------------------------------------
# password guessing
# ---------------------------------------------------------------------------------------------------
def _together(n: int, fn) -> list:
    """Run ``fn(i)`` in ``n`` threads released at the same moment; their results in order."""
    barrier = threading.Barrier(n)

    def run(i: int):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _bad_login(url: str, user: str = "alice", headers: dict | None = None) -> int:
    return requests.get(
        f"{url}/user/login", auth=(user, "not-the-password"), headers=headers, timeout=60
    ).status_code


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[AnnotationService]:
    """A service of its own (fresh counters): 20 failed logins per client, the default."""
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(*ALICE)
    with AnnotationService(url, tmp_path, extra_args=("--max-failed-logins", "20")) as svc:
        yield svc


def test_concurrent_bad_logins_are_counted_before_the_password_check(throttled):
    statuses = _together(40, lambda i: _bad_login(throttled.url))
    # a 401 is a password that was checked; the rest were turned away before scrypt ran
    assert statuses.count(401) <= 20 and statuses.count(401) + statuses.count(429) == 40, statuses
    assert _bad_login(throttled.url) == 429
    # the throttled address gets 429 even with the right password (it cannot tell a hit from a miss)
    assert requests.get(f"{throttled.url}/user/login", auth=ALICE, timeout=30).status_code == 429


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(throttled):
    # the service trusts no proxy by default: a rotating X-Forwarded-For does not make new clients
    statuses = [_bad_login(throttled.url, headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(25)]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}, statuses


def test_behind_a_trusted_proxy_the_client_is_the_last_address_it_did_not_add(tmp_path):
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(*ALICE)
    args = ("--max-failed-logins", "3", "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "192.168.0.0/16")
    with AnnotationService(url, tmp_path, extra_args=args) as svc:
        # the proxy (127.0.0.1) appends the client it saw; what the client itself wrote in front is noise
        spoofed = [
            _bad_login(svc.url, headers={"X-Forwarded-For": f"1.2.3.{i}, 10.9.9.9, 192.168.1.1"})
            for i in range(5)
        ]
        assert spoofed == [401, 401, 401, 429, 429]
        # another real client behind the proxy has its own count
        assert _bad_login(svc.url, headers={"X-Forwarded-For": "10.8.8.8"}) == 401
        # the account's own count (5 x the per-client limit by default) stops guessing from many addresses
        many = [_bad_login(svc.url, headers={"X-Forwarded-For": f"10.7.0.{i}"}) for i in range(14)]
        # (4 failures counted so far: 3 of the spoofed ones and 10.8.8.8's)
        assert many == [401] * (15 - 4) + [429] * 3, many
        # ... for that account only
        assert _bad_login(svc.url, user="bob", headers={"X-Forwarded-For": "10.6.0.1"}) == 401


def test_anonymous_reads_keep_answering_during_60_concurrent_bad_logins(tmp_path):
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(*ALICE)
        for i in range(20):
            store.create_rule(
                {
                    "taxonKey": 5219404,
                    "geometry": UK,
                    "annotation": "SUSPICIOUS",
                    "yearRange": f"{1900 + i},*",
                },
                user="alice",
            )
    # throttling off: every one of the 60 bad logins asks for a (32 MiB, ~0.1-0.2 s) scrypt check
    with AnnotationService(url, tmp_path, extra_args=("--max-failed-logins", "0")) as svc:
        with requests.Session() as reader:
            reader.get(f"{svc.api}/rule", timeout=30)
            quiet = []
            for _ in range(20):
                started = time.perf_counter()
                assert reader.get(f"{svc.api}/rule", timeout=30).status_code == 200
                quiet.append(time.perf_counter() - started)
            latencies: list[float] = []
            done = threading.Event()

            def read() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    r = reader.get(f"{svc.api}/rule", timeout=60)
                    latencies.append(time.perf_counter() - started)
                    assert r.status_code == 200 and len(r.json()) == 20

            thread = threading.Thread(target=read)
            thread.start()
            try:
                statuses = _together(60, lambda i: _bad_login(svc.url))
            finally:
                done.set()
                thread.join(timeout=60)
        p95 = statistics.quantiles(latencies, n=20)[-1]
        quiet_p95 = statistics.quantiles(quiet, n=20)[-1]
        print(
            f"\nGET /rule during 60 bad logins: {len(latencies)} reads, p95 {p95 * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms (quiet p95 {quiet_p95 * 1000:.0f} ms); logins {sorted(set(statuses))}"
        )
        assert set(statuses) <= {401, 503}, statuses  # checked, or told to come back (never a 500)
        assert statuses.count(401) >= 1
        assert len(latencies) >= 10
        assert p95 < 0.25, (p95, quiet_p95)
        assert "Internal Server Error" not in svc.log_text()
