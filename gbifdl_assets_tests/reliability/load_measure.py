"""Measuring a load run: wall time, CPU and peak memory per stage, the sandbox's share, the report.

A stage is one or more ``dagster asset materialize`` process groups (run at most ``slots`` at a time).
Its CPU is what those groups used (the test process's reaped children: the run, its step process and
downloader workers), the sandbox's CPU is read from its own process over the same interval, and the
peak memory is the largest sum of the groups' resident memory sampled every 0.25 s.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gbifdl_assets_tests.harness.procfs import PAGE_BYTES, RSS, group_stats
from gbifdl_assets_tests.harness.sandbox_process import SandboxProcess

HERE = Path(__file__).resolve().parent
REPORT = HERE / "LOAD_REPORT.md"
RESULTS = HERE / "load_results.json"


@dataclass
class Stage:
    name: str
    seconds: float
    cpu_seconds: float
    sandbox_cpu_seconds: float
    peak_mb: float
    note: str = ""
    in_graph: bool = True  # counted in the whole graph's time (the plain-call anchor is not)


@dataclass
class LoadRun:
    key: str
    title: str
    started_at: str
    machine: str
    load_before: list[float]
    load_after: list[float] = field(default_factory=list)
    sandbox: dict[str, Any] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def machine_line() -> str:
    mem = PAGE_BYTES * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.1f} GiB RAM, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def _group_rss_mb(pgid: int) -> float:
    """Resident memory of every live process in a process group, in MB."""
    return sum(int(fields[RSS]) for fields in group_stats(pgid)) * PAGE_BYTES / 2**20


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(
    name: str,
    starts: Sequence[Callable[[], Any]],
    sandbox: SandboxProcess,
    *,
    slots: int = 1,
    on_done: Callable[[Any, float], None] | None = None,
) -> Stage:
    """Start each of ``starts`` (a callable returning a CliRun), at most ``slots`` at a time, and
    measure them as one stage. ``on_done(run, seconds)`` is called as each run ends."""
    pending = list(starts)
    running: list[tuple[Any, float]] = []
    cpu0, sandbox0, started = _children_cpu(), sandbox.cpu_seconds(), time.monotonic()
    peak = 0.0
    while pending or running:
        while pending and len(running) < slots:
            running.append((pending.pop(0)(), time.monotonic()))
        peak = max(peak, sum(_group_rss_mb(run.process.pid) for run, _ in running))
        for item in list(running):
            run, run_started = item
            if run.process.poll() is None:
                continue
            running.remove(item)
            seconds = time.monotonic() - run_started
            run._close()
            assert run.process.returncode == 0, f"{name} failed:\n{run.log_text()[-4000:]}"
            if on_done is not None:
                on_done(run, seconds)
        time.sleep(0.25)
    return Stage(
        name,
        seconds=time.monotonic() - started,
        cpu_seconds=_children_cpu() - cpu0,
        sandbox_cpu_seconds=sandbox.cpu_seconds() - sandbox0,
        peak_mb=peak,
    )


def save(run: LoadRun) -> None:
    """Keep this run's numbers beside the other size's and write the report of both."""
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs[run.key] = asdict(run)
    RESULTS.write_text(json.dumps(runs, indent=1) + "\n")
    REPORT.write_text(render(runs))


def render(runs: dict[str, dict]) -> str:
    lines = [
        "# Load report",
        "",
        "Written by `gbifdl_assets_tests/reliability/test_load_soak.py` (`make soak` runs both sizes; the",
        "numbers are also in `load_results.json`). Each stage ran as `dagster asset materialize` processes",
        "against the offline sandbox, which ran as its own process (`gbifdl sandbox serve`): wall time of",
        "the stage (it includes ~5-10 s of Python/Dagster start-up per process), CPU seconds of the",
        "product's processes (the run, its step process, downloader workers) and of the sandbox over the",
        "same interval, peak of the summed resident memory of the stage's processes (sampled every 0.25 s).",
        "",
    ]
    for key in sorted(runs, key=lambda k: runs[k]["sandbox"].get("occurrences", 0)):
        lines += _section(runs[key])
    return "\n".join(lines)


def _section(run: dict) -> list[str]:
    sandbox, summary = run["sandbox"], run["summary"]
    before, after = run["load_before"], run["load_after"] or [0, 0, 0]
    lines = [
        f"## {run['title']}",
        "",
        f"- run started: {run['started_at']} UTC; machine: {run['machine']}",
        f"- load average (1/5/15 min) before: {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f}; after: "
        f"{after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} (a load above ~1 before the run means other work "
        "shared the 2 cores: the times are then upper bounds)",
        f"- sandbox: {sandbox['occurrences']:,} occurrences (seed 42, 2 % hidden media faults, 3 % duplicate "
        f"photos), its own process: ready in {sandbox['ready_seconds']:.1f} s, peak {sandbox['peak_mb']:,.0f} MB, "
        f"{sandbox['cpu_seconds']:,.0f} CPU-s in the stages: **{summary['sandbox_share']:.0%} of all CPU** "
        "(product and sandbox) during the run",
        "",
        "| stage | wall (s) | CPU (s) | sandbox CPU (s) | peak memory (MB) | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for s in run["stages"]:
        lines.append(
            f"| {s['name']} | {s['seconds']:,.1f} | {s['cpu_seconds']:,.1f} | {s['sandbox_cpu_seconds']:,.1f} "
            f"| {s['peak_mb']:,.0f} | {s['note']} |"
        )
    lines += [""] + [f"- {line}" for line in summary.get("lines", [])] + [""]
    return lines
