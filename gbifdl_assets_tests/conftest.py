"""Shared pytest fixtures: real services (PostgreSQL, S3 endpoint, GBIF sandbox) and test hygiene.

Session fixtures start each service once, on demand (a unit-test run starts nothing):

* ``postgres_server``: :class:`PostgresServer` (initdb in a temp dir, runs as an unprivileged user
  when the tests run as root); ``pg_database`` gives each test its own fresh database, and
  ``pg_dagster_home`` a DAGSTER_HOME whose instance stores everything in that database.
* ``s3_server``: moto in server mode (a subprocess, so fault tests can stop or suspend it);
  ``s3_bucket`` gives each test a fresh bucket.
* ``sandbox``: the offline GBIF API (skipped while ``gbifdl_assets.sandbox`` is not importable).

AWS hygiene: for the whole session the AWS variables of the caller's shell are removed and the shared
config/credentials files point nowhere, so no test can use (or leak) real credentials from ``~/.aws``
or reach instance metadata over the network. Dummy credentials are set only inside ``s3_bucket``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gbifdl_assets_tests.harness import PostgresServer, S3Server

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = (REPO_ROOT / ".." / "shared" / "fixtures" / "gbif").resolve()

# Start-up durations of the session services, printed in the terminal summary.
_STARTUP_SECONDS: dict[str, float] = {}


# ------------------------------------------------------------------------------------ hooks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder, so `-m "not integration and not e2e"` selects the fast unit tests."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _STARTUP_SECONDS:
        started = ", ".join(f"{name} {secs:.2f} s" for name, secs in _STARTUP_SECONDS.items())
        terminalreporter.write_line(f"harness start-up: {started}")


# ---------------------------------------------------------------------------------- hygiene
@pytest.fixture(scope="session", autouse=True)
def _aws_env_hygiene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    empty = tmp_path_factory.mktemp("no-aws-config")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                mp.delenv(name)
        mp.setenv("AWS_CONFIG_FILE", str(empty / "config"))  # files that do not exist
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe 169.254.169.254
        yield


@pytest.fixture(autouse=True)
def _no_leftover_dagster_state_storage() -> Iterator[None]:
    """A Dagster evaluation context left open (``build_*_context`` without ``with``) keeps its
    instance's state storage as the process-wide current one; once that instance is gone, every
    later ``materialize`` in the process fails on a dead weakref, in whichever test runs next.
    Tests should close their contexts (see test_schedules); this keeps one leak from failing others."""
    yield
    if "dagster" not in sys.modules:
        return
    from dagster._core.storage.defs_state import base

    base._current_storage.set(None)


# ---------------------------------------------------------------------------------- paths
@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Recorded GBIF responses and archives (read-only): ../shared/fixtures/gbif from the repo root."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip(
            f"GBIF fixtures not found at {FIXTURES_DIR}: these tests need the shared recorded "
            "responses next to the repository (../shared/fixtures/gbif)"
        )
    return FIXTURES_DIR


@pytest.fixture
def tmp_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DAGSTER_HOME (set in the environment) holding a copy of the repo's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    repo_yaml = REPO_ROOT / "dagster.yaml"
    if repo_yaml.is_file():
        shutil.copy(repo_yaml, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


# -------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    started = time.monotonic()
    with PostgresServer() as server:
        _STARTUP_SECONDS["postgres"] = time.monotonic() - started
        yield server


@dataclass
class PgDatabase:
    """A database of its own for one test on the session server."""

    name: str
    server: PostgresServer = field(repr=False)

    @property
    def dsn(self) -> str:
        """SQLAlchemy URL (psycopg2 driver)."""
        return self.server.dsn(self.name)

    @property
    def libpq_dsn(self) -> str:
        return self.server.libpq_dsn(self.name)

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def user(self) -> str:
        return self.server.user

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg2 connection (caller closes it)."""
        return self.server.connect(self.name, **kwargs)

    def dagster_storage(self) -> dict[str, Any]:
        """The ``storage:`` block of a dagster.yaml that keeps runs, events and schedules here."""
        return {"postgres": {"postgres_db": self.server.dagster_postgres_db(self.name)}}


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[PgDatabase]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    yield PgDatabase(name, postgres_server)
    if postgres_server.running:
        try:
            postgres_server.drop_database(name)
        except Exception as exc:  # a leftover database on a throw-away server is harmless
            print(f"note: could not drop test database {name}: {exc}")


@pytest.fixture
def pg_dagster_home(pg_database: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME (set in the environment) whose instance stores everything in ``pg_database``."""
    import yaml

    home = tmp_path / "dagster_home_pg"
    home.mkdir()
    config = {
        "storage": pg_database.dagster_storage(),
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


# -------------------------------------------------------------------------------------- S3
@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    started = time.monotonic()
    with S3Server() as server:
        _STARTUP_SECONDS["s3 (moto)"] = time.monotonic() - started
        yield server


@dataclass
class S3Bucket:
    """A fresh bucket on the session S3 endpoint; ``storage_options()`` feeds ``open_storage``."""

    name: str
    server: S3Server = field(repr=False)

    @property
    def uri(self) -> str:
        return f"s3://{self.name}"

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    @property
    def access_key_id(self) -> str:
        return self.server.access_key_id

    @property
    def secret_access_key(self) -> str:
        return self.server.secret_access_key

    @property
    def region_name(self) -> str:
        return self.server.region_name

    def storage_options(self) -> dict[str, Any]:
        return self.server.storage_options()

    def client(self) -> Any:
        return self.server.client()

    def storage(self, prefix: str = "") -> Any:
        """``open_storage("s3://<bucket>/<prefix>")`` against this endpoint."""
        from gbifdl_assets.storage import open_storage

        uri = f"{self.uri}/{prefix.strip('/')}" if prefix.strip("/") else self.uri
        return open_storage(uri, **self.storage_options())

    def __str__(self) -> str:
        return self.name


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    if not s3_server.running:  # a fault-injection test may have stopped it; bring it back
        s3_server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region_name)
    name = s3_server.make_bucket(f"test-{uuid.uuid4().hex[:16]}")
    yield S3Bucket(name, s3_server)
    if s3_server.running:
        s3_server.resume()  # in case the test left it suspended
        _empty_and_delete_bucket(s3_server, name)


def _empty_and_delete_bucket(server: S3Server, name: str) -> None:
    """Free moto's memory; failures only cost memory on a throw-away server."""
    try:
        client = server.client()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", ())
        for upload in uploads:
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        client.delete_bucket(Bucket=name)
    except Exception as exc:
        print(f"note: could not delete test bucket {name}: {exc}")


# -------------------------------------------------------------------------------- sandbox
@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """The offline GBIF sandbox (20,000 occurrences, seed 42, downloads ready after ~1 s)."""
    try:
        from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
    except ImportError as exc:
        # Skip only while the sandbox package (or its entry points) does not exist yet; a sandbox
        # that exists but fails to import (a bug, a missing dependency) must fail loudly.
        missing_module = isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith(
            "gbifdl_assets.sandbox"
        )
        missing_name = "cannot import name" in str(exc) and "gbifdl_assets.sandbox" in str(exc)
        if missing_module or missing_name:
            pytest.skip(f"gbifdl_assets.sandbox is not available yet ({exc})")
        raise
    started = time.monotonic()
    running = start_sandbox(SandboxConfig(occurrences=20_000, seed=42, download_seconds=(0.5, 0.5)))
    _STARTUP_SECONDS["sandbox"] = time.monotonic() - started
    try:
        yield running
    finally:
        running.stop()
