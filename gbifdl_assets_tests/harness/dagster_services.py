"""Real Dagster services for end-to-end tests: webserver, daemon and gRPC code server as subprocesses.

Each service runs in its own process group (so stopping it also stops what it spawned: the code
server a webserver or daemon starts for a ``python_module`` workspace, and the run workers the
daemon launches), on a free loopback port, with its stdout and stderr in a log file, and is only
handed to the test once it answers. A service that does not come up raises
:class:`DagsterServiceError` with the tail of its log.

API (all context managers stop their process group on exit, SIGTERM then SIGKILL)::

    env = dagster_env(dagster_home, GBIF_API_URL=sandbox.api_url)  # its media: the sandbox's own address
    workspace = write_workspace(tmp_path / "workspace.yaml")                 # python_module, in-process
    with grpc_code_server(env, log_dir=tmp_path) as code:                    # `dagster api grpc`
        workspace = write_workspace(tmp_path / "ws.yaml", grpc_port=code.port)
    with dagster_webserver(env, workspace, log_dir=tmp_path) as web:         # `dagster-webserver`
        web.url                                  # http://127.0.0.1:<port>
        web.graphql(query, variables)            # the ``data`` of a GraphQL answer; raises on errors
    with dagster_daemon(env, workspace, log_dir=tmp_path) as daemon:         # `dagster-daemon run`
        daemon.log_text()

``env`` is the whole environment of the child (``dagster_env`` starts from ``os.environ``); the
code location reads its resources from it (``GBIF_API_URL``, ``GBIFDL_DATA_URI``,
``GBIFDL_SPECS_DIR``, ``GBIFDL_ANNOTATIONS_DB`` ...); a loopback ``GBIF_API_URL`` (the sandbox) also
admits media at that address, and no other loopback URL.
:func:`initialize_instance` creates the instance's schema once before several processes open it
(two processes creating a fresh SQLite instance at once can corrupt it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port, port_is_open
from gbifdl_assets_tests.harness.procfs import STATE, group_stats

LOCATION_NAME = "gbifdl_assets"
DEFINITIONS_MODULE = "gbifdl_assets.definitions"
_BIN = Path(sys.executable).parent


class DagsterServiceError(RuntimeError):
    """A Dagster service did not start (the message carries the tail of its log) or a query failed."""


def tool(name: str) -> str:
    """A console script of this virtualenv (dagster, dagster-webserver, dagster-daemon)."""
    path = _BIN / name
    if not path.exists():
        raise DagsterServiceError(f"{path} not found: install the project with `pip install -e '.[dev]'`")
    return str(path)


def dagster_env(dagster_home: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a Dagster child process: ours, plus DAGSTER_HOME and ``extra``; this
    virtualenv's bin first on PATH (tools such as dagster-celery start sibling scripts by name)."""
    path = os.pathsep.join([str(_BIN), os.environ.get("PATH", "")])
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONUNBUFFERED": "1", "PATH": path}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def write_workspace(
    path: Path,
    *,
    grpc_port: int | None = None,
    module: str = DEFINITIONS_MODULE,
    location_name: str = LOCATION_NAME,
) -> Path:
    """A workspace.yaml: the code location over gRPC on ``grpc_port``, else loaded from ``module``."""
    if grpc_port is not None:
        entry = {"grpc_server": {"host": LOOPBACK, "port": grpc_port, "location_name": location_name}}
    else:
        entry = {
            "python_module": {"module_name": module, "attribute": "defs", "location_name": location_name}
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"load_from": [entry]}, sort_keys=False))
    return path


def initialize_instance(env: Mapping[str, str], timeout: float = 120.0) -> None:
    """Create the instance's storage once (``dagster instance info``) before services share it."""
    proc = subprocess.run(
        [tool("dagster"), "instance", "info"], env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise DagsterServiceError(f"`dagster instance info` failed: {proc.stderr.strip()[-3000:]}")


# ----------------------------------------------------------------------------------- processes
def _child_setup() -> None:
    # A new session = a new process group we can signal as a whole. Reset SIGINT/SIGTERM: a parent
    # started with `&` from a script hands down SIG_IGN, and dagster would then ignore both.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class ServiceProcess:
    """One started service: its process (group leader), port (if any) and log file."""

    name: str
    process: subprocess.Popen
    log_path: Path
    port: int | None = None
    _log_handle: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after ``timeout``. Idempotent."""
        pgid = self.process.pid  # the child called setsid(): its pid is the group id
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not _signal_group(pgid, sig):
                break  # the group is gone
            deadline = time.monotonic() + wait
            while group_alive(pgid) and time.monotonic() < deadline:
                self.process.poll()  # reap the leader so it does not count as alive
                time.sleep(0.1)
            if not group_alive(pgid):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether a process group still has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(…, 0) also succeeds for zombies; count only members that are not zombies.
    return any(fields[STATE] != "Z" for fields in group_stats(pgid))


def start_service(
    name: str,
    cmd: list[str],
    env: Mapping[str, str],
    *,
    log_dir: Path,
    ready: Callable[[ServiceProcess], bool],
    timeout: float = 90.0,
    port: int | None = None,
    cwd: Path | None = None,
) -> ServiceProcess:
    """Start ``cmd`` in its own process group and wait until ``ready`` is true (else stop it and raise)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    handle = log_path.open("ab")
    process = subprocess.Popen(
        cmd,
        env=dict(env),
        cwd=str(cwd) if cwd else None,
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        preexec_fn=_child_setup,
    )
    service = ServiceProcess(name, process, log_path, port, handle)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not service.alive():
                raise DagsterServiceError(
                    f"{name} exited with code {process.returncode} while starting; log {log_path}:\n"
                    f"{service.log_tail()}"
                )
            if ready(service):
                return service
            if time.monotonic() > deadline:
                raise DagsterServiceError(
                    f"{name} was not ready after {timeout:.0f} s; log {log_path}:\n{service.log_tail()}"
                )
            time.sleep(0.25)
    except BaseException:
        service.stop()
        raise


# ------------------------------------------------------------------------------------- services
@dataclass
class Webserver:
    """A running dagster-webserver: ``url``, ``graphql(...)`` and the service process."""

    service: ServiceProcess

    @property
    def port(self) -> int:
        assert self.service.port is not None
        return self.service.port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict:
        return graphql(self.url, query, variables, timeout=timeout)

    def log_text(self) -> str:
        return self.service.log_text()


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict:
    """POST a GraphQL query to ``<url>/graphql``; the ``data`` dict, or DagsterServiceError on errors."""
    response = requests.post(
        f"{url.rstrip('/')}/graphql",
        json={"query": query, "variables": dict(variables or {})},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise DagsterServiceError(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}")
    body = response.json()
    if body.get("errors"):
        raise DagsterServiceError(f"GraphQL errors: {body['errors']}")
    return body["data"]


_LOCATION_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def location_loaded(url: str) -> bool:
    """True once every code location finished loading; raise when one failed to load."""
    try:
        data = graphql(url, _LOCATION_STATUS, timeout=10)
    except (requests.RequestException, DagsterServiceError, ValueError):
        return False
    entries = data["workspaceOrError"].get("locationEntries") or []
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return False
    errors = [e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
    if errors:
        raise DagsterServiceError(
            f"code location failed to load: {errors[0]['locationOrLoadError']['message']}"
        )
    return True


@contextmanager
def dagster_webserver(
    env: Mapping[str, str], workspace: Path, *, log_dir: Path, timeout: float = 120.0
) -> Iterator[Webserver]:
    """``dagster-webserver -w workspace`` on a free port; ready when /server_info answers and the code
    location is LOADED (a location that fails to load raises with its error)."""
    port = free_port()
    cmd = [tool("dagster-webserver"), "-h", LOOPBACK, "-p", str(port), "-w", str(workspace)]

    def ready(service: ServiceProcess) -> bool:
        if not port_is_open(port):
            return False
        try:
            if requests.get(f"http://{LOOPBACK}:{port}/server_info", timeout=5).status_code != 200:
                return False
        except requests.RequestException:
            return False
        return location_loaded(f"http://{LOOPBACK}:{port}")

    service = start_service(
        "webserver", cmd, env, log_dir=log_dir, ready=ready, timeout=timeout, port=port, cwd=workspace.parent
    )
    try:
        yield Webserver(service)
    finally:
        service.stop()


@dataclass
class Daemon:
    """A running dagster-daemon."""

    service: ServiceProcess

    def log_text(self) -> str:
        return self.service.log_text()


#: The daemons a QueuedRunCoordinator instance needs for schedules, sensors, queued runs and backfills.
REQUIRED_DAEMONS = ("SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL")


@contextmanager
def dagster_daemon(
    env: Mapping[str, str],
    workspace: Path,
    *,
    log_dir: Path,
    timeout: float = 120.0,
    required: tuple[str, ...] = REQUIRED_DAEMONS,
) -> Iterator[Daemon]:
    """``dagster-daemon run -w workspace``; ready when every daemon in ``required`` has sent a heartbeat
    to the instance (so a run queued afterwards will be picked up).

    The heartbeats are read in this process from ``env["DAGSTER_HOME"]``: variables its dagster.yaml
    reads (``{env: DAGSTER_PG_HOST}`` ...) must be set in ``os.environ`` too.
    """
    import dagster as dg

    cmd = [tool("dagster-daemon"), "run", "-w", str(workspace)]
    started = time.time()
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])

    def ready(service: ServiceProcess) -> bool:
        beats = instance.get_daemon_heartbeats()
        return all(name in beats and beats[name].timestamp >= started for name in required)

    try:
        service = start_service(
            "daemon", cmd, env, log_dir=log_dir, ready=ready, timeout=timeout, cwd=workspace.parent
        )
    finally:
        instance.dispose()
    try:
        yield Daemon(service)
    finally:
        service.stop()


@dataclass
class CodeServer:
    """A running ``dagster api grpc`` code server on ``port`` (location ``location_name``)."""

    service: ServiceProcess
    location_name: str

    @property
    def port(self) -> int:
        assert self.service.port is not None
        return self.service.port


@contextmanager
def grpc_code_server(
    env: Mapping[str, str],
    *,
    log_dir: Path,
    module: str = DEFINITIONS_MODULE,
    location_name: str = LOCATION_NAME,
    timeout: float = 120.0,
) -> Iterator[CodeServer]:
    """``dagster api grpc -m module`` on a free port, as deploy/'s user-code container runs it; ready when
    the gRPC health check answers SERVING (the definitions are loaded)."""
    port = free_port()
    cmd = [
        tool("dagster"), "api", "grpc", "-h", LOOPBACK, "-p", str(port),
        "-m", module, "-a", "defs", "--location-name", location_name,
    ]  # fmt: skip

    def ready(service: ServiceProcess) -> bool:
        if not port_is_open(port):
            return False
        check = subprocess.run(
            [tool("dagster"), "api", "grpc-health-check", "-p", str(port), "-h", LOOPBACK],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return check.returncode == 0

    service = start_service("code_server", cmd, env, log_dir=log_dir, ready=ready, timeout=timeout, port=port)
    try:
        yield CodeServer(service, location_name)
    finally:
        service.stop()


# ------------------------------------------------------------------------------------ GraphQL
LAUNCH_PARTITION_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on RunConflict { message }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions runs(limit: 1000) { runId status tags { key value } } }
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
  }
}
"""

#: Backfill states after which nothing more happens.
BACKFILL_DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "FAILING")


def launch_asset_backfill(
    web: Webserver,
    asset_keys: list[list[str]],
    partition_names: list[str],
    *,
    title: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Launch a partition backfill of ``asset_keys`` (key paths) over ``partition_names``; its id.

    ``partition_names`` are keys of the root assets' partitions; downstream assets with other
    partitionings (image_store's training_set x shard) follow through their partition mappings.
    """
    params: dict[str, Any] = {
        "assetSelection": [{"path": path} for path in asset_keys],
        "partitionNames": partition_names,
        "fromFailure": False,
    }
    if title:
        params["title"] = title
    if run_config:
        params["runConfigData"] = dict(run_config)
    if tags:
        params["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    result = web.graphql(LAUNCH_PARTITION_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise DagsterServiceError(f"launchPartitionBackfill failed: {result}")
    return result["backfillId"]


def wait_for_backfill(web: Webserver, backfill_id: str, timeout: float = 180.0) -> dict:
    """Poll the backfill until it reaches a final state; its last status dict (raise on timeout)."""
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        last = web.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if last["__typename"] != "PartitionBackfill":
            raise DagsterServiceError(f"backfill {backfill_id}: {last}")
        if last["status"] in BACKFILL_DONE:
            return last
        time.sleep(1.0)
    raise DagsterServiceError(f"backfill {backfill_id} not done after {timeout:.0f} s: {last}")
