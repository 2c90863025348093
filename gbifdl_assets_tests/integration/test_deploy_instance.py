"""deploy/dagster.yaml loads against the real PostgreSQL server and creates Dagster's schema."""

from __future__ import annotations

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
