"""Errors raised by the GBIF client.

Every class renders as one user-facing line: what was asked (method and URL, credentials stripped),
what GBIF answered (status and GBIF's own text) and what to do about it. Callers catch by class:
``GbifBadRequest`` and ``GbifAuthError`` are the user's to fix, ``GbifRateLimited`` and
``GbifUnavailable`` are worth retrying later, ``GbifQueryTooLarge`` means "use the download source".
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.vocabulary import RUNNING_STATUSES


def strip_credentials(url: str) -> str:
    """Remove ``user:password@`` from a URL so it can be logged and shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GbifError(GbifdlError):
    """Base class; ``str()`` is a one-line message meant for the user."""


class GbifHTTPError(GbifError):
    """GBIF answered with an error status (or, for ``status == 0``, did not answer at all).

    Attributes: ``status`` (HTTP status, 0 when no response was received), ``url`` (credentials
    stripped), ``message`` (GBIF's own text, e.g. ``Cannot parse simple WKT: …``), ``method``.
    """

    #: what the user should do; subclasses override
    hint = ""

    def __init__(
        self, status: int, url: str, message: str = "", *, method: str = "GET", hint: str | None = None
    ):
        self.status = int(status)
        self.url = strip_credentials(url)
        self.message = _shorten(message or "")
        self.method = method.upper()
        if hint is not None:
            self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        what = f"HTTP {self.status}" if self.status else "no response"
        text = f"GBIF {what} for {self.method} {self.url}"
        if self.message:
            text += f": {self.message}"
        if self.hint:
            text += f" — {self.hint}"
        return text

    def __reduce__(self):  # keep pickling (multiprocessing, Dagster) working with keyword-only args
        return (
            _rebuild_http_error,
            (type(self), self.status, self.url, self.message, self.method, self.hint),
        )


def _rebuild_http_error(cls, status, url, message, method, hint):
    return cls(status, url, message, method=method, hint=hint)


class GbifBadRequest(GbifHTTPError):
    """400: GBIF rejected the parameters (bad WKT, bad range, unknown enum value, offset cap…)."""

    hint = "fix the parameter GBIF names in the message; this is not retried"


class GbifAuthError(GbifHTTPError):
    """401/403: wrong or missing GBIF credentials."""

    hint = "check GBIF_USERNAME/GBIF_PASSWORD: your gbif.org user name (not the e-mail address) and password"


class GbifCredentialsMissing(GbifAuthError):
    """The download API was used without GBIF credentials (raised before any request is sent)."""

    def __init__(self, status: int = 0, url: str = "", message: str = "", *, method: str = "POST", hint=None):
        super().__init__(status, url, message, method=method, hint=hint)

    def _render(self) -> str:
        return (
            f"no GBIF credentials configured for {self.url}: set GBIF_USERNAME and GBIF_PASSWORD "
            "to your gbif.org user name and password to use the download API"
        )


class GbifNotFound(GbifHTTPError):
    """404/410: unknown key, unknown or erased download."""

    hint = "check the key"


class GbifRateLimited(GbifHTTPError):
    """429/420 still answered after all retries."""

    hint = "GBIF is throttling requests; wait a few minutes, use fewer workers, or use the download source"


class GbifUnavailable(GbifHTTPError):
    """5xx, connection failure or timeout, still failing after all retries."""

    hint = "GBIF or the network is unavailable; try again later"


class GbifResponseError(GbifError):
    """GBIF answered 2xx but the body is not what the endpoint documents (e.g. HTML instead of JSON)."""

    def __init__(self, url: str, problem: str, body: str | bytes | None = None):
        self.url = strip_credentials(url)
        self.problem = problem
        if isinstance(body, bytes):
            body = body[:400].decode("utf-8", errors="replace")
        self.body_start = _shorten(body or "", 200)
        text = f"GBIF sent an unexpected response for {self.url}: {problem}"
        if self.body_start:
            text += f"; body starts with: {self.body_start!r}"
        super().__init__(text)

    def __reduce__(self):
        return (GbifResponseError, (self.url, self.problem, self.body_start))


class GbifQueryTooLarge(GbifError):
    """An occurrence search matches more records than paging can reach and cannot be split."""


class GbifDownloadNotReady(GbifError):
    """A download exists but has no file to fetch (still running, or cancelled/failed/killed).

    ``status`` is GBIF's download status (``PREPARING``, ``RUNNING``, ``FAILED`` …).
    """

    def __init__(self, key: str, status: str, message: str | None = None):
        self.key = key
        self.status = status
        if message is None:
            if status in RUNNING_STATUSES:
                message = (
                    f"GBIF download {key} is {status}, its file is not ready yet; "
                    "wait until its status is SUCCEEDED (the download sensor does this)"
                )
            else:
                message = (
                    f"GBIF download {key} ended with status {status} and has no file; request a new download"
                )
        super().__init__(message)

    def __reduce__(self):
        return (GbifDownloadNotReady, (self.key, self.status, str(self)))
