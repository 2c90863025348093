"""Run a benchmark command in a fresh child process: wall time, CPU time and its own peak memory.

Why not ``ru_maxrss``: on Linux a child's maximum RSS (from ``wait4``, ``RUSAGE_CHILDREN``, and even
the child's own ``RUSAGE_SELF``) starts from the RSS of the process it was forked from, because
``exec`` folds the forked copy's high-water mark into it. Under a pytest parent holding 4.6 GB every
run reported 4.6 GB. ``VmHWM`` in ``/proc/<pid>/status`` is the high-water mark of the process's own
address space (reset by ``exec``), so it is read instead:

* ``peak_tree_rss_mb``: the largest sum of ``VmRSS`` over the child and all its descendants, sampled
  every ``interval`` seconds (what the run holds at once: the figure the targets mean);
* ``peak_process_rss_mb``: the largest ``VmHWM`` any single process of the tree reached;
* ``sum_process_hwm_mb``: each process's own ``VmHWM`` added up (an upper bound of the tree's peak,
  exact when all processes peak together).

A child forked but not yet exec'd shares its parent's pages and shows the parent's ``VmRSS``, so it
is counted twice while it lives; ``sum_process_hwm_mb`` far above ``peak_tree_rss_mb`` with many
``processes_seen`` gives such forks away (the downloader forked ``ldconfig`` at every ledger flush
until ``media/store.py`` stopped calling ``ctypes.util.find_library``).

CPU time comes from ``wait4``: user + system time of the child and of every descendant it waited
for (worker processes included), which is not inherited.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["run_measured", "tree_pids"]


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants (children of every thread, not only the main one)."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except (OSError, ValueError):
                continue
    return pids


def _memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of ``pid`` in kB, or None once it is gone (or a zombie without memory)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = hwm = None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    if rss is None or hwm is None:
        return None
    return rss, hwm


def run_measured(
    cmd: list[str], *, cwd: Path | str | None = None, env: dict | None = None, interval: float = 0.1
) -> dict[str, Any]:
    """Run ``cmd``; its last stdout line (JSON) updated with the measurements. Raises on failure."""
    load_before = os.getloadavg()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=cwd, env=env)
        peak_tree = 0
        hwm: dict[int, int] = {}
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_tree
            while True:
                total = 0
                for pid in tree_pids(proc.pid):
                    mem = _memory_kb(pid)
                    if mem is not None:
                        total += mem[0]
                        hwm[pid] = max(hwm.get(pid, 0), mem[1])
                peak_tree = max(peak_tree, total)
                if stop.wait(interval):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    result.update(
        wall_seconds=round(wall, 3),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 3),
        user_seconds=round(usage.ru_utime, 3),
        system_seconds=round(usage.ru_stime, 3),
        peak_tree_rss_mb=round(peak_tree / 1024, 1),
        peak_process_rss_mb=round(max(hwm.values(), default=0) / 1024, 1),
        sum_process_hwm_mb=round(sum(hwm.values()) / 1024, 1),
        processes_seen=len(hwm),
        load_before=[round(x, 2) for x in load_before],
    )
    return result
