"""Which GBIF API to talk to: one rule for every entry point (demo, ``make dev``, the CLI, services).

The rule (:func:`gbif_endpoint`):

* the API is ``GBIF_API_URL`` (an explicit ``--api-url`` first; GBIF's public API when unset);
* it is used when it answers;
* when it does not answer, or ``GBIFDL_OFFLINE=1``, the bundled offline sandbox stands in: the
  shared one on ``127.0.0.1:$GBIFDL_SANDBOX_PORT`` (8765) when it already runs, else one started for
  the caller (in a thread for a command that ends, as a background process for ``make dev``), said
  in one line on stderr;
* ``GBIFDL_OFFLINE=0`` never falls back: an unreachable API is an error (production).

Media on loopback are admitted from the sandbox's own address only (:func:`loopback_origin` of the
API URL, handed to the image fetcher as an allow-list), never from every loopback URL.

Plain Python: no Dagster, no spec model; the sandbox is imported only when one is started.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from gbifdl_assets.gbif.client import DEFAULT_BASE_URL
from gbifdl_assets.gbif.errors import GbifError

__all__ = [
    "API_URL_ENV",
    "DEPRECATED_API_URL_ENVS",
    "OFFLINE_ENV",
    "SANDBOX_OCCURRENCES",
    "SANDBOX_PORT_ENV",
    "GbifEndpoint",
    "GbifUnreachable",
    "api_url_from_env",
    "gbif_endpoint",
    "gbif_reachable",
    "loopback_origin",
    "offline_setting",
    "sandbox_answers",
    "sandbox_port",
]

log = logging.getLogger(__name__)

#: The one variable that names the GBIF API.
API_URL_ENV = "GBIF_API_URL"
#: Older names, still read (with a deprecation line) when GBIF_API_URL is not set.
DEPRECATED_API_URL_ENVS = ("GBIFDL_API_URL",)
#: 1: always the sandbox; 0: never the sandbox; unset: the sandbox when the API does not answer.
OFFLINE_ENV = "GBIFDL_OFFLINE"
#: Where the shared sandbox listens (``make dev`` starts it there; everything else reuses it).
SANDBOX_PORT_ENV = "GBIFDL_SANDBOX_PORT"
DEFAULT_SANDBOX_PORT = 8765
SANDBOX_HOST = "127.0.0.1"
#: The size and seed of a sandbox started here (the demo's numbers; same data in every process).
SANDBOX_OCCURRENCES = 50_000
SANDBOX_SEED = 42
#: What the sandbox's ``/sandbox/info`` calls itself.
_SANDBOX_SERVICE = "gbifdl offline GBIF sandbox"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_warned: set[str] = set()


class GbifUnreachable(GbifError):
    """The API does not answer and the offline sandbox is not allowed or cannot be started."""


@dataclass(frozen=True)
class GbifEndpoint:
    """The API chosen by :func:`gbif_endpoint`: its URL, where it is (``gbif`` or ``sandbox``) and why."""

    api_url: str
    source: str
    #: the line said on stderr when the sandbox stands in (None when GBIF answered)
    note: str | None = None
    #: the sandbox's test account (GBIF's real account never goes to the sandbox)
    credentials: tuple[str, str] | None = None
    #: pid of a background sandbox started by this call
    pid: int | None = None
    started: bool = False

    @property
    def media_loopback_origins(self) -> tuple[str, ...]:
        """``host:port`` the image fetcher may reach on loopback: the sandbox's own address, nothing else."""
        origin = loopback_origin(self.api_url) if self.source == "sandbox" else None
        return (origin,) if origin else ()

    def environment(self) -> dict[str, str]:
        """The variables that hand this choice to another process (``make dev``'s code location)."""
        env = {API_URL_ENV: self.api_url}
        if self.credentials:
            env["GBIF_USERNAME"], env["GBIF_PASSWORD"] = self.credentials
        return env


# ------------------------------------------------------------------------------------- settings
def _say_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def api_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``GBIF_API_URL``, else a deprecated name (said once), else GBIF's public API."""
    environ = os.environ if environ is None else environ
    if environ.get(API_URL_ENV):
        return environ[API_URL_ENV].rstrip("/")
    for name in DEPRECATED_API_URL_ENVS:
        if environ.get(name):
            _say_once(f"{name} is deprecated; set {API_URL_ENV} instead (it names the GBIF API everywhere)")
            return environ[name].rstrip("/")
    return DEFAULT_BASE_URL


def offline_setting(environ: Mapping[str, str] | None = None) -> bool | None:
    """``GBIFDL_OFFLINE``: True (always the sandbox), False (never), None (unset: decide by reachability)."""
    environ = os.environ if environ is None else environ
    value = environ.get(OFFLINE_ENV, "").strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise GbifUnreachable(
        f"{OFFLINE_ENV}={environ[OFFLINE_ENV]!r} is not understood; use 1 (always the offline sandbox), "
        "0 (never) or leave it unset (the sandbox when GBIF does not answer)"
    )


def sandbox_port(environ: Mapping[str, str] | None = None) -> int:
    """The shared sandbox's port: ``GBIFDL_SANDBOX_PORT``, else 8765."""
    environ = os.environ if environ is None else environ
    value = environ.get(SANDBOX_PORT_ENV, "").strip()
    if not value:
        return DEFAULT_SANDBOX_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise GbifUnreachable(f"{SANDBOX_PORT_ENV}={value!r} is not a port number; give e.g. 8765")
    return int(value)


def loopback_origin(api_url: str) -> str | None:
    """``host[:port]`` of ``api_url`` when its host is a loopback address (the sandbox), else None.

    Written the way the SSRF guard keys hosts (``gbifdl_assets.media.ssrf.check_url``): lower-cased host,
    ``:port`` when the URL gives one.
    """
    try:
        parts = urlsplit(api_url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            return None
    return f"{host}:{port}" if port else host


# ------------------------------------------------------------------------------------- probes
def gbif_reachable(api_url: str = DEFAULT_BASE_URL, timeout: float = 4.0) -> bool:
    """Whether the API answers an occurrence search (one cheap request)."""
    try:
        response = requests.get(f"{api_url}/occurrence/search", params={"limit": 0}, timeout=timeout)
    except requests.RequestException:
        return False
    return response.ok


def _root(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/v1")


def sandbox_answers(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a gbifdl sandbox serves ``api_url`` (its ``/sandbox/info`` names it)."""
    try:
        response = requests.get(_root(api_url) + "/sandbox/info", timeout=timeout)
        return response.ok and response.json().get("service") == _SANDBOX_SERVICE
    except (requests.RequestException, ValueError, AttributeError):
        return False


def _sandbox_credentials() -> tuple[str, str]:
    from gbifdl_assets.sandbox import SandboxConfig

    config = SandboxConfig()
    return config.username, config.password


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- the rule
@contextmanager
def gbif_endpoint(
    *,
    api_url: str | None = None,
    offline: bool | None = None,
    background: bool = False,
    log_file: str | Path | None = None,
    say: Callable[[str], None] = _stderr,
    environ: Mapping[str, str] | None = None,
) -> Iterator[GbifEndpoint]:
    """The GBIF API every entry point uses, by the rule of this module; a sandbox it started in a
    thread stops when the block ends, a background one (``background=True``) keeps running for the
    next caller (``make dev``, the demo, the CLI reuse it).

    ``api_url`` is an explicit choice (``--api-url``); ``offline`` an explicit ``--offline`` (True) and
    otherwise ``GBIFDL_OFFLINE`` decides. ``say`` receives the one line that names the sandbox.
    """
    url = (api_url or "").rstrip("/") or api_url_from_env(environ)
    forced = offline_setting(environ) if offline is None else offline
    if loopback_origin(url) is not None and sandbox_answers(url):  # GBIF_API_URL is a sandbox already
        yield GbifEndpoint(url, "sandbox", credentials=_sandbox_credentials())
        return
    if forced is not True and gbif_reachable(url):
        yield GbifEndpoint(url, "gbif")
        return
    if forced is False:
        raise GbifUnreachable(
            f"GBIF ({url}) cannot be reached and {OFFLINE_ENV}=0 rules out the offline sandbox; check the "
            f"network and {API_URL_ENV}, or unset {OFFLINE_ENV} to work against the sandbox"
        )
    why = (
        f"offline ({'--offline' if offline else OFFLINE_ENV + '=1'})"
        if forced
        else f"GBIF ({url}) cannot be reached from here"
    )
    port = sandbox_port(environ)
    shared = f"http://{SANDBOX_HOST}:{port}/v1"
    credentials = _sandbox_credentials()
    if sandbox_answers(shared):
        note = f"{why}: using the offline sandbox already running at {shared}"
        say(note)
        yield GbifEndpoint(shared, "sandbox", note, credentials)
        return
    if background:
        pid = _start_background_sandbox(port, log_file)
        note = (
            f"{why}: started the offline sandbox at {shared} (pid {pid}; it keeps running and is reused; "
            f"`kill {pid}` stops it)"
        )
        say(note)
        yield GbifEndpoint(shared, "sandbox", note, credentials, pid=pid, started=True)
        return
    from gbifdl_assets.sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(occurrences=SANDBOX_OCCURRENCES, seed=SANDBOX_SEED)) as sandbox:
        note = f"{why}: running against the bundled offline sandbox at {sandbox.api_url} (stops with this command)"
        say(note)
        yield GbifEndpoint(sandbox.api_url, "sandbox", note, credentials, started=True)


def _start_background_sandbox(port: int, log_file: str | Path | None, ready_seconds: float = 120.0) -> int:
    """``gbifdl sandbox serve`` in its own session (it outlives the caller); its pid once it answers."""
    command = [
        sys.executable,
        "-m",
        "gbifdl_assets.cli",
        "sandbox",
        "serve",
        "--host",
        SANDBOX_HOST,
        "--port",
        str(port),
        "--occurrences",
        str(SANDBOX_OCCURRENCES),
        "--seed",
        str(SANDBOX_SEED),
    ]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    finally:
        if log_file:
            out.close()
    url = f"http://{SANDBOX_HOST}:{port}/v1"
    deadline = time.monotonic() + ready_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            where = f"; see {log_file}" if log_file else ""
            raise GbifUnreachable(
                f"the offline sandbox could not start on {SANDBOX_HOST}:{port} (is the port taken by another "
                f"program? stop it or set {SANDBOX_PORT_ENV}){where}"
            )
        if sandbox_answers(url, timeout=1.0):
            return process.pid
        time.sleep(0.2)
    process.terminate()
    raise GbifUnreachable(
        f"the offline sandbox on {SANDBOX_HOST}:{port} did not answer within {ready_seconds:.0f} s"
    )
