"""One offline rule for every entry point (issue 20, item 1): GBIF when it answers, else the sandbox.

The API is named by GBIF_API_URL alone (older names still read, with a deprecation line); the sandbox
that stands in is the shared one when it runs, else one started for the caller, said in one line; the
image fetcher may reach loopback only at the sandbox's own address.
"""

from __future__ import annotations

import http.server
import logging
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from gbifdl_assets.gbif.endpoint import (
    DEFAULT_SANDBOX_PORT,
    GbifUnreachable,
    api_url_from_env,
    gbif_endpoint,
    loopback_origin,
    offline_setting,
    sandbox_answers,
    sandbox_port,
)
from gbifdl_assets.media.ssrf import AddressPolicy, BlockedAddress, check_url
from gbifdl_assets_tests.harness.ports import free_port

DEAD = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: refused at once


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GBIF_API_URL", "GBIFDL_API_URL", "GBIFDL_OFFLINE", "GBIFDL_SANDBOX_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GBIFDL_SANDBOX_PORT", str(free_port()))  # no shared sandbox there
    return monkeypatch


@pytest.fixture
def fake_gbif() -> Iterator[str]:
    """A server that answers every GET with 200 ``{}``: a reachable API that is not the sandbox."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"count": 0, "results": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------- settings
def test_gbif_api_url_names_the_api_and_old_names_still_work(env, caplog) -> None:
    import gbifdl_assets.gbif.endpoint as endpoint

    env.setattr(endpoint, "_warned", set())  # said once per process: forget earlier tests' lines
    assert api_url_from_env() == "https://api.gbif.org/v1"
    env.setenv("GBIFDL_API_URL", "http://old.example/v1/")
    with caplog.at_level(logging.WARNING):
        assert api_url_from_env() == "http://old.example/v1"
    assert "GBIFDL_API_URL is deprecated; set GBIF_API_URL" in caplog.text
    env.setenv("GBIF_API_URL", "http://new.example/v1")
    assert api_url_from_env() == "http://new.example/v1"


def test_offline_setting_and_sandbox_port(env) -> None:
    assert offline_setting({}) is None
    assert offline_setting({"GBIFDL_OFFLINE": "1"}) is True
    assert offline_setting({"GBIFDL_OFFLINE": "no"}) is False
    with pytest.raises(GbifUnreachable, match="GBIFDL_OFFLINE='maybe' is not understood"):
        offline_setting({"GBIFDL_OFFLINE": "maybe"})
    assert sandbox_port({}) == DEFAULT_SANDBOX_PORT == 8765
    with pytest.raises(GbifUnreachable, match="GBIFDL_SANDBOX_PORT='x' is not a port"):
        sandbox_port({"GBIFDL_SANDBOX_PORT": "x"})


def test_loopback_origin_is_the_guards_host_key() -> None:
    assert loopback_origin("http://127.0.0.1:8765/v1") == "127.0.0.1:8765"
    assert loopback_origin("http://LOCALHOST:80/v1") == "localhost:80"
    assert loopback_origin("http://[::1]:8765/v1") == "::1:8765"
    assert loopback_origin("https://api.gbif.org/v1") is None
    assert loopback_origin("http://10.0.0.5:8765/v1") is None
    for url in ("http://127.0.0.1:8765/media/1/0.jpg", "http://localhost:80/a.jpg"):
        assert check_url(url, AddressPolicy(allow_loopback=True)) == loopback_origin(url)


# ------------------------------------------------------------------------------------- media
def test_loopback_is_admitted_at_the_listed_origin_only() -> None:
    policy = AddressPolicy(loopback_origins=frozenset({"127.0.0.1:8765"}))
    assert check_url("http://127.0.0.1:8765/media/1/0.jpg", policy) == "127.0.0.1:8765"
    for url in ("http://127.0.0.1:8766/a.jpg", "http://127.0.0.1/a.jpg", "http://127.0.0.2:8765/a.jpg"):
        with pytest.raises(BlockedAddress):
            check_url(url, policy)
    assert not policy.for_origin("localhost:8766").allow_loopback
    assert policy.for_origin("127.0.0.1:8765").allow_loopback
    assert not policy.for_origin("127.0.0.1:8765").allow_private


def test_the_fetcher_reaches_the_sandbox_and_no_other_loopback_port(sandbox, fake_gbif) -> None:
    import asyncio

    from gbifdl_assets.media.fetch import FetchConfig, Fetcher
    from gbifdl_assets_tests.harness.media_urls import sandbox_image_urls

    image = sandbox_image_urls(sandbox, 1)[0]
    other = fake_gbif.removesuffix("/v1") + "/a.jpg"
    by_name = image.replace("127.0.0.1", "localhost")
    config = FetchConfig(loopback_origins=(loopback_origin(sandbox.api_url),), max_attempts=1)

    async def fetch_all() -> list:
        async with Fetcher(config) as fetcher:
            return [await fetcher.fetch(u) for u in (image, other, by_name)]

    ok, refused, renamed = asyncio.run(fetch_all())
    assert ok.ok and ok.body
    assert not refused.ok and refused.reason == "blocked_address"
    assert not renamed.ok and renamed.reason == "blocked_address"  # another host key, even if the same server


# ------------------------------------------------------------------------------------- the rule
def test_a_reachable_api_is_used(env, fake_gbif, capsys) -> None:
    env.setenv("GBIF_API_URL", fake_gbif)
    with gbif_endpoint() as gbif:
        assert (gbif.api_url, gbif.source, gbif.note, gbif.credentials) == (fake_gbif, "gbif", None, None)
        assert gbif.media_loopback_origins == ()
        assert gbif.environment() == {"GBIF_API_URL": fake_gbif}
    assert capsys.readouterr().err == ""


def test_gbif_api_url_at_a_sandbox_is_that_sandbox(env, sandbox) -> None:
    env.setenv("GBIF_API_URL", sandbox.api_url)
    env.setenv("GBIFDL_OFFLINE", "1")  # offline means "not GBIF": this sandbox will do
    with gbif_endpoint() as gbif:
        assert (gbif.api_url, gbif.source, gbif.note) == (sandbox.api_url, "sandbox", None)
        assert gbif.media_loopback_origins == (loopback_origin(sandbox.api_url),)
        assert gbif.environment()["GBIF_USERNAME"] == "sandbox"


def test_unreachable_gbif_starts_a_sandbox_for_the_command_and_says_so_once(env, capsys) -> None:
    env.setenv("GBIF_API_URL", DEAD)
    with gbif_endpoint() as gbif:
        assert gbif.source == "sandbox" and gbif.started and gbif.pid is None
        assert sandbox_answers(gbif.api_url)
        url = gbif.api_url
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"GBIF ({DEAD}) cannot be reached from here: running against the bundled offline sandbox at "
        f"{url} (stops with this command)"
    ]
    assert not sandbox_answers(url)


def test_offline_uses_the_running_shared_sandbox(env, sandbox, fake_gbif, capsys) -> None:
    env.setenv("GBIF_API_URL", fake_gbif)  # reachable, but offline is asked for
    env.setenv("GBIFDL_SANDBOX_PORT", str(sandbox.port))
    with gbif_endpoint(offline=True) as gbif:
        assert (gbif.api_url, gbif.source, gbif.started) == (sandbox.api_url, "sandbox", False)
    assert capsys.readouterr().err.strip() == (
        f"offline (--offline): using the offline sandbox already running at {sandbox.api_url}"
    )
    env.setenv("GBIFDL_OFFLINE", "1")
    with gbif_endpoint(say=lambda line: None) as gbif:
        assert gbif.note.startswith("offline (GBIFDL_OFFLINE=1): using the offline sandbox already running")


def test_offline_0_never_falls_back(env) -> None:
    env.setenv("GBIF_API_URL", DEAD)
    env.setenv("GBIFDL_OFFLINE", "0")
    with (
        pytest.raises(GbifUnreachable, match=r"cannot be reached and GBIFDL_OFFLINE=0 rules out"),
        gbif_endpoint(),
    ):
        pass


def test_a_background_sandbox_outlives_the_call_and_is_reused(env, tmp_path) -> None:
    env.setenv("GBIF_API_URL", DEAD)
    port = int(os.environ["GBIFDL_SANDBOX_PORT"])
    lines: list[str] = []
    with gbif_endpoint(background=True, log_file=tmp_path / "sandbox.log", say=lines.append) as first:
        pid = first.pid
    try:
        assert first.api_url == f"http://127.0.0.1:{port}/v1" and first.started and pid
        assert sandbox_answers(first.api_url)  # still there after the block
        with gbif_endpoint(background=True, say=lines.append) as second:
            assert (second.api_url, second.started, second.pid) == (first.api_url, False, None)
        assert "started the offline sandbox" in lines[0] and f"`kill {pid}` stops it" in lines[0]
        assert "already running" in lines[1] and len(lines) == 2
    finally:
        os.kill(pid, signal.SIGTERM)
