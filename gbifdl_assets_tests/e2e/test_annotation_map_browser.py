"""The map page in headless Chromium: log in, find a taxon, draw a polygon, save, reload, find it.

Real parts only: the service process (``gbifdl annotations serve``) on a SQLite store, the offline GBIF
sandbox answering the taxon search, Debian's chromium + chromedriver (installed on demand) driven by
selenium. User text with ``<script>`` and ``onerror`` in a ruleset name and comments must show as
text and never run. The final screenshot is kept at ``e2e/screenshots/annotation-map.png`` (the
README shows it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService
from gbifdl_assets_tests.harness.debian import ensure_command

SCREENSHOT = Path(__file__).with_name("screenshots") / "annotation-map.png"
USER, PASSWORD = "cleaner", "map-page-secret-9"
LION = 5219404
KENYA = "POLYGON ((34 -5, 42 -5, 42 5, 34 5, 34 -5))"
HOSTILE_RULESET = '<script>window.__xss = 1</script>lions <img src=x onerror="window.__xss = 2">'
HOSTILE_COMMENT = '<img src=x onerror="window.__xss = 3"><script>window.__xss = 4</script> zoo animals'


@pytest.fixture
def service(sandbox, tmp_path: Path) -> Iterator[AnnotationService]:
    url = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    with AnnotationStore(url) as store:
        store.add_user(USER, PASSWORD)
    with AnnotationService(url, tmp_path, api_url=sandbox.api_url) as svc:
        yield svc


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # the Debian chromium and chromedriver are given explicitly: Selenium Manager must not download any
    monkeypatch.setenv("SE_OFFLINE", "true")
    chromium = ensure_command("chromium", "chromium")
    chromedriver = ensure_command("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chrome-profile'}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log")),
        options=options,
    )
    try:
        yield driver
    finally:
        driver.quit()


def test_draw_save_reload_vote_comment(service, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = browser
    wait = WebDriverWait(d, 30)
    by_id = lambda name: d.find_element(By.ID, name)  # noqa: E731

    # hostile user text already in the store: a ruleset name and a comment on an existing rule
    http = requests.Session()
    http.auth = (USER, PASSWORD)
    ruleset = http.post(f"{service.api}/ruleset", json={"name": HOSTILE_RULESET}).json()
    kenya = http.post(
        f"{service.api}/rule", json={"taxonKey": LION, "geometry": KENYA, "annotation": "NATIVE"}
    )
    assert kenya.status_code == 200, kenya.text
    http.post(f"{service.api}/rule/{kenya.json()['id']}/comment", json={"comment": HOSTILE_COMMENT})

    d.get(service.url + "/ui/")
    wait.until(lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert by_id("status").text == ""

    # log in
    by_id("login-user").send_keys(USER)
    by_id("login-password").send_keys(PASSWORD)
    by_id("login-button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "login-status"), f"Logged in as {USER}"))

    # find the taxon through the GBIF client (the sandbox answers)
    by_id("taxon-query").send_keys("Panthera leo")
    by_id("taxon-search").click()
    result = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f".taxon-result[data-key='{LION}']")))
    assert "Panthera leo" in result.text
    result.click()
    wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f".rule-item[data-rule-id='{kenya.json()['id']}']"))
    )
    assert "Panthera leo" in by_id("taxon-selected").text

    # the hostile ruleset name is an option's text
    select = Select(by_id("ruleset-select"))
    select.select_by_value(str(ruleset["id"]))
    assert select.first_selected_option.text == f"{HOSTILE_RULESET} (#{ruleset['id']})"

    # draw a polygon with four clicks and save it as SUSPICIOUS
    by_id("mode-draw").click()
    the_map = by_id("map")
    for dx, dy in ((-200, -120), (-60, -140), (-40, -20), (-190, 10)):
        ActionChains(d).move_to_element_with_offset(the_map, dx, dy).click().perform()
    wait.until(ec.text_to_be_present_in_element((By.ID, "draft-info"), "4 corner(s)"))
    by_id("finish-draw").click()
    Select(by_id("label-select")).select_by_value("SUSPICIOUS")
    wait.until(ec.element_to_be_clickable((By.ID, "save-rule"))).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Saved rule #"))
    new_id = int(by_id("status").text.split("#")[1])

    saved = requests.get(f"{service.api}/rule/{new_id}").json()
    assert (saved["taxonKey"], saved["annotation"], saved["rulesetId"], saved["createdBy"]) == (
        LION, "SUSPICIOUS", ruleset["id"], USER,
    )  # fmt: skip
    assert saved["geometry"].startswith("POLYGON ((") and saved["geometry"].count(",") == 4

    # comment (hostile text again) and vote on the new rule
    by_id("comment-text").send_keys(HOSTILE_COMMENT)
    by_id("comment-add").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "comment-list"), "zoo animals"))
    by_id("support-button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "support-button"), "Withdraw support (1)"))

    # pick a country (away from the rule polygons, which sit above the basemap) and save it too
    by_id("mode-country").click()
    ActionChains(d).move_to_element_with_offset(the_map, -420, 300).click().perform()
    wait.until(ec.text_to_be_present_in_element((By.ID, "draft-info"), "Draft: "))
    code = by_id("draft-info").text.split("(")[1].split(")")[0]
    Select(by_id("label-select")).select_by_value("NATIVE")
    Select(by_id("ruleset-select")).select_by_value("")
    by_id("save-rule").click()
    wait.until(
        lambda drv: (
            by_id("status").text.startswith("Saved rule #")
            and by_id("status").text != f"Saved rule #{new_id}"
        )
    )
    country_rule = requests.get(f"{service.api}/rule/{int(by_id('status').text.split('#')[1])}").json()
    area = requests.get(f"{service.url}/ui/api/country/{code}").json()
    assert (country_rule["geometry"], country_rule["annotation"], country_rule["rulesetId"]) == (
        area["geometry"], "NATIVE", None,
    )  # fmt: skip

    # reload: the taxon comes back from the URL, the rule from the server
    d.refresh()
    wait.until(lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    item = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f".rule-item[data-rule-id='{new_id}']")))
    assert item.get_attribute("data-annotation") == "SUSPICIOUS" and "▲1" in item.text
    assert by_id("login-status").text == f"Logged in as {USER}"  # the tab's session keeps the login
    item.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "comment-list"), "zoo animals"))
    comment = d.find_element(By.CSS_SELECTOR, "#comment-list .comment-text")
    assert comment.text == HOSTILE_COMMENT  # shown as text, tags and all
    assert by_id("rule-fields").text.count(HOSTILE_RULESET) == 1

    # nothing of the hostile text ran or became markup
    assert d.execute_script("return window.__xss") is None
    assert len(d.find_elements(By.TAG_NAME, "script")) == 2  # leaflet.js and app.js only
    assert not d.find_elements(By.CSS_SELECTOR, "img[onerror]")
    d.execute_script("document.getElementById('map').scrollIntoView()")
    shot = tmp_path / "annotation-map.png"
    assert d.save_screenshot(str(shot))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    # no script error, no Content-Security-Policy violation, no failed request on the way
    errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    # the page asked nothing but its own server: no CDN, no tiles
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(service.url) for u in urls), urls
