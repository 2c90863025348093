"""Every media fault of the sandbox ends in the right ledger status, and nothing hangs.

Against a real HTTP server (the sandbox's media server, plus a tiny local server for the per-host
backoff check). Each test has its own timeout: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import hashlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.harness.media_urls import sandbox_image_urls

pytestmark = pytest.mark.integration


def image_urls(sb, n: int, start: int = 0) -> list[str]:
    """Plain JPEG media URLs of the sandbox (each a distinct image), no fault asked for."""
    return sandbox_image_urls(sb, n, start, fault=None)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Safety net: whatever the guard does, these tests never connect beyond loopback.

    The SSRF test names 10.0.0.1 and 169.254.169.254; if the guard regressed, the test must fail
    here instead of sending packets there. The tests run on the plain asyncio loop, whose
    ``sock_connect`` (used by aiohttp's connection set-up) can be wrapped.
    """
    original = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    async def guarded(self, sock, address):
        host = address[0]
        if not (host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")):
            raise AssertionError(f"test tried to connect to {address}")
        return await original(self, sock, address)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", guarded)


@pytest.fixture(scope="module")
def sb():
    cfg = SandboxConfig(occurrences=20_000, seed=42, media_fault_rate=0.0, media_slow_seconds=1.0)
    with start_sandbox(cfg) as running:
        yield running


def run(rows_or_urls, tmp_path, name="t", **fetch) -> tuple[dict, dict, LocalStorage]:
    urls = rows_or_urls
    storage = LocalStorage(tmp_path / "store")
    fetch.setdefault("allow_loopback", True)
    fetch.setdefault("backoff_base", 0.05)
    config = DownloadConfig(
        fetch=FetchConfig(**fetch), progress_interval=0.5, ledger_flush_seconds=0.5, event_loop="asyncio"
    )
    summary = download_images([{"url": u} for u in urls], storage, ledger=name, config=config)
    ledger = {r["url"]: r for r in load_ledger(storage, name).to_pylist()}
    return summary.to_dict(), ledger, storage


@pytest.mark.timeout(60)
def test_each_fault_ends_in_the_right_status(sb, tmp_path) -> None:
    base = image_urls(sb, 20, start=100)
    faults = ["404", "410", "500", "503", "429", "flaky", "slow", "timeout", "truncated", "cut", "html",
              "empty", "redirect1", "redirect2", "redirect3", "png"]  # fmt: skip
    urls = {f: f"{base[i].split('?')[0]}?fault={f}" for i, f in enumerate(faults)}
    started = time.monotonic()
    summary, ledger, storage = run(
        list(urls.values()), tmp_path, deadline=4.0, max_attempts=3, retry_after_cap=1.5
    )
    elapsed = time.monotonic() - started
    expect = {
        "404": ("failed", "http_404", 1),
        "410": ("failed", "http_410", 1),
        "500": ("failed", "http_500", 3),
        "503": ("failed", "http_503", 3),
        "429": ("failed", "http_429", 3),
        "flaky": ("ok", None, 2),  # 503 once, then the image
        "slow": ("ok", None, 1),  # 1 s drip, inside the 4 s deadline
        "timeout": ("failed", "timeout", None),  # the server waits 30 s; we give up at 4 s
        "truncated": ("failed", "truncated", 1),  # half a JPEG with a matching Content-Length
        "cut": ("failed", "truncated", 3),  # connection dropped mid-body: retried, never stored
        "html": ("failed", "not_an_image", 1),
        "empty": ("failed", "not_an_image", 1),
        "redirect1": ("ok", None, 1),
        "redirect2": ("ok", None, 1),
        "redirect3": ("ok", None, 1),
        "png": ("ok", None, 1),
    }
    for fault, (status, reason, attempts) in expect.items():
        entry = ledger[urls[fault]]
        assert (entry["status"], entry["reason"]) == (status, reason), (fault, entry)
        if attempts is not None:
            assert entry["attempts"] == attempts, (fault, entry)
        assert entry["stored"] == (status == "ok")
    assert ledger[urls["404"]]["http_status"] == 404 and ledger[urls["429"]]["http_status"] == 429
    assert ledger[urls["png"]]["format"] == "JPEG"  # re-encoded to the store's format
    assert elapsed < 20, f"faults took {elapsed:.1f} s: something waited too long"
    # failed images are never stored; stored ones are whole
    stored = set(storage.list("images/"))
    ok_keys = {e["key"] for e in ledger.values() if e["status"] == "ok"}
    assert stored == ok_keys and len(ok_keys) == 6
    for entry in ledger.values():
        if entry["status"] == "ok":
            data = storage.read_bytes(entry["key"])
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            Image.open(io.BytesIO(data)).load()
    assert summary["failed_by_reason"]["truncated"] == 2 and summary["ok"] == 6


@pytest.mark.timeout(30)
def test_slow_drip_is_cut_by_the_deadline(sb, tmp_path) -> None:
    url = image_urls(sb, 1, start=130)[0] + "?fault=slow"
    started = time.monotonic()
    _, ledger, _ = run([url], tmp_path, deadline=0.5, read_timeout=5, max_attempts=3)
    assert ledger[url]["reason"] == "timeout"
    assert time.monotonic() - started < 5  # the 0.5 s budget covers all attempts


@pytest.mark.timeout(30)
def test_redirect_limit(sb, tmp_path) -> None:
    url = image_urls(sb, 1, start=131)[0] + "?fault=redirect3"
    _, ledger, _ = run([url], tmp_path, max_redirects=2)
    assert (ledger[url]["status"], ledger[url]["reason"]) == ("failed", "too_many_redirects")


@pytest.mark.timeout(30)
def test_429_honours_retry_after(sb, tmp_path) -> None:
    url = image_urls(sb, 1, start=132)[0] + "?fault=429"
    started = time.monotonic()
    _, ledger, _ = run([url], tmp_path, max_attempts=3, backoff_base=0.01)
    elapsed = time.monotonic() - started
    assert ledger[url]["attempts"] == 3 and ledger[url]["reason"] == "http_429"
    assert elapsed >= 1.9  # two waits of Retry-After: 1 s, although the backoff alone is ~0.01 s


@pytest.mark.timeout(30)
def test_max_bytes(sb, tmp_path) -> None:
    url = image_urls(sb, 1, start=133)[0] + "?fault=none"
    _, ledger, storage = run([url], tmp_path, max_bytes=1024)
    assert ledger[url]["reason"] == "too_large" and list(storage.list("images/")) == []


@pytest.mark.timeout(30)
def test_ssrf_refusals_by_default(sb, tmp_path) -> None:
    # a listener on loopback proves that a refused URL never even connects
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    urls = [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/image.jpg",
        f"http://localhost:{port}/image.jpg",
        f"http://127.0.0.1:{port}/image.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/image.jpg",
        image_urls(sb, 1, start=134)[0],  # the sandbox itself is on loopback too
        "file:///etc/passwd",
    ]
    try:
        _, ledger, _ = run(urls, tmp_path, allow_loopback=False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    reasons = [ledger[u]["reason"] for u in urls]
    assert reasons == ["blocked_address"] * 6 + ["bad_url"]
    assert all(ledger[u]["attempts"] == 1 for u in urls)


@pytest.mark.timeout(30)
def test_refused_connection_fails_fast_instead_of_hanging(tmp_path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    started = time.monotonic()
    _, ledger, _ = run([f"http://127.0.0.1:{port}/a.jpg"], tmp_path, max_attempts=2)
    assert next(iter(ledger.values()))["reason"] == "connection_error"
    assert time.monotonic() - started < 5


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (10, 200, 30)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.timeout(30)
def test_a_throttling_host_is_paused_for_every_worker(tmp_path) -> None:
    body = _jpeg()
    arrivals: list[tuple[float, str]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with lock:
                arrivals.append((time.monotonic(), self.path))
            if self.path.startswith("/busy"):
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            time.sleep(0.02)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        urls = [f"{base}/busy"] + [f"{base}/ok/{i}.jpg" for i in range(40)]
        _, ledger, _ = run(urls, tmp_path, concurrency=4, per_host=4, max_attempts=2)
    finally:
        server.shutdown()
        server.server_close()
    assert ledger[f"{base}/busy"]["reason"] == "http_429"
    assert sum(e["status"] == "ok" for e in ledger.values()) == 40
    first_429 = next(t for t, p in arrivals if p.startswith("/busy"))
    # requests already in flight may land just after the 429; then the whole host is quiet for ~1 s
    quiet = [p for t, p in arrivals if first_429 + 0.25 < t < first_429 + 0.9]
    assert quiet == [], f"requests during the host's pause: {quiet}"
    assert max(t for t, _ in arrivals) - first_429 >= 0.9


@pytest.mark.timeout(30)
def test_progress_callback(sb, tmp_path) -> None:
    urls = [u + "?fault=slow" for u in image_urls(sb, 3, start=140)] + image_urls(sb, 5, start=150)
    seen = []
    storage = LocalStorage(tmp_path / "store")
    config = DownloadConfig(
        fetch=FetchConfig(allow_loopback=True), progress_interval=0.2, event_loop="asyncio"
    )
    summary = download_images(
        [{"url": u} for u in urls], storage, ledger="p", config=config, progress=seen.append
    )
    assert len(seen) >= 3 and seen[-1].final and not seen[0].final
    assert seen[-1].ok == summary.ok == 8 and seen[-1].total == 8 and seen[-1].bytes > 0
    assert [p.done for p in seen] == sorted(p.done for p in seen)
