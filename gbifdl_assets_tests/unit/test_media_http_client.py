"""The downloader's own HTTP/1.1 client (media/fetch.py) on the framings and quirks real media hosts
use and the sandbox does not: chunked bodies, bodies ended by closing the connection, gzip answers
although we asked for identity, URLs that need percent-encoding, and keep-alive connections the
server closes while they sit idle. Against a tiny local server (loopback only); ~1 s.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time

import pytest

from gbifdl_assets.media.fetch import FetchConfig, Fetcher

BODY = bytes(range(256)) * 200  # 51,200 bytes


class _Server:
    """A raw-socket HTTP server: each path picks how the answer is framed."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.requests.append(head)
                target = head.split(b" ")[1].decode()
                if target == "/chunked":
                    parts = [BODY[i : i + 7000] for i in range(0, len(BODY), 7000)]
                    payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + payload)
                elif target == "/close-delimited":
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n" + BODY)
                    return
                elif target == "/gzip":
                    packed = gzip.compress(BODY)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                        % len(packed)
                        + packed
                    )
                elif target == "/close-after":  # answers, then drops the idle keep-alive connection
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
                    time.sleep(0.05)
                    return
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


def _fetch_all(urls: list[str], pause: float = 0.0, **config) -> list:
    async def main() -> list:
        # robots.txt has its own tests (test_media_politeness.py); here only the image requests count
        config.setdefault("robots_txt", False)
        async with Fetcher(FetchConfig(allow_loopback=True, backoff_base=0.01, **config)) as fetcher:
            results = []
            for url in urls:
                results.append(await fetcher.fetch(url))
                await asyncio.sleep(pause)
            return results

    return asyncio.run(main())


@pytest.mark.timeout(30)
def test_framings_and_encodings(server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    results = _fetch_all([f"{base}/chunked", f"{base}/close-delimited", f"{base}/gzip", f"{base}/plain"])
    assert [(r.ok, r.reason) for r in results] == [(True, None)] * 4
    assert all(r.body == BODY for r in results)
    assert results[1].content_type == "image/jpeg"
    assert b"Accept-Encoding: identity" in server.requests[0]


@pytest.mark.timeout(30)
def test_urls_are_percent_encoded(server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    results = _fetch_all([f"{base}/a b/é.jpg?q=x y", f"{base}/already%20encoded.jpg#fragment"])
    assert all(r.ok for r in results)
    targets = [h.split(b" ")[1] for h in server.requests]
    assert targets == [b"/a%20b/%C3%A9.jpg?q=x%20y", b"/already%20encoded.jpg"]
    assert server.requests[0].split(b"\r\n")[1] == f"Host: 127.0.0.1:{server.port}".encode()


@pytest.mark.timeout(30)
def test_connections_are_reused_and_stale_ones_replaced(server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    results = _fetch_all([f"{base}/plain"] * 5)
    assert all(r.ok and r.attempts == 1 for r in results) and server.connections == 1
    # the server closes the connection after each answer: the next request must not fail for it
    results = _fetch_all([f"{base}/close-after"] * 4, pause=0.2)
    assert all(r.ok and r.attempts == 1 for r in results), [(r.reason, r.error) for r in results]
    assert server.connections == 1 + 4


@pytest.mark.timeout(30)
def test_max_bytes_applies_to_chunked_and_inflated_bodies(server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    results = _fetch_all([f"{base}/chunked", f"{base}/gzip", f"{base}/close-delimited"], max_bytes=10_000)
    assert [r.reason for r in results] == ["too_large"] * 3
