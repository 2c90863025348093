"""The PostgreSQL harness starts a real server that psycopg2, SQLAlchemy and a Dagster instance use."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
import sqlalchemy as sa

from gbifdl_assets_tests.harness import PostgresServer, PostgresStartError


def test_psycopg2_roundtrip(pg_database):
    conn = pg_database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE species (key bigint PRIMARY KEY, name text NOT NULL)")
            cur.executemany(
                "INSERT INTO species VALUES (%s, %s)",
                [(1898286, "Vanessa atalanta"), (5231190, "Panthera leo")],
            )
        with conn.cursor() as cur:
            cur.execute("SELECT name FROM species ORDER BY key")
            assert [r[0] for r in cur.fetchall()] == ["Vanessa atalanta", "Panthera leo"]
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == pg_database.name
    finally:
        conn.close()


def test_sqlalchemy_dsn_uses_psycopg2(pg_database):
    assert pg_database.dsn.startswith("postgresql+psycopg2://postgres@127.0.0.1:")
    engine = sa.create_engine(pg_database.dsn)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (v text)"))
            conn.execute(sa.text("INSERT INTO t VALUES ('Größe ✓')"))  # UTF8 cluster
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT v FROM t")).scalar_one() == "Größe ✓"
    finally:
        engine.dispose()


def test_create_database_is_isolated(postgres_server):
    dsn = postgres_server.create_database("harness_extra")
    try:
        assert dsn == postgres_server.dsn("harness_extra")
        engine = sa.create_engine(dsn)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (x int)"))
        engine.dispose()
        conn = postgres_server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT datname FROM pg_database WHERE datname = 'harness_extra'")
                assert cur.fetchone() is not None
                cur.execute("SELECT to_regclass('only_here')")  # not visible from the postgres db
                assert cur.fetchone()[0] is None
        finally:
            conn.close()
    finally:
        postgres_server.drop_database("harness_extra")


def test_rejects_bad_database_name(postgres_server):
    with pytest.raises(ValueError, match="invalid database name"):
        postgres_server.create_database('x"; DROP DATABASE postgres; --')


def test_server_runs_unprivileged_with_fast_settings(postgres_server):
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('data_directory'), current_setting('fsync')")
            data_dir, fsync = cur.fetchone()
    finally:
        conn.close()
    assert fsync == "off"
    owner = Path(data_dir).stat().st_uid
    if os.geteuid() == 0:
        assert pwd.getpwuid(owner).pw_name == "gbifdl_pg"
    else:
        assert owner == os.geteuid()
    assert len(str(postgres_server.socket_dir)) < 80  # unix socket path limit


def test_startup_failure_reports_server_log():
    server = PostgresServer(extra_settings={"shared_buffers": "not-a-size"})
    with pytest.raises(PostgresStartError) as info:
        server.start()
    message = str(info.value)
    assert "shared_buffers" in message  # the server's own complaint, from its log
    assert not server.running
    assert server._root is None  # temp dir removed


def test_dagster_instance_on_postgres(pg_dagster_home, pg_database):
    import dagster as dg
    from dagster_postgres import PostgresRunStorage

    @dg.asset
    def tiny() -> int:
        return 1

    instance = dg.DagsterInstance.from_config(str(pg_dagster_home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        result = dg.materialize([tiny], instance=instance)
        assert result.success
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
    finally:
        instance.dispose()

    conn = pg_database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            tables = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT count(*) FROM runs")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()
    assert {"runs", "event_logs", "dynamic_partitions", "alembic_version"} <= tables
