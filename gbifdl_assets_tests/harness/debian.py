"""Debian packages the tests need (Chromium, Redis, docker-compose, PostGIS), installed on demand.

CI runs on a fresh machine where only what ``make test`` sets up is guaranteed. We run as root there,
so a test that needs e.g. ``chromium`` installs it once with apt instead of being skipped. A lock file
keeps parallel sessions from running apt at the same time; ``apt-get update`` runs at most once per
process, and only when an install without it fails.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

_LOCK = Path("/tmp/gbifdl_assets_apt.lock")
_updated = False


class DebianPackageError(RuntimeError):
    pass


def _apt_install(packages: list[str], no_recommends: bool) -> subprocess.CompletedProcess[str]:
    cmd = ["apt-get", "install", "-y", "-q"]
    if no_recommends:
        cmd.append("--no-install-recommends")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(cmd + packages, capture_output=True, text=True, env=env, timeout=900)


def ensure_command(command: str, packages: str | list[str], *, no_recommends: bool = False) -> str:
    """Return the path of ``command``, installing ``packages`` with apt-get first when it is missing."""
    found = shutil.which(command)
    if found:
        return found
    global _updated
    wanted = [packages] if isinstance(packages, str) else list(packages)
    if os.geteuid() != 0:
        raise DebianPackageError(
            f"{command!r} is not installed and the tests are not running as root: "
            f"install it with `apt-get install {' '.join(wanted)}`"
        )
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which(command)
        if found:
            return found
        result = _apt_install(wanted, no_recommends)
        if result.returncode != 0 and not _updated:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
            _updated = True
            result = _apt_install(wanted, no_recommends)
        if result.returncode != 0:
            raise DebianPackageError(
                f"apt-get install {' '.join(wanted)} failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
    found = shutil.which(command)
    if not found:
        raise DebianPackageError(f"installed {' '.join(wanted)} but {command!r} is still not on PATH")
    return found
