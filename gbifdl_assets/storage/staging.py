"""Staging files of local writes: how they are named, and how abandoned ones are swept away.

A local write goes to a staging file (``.gbifdl-tmp-...``) in the target's folder and is renamed
over the target when complete. A writer killed mid-write leaves its staging file behind; the name
records the machine and pid of the writer, so a later process can tell a dead writer's file (remove
it) from a live one's (keep it), and files of writers on other machines are judged by age alone.
Other modules that stage files beside a storage (the image store, snapshot ingest) use
:func:`staging_name` so that the same sweep covers them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

#: Temporary files of in-flight local writes start with this; ``list`` never returns them.
TMP_PREFIX = ".gbifdl-tmp-"
#: A staging file nobody has modified for this long is abandoned, whoever wrote it (see
#: :meth:`LocalStorage.cleanup`). Live writes touch their file all the time; an hour of silence is a
#: writer that was killed on another machine (where its pid cannot be checked).
STALE_AFTER_SECONDS = 3600.0
#: A process sweeps a folder for abandoned staging files on its first write there, then at most this often.
SWEEP_INTERVAL_SECONDS = 600.0


def _writer_tag() -> str:
    """This machine and pid namespace, so that a pid in a staging name is only checked where it
    means the same process (containers sharing a hostname have their own pid namespaces)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


_WRITER_TAG = _writer_tag()
# .gbifdl-tmp-<writer tag>-<pid>-<random>[suffix]; other staging names (older releases, other
# modules) carry no pid and are judged by age alone.
_STAGING_RE = re.compile(re.escape(TMP_PREFIX) + r"(?P<tag>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{32}")


def staging_name(suffix: str = "") -> str:
    """A name for a staging file that records who writes it (machine, pid), for :meth:`LocalStorage.cleanup`."""
    return f"{TMP_PREFIX}{_WRITER_TAG}-{os.getpid()}-{uuid.uuid4().hex}{suffix}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return True  # cannot tell: keep the file
    return True


def _is_abandoned(path: Path, name: str, stale_after: float, now: float) -> bool:
    match = _STAGING_RE.match(name)
    if match and match["tag"] == _WRITER_TAG and not _pid_alive(int(match["pid"])):
        return True
    try:
        return now - path.stat().st_mtime > stale_after
    except FileNotFoundError:
        return False  # committed or removed meanwhile


def remove_stale_staging(
    folder: Path, stale_after: float, wanted: Callable[[str], bool] = lambda name: True
) -> list[str]:
    """Remove the abandoned staging files directly in ``folder`` (those ``wanted``); their names."""
    now = time.time()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX) or not wanted(entry.name):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if _is_abandoned(path, entry.name, stale_after, now):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(entry.name)
    return removed


_SWEPT: dict[Path, float] = {}
_SWEPT_LOCK = threading.Lock()


def sweep_on_write(root: Path, folder: Path) -> None:
    """Before a write into ``folder``: remove abandoned staging files there and in the folders above
    it up to the storage root (a crashed snapshot ingest stages one level above the snapshot it
    would have committed), at most once per folder every SWEEP_INTERVAL_SECONDS in this process, so
    a burst of writes (images) lists each folder once, not once per file."""
    now = time.monotonic()
    folders = [folder, *(p for p in folder.parents if p == root or root in p.parents)]
    with _SWEPT_LOCK:
        due = [f for f in folders if now - _SWEPT.get(f, -SWEEP_INTERVAL_SECONDS) >= SWEEP_INTERVAL_SECONDS]
        for f in due:
            _SWEPT[f] = now
    for f in due:
        with contextlib.suppress(OSError):  # housekeeping must never fail a write
            remove_stale_staging(f, STALE_AFTER_SECONDS)
