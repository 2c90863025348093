"""Dead links recovered from GBIF's image cache (media/image_cache.py) against the sandbox's cache.

The sandbox serves ``/v1/image/cache/occurrence/{gbifID}/media/{md5(identifier)}`` like GBIF; a
second sandbox whose records point at a host name that does not resolve plays a publisher whose
server is gone. A small counting server checks that the cache sees one connection at a time.
Traffic stays on loopback.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest
from PIL import Image

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import attribution_table, load_ledger
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.sandbox.records import media_format
from gbifdl_assets.sandbox.world import media_items
from gbifdl_assets.storage import LocalStorage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb():
    with start_sandbox(SandboxConfig(occurrences=5_000, seed=7, media_fault_rate=0.0)) as running:
        yield running


def images(sb, n: int, start: int = 0, base: str | None = None) -> list[tuple[int, str]]:
    """(gbifID, identifier) of ``n`` JPEG media items of the sandbox, as its records write them."""
    world = sb.state.world
    base = base or sb.url
    out: list[tuple[int, str]] = []
    for i in range(len(world.occ)):
        key = int(world.occ.key[i])
        for item, mtype in enumerate(media_items(world.occ, i)):
            if mtype == 0 and media_format(world, key, item, mtype)[1] == "jpg":
                out.append((key, f"{base}/media/{key}/{item}.jpg"))
        if len(out) >= start + n:
            break
    return out[start : start + n]


def run(
    rows: list[dict], tmp_path, name: str = "c", processes: int = 1, **config
) -> tuple[dict, dict, LocalStorage]:
    fetch = config.pop("fetch", {})
    fetch.setdefault("allow_loopback", True)
    fetch.setdefault("backoff_base", 0.01)
    storage = LocalStorage(tmp_path / "store")
    cfg = DownloadConfig(
        fetch=FetchConfig(**fetch),
        progress_interval=0.5,
        ledger_flush_seconds=0.5,
        event_loop="asyncio",
        processes=processes,
        **config,
    )
    summary = download_images(rows, storage, ledger=name, config=cfg)
    return summary.to_dict(), {r["url"]: r for r in load_ledger(storage, name).to_pylist()}, storage


@pytest.mark.timeout(60)
def test_404_and_410_are_fetched_from_the_cache_and_credited_to_the_original(sb, tmp_path) -> None:
    pairs = images(sb, 4)
    rows = [
        {
            "url": f"{pairs[0][1]}?fault=404",
            "gbifID": pairs[0][0],
            "creator": "A. Person",
            "license": "CC-BY-4.0",
        },
        {"url": f"{pairs[1][1]}?fault=410", "gbifID": str(pairs[1][0])},
        {"url": f"{pairs[2][1]}?fault=404"},  # no gbifID: nothing to ask the cache for
        {"url": pairs[3][1], "gbifID": pairs[3][0]},  # alive: never goes to the cache
    ]
    summary, ledger, storage = run(rows, tmp_path, gbif_api_url=sb.api_url)
    for row in rows[:2]:
        entry = ledger[row["url"]]
        assert (entry["status"], entry["source"]) == ("ok", "gbif_image_cache"), entry
        digest = hashlib.md5(row["url"].encode()).hexdigest()
        assert entry["fetched_from"] == f"{sb.api_url}/image/cache/occurrence/{row['gbifID']}/media/{digest}"
        assert "GBIF's cached copy" in entry["error"]
        Image.open(io.BytesIO(storage.read_bytes(entry["key"]))).verify()
    assert (ledger[rows[2]["url"]]["status"], ledger[rows[2]["url"]]["reason"]) == ("failed", "http_404")
    assert ledger[rows[2]["url"]]["source"] is None
    assert (ledger[rows[3]["url"]]["status"], ledger[rows[3]["url"]]["source"]) == ("ok", None)
    assert summary["from_image_cache"] == 2 and summary["image_cache_tried"] == 2
    manifest = pa.table(
        {
            "content_key": [hashlib.sha256(r["url"].encode()).hexdigest() for r in rows[:1]],
            "url": [rows[0]["url"]],
            "creator": ["A. Person"],
            "license": ["CC-BY-4.0"],
        }
    )
    credit = attribution_table(manifest, load_ledger(storage, "c")).to_pylist()[0]
    assert (credit["url"], credit["creator"], credit["license"]) == (rows[0]["url"], "A. Person", "CC-BY-4.0")
    assert credit["source"] == "gbif_image_cache"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("processes", [1, 2])
def test_a_publisher_whose_host_is_gone(tmp_path, processes: int) -> None:
    """Records point at a host that does not resolve; the cache still has every image."""
    dead = "http://media.gone-museum.test"
    cfg = SandboxConfig(occurrences=3_000, seed=11, media_fault_rate=0.0, media_base_url=dead)
    with start_sandbox(cfg) as gone:
        pairs = images(gone, 30, base=dead)
        rows = [{"url": url, "gbifID": key} for key, url in pairs]
        started = time.monotonic()
        summary, ledger, storage = run(
            rows,
            tmp_path,
            processes=processes,
            gbif_api_url=gone.api_url,
            pool_min_rows=1,
            fetch={"resolve": {"media.gone-museum.test": None}},
        )
        assert time.monotonic() - started < 60
    assert summary["ok"] == 30 and summary["from_image_cache"] == 30, summary["failed_by_reason"]
    assert {e["source"] for e in ledger.values()} == {"gbif_image_cache"}
    assert all("does not resolve" in e["error"] for e in ledger.values())


@pytest.mark.timeout(60)
def test_the_cache_down_too_ends_in_a_clear_reason(sb, tmp_path) -> None:
    pairs = images(sb, 3, start=10)
    rows = [{"url": f"{url}?fault=404", "gbifID": key} for key, url in pairs]
    sb.state.faults.update({"image_cache_down": True})
    try:
        summary, ledger, storage = run(rows, tmp_path, gbif_api_url=sb.api_url, fetch={"max_attempts": 2})
    finally:
        sb.state.faults.reset()
    for entry in ledger.values():
        assert (entry["status"], entry["reason"], entry["source"]) == (
            "failed",
            "http_404",
            "gbif_image_cache",
        )
        assert "GBIF's image cache has no usable copy either: http_503" in entry["error"]
    assert list(storage.list("images/")) == []
    # switched off: the cache is not asked at all
    _, ledger, _ = run(rows, tmp_path, name="off", gbif_api_url=sb.api_url, image_cache=False)
    assert {e["source"] for e in ledger.values()} == {None}


class _CountingCache:
    """A stand-in for GBIF's image cache that records how many requests it serves at once."""

    def __init__(self, address: str, body: bytes) -> None:
        self.active = self.peak = self.served = 0
        self.lock = threading.Lock()
        cache = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with cache.lock:
                    cache.active += 1
                    cache.peak = max(cache.peak, cache.active)
                time.sleep(0.01)
                with cache.lock:
                    cache.active -= 1
                    cache.served += 1
                if self.path.startswith("/v1/image/cache/"):
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    payload = body
                else:  # the publisher's server: every image is gone
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    payload = b"gone"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes", [1, 2])
def test_one_connection_to_the_cache(tmp_path, processes: int) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (100, 80), (9, 90, 9)).save(buf, "JPEG")
    cache = _CountingCache("127.0.0.7", buf.getvalue())
    publisher = _CountingCache("127.0.0.8", b"")
    try:
        rows = [
            {"url": f"http://publisher.test:{publisher.port}/img/{i}.jpg", "gbifID": 1000 + i}
            for i in range(40)
        ]
        summary, ledger, _ = run(
            rows,
            tmp_path,
            processes=processes,
            pool_min_rows=1,
            gbif_api_url=f"http://api.gbif.test:{cache.port}/v1",
            fetch={
                "resolve": {"api.gbif.test": "127.0.0.7", "publisher.test": "127.0.0.8"},
                "robots_txt": False,
            },
        )
    finally:
        cache.server.shutdown()
        publisher.server.shutdown()
    assert summary["from_image_cache"] == 40
    assert cache.peak == 1 and cache.served == 40  # GBIF asks scripted use to keep to one connection
    assert publisher.peak > 1  # the publisher's own host was not held to one
