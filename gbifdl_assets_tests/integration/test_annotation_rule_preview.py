"""``POST …/rule/preview`` on the live service process: answers, and a clear 4xx for every bad request."""

from __future__ import annotations

import requests

from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.harness.annotation_service import AnnotationService
from gbifdl_assets_tests.harness.snapshots import rows_table, write_committed_snapshot

BOX = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"


def test_preview_over_http(tmp_path):
    storage = LocalStorage(tmp_path / "data")
    rows = [{"gbifID": i, "decimalLongitude": i % 20, "decimalLatitude": 5, "basisOfRecord": "HUMAN_OBSERVATION"}
            for i in range(1, 41)]  # fmt: skip
    write_committed_snapshot(storage, "cats", rows_table(rows))
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationService(url, tmp_path, extra_args=("--data", str(tmp_path / "data"))) as svc:
        ok = requests.post(f"{svc.api}/rule/preview", json={"geometry": BOX})
        assert ok.status_code == 200, ok.text
        assert ok.json()["flagged"] == {"occurrences": 22, "images": 22}  # lon 0..10, boundaries included
        v1 = requests.post(f"{svc.url}/v1{svc.api[len(svc.url) :]}/rule/preview", json={"geometry": BOX})
        assert v1.json()["flagged"] == ok.json()["flagged"]
        thumb = ok.json()["samples"][0]["thumbnail"]
        assert thumb.startswith("/ui/api/preview/thumbnail/")
        sets = requests.get(f"{svc.url}/ui/api/preview/training-sets").json()
        assert [(s["trainingSet"], s["rows"]) for s in sets] == [("cats", 40)]

        def status(**kwargs):
            r = requests.post(f"{svc.api}/rule/preview", **kwargs)
            return r.status_code, r.json()["message"]

        assert status(json={"geometry": "POLYGON ((0 0, 1 1))"})[0] == 400
        assert status(json={"geometry": "CURVEPOLYGON (CIRCULARSTRING (0 0, 1 1, 2 0, 1 -1, 0 0))"})[0] == 400
        assert status(json={"geometry": BOX, "taxonKey": "12"}) == (
            400,
            'taxonKey must be integer or null, not "12"',
        )
        code, message = status(json={"geometry": BOX, "trainingSets": ["dogs"]})
        assert code == 400 and "dogs has no committed snapshot" in message and "use cats" in message
        assert status(data="[1]", headers={"Content-Type": "application/json"})[0] == 400
        assert status(data='{"geometry": "x"}', headers={"Content-Type": "text/plain"})[0] == 415
        cross = status(json={"geometry": BOX}, headers={"Origin": "http://evil.example"})
        assert cross[0] == 403
        assert requests.get(f"{svc.url}/ui/api/preview/thumbnail/{'0' * 32}").status_code == 404
        # the sample's image host (images.example.org) cannot be reached from here: 502, summarised
        bad = requests.get(svc.url + thumb)
        assert bad.status_code == 502 and "image host" in bad.json()["message"]
        assert "Internal Server Error" not in svc.log_text() and '" 500' not in svc.log_text()


def test_a_storage_without_snapshots_answers_with_nothing_to_look_at(tmp_path):
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationService(url, tmp_path, extra_args=("--data", str(tmp_path / "empty"))) as svc:
        answer = requests.post(f"{svc.api}/rule/preview", json={"geometry": BOX}).json()
        assert answer["flagged"] == {"occurrences": 0, "images": 0} and "no training set" in answer["message"]
