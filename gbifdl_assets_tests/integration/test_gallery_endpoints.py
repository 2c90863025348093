"""The gallery page's helper endpoints refuse what they should: no data storage, unknown or hostile
training-set names, keys that are not content keys; and the page carries the strict CSP."""

from __future__ import annotations

import requests

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService


def test_gallery_endpoints_without_and_with_a_data_storage(tmp_path):
    url = f"sqlite:///{tmp_path}/annotations.sqlite"
    AnnotationStore(url).close()
    with AnnotationService(url, tmp_path) as svc:
        answer = requests.get(f"{svc.url}/ui/api/gallery")
        assert answer.status_code == 404 and "--data" in answer.json()["message"]
    (tmp_path / "data").mkdir()
    with AnnotationService(url, tmp_path, extra_args=("--data", str(tmp_path / "data"))) as svc:
        assert requests.get(f"{svc.url}/ui/api/gallery").json() == []
        for name in ("nothing-here", "%2E%2E%2Fsnapshots", "a b", "..", "%2E%2E"):
            answer = requests.get(f"{svc.url}/ui/api/gallery/{name}")
            assert answer.status_code == 404, name  # ".." is resolved by the client: another path
        answer = requests.get(f"{svc.url}/ui/api/gallery/x/image/..%2F..%2Fannotations.sqlite")
        assert answer.status_code in (400, 404)
        assert requests.get(f"{svc.url}/ui/api/gallery/x/image/{'a' * 64}").status_code == 404
        assert requests.get(f"{svc.url}/ui/api/gallery/x", params={"limit": "-1"}).status_code == 400
        page = requests.get(f"{svc.url}/ui/gallery")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert "onclick" not in page.text and "<script>" not in page.text
