"""Hostile geometries, limits, ruleset moves and upstream failures over HTTP: 400s with a message, never 500.

Issue 21 found 500s for ``GET /rule?geometry=`` with CURVEPOLYGON, ``POINT (nan nan)``, LINEARRING and
1e400 coordinates and for ``POST /rule`` with CURVEPOLYGON or MULTISURFACE; a 9,001-vertex polygon
written ``.95 .5`` passed GBIF's regex count; ``POLYGON M`` was stored; a ruleset member outside the
project detached the ruleset from it; a 502 echoed the upstream URL and exception. A property-based
run over hostile WKT strings checks that no text gets a 500. Identical rules get 409 with the existing
id (and a push skips them); the page's helper endpoints answer without GBIF.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService
from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port

ALICE = ("alice", "alice-secret-1")
BOB = ("bob", "bob-secret-22")
UK = "POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))"
CURVED = "CURVEPOLYGON (CIRCULARSTRING (0 0, 4 0, 4 4, 0 4, 0 0))"
SURFACE = (
    "MULTISURFACE (CURVEPOLYGON (CIRCULARSTRING (0 0, 4 0, 4 4, 0 4, 0 0)), ((10 10, 14 12, 11 10, 10 10)))"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnnotationService]:
    url = f"sqlite:///{tmp_path_factory.mktemp('anngeom') / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(*ALICE)
        store.add_user(*BOB)
        # rules everywhere, so every filter has candidates to compare with
        for i, wkt in enumerate([UK, "POLYGON ((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"]):
            store.create_rule({"taxonKey": 1 + i, "geometry": wkt, "annotation": "OTHER"}, user="alice")
    # the log shows every 500 (and its traceback); the tests read it
    with AnnotationService(
        url, tmp_path_factory.mktemp("anngeom-log"), extra_args=("--max-failed-logins", "0")
    ) as svc:
        yield svc


def no_500s(service: AnnotationService) -> None:
    log = service.log_text()
    assert "Internal Server Error" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize(
    ("wkt", "needle"),
    [
        (CURVED, "curved"),
        (SURFACE, "curved"),
        ("COMPOUNDCURVE ((0 0, 1 1), CIRCULARSTRING (1 1, 2 0, 3 1))", "curved"),
        ("GEOMETRYCOLLECTION (CIRCULARSTRING (0 0, 1 1, 2 0))", "curved"),
        ("POINT (nan nan)", "not finite"),
        ("POINT (1e400 1e400)", "not finite"),
        ("POLYGON ((0 0, 1e400 0, 1 1, 0 0))", "not finite"),
        ("POLYGON ((0 0, inf 0, 1 1, 0 0))", "not finite"),
        ("POINT Z (1 2 3)", "Z or M"),
        ("POINT M (1 2 3)", "Z or M"),
        ("POLYGON ZM ((0 0 1 1, 1 0 1 1, 1 1 1 1, 0 0 1 1))", "Z or M"),
        ("TRIANGLE ((0 0, 1 0, 1 1, 0 0))", "not valid WKT"),
        ("POLYGON ((1 2", "not valid WKT"),
    ],
)
def test_hostile_geometry_filters_are_400(service, wkt, needle):
    r = requests.get(f"{service.api}/rule", params={"geometry": wkt}, timeout=30)
    assert r.status_code == 400, (wkt, r.text)
    assert needle in r.json()["message"] and r.json()["message"].startswith("geometry filter"), r.json()
    no_500s(service)


@pytest.mark.parametrize(
    "wkt",
    [
        "LINEARRING (-10 40, 10 40, 10 60, -10 40)",
        "LINESTRING (-10 55, 10 55)",
        "MULTIPOINT ((0 55), (50 0))",
    ],
)
def test_other_straight_geometries_filter_by_intersection(service, wkt):
    r = requests.get(f"{service.api}/rule", params={"geometry": wkt}, timeout=30)
    assert r.status_code == 200, r.text
    assert {x["taxonKey"] for x in r.json()} == {1, 2}


@pytest.mark.parametrize(
    ("wkt", "needle"),
    [
        (CURVED, "curved"),
        (SURFACE, "curved"),
        ("POLYGON M ((0 0 1, 1 0 1, 1 1 1, 0 0 1))", "Z or M"),
        ("POLYGON ZM ((0 0 1 1, 1 0 1 1, 1 1 1 1, 0 0 1 1))", "Z or M"),
        ("POLYGON Z ((0 0 1, 1 0 1, 1 1 1, 0 0 1))", "Z or M"),
        ("POLYGON ((0 0 1, 1 0 1, 1 1 1, 0 0 1))", "Z or M"),
        ("POLYGON ((0 0, nan 0, 1 1, 0 0))", "not finite"),
        ("POLYGON ((0 0, 1e400 0, 1 1, 0 0))", "not finite"),
        ("LINEARRING (0 0, 1 0, 1 1, 0 0)", "LINEARRING"),
    ],
)
def test_rules_with_hostile_geometries_are_400(service, wkt, needle):
    body = {"taxonKey": 1, "geometry": wkt, "annotation": "OTHER"}
    r = requests.post(f"{service.api}/rule", json=body, auth=ALICE, timeout=30)
    assert r.status_code == 400, (wkt, r.text)
    assert needle in r.json()["message"] and "geometry" in r.json()["message"], r.json()
    no_500s(service)


def test_the_vertex_limit_counts_what_shapely_counts(service):
    # 9,001 vertices whose latitudes are written ".1"/".9": GBIF's regex sees no coordinate pair at all
    bottom = [f"{i * 0.02:.2f} .1" for i in range(4500)]
    top = [f"{(4499 - i) * 0.02:.2f} .9" for i in range(4500)]
    wkt = "POLYGON ((" + ", ".join([*bottom, *top, bottom[0]]) + "))"
    assert len(wkt) < 125_000
    r = requests.post(
        f"{service.api}/rule",
        json={"taxonKey": 1, "geometry": wkt, "annotation": "OTHER"},
        auth=ALICE,
        timeout=30,
    )
    assert r.status_code == 400, r.text[:300]
    assert "has 9,001 vertices; GBIF allows at most 2,500" in r.json()["message"]


def test_moving_a_ruleset_out_of_its_project_needs_the_projects_permission(service):
    api = service.api
    project = requests.post(f"{api}/project", json={"name": "cats"}, auth=ALICE, timeout=30).json()
    other = requests.post(f"{api}/project", json={"name": "bob's"}, auth=BOB, timeout=30).json()
    ruleset = requests.post(
        f"{api}/ruleset", json={"name": "lions", "projectId": project["id"]}, auth=ALICE, timeout=30
    ).json()
    both = {"name": "lions", "projectId": project["id"], "members": ["alice", "bob"]}
    assert (
        requests.put(f"{api}/ruleset/{ruleset['id']}", json=both, auth=ALICE, timeout=30).status_code == 200
    )
    # bob is a member of the ruleset, not of the project: he may rename it inside the project ...
    renamed = {**both, "name": "lions (bob)"}
    assert (
        requests.put(f"{api}/ruleset/{ruleset['id']}", json=renamed, auth=BOB, timeout=30).status_code == 200
    )
    # ... but neither detach it (a PUT without projectId) nor move it into his own project
    for body in ({"name": "mine", "members": ["alice", "bob"]}, {**both, "projectId": other["id"]}):
        r = requests.put(f"{api}/ruleset/{ruleset['id']}", json=body, auth=BOB, timeout=30)
        assert r.status_code == 403 and f"project {project['id']}" in r.json()["message"], r.text
    assert requests.get(f"{api}/ruleset/{ruleset['id']}", timeout=30).json()["projectId"] == project["id"]
    # a project member may take it out
    r = requests.put(
        f"{api}/ruleset/{ruleset['id']}", json={"name": "lions", "members": ["alice"]}, auth=ALICE, timeout=30
    )
    assert r.status_code == 200 and r.json()["projectId"] is None


def test_a_502_summarises_the_upstream_failure_without_its_url_or_text(tmp_path):
    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"java.lang.IllegalStateException at http://internal.gbif.example:8080/secret"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    upstream = ThreadingHTTPServer((LOOPBACK, free_port()), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    AnnotationStore(url).close()
    try:
        for api_url, says in (
            (f"http://{LOOPBACK}:{upstream.server_address[1]}/v1", "HTTP 503"),
            (f"http://{LOOPBACK}:{free_port()}/v1", "could not be reached"),
        ):
            with AnnotationService(url, tmp_path, api_url=api_url) as svc:
                r = requests.get(f"{svc.url}/ui/api/taxa", params={"q": "Panthera leo"}, timeout=60)
                assert r.status_code == 502
                message = r.json()["message"]
                assert says in message and "GBIF" in message, message
                for leak in ("127.0.0.1", "http", "internal", "Exception", "secret", "Max retries", "/v1"):
                    assert leak not in message, message
                assert "127.0.0.1" in svc.log_text()  # the details are in the server log
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_rules_import_refuses_hostile_geometries_with_its_error(tmp_path):
    path = tmp_path / "hostile.yaml"
    for wkt in (
        CURVED,
        SURFACE,
        "POLYGON M ((0 0 1, 1 0 1, 1 1 1, 0 0 1))",
        "POLYGON ((0 0, 1e400 0, 1 1, 0 0))",
    ):
        path.write_text(
            json.dumps({"ruleset": "r", "rules": [{"taxonKey": 1, "geometry": wkt, "annotation": "OTHER"}]})
        )
        done = subprocess.run(
            [sys.executable, "-m", "gbifdl_assets.cli", "rules", "import", str(path),
             "--store", f"sqlite:///{tmp_path / 'cli.sqlite'}", "--user", "me"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        # the CLI's error (the file, then each invalid rule), not a crash
        assert done.stderr.startswith("error: ") and "rule 1: geometry " in done.stderr, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["ok"] is False and "rule 1: geometry " in summary["error"]


# ---------------------------------------------------------------------------------------------------
# property-based: no WKT text gets a 500
# ---------------------------------------------------------------------------------------------------
_TYPES = ["POINT", "LINESTRING", "LINEARRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON",
          "GEOMETRYCOLLECTION", "CURVEPOLYGON", "MULTISURFACE", "CIRCULARSTRING", "COMPOUNDCURVE",
          "MULTICURVE", "TRIANGLE", "TIN", "POLYHEDRALSURFACE", "SRID=4326;POLYGON", ""]  # fmt: skip
_NUMBERS = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e-400", ".5", "-.95", "0", "-0", "1e308",
                     "180", "-180", "90.0000001", "9" * 400, "1.2.3", "+1", "0x10", "", "1_0"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
)  # fmt: skip
_POINT = st.lists(_NUMBERS, min_size=0, max_size=5).map(" ".join)


def _nest(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(inner, min_size=0, max_size=6).map(lambda xs: "(" + ", ".join(xs) + ")")


_BODY = st.recursive(_POINT, _nest, max_leaves=30)
_WKT = st.one_of(
    st.builds(
        lambda t, dim, body: f"{t}{dim}{body}",
        st.sampled_from(_TYPES),
        st.sampled_from(["", " ", " Z ", " M ", " ZM ", "Z", " EMPTY", " EMPTY "]),
        _BODY,
    ),
    st.text(alphabet="POLYGNMZ(), .0123456789-eE\t\n", max_size=120),
    st.text(max_size=60),
)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(wkt=_WKT)
def test_no_wkt_text_gets_a_500(service, wkt):
    if "\x00" in wkt:
        wkt = wkt.replace("\x00", "")
    r = requests.get(f"{service.api}/rule", params={"geometry": wkt}, timeout=60)
    assert r.status_code in (200, 400), (wkt, r.status_code, r.text[:300])
    body = {"taxonKey": 1, "geometry": wkt, "annotation": "OTHER"}
    r = requests.post(f"{service.api}/rule", json=body, auth=ALICE, timeout=60)
    assert r.status_code in (200, 400, 409), (wkt, r.status_code, r.text[:300])  # 409: generated twice
    assert r.json()["id" if r.status_code == 200 else "message"]


def test_the_service_logged_no_500_in_this_module(service):
    no_500s(service)


# ---------------------------------------------------------------------------------------------------
# identical rules, the page's helpers
# ---------------------------------------------------------------------------------------------------
def test_an_identical_rule_gets_409_with_the_existing_id(service):
    api = service.api
    body = {"taxonKey": 77, "geometry": UK, "annotation": "suspicious", "basisOfRecord": ["FOSSIL_SPECIMEN", "LIVING_SPECIMEN"],
            "yearRange": "1900,1950", "datasetKey": "50c9509d-22c7-4a22-a47d-8c48425ef4a7"}  # fmt: skip
    first = requests.post(f"{api}/rule", json=body, auth=ALICE, timeout=30).json()
    # the same rule from another user, with the area's ring started elsewhere and the lists reordered
    same = {**body, "geometry": "POLYGON ((2 50, 2 59, -8 59, -8 50, 2 50))", "annotation": "SUSPICIOUS",
            "basisOfRecord": ["LIVING_SPECIMEN", "FOSSIL_SPECIMEN"]}  # fmt: skip
    r = requests.post(f"{api}/rule", json=same, auth=BOB, timeout=30)
    assert r.status_code == 409 and r.json()["id"] == first["id"], r.text
    assert f"rule {first['id']}" in r.json()["message"] and "support it" in r.json()["message"]
    # any difference makes another rule
    for change in ({"yearRange": "1900,1951"}, {"basisOfRecordNegated": True}, {"datasetKey": None},
                   {"taxonKey": 78}, {"annotation": "OTHER"}, {"basisOfRecord": ["FOSSIL_SPECIMEN"]}):  # fmt: skip
        r = requests.post(f"{api}/rule", json={**body, **change}, auth=BOB, timeout=30)
        assert r.status_code == 200, (change, r.text)
    # a PUT that makes a rule identical to another is refused the same way; a PUT to itself is fine
    other = requests.post(f"{api}/rule", json={**body, "taxonKey": 79}, auth=BOB, timeout=30).json()
    r = requests.put(f"{api}/rule/{other['id']}", json=body, auth=BOB, timeout=30)
    assert r.status_code == 409 and r.json()["id"] == first["id"]
    assert requests.put(f"{api}/rule/{first['id']}", json=body, auth=ALICE, timeout=30).status_code == 200
    # a deleted rule does not count
    assert requests.delete(f"{api}/rule/{first['id']}", auth=ALICE, timeout=30).status_code == 200
    assert requests.post(f"{api}/rule", json=body, auth=BOB, timeout=30).status_code == 200


def test_the_page_config_and_taxon_names(service):
    config = requests.get(f"{service.url}/ui/api/config", timeout=30).json()
    assert "PRESERVED_SPECIMEN" in config["basisOfRecord"] and "HUMAN_OBSERVATION" in config["basisOfRecord"]
    # names the service has not looked up are simply missing (no request to GBIF)
    assert requests.get(f"{service.url}/ui/api/taxon-names", params={"key": [1, 2]}, timeout=30).json() == {}
    assert (
        requests.get(f"{service.url}/ui/api/taxon-names", params={"key": "x"}, timeout=30).status_code == 400
    )


def test_a_push_skips_rules_the_service_has_already(service, tmp_path):
    from gbifdl_assets.annotations.gbif_api import GbifAnnotationApi, push_to_gbif

    there = {"taxonKey": 4711, "geometry": UK, "annotation": "NATIVE"}
    assert requests.post(f"{service.api}/rule", json=there, auth=BOB, timeout=30).status_code == 200
    with AnnotationStore(f"sqlite:///{tmp_path / 'local.sqlite'}") as local:
        local.create_rule(there, user="me")
        local.create_rule({**there, "annotation": "VAGRANT"}, user="me")
        with GbifAnnotationApi(service.url, username=ALICE[0], password=ALICE[1]) as api:
            result = push_to_gbif(local, api)
    assert (result["pushed"], result["identical_there"]) == (1, 1)
    assert "identical rule exists already" in result["identical"][0]["message"]
