"""deploy/dagster.yaml loads against the real PostgreSQL server and creates Dagster's schema."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_deploy_instance_config_runs_on_postgres(postgres_server, tmp_path, monkeypatch):
    db = "dagster_deploy_test"
    postgres_server.create_database(db)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for var, value in {
        "DAGSTER_PG_USERNAME": postgres_server.user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_DB": db,
        "DAGSTER_PG_PORT": str(postgres_server.port),
    }.items():
        monkeypatch.setenv(var, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        instance.add_dynamic_partitions("training_set", ["smoke"])
        assert instance.get_dynamic_partitions("training_set") == ["smoke"]
    engine = sa.create_engine(postgres_server.dsn(db))
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"runs", "event_logs", "dynamic_partitions", "concurrency_slots"} <= tables


def test_dagster_instance_info_loads_the_deploy_config(postgres_server, tmp_path, monkeypatch):
    """The operator's check (`dagster instance info`) and the settings the deploy relies on."""
    import subprocess
    import sys

    db = "dagster_deploy_info"
    postgres_server.create_database(db)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    pg = {
        "DAGSTER_PG_USERNAME": postgres_server.user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_DB": db,
        "DAGSTER_PG_PORT": str(postgres_server.port),
    }
    for var, value in pg.items():
        monkeypatch.setenv(var, value)
    env = {**os.environ, "DAGSTER_HOME": str(home), **pg}
    dagster = str(Path(sys.executable).parent / "dagster")
    info = subprocess.run([dagster, "instance", "info"], env=env, capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stderr[-3000:]
    # (the run coordinator prints as NoneType here; the test above checks it is the QueuedRunCoordinator)
    for expected in (
        "run_storage: PostgresRunStorage",
        "event_log_storage: PostgresEventLogStorage",
        "schedule_storage: PostgresScheduleStorage",
        "DagsterDaemonScheduler",
        "max_concurrent_runs: 8",
        "retry_on_asset_or_op_failure: false",
    ):
        assert expected in info.stdout, info.stdout
    assert "change-me" not in info.stdout and pg["DAGSTER_PG_PASSWORD"] not in info.stdout
    # the per-pool limit the compose daemon sets at start
    set_limit = subprocess.run(
        [dagster, "instance", "concurrency", "set", "gbif_download", "3"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert set_limit.returncode == 0, set_limit.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_enabled
        assert instance.telemetry_enabled is False
        assert instance.nux_enabled is False
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 4 and str(pools.pool_granularity.value).lower() == "op"
        assert instance.event_log_storage.get_concurrency_info("gbif_download").slot_count == 3
