"""``make dev`` in a test: the offline endpoint, then ``dagster dev`` on an embedded instance.

The commands are those of the Makefile's ``dev`` target (``gbifdl endpoint`` writes the env file,
``dagster instance concurrency set gbif_download 3``, ``dagster dev -w workspace.yaml``), run with this
virtualenv's tools instead of ``make`` (which would install its own ``.venv``). The sandbox that
``gbifdl endpoint`` starts in the background (on a free port, so no other test's sandbox is reused)
is stopped with the stack.

API::

    with offline_endpoint(tmp_path) as endpoint:               # GBIF_API_URL + account of the sandbox
        env = dev_env(home, endpoint, GBIFDL_SPECS_DIR=...)
        with dagster_dev(env, log_dir=tmp_path / "logs") as dev:  # webserver answers, location LOADED
            outcome = wait_for_exports(home, ["big-cats", ...], timeout=600)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dagster as dg
import requests

from gbifdl_assets_tests.harness.dagster_services import (
    ServiceProcess,
    dagster_env,
    location_loaded,
    start_service,
    tool,
)
from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port

REPO = Path(__file__).resolve().parents[2]
#: every sensor of the code location: each must have ticked after the second start
SENSORS = (
    "training_set_specs_sensor",
    "gbif_download_sensor",
    "annotation_rules_sensor",
    "gbifdl_automation",
)
#: the daemon's log lines of one evaluation of a sensor ({name}) in ``dagster dev``'s output (the
#: automation sensor's cursor is in the instance, so its first evaluation after a start is the one
#: that would rebuild anything)
TICK_LINES = ("Checking for new runs for sensor: {name}", "Finished auto-materialization tick for {name} ")

#: Runs that ended badly: any of them fails the "no failed run" promise of ``make dev``.
BAD_RUN_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass
class OfflineEndpoint:
    """What ``gbifdl endpoint --offline`` chose: the env file's variables and the sandbox's pid."""

    variables: dict[str, str]
    sandbox_pid: int | None
    line: str


@contextmanager
def offline_endpoint(work: Path) -> Iterator[OfflineEndpoint]:
    """``gbifdl endpoint --offline --env-file …`` on a free sandbox port; the sandbox it started in
    the background is stopped on exit."""
    env_file, log = work / "gbif-endpoint.env", work / "gbif-sandbox.log"
    env = {**os.environ, "GBIFDL_OFFLINE": "1", "GBIFDL_SANDBOX_PORT": str(free_port())}
    env.pop("GBIF_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gbifdl_assets.cli", "endpoint", "--env-file", str(env_file),
         "--sandbox-log", str(log)],
        env=env, capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"gbifdl endpoint failed: {proc.stderr[-3000:]}")
    found = re.search(r"\(pid (\d+);", proc.stderr)
    pid = int(found.group(1)) if found else None
    variables = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#"
    )
    try:
        yield OfflineEndpoint(variables, pid, proc.stderr.strip())
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def dev_env(home: Path, endpoint: OfflineEndpoint, **extra: str) -> dict[str, str]:
    """The environment ``make dev`` gives ``dagster dev``: DAGSTER_HOME holding ./dagster.yaml, the
    endpoint's variables, and ``extra`` (data folder, spec folder, shards …)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = dagster_env(home, **endpoint.variables, **extra)
    env.pop("GBIFDL_OFFLINE", None)  # the endpoint is decided: GBIF_API_URL names the sandbox
    return env


@dataclass
class DevStack:
    """A running ``dagster dev``: its webserver's URL and the process group."""

    service: ServiceProcess
    url: str

    def log_tail(self, lines: int = 60) -> str:
        return self.service.log_tail(lines)


@contextmanager
def dagster_dev(env: Mapping[str, str], *, log_dir: Path, timeout: float = 180.0) -> Iterator[DevStack]:
    """``dagster instance concurrency set gbif_download 3`` then ``dagster dev -w workspace.yaml`` from
    the repository (as ``make dev``); ready when the webserver serves the LOADED code location."""
    subprocess.run(
        [tool("dagster"), "instance", "concurrency", "set", "gbif_download", "3"],
        env=dict(env), check=True, capture_output=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    cmd = [tool("dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-h", LOOPBACK, "-p", str(port)]

    def ready(_: ServiceProcess) -> bool:
        try:
            if requests.get(f"{url}/server_info", timeout=5).status_code != 200:
                return False
        except requests.RequestException:
            return False
        return location_loaded(url)

    service = start_service("dagster_dev", cmd, env, log_dir=log_dir, ready=ready, timeout=timeout, cwd=REPO)
    try:
        yield DevStack(service, url)
    finally:
        service.stop(timeout=30)


@dataclass
class Outcome:
    """Where the instance stands: runs by status, and the training sets whose export exists."""

    runs: list[dg.DagsterRun]
    exported: set[str]

    @property
    def bad_runs(self) -> list[dg.DagsterRun]:
        return [r for r in self.runs if r.status in BAD_RUN_STATUSES]

    def describe(self, instance: dg.DagsterInstance) -> str:
        lines = []
        for run in sorted(self.runs, key=lambda r: r.run_id):
            lines.append(
                f"{run.run_id[:8]} {run.status.value} {run.tags.get('gbifdl/trigger')} "
                f"{run.tags.get('dagster/partition')} {run.tags.get('gbifdl/target')}"
            )
            if run.status in BAD_RUN_STATUSES:
                for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
                    lines.append(f"    {event.message[:600]}")
        return "\n".join(lines)


def outcome(instance: dg.DagsterInstance) -> Outcome:
    return Outcome(
        list(instance.get_runs(limit=1000)),
        set(instance.get_materialized_partitions(dg.AssetKey("training_export"))),
    )


def wait_for_exports(
    instance: dg.DagsterInstance, training_sets: Sequence[str], *, timeout: float, stack: DevStack
) -> tuple[Outcome, float]:
    """Wait until every training set's training_export materialized and no run is left going; fail at
    the first failed run. Returns the outcome and the seconds it took."""
    started = time.monotonic()
    while True:
        now = outcome(instance)
        if now.bad_runs:
            raise AssertionError(
                f"a run failed:\n{now.describe(instance)}\n--- dagster dev\n{stack.log_tail()}"
            )
        going = [r for r in now.runs if not r.is_finished]
        if set(training_sets) <= now.exported and not going:
            return now, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"after {timeout:.0f} s the exports of {sorted(set(training_sets) - now.exported)} are "
                f"missing ({len(going)} runs going):\n{now.describe(instance)}\n--- dagster dev\n"
                f"{stack.log_tail()}"
            )
        time.sleep(2.0)


def sensors_ticked(log_text: str) -> dict[str, bool]:
    """Which sensors the daemon evaluated, by its log lines (``log_text``: the part of one start)."""
    return {name: any(line.format(name=name) in log_text for line in TICK_LINES) for name in SENSORS}


def run_dev_twice(tmp_path: Path, specs: Path, training_sets: tuple[str, ...], timeout: float, **env: str):
    """First start: every set exported, no failed run. Second start: every sensor ticks, no run."""
    home, logs = tmp_path / "dagster_home", tmp_path / "logs"
    # the instance is also read here, and its dagster.yaml reads DAGSTER_HOME
    with offline_endpoint(tmp_path) as endpoint, mock.patch.dict(os.environ, {"DAGSTER_HOME": str(home)}):
        assert endpoint.sandbox_pid and "offline" in endpoint.line, endpoint.line
        variables = dev_env(
            home,
            endpoint,
            GBIFDL_SPECS_DIR=str(specs),
            GBIFDL_DATA_URI=str(tmp_path / "data"),
            GBIFDL_ANNOTATIONS_DB=f"sqlite:///{tmp_path / 'annotations.sqlite'}",
            **env,
        )
        started = time.monotonic()
        with dagster_dev(variables, log_dir=logs) as stack:
            ready = time.monotonic() - started
            with dg.DagsterInstance.from_config(str(home)) as instance:
                first, seconds = wait_for_exports(instance, training_sets, timeout=timeout, stack=stack)
        print(
            f"\ndagster dev ready in {ready:.1f} s; {len(first.runs)} runs exported {sorted(first.exported)} in {seconds:.1f} s"
        )
        by_trigger: dict[str, int] = {}
        for run in first.runs:
            trigger = run.tags.get("gbifdl/trigger", "?")
            by_trigger[trigger] = by_trigger.get(trigger, 0) + 1
        print(f"runs by trigger: {by_trigger}")
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in first.runs)
        assert set(by_trigger) <= {"spec_added", "rules_changed", "download_ended", "automation"}, by_trigger

        # the second start: the same instance, data and specs
        log_start = len((logs / "dagster_dev.log").read_text(errors="replace"))
        with dagster_dev(variables, log_dir=logs) as stack:
            deadline = time.monotonic() + 150
            while not all((ticked := sensors_ticked(stack.service.log_text()[log_start:])).values()):
                assert time.monotonic() < deadline, f"sensors that never ticked: {ticked}"
                time.sleep(3)
            time.sleep(10)  # the evaluations that just started have launched whatever they request
            with dg.DagsterInstance.from_config(str(home)) as instance:
                second = outcome(instance)
                new = [r for r in second.runs if r.run_id not in {f.run_id for f in first.runs}]
                assert not new, second.describe(instance)
    return first, seconds
