"""A throw-away gbifdl_assets project (instance, data, specs) driven the way an operator drives it.

Runs go through the real code location (``gbifdl_assets.definitions``) configured by environment
variables, either in this process (``materialize``: fast, for the stages a test only needs as
set-up) or as ``dagster asset materialize`` subprocesses in their own process group (``start``),
which is what a crash test kills with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from gbifdl_assets_tests.harness.dagster_services import dagster_env, group_alive, tool

REPO = Path(__file__).resolve().parents[2]


def image_partition(training_set: str, shard: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"training_set": training_set, "shard": shard})


def all_assets() -> list[Any]:
    from gbifdl_assets.definitions import ALL_ASSETS

    return list(ALL_ASSETS)


@dataclass
class CliRun:
    """A ``dagster asset materialize`` subprocess; its own session, so SIGKILL reaches every child."""

    process: subprocess.Popen
    log_path: Path
    _handle: Any = field(repr=False, default=None)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(
                    f"the run ended (rc {self.process.returncode}) before {what}:\n{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.kill9()
                pytest.fail(f"timed out waiting for {what}:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP the process group: the run stands still exactly where it is (then kill9 it)."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def kill9(self) -> None:
        """SIGKILL the whole process group (the run and any downloader workers it forked)."""
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._close()
        deadline = time.monotonic() + 10
        while group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(self.process.pid), "processes of the killed run are still alive"

    def wait(self, timeout: float) -> int:
        try:
            rc = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            pytest.fail(f"run did not finish in {timeout} s:\n{self.log_text()[-3000:]}")
        self._close()
        return rc

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class DagsterProject:
    root: Path
    api_url: str
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    runs: list[CliRun] = field(default_factory=list)

    @classmethod
    def create(
        cls, root: Path, *, api_url: str, monkeypatch: pytest.MonkeyPatch, **extra_env: str
    ) -> DagsterProject:
        home = root / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
        (root / "specs").mkdir(exist_ok=True)
        settings = {
            "GBIF_API_URL": api_url,
            "GBIFDL_DATA_URI": str(root / "data"),
            "GBIFDL_SPECS_DIR": str(root / "specs"),
            "GBIFDL_ANNOTATIONS_DB": f"sqlite:///{root / 'annotations.sqlite'}",
            "GBIFDL_SEED_RULES": "0",
            **extra_env,
        }
        for name, value in {"DAGSTER_HOME": str(home), **settings}.items():
            monkeypatch.setenv(name, value)
        return cls(root, api_url, dagster_env(home, **settings), monkeypatch)

    def set_env(self, **values: str) -> None:
        """Environment of both the in-process runs and the subprocess runs."""
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)
            self.env[name] = value

    # ------------------------------------------------------------------------------ locations
    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def storage(self) -> Any:
        from gbifdl_assets.storage import open_storage

        return open_storage(str(self.data))

    def write_spec(self, name: str, body: str) -> None:
        (self.root / "specs" / f"{name}.yaml").write_text(f"name: {name}\n{body}")

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def add_partition(self, name: str) -> None:
        with self.instance() as instance:
            instance.add_dynamic_partitions("training_set", [name])

    # ---------------------------------------------------------------------------------- runs
    def resources(self) -> dict[str, Any]:
        from gbifdl_assets.defs.resources import ImageFetchResource, default_resources

        return {**default_resources(), "image_fetch": ImageFetchResource(allow_loopback=True)}

    def materialize(
        self, selection: Sequence[str], partition: str | dg.MultiPartitionKey | None, **kwargs: Any
    ) -> dg.ExecuteInProcessResult:
        """In this process, on the project's instance (set-up stages)."""
        with self.instance() as instance:
            return dg.materialize(
                all_assets(),
                selection=list(selection),
                partition_key=partition,
                instance=instance,
                resources=self.resources(),
                **kwargs,
            )

    def upstream(self, training_set: str) -> None:
        """Everything before image_store for one training set."""
        assert self.materialize(["annotation_rulesets"], None).success
        stages = ["species_list", "gbif_download", "occurrence_snapshot", "annotated_occurrences"]
        assert self.materialize([*stages, "balanced_manifest"], training_set).success

    def start(
        self, select: str, partition: str | None, *, run_config: dict | None = None, env: dict | None = None
    ) -> CliRun:
        """``dagster asset materialize`` as a subprocess group (executes the run in that process)."""
        command = [
            tool("dagster"),
            "asset",
            "materialize",
            "-m",
            "gbifdl_assets.definitions",
            "--select",
            select,
        ]
        if partition is not None:
            command += ["--partition", partition]
        if run_config:
            command += ["--config-json", json.dumps(run_config)]
        log_path = self.root / f"run-{len(self.runs)}.log"
        handle = open(log_path, "wb")  # noqa: SIM115 - closed by CliRun
        process = subprocess.Popen(
            command,
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        run = CliRun(process, log_path, handle)
        self.runs.append(run)
        return run

    def stop_all(self) -> None:
        for run in self.runs:
            if run.process.poll() is None or group_alive(run.process.pid):
                run.kill9()
