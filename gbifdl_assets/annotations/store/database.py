"""The store's database: engine and schema, the change counter behind :meth:`Database.version`, and the
provenance checks that keep mirrored objects read-only.

Every other part of the store (accounts, projects, rulesets, rules, votes, comments, mirror, compiler)
holds the one :class:`Database` of its :class:`~gbifdl_assets.annotations.store.AnnotationStore` and
opens its transactions here. Methods that take a ``conn`` work inside the caller's transaction.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gbifdl_assets.annotations.permissions import PermissionDenied
from gbifdl_assets.annotations.store.connection import create_schema, make_engine
from gbifdl_assets.annotations.store.schema import MIRRORED_TABLES, rules_t, state_t
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE, default_store_url

__all__ = ["Database"]


class Database:
    """The engine and schema of one store database (created on first use)."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None, echo: bool = False):
        self.url = url or default_store_url()
        if engine is None:
            engine = make_engine(self.url, echo)
        self.engine = engine
        create_schema(self.engine, self.url)
        with self.engine.connect() as conn:
            self.store_id = str(conn.execute(sa.select(state_t.c.store_id)).scalar_one())

    def connect(self) -> Connection:
        """A connection for reads (``with db.connect() as conn``)."""
        return self.engine.connect()

    def begin(self) -> AbstractContextManager[Connection]:
        """A transaction for writes (``with db.begin() as conn``): committed on success, else rolled back."""
        return self.engine.begin()

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------------------ change tracking
    def bump(self, conn: Connection) -> int:
        """Advance the change counter inside the caller's transaction (row lock serialises writers)."""
        conn.execute(sa.update(state_t).where(state_t.c.id == 1).values(seq=state_t.c.seq + 1))
        return int(conn.execute(sa.select(state_t.c.seq).where(state_t.c.id == 1)).scalar_one())

    def version(self) -> str:
        """Changes whenever anything the compiled rules table depends on changes.

        ``<store id>:<change counter>``: the store id is random per database, so a recreated database
        never repeats an old version; the counter advances with every rule, vote, ruleset or project
        change (comments and users do not affect the compiled table).
        """
        with self.engine.connect() as conn:
            seq = conn.execute(sa.select(state_t.c.seq).where(state_t.c.id == 1)).scalar_one()
        return f"{self.store_id}:{seq}"

    def touch_rules(self, conn: Connection, where: Any) -> None:
        """Mark the rules matching ``where`` changed (their ruleset or project was renamed, say)."""
        seq = self.bump(conn)
        conn.execute(sa.update(rules_t).where(where).values(seq=seq))

    # ------------------------------------------------------------------------------ provenance
    def refuse_mirrored(self, conn: Connection, table: sa.Table, obj_id: int, what: str) -> None:
        """PermissionDenied when the row came from elsewhere: it is changed at its source, not here."""
        row = conn.execute(sa.select(table.c.source, table.c.origin).where(table.c.id == obj_id)).first()
        if row is not None and row.source != LOCAL_SOURCE:
            raise PermissionDenied(
                f"{what} is mirrored from {row.source} ({row.origin}); change it there and import it again"
            )

    def mirrored_ids(self, kind: str, *, source: str, origin: str | None) -> dict[str, int]:
        """external id → local id of mirrored objects (deleted ones included)."""
        table = MIRRORED_TABLES[kind]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.external_id, table.c.id).where(
                    table.c.source == source, table.c.origin == origin
                )
            ).all()
        return {r.external_id: int(r.id) for r in rows}
