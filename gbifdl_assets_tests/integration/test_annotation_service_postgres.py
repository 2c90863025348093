"""The annotation service on PostgreSQL (as deployed): the main flows, and input PostgreSQL refuses.

The service process runs on a fresh database of the harness' PostgreSQL server. Text with NUL
characters, lone surrogates and integers beyond 64 bits must be 400s (PostgreSQL would raise and the
client would see a 500), and the geometry filter, paging and permissions behave as on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService

UK = "POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))"
ALICE, BOB = ("alice", "alice-pg-secret"), ("bob", "bob-pg-secret")
JSON = {"Content-Type": "application/json"}  # writes take JSON only (issue 21)


@pytest.fixture
def service(pg_database, tmp_path) -> Iterator[AnnotationService]:
    with AnnotationStore(pg_database.dsn) as store:
        store.add_user(*ALICE)
        store.add_user(*BOB)
    with AnnotationService(pg_database.dsn, tmp_path) as svc:
        yield svc


def test_service_on_postgres(service):
    api = service.api
    http = requests.Session()
    project = http.post(f"{api}/project", json={"name": "pg project"}, auth=ALICE).json()
    ruleset = http.post(
        f"{api}/ruleset", json={"name": "pg rules", "projectId": project["id"]}, auth=ALICE
    ).json()
    body = {"taxonKey": 5219404, "geometry": UK, "annotation": "suspicious", "rulesetId": ruleset["id"]}
    assert http.post(f"{api}/rule", json=body, auth=BOB).status_code == 403
    # three rules that differ in their years (identical ones get 409 now, issue 21)
    created = [
        http.post(f"{api}/rule", json={**body, "yearRange": f"{1900 + i},*"}, auth=ALICE).json()
        for i in range(3)
    ]
    assert http.post(f"{api}/rule", json={**body, "yearRange": "1900,*"}, auth=ALICE).status_code == 409
    assert all(r["projectId"] == project["id"] and r["annotation"] == "SUSPICIOUS" for r in created)
    listed = http.get(f"{api}/rule", params={"taxonKey": 5219404, "limit": 2}).json()
    assert [r["id"] for r in listed] == [created[2]["id"], created[1]["id"]]
    rest = http.get(f"{api}/rule", params={"taxonKey": 5219404, "limit": 2, "offset": 2}).json()
    assert [r["id"] for r in rest] == [created[0]["id"]]
    hits = http.get(f"{api}/rule", params={"geometry": "POINT (0 55)", "rulesetId": ruleset["id"]}).json()
    assert len(hits) == 3
    assert http.get(f"{api}/rule", params={"geometry": "POINT (50 55)"}).json() == []
    rid = created[0]["id"]
    assert http.post(f"{api}/rule/{rid}/contest", auth=BOB).json()["contestedBy"] == ["bob"]
    comment = http.post(f"{api}/rule/{rid}/comment", json={"comment": "zoo <b>lions</b>"}, auth=BOB).json()
    assert http.get(f"{api}/rule/{rid}/comment").json() == [comment]
    assert http.delete(f"{api}/rule/{rid}", auth=BOB).status_code == 403
    assert http.delete(f"{api}/rule/{rid}", auth=ALICE).json()["deletedBy"] == "alice"
    assert http.get(f"{api}/rule/{rid}").json()["deleted"] is not None
    assert http.get(f"{api}/rule/424242").status_code == 404
    assert http.get(f"{service.url}/health").json() == {"ok": True}


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/rule", {"params": {"createdBy": "a\x00b"}}),
        ("GET", "/rule", {"params": {"comment": "x\x00"}}),
        ("GET", "/rule", {"params": {"taxonKey": "99999999999999999999"}}),
        ("GET", "/project", {"params": {"name": "\x00"}}),
        ("POST", "/project", {"json": {"name": "nul\x00name"}}),
        ("POST", "/project", {"data": b'{"name": "lone \\ud800 surrogate"}', "headers": JSON}),
        ("POST", "/ruleset", {"json": {"name": "big", "projectId": 2**64}}),
        ("POST", "/rule", {"json": {"taxonKey": 2**63, "geometry": UK, "annotation": "NATIVE"}}),
    ],
)
def test_input_postgres_cannot_store_is_a_400(service, method, path, kwargs):
    r = requests.request(method, service.api + path, auth=ALICE, timeout=30, **kwargs)
    assert r.status_code == 400, r.text
    assert r.json()["message"]
    assert "Internal Server Error" not in service.log_text()
