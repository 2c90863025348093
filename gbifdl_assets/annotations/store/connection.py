"""Engines per backend (SQLite embedded, PostgreSQL and other servers) and first-use schema creation."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gbifdl_assets.annotations.store.errors import StoreError
from gbifdl_assets.annotations.store.schema import metadata, state_t
from gbifdl_assets.annotations.store.settings import SCHEMA_VERSION

__all__ = ["create_schema", "make_engine", "redact_url"]


def redact_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def make_engine(url: str, echo: bool) -> Engine:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, echo)
    return sa.create_engine(url, echo=echo, pool_pre_ping=True)


def _sqlite_engine(url: str, db: str | None, echo: bool) -> Engine:
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if not db or db == ":memory:":
        # one shared connection, or every pooled connection would see its own empty database
        engine = sa.create_engine(
            url, echo=echo, connect_args={"check_same_thread": False}, poolclass=sa.pool.StaticPool
        )
    else:
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        if db and db != ":memory:":
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cur.close()

    return engine


def create_schema(engine: Engine, url: str) -> None:
    """Create missing tables and the state row; refuse a store written by a newer gbifdl_assets."""
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            if conn.execute(sa.select(state_t.c.id).where(state_t.c.id == 1)).first() is None:
                conn.execute(
                    sa.insert(state_t).values(
                        id=1, store_id=str(uuid.uuid4()), schema_version=SCHEMA_VERSION, seq=0
                    )
                )
    except sa.exc.IntegrityError:  # another process created it at the same moment
        pass
    with engine.connect() as conn:
        found = conn.execute(sa.select(state_t.c.schema_version).where(state_t.c.id == 1)).scalar_one()
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"the annotation store {redact_url(url)} has schema version {found}, "
            f"newer than this gbifdl_assets ({SCHEMA_VERSION}): upgrade gbifdl_assets"
        )
