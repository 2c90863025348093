"""Opt-out honoured before the body: robots.txt, X-Robots-Tag and tdm-reservation over real HTTP.

A tiny threaded server per test on a loopback address plays a media host; it logs every request,
and its opted-out answers hold their body back for seconds, so a client that read the body would
be caught by the clock. Traffic stays on loopback.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import load_ledger, summarize_ledger
from gbifdl_assets.storage import LocalStorage

pytestmark = pytest.mark.integration


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (20, 120, 220)).save(buf, "JPEG")
    return buf.getvalue()


BODY = _jpeg()
ROBOTS = b"""User-agent: *
Disallow: /private/

User-agent: gbifdl-assets
Disallow: /private/
Disallow: /no-gbifdl/
"""


class Host:
    """A media host whose answers ``answer(path)`` decides: (status, headers, body, delay before body)."""

    def __init__(
        self, address: str, answer: Callable[[str], tuple[int, dict[str, str], bytes, float]]
    ) -> None:
        self.paths: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                host.paths.append(self.path)
                status, headers, body, delay = answer(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                try:
                    if delay:
                        time.sleep(delay)
                    self.wfile.write(body)
                except OSError:
                    pass  # the client closed the connection after the headers: what we want

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def museum(path: str) -> tuple[int, dict[str, str], bytes, float]:
    image = {"Content-Type": "image/jpeg"}
    if path == "/robots.txt":
        return 200, {"Content-Type": "text/plain"}, ROBOTS, 0.0
    if path.startswith("/tagged/"):
        return 200, {**image, "X-Robots-Tag": "noai, noimageai"}, BODY * 50, 3.0
    if path.startswith("/other-bot/"):
        return 200, {**image, "X-Robots-Tag": "otherbot: noindex"}, BODY, 0.0
    if path.startswith("/tdm/"):
        return 200, {**image, "tdm-reservation": "1"}, BODY * 50, 3.0
    return 200, image, BODY, 0.0


def run(urls: list[str], tmp_path, name: str = "o", **fetch) -> tuple[dict, dict, LocalStorage]:
    fetch.setdefault("allow_loopback", True)
    storage = LocalStorage(tmp_path / "store")
    config = DownloadConfig(
        fetch=FetchConfig(**fetch),
        progress_interval=0.5,
        ledger_flush_seconds=0.5,
        event_loop="asyncio",
        processes=1,
    )
    summary = download_images([{"url": u} for u in urls], storage, ledger=name, config=config)
    ledger = {r["url"]: r for r in load_ledger(storage, name).to_pylist()}
    return summary.to_dict(), ledger, storage


@pytest.fixture
def host():
    server = Host("127.0.0.5", museum)
    yield server
    server.close()


@pytest.mark.timeout(60)
def test_opt_outs_are_honoured_before_the_body_and_counted(host, tmp_path) -> None:
    base = f"http://museum.test:{host.port}"
    urls = {
        "plain": f"{base}/img/1.jpg",
        "private": f"{base}/private/2.jpg",
        "no-gbifdl": f"{base}/no-gbifdl/3.jpg",
        "tagged": f"{base}/tagged/4.jpg",
        "other-bot": f"{base}/other-bot/5.jpg",
        "tdm": f"{base}/tdm/6.jpg",
    }
    started = time.monotonic()
    summary, ledger, storage = run(list(urls.values()), tmp_path, resolve={"museum.test": "127.0.0.5"})
    assert time.monotonic() - started < 2.5  # the opted-out bodies (held back 3 s) were never waited for
    expect = {
        "plain": ("ok", None),
        "private": ("opted_out", "robots_txt"),
        "no-gbifdl": ("opted_out", "robots_txt"),
        "tagged": ("opted_out", "x_robots_tag"),
        "other-bot": ("ok", None),  # scoped to another robot
        "tdm": ("opted_out", "tdm_reservation"),
    }
    for what, (status, reason) in expect.items():
        entry = ledger[urls[what]]
        assert (entry["status"], entry["reason"]) == (status, reason), (what, entry)
        assert entry["stored"] == (status == "ok")
    assert "Disallow: /no-gbifdl/" in ledger[urls["no-gbifdl"]]["error"]
    assert "noai" in ledger[urls["tagged"]]["error"]
    # robots.txt was asked for once, and the disallowed paths were never requested
    assert host.paths.count("/robots.txt") == 1
    assert not any(p.startswith(("/private/", "/no-gbifdl/")) for p in host.paths)
    assert summary["opted_out"] == 4 and summary["ok"] == 2
    assert summary["opted_out_by_reason"] == {"robots_txt": 2, "x_robots_tag": 1, "tdm_reservation": 1}
    counted = summarize_ledger(load_ledger(storage, "o"))
    assert counted["opted_out"] == 4 and counted["opted_out_by_reason"]["robots_txt"] == 2
    assert len(list(storage.list("images/"))) == 1  # both served the same bytes: stored once
    # a second run does not ask again for what opted out
    host.paths.clear()
    again, _, _ = run(list(urls.values()), tmp_path, resolve={"museum.test": "127.0.0.5"})
    assert again["already_done"] == 6 and host.paths == []


@pytest.mark.timeout(60)
def test_opt_out_checks_can_be_switched_off(host, tmp_path) -> None:
    base = f"http://museum.test:{host.port}"
    urls = [f"{base}/private/1.jpg", f"{base}/other-bot/2.jpg"]
    summary, ledger, _ = run(
        urls, tmp_path, resolve={"museum.test": "127.0.0.5"}, robots_txt=False, opt_out_headers=False
    )
    assert summary["ok"] == 2 and "/robots.txt" not in host.paths


def _robots_host(answer: tuple[int, dict[str, str], bytes, float]) -> Host:
    def respond(path: str) -> tuple[int, dict[str, str], bytes, float]:
        if path == "/robots.txt":
            return answer
        if path.startswith("/error-page/"):  # a 200 with an HTML error page instead of the image
            return 200, {"Content-Type": "text/html"}, b"<html><body>Error: not found</body></html>", 0.0
        return 200, {"Content-Type": "image/jpeg"}, BODY, 0.0

    return Host("127.0.0.6", respond)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "kind",
    ["huge", "html", "malformed", "server_error", "binary"],
)
def test_bad_robots_files_end_in_clear_outcomes(tmp_path, kind: str) -> None:
    answers = {
        # 2 MB: only the first 500 KiB are read (all comments), the Disallow after them never is
        "huge": (
            200,
            {"Content-Type": "text/plain"},
            b"#" * 2_000_000 + b"\nUser-agent: *\nDisallow: /\n",
            0.0,
        ),
        "html": (200, {"Content-Type": "text/html"}, b"<!DOCTYPE html><html><body>Home</body></html>", 0.0),
        "malformed": (
            200,
            {"Content-Type": "text/plain"},
            b"Disallow /img\nUser-agent *\n\x00\xff junk:::\n",
            0.0,
        ),
        "server_error": (500, {"Content-Type": "text/plain"}, b"oops", 0.0),
        "binary": (200, {"Content-Type": "application/octet-stream"}, b"\x00\x01\x02" * 1000, 0.0),
    }
    server = _robots_host(answers[kind])
    try:
        base = f"http://robots.test:{server.port}"
        urls = [f"{base}/img/{i}.jpg" for i in range(3)] + [f"{base}/error-page/1.jpg"]
        started = time.monotonic()
        summary, ledger, storage = run(
            urls, tmp_path, resolve={"robots.test": "127.0.0.6"}, backoff_base=0.01, max_attempts=2
        )
        assert time.monotonic() - started < 20
    finally:
        server.close()
    entries = [ledger[u] for u in urls[:3]]
    if kind == "server_error":
        # RFC 9309: an unreachable robots.txt means "request nothing"; a re-run asks again
        assert {(e["status"], e["reason"]) for e in entries} == {("failed", "robots_unavailable")}
        assert "robots.txt" in entries[0]["error"] and "HTTP 500" in entries[0]["error"]
        assert not any(p.startswith("/img/") for p in server.paths)
    else:
        assert [e["status"] for e in entries] == ["ok"] * 3, entries
    if kind != "server_error":  # never a stored non-image
        assert (ledger[urls[3]]["status"], ledger[urls[3]]["reason"]) == ("failed", "not_an_image")
    assert all(k.endswith(".jpg") for k in storage.list("images/"))
    stored_keys = {e["key"] for e in ledger.values() if e["stored"]}
    assert set(storage.list("images/")) == stored_keys  # (identical bodies: one object)
