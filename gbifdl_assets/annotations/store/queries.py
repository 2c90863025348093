"""Query shapes that several tables share: one row by id, GBIF's list order, membership, id chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.store.errors import NotFound
from gbifdl_assets.annotations.store.schema import projects_t, rules_t, rulesets_t

__all__ = ["has_member", "id_chunks", "newest_first", "row_by_id", "select_rules_with_names"]

#: ids per ``IN (…)`` list when many rules are read at once, so one statement stays bounded
_ID_CHUNK = 5000


def row_by_id(conn: Connection, table: sa.Table, obj_id: int, what: str) -> Any:
    """The row with this id, deleted or not; NotFound names ``what`` (project, ruleset, rule, comment)."""
    row = conn.execute(sa.select(table).where(table.c.id == int(obj_id))).first()
    if row is None:
        raise NotFound(f"no {what} with id {obj_id}")
    return row


def newest_first(table: sa.Table) -> tuple[Any, Any]:
    """GBIF's list order: ``created`` DESC, then id DESC."""
    return table.c.created.desc(), table.c.id.desc()


def has_member(members_table: sa.Table, fk: str, table: sa.Table, username: str) -> Any:
    """The condition that ``username`` is a member of the row of ``table`` (a project or ruleset)."""
    return sa.exists().where(members_table.c[fk] == table.c.id, members_table.c.username == username)


def id_chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _ID_CHUNK):
        yield ids[start : start + _ID_CHUNK]


def select_rules_with_names(*columns: Any) -> sa.Select:
    """``columns`` of rules plus the names of their ruleset and project (None outside one)."""
    return sa.select(
        *columns,
        rulesets_t.c.name.label("ruleset_name"),
        projects_t.c.name.label("project_name"),
    ).select_from(
        rules_t.outerjoin(rulesets_t, rules_t.c.ruleset_id == rulesets_t.c.id).outerjoin(
            projects_t, rules_t.c.project_id == projects_t.c.id
        )
    )
