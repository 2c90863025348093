"""The login checks of the annotation service without a server: counting before checking, the pool, proxies."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from gbifdl_assets.annotations.permissions import Actor
from gbifdl_assets.annotations.service.auth import Authenticator, AuthError, Credentials
from gbifdl_assets.annotations.service.proxies import TrustedProxies, parse_networks


class CountingStore:
    """A store whose password check is slow and counted (and tracks how many run at once)."""

    def __init__(self, password: str = "right-password", seconds: float = 0.05) -> None:
        self.password = password
        self.seconds = seconds
        self.checks = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def verify_user(self, username: str, password: str) -> bool:
        with self._lock:
            self.checks += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        return password == self.password

    def actor(self, username: str) -> Actor:
        return Actor(username)


def statuses_of(fn, n: int) -> list[int]:
    barrier = threading.Barrier(n)

    def one(i: int) -> int:
        barrier.wait()
        try:
            fn(i)
        except AuthError as exc:
            return exc.status
        return 200

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_40_concurrent_bad_logins_with_a_limit_of_20_check_20_passwords():
    store = CountingStore()
    auth = Authenticator(store, max_failures=20)
    statuses = statuses_of(lambda i: auth.authenticate(Credentials("alice", f"guess-{i}"), "10.0.0.1"), 40)
    assert store.checks == 20
    assert sorted(statuses) == [401] * 20 + [429] * 20


def test_the_account_is_counted_across_addresses_and_a_right_password_gives_its_slot_back():
    store = CountingStore()
    auth = Authenticator(store, max_failures=2, max_account_failures=4, cache_seconds=0)
    for i in range(4):
        with pytest.raises(AuthError) as err:
            auth.authenticate(Credentials("alice", "wrong"), f"10.0.0.{i}")
        assert err.value.status == 401
    with pytest.raises(AuthError) as err:  # a fresh address, but the account is full
        auth.authenticate(Credentials("alice", "right-password"), "10.0.0.99")
    assert err.value.status == 429 and "account" in str(err.value) and err.value.retry_after == 600
    assert auth.authenticate(Credentials("bob", "right-password"), "10.0.0.99").username == "bob"
    # successes do not count: a user logging in again and again is never throttled
    for _ in range(10):
        assert auth.authenticate(Credentials("bob", "right-password"), "10.0.0.98").username == "bob"
    # 0 means no limit
    free = Authenticator(CountingStore(), max_failures=0)
    assert statuses_of(lambda i: free.authenticate(Credentials("x", "bad"), "h"), 30) == [401] * 30


def test_a_verified_login_is_not_checked_again_nor_throttled():
    store = CountingStore()
    auth = Authenticator(store, max_failures=1)
    assert auth.authenticate(Credentials("alice", "right-password"), "h").username == "alice"
    with pytest.raises(AuthError):
        auth.authenticate(Credentials("alice", "wrong"), "h")
    assert auth.authenticate(Credentials("alice", "right-password"), "h").username == "alice"  # cached
    assert store.checks == 2


def test_password_checks_run_in_a_bounded_pool_and_overflow_gets_503():
    store = CountingStore(seconds=0.05)
    auth = Authenticator(store, max_failures=0, password_workers=2, max_waiting=10)
    results: list[int] = []

    async def one(i: int) -> None:
        try:
            await auth.check(Credentials(f"user{i}", "wrong"), f"10.0.0.{i}")
        except AuthError as exc:
            results.append(exc.status)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(25):
                tg.start_soon(one, i)

    anyio.run(main)
    assert store.most_at_once <= 2
    assert results.count(401) == store.checks == 10 and results.count(503) == 15
    assert auth.pool.waiting == 0
    # the refused checks did not count as failures
    strict = Authenticator(
        CountingStore(), max_failures=2, password_workers=1, max_waiting=1, cache_seconds=0
    )

    async def two() -> list[int]:
        out: list[int] = []

        async def go() -> None:
            try:
                await strict.check(Credentials("alice", "right-password"), "h")
                out.append(200)
            except AuthError as exc:
                out.append(exc.status)

        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            tg.start_soon(go)
        return out

    assert sorted(anyio.run(two)) == [200, 503]
    statuses = []
    for _ in range(3):
        try:
            strict.authenticate(Credentials("alice", "wrong"), "h")
        except AuthError as exc:
            statuses.append(exc.status)
    assert statuses == [401, 401, 429]  # both slots were free again


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", "10.9.9.9", "127.0.0.1"),  # no trusted proxy configured below: the peer
    ],
)
def test_without_trusted_proxies_the_peer_is_the_client(peer, forwarded, client):
    scope = {"type": "http", "client": (peer, 5000), "headers": [(b"x-forwarded-for", forwarded.encode())]}
    assert TrustedProxies().client(scope) == client


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", ["10.9.9.9"], "10.9.9.9"),
        ("127.0.0.1", ["1.2.3.4, 10.9.9.9"], "10.9.9.9"),  # the client's own entry is noise
        ("127.0.0.1", ["1.2.3.4, 10.9.9.9, 192.168.4.4"], "10.9.9.9"),  # an inner proxy
        ("127.0.0.1", ["1.2.3.4", "10.9.9.9"], "10.9.9.9"),  # two header lines
        ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("127.0.0.1", ["10.9.9.9:1234"], "10.9.9.9"),
        ("127.0.0.1", ["not-an-address"], "127.0.0.1"),
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["192.168.1.1"], "192.168.1.1"),  # only proxies: the first
        ("10.1.1.1", ["1.2.3.4"], "10.1.1.1"),  # not a trusted peer: its header is ignored
    ],
)
def test_behind_trusted_proxies_the_client_is_what_they_saw(peer, forwarded, client):
    proxies = TrustedProxies(["127.0.0.1", "192.168.0.0/16"])
    headers = [(b"x-forwarded-for", f.encode()) for f in forwarded]
    assert proxies.client({"type": "http", "client": (peer, 5000), "headers": headers}) == client


def test_trusted_proxies_name_the_origin_the_browser_saw():
    from starlette.datastructures import Headers

    proxies = TrustedProxies(["127.0.0.1"])
    raw = [
        (b"host", b"127.0.0.1:8090"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"rules.example.org"),
    ]
    trusted = {"type": "http", "scheme": "http", "client": ("127.0.0.1", 1), "headers": raw}
    assert proxies.origin(trusted, Headers(scope=trusted)) == "https://rules.example.org:443"
    stranger = {**trusted, "client": ("10.0.0.1", 1)}
    assert proxies.origin(stranger, Headers(scope=stranger)) == "http://127.0.0.1:8090"
    assert parse_networks(["127.0.0.1, ::1", "10.0.0.0/8"])[2].num_addresses == 2**24
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["proxy.example.org"])
