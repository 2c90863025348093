"""Run the sandbox: in a background thread (tests, demos) or blocking (``gbifdl sandbox serve``)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.request

import uvicorn

from .app import create_app
from .config import SandboxConfig
from .hosts import hosts_from_env

log = logging.getLogger(__name__)


class RunningSandbox:
    """A sandbox served by uvicorn in a daemon thread. Use as a context manager or call :meth:`stop`."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int, config: SandboxConfig
    ) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.config = config
        self.app = server.config.app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v1"

    @property
    def resolve(self) -> dict[str, str | None]:
        """Names of the media hosts -> their loopback address (None: the name does not resolve), for
        ``FetchConfig(resolve=…)``, as ``curl --resolve`` would."""
        return {h.name: h.address for h in self.config.media_hosts}

    def host_url(self, name: str) -> str:
        """``http://name:port`` of a media host."""
        return f"http://{name}:{self.port}"

    @property
    def state(self):
        """The app's SandboxState (world, downloads, faults) for white-box tests."""
        return self.app.state.sandbox

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningSandbox({self.url}, occurrences={self.config.occurrences}, seed={self.config.seed})"


def _uvicorn_config(app, host: str, port: int, *, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        # longer than typical poll intervals (30 s), so idle pooled connections are not closed just as
        # a client reuses them; GBIF-facing clients must still retry on a dropped connection
        timeout_keep_alive=75,
        timeout_graceful_shutdown=1,  # 'timeout' media faults must not hold up stop()
        http="h11",
        loop="asyncio",
    )


def _bind_media_hosts(config: SandboxConfig, port: int) -> list[socket.socket]:
    """One listening socket per media host that listens (its 127.0.0.x address, the API's port)."""
    socks = []
    try:
        for h in config.media_hosts:
            if h.listens:
                socks.append(_bind(h.address, port))  # type: ignore[arg-type]
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


def _bind(host: str, port: int) -> socket.socket:
    # TCP_NODELAY on the listening socket (inherited by accepted connections): without it, responses
    # on kept-alive connections stall ~40 ms (Nagle + delayed ACK), since uvicorn writes headers and
    # body separately and asyncio does not set it for sockets passed in pre-bound.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"Cannot listen on {host}:{port} ({exc.strerror}); choose another --port or stop "
            "the process using it"
        ) from exc
    sock.set_inheritable(True)
    return sock


def start_sandbox(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready_timeout: float = 120.0,
    log_level: str = "warning",
) -> RunningSandbox:
    """Start a sandbox in a background thread and wait until it answers; ``port=0`` picks a free port."""
    config = config or SandboxConfig()
    app = create_app(config)  # generate data here, so failures surface in the caller's thread
    sock = _bind(host, port)
    real_port = sock.getsockname()[1]
    try:
        extra = _bind_media_hosts(app.state.sandbox.config, real_port)
    except OSError:
        sock.close()
        raise
    server = uvicorn.Server(_uvicorn_config(app, host, real_port, log_level=log_level))
    server.install_signal_handlers = lambda: None  # not the main thread

    def run() -> None:
        try:
            server.run(sockets=[sock, *extra])
        except Exception:  # surface in logs; the ready-wait below reports the failure to the caller
            log.exception("sandbox server crashed")

    thread = threading.Thread(target=run, name=f"gbif-sandbox-{real_port}", daemon=True)
    thread.start()
    running = RunningSandbox(server, thread, host, real_port, config)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(
                f"The GBIF sandbox on {running.url} stopped during start-up; see the log above"
            )
        if server.started:
            try:
                with urllib.request.urlopen(running.url + "/sandbox/health", timeout=2) as r:
                    if r.status == 200:
                        return running
            except OSError:
                pass
        time.sleep(0.02)
    running.stop()
    raise TimeoutError(f"The GBIF sandbox on {running.url} did not become ready within {ready_timeout:.0f} s")


def serve(host: str = "127.0.0.1", port: int = 8000, config: SandboxConfig | None = None) -> None:
    """Serve the sandbox in the foreground until interrupted (used by ``gbifdl sandbox serve``)."""
    config = config or SandboxConfig()
    if not config.media_hosts:
        config.media_hosts = hosts_from_env()  # GBIFDL_SANDBOX_MEDIA_HOSTS (see .hosts)
    t0 = time.perf_counter()
    app = create_app(config)
    world = app.state.sandbox.world
    print(
        f"GBIF sandbox: {len(world.occ):,} occurrences, {len(world.taxonomy.taxa):,} taxa, "
        f"{len(world.datasets)} datasets (seed {config.seed}) generated in {time.perf_counter() - t0:.1f} s\n"
        f"  API:   http://{host}:{port}/v1   (login {config.username!r} / password from the config)\n"
        f"  Media: http://{host}:{port}/media/…   Controls: http://{host}:{port}/sandbox/faults",
        flush=True,
    )
    sock = _bind(host, port)
    real_port = sock.getsockname()[1]
    extra = _bind_media_hosts(config, real_port)
    for h in config.media_hosts:
        where = (
            f"{h.address}:{real_port}"
            if h.listens
            else ("refuses connections" if h.address else "does not resolve")
        )
        print(f"  Media host {h.name}: {where}  (clients: --resolve {h.name}={h.address or ''})", flush=True)
    server = uvicorn.Server(_uvicorn_config(app, host, real_port, log_level="info"))
    server.run(sockets=[sock, *extra])
