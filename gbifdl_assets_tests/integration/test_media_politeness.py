"""Per-host politeness over real HTTP: a host that allows 20 requests/s and one without a limit.

Each host is a tiny threaded server on its own loopback address (127.0.0.2, 127.0.0.3), named
through the fetcher's ``resolve`` overrides, as the sandbox's hosts are. Traffic stays on loopback.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.host_rates import load_host_rates
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.storage import LocalStorage

pytestmark = pytest.mark.integration


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


BODY = _jpeg()


class Host:
    """A media host on ``address``: ``allowance`` requests in any second, 429 + Retry-After beyond."""

    def __init__(self, address: str, allowance: int | None = None) -> None:
        self.allowance = allowance
        self.window: deque[float] = deque()
        self.lock = threading.Lock()
        self.log: list[tuple[float, int]] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status = host.admit()
                if self.path == "/robots.txt":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if status == 429:
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def admit(self) -> int:
        now = time.monotonic()
        with self.lock:
            status = 200
            if self.allowance is not None:
                while self.window and self.window[0] <= now - 1.0:
                    self.window.popleft()
                if len(self.window) >= self.allowance:
                    status = 429
                else:
                    self.window.append(now)
            self.log.append((now, status))
            return status

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosts():
    limited, free = Host("127.0.0.2", allowance=20), Host("127.0.0.3")
    yield limited, free
    limited.close()
    free.close()


def _config(**fetch) -> DownloadConfig:
    fetch.setdefault("allow_loopback", True)
    return DownloadConfig(
        fetch=FetchConfig(**fetch),
        progress_interval=0.5,
        ledger_flush_seconds=0.5,
        event_loop="asyncio",
        processes=1,
    )


@pytest.mark.timeout(120)
def test_a_limited_host_is_paced_and_its_rate_is_kept_for_the_next_run(hosts, tmp_path) -> None:
    limited, free = hosts
    resolve = {"limited.test": "127.0.0.2", "free.test": "127.0.0.3"}
    storage = LocalStorage(tmp_path / "store")

    def urls(run: int, n: int) -> list[str]:
        out = []
        for i in range(n):
            out.append(f"http://limited.test:{limited.port}/r{run}/{i}.jpg")
            out.append(f"http://free.test:{free.port}/r{run}/{i}.jpg")
        return out

    first_urls = urls(1, 100)
    started = time.monotonic()
    summary = download_images(
        [{"url": u} for u in first_urls], storage, ledger="one", config=_config(resolve=resolve)
    )
    elapsed = time.monotonic() - started
    assert summary.ok == 200 and summary.failed == 0
    refused = sum(1 for _, s in limited.log if s == 429)
    assert refused / len(limited.log) < 0.15, (refused, len(limited.log))
    assert summary.throttled == refused and summary.hosts_contacted == 2
    assert summary.hosts[f"limited.test:{limited.port}"]["rate"] is not None
    # the free host was not held back by the limited one (no single queue): it finished early
    ledger = {r["url"]: r for r in load_ledger(storage, "one").to_pylist()}
    free_done = max(ledger[u]["finished_at"] for u in first_urls if "free.test" in u)
    limited_done = max(ledger[u]["finished_at"] for u in first_urls if "limited.test" in u)
    assert (limited_done - free_done).total_seconds() > 0.3 * elapsed
    # what was learned is kept under hosts/rates.json and used by the next run
    rates = load_host_rates(storage)
    learned = rates[f"limited.test:{limited.port}"]
    assert learned["rate"] is not None and learned["rate"] <= 25
    limited.log.clear()
    second = download_images(
        [{"url": u} for u in urls(2, 60) if "limited" in u],
        storage,
        ledger="two",
        config=_config(resolve=resolve),
    )
    assert second.ok == 60
    first_second = [s for t, s in limited.log if t - limited.log[0][0] < 1.0]
    assert len(first_second) <= 30  # started from the learned rate, not from a burst


@pytest.mark.timeout(60)
@pytest.mark.parametrize("robots", [True, False])
def test_a_dead_host_is_skipped_for_the_rest_of_the_run(tmp_path, robots: bool) -> None:
    s = socket.socket()
    s.bind(("127.0.0.4", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: every connection is refused
    urls = [f"http://gone.test:{port}/{i}.jpg" for i in range(40)] + [
        f"http://nowhere.invalid/{i}.jpg" for i in range(5)
    ]
    started = time.monotonic()
    storage = LocalStorage(tmp_path / "store")
    summary = download_images(
        [{"url": u} for u in urls],
        storage,
        ledger="dead",
        config=_config(
            resolve={"gone.test": "127.0.0.4"}, skip_host_after=4, backoff_base=0.01, robots_txt=robots
        ),
    )
    assert time.monotonic() - started < 30
    ledger = {r["url"]: r for r in load_ledger(storage, "dead").to_pylist()}
    reasons = [ledger[u]["reason"] for u in urls[:40]]
    assert {ledger[u]["reason"] for u in urls[40:]} <= {"dns_error", "host_skipped"}
    assert all("never resolve" in ledger[u]["error"] or "skipped" in ledger[u]["error"] for u in urls[40:])
    if robots:
        # robots.txt could not be asked for: the host's images fail at once with the same reason
        assert set(reasons) <= {"connection_error", "host_skipped"}
        assert all(
            "cannot connect" in ledger[u]["error"] for u in urls[:40] if ledger[u]["reason"] != "host_skipped"
        )
        return
    assert reasons.count("host_skipped") >= 30, reasons
    skipped = next(ledger[u] for u in urls[:40] if ledger[u]["reason"] == "host_skipped")
    assert f"host gone.test:{port} skipped for the rest of the run" in skipped["error"]
    assert "connection_error" in skipped["error"]
    assert f"gone.test:{port}" in summary.hosts_skipped
