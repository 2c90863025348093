"""HTTP transport for the GBIF client: pooled session, timeouts, retries, error mapping.

Why our own retry loop instead of urllib3's ``Retry``: GBIF's 429 answers carry ``Retry-After``
(3 or 31 seconds in the recordings) that we must honour but cap, 420 is GBIF's own "slow down"
status, and tests need to inject the sleeper so that a recorded 31-second wait takes no time.
Each retry is logged at WARNING (never with auth headers); errors become the classes in
:mod:`gbifdl_assets.gbif.errors` with GBIF's own text.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from gbifdl_assets import http_headers
from gbifdl_assets.gbif.errors import (
    GbifAuthError,
    GbifBadRequest,
    GbifHTTPError,
    GbifNotFound,
    GbifRateLimited,
    GbifResponseError,
    GbifUnavailable,
    strip_credentials,
)

log = logging.getLogger("gbifdl_assets.gbif")

PROJECT_URL = "https://github.com/gbifdl/gbifdl_assets"

#: statuses that are never retried: the same request would get the same answer
NO_RETRY_STATUSES = frozenset({400, 401, 403, 404, 410})
#: 420 is GBIF's "enhance your calm" (too many downloads), 429 the standard rate limit
RATE_LIMIT_STATUSES = frozenset({420, 429})
#: transport failures worth another try (ConnectTimeout is both a ConnectionError and a Timeout)
RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

Params = Mapping[str, Any] | Iterable[tuple[str, Any]] | None


def default_user_agent() -> str:
    try:
        from importlib.metadata import version

        ver = version("gbifdl_assets")
    except Exception:  # not installed (e.g. run from a source tree)
        ver = "0+unknown"
    return f"gbifdl_assets/{ver} (+{PROJECT_URL})"


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode_params(params: Params) -> list[tuple[str, str]]:
    """Turn a mapping of name → scalar-or-list into repeated query parameters (GBIF ORs repeats).

    ``None`` values are dropped; booleans become ``true``/``false`` as GBIF expects.
    """
    if not params:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    out: list[tuple[str, str]] = []
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            out.extend((name, _param_value(v)) for v in value if v is not None)
        else:
            out.append((name, _param_value(value)))
    return out


def display_url(url: str, params: Params = None) -> str:
    """The full URL of a request, for messages and logs (credentials stripped)."""
    prepared = requests.models.PreparedRequest()
    try:
        prepared.prepare_url(url, encode_params(params))
        full = prepared.url or url
    except Exception:
        full = url
    return strip_credentials(full)


def server_message(response: requests.Response) -> str:
    """GBIF's own explanation from an error response.

    GBIF sends text/plain for 400 (``Cannot parse simple WKT: …``), JSON ``{"message": …}`` for
    404 on species, a JSON array of sentences for 429, and HTML from proxies for some 5xx.
    """
    try:
        text = response.text or ""
    except Exception:
        return ""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            for field in ("message", "error", "detail", "title"):
                if isinstance(data.get(field), str) and data[field].strip():
                    return data[field].strip()
        elif isinstance(data, list) and all(isinstance(x, str) for x in data):
            return " ".join(x.strip() for x in data)
    if "<" in stripped and ">" in stripped and re.search(r"<(html|body|h1|title)\b", stripped, re.I):
        stripped = re.sub(r"<[^>]+>", " ", stripped)
    return " ".join(stripped.split())


def error_for(response: requests.Response, *, method: str, url: str) -> GbifHTTPError:
    """Map an error response to the matching :class:`GbifHTTPError` subclass."""
    status = response.status_code
    message = server_message(response)
    cls: type[GbifHTTPError]
    if status == 400 or status == 413:
        # 413 is "A download limitation is exceeded": also the user's to change
        cls = GbifBadRequest
    elif status in (401, 403):
        cls = GbifAuthError
    elif status in (404, 410):
        cls = GbifNotFound
    elif status in RATE_LIMIT_STATUSES:
        cls = GbifRateLimited
    elif status >= 500:
        cls = GbifUnavailable
    else:
        cls = GbifHTTPError
    return cls(status, url, message, method=method)


def parse_retry_after(value: str | None, *, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (one reading for every client:
    :func:`gbifdl_assets.http_headers.parse_retry_after`); ``now`` is a clock returning aware datetimes."""
    return http_headers.parse_retry_after(value, now=now().timestamp() if now else None)


def is_retryable_status(status: int) -> bool:
    if status in NO_RETRY_STATUSES:
        return False
    if status in RATE_LIMIT_STATUSES:
        return True
    return status >= 500 and status not in (501, 505)


class GbifHttp:
    """A pooled, retrying ``requests`` session for one GBIF endpoint family.

    ``sleep`` and ``random`` are injectable so tests replay recorded waits without sleeping.
    When ``session`` is given it is used as is (tests mount replaying adapters on it); otherwise
    a session with a connection pool sized for ``pool_size`` parallel requests is created.
    """

    def __init__(
        self,
        *,
        timeout: float | tuple[float, float] = (10, 60),
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        user_agent: str | None = None,
        session: requests.Session | None = None,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random.random,
    ):
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.user_agent = user_agent or default_user_agent()
        self.sleep = sleep
        self._random = random
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            # urllib3 retries stay off: this class decides (and logs) every retry itself
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size), max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    # ------------------------------------------------------------------ retries
    def backoff_delay(self, attempt: int, response: requests.Response | None = None) -> float:
        """Seconds before retry ``attempt`` (0-based): Retry-After if sent, else full jitter."""
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                return min(retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return self._random() * ceiling

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Params = None,
        json: Any = None,
        data: Any = None,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        retry_rate_limits: bool = True,
    ) -> requests.Response:
        """Send a request and return a 2xx response, retrying transient failures.

        Raises the :class:`GbifHTTPError` subclass for the final status, or
        :class:`GbifUnavailable` (status 0) when no response could be obtained.
        ``retry_rate_limits=False`` turns 420/429 into an immediate error (download requests:
        waiting seconds does not free one of the user's ~3 download slots).
        """
        method = method.upper()
        query = encode_params(params)
        shown = display_url(url, query)
        all_headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if headers:
            all_headers.update(headers)
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method,
                    url,
                    params=query or None,
                    json=json,
                    data=data,
                    auth=auth,
                    headers=all_headers,
                    timeout=self.timeout,
                    stream=stream,
                )
            except RETRYABLE_EXCEPTIONS as exc:
                if attempt >= self.max_retries:
                    raise GbifUnavailable(0, shown, f"{type(exc).__name__}: {exc}", method=method) from exc
                delay = self.backoff_delay(attempt)
                attempt += 1
                log.warning(
                    "GBIF %s %s failed (%s); retry %d/%d in %.1fs",
                    method,
                    shown,
                    type(exc).__name__,
                    attempt,
                    self.max_retries,
                    delay,
                )
                self.sleep(delay)
                continue
            status = response.status_code
            if 200 <= status < 300:
                return response
            retryable = is_retryable_status(status) and (
                retry_rate_limits or status not in RATE_LIMIT_STATUSES
            )
            if retryable and attempt < self.max_retries:
                delay = self.backoff_delay(attempt, response)
                attempt += 1
                log.warning(
                    "GBIF answered %d to %s %s; retry %d/%d in %.1fs",
                    status,
                    method,
                    shown,
                    attempt,
                    self.max_retries,
                    delay,
                )
                response.close()
                self.sleep(delay)
                continue
            error = error_for(response, method=method, url=shown)
            response.close()
            raise error

    def get_json(self, url: str, params: Params = None, *, auth: tuple[str, str] | None = None) -> Any:
        response = self.request("GET", url, params=params, auth=auth)
        return parse_json(response, display_url(url, params))


def parse_json(response: requests.Response, shown_url: str | None = None) -> Any:
    """The JSON body of a response, or :class:`GbifResponseError` naming the URL and body start."""
    shown = shown_url or strip_credentials(response.url or "")
    if response.status_code == 204:
        return None
    if not response.content:
        raise GbifResponseError(shown, "expected JSON, got an empty body")
    try:
        return response.json()
    except ValueError:
        content_type = response.headers.get("Content-Type", "no content type")
        raise GbifResponseError(shown, f"expected JSON, got {content_type}", response.content) from None
