"""Request and response plumbing shared by the API and the page: JSON in and out, errors, limits.

Every error is JSON ``{"message": "..."}`` (GBIF dev's ``AuthAdvice`` shape) with a status that says
what kind it is: 400 bad input (GBIF's status for all validation errors, and for a change to a deleted
object), 401 no or wrong login, 403 a login without the right (GBIF dev answers 400 there), 404 an
unknown id (GBIF answers 200 with an empty body), 409 a rule identical to an existing one (with its
``id``), 413 a body over the size limit, 415 a write that is not JSON, 429 throttled logins, 502 GBIF's
species API unreachable (taxon search only), 503 too many logins being checked.

Input that SQL drivers cannot take (NUL characters, lone surrogates, integers beyond 64 bits) is
refused here with 400, so no request can turn into a driver error and a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gbifdl_assets.errors import GbifdlError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ApiError",
    "BodySizeLimit",
    "SecurityHeaders",
    "check_values",
    "json_response",
    "read_json_object",
]

#: GBIF's largest legal rule is 125,000 WKT characters; 1 MiB leaves room for the other fields
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ApiError(GbifdlError):
    """An error answer: ``status`` and the one-line ``message`` the client sees."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}  # more fields beside "message" (409: the existing rule's "id")


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: ApiError) -> Response:
    return json_response({"message": exc.message, **exc.extra}, exc.status, headers=exc.headers)


def check_values(value: Any, where: str) -> None:
    """Refuse text and numbers no SQL backend can store (raises ApiError 400)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(400, f"{where} contains a NUL character; remove it")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{where} is not valid Unicode text (a lone surrogate)") from None
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ApiError(400, f"{where}: {value} is out of range (64-bit integers only)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ApiError(400, f"{where}: {value} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_values(key, f"{where} field name")
            check_values(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_values(item, f"{where}[{i}]")


async def read_json_object(request: Request, what: str) -> dict[str, Any]:
    """The request body as a JSON object (ApiError 400 names what is wrong with it)."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, f"the request has no body: send the {what} as a JSON object")
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ApiError(400, f"the body is a JSON {type(data).__name__}; send the {what} as a JSON object")
        check_values(data, what)
    except RecursionError:
        raise ApiError(400, f"the body is nested too deeply; send the {what} as a flat JSON object") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc}): send the {what} as a JSON object") from None
    return data


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> Response:
        return json_response(
            {"message": f"the request body is larger than {self.max_bytes:,} bytes; send less"}, 413
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._too_large()(scope, receive, send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large()(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """Raised inside the app's ``receive``: Starlette answers it through the app's HTTPException handler."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes:,} bytes; send less")


class SecurityHeaders:
    """Headers that keep the page's user text inert: a strict CSP (no inline script), no sniffing."""

    HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
            b"form-action 'self'",
        ),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


Handler = Callable[[Request], Awaitable[Response]]
