"""The same bytes under two URLs are stored once (media/same_bytes.py), in one process and in several.

The sandbox renders an image per (occurrence, item), whatever the query string: ``…/1.jpg?r=1``
and ``…/1.jpg?r=2`` are two URLs with the same bytes, as GBIF's http/https or mirrored identifiers
are. Traffic stays on loopback.
"""

from __future__ import annotations

import threading

import pytest

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import load_ledger, verify_store
from gbifdl_assets.media.same_bytes import SameBytes
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.harness.media_urls import sandbox_image_urls

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb():
    with start_sandbox(SandboxConfig(occurrences=5_000, seed=5, media_fault_rate=0.0)) as running:
        yield running


def _run(urls: list[str], storage: LocalStorage, ledger: str, processes: int) -> dict:
    config = DownloadConfig(
        fetch=FetchConfig(allow_loopback=True),
        processes=processes,
        pool_min_rows=1,
        event_loop="asyncio",
        ledger_flush_seconds=0.5,
    )
    return download_images([{"url": u} for u in urls], storage, ledger=ledger, config=config).to_dict()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("processes", [1, 2])
def test_same_bytes_under_two_urls_are_stored_once(sb, tmp_path, processes: int) -> None:
    distinct = sandbox_image_urls(sb, 30, fault=None)
    twins = [f"{u}?r=2" for u in distinct[:10]]  # the same bytes under a second URL
    storage = LocalStorage(tmp_path / "store")
    summary = _run(distinct + twins, storage, "s", processes)
    assert summary["ok"] == 40 and summary["same_bytes"] == 10
    ledger = {e["url"]: e for e in load_ledger(storage, "s").to_pylist()}
    for original, twin in zip(distinct[:10], twins, strict=True):
        a, b = ledger[original], ledger[twin]
        assert a["content_sha256"] == b["content_sha256"]
        assert a["key"] == b["key"] and a["sha256"] == b["sha256"]  # one object for both
        assert (a["duplicate_of"], b["duplicate_of"]) in ((None, a["content_key"]), (b["content_key"], None))
    assert len(list(storage.list("images/"))) == 30  # stored once
    report = verify_store(storage)
    assert report.consistent and report.orphans == []
    # a later run knows what its ledger stored: a third URL with those bytes points at it too
    third = [f"{distinct[0]}?r=3"]
    again = _run(third, storage, "s", processes)
    assert again["same_bytes"] == 1 and len(list(storage.list("images/"))) == 30


def test_a_second_identical_body_waits_for_the_first_instead_of_storing_again() -> None:
    same = SameBytes("jpeg-512-q90")
    body = "ab" * 32
    assert same.claim(body) is None  # the first goes ahead
    seen = []
    waiter = threading.Thread(target=lambda: seen.append(same.claim(body)))
    waiter.start()
    ck = "cd" * 32
    same.publish(body, f"images/jpeg-512-q90/cd/{ck}.jpg", ck, "ef" * 32)
    waiter.join(5)
    assert seen and seen[0].key == f"images/jpeg-512-q90/cd/{ck}.jpg" and seen[0].content_key == ck
    assert seen[0].same_object_bytes("ef" * 32)
    # the first failing (not an image) lets the next one try on its own
    other = "01" * 32
    assert same.claim(other) is None
    same.publish(other, None)
    assert same.claim(other) is None
    # seeded from a ledger, and remember keeps the first
    seeded = SameBytes("v", [(body, f"images/v/cd/{ck}.png", ck, "ef" * 32)])
    assert seeded.get(body).key == f"images/v/cd/{ck}.png"
    assert seeded.remember(body, "images/v/00/x.png", "00" * 32, "11" * 32).content_key == ck
