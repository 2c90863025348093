"""GbifAnnotationApi.get: an unknown id is None from GBIF (200, empty body) and from our service (404).

GBIF's behaviour is served by the offline sandbox's annotation routes (the shapes recorded from
api.gbif.org); ours by a real ``gbifdl annotations serve`` process. A URL that serves no annotation
API at all is not taken for "unknown id": it fails with a message naming the URL.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import uvicorn
from starlette.applications import Starlette

from gbifdl_assets.annotations.gbif_api import GbifAnnotationApi
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.gbif.errors import GbifResponseError
from gbifdl_assets.sandbox.annotations_api import annotation_routes
from gbifdl_assets.sandbox.app import SandboxState
from gbifdl_assets.sandbox.config import SandboxConfig
from gbifdl_assets_tests.harness.annotation_service import AnnotationService

UNKNOWN_ID = 987_654
UK = "POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))"


@pytest.fixture(scope="module")
def gbif_like() -> Iterator[str]:
    """The sandbox's GBIF-shaped annotation API in this process; yields its API root (…/v1)."""
    app = Starlette(
        routes=annotation_routes(SandboxState(SandboxConfig(occurrences=200, species=10, seed=3)))
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "annotation sandbox did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnnotationService]:
    store_url = f"sqlite:///{tmp_path_factory.mktemp('annget') / 'annotations.sqlite'}"
    with AnnotationStore(store_url) as store:
        store.add_user("alice", "alice-secret-1")
    with AnnotationService(store_url, tmp_path_factory.mktemp("annget-log")) as service:
        yield service


def test_gbif_answers_an_unknown_id_with_an_empty_body_and_get_returns_none(gbif_like):
    raw = requests.get(f"{gbif_like}/occurrence/experimental/annotation/rule/{UNKNOWN_ID}", timeout=10)
    assert raw.status_code == 200 and raw.content == b""  # the behaviour the client must accept
    with GbifAnnotationApi(gbif_like, max_retries=0) as api:
        assert api.get("rule", UNKNOWN_ID) is None
        known = next(api.iter_rules())
        assert api.get("rule", known["id"])["id"] == known["id"]


def test_our_service_answers_404_and_get_returns_none(ours):
    raw = requests.get(f"{ours.api}/rule/{UNKNOWN_ID}", timeout=10)
    assert raw.status_code == 404  # the behaviour that used to raise GbifNotFound out of get()
    created = requests.post(
        f"{ours.api}/rule",
        json={"taxonKey": 5219404, "geometry": UK, "annotation": "SUSPICIOUS"},
        auth=("alice", "alice-secret-1"),
        timeout=10,
    )
    assert created.status_code == 200, created.text
    with GbifAnnotationApi(ours.url + "/v1", max_retries=0) as api:
        for kind in ("rule", "ruleset", "project"):
            assert api.get(kind, UNKNOWN_ID) is None, kind
        assert api.get("rule", created.json()["id"])["taxonKey"] == 5219404


def test_a_url_without_an_annotation_api_is_an_error_not_none(ours):
    # the service's root serves no /v1/occurrence/...: every path there is 404
    with (
        GbifAnnotationApi(ours.url + "/not-the-api", max_retries=0) as api,
        pytest.raises(GbifResponseError, match="no annotation API here") as raised,
    ):
        api.get("rule", UNKNOWN_ID)
    assert "/not-the-api/occurrence/experimental/annotation/rule" in str(raised.value)
