"""An S3 endpoint over real HTTP for integration tests: moto's server mode in a subprocess.

A subprocess (not ``ThreadedMotoServer``) so that fault tests can really take the endpoint away:
``stop()``/``start()`` on the same port, or ``suspend()``/``resume()`` to make it hang (SIGSTOP),
without touching the test process. moto keeps its state in memory, so a restart loses all buckets.

Usage::

    with S3Server() as s3:
        s3.make_bucket("images")
        storage = open_storage("s3://images/run1", **s3.storage_options())
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port

#: Dummy credentials: moto accepts any, and real ones must never be needed (or leaked) by tests.
DUMMY_ACCESS_KEY_ID = "testing-access-key"
DUMMY_SECRET_ACCESS_KEY = "testing-secret-key"
DUMMY_REGION = "us-east-1"


class S3StartError(RuntimeError):
    """moto's server did not come up; the message carries the tail of its output."""


class S3Server:
    """moto server mode on 127.0.0.1:<free port> in its own process group."""

    access_key_id = DUMMY_ACCESS_KEY_ID
    secret_access_key = DUMMY_SECRET_ACCESS_KEY
    region_name = DUMMY_REGION

    def __init__(self, *, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self.host = LOOPBACK
        self.port: int = port or 0
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()

    def start(self) -> S3Server:
        """Start (or restart, on the same port) and wait until it answers HTTP."""
        if self.running:
            return self
        if not self.port:
            self.port = free_port(self.host)
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="gbifdl-moto-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key_id,
            AWS_SECRET_ACCESS_KEY=self.secret_access_key,
            AWS_DEFAULT_REGION=self.region_name,
        )
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: signals from the terminal do not hit it
            )
        atexit.register(self.stop)
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server (idempotent). The port stays reserved in ``self.port`` for restarts."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)  # a suspended server cannot handle SIGTERM
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def restart(self) -> None:
        """Stop and start on the same port. moto's state is in memory: every bucket is gone after this."""
        self.stop()
        self.start()

    def suspend(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel but never answered."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def reset(self) -> None:
        """Forget all buckets and objects without restarting the process."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10):
            pass

    # -------------------------------------------------------------- clients
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``gbifdl_assets.storage.open_storage`` pointing at this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "region_name": self.region_name,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server (path-style addressing, dummy credentials).

        Cached: clients are thread-safe, and the endpoint survives restarts.
        """
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region_name,
        ).client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return the name."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint_url}, {'running' if self.running else 'stopped'})"

    # ------------------------------------------------------------ internals
    def _log_tail(self, lines: int = 30) -> str:
        if self._log_path is None:
            return ""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise S3StartError(
                    f"moto server exited with code {self._proc.returncode} before answering on "
                    f"{self.endpoint_url} (is moto[server] installed?):\n{self._log_tail()}"
                )
            try:
                # Any HTTP answer from moto's own API means the server loop is up.
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError as exc:
                last = exc
                time.sleep(0.05)
        raise S3StartError(
            f"moto server did not answer on {self.endpoint_url} within {self._startup_timeout:.0f} s "
            f"({last}):\n{self._log_tail()}"
        )
