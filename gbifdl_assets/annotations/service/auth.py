"""HTTP Basic authentication against the annotation store's local accounts, as GBIF's API does it.

GBIF checks Basic credentials on every write (reference annotations.md §4); so do we, against the
store's users (scrypt hashes; :meth:`AnnotationStore.verify_user`). Reads need no user.

Two things keep that cheap and safe:

* A verified login is remembered for ``CACHE_SECONDS`` under an HMAC of the password with a random
  per-process key (never the password itself), so a page that saves, votes and comments does not pay
  one ~0.1 s scrypt per request. A password changed with ``gbifdl annotations user set-password`` in
  another process takes effect for new logins at once and for a cached one within that minute.
* Failed logins are counted per client address: after ``MAX_FAILURES`` in ``FAILURE_WINDOW`` seconds the
  address gets 429 until the window passes (online guessing is throttled; each guess costs scrypt).

401 answers carry no ``WWW-Authenticate: Basic`` challenge: a browser would show its own dialog and
then send the cached credentials with requests other sites make (:mod:`.csrf`). The map page has its
own login form; scripts, curl and gbifrules send Basic credentials up front.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from gbifdl_assets.annotations.permissions import Actor
from gbifdl_assets.errors import GbifdlError

__all__ = ["AuthError", "Authenticator", "Credentials", "parse_basic"]

CACHE_SECONDS = 60.0
MAX_FAILURES = 20
FAILURE_WINDOW = 600.0


class AuthError(GbifdlError):
    """Authentication failed; ``status`` is 401 (bad or missing credentials) or 429 (throttled)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password, even in a traceback's locals
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def parse_basic(header: str | None) -> Credentials | None:
    """The credentials of an ``Authorization: Basic …`` header; None when there is no such header.

    A malformed Basic header raises :class:`AuthError` (a client bug worth a clear answer).
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthError("only HTTP Basic authentication is supported: send 'Authorization: Basic …'")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthError("the Basic credentials are not base64 of 'username:password' (UTF-8)") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise AuthError("the Basic credentials are not base64 of 'username:password'")
    return Credentials(username, password)


class Authenticator:
    """Verifies Basic credentials against an :class:`AnnotationStore` (thread-safe)."""

    def __init__(
        self,
        store: object,
        *,
        cache_seconds: float = CACHE_SECONDS,
        max_failures: int = MAX_FAILURES,
        failure_window: float = FAILURE_WINDOW,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.max_failures = max_failures
        self.failure_window = failure_window
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, bytes], float] = {}
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _fingerprint(self, creds: Credentials) -> tuple[str, bytes]:
        digest = hmac.new(self._key, creds.password.encode("utf-8"), hashlib.sha256).digest()
        return creds.username, digest

    def _throttled(self, client: str, now: float) -> bool:
        with self._lock:
            times = self._failures.get(client)
            if not times:
                return False
            while times and now - times[0] > self.failure_window:
                times.popleft()
            if not times:
                del self._failures[client]
            return len(times) >= self.max_failures

    def _record_failure(self, client: str, now: float) -> None:
        with self._lock:
            self._failures.setdefault(client, deque()).append(now)
            if len(self._failures) > 10_000:  # keep memory bounded under a scan from many addresses
                oldest = min(self._failures, key=lambda k: self._failures[k][-1])
                del self._failures[oldest]

    def authenticate(self, creds: Credentials, client: str) -> Actor:
        """The store's :class:`Actor` for valid credentials; :class:`AuthError` otherwise."""
        now = time.monotonic()
        if self._throttled(client, now):
            raise AuthError(
                f"too many failed logins from this address; wait {int(self.failure_window // 60)} minutes",
                status=429,
            )
        key = self._fingerprint(creds)
        with self._lock:
            expires = self._cache.get(key)
        if expires is None or expires < now:
            if not self.store.verify_user(creds.username, creds.password):  # type: ignore[attr-defined]
                self._record_failure(client, now)
                raise AuthError("wrong username or password")
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = now + self.cache_seconds
        return self.store.actor(creds.username)  # type: ignore[attr-defined]
