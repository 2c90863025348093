"""Reading processes from ``/proc/<pid>/stat``: one parser for the harnesses and measurements.

The fields after the command name (which may hold spaces and parentheses, hence the split at the last
``)``), numbered from 0: ``state`` 0, ``pgrp`` 2, ``utime`` 11, ``stime`` 12, ``rss`` 21 (pages).
"""

from __future__ import annotations

import os
from pathlib import Path

STATE, PGRP, UTIME, STIME, RSS = 0, 2, 11, 12, 21
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int | str) -> list[str] | None:
    """The stat fields of ``pid`` after its command name; None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_stats(pgid: int) -> list[list[str]]:
    """The stat fields of every process in process group ``pgid`` (zombies included)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(entry.name)
        if fields is not None and int(fields[PGRP]) == pgid:
            members.append(fields)
    return members
