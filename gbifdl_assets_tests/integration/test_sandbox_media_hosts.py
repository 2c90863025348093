"""The sandbox's media hosts: several names on 127.0.0.x, each with its own manners, and what the
downloader makes of each (rate limits, robots.txt, opt-out headers, dead links recovered from the
image cache, a name that does not resolve, a refusing server, a CDN redirect, error pages).

Every packet stays on 127.0.0.0/8: names resolve through the fetcher's ``resolve`` overrides.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.sandbox.hosts import DEFAULT_HOSTS, MediaHost, parse_media_hosts
from gbifdl_assets.sandbox.records import render_record
from gbifdl_assets.storage import LocalStorage

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sb():
    cfg = SandboxConfig(occurrences=4_000, seed=3, media_fault_rate=0.0, media_hosts=DEFAULT_HOSTS)
    with start_sandbox(cfg) as running:
        yield running


def _image_rows(sb, n: int) -> list[dict]:
    """Manifest-like rows (url, gbifID) of the sandbox's JPEG images, as its search API writes them."""
    world = sb.state.world
    base = sb.app.state.sandbox  # the records' media base is built per request; use the API
    del base
    rows: list[dict] = []
    offset = 0
    while len(rows) < n:
        with urllib.request.urlopen(
            f"{sb.api_url}/occurrence/search?mediaType=StillImage&limit=300&offset={offset}"
        ) as r:
            page = json.load(r)
        for rec in page["results"]:
            for m in rec.get("media", []):
                if m.get("format") == "image/jpeg" and m.get("identifier"):
                    rows.append({"url": m["identifier"], "gbifID": rec["key"]})
        offset += 300
        if page["endOfRecords"]:
            break
    assert world is not None
    return rows[:n]


def test_identifiers_spread_over_the_hosts_deterministically(sb) -> None:
    rows = _image_rows(sb, 400)
    hosts = Counter(r["url"].split("/")[2].split(":")[0] for r in rows)
    assert set(hosts) == {h.name for h in DEFAULT_HOSTS if h.share > 0}
    assert hosts["inaturalist-open-data.sandbox.test"] > hosts["images.herbarium.sandbox.test"]
    # the same sandbox (seed, size) writes the same identifiers
    world = sb.state.world
    from gbifdl_assets.sandbox.hosts import MediaSites

    base = MediaSites(sb.url, DEFAULT_HOSTS, sb.port, 3)
    again = [m.get("identifier") for i in range(50) for m in render_record(world, i, base)["media"]]
    first = [m.get("identifier") for i in range(50) for m in render_record(world, i, base)["media"]]
    assert again == first
    info = json.load(urllib.request.urlopen(f"{sb.url}/sandbox/info"))
    assert {h["name"] for h in info["media_hosts"]} == {h.name for h in DEFAULT_HOSTS}


def test_each_host_has_its_manners(sb) -> None:
    def get(name: str, path: str) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(
            f"http://{sb.resolve[name]}:{sb.port}{path}", headers={"Host": f"{name}:{sb.port}"}
        )
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    museum, flickr, herbarium = (
        "collections.museum.sandbox.test",
        "live.staticflickr.sandbox.test",
        "images.herbarium.sandbox.test",
    )
    status, _, body = get(museum, "/robots.txt")
    assert status == 200 and b"Disallow: /media/private/" in body
    status, headers, body = get(herbarium, "/robots.txt")
    assert status == 200 and headers["content-type"].startswith("text/html")
    status, headers, _ = get(flickr, "/media/1/0.jpg")
    assert status == 302 and headers["location"].startswith(
        f"http://cdn.staticflickr.sandbox.test:{sb.port}/media/1/0.jpg"
    )
    assert get(museum, "/v1/occurrence/search")[0] == 404  # a media host serves no API
    # the museum allows 5 requests in a second; then 429 with Retry-After
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: get(museum, "/robots.txt")[0], range(12)))
    assert 429 in statuses
    # nothing listens on the refusing host's address
    with pytest.raises(OSError):
        socket.create_connection((sb.resolve["old.server.sandbox.test"], sb.port), timeout=2)
    assert sb.resolve["media.gone-museum.sandbox.test"] is None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.timeout(180)
def test_the_downloader_meets_every_host(sb, tmp_path) -> None:
    rows = _image_rows(sb, 240)
    storage = LocalStorage(tmp_path / "store")
    config = DownloadConfig(
        fetch=FetchConfig(allow_loopback=True, resolve=sb.resolve, backoff_base=0.05, deadline=60),
        gbif_api_url=sb.api_url,
        processes=1,
        event_loop="asyncio",
        ledger_flush_seconds=0.5,
    )
    started = time.monotonic()
    summary = download_images(rows, storage, ledger="hosts", config=config)
    assert time.monotonic() - started < 170
    ledger = load_ledger(storage, "hosts").to_pylist()
    by_host: dict[str, Counter] = {}
    for e in ledger:
        host = e["url"].split("/")[2].split(":")[0]
        by_host.setdefault(host, Counter())[(e["status"], e["reason"], e["source"])] += 1
    inat = by_host["inaturalist-open-data.sandbox.test"]
    assert set(inat) == {("ok", None, None)}
    museum = by_host["collections.museum.sandbox.test"]
    assert museum[("ok", None, "gbif_image_cache")] >= 1  # its dead links came from GBIF's cache
    assert {k[1] for k in museum} <= {None, "robots_txt", "not_an_image"}
    flickr = by_host["live.staticflickr.sandbox.test"]
    assert flickr[("ok", None, None)] >= 1 and flickr[("opted_out", "x_robots_tag", None)] >= 1
    herbarium = by_host["images.herbarium.sandbox.test"]
    assert herbarium[("opted_out", "tdm_reservation", None)] >= 1 and herbarium[("ok", None, None)] >= 1
    for gone in ("media.gone-museum.sandbox.test", "old.server.sandbox.test"):
        assert set(by_host[gone]) == {("ok", None, "gbif_image_cache")}, (gone, by_host[gone])
    assert summary.opted_out >= 2 and summary.from_image_cache >= 10
    assert all(k.endswith(".jpg") for k in storage.list("images/"))  # never a stored non-image


def test_bad_retry_after_values(tmp_path) -> None:
    hosts = (
        MediaHost("a-year.sandbox.test", "127.0.0.21", share=1, rate=2, retry_after="year"),
        MediaHost("the-past.sandbox.test", "127.0.0.22", share=1, rate=2, retry_after="past"),
    )
    with start_sandbox(
        SandboxConfig(occurrences=2_000, seed=9, media_fault_rate=0.0, media_hosts=hosts)
    ) as sbx:
        rows = []
        for name in ("a-year.sandbox.test", "the-past.sandbox.test"):
            rows += [{"url": f"{sbx.host_url(name)}/media/{k}/0.jpg"} for k in _keys(sbx, 12)]
        storage = LocalStorage(tmp_path / "store")
        config = DownloadConfig(
            fetch=FetchConfig(allow_loopback=True, resolve=sbx.resolve, backoff_base=0.05, robots_txt=False),
            processes=1,
            event_loop="asyncio",
        )
        started = time.monotonic()
        summary = download_images(rows, storage, ledger="ra", config=config)
        assert time.monotonic() - started < 60  # a year is not waited for, the past is not a hang
    ledger = {e["url"]: e for e in load_ledger(storage, "ra").to_pylist()}
    year = [e for u, e in ledger.items() if "a-year" in u]
    assert any(e["reason"] == "host_skipped" for e in year)
    assert all(e["status"] == "ok" or "31,536,000 s (Retry-After)" in e["error"] for e in year)
    past = [e for u, e in ledger.items() if "the-past" in u]
    # a date in the past means "now": retried at once through the host's pace, never a hang; while
    # the pace of a 2-requests/s host is being learnt, an image may use up its attempts on 429s
    assert sum(e["status"] == "ok" for e in past) >= 9
    assert {e["reason"] for e in past if e["status"] != "ok"} <= {"http_429"}
    assert "a-year.sandbox.test" in " ".join(summary.hosts_skipped)


def _keys(sb, n: int) -> list[int]:
    world = sb.state.world
    from gbifdl_assets.sandbox.world import media_items

    return [int(world.occ.key[i]) for i in range(len(world.occ)) if media_items(world.occ, i)[:1] == [0]][:n]


def test_media_host_settings_are_checked() -> None:
    assert parse_media_hosts("default") == DEFAULT_HOSTS
    assert parse_media_hosts('[{"name": "a.test", "address": "127.0.0.30", "rate": 3}]')[0].rate == 3
    with pytest.raises(ValueError, match="loopback"):
        parse_media_hosts([{"name": "a.test", "address": "10.0.0.1"}])
    with pytest.raises(ValueError, match="unknown fields"):
        parse_media_hosts([{"name": "a.test", "speed": 3}])
    with pytest.raises(ValueError, match="redirect_to"):
        parse_media_hosts([{"name": "a.test", "redirect_to": "b.test"}])
    with pytest.raises(ValueError, match="not JSON"):
        parse_media_hosts("{nope")


@pytest.mark.timeout(120)
def test_gbifdl_sandbox_serve_takes_hosts_from_the_environment(tmp_path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    hosts = [{"name": "only.sandbox.test", "address": "127.0.0.23", "rate": 3}]
    env = {**os.environ, "GBIFDL_SANDBOX_MEDIA_HOSTS": json.dumps(hosts), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gbifdl_assets.cli",
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--occurrences",
            "1000",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        info = None
        while time.monotonic() < deadline:
            try:
                info = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/sandbox/info", timeout=2))
                break
            except OSError:
                time.sleep(0.3)
        assert info is not None, "the sandbox did not come up"
        assert [h["name"] for h in info["media_hosts"]] == ["only.sandbox.test"]
        req = urllib.request.Request(
            f"http://127.0.0.23:{port}/robots.txt", headers={"Host": "only.sandbox.test"}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 404  # served by the media host (no robots.txt), not refused
    finally:
        proc.terminate()
        proc.wait(20)
