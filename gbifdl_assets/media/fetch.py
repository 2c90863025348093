"""Fetch one image over HTTP, politely and with hard bounds on time, size and addresses.

:class:`Fetcher` owns a pool of keep-alive connections shared by all concurrent fetches of a run,
and :meth:`Fetcher.fetch` returns a :class:`FetchResult` for a URL, never raising for anything a
remote server or a URL can cause (gbif-dl's downloader dies on the first refused connection and
then waits forever; see the anchors reference).

Why asyncio, and why our own small HTTP/1.1 client rather than aiohttp's ClientSession: one event
loop per core beats threads (measured on the 2-core reference machine, 10,000 ~12 KB JPEGs with
validation and writes: a urllib3 pool with 16-48 threads did ~800 images/s, aiohttp ~1,400-1,500;
every thread pays for GIL hand-offs). Within the loop, a profile of the aiohttp version showed
about half of the downloader's CPU in aiohttp's Python layers (URL objects, request and response
objects, stream readers, timers) for what is, here, always the same exchange: one GET, one body.
The client below does only that exchange: the request written from a pre-encoded header block,
the response parsed by httptools (llhttp, the C parser uvicorn uses), the body collected in the
protocol's callbacks, one timer per request (see bench_images.py for the numbers).

What the client does: HTTP/1.1 keep-alive (idle connections are reused per scheme/host/port for
``keepalive_timeout`` seconds; a reused connection the server closed before answering is replaced,
silently, as clients do for idempotent requests), Content-Length, chunked and
close-delimited bodies, TLS for https (the system's CA store and host-name check),
``Accept-Encoding: identity`` (gzip/deflate answers are still decoded, within ``max_bytes``),
URLs with spaces or non-ASCII characters percent-encoded, non-ASCII host names IDNA-encoded.
What it does not do: proxies (a proxy would connect on our behalf to addresses the guard never
sees), cookies, HTTP/2.

Bounds and politeness:

* **Timeouts**: ``connect_timeout`` (name resolution, TCP and TLS set-up), ``read_timeout`` (longest
  silence while waiting for bytes) and ``deadline``: total network time for one image, all attempts
  and redirect hops and backoff waits included, so a server dripping one byte a second cannot hold
  a worker. Waiting for a free per-host slot does not count (that is our own queue, not the
  server's fault).
* **Retries** (``max_attempts`` in all) only for transient trouble: connection errors, timeouts,
  a body cut short, 408, 429 and 5xx. Exponential backoff with full jitter; ``Retry-After`` (seconds
  or an HTTP date) is honoured up to ``retry_after_cap``. Other 4xx fail at once.
* **Per-host limits**: at most ``per_host`` requests in flight per host (and ``concurrency``
  overall, enforced by the caller's worker count). A host answering 429 (or 503 with Retry-After)
  is paused for *every* worker until the Retry-After time, and repeated throttling doubles the
  pause (reset by the next success), so one busy host is slowed down, not hammered by 64 workers
  retrying independently.
* **Addresses** (SSRF guard, :mod:`.ssrf`): IP-literal hosts are checked before connecting, host
  names when they are resolved, and the connection goes to the checked address itself, never to
  the result of a second look-up (no DNS rebinding). Resolutions are cached for 5 minutes.
* **Redirects** are followed by hand, up to ``max_redirects``, and every hop is checked by the SSRF
  guard again (its scheme, its IP literal, and its host name at resolution time).
* **Size**: a ``Content-Length`` above ``max_bytes`` is refused as soon as the headers are in;
  otherwise the download is aborted once the body passes ``max_bytes``.

Ledger reasons produced here: ``http_<status>``, ``timeout``, ``connection_error``, ``dns_error``,
``truncated`` (body shorter than announced), ``too_large``, ``too_many_redirects``,
``bad_redirect``, ``bad_response``, ``blocked_address``, ``bad_url`` and ``error`` (anything
unexpected, with the exception in the error column).
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import ssl
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httptools

from gbifdl_assets.http_headers import parse_retry_after
from gbifdl_assets.media.ssrf import (
    AddressPolicy,
    BadUrl,
    BlockedAddress,
    admitted_addresses,
    check_url,
    literal_ip,
)

__all__ = ["DEFAULT_USER_AGENT", "FetchConfig", "FetchResult", "Fetcher"]

DEFAULT_USER_AGENT = "gbifdl-assets/0.1 (image training sets from GBIF-mediated media; polite downloader)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_DRAIN_LIMIT = 64 * 1024  # read small error bodies to keep the connection alive; close on larger ones
_DNS_TTL = 300.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: characters a request target may not carry raw (they are percent-encoded, as browsers do)
_UNSAFE_TARGET = re.compile(r"[^\x21-\x7e]|[\"<>\\^`{|}]")
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
#: ``scheme://netloc`` + a target made only of characters a request line may carry, no fragment
#: (such URLs need neither urlsplit's clean-up nor percent-encoding)
_PLAIN_URL = re.compile(r"(https?)://([^/?#\x00-\x20\x7f-\U0010ffff]+)([!$-;=?-\[\]_a-z~]*)\Z")


@dataclass(frozen=True)
class FetchConfig:
    """Network behaviour of a download run (defaults suit public media hosts)."""

    concurrency: int = 64
    per_host: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 120.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0
    max_redirects: int = 5
    max_bytes: int = 20_000_000
    allow_loopback: bool = False
    allow_private: bool = False
    #: ``host:port`` admitted on loopback although allow_loopback is off (the offline sandbox's own)
    loopback_origins: tuple[str, ...] = ()
    user_agent: str = DEFAULT_USER_AGENT
    #: seconds an idle pooled connection is kept for reuse
    keepalive_timeout: float = 30.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("concurrency", "per_host", "max_attempts", "max_bytes"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("connect_timeout", "read_timeout", "deadline"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)}: must be > 0 seconds")
        if self.max_redirects < 0:
            problems.append(f"max_redirects={self.max_redirects}: must be >= 0")
        if problems:
            raise ValueError("invalid fetch configuration: " + "; ".join(problems))

    @property
    def policy(self) -> AddressPolicy:
        return AddressPolicy(self.allow_loopback, self.allow_private, frozenset(self.loopback_origins))


@dataclass(slots=True)
class FetchResult:
    url: str
    ok: bool
    body: bytes | None = None
    content_type: str | None = None
    http_status: int | None = None
    final_url: str | None = None
    attempts: int = 0
    reason: str | None = None
    error: str | None = None


class _Failure(Exception):
    """One attempt's outcome when it is not a body: reason, transient?, and what to wait."""

    def __init__(
        self,
        reason: str,
        error: str,
        *,
        transient: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(error)
        self.reason = reason
        self.transient = transient
        self.http_status = http_status
        self.retry_after = retry_after


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before any byte of the answer."""


class _Budget:
    """Network time left for one image: wall time since the start minus time spent queueing for a
    host slot or a host-wide pause (our politeness, not the server's slowness)."""

    __slots__ = ("deadline", "started", "queued")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.started = time.monotonic()
        self.queued = 0.0

    def remaining(self) -> float:
        return self.deadline - (time.monotonic() - self.started - self.queued)


@dataclass(slots=True)
class _Host:
    """Per-host politeness state shared by all workers."""

    slots: asyncio.Semaphore
    not_before: float = 0.0
    strikes: int = 0
    throttled: int = 0
    requests: int = field(default=0)


@dataclass(frozen=True, slots=True)
class _Origin:
    """What the requests to one ``scheme://host:port`` share (parsed and checked once)."""

    scheme: str
    host: str  # lower-cased, IDNA-encoded, without brackets
    port: int
    host_key: str  # the per-host politeness key: ``host[:port]`` as the URL wrote it
    host_header: bytes
    ip_literal: bool


@dataclass(slots=True)
class _Answer:
    """A complete response: status, the headers we use, body."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


_WANTED_HEADERS = frozenset(
    {
        b"content-length",
        b"content-type",
        b"location",
        b"retry-after",
        b"content-encoding",
        b"transfer-encoding",
    }
)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time (:meth:`exchange`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: _Origin) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0
        self._waiter: asyncio.Future[_Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset_response(0)

    def _reset_response(self, limit: int) -> None:
        self._limit = limit  # body bytes accepted for a 200 (max_bytes)
        self._cap = limit  # current cap: max_bytes for a 200, _DRAIN_LIMIT for anything else
        self._status = 0
        self._reason = b""
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._got_bytes = False
        self._headers_done = False
        self._keep_alive = False
        self._deadline_at = 0.0
        self._last_io = 0.0
        self._read_timeout = 0.0

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():  # bytes nobody asked for: the connection is unusable
            self._close()
            return
        self._got_bytes = True
        self._last_io = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_Failure("bad_response", "unexpected protocol upgrade", transient=False))
        except httptools.HttpParserError as exc:
            if not waiter.done():
                self._fail(_Failure("bad_response", f"malformed HTTP response: {exc}", transient=True))
            else:  # garbage after a complete answer: the answer stands, the connection does not
                self._close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the pending answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._got_bytes and self.requests > 1:
            self._settle(exc=_StaleConnection())
        elif self._headers_done and "content-length" not in self._headers and not self._chunked():
            self._complete()  # a body delimited by the end of the connection
        elif self._headers_done:
            detail = f" ({exc})" if exc else ""
            self._fail(
                _Failure("truncated", f"body cut short after {self._size:,} bytes{detail}", transient=True)
            )
        else:
            detail = f": {exc}" if exc else ""
            self._fail(
                _Failure(
                    "connection_error",
                    f"server closed the connection before answering{detail}",
                    transient=True,
                )
            )

    # ------------------------------------------------------------------ httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _WANTED_HEADERS:
            self._headers[name.decode("latin-1")] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()
        if self._status != 200:
            self._cap = _DRAIN_LIMIT
            return
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > self._limit:
            self._fail(
                _Failure(
                    "too_large",
                    f"Content-Length {int(length):,} is above max_bytes={self._limit:,}",
                    transient=False,
                    http_status=200,
                )
            )

    def on_body(self, body: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self._size += len(body)
        if self._size > self._cap:
            if self._status == 200:
                self._fail(
                    _Failure(
                        "too_large",
                        f"body passed max_bytes={self._limit:,}",
                        transient=False,
                        http_status=200,
                    )
                )
            else:  # an error page too large to drain: what we have is enough, the connection goes
                self._keep_alive = False
                self._complete()
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue…): the real one follows
            self._reset_response(self._limit)
            return
        self._complete()

    # ------------------------------------------------------------------ request/answer
    def _chunked(self) -> bool:
        return "chunked" in self._headers.get("transfer-encoding", "").lower()

    async def exchange(
        self, request: bytes, *, max_bytes: int, deadline: float, read_timeout: float
    ) -> _Answer:
        """Send ``request``; the complete answer, or a _Failure / _StaleConnection."""
        assert self.transport is not None
        self.requests += 1
        self._reset_response(max_bytes)
        now = self.loop.time()
        self._deadline_at = now + deadline
        self._last_io = now
        self._read_timeout = read_timeout
        waiter = self._waiter = self.loop.create_future()
        self._timer = self.loop.call_at(min(self._deadline_at, now + read_timeout), self._on_timer)
        try:
            self.transport.write(request)
            return await waiter
        except asyncio.CancelledError:
            self._close()
            raise
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        now = self.loop.time() + 0.001  # the loop may run a timer up to its clock resolution early
        if now >= self._deadline_at:
            self._fail(_Failure("timeout", "no complete answer within the time left", transient=True))
        elif now - self._last_io >= self._read_timeout:
            self._fail(
                _Failure("timeout", f"no data for {self._read_timeout:g} s (read_timeout)", transient=True)
            )
        else:
            self._timer = self.loop.call_at(
                min(self._deadline_at, self._last_io + self._read_timeout), self._on_timer
            )

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        if not self._keep_alive:
            self._close()
        self._settle(_Answer(self._status, self._reason.decode("latin-1"), self._headers, body))

    def _fail(self, failure: BaseException) -> None:
        self._close()
        self._settle(exc=failure)

    def _settle(self, answer: _Answer | None = None, exc: BaseException | None = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(answer)  # type: ignore[arg-type]

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._close()


class Fetcher:
    """Use as ``async with Fetcher(config) as f: result = await f.fetch(url)`` inside one event loop."""

    def __init__(self, config: FetchConfig | None = None) -> None:
        self.config = config or FetchConfig()
        self._policy = self.config.policy
        self._hosts: dict[str, _Host] = {}
        self._origins: dict[tuple[str, str], _Origin] = {}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        ua = self.config.user_agent.encode("utf-8")
        self._header_tail = (
            b"\r\nUser-Agent: " + ua + b"\r\nAccept: image/*,*/*;q=0.5\r\nAccept-Encoding: identity"
            b"\r\nConnection: keep-alive\r\n\r\n"
        )

    async def __aenter__(self) -> Fetcher:
        self._loop = asyncio.get_running_loop()
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # ---------------------------------------------------------------------------- hosts
    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(asyncio.Semaphore(self.config.per_host))
        return state

    def host_stats(self) -> dict[str, dict[str, int]]:
        """Requests and throttling answers per host (for logs)."""
        return {h: {"requests": s.requests, "throttled": s.throttled} for h, s in self._hosts.items()}

    def _throttle(self, state: _Host, retry_after: float | None) -> None:
        cfg = self.config
        state.strikes += 1
        state.throttled += 1
        pause = min(cfg.retry_after_cap, max(retry_after or 0.0, cfg.backoff_base * 2**state.strikes))
        state.not_before = max(state.not_before, time.monotonic() + pause)

    # ---------------------------------------------------------------------------- fetch
    async def fetch(self, url: str) -> FetchResult:
        """Fetch ``url`` with retries; never raises for network or server trouble."""
        cfg = self.config
        budget = _Budget(cfg.deadline)
        attempts = 0
        while True:
            attempts += 1
            try:
                if budget.remaining() <= 0:
                    raise _Failure("timeout", f"deadline of {cfg.deadline:g} s used up", transient=False)
                body, ctype, status, final = await self._attempt(url, budget)
                return FetchResult(url, True, body, ctype, status, final, attempts)
            except _Failure as failure:
                result = FetchResult(
                    url,
                    False,
                    http_status=failure.http_status,
                    attempts=attempts,
                    reason=failure.reason,
                    error=str(failure),
                )
                if not failure.transient or attempts >= cfg.max_attempts:
                    return result
                wait = random.uniform(0, min(cfg.backoff_max, cfg.backoff_base * 2 ** (attempts - 1)))
                if failure.retry_after is not None:
                    wait = max(wait, min(failure.retry_after, cfg.retry_after_cap))
                if wait >= budget.remaining():
                    result.error = (
                        f"{result.error} (no time left in the {cfg.deadline:g} s deadline to retry)"
                    )
                    return result
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or an exotic library error: report, never kill the worker
                return FetchResult(
                    url, False, attempts=attempts, reason="error", error=f"{type(exc).__name__}: {exc}"
                )

    async def _attempt(self, url: str, budget: _Budget) -> tuple[bytes, str | None, int, str]:
        """One attempt: follow redirects, return (body, content type, status, final URL) or raise _Failure."""
        cfg = self.config
        assert self._open, "use Fetcher as an async context manager"
        current = url
        for hop in range(cfg.max_redirects + 1):
            origin, target = self._parse(current)
            state = self._host(origin.host_key)
            queued_from = time.monotonic()
            async with state.slots:
                pause = state.not_before - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                budget.queued += time.monotonic() - queued_from
                state.requests += 1
                remaining = budget.remaining()
                if remaining <= 0:
                    raise _Failure("timeout", f"deadline of {cfg.deadline:g} s used up", transient=False)
                answer = await self._request(origin, target, remaining)
            status = answer.status
            if status in _REDIRECTS:
                location = answer.headers.get("location")
                if not location:
                    raise _Failure(
                        "bad_redirect", f"HTTP {status} without a Location header", transient=False
                    )
                target_url = urljoin(current, location)
                if hop >= cfg.max_redirects:
                    raise _Failure(
                        "too_many_redirects",
                        f"more than {cfg.max_redirects} redirects (last to {target_url})",
                        transient=False,
                    )
                current = target_url
                continue
            if status != 200:
                retry_after = parse_retry_after(answer.headers.get("retry-after"))
                if status == 429 or (status == 503 and retry_after is not None):
                    self._throttle(state, retry_after)
                raise _Failure(
                    f"http_{status}",
                    f"HTTP {status} {answer.reason}".strip(),
                    transient=status in _RETRY_STATUS,
                    http_status=status,
                    retry_after=retry_after,
                )
            body = self._decoded(answer)
            state.strikes = 0
            return body, answer.headers.get("content-type"), status, current
        raise AssertionError("unreachable")  # pragma: no cover

    def _decoded(self, answer: _Answer) -> bytes:
        """The body without a Content-Encoding (we ask for identity; some servers compress anyway)."""
        encoding = answer.headers.get("content-encoding", "").lower()
        if encoding in ("", "identity"):
            return answer.body
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise _Failure(
                "bad_response", f"unsupported Content-Encoding {encoding!r}", transient=False, http_status=200
            )
        limit = self.config.max_bytes
        try:
            inflater = zlib.decompressobj(47 if encoding != "deflate" else 15)  # 47: gzip or zlib header
            data = inflater.decompress(answer.body, limit + 1)
        except zlib.error as exc:
            if encoding == "deflate":  # raw deflate without the zlib header (old servers)
                try:
                    data = zlib.decompressobj(-15).decompress(answer.body, limit + 1)
                except zlib.error:
                    raise _Failure("truncated", f"bad {encoding} body: {exc}", transient=True) from None
            else:
                raise _Failure("truncated", f"bad {encoding} body: {exc}", transient=True) from None
        if len(data) > limit:
            raise _Failure("too_large", f"body passed max_bytes={limit:,}", transient=False, http_status=200)
        return data

    # ---------------------------------------------------------------------------- URLs
    def _parse(self, url: str) -> tuple[_Origin, bytes]:
        """The URL's origin (checked by the SSRF guard once per origin) and its request target."""
        plain = _PLAIN_URL.match(url)
        if plain is not None:  # the common case, without urlsplit's generality
            scheme, netloc, target = plain.group(1, 2, 3)
            origin = self._origins.get((scheme, netloc))
            if origin is not None:
                return origin, (target or "/").encode("ascii")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise _Failure("bad_url", f"cannot parse URL {url!r}: {exc}", transient=False) from None
        origin = self._origins.get((parts.scheme, parts.netloc))
        if origin is None:
            origin = self._new_origin(url, parts)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        if _UNSAFE_TARGET.search(target):
            target = quote(target, safe=_TARGET_SAFE, encoding="utf-8", errors="strict")
        return origin, target.encode("ascii")

    def _new_origin(self, url: str, parts: Any) -> _Origin:
        try:
            host_key = check_url(url, self._policy)
        except BadUrl as exc:
            raise _Failure("bad_url", str(exc), transient=False) from None
        except BlockedAddress as exc:
            raise _Failure("blocked_address", str(exc), transient=False) from None
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        ip_literal = literal_ip(host) is not None  # a name (even "2130706433") is resolved and checked
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise _Failure(
                    "bad_url", f"host name of {url!r} cannot be encoded: {exc}", transient=False
                ) from None
        port = parts.port or _DEFAULT_PORTS[scheme]
        shown = f"[{host}]" if ":" in host else host
        if parts.port and parts.port != _DEFAULT_PORTS[scheme]:
            shown = f"{shown}:{parts.port}"
        origin = _Origin(scheme, host, port, host_key, shown.encode("ascii"), ip_literal)
        if len(self._origins) > 10_000:
            self._origins.clear()
        self._origins[(parts.scheme, parts.netloc)] = origin
        return origin

    # ---------------------------------------------------------------------------- connections
    async def _request(self, origin: _Origin, target: bytes, remaining: float) -> _Answer:
        """One HTTP exchange within ``remaining`` seconds."""
        cfg = self.config
        request = b"GET " + target + b" HTTP/1.1\r\nHost: " + origin.host_header + self._header_tail
        started = time.monotonic()
        for _ in range(3):  # a stale pooled connection is replaced, not counted as an attempt
            conn = self._pooled(origin)
            if conn is None:
                conn = await self._connect(origin, remaining)
            left = remaining - (time.monotonic() - started)
            if left <= 0:
                conn.close()
                raise _Failure("timeout", f"no complete answer within {remaining:.1f} s", transient=True)
            try:
                answer = await conn.exchange(
                    request, max_bytes=cfg.max_bytes, deadline=left, read_timeout=cfg.read_timeout
                )
            except _StaleConnection:
                continue
            if not conn.closed:
                conn.idle_since = time.monotonic()
                idle = self._idle.setdefault(origin, [])
                if len(idle) < cfg.per_host:
                    idle.append(conn)
                else:
                    conn.close()
            return answer
        raise _Failure("connection_error", "the server keeps closing reused connections", transient=True)

    def _pooled(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        too_old = time.monotonic() - self.config.keepalive_timeout
        while idle:
            conn = idle.pop()
            if (
                conn.closed
                or conn.idle_since < too_old
                or conn.transport is None
                or conn.transport.is_closing()
            ):
                conn.close()
                continue
            return conn
        return None

    async def _connect(self, origin: _Origin, remaining: float) -> _Connection:
        cfg = self.config
        loop = self._loop
        assert loop is not None
        limit = min(cfg.connect_timeout, remaining)
        try:
            async with asyncio.timeout(limit):
                addresses = await self._resolve(origin)
                last: BaseException | None = None
                for address in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(loop, origin),
                            address,
                            origin.port,
                            ssl=self._ssl_context() if origin.scheme == "https" else None,
                            server_hostname=origin.host if origin.scheme == "https" else None,
                        )
                        return conn
                    except OSError as exc:  # includes ssl.SSLError
                        last = exc
                raise _Failure(
                    "connection_error",
                    f"cannot connect to {origin.host}:{origin.port}: {last}",
                    transient=True,
                )
        except TimeoutError:
            raise _Failure(
                "timeout",
                f"no connection to {origin.host}:{origin.port} within {limit:.1f} s",
                transient=True,
            ) from None

    async def _resolve(self, origin: _Origin) -> list[str]:
        """Admitted addresses of the origin's host (cached); raises _Failure."""
        if origin.ip_literal:
            return [origin.host]  # checked by check_url when the origin was parsed
        key = (origin.host, origin.port)
        now = time.monotonic()
        cached = self._dns.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        assert self._loop is not None
        try:
            infos = await self._loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise _Failure("dns_error", f"cannot resolve {origin.host!r}: {exc}", transient=True) from None
        try:
            admitted = admitted_addresses(
                list(dict.fromkeys(info[4][0] for info in infos)),
                origin.host,
                self._policy.for_origin(origin.host_key),
            )
        except BlockedAddress as exc:
            raise _Failure("blocked_address", str(exc), transient=False) from None
        if len(self._dns) > 10_000:
            self._dns.clear()
        self._dns[key] = (now + _DNS_TTL, admitted)
        return admitted

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl
