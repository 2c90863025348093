"""Fetch one image over HTTP, politely and with hard bounds on time, size and addresses.

:class:`Fetcher` owns a pool of keep-alive connections and the politeness state of every host,
shared by all concurrent fetches of a run, and :meth:`Fetcher.fetch` returns a :class:`FetchResult`
for a URL, never raising for anything a remote server or a URL can cause (gbif-dl's downloader dies
on the first refused connection and then waits forever; see the anchors reference).

Why asyncio, and why our own small HTTP/1.1 client rather than aiohttp's ClientSession: one event
loop per core beats threads (measured on the 2-core reference machine, 10,000 ~12 KB JPEGs with
validation and writes: a urllib3 pool with 16-48 threads did ~800 images/s, aiohttp ~1,400-1,500;
every thread pays for GIL hand-offs). Within the loop, a profile of the aiohttp version showed
about half of the downloader's CPU in aiohttp's Python layers (URL objects, request and response
objects, stream readers, timers) for what is, here, always the same exchange: one GET, one body.
The client (:mod:`.http1`) does only that exchange: the request written from a pre-encoded header
block, the response parsed by httptools, the body collected in the protocol's callbacks, one timer
per request (see bench_images.py for the numbers).

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
  a worker. Waiting for a host's turn (its window, its pacing, its Retry-After pause) does not
  count: that is our own politeness, not the server's fault.
* **Retries** (``max_attempts`` in all) only for transient trouble: connection errors, timeouts,
  a body cut short, 408, 429 and 5xx. Exponential backoff with full jitter; ``Retry-After`` (seconds
  or an HTTP date) is honoured up to ``retry_after_cap``. Other 4xx fail at once.
* **Per host** (:mod:`.hosts`): a window of requests in flight and a request rate that start polite
  and adapt to the host's answers (additive increase while they are fast and clean, multiplicative
  decrease on 429, 503 and timeouts to the rate the host bore, ``Retry-After`` pausing the host
  for every worker), within per-host ceilings (``per_host``, ``max_rate``, ``host_limits``); a host
  that keeps failing is skipped for the rest of the run (reason ``host_skipped``). The learned
  state of each host (:meth:`Fetcher.host_states`) seeds the next run (``host_states=``).
* **Opt-out before the body** (:mod:`.robots`, :mod:`.optout`): robots.txt is fetched once per
  host (kept for its max-age, at most a day) and a path it disallows for our User-Agent is never
  requested (reason ``robots_txt``); an answer whose ``X-Robots-Tag`` or ``tdm-reservation`` opts
  out is closed as soon as its headers are in (``x_robots_tag``, ``tdm_reservation``). Results
  carry ``opted_out=True``. ``robots_txt`` and ``opt_out_headers`` switch them off.
* **Addresses** (SSRF guard, :mod:`.ssrf`): IP-literal hosts are checked before connecting, host
  names when they are resolved, and the connection goes to the checked address itself, never to
  the result of a second look-up (no DNS rebinding). Resolutions are cached for 5 minutes, failed
  ones for 30 s; ``resolve`` overrides names like ``curl --resolve`` (the sandbox's hosts), and
  names under ``.invalid`` never resolve (RFC 6761).
* **Redirects** are followed by hand, up to ``max_redirects``, and every hop is checked by the SSRF
  guard, the robots.txt of its host and its host's politeness again.
* **Size**: a ``Content-Length`` above ``max_bytes`` is refused as soon as the headers are in;
  otherwise the download is aborted once the body passes ``max_bytes``.

Ledger reasons produced here: ``http_<status>``, ``timeout``, ``connection_error``, ``dns_error``,
``truncated`` (body shorter than announced), ``too_large``, ``too_many_redirects``,
``bad_redirect``, ``bad_response``, ``blocked_address``, ``bad_url``, ``host_skipped``,
``robots_unavailable`` (robots.txt answered 5xx/429 or timed out: RFC 9309 says disallow; a re-run
asks again), the opt-outs ``robots_txt``, ``x_robots_tag`` and ``tdm_reservation``, and ``error``
(anything unexpected, with the exception in the error column).
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from gbifdl_assets.http_headers import parse_retry_after
from gbifdl_assets.media.fetch_config import DEFAULT_USER_AGENT, FetchConfig
from gbifdl_assets.media.hosts import (
    FAIL,
    NEUTRAL,
    OK,
    OVERLOAD,
    THROTTLE,
    HostControl,
    HostGate,
    HostSkipped,
)
from gbifdl_assets.media.http1 import Answer, Connection, Failure, Origin, StaleConnection
from gbifdl_assets.media.optout import robots_token
from gbifdl_assets.media.robots import MAX_ROBOTS_BYTES, RobotsRules, robots_ttl, rules_for_answer
from gbifdl_assets.media.ssrf import BadUrl, BlockedAddress, admitted_addresses, check_url, literal_ip

__all__ = ["DEFAULT_USER_AGENT", "FetchConfig", "FetchResult", "Fetcher"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_DNS_TTL = 300.0
_DNS_FAILED_TTL = 30.0
_ROBOTS_FAILED_TTL = 60.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: failures that say the host itself is unreachable (not this URL)
_UNREACHABLE = frozenset({"dns_error", "connection_error"})
#: characters a request target may not carry raw (they are percent-encoded, as browsers do)
_UNSAFE_TARGET = re.compile(r"[^\x21-\x7e]|[\"<>\\^`{|}]")
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
#: ``scheme://netloc`` + a target made only of characters a request line may carry, no fragment
#: (such URLs need neither urlsplit's clean-up nor percent-encoding)
_PLAIN_URL = re.compile(r"(https?)://([^/?#\x00-\x20\x7f-\U0010ffff]+)([!$-;=?-\[\]_a-z~]*)\Z")


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
    #: the host opted out of our use (robots.txt, X-Robots-Tag, tdm-reservation): ledger ``opted_out``
    opted_out: bool = False
    #: for ``host_skipped``: the failure that made us give up on the host (dns_error, http_429…)
    cause: str | None = None


class _Budget:
    """Network time left for one image: wall time since the start minus time spent queueing for a
    host's turn (our politeness, not the server's slowness)."""

    __slots__ = ("deadline", "started", "queued")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.started = time.monotonic()
        self.queued = 0.0

    def remaining(self) -> float:
        return self.deadline - (time.monotonic() - self.started - self.queued)


def _signal(failure: Failure) -> str:
    """What a failed exchange tells the host's controller."""
    if failure.reason == "timeout":
        return OVERLOAD
    if failure.reason in ("blocked_address", "bad_url", "too_large") or failure.opted_out:
        return NEUTRAL
    return FAIL


def _target_name(target: bytes) -> str:
    """A request target (path and query, already percent-encoded) as the host controller's key."""
    return target.decode("ascii", "replace")


def _status_signal(status: int) -> str:
    if status in (429, 503):
        return THROTTLE
    if status >= 500:
        return FAIL
    return OK


class Fetcher:
    """Use as ``async with Fetcher(config) as f: result = await f.fetch(url)`` inside one event loop.

    ``host_states``: what earlier runs learned about hosts (``{host: HostControl.state()}``, see
    :mod:`.host_rates`); each host starts from it instead of from scratch.
    """

    def __init__(
        self, config: FetchConfig | None = None, *, host_states: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self.config = config or FetchConfig()
        self._policy = self.config.policy
        # not copied: a run's HostBook adds what concurrent runs learn about hosts not met yet
        self._learned = host_states if host_states is not None else {}
        self._gates: dict[str, HostGate] = {}
        self._origins: dict[tuple[str, str], Origin] = {}
        self._idle: dict[Origin, list[Connection]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str] | str]] = {}
        self._overrides = dict(self.config.resolve)
        self._robots: dict[
            tuple[str, str, int], tuple[float, RobotsRules | Failure] | asyncio.Future[Any]
        ] = {}
        self._token = robots_token(self.config.user_agent)
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
    def host(self, host_key: str) -> HostGate:
        """The politeness gate of a host (``host[:port]`` as :meth:`host_key` gives it)."""
        gate = self._gates.get(host_key)
        if gate is None:
            control = HostControl(host_key, self.config.limits_for(host_key), self._learned.get(host_key))
            gate = self._gates[host_key] = HostGate(control)
        return gate

    def host_key(self, url: str) -> str | None:
        """The politeness key of ``url``'s host, or None for a URL that cannot be fetched."""
        try:
            return self._parse(url)[0].host_key
        except Failure:
            return None

    def host_states(self) -> dict[str, dict[str, Any]]:
        """The learned state of every host contacted (what :mod:`.host_rates` keeps)."""
        return {h: g.control.state() for h, g in self._gates.items() if g.control.requests}

    def rated_hosts(self) -> set[str]:
        """The hosts that have a request rate of their own (throttled us, or a ceiling applies)."""
        return {h for h, g in self._gates.items() if g.control.rate is not None}

    def host_stats(self) -> dict[str, dict[str, int]]:
        """Requests and throttling answers per host (for logs)."""
        return {
            h: {"requests": g.control.requests, "throttled": g.control.throttled}
            for h, g in self._gates.items()
        }

    async def _acquire(self, gate: HostGate, budget: _Budget) -> Any:
        try:
            token, waited = await gate.acquire()
        except HostSkipped as skipped:
            raise Failure("host_skipped", str(skipped), transient=False, cause=skipped.cause) from None
        budget.queued += waited
        return token

    # ---------------------------------------------------------------------------- fetch
    async def fetch(self, url: str, *, robots: bool = True) -> FetchResult:
        """Fetch ``url`` with retries; never raises for network or server trouble.

        ``robots=False`` skips the robots.txt check (GBIF's own image cache, which offers the copy).
        """
        cfg = self.config
        budget = _Budget(cfg.deadline)
        attempts = 0
        while True:
            attempts += 1
            try:
                if budget.remaining() <= 0:
                    raise Failure("timeout", f"deadline of {cfg.deadline:g} s used up", transient=False)
                body, ctype, status, final = await self._attempt(url, budget, robots and cfg.robots_txt)
                return FetchResult(url, True, body, ctype, status, final, attempts)
            except Failure as failure:
                result = FetchResult(
                    url,
                    False,
                    http_status=failure.http_status,
                    attempts=attempts,
                    reason=failure.reason,
                    error=str(failure),
                    opted_out=failure.opted_out,
                    cause=failure.cause,
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
                await self._rest(url, wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or an exotic library error: report, never kill the worker
                return FetchResult(
                    url, False, attempts=attempts, reason="error", error=f"{type(exc).__name__}: {exc}"
                )

    async def _rest(self, url: str, seconds: float) -> None:
        """Wait ``seconds`` before retrying ``url``, its host free to serve other jobs meanwhile."""
        gate = self._gates.get(self.host_key(url) or "")
        if gate is None:
            await asyncio.sleep(seconds)
            return
        async with gate.rest():
            await asyncio.sleep(seconds)

    async def _attempt(self, url: str, budget: _Budget, robots: bool) -> tuple[bytes, str | None, int, str]:
        """One attempt: follow redirects, return (body, content type, status, final URL) or raise Failure."""
        cfg = self.config
        assert self._open, "use Fetcher as an async context manager"
        current = url
        for hop in range(cfg.max_redirects + 1):
            origin, target = self._parse(current)
            if robots:
                await self._check_robots(origin, target, budget)
            answer = await self._exchange(origin, target, budget, opt_out=cfg.opt_out_headers)
            status = answer.status
            if status in _REDIRECTS:
                location = answer.headers.get("location")
                if not location:
                    raise Failure("bad_redirect", f"HTTP {status} without a Location header", transient=False)
                target_url = urljoin(current, location)
                if hop >= cfg.max_redirects:
                    raise Failure(
                        "too_many_redirects",
                        f"more than {cfg.max_redirects} redirects (last to {target_url})",
                        transient=False,
                    )
                current = target_url
                continue
            if status != 200:
                raise Failure(
                    f"http_{status}",
                    f"HTTP {status} {answer.reason}".strip(),
                    transient=status in _RETRY_STATUS,
                    http_status=status,
                    retry_after=parse_retry_after(answer.headers.get("retry-after")),
                )
            body = self._decoded(answer)
            return body, answer.headers.get("content-type"), status, current
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(
        self,
        origin: Origin,
        target: bytes,
        budget: _Budget,
        *,
        opt_out: bool = False,
        max_bytes: int | None = None,
        truncate_ok: bool = False,
    ) -> Answer:
        """One request through the host's gate; the answer (any status) or a Failure.

        The host's controller hears how it went: a clean answer, throttling (429/503, with its
        Retry-After), a timeout or a failure.
        """
        cfg = self.config
        gate = self.host(origin.host_key)
        token = await self._acquire(gate, budget)
        try:
            remaining = budget.remaining()
            if remaining <= 0:
                raise Failure("timeout", f"deadline of {cfg.deadline:g} s used up", transient=False)
            answer = await self._request(
                origin, target, remaining, opt_out=opt_out, max_bytes=max_bytes, truncate_ok=truncate_ok
            )
        except Failure as failure:
            signal = OK if failure.opted_out else _signal(failure)  # an opt-out is a clean, fast answer
            gate.release(token, signal, reason=failure.reason, target=_target_name(target))
            self._give_up_if_skipped(gate, signal, failure.reason, str(failure), failure.http_status)
            raise
        except BaseException:
            gate.release(token, NEUTRAL)
            raise
        signal = _status_signal(answer.status)
        retry_after = None
        if answer.status != 200:
            retry_after = parse_retry_after(answer.headers.get("retry-after"))
        reason = f"http_{answer.status}"
        gate.release(
            token,
            signal,
            latency=answer.waited,
            retry_after=retry_after,
            reason=reason,
            target=_target_name(target),
        )
        detail = f"HTTP {answer.status} {answer.reason}".strip()
        self._give_up_if_skipped(gate, signal, reason, detail, answer.status)
        return answer

    @staticmethod
    def _give_up_if_skipped(
        gate: HostGate, signal: str, reason: str, detail: str, status: int | None
    ) -> None:
        """When this very answer made us give up on the host, no retry of this image either."""
        skipped = gate.skipped
        if skipped is not None and signal in (THROTTLE, FAIL, OVERLOAD):
            raise Failure(
                reason, f"{detail}; {skipped}", transient=False, http_status=status, cause=skipped.cause
            )

    # ---------------------------------------------------------------------------- robots.txt
    async def _check_robots(self, origin: Origin, target: bytes, budget: _Budget) -> None:
        rules = await self._robots_rules(origin, budget)
        path = target.decode("ascii")
        allowed, rule = rules.verdict(path)
        if not allowed:
            raise Failure(
                "robots_txt",
                f"robots.txt of {origin.host_key} disallows {path} for {self._token} ({rule})",
                transient=False,
                opted_out=True,
            )

    async def _robots_rules(self, origin: Origin, budget: _Budget) -> RobotsRules:
        """The robots.txt rules of ``origin`` (fetched once, kept until they expire); raises Failure."""
        key = (origin.scheme, origin.host, origin.port)
        entry = self._robots.get(key)
        if isinstance(entry, asyncio.Future):
            outcome = await asyncio.shield(entry)
        elif entry is not None and entry[0] > time.monotonic():
            outcome = entry[1]
        else:
            assert self._loop is not None
            future: asyncio.Future[Any] = self._loop.create_future()
            self._robots[key] = future
            try:
                outcome, ttl = await self._fetch_robots(origin, budget)
            except BaseException as exc:
                self._robots.pop(key, None)
                future.set_exception(exc)
                future.exception()  # retrieved: waiters get it, nobody else needs to
                raise
            if len(self._robots) > 10_000:
                self._robots.clear()
            self._robots[key] = (time.monotonic() + ttl, outcome)
            future.set_result(outcome)
        if isinstance(outcome, Failure):
            raise Failure(outcome.reason, str(outcome), transient=False, cause=outcome.cause)
        return outcome

    async def _fetch_robots(self, origin: Origin, budget: _Budget) -> tuple[RobotsRules | Failure, float]:
        """(rules or the failure every image of the host gets, seconds to keep it)."""
        cfg = self.config
        url = f"{origin.scheme}://{origin.host_header.decode('ascii')}/robots.txt"
        last: Failure | None = None
        for attempt in range(2):
            current = url
            try:
                for _ in range(6):  # RFC 9309: follow at least five redirects
                    hop, target = self._parse(current)
                    answer = await self._exchange(
                        hop, target, budget, max_bytes=MAX_ROBOTS_BYTES, truncate_ok=True
                    )
                    location = answer.headers.get("location")
                    if answer.status in _REDIRECTS and location:
                        current = urljoin(current, location)
                        continue
                    body = answer.body
                    if answer.status == 200 and answer.headers.get("content-encoding"):
                        body = self._decoded(answer)[:MAX_ROBOTS_BYTES]
                    rules = rules_for_answer(
                        answer.status,
                        body,
                        answer.headers.get("content-type"),
                        self._token,
                        truncated=len(body) >= MAX_ROBOTS_BYTES,
                    )
                    if rules is None:
                        raise Failure(
                            "robots_unavailable",
                            f"HTTP {answer.status} {answer.reason}".strip(),
                            transient=answer.status in _RETRY_STATUS,
                            http_status=answer.status,
                        )
                    if rules.crawl_delay:
                        self.host(origin.host_key).control.cap_rate(1.0 / rules.crawl_delay)
                    return rules, robots_ttl(answer.headers.get("cache-control"))
                return RobotsRules(note="robots.txt redirects more than five times: ignored"), robots_ttl(
                    None
                )
            except Failure as failure:
                if failure.reason in _UNREACHABLE or failure.reason in (
                    "blocked_address",
                    "bad_url",
                    "host_skipped",
                ):
                    # the host itself cannot be reached: its images fail the same way (and may be
                    # recovered from GBIF's image cache)
                    return (
                        Failure(
                            failure.reason,
                            f"{failure} (asking for robots.txt)",
                            transient=False,
                            cause=failure.cause,
                        ),
                        _ROBOTS_FAILED_TTL,
                    )
                last = failure
                if attempt == 0 and failure.transient and budget.remaining() > cfg.backoff_base:
                    await asyncio.sleep(random.uniform(0, cfg.backoff_base))
                    continue
                break
        assert last is not None
        return (
            Failure(
                "robots_unavailable",
                f"robots.txt of {origin.host_key} could not be read ({last}); RFC 9309 says to request nothing "
                "from the host then: its images are left for a re-run",
                transient=False,
                http_status=last.http_status,
            ),
            _ROBOTS_FAILED_TTL,
        )

    # ---------------------------------------------------------------------------- bodies
    def _decoded(self, answer: Answer) -> bytes:
        """The body without a Content-Encoding (we ask for identity; some servers compress anyway)."""
        encoding = answer.headers.get("content-encoding", "").lower()
        if encoding in ("", "identity"):
            return answer.body
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise Failure(
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
                    raise Failure("truncated", f"bad {encoding} body: {exc}", transient=True) from None
            else:
                raise Failure("truncated", f"bad {encoding} body: {exc}", transient=True) from None
        if len(data) > limit:
            raise Failure("too_large", f"body passed max_bytes={limit:,}", transient=False, http_status=200)
        return data

    # ---------------------------------------------------------------------------- URLs
    def _parse(self, url: str) -> tuple[Origin, bytes]:
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
            raise Failure("bad_url", f"cannot parse URL {url!r}: {exc}", transient=False) from None
        origin = self._origins.get((parts.scheme, parts.netloc))
        if origin is None:
            origin = self._new_origin(url, parts)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        if _UNSAFE_TARGET.search(target):
            target = quote(target, safe=_TARGET_SAFE, encoding="utf-8", errors="strict")
        return origin, target.encode("ascii")

    def _new_origin(self, url: str, parts: Any) -> Origin:
        try:
            host_key = check_url(url, self._policy)
        except BadUrl as exc:
            raise Failure("bad_url", str(exc), transient=False) from None
        except BlockedAddress as exc:
            raise Failure("blocked_address", str(exc), transient=False) from None
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        ip_literal = literal_ip(host) is not None  # a name (even "2130706433") is resolved and checked
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise Failure(
                    "bad_url", f"host name of {url!r} cannot be encoded: {exc}", transient=False
                ) from None
        port = parts.port or _DEFAULT_PORTS[scheme]
        shown = f"[{host}]" if ":" in host else host
        if parts.port and parts.port != _DEFAULT_PORTS[scheme]:
            shown = f"{shown}:{parts.port}"
        origin = Origin(scheme, host, port, host_key, shown.encode("ascii"), ip_literal)
        if len(self._origins) > 10_000:
            self._origins.clear()
        self._origins[(parts.scheme, parts.netloc)] = origin
        return origin

    # ---------------------------------------------------------------------------- connections
    async def _request(
        self,
        origin: Origin,
        target: bytes,
        remaining: float,
        *,
        opt_out: bool = False,
        max_bytes: int | None = None,
        truncate_ok: bool = False,
    ) -> Answer:
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
                raise Failure("timeout", f"no complete answer within {remaining:.1f} s", transient=True)
            try:
                answer = await conn.exchange(
                    request,
                    max_bytes=max_bytes or cfg.max_bytes,
                    deadline=left,
                    read_timeout=cfg.read_timeout,
                    opt_out_token=self._token if opt_out else None,
                    truncate_ok=truncate_ok,
                )
            except StaleConnection:
                continue
            if not conn.closed:
                conn.idle_since = time.monotonic()
                idle = self._idle.setdefault(origin, [])
                if len(idle) < cfg.per_host:
                    idle.append(conn)
                else:
                    conn.close()
            return answer
        raise Failure("connection_error", "the server keeps closing reused connections", transient=True)

    def _pooled(self, origin: Origin) -> Connection | None:
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

    async def _connect(self, origin: Origin, remaining: float) -> Connection:
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
                            lambda: Connection(loop, origin),
                            address,
                            origin.port,
                            ssl=self._ssl_context() if origin.scheme == "https" else None,
                            server_hostname=origin.host if origin.scheme == "https" else None,
                        )
                        return conn
                    except OSError as exc:  # includes ssl.SSLError
                        last = exc
                raise Failure(
                    "connection_error",
                    f"cannot connect to {origin.host}:{origin.port}: {last}",
                    transient=True,
                )
        except TimeoutError:
            raise Failure(
                "timeout",
                f"no connection to {origin.host}:{origin.port} within {limit:.1f} s",
                transient=True,
            ) from None

    async def _resolve(self, origin: Origin) -> list[str]:
        """Admitted addresses of the origin's host (cached, failures too); raises Failure."""
        if origin.ip_literal:
            return [origin.host]  # checked by check_url when the origin was parsed
        host = origin.host
        if host in self._overrides:
            address = self._overrides[host]
            if address is None:
                raise Failure(
                    "dns_error",
                    f"cannot resolve {host!r}: the name does not resolve (resolve override)",
                    transient=False,
                )
            try:
                return admitted_addresses([address], host, self._policy)
            except BlockedAddress as exc:
                raise Failure("blocked_address", str(exc), transient=False) from None
        if host == "invalid" or host.endswith(".invalid"):
            raise Failure(
                "dns_error",
                f"cannot resolve {host!r}: names under .invalid never resolve (RFC 6761)",
                transient=False,
            )
        key = (host, origin.port)
        now = time.monotonic()
        cached = self._dns.get(key)
        if cached is not None and cached[0] > now:
            if isinstance(cached[1], str):
                raise Failure("dns_error", cached[1], transient=False)
            return cached[1]
        assert self._loop is not None
        if len(self._dns) > 10_000:
            self._dns.clear()
        try:
            infos = await self._loop.getaddrinfo(host, origin.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            message = f"cannot resolve {host!r}: {exc}"
            self._dns[key] = (now + _DNS_FAILED_TTL, message)
            raise Failure("dns_error", message, transient=True) from None
        try:
            admitted = admitted_addresses(
                list(dict.fromkeys(info[4][0] for info in infos)),
                host,
                self._policy.for_origin(origin.host_key),
            )
        except BlockedAddress as exc:
            raise Failure("blocked_address", str(exc), transient=False) from None
        self._dns[key] = (now + _DNS_TTL, admitted)
        return admitted

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl
