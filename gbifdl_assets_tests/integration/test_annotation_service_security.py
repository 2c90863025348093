"""The annotation service against a browser on another site and against password guessing (issue 21).

* **CSRF**: writes take only ``application/json`` (415 otherwise) and refuse requests that a browser
  marks as coming from another origin (``Origin``, ``Sec-Fetch-Site``: 403); 401 answers never ask a
  browser for Basic credentials, so it has none cached for another site to ride on. Scripts and curl
  (Basic credentials sent up front, no ``Origin``) keep working. The same attack from a real page in
  headless Chromium is in ``e2e/test_annotation_map_browser.py``.

One live ``gbifdl annotations serve`` process per module on a SQLite store.
"""

from __future__ import annotations

from collections.abc import Iterator

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
