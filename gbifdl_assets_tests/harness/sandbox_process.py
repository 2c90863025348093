"""The sandbox as its own process (``gbifdl sandbox serve``), so a load run can tell its cost apart.

In a thread of the test process the sandbox's CPU (the API, the DWCA, every image it renders) mixes
with the test's; as a process its CPU time and resident memory are read from ``/proc`` between the
stages of a run.

API::

    with sandbox_process(occurrences=1_000_000, download_seconds=0.5) as sandbox:
        sandbox.api_url, sandbox.cpu_seconds(), sandbox.rss_mb()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port
from gbifdl_assets_tests.harness.procfs import CLOCK_TICKS, PAGE_BYTES, RSS, STIME, UTIME, stat_fields


@dataclass
class SandboxProcess:
    process: subprocess.Popen
    port: int
    log_path: Path
    started_seconds: float  # from the command to the first answer (the world is generated first)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v1"

    def _stat(self) -> list[str]:
        fields = stat_fields(self.process.pid)
        if fields is None:
            raise RuntimeError(
                f"the sandbox (pid {self.process.pid}) is gone:\n{self.log_path.read_text()[-3000:]}"
            )
        return fields

    def cpu_seconds(self) -> float:
        """User + system CPU of the sandbox process (its threads included) so far."""
        fields = self._stat()
        return (int(fields[UTIME]) + int(fields[STIME])) / CLOCK_TICKS

    def rss_mb(self) -> float:
        return int(self._stat()[RSS]) * PAGE_BYTES / 2**20

    def peak_rss_mb(self) -> float:
        """The process's high-water mark of resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


@contextmanager
def sandbox_process(
    *,
    occurrences: int,
    seed: int = 42,
    download_seconds: float = 0.5,
    log_dir: Path,
    timeout: float = 300.0,
    archive_cache: Path | None = None,
) -> Iterator[SandboxProcess]:
    """``gbifdl sandbox serve`` on a free loopback port, stopped (SIGTERM, then SIGKILL) on exit.

    ``archive_cache``: the sandbox keeps the data entries of its DWCA downloads there between runs
    (``--archive-cache``); the port is then the one the last run used when it is free, since the
    media URLs in the archive name it (another port renders the archive again).
    """
    port = free_port() if archive_cache is None else _sticky_port(archive_cache)
    log_path = log_dir / "sandbox.log"
    command = [
        sys.executable, "-m", "gbifdl_assets.cli", "sandbox", "serve", "--host", LOOPBACK,
        "--port", str(port), "--occurrences", str(occurrences), "--seed", str(seed),
        "--download-seconds", str(download_seconds),
    ]  # fmt: skip
    if archive_cache is not None:
        command += ["--archive-cache", str(archive_cache)]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        sandbox = SandboxProcess(process, port, log_path, 0.0)
        deadline = started + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the sandbox exited (rc {process.returncode}):\n{log_path.read_text()[-3000:]}"
                )
            try:
                if requests.get(f"{sandbox.api_url}/occurrence/search?limit=0", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not answer within {timeout:.0f} s")
            time.sleep(0.25)
        sandbox.started_seconds = time.monotonic() - started
        yield sandbox
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _sticky_port(folder: Path) -> int:
    """The port kept in ``folder/port`` when it is free now, else a free one (kept for next time)."""
    kept = folder / "port"
    text = kept.read_text().strip() if kept.is_file() else ""
    preferred = int(text) if text.isdigit() else None
    port = free_port(preferred=preferred)
    if port != preferred:
        folder.mkdir(parents=True, exist_ok=True)
        kept.write_text(str(port))
    return port
