"""The map page's rule preview in headless Chromium, offline: draw, filter, see the numbers, save.

Real parts only: the offline GBIF sandbox on its own port, the annotation service started *without*
``--api-url`` (``GBIFDL_OFFLINE=1``: it follows the platform's one offline rule and finds that sandbox on
``GBIFDL_SANDBOX_PORT``), a data storage holding two committed snapshots written from the sandbox's search
API (with its registry's dataset titles), and Debian's chromium driven by selenium. The page's taxon
search, the preview counts, the sample thumbnails (fetched by the service from the sandbox's image host)
and the saved rule are all checked; the screenshot is kept at ``e2e/screenshots/rule-preview.png``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.registry import RegistryClient
from gbifdl_assets.occurrences.snapshots import write_snapshot_from_search
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.harness.annotation_service import AnnotationService
from gbifdl_assets_tests.harness.map_page import log_in, search_taxon
from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port

SCREENSHOT = Path(__file__).with_name("screenshots") / "rule-preview.png"
USER, PASSWORD = "cleaner", "preview-page-secret-7"
LION = 5219404
#: lon/lat corners around southern and eastern Africa (where the sandbox puts its lions)
AREA = ((12.0, 2.0), (44.0, 2.0), (44.0, -36.0), (12.0, -36.0))


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[tuple[str, LocalStorage]]:
    """A sandbox on a known port and a data storage with two snapshots written from it."""
    from gbifdl_assets.sandbox import SandboxConfig, start_sandbox

    port = free_port()
    sandbox = start_sandbox(SandboxConfig(occurrences=20_000, seed=42), host=LOOPBACK, port=port)
    try:
        storage = LocalStorage(tmp_path / "data")
        client = GbifClient(sandbox.api_url)
        with RegistryClient(sandbox.api_url, workers=1) as registry:
            write_snapshot_from_search(
                client.iter_occurrences({"taxonKey": LION, "mediaType": "StillImage"}), storage, "big-cats",
                registry=registry,
            )  # fmt: skip
            write_snapshot_from_search(
                client.iter_occurrences({"mediaType": "StillImage", "country": "ZA"}), storage, "south-africa",
                registry=registry,
            )  # fmt: skip
        yield str(port), storage
    finally:
        sandbox.stop()


@pytest.fixture
def service(offline, tmp_path: Path) -> Iterator[AnnotationService]:
    port, storage = offline
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(USER, PASSWORD)
    env = {"GBIFDL_OFFLINE": "1", "GBIFDL_SANDBOX_PORT": port, "GBIF_API_URL": ""}
    with AnnotationService(
        url, tmp_path, api_url=None, env=env, extra_args=("--data", str(tmp_path / "data"))
    ) as svc:
        yield svc


def _offset(lon: float, lat: float, width: int, height: int) -> tuple[int, int]:
    """Pixels from the map's centre (the page opens at lat 30, lon 10, zoom 2: 1,024 px per world)."""

    def y(phi: float) -> float:
        return 1024 / (2 * math.pi) * math.log(math.tan(math.pi / 4 + math.radians(phi) / 2))

    return round((lon - 10) * 1024 / 360), round(y(30) - y(lat))


def test_draw_filter_preview_save_offline(service, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = browser
    wait = WebDriverWait(d, 60)
    by_id = lambda name: d.find_element(By.ID, name)  # noqa: E731
    d.get(service.url + "/ui/")
    wait.until(lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    sets = [e.get_attribute("value") for e in d.find_elements(By.CSS_SELECTOR, "#preview-sets input")]
    assert sets == ["big-cats", "south-africa"]
    log_in(d, wait, USER, PASSWORD)

    # the taxon search answers offline (the service found the sandbox itself)
    search_taxon(d, wait, "Panthera leo", LION).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "taxon-selected"), "Panthera leo"))

    # draw the area: the preview counts as soon as the polygon is finished
    by_id("mode-draw").click()
    the_map = by_id("map")
    size = the_map.size
    for lon, lat in AREA:
        dx, dy = _offset(lon, lat, size["width"], size["height"])
        ActionChains(d).move_to_element_with_offset(the_map, dx, dy).click().perform()
    wait.until(ec.text_to_be_present_in_element((By.ID, "draft-info"), "4 corner(s)"))
    by_id("finish-draw").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "preview-summary"), "Would flag"))
    geometry = d.execute_script("return document.querySelector('#draft-info').textContent")
    assert "polygon with 4 corners" in geometry

    # the filters change the preview; they are what the API previews for the same rule
    http = requests.Session()
    unfiltered = http.post(
        f"{service.api}/rule/preview", json={"taxonKey": LION, "geometry": _drawn(d)}
    ).json()
    assert unfiltered["flagged"]["occurrences"] > 0, unfiltered
    dataset = unfiltered["byDataset"][0]["datasetKey"]
    years = sorted(s["year"] for s in unfiltered["samples"] if s["year"])
    d.find_element(By.CSS_SELECTOR, "#bor-options input[value='PRESERVED_SPECIMEN']").click()
    by_id("bor-negated").click()
    by_id("year-from").send_keys(str(years[0]))
    by_id("year-to").send_keys("2030")
    by_id("dataset-key").send_keys(dataset)
    body = {
        "taxonKey": LION, "geometry": _drawn(d), "basisOfRecord": ["PRESERVED_SPECIMEN"],
        "basisOfRecordNegated": True, "yearRange": f"{years[0]},2030", "datasetKey": dataset,
    }  # fmt: skip
    expected = http.post(f"{service.api}/rule/preview", json=body).json()
    n = expected["flagged"]["occurrences"]
    assert 0 < n <= unfiltered["flagged"]["occurrences"]
    wait.until(
        ec.text_to_be_present_in_element(
            (By.ID, "preview-summary"),
            f"Would flag {n:,} occurrences ({expected['flagged']['images']:,} images)",
        )
    )
    rows = d.find_elements(By.CSS_SELECTOR, "#preview-datasets tbody tr")
    title = expected["byDataset"][0]["datasetTitle"] or dataset
    assert rows and rows[0].find_elements(By.TAG_NAME, "td")[0].text == title
    assert d.find_element(By.CSS_SELECTOR, "#preview-bor tbody td").text == "HUMAN_OBSERVATION"
    # the thumbnails come from this service (which fetched them from the sandbox's image host)
    wait.until(
        lambda drv: drv.execute_script(
            "const imgs = [...document.querySelectorAll('#preview-samples img')];"
            "return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);"
        )
    )
    shown = len(d.find_elements(By.CSS_SELECTOR, "#preview-samples img"))
    assert shown == len(expected["samples"]) == min(12, n)

    # only the big cats: the other training set drops out of the counts
    by_id("preview-sets-box").click()
    d.find_element(By.CSS_SELECTOR, "#preview-sets input[value='south-africa']").click()
    only = http.post(f"{service.api}/rule/preview", json={**body, "trainingSets": ["big-cats"]}).json()
    wait.until(
        ec.text_to_be_present_in_element(
            (By.ID, "preview-summary"), f"Would flag {only['flagged']['occurrences']:,} occurrences"
        )
    )
    assert "in 1 training set." in by_id("preview-summary").text
    d.execute_script("document.getElementById('preview').scrollIntoView()")
    shot = tmp_path / "rule-preview.png"
    assert d.save_screenshot(str(shot))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)

    # save; the API has the rule with its filters
    Select(by_id("label-select")).select_by_value("SUSPICIOUS")
    by_id("save-rule").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Saved rule #"))
    saved = http.get(f"{service.api}/rule/{int(by_id('status').text.split('#')[1])}").json()
    assert (saved["taxonKey"], saved["basisOfRecord"], saved["basisOfRecordNegated"], saved["yearRange"],
            saved["datasetKey"], saved["geometry"]) == (LION, ["PRESERVED_SPECIMEN"], True, f"{years[0]},2030",
                                                       dataset, body["geometry"])  # fmt: skip
    wait.until(ec.text_to_be_present_in_element((By.ID, "preview-summary"), "Draw a polygon"))
    errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(service.url) for u in urls), urls  # thumbnails too: no other origin


def _drawn(d) -> str:
    """The page's draft geometry (what it previews and saves; the preview section carries it)."""
    return d.find_element("id", "preview").get_attribute("data-geometry")
