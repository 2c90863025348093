"""Writes from a browser on another site are refused (CSRF), before any login or body is looked at.

A browser sends requests to this service from any page it shows, with whatever credentials it holds
for this origin. Two rules keep another site from writing through it (issue 21):

* **Writes take JSON only.** A write (any method but GET, HEAD, OPTIONS) with a body, or with a
  ``Content-Type``, must say ``application/json``; anything else is 415. HTML forms can only send
  ``application/x-www-form-urlencoded``, ``multipart/form-data`` or ``text/plain`` (the last one can
  carry a JSON-looking body), and a cross-origin ``fetch`` cannot set ``application/json`` without a
  CORS preflight, which this service never grants. Bodyless writes (votes, deletes) need no type.
* **Writes must come from this origin.** ``Origin`` (sent by browsers on every cross-origin write, and
  on same-origin ``fetch`` writes) must be this service's own origin (the scheme and ``Host`` of the
  request) or one listed in ``allowed_origins``; ``Sec-Fetch-Site: cross-site`` or ``same-site``
  (another port of the same host is the same site) without such an ``Origin`` is refused too: 403.

Scripts, curl and the CLI send neither header and are not affected; the map page sends
``Origin`` = this origin. The 401 answers of the API carry no ``WWW-Authenticate: Basic`` challenge
(:mod:`.api`), so a browser never shows its own login dialog and never caches Basic credentials that
other pages could ride on; the page has its own login form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gbifdl_assets.annotations.service.http import json_response

__all__ = ["SAFE_METHODS", "SameOriginWrites", "normalize_origin"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str | None:
    """``scheme://host:port`` in lower case with the port spelt out; None for ``null`` or junk."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return f"{scheme}://{parts.hostname.lower()}:{port or _DEFAULT_PORTS[scheme]}"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in headers


class SameOriginWrites:
    """ASGI middleware: 415 for non-JSON writes, 403 for writes a browser marks as cross-site.

    ``own_origin(scope, headers)`` says where this service is, as the browser sees it (default: the
    request's scheme and ``Host``; behind a trusted proxy, what it forwarded).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: Iterable[str] = (),
        own_origin: Callable[[Scope, Headers], str | None] | None = None,
    ) -> None:
        self.app = app
        self.allowed = set()
        for origin in allowed_origins:
            normal = normalize_origin(origin)
            if normal is None:
                raise ValueError(
                    f"{origin!r} is not an origin: give scheme://host[:port], e.g. https://example.org"
                )
            self.allowed.add(normal)
        self.own_origin = own_origin or request_origin

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request must not go on; None when it may."""
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        site = (headers.get("sec-fetch-site") or "").strip().lower()
        normal = normalize_origin(origin) if origin is not None else None
        if origin is not None and (
            normal is None or (normal not in self.allowed and normal != self.own_origin(scope, headers))
        ):
            return 403, (
                f"cross-site write refused: this request comes from a page at {origin[:100]!r}, not from "
                "this service's own pages; scripts and the CLI send no Origin header"
            )
        if site in ("cross-site", "same-site") and normal not in self.allowed:
            return 403, (
                f"cross-site write refused: the browser marks this request as {site} "
                "(Sec-Fetch-Site); write from this service's own pages"
            )
        content_type = headers.get("content-type")
        if (content_type is not None or _has_body(headers)) and not _is_json(content_type or ""):
            shown = (content_type or "no Content-Type")[:80]
            return 415, (
                f"writes take JSON: send the body with Content-Type: application/json (this request has {shown})"
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            refused = self.refusal(scope)
            if refused is not None:
                status, message = refused
                await json_response({"message": message}, status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def request_origin(scope: Scope, headers: Headers) -> str | None:
    """This service's origin as the request addressed it: its scheme and ``Host`` header."""
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        if not server:
            return None
        host = f"{server[0]}:{server[1]}"
    return normalize_origin(f"{scope.get('scheme', 'http')}://{host}")
