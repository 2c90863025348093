"""The map page in headless Chromium: log in, find a taxon, draw a polygon, save, reload, find it.

Real parts only: the service process (``gbifdl annotations serve``) on a SQLite store, the offline GBIF
sandbox answering the taxon search, Debian's chromium + chromedriver (installed on demand) driven by
selenium. User text with ``<script>`` and ``onerror`` in a ruleset name and comments must show as
text and never run. The final screenshot is kept at ``e2e/screenshots/annotation-map.png`` (the
README shows it).

A page on another loopback port (another origin, the same site) attacks a browser that has the user's
Basic credentials (as a browser that once answered a Basic dialog would): a plain form POST, an
``enctype=text/plain`` form whose body is JSON and a ``no-cors`` fetch. None of them may write.
"""

from __future__ import annotations

import base64
import html
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.harness.annotation_service import AnnotationService
from gbifdl_assets_tests.harness.map_page import log_in, search_taxon
from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port

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
    # a data storage without training sets: the preview lists none (without one it answers 503,
    # which the page shows as "Preview unavailable")
    (tmp_path / "data").mkdir()
    args = ("--data", str(tmp_path / "data"))
    with AnnotationService(url, tmp_path, api_url=sandbox.api_url, extra_args=args) as svc:
        yield svc


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
    log_in(d, wait, USER, PASSWORD)

    # find the taxon through the GBIF client (the sandbox answers)
    result = search_taxon(d, wait, "Panthera leo", LION)
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


# ---------------------------------------------------------------------------------------------------
# a page on another origin attacks a logged-in browser
# ---------------------------------------------------------------------------------------------------
def _attacker_pages(api: str, rule_id: int) -> dict[str, str]:
    """Each page submits its attack as soon as it loads (``document.title`` says it was sent)."""
    target = html.escape(f"{api}/rule/{rule_id}", quote=True)
    json_name = html.escape('{"comment": "pwned by a text/plain form", "x": "', quote=True)
    blob = f"{api}/rule/{rule_id}/comment"
    return {
        "/form": f"""<!doctype html><title>form</title>
<form id="f" method="post" action="{target}/contest"><input name="a" value="b"></form>
<script>document.title = "sent"; document.getElementById("f").submit();</script>""",
        "/text-plain": f"""<!doctype html><title>text/plain</title>
<form id="f" method="post" enctype="text/plain" action="{target}/comment">
<input name="{json_name}" value='"}}'></form>
<script>document.title = "sent"; document.getElementById("f").submit();</script>""",
        "/fetch": f"""<!doctype html><title>fetch</title><script>
fetch("{blob}", {{method: "POST", mode: "no-cors", credentials: "include",
  body: new Blob(['{{"comment": "pwned by fetch"}}'])}})
  .finally(() => {{ document.title = "sent"; }});
</script>""",
    }


@pytest.fixture
def attacker_site(service) -> Iterator[object]:
    """A web server on another loopback port; ``attacker_site.pages`` is filled in by the test."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = server.pages.get(self.path, "not found").encode()  # type: ignore[attr-defined]
            self.send_response(200 if self.path in server.pages else 404)  # type: ignore[attr-defined]
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, free_port()), Handler)
    server.pages = {}  # type: ignore[attr-defined]
    server.url = f"http://{LOOPBACK}:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_cannot_write_with_the_users_credentials(service, browser, attacker_site):
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    http = requests.Session()
    http.auth = (USER, PASSWORD)
    rule = http.post(
        f"{service.api}/rule", json={"taxonKey": LION, "geometry": KENYA, "annotation": "NATIVE"}
    )
    assert rule.status_code == 200, rule.text
    rule_id = rule.json()["id"]
    attacker_site.pages.update(_attacker_pages(service.api, rule_id))  # type: ignore[attr-defined]
    # the browser sends the user's Basic credentials with every request to every site (as one that
    # had them cached would): the attack reaches the service logged in
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})

    for page in ("/form", "/text-plain", "/fetch"):
        d.get(attacker_site.url + page)  # type: ignore[attr-defined]
        if page == "/fetch":
            WebDriverWait(d, 30).until(lambda drv: drv.title == "sent")
        else:  # the form navigated to the service's answer
            WebDriverWait(d, 30).until(lambda drv: drv.current_url.startswith(service.url))

    after = requests.get(f"{service.api}/rule/{rule_id}").json()
    assert after["contestedBy"] == [] and after["supportedBy"] == []
    assert requests.get(f"{service.api}/rule/{rule_id}/comment").json() == []
    # the attacks did reach the service (and were refused there)
    log = service.log_text()
    assert f'/rule/{rule_id}/contest HTTP/1.1" 403' in log
    assert log.count(f'/rule/{rule_id}/comment HTTP/1.1" 403') == 2

    # control: the same browser, credentials and JSON write from the service's own page succeed
    d.get(service.url + "/ui/")
    WebDriverWait(d, 30).until(lambda drv: drv.find_element("tag name", "body").get_attribute("data-ready"))
    status = d.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: "POST", headers: {"Content-Type": "application/json"},
                             body: JSON.stringify({comment: "from the page itself"})})
          .then((r) => done(r.status), (e) => done(String(e)));""",
        f"{service.api}/rule/{rule_id}/comment",
    )
    assert status == 200
    assert [c["comment"] for c in requests.get(f"{service.api}/rule/{rule_id}/comment").json()] == [
        "from the page itself"
    ]


# ---------------------------------------------------------------------------------------------------
# filters, taxon names, why saving is off, rules without a taxon, duplicates
# ---------------------------------------------------------------------------------------------------
DATASET = "50c9509d-22c7-4a22-a47d-8c48425ef4a7"


def test_a_rule_with_filters_and_one_without_a_taxon_through_the_page(service, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = browser
    wait = WebDriverWait(d, 30)
    by_id = lambda name: d.find_element(By.ID, name)  # noqa: E731
    d.get(service.url + "/ui/")
    wait.until(lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    # the page says why "Save rule" is off, step by step
    assert not by_id("save-rule").is_enabled()
    assert by_id("save-why").text == "Save is off: Log in to save a rule."
    assert by_id("rules-title").text == "Rules without a taxon (every species)"
    by_id("login-user").send_keys(USER)
    by_id("login-password").send_keys(PASSWORD)
    by_id("login-button").click()
    wait.until(
        ec.text_to_be_present_in_element((By.ID, "save-why"), "Draw a polygon or pick a country first.")
    )

    search_taxon(d, wait, "Panthera leo", LION).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "rules-title"), "Rules of this taxon"))
    # the service now knows the name (from the search), without asking GBIF again
    names = requests.get(f"{service.url}/ui/api/taxon-names", params={"key": [LION, 1]}).json()
    assert names == {str(LION): "Panthera leo (Linnaeus, 1758)"}

    by_id("mode-draw").click()
    the_map = by_id("map")
    ActionChains(d).move_to_element_with_offset(the_map, -200, -120).click().perform()
    wait.until(ec.text_to_be_present_in_element((By.ID, "save-why"), "Finish the polygon first"))
    for dx, dy in ((-60, -140), (-40, -20)):
        ActionChains(d).move_to_element_with_offset(the_map, dx, dy).click().perform()
    by_id("finish-draw").click()
    wait.until(lambda drv: by_id("save-rule").is_enabled())
    assert by_id("save-why").text == ""

    # the filters: all but preserved and fossil specimens, 1900-1950, one dataset
    for name in ("PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"):
        d.find_element(By.CSS_SELECTOR, f"#bor-options input[value='{name}']").click()
    by_id("bor-negated").click()
    by_id("year-from").send_keys("1900")
    by_id("year-to").send_keys("1950")
    by_id("dataset-key").send_keys(DATASET)
    Select(by_id("label-select")).select_by_value("SUSPICIOUS")
    by_id("save-rule").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Saved rule #"))
    rule_id = int(by_id("status").text.split("#")[1])
    saved = requests.get(f"{service.api}/rule/{rule_id}").json()
    assert (saved["taxonKey"], saved["basisOfRecord"], saved["basisOfRecordNegated"], saved["yearRange"],
            saved["datasetKey"]) == (LION, ["PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"], True, "1900,1950", DATASET)  # fmt: skip
    # the details name the taxon beside its key
    wait.until(
        ec.text_to_be_present_in_element((By.ID, "rule-fields"), f"Panthera leo (Linnaeus, 1758) ({LION})")
    )
    details = by_id("rule-fields").text
    assert "all except PRESERVED_SPECIMEN, FOSSIL_SPECIMEN" in details and "1900 to 1950" in details
    assert DATASET in details

    # the same country twice with the same filters: the second is refused and the first one shown
    def pick_country() -> None:
        by_id("mode-country").click()
        ActionChains(d).move_to_element_with_offset(the_map, -200, 140).click().perform()  # Brazil
        wait.until(ec.text_to_be_present_in_element((By.ID, "draft-info"), "Draft: "))

    pick_country()
    by_id("save-rule").click()
    wait.until(
        lambda drv: (
            by_id("status").text.startswith("Saved rule #")
            and by_id("status").text != f"Saved rule #{rule_id}"
        )
    )
    country_id = int(by_id("status").text.split("#")[1])
    pick_country()
    by_id("save-rule").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "identical rule exists already"))
    assert f"rule {country_id}" in by_id("status").text
    selected = d.find_element(By.CSS_SELECTOR, ".rule-item.selected")
    assert selected.get_attribute("data-rule-id") == str(country_id)

    # no taxon: the page says what that means and asks before saving
    by_id("taxon-clear").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "rules-title"), "Rules without a taxon"))
    assert "every species" in by_id("save-why").text
    by_id("save-rule").click()  # the draft (the country) is still there
    wait.until(ec.alert_is_present())
    alert = d.switch_to.alert
    assert "EVERY species" in alert.text
    alert.dismiss()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Not saved: choose a taxon"))
    by_id("save-rule").click()
    wait.until(ec.alert_is_present())
    d.switch_to.alert.accept()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Saved rule #"))
    any_taxon = requests.get(f"{service.api}/rule/{int(by_id('status').text.split('#')[1])}").json()
    assert any_taxon["taxonKey"] is None and any_taxon["datasetKey"] == DATASET
    wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f".rule-item[data-rule-id='{any_taxon['id']}']"))
    )
    assert "any (every species in the area)" in by_id("rule-fields").text

    errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert all("409" in e for e in errors), errors  # the refused duplicate is the only failed request
    shot = tmp_path / "annotation-map-filters.png"  # not kept in the repository; -s prints where it is
    assert d.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")
