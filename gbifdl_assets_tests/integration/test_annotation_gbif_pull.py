"""Pull from and push to GBIF's annotation API, served by the sandbox's annotation endpoints over HTTP.

The endpoints are mounted on a small Starlette app served by uvicorn in a thread (so this test does not
depend on how the lead wires them into the sandbox app); names for ``gbifdl rules add`` are resolved
against the session sandbox's species API.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import uvicorn
from starlette.applications import Starlette

from gbifdl_assets.annotations.cli import main
from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA
from gbifdl_assets.annotations.gbif_api import GbifAnnotationApi, pull_from_gbif, push_to_gbif
from gbifdl_assets.annotations.model import Project, Rule, Ruleset
from gbifdl_assets.annotations.permissions import PermissionDenied
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.gbif.errors import GbifAuthError
from gbifdl_assets.sandbox.annotations_api import ANNOTATION_PREFIX, annotation_routes
from gbifdl_assets.sandbox.app import SandboxState
from gbifdl_assets.sandbox.config import SandboxConfig

SEEDED_RULES, DELETED_RULES = 25, 3


class Served:
    def __init__(self, state: SandboxState) -> None:
        self.app = Starlette(routes=annotation_routes(state))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("annotation sandbox did not start")
            time.sleep(0.02)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{ANNOTATION_PREFIX}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def sandbox_state() -> SandboxState:
    return SandboxState(SandboxConfig(occurrences=500, species=30, seed=7))


@pytest.fixture
def annotation_api(sandbox_state) -> Iterator[Served]:
    served = Served(sandbox_state)  # a fresh app per test: POSTed rules do not leak between tests
    yield served
    served.stop()


@pytest.fixture
def store(tmp_path) -> Iterator[AnnotationStore]:
    s = AnnotationStore(f"sqlite:///{tmp_path}/pull.sqlite")
    yield s
    s.close()


# ------------------------------------------------------------------------------------------ the sandbox
def test_sandbox_serves_gbifs_shapes(annotation_api):
    rules = requests.get(f"{annotation_api.base}/rule", timeout=10).json()
    assert isinstance(rules, list) and len(rules) == SEEDED_RULES - DELETED_RULES
    assert [r["created"] for r in rules] == sorted((r["created"] for r in rules), reverse=True)
    for r in rules:
        assert list(r) == list(Rule.model_fields)
        Rule.from_gbif(r)  # every seeded rule is valid for our model
    assert len(requests.get(f"{annotation_api.base}/rule", params={"limit": 5, "offset": 20}).json()) == 2
    deleted = requests.get(f"{annotation_api.base}/rule/7", timeout=10).json()
    assert deleted["deleted"] is not None  # /rule/{id} shows deleted rules
    missing = requests.get(f"{annotation_api.base}/rule/999", timeout=10)
    assert missing.status_code == 200 and missing.content == b""  # GBIF: a null body
    for kind, model in (("ruleset", Ruleset), ("project", Project)):
        for obj in requests.get(f"{annotation_api.base}/{kind}", timeout=10).json():
            assert list(obj) == list(model.model_fields)
    comments = requests.get(f"{annotation_api.base}/rule/1/comment", timeout=10).json()
    assert [c["comment"] for c in comments] == ["Also safari parks", "Lions in Britain are zoo animals"]


def test_sandbox_filters_as_gbif(annotation_api):
    def get(**p):
        return [r["id"] for r in requests.get(f"{annotation_api.base}/rule", params=p, timeout=10).json()]

    assert get(taxonKey=5219404) == [4, 3, 2, 1]
    assert get(datasetKey="null", taxonKey="null") == []
    assert get(taxonKey="null") == [23]
    assert get(rulesetId=1) == [22, 4, 3, 2, 1]
    assert get(projectId=2) == [14, 13, 12, 11]
    assert get(basisOfRecord="FOSSIL_SPECIMEN,LIVING_SPECIMEN") == [4, 3]
    assert get(supportedBy="jwaller") == [25, 5, 2]
    assert get(contestedBy="sandbox") == [25, 14]
    assert get(comment="zoo") == [6, 1]
    assert get(yearRange="*,1900") == [4]
    assert get(basisOfRecordNegated="true") == [13]
    assert [
        p["id"] for p in requests.get(f"{annotation_api.base}/project", params={"member": "botanist"}).json()
    ] == [2]


def test_sandbox_post_needs_basic_auth(annotation_api):
    body = {"taxonKey": 5219404, "geometry": "POLYGON ((0 0, 1 0, 1 1, 0 0))", "annotation": "native"}
    assert requests.post(f"{annotation_api.base}/rule", json=body, timeout=10).status_code == 401
    wrong = requests.post(f"{annotation_api.base}/rule", json=body, auth=("sandbox", "nope"), timeout=10)
    assert wrong.status_code == 401
    bad = requests.post(
        f"{annotation_api.base}/rule",
        json={**body, "annotation": "LOVELY"},
        auth=("sandbox", "sandbox"),
        timeout=10,
    )
    assert bad.status_code == 400 and "vocabulary" in bad.json()["message"]
    ok = requests.post(f"{annotation_api.base}/rule", json=body, auth=("sandbox", "sandbox"), timeout=10)
    assert ok.status_code == 200
    created = ok.json()
    assert (
        created["id"] == SEEDED_RULES + 1
        and created["annotation"] == "NATIVE"
        and created["createdBy"] == "sandbox"
    )
    assert (
        requests.get(f"{annotation_api.base}/rule", params={"limit": 1}, timeout=10).json()[0]["id"]
        == created["id"]
    )


# ------------------------------------------------------------------------------------------ pull
def test_pull_pages_through_everything_and_is_idempotent(annotation_api, store):
    api = GbifAnnotationApi(annotation_api.api_url, page_size=4)  # 22 rules: six pages, the last one short
    first = pull_from_gbif(store, api)
    assert first.rules == {"created": 22, "updated": 0, "unchanged": 0}
    assert first.projects == {"created": 2} and first.rulesets == {"created": 4}
    assert first.skipped == [] and first.deleted == 0

    rules = store.list_rules(limit=1000)
    assert len(rules) == 22
    gbif_json = {r["id"]: r for r in requests.get(f"{annotation_api.base}/rule", timeout=10).json()}
    infos = store.rule_infos([r.id for r in rules])
    for r in rules:
        info = infos[r.id]
        assert info.source == "gbif" and info.origin == annotation_api.base
        remote = gbif_json[int(info.external_id)]
        mine = r.to_gbif()
        for field in (
            "taxonKey",
            "datasetKey",
            "geometry",
            "annotation",
            "basisOfRecord",
            "yearRange",
            "created",
        ):
            assert mine[field] == remote[field], (field, info.external_id)
        assert (mine["supportedBy"], mine["contestedBy"], mine["createdBy"]) == (
            remote["supportedBy"],
            remote["contestedBy"],
            remote["createdBy"],
        )
    # newest first, as at GBIF
    assert [infos[r.id].external_id for r in rules] == [str(i) for i in gbif_json]

    lions = store.find_ruleset("lions")
    assert lions.members == ["sandbox", "jwaller"]
    assert store.get_project(lions.projectId).name == "Sandbox big cats"
    # mirrored rulesets and projects take no local rules; a local ruleset may share the name
    with pytest.raises(PermissionDenied, match=r"ruleset 'lions' \(\d+\) is mirrored from gbif"):
        store.create_rule({**rules[0].model_dump(), "rulesetId": lions.id}, user="sandbox")
    with pytest.raises(PermissionDenied, match="is mirrored from gbif"):
        store.create_ruleset({"name": "mine", "projectId": lions.projectId}, user="sandbox")
    local_lions = store.ensure_ruleset("lions", user="me")
    assert local_lions.id != lions.id and store.find_ruleset("lions", source="local").id == local_lions.id

    version = store.version()
    second = pull_from_gbif(store, api)
    assert second.rules == {"created": 0, "updated": 0, "unchanged": 22} and second.deleted == 0
    assert store.version() == version  # nothing changed: downstream assets stay fresh

    table = store.compile()
    assert table.schema.equals(RULES_TABLE_SCHEMA) and table.num_rows == 22
    assert set(table.column("source").to_pylist()) == {"gbif"}
    assert "gbif:1" in table.column("id").to_pylist()
    by_id = {r["id"]: r for r in table.to_pylist()}
    assert by_id["gbif:2"]["supportCount"] == 2 and by_id["gbif:25"]["contestCount"] == 1
    assert by_id["gbif:1"]["ruleset"] == "lions" and by_id["gbif:8"]["ruleset"] == "gbif"
    assert store.compile(["lions"]).num_rows == 5 and store.compile(["gbif"]).num_rows == 9


def test_pull_updates_changes_and_deletes_what_disappeared(annotation_api, sandbox_state, store):
    api = GbifAnnotationApi(annotation_api.api_url)
    pull_from_gbif(store, api)
    version = store.version()
    # change the served data: a vote, a relabel, a deletion
    svc_rules = annotation_api.app.routes[0].endpoint.__self__.rules
    svc_rules[0]["supportedBy"] = ["newfan"]
    svc_rules[1]["annotation"] = "OTHER"
    svc_rules[2]["deleted"] = "2026-01-01T00:00:00.000+00:00"
    summary = pull_from_gbif(store, api)
    assert summary.rules == {"created": 0, "updated": 2, "unchanged": 19} and summary.deleted == 1
    assert store.version() != version
    by_ext = {store.rule_info(r.id).external_id: r for r in store.list_rules(limit=100)}
    assert by_ext["1"].supportedBy == ["newfan"] and by_ext["2"].annotation == "OTHER" and "3" not in by_ext


def test_pull_skips_unusable_rules_loudly_and_repairs_invalid_polygons(annotation_api, store):
    svc_rules = annotation_api.app.routes[0].endpoint.__self__.rules
    svc_rules[0]["geometry"] = "POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))"  # a bow-tie: repaired
    svc_rules[1]["geometry"] = "POLYGON ((0 0, 1 1"  # unparseable: skipped
    svc_rules[3]["annotation"] = "maybe"  # a custom vocabulary term: skipped
    summary = pull_from_gbif(store, GbifAnnotationApi(annotation_api.api_url))
    assert summary.repaired == 1 and summary.rules["created"] == 20
    reasons = dict(summary.skipped)
    assert "not valid WKT" in reasons["rule 2"] and "unknown annotation label 'maybe'" in reasons["rule 4"]
    repaired = next(r for r in store.list_rules(limit=100) if store.rule_info(r.id).external_id == "1")
    assert repaired.geometry.startswith("MULTIPOLYGON")
    assert "repaired" in store.rule_info(repaired.id).description


def test_pull_of_one_project(annotation_api, store):
    summary = pull_from_gbif(store, GbifAnnotationApi(annotation_api.api_url), project_id=2)
    assert summary.rules["created"] == 4
    assert {r.annotation for r in store.list_rules()} == {"INTRODUCED", "NATIVE", "MANAGED"}


# ------------------------------------------------------------------------------------------ push
def test_push_posts_local_rules_once_with_basic_auth(annotation_api, store):
    local = store.create_rule(
        {"taxonKey": 5219404, "geometry": "POLYGON ((0 0, 1 0, 1 1, 0 0))", "annotation": "SUSPICIOUS"},
        user="me",
    )
    with pytest.raises(GbifAuthError) as info:
        push_to_gbif(
            store, GbifAnnotationApi(annotation_api.api_url, username="sandbox", password="wrong-pw")
        )
    assert "wrong-pw" not in str(info.value)
    api = GbifAnnotationApi(annotation_api.api_url, username="sandbox", password="sandbox")
    assert "sandbox'" in repr(api) and "password" not in repr(api).lower().replace("username", "")
    first = push_to_gbif(store, api)
    assert first["pushed"] == 1 and first["rules"][0] == {"local": local.id, "remote": SEEDED_RULES + 1}
    assert push_to_gbif(store, api)["pushed"] == 0
    remote = requests.get(f"{annotation_api.base}/rule/{SEEDED_RULES + 1}", timeout=10).json()
    assert remote["geometry"] == local.geometry and remote["createdBy"] == "sandbox"
    # pulling back does not mirror our own rule a second time
    summary = pull_from_gbif(store, api)
    assert summary.pushed_from_here == 1 and store.compile().num_rows == 23


# ------------------------------------------------------------------------------------------ CLI
def run(capsys, *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]), "\n".join(out[:-1])


def test_cli_with_names_resolved_by_the_sandbox_and_pull(
    annotation_api, sandbox, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    common = ("--store", url)
    code, s, _ = run(
        capsys, "rules", "add", "Lions in Greenland are suspicious", "--ruleset", "lions", "--user", "alice",
        "--api-url", sandbox.api_url, *common,
    )  # fmt: skip
    assert code == 0, s
    assert (s["taxonKey"], s["taxon"], s["area"]) == (5219404, "Panthera leo", "Greenland")
    code, s, _ = run(
        capsys, "rules", "add", "Inachis io in France are native (basisOfRecord PRESERVED_SPECIMEN)",
        "--ruleset", "butterflies", "--user", "alice", "--api-url", sandbox.api_url, *common,
    )  # fmt: skip
    assert code == 0 and s["taxonKey"] == 4535827 and "synonym" in " ".join(s["notes"])
    code, s, _ = run(
        capsys, "rules", "add", "Pantherra leoo in GL are suspicious", "--ruleset", "lions", "--user", "alice",
        "--api-url", sandbox.api_url, *common,
    )  # fmt: skip
    assert code in (0, 2)  # fuzzy or unknown, but never a traceback
    code, s, body = run(
        capsys,
        "rules",
        "list",
        "--taxon",
        "Panthera leo",
        "--api-url",
        sandbox.api_url,
        "--format",
        "json",
        *common,
    )
    assert code == 0 and all(r["taxonKey"] == 5219404 for r in json.loads(body)) and s["rules"] >= 1

    code, s, _ = run(capsys, "rules", "import", "--from-gbif", annotation_api.api_url, *common)
    assert code == 0 and s["rules"]["created"] == 22 and s["skipped"] == 0
    code, s, _ = run(capsys, "rules", "list", "--source", "gbif", "--limit", "500", *common)
    assert s["rules"] == 22

    monkeypatch.setenv("GBIF_USERNAME", "sandbox")
    monkeypatch.setenv("GBIF_PASSWORD", "sandbox")
    code, s, _ = run(capsys, "rules", "push", annotation_api.api_url, "--ruleset", "lions", *common)
    assert code == 0 and s["pushed"] >= 1
    captured = capsys.readouterr()
    assert "sandbox:sandbox" not in captured.out + captured.err
