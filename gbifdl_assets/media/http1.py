"""The downloader's HTTP/1.1 exchange: one keep-alive connection, one request at a time.

:class:`Connection` is an asyncio protocol that writes a pre-encoded request and parses the answer
with httptools (llhttp, the C parser uvicorn uses), collecting the body in the parser's callbacks
with one timer per request: about a third less CPU per image than aiohttp's client (see
:mod:`.fetch` for why, and for the bounds it enforces with these pieces).

Opt-out before the body: when asked (``check_opt_out``), a 2xx answer whose headers carry an
``X-Robots-Tag`` (``noai``, ``noimageai``, ``noindex``, ``noimageindex``, ``none``) for us or for
every robot, or ``tdm-reservation: 1``, is refused as soon as the headers are in; the connection is
closed instead of reading a body we may not use (see :mod:`.optout`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

from gbifdl_assets.media.optout import header_opt_out

__all__ = ["DRAIN_LIMIT", "Answer", "Connection", "Failure", "Origin", "StaleConnection"]

DRAIN_LIMIT = 64 * 1024  # read small error bodies to keep the connection alive; close on larger ones


class Failure(Exception):
    """One attempt's outcome when it is not a body: reason, transient?, and what to wait."""

    def __init__(
        self,
        reason: str,
        error: str,
        *,
        transient: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
        opted_out: bool = False,
        cause: str | None = None,
    ) -> None:
        super().__init__(error)
        self.reason = reason
        self.transient = transient
        self.http_status = http_status
        self.retry_after = retry_after
        #: the host opted out of our use (robots.txt, X-Robots-Tag, TDM reservation): not a failure
        self.opted_out = opted_out
        #: for a host we gave up on: the failure that made us (dns_error, http_429…)
        self.cause = cause


class StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before any byte of the answer."""


@dataclass(frozen=True, slots=True)
class Origin:
    """What the requests to one ``scheme://host:port`` share (parsed and checked once)."""

    scheme: str
    host: str  # lower-cased, IDNA-encoded, without brackets
    port: int
    host_key: str  # the per-host politeness key: ``host[:port]`` as the URL wrote it
    host_header: bytes
    ip_literal: bool


@dataclass(slots=True)
class Answer:
    """A complete response: status, the headers we use, body."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    #: seconds from sending the request to its first answer byte (the host's latency)
    waited: float = 0.0


WANTED_HEADERS = frozenset(
    {
        b"content-length",
        b"content-type",
        b"location",
        b"retry-after",
        b"content-encoding",
        b"transfer-encoding",
        b"x-robots-tag",
        b"tdm-reservation",
        b"cache-control",
    }
)
#: headers that may come more than once: kept as one value per line
_LIST_HEADERS = frozenset({"x-robots-tag"})


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time (:meth:`exchange`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0
        self._waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._opt_out_token: str | None = None
        self._truncate_ok = False
        self._reset_response(0)

    def _reset_response(self, limit: int) -> None:
        self._limit = limit  # body bytes accepted for a 200 (max_bytes)
        self._cap = limit  # current cap: max_bytes for a 200, DRAIN_LIMIT for anything else
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
        self._sent_at = self._first_io = 0.0

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():  # bytes nobody asked for: the connection is unusable
            self._close()
            return
        if not self._got_bytes:
            self._first_io = self.loop.time()
        self._got_bytes = True
        self._last_io = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Failure("bad_response", "unexpected protocol upgrade", transient=False))
        except httptools.HttpParserError as exc:
            if not waiter.done():
                self._fail(Failure("bad_response", f"malformed HTTP response: {exc}", transient=True))
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
            self._settle(exc=StaleConnection())
        elif self._headers_done and "content-length" not in self._headers and not self._chunked():
            self._complete()  # a body delimited by the end of the connection
        elif self._headers_done:
            detail = f" ({exc})" if exc else ""
            self._fail(
                Failure("truncated", f"body cut short after {self._size:,} bytes{detail}", transient=True)
            )
        else:
            detail = f": {exc}" if exc else ""
            self._fail(
                Failure(
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
        if name in WANTED_HEADERS:
            key = name.decode("latin-1")
            text = value.decode("latin-1").strip()
            if key in _LIST_HEADERS and key in self._headers:
                text = f"{self._headers[key]}\n{text}"  # one line per header, scopes kept apart
            self._headers[key] = text

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()
        if self._opt_out_token is not None and 200 <= self._status < 300:
            verdict = header_opt_out(self._headers, self._opt_out_token)
            if verdict is not None:  # refused before the body: close rather than read it
                reason, detail = verdict
                self._fail(Failure(reason, detail, transient=False, http_status=self._status, opted_out=True))
                return
        if self._status != 200:
            self._cap = DRAIN_LIMIT
            return
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > self._limit and not self._truncate_ok:
            self._fail(
                Failure(
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
            if self._status == 200 and self._truncate_ok:  # the first max_bytes are what we want
                self._chunks.append(body[: len(body) - (self._size - self._cap)])
                self._keep_alive = False
                self._complete()
            elif self._status == 200:
                self._fail(
                    Failure(
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
        self,
        request: bytes,
        *,
        max_bytes: int,
        deadline: float,
        read_timeout: float,
        opt_out_token: str | None = None,
        truncate_ok: bool = False,
    ) -> Answer:
        """Send ``request``; the complete answer, or a Failure / StaleConnection.

        ``opt_out_token``: our robots product token; when given, a 2xx answer whose headers opt out
        of our use fails (``opted_out``) before its body is read. ``truncate_ok``: a 200 body longer
        than ``max_bytes`` is cut there (robots.txt) instead of failing as ``too_large``.
        """
        assert self.transport is not None
        self.requests += 1
        self._reset_response(max_bytes)
        self._opt_out_token = opt_out_token
        self._truncate_ok = truncate_ok
        now = self.loop.time()
        self._deadline_at = now + deadline
        self._last_io = now
        self._sent_at = self._first_io = now
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
            self._fail(Failure("timeout", "no complete answer within the time left", transient=True))
        elif now - self._last_io >= self._read_timeout:
            self._fail(
                Failure("timeout", f"no data for {self._read_timeout:g} s (read_timeout)", transient=True)
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
        waited = max(0.0, self._first_io - self._sent_at)
        self._settle(Answer(self._status, self._reason.decode("latin-1"), self._headers, body, waited))

    def _fail(self, failure: BaseException) -> None:
        self._close()
        self._settle(exc=failure)

    def _settle(self, answer: Answer | None = None, exc: BaseException | None = None) -> None:
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
