"""Start ``gbifdl annotations serve`` as a real process on loopback, and stop it (its whole group).

The tests talk to the service over HTTP exactly as a client would; its stderr (uvicorn's access log
included) is kept in a file so tests can check what the server logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port, wait_for_port

API_PREFIX = "/occurrence/experimental/annotation"


class AnnotationService:
    """One service process on a store URL; ``api`` is the annotation API base URL."""

    def __init__(
        self,
        store_url: str,
        log_dir: Path,
        *,
        api_url: str | None = "http://127.0.0.1:9/v1",
        extra_args: tuple = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.store_url = store_url
        self.api_url = api_url
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})  # e.g. GBIFDL_OFFLINE=1 (api_url=None: the service decides)
        self.log_path = Path(log_dir) / "annotation-service.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def api(self) -> str:
        return self.url + API_PREFIX

    def start(self, timeout: float = 30.0) -> AnnotationService:
        cmd = [
            sys.executable, "-m", "gbifdl_assets.cli", "annotations", "serve",
            "--host", LOOPBACK, "--port", str(self.port), "--store", self.store_url,
            *(("--api-url", self.api_url) if self.api_url else ()), *self.extra_args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "GBIFDL_ANNOTATIONS_DB"} | self.extra_env
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not wait_for_port(self.port, timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the annotation service did not start: {self.log_text()[-2000:]}")
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.proc = None
        self._log.close()

    def __enter__(self) -> AnnotationService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
