"""The annotation service over HTTP: GBIF's API shapes, permissions, GBIF's bugs fixed, security.

One live ``gbifdl annotations serve`` process per module on a SQLite store; users are added the way an
operator would (``gbifdl annotations user add``) or through the store.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gbifdl_assets.annotations.gbif_api import GbifAnnotationApi, pull_from_gbif, push_to_gbif
from gbifdl_assets.annotations.service.auth import Authenticator, AuthError, Credentials
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "carol": "carol-admin-333"}
UK = "POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))"
KENYA = "POLYGON ((34 -5, 42 -5, 42 5, 34 5, 34 -5))"
LION = 5219404


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('annsvc') / 'annotations.sqlite'}"


@pytest.fixture(scope="module")
def service(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnnotationService]:
    db = store_url.removeprefix("sqlite:///")
    # alice through the CLI, as an operator would (password on stdin, never an argument)
    done = subprocess.run(
        [sys.executable, "-m", "gbifdl_assets.cli", "annotations", "user", "add", "alice",
         "--password-stdin", "--store", store_url],
        input=PASSWORDS["alice"] + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"ok": True, "command": "annotations user add", "username": "alice", "admin": False}
    assert PASSWORDS["alice"] not in done.stdout + done.stderr
    with AnnotationStore(store_url) as store:
        store.add_user("bob", PASSWORDS["bob"])
        store.add_user("carol", PASSWORDS["carol"], admin=True)
    assert Path(db).exists()
    with AnnotationService(store_url, tmp_path_factory.mktemp("annsvc-log")) as svc:
        yield svc


def auth(user: str) -> tuple[str, str]:
    return (user, PASSWORDS[user])


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def new_rule(service: AnnotationService, http: requests.Session, user: str = "alice", **fields) -> dict:
    body = {"taxonKey": LION, "geometry": UK, "annotation": "SUSPICIOUS", **fields}
    r = http.post(f"{service.api}/rule", json=body, auth=auth(user))
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------------------------------
# GBIF's shapes
# ---------------------------------------------------------------------------------------------------
def test_rule_round_trip_has_gbifs_fields_and_ignores_server_managed_ones(service, http):
    r = http.post(
        f"{service.api}/rule",
        json={
            "taxonKey": LION, "geometry": UK, "annotation": "suspicious", "yearRange": "*,1950",
            "basisOfRecord": ["PreservedSpecimen"],
            # server-managed fields are ignored, as GBIF does
            "id": 999, "createdBy": "mallory", "supportedBy": ["mallory"], "deleted": "2020-01-01T00:00:00Z",
        },
        auth=auth("alice"),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    rule = r.json()
    assert list(rule) == [
        "id", "taxonKey", "datasetKey", "geometry", "annotation", "basisOfRecord", "basisOfRecordNegated",
        "yearRange", "rulesetId", "projectId", "supportedBy", "contestedBy", "created", "createdBy",
        "deleted", "deletedBy",
    ]  # fmt: skip
    assert rule["id"] != 999
    assert rule["createdBy"] == "alice"
    assert rule["annotation"] == "SUSPICIOUS"
    assert rule["basisOfRecord"] == ["PRESERVED_SPECIMEN"]
    assert rule["yearRange"] == "*,1950"
    assert (rule["supportedBy"], rule["contestedBy"], rule["deleted"]) == ([], [], None)
    assert rule["created"].endswith("+00:00") and len(rule["created"]) == len("2023-11-10T14:08:04.182+00:00")
    assert http.get(f"{service.api}/rule/{rule['id']}").json() == rule
    # GBIF's full path (API root /v1) answers the same
    assert (
        http.get(f"{service.url}/v1{service.api.removeprefix(service.url)}/rule/{rule['id']}").json() == rule
    )


def test_lists_are_bare_arrays_newest_first_and_the_null_filter_means_is_null(service, http):
    ruleset = http.post(f"{service.api}/ruleset", json={"name": "order-test"}, auth=auth("alice")).json()
    first = new_rule(service, http, taxonKey=1111, rulesetId=ruleset["id"])
    second = new_rule(service, http, taxonKey=1111)
    page = http.get(f"{service.api}/rule", params={"taxonKey": 1111}).json()
    assert isinstance(page, list)
    assert [r["id"] for r in page] == [second["id"], first["id"]]
    in_none = http.get(f"{service.api}/rule", params={"taxonKey": 1111, "rulesetId": "null"}).json()
    assert [r["id"] for r in in_none] == [second["id"]]
    in_set = http.get(f"{service.api}/rule", params={"rulesetId": ruleset["id"]}).json()
    assert [r["id"] for r in in_set] == [first["id"]]
    assert http.get(f"{service.api}/rule", params={"taxonKey": 1111, "datasetKey": "null"}).json() == page


def test_full_paging_beyond_gbifs_100(service, http, store_url):
    with AnnotationStore(store_url) as store:
        for i in range(250):
            store.create_rule(
                {
                    "taxonKey": 2222,
                    "geometry": f"POLYGON ((0 0, 1 0, 1 {(i + 1) / 10}, 0 0))",
                    "annotation": "OTHER",
                },
                user="bob",
            )
    pages = [
        http.get(f"{service.api}/rule", params={"taxonKey": 2222, "limit": 100, "offset": off}).json()
        for off in (0, 100, 200)
    ]
    assert [len(p) for p in pages] == [100, 100, 50]
    ids = [r["id"] for p in pages for r in p]
    assert len(set(ids)) == 250 and ids == sorted(ids, reverse=True)  # newest first, no overlap
    assert len(http.get(f"{service.api}/rule", params={"taxonKey": 2222, "limit": 1000}).json()) == 250
    # default page is GBIF's 100
    assert len(http.get(f"{service.api}/rule", params={"taxonKey": 2222}).json()) == 100
    # our GBIF client pages to the end (gbifrules reads only the first 100: GBIF bug §8.8)
    with GbifAnnotationApi(service.url) as client:
        assert len(list(client.iter_rules(taxonKey=2222))) == 250
    too_big = http.get(f"{service.api}/rule", params={"limit": 10_001})
    assert too_big.status_code == 400 and "offset" in too_big.json()["message"]


def test_geometry_filter_intersects_instead_of_comparing_strings(service, http):
    uk = new_rule(service, http, taxonKey=3333, geometry=UK)
    ke = new_rule(service, http, taxonKey=3333, geometry=KENYA)

    def ids(wkt: str) -> list[int]:
        r = http.get(f"{service.api}/rule", params={"taxonKey": 3333, "geometry": wkt})
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()]

    assert ids("POINT (-1 52)") == [uk["id"]]
    assert ids("POLYGON ((30 -10, 40 -10, 40 0, 30 0, 30 -10))") == [ke["id"]]
    assert ids("POLYGON ((2 40, 34 40, 34 45, 2 45, 2 40))") == []  # between them
    assert ids("POLYGON ((-180 -60, 180 -60, 180 80, -180 80, -180 -60))") == [ke["id"], uk["id"]]
    bad = http.get(f"{service.api}/rule", params={"geometry": "POLYGON ((1 2"})
    assert bad.status_code == 400 and "WKT" in bad.json()["message"]


# ---------------------------------------------------------------------------------------------------
# errors: 400 {"message"}, 404 for unknown ids
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"taxonKey": LION, "geometry": "POLYGON ((0 0, 1 1", "annotation": "SUSPICIOUS"}, "WKT"),
        ({"taxonKey": LION, "geometry": "POINT (1 2)", "annotation": "SUSPICIOUS"}, "POLYGON"),
        ({"taxonKey": LION, "geometry": UK, "annotation": "WEIRD"}, "SUSPICIOUS"),
        ({"taxonKey": LION, "geometry": UK}, "annotation"),
        ({"taxonKey": LION, "geometry": UK, "annotation": "NATIVE", "colour": "red"}, "colour"),
        ({"taxonKey": LION, "geometry": UK, "annotation": "NATIVE", "yearRange": "2000,1900"}, "earlier"),
        ({"taxonKey": "abc", "geometry": UK, "annotation": "NATIVE"}, "taxonKey must be integer"),
        ({"taxonKey": -5, "geometry": UK, "annotation": "NATIVE"}, "taxon key"),
        ({"taxonKey": 2**70, "geometry": UK, "annotation": "NATIVE"}, "out of range"),
        ({"taxonKey": LION, "geometry": "POLYGON ((0 0, 1 0, 0 0\x00))", "annotation": "NATIVE"}, "NUL"),
    ],
)
def test_invalid_rules_get_400_with_a_message(service, http, body, needle):
    r = http.post(f"{service.api}/rule", json=body, auth=auth("alice"))
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"message"} and needle in r.json()["message"]


def test_geometry_limits_are_gbifs(service, http):
    import math

    n = 2501
    ring = [
        (round(10 * math.cos(2 * math.pi * i / n), 5), round(10 * math.sin(2 * math.pi * i / n), 5))
        for i in range(n)
    ]
    too_many = "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in [*ring, ring[0]]) + "))"
    r = http.post(
        f"{service.api}/rule",
        json={"taxonKey": 1, "geometry": too_many, "annotation": "OTHER"},
        auth=auth("alice"),
    )
    assert r.status_code == 400 and "2,500" in r.json()["message"]
    ok_ring = ring[::2]  # 1,251 vertices is fine
    fits = "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in [*ok_ring, ok_ring[0]]) + "))"
    assert (
        http.post(
            f"{service.api}/rule",
            json={"taxonKey": 1, "geometry": fits, "annotation": "OTHER"},
            auth=auth("alice"),
        ).status_code
        == 200
    )
    digits = "1" * 30  # 2,002 vertices (under the vertex limit) written with 31 decimals each
    corners = [f"{i % 90}.{digits} {i % 45}.{digits}" for i in range(2001)]
    long_text = "POLYGON ((" + ", ".join([*corners, corners[0]]) + "))"
    assert len(long_text) > 125_000
    r = http.post(
        f"{service.api}/rule",
        json={"taxonKey": 1, "geometry": long_text, "annotation": "OTHER"},
        auth=auth("alice"),
    )
    assert r.status_code == 400 and "125,000" in r.json()["message"]  # fmt: skip


def test_bad_bodies_and_oversized_bodies(service, http):
    url = f"{service.api}/rule"
    r = http.post(url, data=b"{not json", auth=auth("alice"), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    r = http.post(url, json=[1, 2], auth=auth("alice"))
    assert r.status_code == 400 and "object" in r.json()["message"]
    as_json = {"Content-Type": "application/json"}  # writes take JSON only (issue 21): say it is JSON
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000):
        r = http.post(url, data=deep, auth=auth("alice"), headers=as_json)
        assert r.status_code == 400, r.text
    r = http.post(url, data=b"", auth=auth("alice"))
    assert r.status_code == 400 and "no body" in r.json()["message"]
    r = http.post(url, data=b"x" * (1024 * 1024 + 1), auth=auth("alice"))
    assert r.status_code == 413 and "larger than" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(40):
            yield b" " * 65536

    r = http.post(url, data=chunks(), auth=auth("alice"), headers=as_json)
    assert r.status_code == 413


def test_unknown_ids_are_404_everywhere(service, http):
    a = auth("alice")
    for method, path, body in [
        ("GET", "/rule/987654", None),
        ("PUT", "/rule/987654", {"geometry": UK, "annotation": "NATIVE", "taxonKey": 1}),
        ("DELETE", "/rule/987654", None),
        ("POST", "/rule/987654/support", None),
        ("POST", "/rule/987654/contest", None),
        ("POST", "/rule/987654/removeSupport", None),
        ("GET", "/rule/987654/comment", None),
        ("POST", "/rule/987654/comment", {"comment": "hello"}),
        ("DELETE", "/rule/987654/comment/1", None),
        ("GET", "/ruleset/987654", None),
        ("PUT", "/ruleset/987654", {"name": "x"}),
        ("DELETE", "/ruleset/987654", None),
        ("GET", "/project/987654", None),
        ("PUT", "/project/987654", {"name": "x"}),
        ("DELETE", "/project/987654", None),
        ("GET", "/project/987654/vocabulary", None),
        ("GET", "/rule/99999999999999999999999", None),
        ("GET", "/no/such/path", None),
    ]:
        r = http.request(method, service.api + path, json=body, auth=a)
        assert r.status_code == 404, (method, path, r.text)
        assert set(r.json()) == {"message"}, (method, path)
    # a body naming an unknown ruleset or project is bad input, not a missing resource
    r = http.post(
        f"{service.api}/rule",
        json={"taxonKey": 1, "geometry": UK, "annotation": "OTHER", "rulesetId": 987654},
        auth=a,
    )
    assert r.status_code == 400 and "987654" in r.json()["message"]  # fmt: skip
    # ... also beside a ruleset outside any project (found by schemathesis: was a foreign-key 500)
    free = http.post(f"{service.api}/ruleset", json={"name": "free"}, auth=a).json()
    body = {
        "taxonKey": 1,
        "geometry": UK,
        "annotation": "OTHER",
        "rulesetId": free["id"],
        "projectId": 987654,
    }
    r = http.post(f"{service.api}/rule", json=body, auth=a)
    assert r.status_code == 400 and "987654" in r.json()["message"]
    rule = new_rule(service, http, "alice")
    r = http.put(f"{service.api}/rule/{rule['id']}", json=body, auth=a)
    assert r.status_code == 400 and "987654" in r.json()["message"]


def test_query_values_no_database_can_take_are_400(service, http):
    for params in ({"taxonKey": "12x"}, {"taxonkey": "5219404"}, {"createdBy": "a\x00b"}, {"projectId": "9" * 25}, {"limit": "-1"},
                   {"basisOfRecordNegated": "maybe"}, {"offset": "abc"}):  # fmt: skip
        r = http.get(f"{service.api}/rule", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["message"]
    for raw_query in ("%FF=1", "taxonKey=%FF", "%ED%B2%80=1"):  # bytes that are not UTF-8
        r = http.get(f"{service.api}/rule?{raw_query}")
        assert r.status_code == 400, (raw_query, r.text)


# ---------------------------------------------------------------------------------------------------
# auth and permissions
# ---------------------------------------------------------------------------------------------------
def test_writes_need_a_login_and_reads_do_not(service, http):
    body = {"taxonKey": LION, "geometry": UK, "annotation": "NATIVE"}
    r = http.post(f"{service.api}/rule", json=body)
    # no Basic challenge (issue 21): a browser must not show its dialog and cache the credentials
    assert r.status_code == 401 and "www-authenticate" not in r.headers
    assert "login" in r.json()["message"]
    r = http.post(f"{service.api}/rule", json=body, auth=("alice", "wrong-password"))
    assert r.status_code == 401 and r.json() == {"message": "wrong username or password"}
    r = http.post(f"{service.api}/rule", json=body, auth=("nobody", "whatever-123"))
    assert r.status_code == 401
    # the page asks with X-Requested-With: no browser dialog header then
    r = http.post(f"{service.api}/rule", json=body, headers={"X-Requested-With": "gbifdl-map"})
    assert r.status_code == 401 and "www-authenticate" not in r.headers
    r = http.get(f"{service.api}/rule/my")
    assert r.status_code == 401
    assert http.get(f"{service.api}/rule").status_code == 200
    assert http.get(f"{service.url}/user/login", auth=auth("carol")).json() == {
        "userName": "carol",
        "roles": ["USER", "REGISTRY_ADMIN"],
    }
    assert http.get(f"{service.url}/user/login", auth=auth("bob")).json()["roles"] == ["USER"]
    assert http.get(f"{service.url}/user/login", auth=("bob", "nope-nope")).status_code == 401


def test_only_the_creator_or_an_admin_changes_a_rule(service, http):
    rule = new_rule(service, http, "alice", taxonKey=4444)
    replacement = {"taxonKey": 4444, "geometry": KENYA, "annotation": "native"}
    r = http.put(f"{service.api}/rule/{rule['id']}", json=replacement, auth=auth("bob"))
    assert r.status_code == 403 and "alice" in r.json()["message"]
    r = http.delete(f"{service.api}/rule/{rule['id']}", auth=auth("bob"))
    assert r.status_code == 403
    r = http.put(f"{service.api}/rule/{rule['id']}", json=replacement, auth=auth("alice"))
    assert r.status_code == 200 and r.json()["geometry"] == KENYA and r.json()["annotation"] == "NATIVE"
    r = http.delete(f"{service.api}/rule/{rule['id']}", auth=auth("carol"))  # an admin
    assert r.status_code == 200 and r.json()["deletedBy"] == "carol"
    # deleted: still readable by id (as GBIF), hidden from lists, no longer changeable
    assert http.get(f"{service.api}/rule/{rule['id']}").json()["deleted"] is not None
    assert rule["id"] not in [
        x["id"] for x in http.get(f"{service.api}/rule", params={"taxonKey": 4444}).json()
    ]
    r = http.put(f"{service.api}/rule/{rule['id']}", json=replacement, auth=auth("alice"))
    assert r.status_code == 400 and "deleted" in r.json()["message"]


def test_project_and_ruleset_membership_is_checked(service, http):
    project = http.post(
        f"{service.api}/project", json={"name": "Big cats", "members": []}, auth=auth("alice")
    ).json()
    assert project["members"] == ["alice"] and project["createdBy"] == "alice"
    # bob is not a member: no ruleset in it (GBIF never checks this), no rule in it
    r = http.post(
        f"{service.api}/ruleset", json={"name": "lions", "projectId": project["id"]}, auth=auth("bob")
    )
    assert r.status_code == 403 and "member" in r.json()["message"]
    ruleset = http.post(
        f"{service.api}/ruleset", json={"name": "lions", "projectId": project["id"]}, auth=auth("alice")
    ).json()
    body = {"taxonKey": LION, "geometry": UK, "annotation": "SUSPICIOUS", "rulesetId": ruleset["id"]}
    r = http.post(f"{service.api}/rule", json=body, auth=auth("bob"))
    assert r.status_code == 403
    r = http.post(
        f"{service.api}/rule", json={**body, "rulesetId": None, "projectId": project["id"]}, auth=auth("bob")
    )
    assert r.status_code == 403
    r = http.put(f"{service.api}/project/{project['id']}", json={"name": "Big cats"}, auth=auth("bob"))
    assert r.status_code == 403
    # alice adds bob: now he may
    r = http.put(
        f"{service.api}/project/{project['id']}",
        json={"name": "Big cats", "members": ["alice", "bob"]},
        auth=auth("alice"),
    )
    assert r.status_code == 200 and r.json()["members"] == ["alice", "bob"]
    r = http.post(f"{service.api}/rule", json=body, auth=auth("bob"))
    assert r.status_code == 200 and r.json()["projectId"] == project["id"]
    bobs = r.json()
    assert [p["id"] for p in http.get(f"{service.api}/project", params={"member": "bob"}).json()] == [
        project["id"]
    ]
    assert [
        s["id"] for s in http.get(f"{service.api}/ruleset", params={"projectId": project["id"]}).json()
    ] == [ruleset["id"]]
    # only the creator (or an admin) deletes the project; it takes its rulesets and rules along
    assert http.delete(f"{service.api}/project/{project['id']}", auth=auth("bob")).status_code == 403
    assert http.delete(f"{service.api}/project/{project['id']}", auth=auth("alice")).status_code == 200
    assert http.get(f"{service.api}/ruleset/{ruleset['id']}").json()["deleted"] is not None
    assert http.get(f"{service.api}/rule/{bobs['id']}").json()["deletedBy"] == "alice"
    vocab = http.get(f"{service.api}/project/{project['id']}/vocabulary").json()
    assert [t["term"] for t in vocab][-2:] == ["SUSPICIOUS", "OTHER"] and vocab[-2]["locked"] is True  # fmt: skip


def test_votes_are_exclusive_idempotent_and_need_a_live_rule(service, http):
    rule = new_rule(service, http, "alice", taxonKey=5555)
    url = f"{service.api}/rule/{rule['id']}"
    assert http.post(f"{url}/support", auth=auth("bob")).json()["supportedBy"] == ["bob"]
    assert http.post(f"{url}/support", auth=auth("bob")).json()["supportedBy"] == ["bob"]  # idempotent
    after = http.post(f"{url}/contest", auth=auth("bob")).json()
    assert (after["supportedBy"], after["contestedBy"]) == ([], ["bob"])
    http.post(f"{url}/support", auth=auth("carol"))
    assert [r["id"] for r in http.get(f"{service.api}/rule/contested", auth=auth("bob")).json()] == [
        rule["id"]
    ]
    assert [r["id"] for r in http.get(f"{service.api}/rule/supported", auth=auth("carol")).json()] == [
        rule["id"]
    ]
    assert rule["id"] in [r["id"] for r in http.get(f"{service.api}/rule/my", auth=auth("alice")).json()]
    assert rule["id"] not in [r["id"] for r in http.get(f"{service.api}/rule/my", auth=auth("bob")).json()]
    # removeSupport does not remove a contest
    assert http.post(f"{url}/removeSupport", auth=auth("bob")).json()["contestedBy"] == ["bob"]
    assert http.post(f"{url}/removeContest", auth=auth("bob")).json()["contestedBy"] == []
    metrics = http.get(f"{service.api}/rule/metrics", params={"taxonKey": 5555}).json()
    assert metrics == {"username": None, "ruleCount": 1, "datasetCount": 0, "projectCount": 0, "taxonCount": 1,
                       "supportCount": 1, "contestCount": 0}  # fmt: skip
    http.delete(url, auth=auth("alice"))
    r = http.post(f"{url}/support", auth=auth("bob"))
    assert r.status_code == 400 and "deleted" in r.json()["message"]


def test_comments(service, http):
    rule = new_rule(service, http, "alice", taxonKey=6666)
    url = f"{service.api}/rule/{rule['id']}/comment"
    first = http.post(url, json={"comment": "Zoo animals", "createdBy": "mallory"}, auth=auth("bob")).json()
    assert (first["ruleId"], first["createdBy"], first["comment"]) == (rule["id"], "bob", "Zoo animals")
    second = http.post(url, json={"comment": "<b>also</b> safari parks"}, auth=auth("alice")).json()
    assert [c["id"] for c in http.get(url).json()] == [second["id"], first["id"]]
    assert http.post(url, json={"comment": "  "}, auth=auth("alice")).status_code == 400
    assert http.post(url, json={"comment": "anonymous"}).status_code == 401
    found = http.get(f"{service.api}/rule", params={"comment": "SAFARI"}).json()
    assert [r["id"] for r in found] == [rule["id"]]
    assert http.delete(f"{url}/{first['id']}", auth=auth("alice")).status_code == 403
    deleted = http.delete(f"{url}/{first['id']}", auth=auth("bob")).json()
    assert deleted["deletedBy"] == "bob"
    assert [c["id"] for c in http.get(url).json()] == [second["id"]]
    http.delete(f"{service.api}/rule/{rule['id']}", auth=auth("alice"))
    r = http.post(url, json={"comment": "too late"}, auth=auth("bob"))
    assert r.status_code == 400 and "deleted" in r.json()["message"]


# ---------------------------------------------------------------------------------------------------
# our own GBIF client speaks to the service
# ---------------------------------------------------------------------------------------------------
def test_gbif_client_pull_and_push_work_against_the_service(service, http, tmp_path):
    rule = new_rule(service, http, "alice", taxonKey=7777, geometry=KENYA, annotation="NATIVE")
    http.post(f"{service.api}/rule/{rule['id']}/support", auth=auth("bob"))
    with AnnotationStore(f"sqlite:///{tmp_path / 'mirror.sqlite'}") as mirror:
        summary = pull_from_gbif(mirror, service.url)
        assert summary.rules.get("created", 0) >= 250 and not summary.skipped
        pulled = mirror.list_rules(taxonKey=7777)
        assert [(r.geometry, r.annotation, r.supportedBy, r.createdBy) for r in pulled] == [
            (KENYA, "NATIVE", ["bob"], "alice")
        ]
    with AnnotationStore(f"sqlite:///{tmp_path / 'local.sqlite'}") as local:
        local.create_rule({"taxonKey": 8888, "geometry": UK, "annotation": "MANAGED"}, user="someone")
        with GbifAnnotationApi(service.url, username="bob", password=PASSWORDS["bob"]) as api:
            result = push_to_gbif(local, api)
            assert result["pushed"] == 1
            assert push_to_gbif(local, api)["pushed"] == 0  # pushed once only
    remote = http.get(f"{service.api}/rule", params={"taxonKey": 8888}).json()
    assert [(r["annotation"], r["createdBy"]) for r in remote] == [("MANAGED", "bob")]


# ---------------------------------------------------------------------------------------------------
# security
# ---------------------------------------------------------------------------------------------------
def test_passwords_are_stored_as_salted_scrypt_hashes_only(service, store_url):
    db = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT username, password_hash FROM ann_users").fetchall())
    raw = Path(db).read_bytes() + b"".join(p.read_bytes() for p in Path(db).parent.glob("*-wal"))
    for user, password in PASSWORDS.items():
        assert rows[user].startswith("scrypt$32768$8$1$")
        assert password.encode() not in raw
    salts = {h.split("$")[4] for h in rows.values()}
    assert len(salts) == len(rows)  # a salt per user


def test_the_access_log_never_shows_credentials(service, http):
    http.get(f"{service.api}/rule/my", auth=auth("alice"))
    http.get(f"{service.api}/rule/my", auth=("alice", "a-wrong-guess"))
    log = service.log_text()
    assert '/rule/my HTTP/1.1" 200' in log and '/rule/my HTTP/1.1" 401' in log
    for user, password in [*PASSWORDS.items(), ("alice", "a-wrong-guess")]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        assert password not in log and token not in log
    assert "authorization" not in log.lower()


def test_pages_carry_a_strict_content_security_policy(service, http):
    r = http.get(f"{service.url}/ui/")
    assert r.status_code == 200 and '<div id="map">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert http.get(f"{service.url}/ui/static/vendor/leaflet/leaflet.js").status_code == 200
    assert http.get(f"{service.url}/ui/static/vendor/leaflet/LICENSE").text.startswith("BSD 2-Clause")
    assert http.get(f"{service.url}/openapi.json").json()["openapi"].startswith("3.")


def test_country_areas_fit_gbifs_limits(service, http):
    r = http.get(f"{service.url}/ui/api/country/GL")
    assert r.status_code == 200
    area = r.json()
    assert area["code"] == "GL" and area["name"] == "Greenland"
    assert area["geometry"].startswith(("POLYGON", "MULTIPOLYGON")) and len(area["geometry"]) <= 125_000
    rule = new_rule(service, http, "alice", taxonKey=9999, geometry=area["geometry"])
    assert rule["geometry"] == area["geometry"]
    assert http.get(f"{service.url}/ui/api/country/XQ").status_code == 404
    assert http.get(f"{service.url}/ui/api/country/x1").status_code == 400


def test_taxon_search_says_when_gbif_is_unreachable(service, http):
    r = http.get(f"{service.url}/ui/api/taxa", params={"q": "Panthera leo"})
    # a summary without the upstream URL or its text (issue 21); the server log has the details
    assert r.status_code == 502 and "could not be reached" in r.json()["message"]
    assert "127.0.0.1:9" not in r.json()["message"]
    assert http.get(f"{service.url}/ui/api/taxa", params={"q": " "}).status_code == 400


def test_failed_logins_are_throttled_per_address(store_url):
    with AnnotationStore(store_url) as store:
        authenticator = Authenticator(store, max_failures=3, failure_window=60)
        for _ in range(3):
            with pytest.raises(AuthError) as err:
                authenticator.authenticate(Credentials("alice", "wrong-password"), "10.0.0.1")
            assert err.value.status == 401
        with pytest.raises(AuthError) as err:  # even the right password, from that address
            authenticator.authenticate(Credentials("alice", PASSWORDS["alice"]), "10.0.0.1")
        assert err.value.status == 429
        # another address is not affected; the right password works
        assert (
            authenticator.authenticate(Credentials("alice", PASSWORDS["alice"]), "10.0.0.2").username
            == "alice"
        )
        assert "alice-secret" not in repr(Credentials("alice", PASSWORDS["alice"]))


def test_gbifdl_rules_commands_pull_from_and_push_to_the_service(service, http, tmp_path):
    store = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GBIF", "GBIFDL"))}

    def gbifdl(*args: str, **extra_env: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "gbifdl_assets.cli", *args],
            capture_output=True, text=True, timeout=120, env={**env, **extra_env},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    rule = new_rule(service, http, "carol", taxonKey=4242, geometry=KENYA)
    pulled = gbifdl("rules", "import", "--from-gbif", service.url, "--store", store)
    assert pulled["ok"] and pulled["rules"]["created"] >= 1
    with AnnotationStore(store) as local:
        assert [r.createdBy for r in local.list_rules(taxonKey=4242)] == ["carol"]
        local.create_rule({"taxonKey": 4343, "geometry": UK, "annotation": "VAGRANT"}, user="me")
    pushed = gbifdl(
        "rules", "push", service.url + "/v1", "--store", store,
        GBIF_USERNAME="bob", GBIF_PASSWORD=PASSWORDS["bob"],
    )  # fmt: skip
    assert pushed["pushed"] == 1, pushed
    remote = http.get(f"{service.api}/rule", params={"taxonKey": 4343}).json()
    assert [(r["annotation"], r["createdBy"]) for r in remote] == [("VAGRANT", "bob")]
    assert rule["id"] in [r["id"] for r in http.get(f"{service.api}/rule", params={"taxonKey": 4242}).json()]


def test_an_unusable_store_url_is_one_line_without_the_password():
    for url, needle in [
        ("notaurl", "is not a database URL"),
        ("postgresql+psycopg2://u:topsecret@127.0.0.1:9/db", "cannot open the annotation store"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "gbifdl_assets.cli", "annotations", "serve", "--store", url, "--port", "9"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["ok"] is False and needle in summary["error"]
        assert "topsecret" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_without_an_api_url_offline_the_taxon_search_uses_the_sandbox(store_url, tmp_path):
    """The service follows the platform's one offline rule (issue 20/21): no --api-url and no GBIF ->
    the bundled sandbox answers the map page's taxon search, and the log says so in one line."""
    from gbifdl_assets_tests.harness.ports import free_port

    env = {"GBIFDL_OFFLINE": "1", "GBIFDL_SANDBOX_PORT": str(free_port()), "GBIF_API_URL": ""}
    with AnnotationService(store_url, tmp_path, api_url=None, env=env) as svc:
        r = requests.get(f"{svc.url}/ui/api/taxa", params={"q": "Panthera leo"}, timeout=120)
        log = svc.log_text()
    assert r.status_code == 200, r.text
    assert any(hit.get("key") == LION for hit in r.json()), r.json()
    assert "offline sandbox" in log and "taxa from http://127.0.0.1:" in log
