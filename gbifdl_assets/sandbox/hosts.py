"""Media hosts with manners: the sandbox's stand-ins for iNaturalist's S3, museum servers, Flickr.

Real GBIF media sit on hundreds of hosts, each with its own limits and habits, and those decide
whether a 100,000-image set completes (reference ``real-world.md``). With ``SandboxConfig.media_hosts``
the sandbox serves its media from several host names, each on its own loopback address
(127.0.0.x, the same port as the API), and each with its own manners:

* ``rate``: requests allowed in any one-second window; beyond that 429 with ``retry_after``
  (seconds, ``"year"``: 31,536,000 s, ``"past"``: an HTTP date an hour ago, ``"date"``: an HTTP
  date one second ahead), counted per host;
* ``latency``: seconds before each answer (a slow, far-away server);
* ``robots``: the text of its robots.txt, or ``"huge"`` (2 MB of comments, then ``Disallow: /``),
  ``"html"`` (a CMS start page), ``"malformed"``, ``"500"``; None: 404, no robots.txt;
* ``x_robots_tag`` on a ``x_robots_share`` of its images; ``tdm_share`` of them ``tdm-reservation: 1``;
* ``dead_share`` of its images answer 404 (link rot: GBIF's image cache still has them);
  ``error_page_share`` answer 200 with an HTML error page;
* ``redirect_to``: another host's name; every image answers 302 to the same path there (a CDN);
* ``address`` None: the name does not resolve; ``refuse``: nothing listens on its address.

Clients resolve the names with :attr:`RunningSandbox.resolve` (``FetchConfig(resolve=…)``, like
``curl --resolve``); no DNS or /etc/hosts is involved, and no packet leaves 127.0.0.0/8. Which host
an image is on, and its per-image manners, are hashes of (seed, occurrence key, item): deterministic.
A host is told apart by the request's Host header, as virtual hosts are.

``gbifdl sandbox serve`` takes them from ``GBIFDL_SANDBOX_MEDIA_HOSTS``: ``default`` (the set
:data:`DEFAULT_HOSTS`), a JSON list of host objects, or ``@path/to/hosts.json``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import hashing
from .world import media_salt

__all__ = [
    "DEFAULT_HOSTS",
    "MediaHost",
    "MediaHostMiddleware",
    "MediaSites",
    "hosts_from_env",
    "parse_media_hosts",
]

_MF_HOST, _MF_MANNER, _MF_KIND = 7, 8, 9  # media_salt fields (0-6 are the world's)
ENV = "GBIFDL_SANDBOX_MEDIA_HOSTS"
_ROBOTS_PRESETS = ("huge", "html", "malformed", "500")


@dataclass(frozen=True)
class MediaHost:
    """One media host of the sandbox (see the module docstring)."""

    name: str
    address: str | None = None  # 127.0.0.x; None: the name does not resolve
    share: float = 1.0  # weight of the sandbox's images that live here (0: only redirects reach it)
    rate: float | None = None
    retry_after: str = "1"
    latency: float = 0.0
    robots: str | None = None
    x_robots_tag: str | None = None
    x_robots_share: float = 1.0
    tdm_share: float = 0.0
    dead_share: float = 0.0
    error_page_share: float = 0.0
    redirect_to: str | None = None
    refuse: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not self.name or "/" in self.name or ":" in self.name:
            problems.append(f"name {self.name!r}: give a host name like media.example.test")
        if self.address is not None and not self.address.startswith("127."):
            problems.append(f"{self.name}: address {self.address!r} must be on loopback (127.0.0.0/8)")
        for f in ("share", "x_robots_share", "tdm_share", "dead_share", "error_page_share"):
            if not 0.0 <= getattr(self, f) <= (1.0 if f != "share" else 1e9):
                problems.append(f"{self.name}: {f}={getattr(self, f)} must be between 0 and 1")
        if self.rate is not None and not self.rate > 0:
            problems.append(f"{self.name}: rate={self.rate} must be > 0 requests per second")
        if self.latency < 0:
            problems.append(f"{self.name}: latency must be >= 0 seconds")
        if problems:
            raise ValueError("invalid sandbox media host: " + "; ".join(problems))

    @property
    def listens(self) -> bool:
        return self.address is not None and not self.refuse


DEFAULT_HOSTS: tuple[MediaHost, ...] = (
    # a big object store: generous but limited, short Retry-After
    MediaHost("inaturalist-open-data.sandbox.test", "127.0.0.11", share=0.40, rate=50),
    # a museum server: slow, strict, with a robots.txt, some link rot and a login page now and then
    MediaHost(
        "collections.museum.sandbox.test",
        "127.0.0.12",
        share=0.15,
        rate=5,
        latency=0.2,
        robots="User-agent: *\nDisallow: /media/private/\nCrawl-delay: 0.1\n\nUser-agent: gbifdl-assets\nDisallow: /media/9\n",
        dead_share=0.10,
        error_page_share=0.02,
    ),
    # a photo site whose images live on its CDN, which opts some of them out of AI use
    MediaHost(
        "live.staticflickr.sandbox.test",
        "127.0.0.13",
        share=0.15,
        redirect_to="cdn.staticflickr.sandbox.test",
    ),
    MediaHost(
        "cdn.staticflickr.sandbox.test",
        "127.0.0.14",
        share=0.0,
        rate=200,
        x_robots_tag="noai, noimageai",
        x_robots_share=0.2,
    ),
    # a herbarium that reserves text and data mining on half its scans; its robots.txt is a web page
    MediaHost("images.herbarium.sandbox.test", "127.0.0.15", share=0.10, tdm_share=0.5, robots="html"),
    # gone: the name no longer resolves, and a server that refuses connections
    MediaHost("media.gone-museum.sandbox.test", None, share=0.10),
    MediaHost("old.server.sandbox.test", "127.0.0.16", share=0.10, refuse=True),
)


def parse_media_hosts(value: Any) -> tuple[MediaHost, ...]:
    """Hosts from ``"default"``, a JSON list (text or parsed), or ``@path`` to a JSON file."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text == "default":
            return DEFAULT_HOSTS
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(
                f"media hosts: not JSON ({exc}); give 'default', a JSON list or @file.json"
            ) from None
    if not isinstance(value, list):
        raise ValueError("media hosts: give a list of host objects")
    known = {f.name for f in fields(MediaHost)}
    hosts = []
    for item in value:
        if isinstance(item, MediaHost):
            hosts.append(item)
            continue
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"media host {item!r}: give an object with at least a name")
        unknown = set(item) - known
        if unknown:
            raise ValueError(
                f"media host {item['name']!r}: unknown fields {sorted(unknown)}; known: {sorted(known)}"
            )
        hosts.append(MediaHost(**item))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ValueError("media hosts: each name once")
    for h in hosts:
        if h.redirect_to is not None and h.redirect_to not in names:
            raise ValueError(f"media host {h.name}: redirect_to {h.redirect_to!r} is not one of the hosts")
    if hosts and not any(h.share > 0 for h in hosts):
        raise ValueError("media hosts: at least one needs a share > 0")
    return tuple(hosts)


def hosts_from_env() -> tuple[MediaHost, ...]:
    """The hosts ``GBIFDL_SANDBOX_MEDIA_HOSTS`` asks for (none when unset)."""
    return parse_media_hosts(os.environ.get(ENV, ""))


class MediaSites(str):
    """The media base URL (a plain ``str``) that also spreads identifiers over the media hosts.

    Records call ``media_url(base, key, item, ext)`` (:mod:`.records`), which asks this object
    when it is one: an image's host is a weighted hash of (seed, key, item).
    """

    hosts: tuple[MediaHost, ...]
    port: int
    seed: int

    def __new__(cls, base: str, hosts: tuple[MediaHost, ...], port: int, seed: int) -> MediaSites:
        obj = super().__new__(cls, base)
        obj.hosts = tuple(h for h in hosts if h.share > 0)
        obj.port = port
        obj.seed = seed
        total = sum(h.share for h in obj.hosts)
        acc, bounds = 0.0, []
        for h in obj.hosts:
            acc += h.share / total
            bounds.append(acc)
        obj._bounds = bounds
        return obj

    def __reduce__(self) -> Any:
        return (MediaSites, (str(self), self.hosts, self.port, self.seed))

    def host_of(self, key: int, item: int) -> MediaHost:
        u = hashing.unit(self.seed, key, media_salt(item, _MF_HOST))
        for host, bound in zip(self.hosts, self._bounds, strict=True):
            if u < bound:
                return host
        return self.hosts[-1]

    def media_url(self, key: int, item: int, ext: str) -> str:
        return f"http://{self.host_of(key, item).name}:{self.port}/media/{key}/{item}.{ext}"


def manner(seed: int, key: int, item: int, share: float, which: int) -> bool:
    """Whether image (key, item) has a per-image manner given to ``share`` of a host's images."""
    if share <= 0:
        return False
    return hashing.unit(seed, key * 8 + which, media_salt(item, _MF_MANNER)) < share


def _robots_body(host: MediaHost) -> tuple[int, str, bytes]:
    robots = host.robots
    if robots is None:
        return 404, "text/plain", b"Not found"
    if robots == "huge":
        return (
            200,
            "text/plain",
            b"# " + b"x" * 80 + b"\n" * 1 + (b"# filler line\n" * 150_000) + b"User-agent: *\nDisallow: /\n",
        )
    if robots == "html":
        page = (
            "<!DOCTYPE html><html><head><title>Herbarium</title></head><body><h1>Welcome</h1></body></html>"
        )
        return 200, "text/html; charset=utf-8", page.encode()
    if robots == "malformed":
        return (
            200,
            "text/plain",
            b"Disallow /media/\nUser agent gbifdl\n\x00\xff\xfe:::\nUser-agent: *\nAllow: /\n",
        )
    if robots == "500":
        return 500, "text/plain", b"Internal Server Error"
    return 200, "text/plain", robots.encode()


def _retry_after(value: str) -> str:
    if value == "year":
        return str(365 * 24 * 3600)
    if value == "past":
        return email.utils.formatdate(time.time() - 3600, usegmt=True)
    if value == "date":
        return email.utils.formatdate(time.time() + 1, usegmt=True)
    return value


ERROR_PAGE = (
    b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Something went wrong</h1>"
    b"<p>The image you asked for could not be shown. Please try again later.</p></body></html>"
)


class _Limiter:
    """At most ``rate`` admitted requests in any one-second window (refused ones do not count)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.window: deque[float] = deque()

    def admit(self, now: float) -> bool:
        while self.window and self.window[0] <= now - 1.0:
            self.window.popleft()
        if len(self.window) < self.rate:
            self.window.append(now)
            return True
        return False


class MediaHostMiddleware:
    """Gives each media host its manners, in front of the sandbox app (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: tuple[MediaHost, ...],
        seed: int,
        counts: dict[str, dict[str, int]] | None = None,
    ) -> None:
        self.app = app
        self.seed = seed
        self.hosts = {h.name: h for h in hosts}
        self.by_address = {h.address: h for h in hosts if h.address}
        self.limiters = {h.name: _Limiter(h.rate) for h in hosts if h.rate}
        #: requests and 429s per host (shared with the app's /sandbox/info)
        self.counts = counts if counts is not None else {}
        for h in hosts:
            self.counts.setdefault(h.name, {"requests": 0, "throttled": 0})

    def host_of(self, scope: Scope) -> MediaHost | None:
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1").rsplit(":", 1)[0].lower()
                if host in self.hosts:
                    return self.hosts[host]
                break
        server = scope.get("server")
        return self.by_address.get(server[0]) if server else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = self.host_of(scope) if scope["type"] == "http" else None
        if host is None:
            await self.app(scope, receive, send)
            return
        counts = self.counts[host.name]
        counts["requests"] += 1
        limiter = self.limiters.get(host.name)
        if limiter is not None and not limiter.admit(time.monotonic()):
            counts["throttled"] += 1
            await _answer(
                send, 429, "text/plain", b"Too Many Requests", {"retry-after": _retry_after(host.retry_after)}
            )
            return
        if host.latency:
            await asyncio.sleep(host.latency)
        path = scope.get("path", "")
        if path == "/robots.txt":
            status, ctype, body = _robots_body(host)
            await _answer(send, status, ctype, body)
            return
        parts = path.split("/")  # ["", "media", key, "item.ext"]
        if len(parts) != 4 or parts[1] != "media" or not parts[2].isdigit():
            await _answer(send, 404, "text/plain", b"Not found")
            return
        key, item = (
            int(parts[2]),
            int(parts[3].split(".", 1)[0]) if parts[3].split(".", 1)[0].isdigit() else 0,
        )
        if host.redirect_to is not None:
            query = scope.get("query_string", b"").decode("latin-1")
            port = scope["server"][1] if scope.get("server") else 80
            location = f"http://{host.redirect_to}:{port}{path}" + (f"?{query}" if query else "")
            await _answer(send, 302, "text/plain", b"Found", {"location": location})
            return
        if manner(self.seed, key, item, host.dead_share, 0):
            await _answer(send, 404, "text/plain", b"Not found: this image was removed")
            return
        if manner(self.seed, key, item, host.error_page_share, 1):
            await _answer(send, 200, "text/html; charset=utf-8", ERROR_PAGE)
            return
        extra: list[tuple[bytes, bytes]] = []
        if host.x_robots_tag and manner(self.seed, key, item, host.x_robots_share, 2):
            extra.append((b"x-robots-tag", host.x_robots_tag.encode("latin-1")))
        if manner(self.seed, key, item, host.tdm_share, 3):
            extra.append((b"tdm-reservation", b"1"))
        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _answer(
    send: Send, status: int, ctype: str, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
