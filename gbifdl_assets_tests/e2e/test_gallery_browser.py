"""The gallery page in headless Chromium: a flag made there takes the image (and its copy under another
URL, found by the ledger's content sha256) out of the next manifest.

Real parts: the Dagster graph against the offline sandbox builds the manifest; the images are stored
as the image store would (content-addressed objects and a ledger with ``content_sha256``), here
generated rather than fetched, so the test does not depend on the image stage; the service process
(``gbifdl annotations serve --data``); Debian's chromium. A hostile creator name must show as text.
The screenshot is kept at ``e2e/screenshots/gallery.png`` (the README shows it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.media.ledger import LedgerWriter
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.pipeline.balanced_manifest import latest_manifest_key, read_latest_manifest
from gbifdl_assets.storage import layout, open_storage
from gbifdl_assets_tests.harness.annotation_service import AnnotationService
from gbifdl_assets_tests.harness.manifest_graph import (
    BUTTERFLIES_SPEC,
    materialize_to_manifest,
    rebuild_manifest,
)
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

SCREENSHOT = Path(__file__).with_name("screenshots") / "gallery.png"
USER, PASSWORD = "cleaner", "gallery-secret-7"
HOSTILE = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>Jane'


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    colour = ((seed * 67) % 256, (seed * 151) % 256, (seed * 29) % 256)
    image = Image.new("RGB", (160, 120), colour)
    for x in range(0, 160, 20):  # a pattern, so thumbnails differ visibly
        image.paste(
            (255 - colour[0], 200, 80), (x, (seed * 13 + x) % 100, x + 10, (seed * 13 + x) % 100 + 20)
        )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def _store_images(storage, manifest: pa.Table, copy_of: dict[str, str]) -> None:
    """Objects and a ledger for every manifest row, as the image store writes them; ``copy_of``: url ->
    url whose bytes it repeats (the same content_sha256)."""
    images = ImageStore(storage)
    writer = LedgerWriter(images, layout.ledger_name("butterflies", "0"))
    now = dt.datetime.now(dt.UTC)
    for i, row in enumerate(manifest.to_pylist()):
        data = _jpeg(i)
        key = ImageStore.image_key(row["content_key"], "512", "jpg")
        storage.write_bytes(key, data)
        source = copy_of.get(row["url"], row["url"])
        writer.add(
            {
                "content_key": row["content_key"], "url": row["url"], "status": "ok", "stored": True,
                "key": key, "bytes": len(data), "width": 160, "height": 120,
                "sha256": hashlib.sha256(data).hexdigest(), "format": "JPEG", "content_type": "image/jpeg",
                "content_sha256": hashlib.sha256(source.encode()).hexdigest(),
                "http_status": 200, "attempts": 1, "started_at": now, "finished_at": now,
            }
        )  # fmt: skip
    writer.flush()


def _first_shown(manifest: pa.Table) -> dict:
    """The image the gallery shows first: the first row of the first class by name."""
    rows = manifest.to_pylist()
    first = min({(r["label_name"] or "", r["label"]) for r in rows})[1]
    return next(r for r in rows if r["label"] == first)


def test_flag_from_the_gallery_leaves_the_next_manifest(sandbox, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "b.yaml").write_text(BUTTERFLIES_SPEC)
    resources = sandbox_resources(sandbox.api_url, tmp_path, seed_rules=True, images=False)
    store_url = resources["annotations"].store_url
    storage = open_storage(str(tmp_path / "data"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["butterflies"])
        assert materialize_to_manifest(sandbox, tmp_path, instance).success
        manifest = read_latest_manifest(storage, "butterflies")
        shown = _first_shown(manifest)
        copy = next(r for r in manifest.to_pylist() if r["label"] != shown["label"])
        _store_images(storage, manifest, {copy["url"]: shown["url"]})
        # a creator name with markup: the page must show it as text
        hostile = manifest.set_column(
            manifest.column_names.index("creator"), "creator", pa.array([HOSTILE] * manifest.num_rows)
        )
        storage.write_parquet(latest_manifest_key(storage, "butterflies"), hostile)
        with AnnotationStore(store_url) as store:
            store.add_user(USER, PASSWORD)

        with AnnotationService(store_url, tmp_path, extra_args=("--data", str(tmp_path / "data"))) as svc:
            d = browser
            wait = WebDriverWait(d, 30)
            d.get(svc.url + "/ui/gallery")
            wait.until(
                lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true"
            )
            d.find_element(By.ID, "login-user").send_keys(USER)
            d.find_element(By.ID, "login-password").send_keys(PASSWORD)
            d.find_element(By.ID, "login-button").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "login-status"), f"Logged in as {USER}"))
            card = d.find_element(By.CSS_SELECTOR, "#grid .card")
            assert card.get_attribute("data-gbif-id") == str(shown["gbifID"])
            assert HOSTILE in card.text  # shown as text
            wait.until(lambda drv: drv.execute_script(
                "const i = document.querySelector('#grid .card img'); return i.complete && i.naturalWidth > 0"
            ))  # fmt: skip
            card.find_element(By.CSS_SELECTOR, "button.thumb").click()
            wait.until(ec.visibility_of_element_located((By.ID, "flag-dialog")))
            d.find_element(By.CSS_SELECTOR, "input[name=flag-term][value=NOT_ORGANISM]").click()
            d.find_element(By.ID, "flag-comment").send_keys("a herbarium label, no butterfly")
            d.find_element(By.ID, "flag-save").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "as NOT_ORGANISM"))
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#grid .card.flagged .badge")))
            assert d.execute_script("return window.__xss") is None
            assert not d.find_elements(By.CSS_SELECTOR, "img[onerror]")
            shot = tmp_path / "gallery.png"
            assert d.save_screenshot(str(shot))
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
            errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors
            urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert urls and all(u.startswith(svc.url) for u in urls), urls

        with AnnotationStore(store_url) as store:
            (flag,) = store.list_flags()
        assert (flag.gbifID, flag.mediaIdentifier, flag.createdBy) == (shown["gbifID"], shown["url"], USER)
        assert flag.taxonKey == shown["label"] and flag.contentSha256 is not None

        rebuild_manifest(instance, resources)
        urls = set(read_latest_manifest(storage, "butterflies").column("url").to_pylist())
        assert shown["url"] not in urls
        assert copy["url"] not in urls  # the same bytes under another URL, found by the ledger's hash
