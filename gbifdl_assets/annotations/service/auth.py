"""HTTP Basic authentication against the annotation store's local accounts, as GBIF's API does it.

GBIF checks Basic credentials on every write (reference annotations.md §4); so do we, against the
store's users (scrypt hashes; :meth:`AnnotationStore.verify_user`). Reads need no user.

What keeps that cheap and safe (issue 21):

* A verified login is remembered for ``CACHE_SECONDS`` under an HMAC of the password with a random
  per-process key (never the password itself), so a page that saves, votes and comments does not pay
  one scrypt per request. A password changed with ``gbifdl annotations user set-password`` in
  another process takes effect for new logins at once and for a cached one within that minute.
* Failed logins are counted **before** the password is checked: every check first takes a slot in
  the client's count (``max_failures`` per ``FAILURE_WINDOW``) and in the account's count
  (``max_account_failures``, by default ``ACCOUNT_FACTOR`` times the client's: one address cannot
  lock a user out, many addresses cannot guess without limit); a right password gives its slot back.
  When either count is full the answer is 429 without a check, so concurrent guesses cannot overrun
  the limit. The client address is the peer's, or what a configured trusted proxy forwarded
  (:mod:`.proxies`).
* Password checks (32 MiB, ~0.1-0.2 s of scrypt each) run in a pool of their own, ``password_workers``
  threads with at most ``max_waiting`` checks queued (more: 503 with Retry-After), so a flood of
  logins never takes the threads and CPU that reads need.

401 answers carry no ``WWW-Authenticate: Basic`` challenge: a browser would show its own dialog and
then send the cached credentials with requests other sites make (:mod:`.csrf`). The map page has its
own login form; scripts, curl and gbifrules send Basic credentials up front.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool

from gbifdl_assets.annotations.permissions import Actor
from gbifdl_assets.errors import GbifdlError

__all__ = ["AuthError", "Authenticator", "Credentials", "PasswordPool", "parse_basic"]

CACHE_SECONDS = 60.0
MAX_FAILURES = 20
FAILURE_WINDOW = 600.0
#: the account's limit is this many times the client's
ACCOUNT_FACTOR = 5
#: checks queued (or running) before new logins get 503
MAX_WAITING = 32
_NO_LIMIT = 2**62
_MAX_KEYS = 20_000


class AuthError(GbifdlError):
    """Authentication failed; ``status`` is 401 (bad or missing credentials), 429 (throttled) or 503
    (too many checks waiting); ``retry_after`` seconds when trying again later may help."""

    def __init__(self, message: str, status: int = 401, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


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


def default_password_workers() -> int:
    """Half the CPUs (at least one): logins never take all of them from the readers."""
    return max(1, (os.cpu_count() or 2) // 2)


class PasswordPool:
    """Runs password checks in at most ``workers`` threads, with at most ``max_waiting`` queued or running.

    Async (the event loop waits, no thread of the shared pool is held while queued); a check beyond
    ``max_waiting`` is refused at once with :class:`AuthError` 503.
    """

    def __init__(self, workers: int | None = None, max_waiting: int = MAX_WAITING) -> None:
        self.workers = max(1, workers or default_password_workers())
        self.max_waiting = max(self.workers, max_waiting)
        self._limiter: anyio.CapacityLimiter | None = None
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._waiting >= self.max_waiting:
            raise AuthError(
                "too many logins are being checked right now; try again in a few seconds", 503, retry_after=2
            )
        if self._limiter is None:  # made on first use, inside the event loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        self._waiting += 1  # the event loop is one thread: no lock needed
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self._waiting -= 1


@dataclass(frozen=True)
class _Attempt:
    keys: tuple[tuple[str, str], ...]
    at: float


class Authenticator:
    """Verifies Basic credentials against an :class:`AnnotationStore` (thread-safe).

    ``max_failures`` per client and ``max_account_failures`` per username (default ``ACCOUNT_FACTOR``
    times ``max_failures``) in ``failure_window`` seconds; 0 for either means no limit.
    """

    def __init__(
        self,
        store: object,
        *,
        cache_seconds: float = CACHE_SECONDS,
        max_failures: int = MAX_FAILURES,
        failure_window: float = FAILURE_WINDOW,
        max_account_failures: int | None = None,
        password_workers: int | None = None,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        if max_account_failures is None:
            max_account_failures = max_failures * ACCOUNT_FACTOR
        self.max_failures = max_failures or _NO_LIMIT
        self.max_account_failures = max_account_failures or _NO_LIMIT
        self.failure_window = failure_window
        self.pool = PasswordPool(password_workers, max_waiting)
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, bytes], float] = {}
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the verified-login cache
    def _fingerprint(self, creds: Credentials) -> tuple[str, bytes]:
        digest = hmac.new(self._key, creds.password.encode("utf-8"), hashlib.sha256).digest()
        return creds.username, digest

    def cached(self, creds: Credentials) -> bool:
        """True when these exact credentials were verified less than ``cache_seconds`` ago."""
        key = self._fingerprint(creds)
        with self._lock:
            expires = self._cache.get(key)
        return expires is not None and expires >= time.monotonic()

    def _remember(self, creds: Credentials) -> None:
        key = self._fingerprint(creds)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = time.monotonic() + self.cache_seconds

    # ------------------------------------------------------------------ failure counts
    def _count(self, key: tuple[str, str], now: float) -> deque[float]:
        """The key's failure times within the window (caller holds the lock)."""
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque()
            if len(self._failures) > _MAX_KEYS:  # bounded memory under a scan of addresses or names
                oldest = min(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0)
                del self._failures[oldest]
        while times and now - times[0] > self.failure_window:
            times.popleft()
        return times

    def reserve(self, creds: Credentials, client: str) -> _Attempt:
        """Count a failure for the client and the account *before* the check; 429 when either is full."""
        now = time.monotonic()
        minutes = max(1, int(self.failure_window // 60))
        keys = (("client", client), ("account", creds.username))
        with self._lock:
            by_client, by_account = (self._count(k, now) for k in keys)
            if len(by_client) >= self.max_failures:
                raise AuthError(
                    f"too many failed logins from this address; wait {minutes} minutes",
                    429,
                    retry_after=int(self.failure_window),
                )
            if len(by_account) >= self.max_account_failures:
                raise AuthError(
                    f"too many failed logins for this account; wait {minutes} minutes",
                    429,
                    retry_after=int(self.failure_window),
                )
            by_client.append(now)
            by_account.append(now)
        return _Attempt(keys, now)

    def release(self, attempt: _Attempt) -> None:
        """Give the slots back (the password was right, or it was never checked)."""
        with self._lock:
            for key in attempt.keys:
                times = self._failures.get(key)
                if times is not None and attempt.at in times:
                    times.remove(attempt.at)

    # ------------------------------------------------------------------ checks
    def authenticate(self, creds: Credentials, client: str) -> Actor:
        """The store's :class:`Actor` for valid credentials; :class:`AuthError` otherwise (blocking)."""
        if not self.cached(creds):
            attempt = self.reserve(creds, client)
            if not self.store.verify_user(creds.username, creds.password):  # type: ignore[attr-defined]
                raise AuthError("wrong username or password")
            self.release(attempt)
            self._remember(creds)
        return self.store.actor(creds.username)  # type: ignore[attr-defined]

    async def check(self, creds: Credentials, client: str) -> Actor:
        """:meth:`authenticate` for the event loop: the password check runs in :attr:`pool`."""
        if not self.cached(creds):
            attempt = self.reserve(creds, client)
            try:
                ok = await self.pool.run(self.store.verify_user, creds.username, creds.password)  # type: ignore[attr-defined]
            except AuthError:  # the pool is full: nothing was checked, nothing counts
                self.release(attempt)
                raise
            if not ok:
                raise AuthError("wrong username or password")
            self.release(attempt)
            self._remember(creds)
        return await run_in_threadpool(self.store.actor, creds.username)  # type: ignore[attr-defined]
