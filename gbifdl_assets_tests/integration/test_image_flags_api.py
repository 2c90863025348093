"""The image-flag endpoints over HTTP (a live ``gbifdl annotations serve``), on SQLite and PostgreSQL:
shapes, permissions, votes, 409s, clear 400s (never a 500), CSRF and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService

ALICE, BOB = ("alice", "alice-flag-secret"), ("bob", "bob-flag-secret")
URL = "https://inaturalist-open-data.s3.amazonaws.com/photos/77/original.jpg"
FLAG = {"gbifID": 4011664186, "mediaIdentifier": URL, "flag": "not_organism", "comment": "a label"}


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, tmp_path) -> Iterator[AnnotationService]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/annotations.sqlite"
    else:
        url = request.getfixturevalue("pg_database").dsn
    with AnnotationStore(url) as store:
        store.add_user(*ALICE)
        store.add_user(*BOB)
    with AnnotationService(url, tmp_path) as svc:
        yield svc


def test_flag_lifecycle(service):
    api, http = service.api, requests.Session()
    created = http.post(f"{api}/image-flag", json={**FLAG, "createdBy": "mallory", "id": 7}, auth=ALICE)
    assert created.status_code == 200, created.text
    flag = created.json()
    assert flag["flag"] == "NOT_ORGANISM" and flag["createdBy"] == "alice" and flag["mediaIdentifier"] == URL
    assert set(flag) == {
        "id", "gbifID", "mediaIdentifier", "contentSha256", "phash", "taxonKey", "flag", "comment",
        "supportedBy", "contestedBy", "created", "createdBy", "deleted", "deletedBy",
    }  # fmt: skip
    fid = flag["id"]
    again = http.post(f"{api}/image-flag", json=FLAG, auth=BOB)
    assert again.status_code == 409 and again.json()["id"] == fid
    assert http.post(f"{api}/image-flag/{fid}/support", auth=BOB).json()["supportedBy"] == ["bob"]
    assert http.post(f"{api}/image-flag/{fid}/contest", auth=BOB).json()["contestedBy"] == ["bob"]
    assert http.post(f"{api}/image-flag/{fid}/removeContest", auth=BOB).json()["contestedBy"] == []
    assert [f["id"] for f in http.get(f"{api}/image-flag", params={"gbifID": 4011664186}).json()] == [fid]
    assert http.get(f"{api}/image-flag", params={"mediaIdentifier": URL}).json()[0]["id"] == fid
    assert http.get(f"{api}/image-flag", params={"flag": "DUPLICATE"}).json() == []
    assert http.get(f"{api}/image-flag/{fid}").json()["comment"] == "a label"
    assert [t["term"] for t in http.get(f"{api}/image-flag/vocabulary").json()] == [
        "NOT_ORGANISM", "WRONG_TAXON", "DUPLICATE", "POOR_QUALITY",
    ]  # fmt: skip
    # only the creator (or an admin) deletes; deleted flags leave lists, stay readable by id
    denied = http.delete(f"{api}/image-flag/{fid}", auth=BOB)
    assert denied.status_code == 403 and "only its creator" in denied.json()["message"]
    assert http.delete(f"{api}/image-flag/{fid}", auth=ALICE).json()["deletedBy"] == "alice"
    assert http.get(f"{api}/image-flag").json() == []
    assert http.get(f"{api}/image-flag/{fid}").json()["deleted"] is not None
    gone = http.post(f"{api}/image-flag/{fid}/support", auth=BOB)
    assert gone.status_code == 400 and "is deleted" in gone.json()["message"]


BAD = [
    ({**FLAG, "gbifID": "4011"}, "gbifID must be integer"),
    ({**FLAG, "flag": "BLURRY"}, "flag is 'BLURRY': use one of"),
    ({**FLAG, "mediaIdentifier": "javascript:alert(1)"}, "is not an http(s) URL"),
    ({**FLAG, "contentSha256": "xyz"}, "is not a sha256"),
    ({**FLAG, "gbifID": 2**70}, "gbifID"),
    ({**FLAG, "comment": "nul\x00byte"}, ""),
    ({k: v for k, v in FLAG.items() if k != "gbifID"}, "gbifID is missing"),
]


def test_bad_flags_are_400_with_the_field_named(service):
    for body, needle in BAD:
        answer = requests.post(f"{service.api}/image-flag", json=body, auth=ALICE)
        assert answer.status_code == 400, (body, answer.text)
        assert needle in answer.json()["message"]


def test_reads_and_writes_refuse_what_they_should(service):
    api = service.api
    assert requests.post(f"{api}/image-flag", json=FLAG).status_code == 401
    assert requests.post(f"{api}/image-flag", json=FLAG, auth=("alice", "wrong")).status_code == 401
    cross = requests.post(
        f"{api}/image-flag", json=FLAG, auth=ALICE, headers={"Origin": "http://evil.example"}
    )
    assert cross.status_code == 403
    form = requests.post(f"{api}/image-flag", data="flag=NOT_ORGANISM", auth=ALICE,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.status_code == 415
    assert requests.get(f"{api}/image-flag", params={"colour": "red"}).status_code == 400
    assert requests.get(f"{api}/image-flag", params={"gbifID": "x"}).status_code == 400
    assert requests.get(f"{api}/image-flag", params={"flag": "blurry"}).status_code == 400
    assert requests.get(f"{api}/image-flag/999").status_code == 404
    assert requests.post(f"{api}/image-flag/999/support", auth=BOB).status_code == 404


def test_the_openapi_document_describes_the_flag_endpoints(service):
    doc = requests.get(f"{service.url}/openapi.json").json()
    paths = doc["paths"]
    prefix = "/occurrence/experimental/annotation"
    assert set(paths[f"{prefix}/image-flag"]) == {"get", "post"}
    assert set(paths[f"{prefix}/image-flag/{{id}}"]) == {"get", "delete"}
    assert "post" in paths[f"{prefix}/image-flag/{{id}}/support"]
    assert "409" in paths[f"{prefix}/image-flag"]["post"]["responses"]
    schema = doc["components"]["schemas"]["ImageFlag"]
    assert schema["properties"]["flag"]["enum"] == [
        "NOT_ORGANISM",
        "WRONG_TAXON",
        "DUPLICATE",
        "POOR_QUALITY",
    ]
    assert doc["components"]["schemas"]["ImageFlagInput"]["required"] == ["gbifID", "mediaIdentifier", "flag"]
