"""Ordered lists kept in child tables: members of projects and rulesets, a rule's basisOfRecord, votes.

Members and basisOfRecord values share one shape (parent id, position, value), written by
:func:`_set_list` and read back, in order, by :func:`_read_lists`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.store.schema import rule_bor_t, votes_t

__all__ = ["bor_lists", "members_of", "set_bor", "set_members", "vote_lists", "with_first"]


def _set_list(
    conn: Connection, table: sa.Table, fk: str, obj_id: int, column: str, values: Iterable[str]
) -> None:
    """Replace the list of one parent row: delete its rows, insert ``values`` with their positions."""
    conn.execute(sa.delete(table).where(table.c[fk] == obj_id))
    rows = [{fk: obj_id, "position": i, column: v} for i, v in enumerate(values)]
    if rows:
        conn.execute(sa.insert(table), rows)


def _read_lists(
    conn: Connection, table: sa.Table, fk: str, column: str, ids: Sequence[int]
) -> dict[int, list[str]]:
    """parent id → its values in position order (parents without values are left out)."""
    if not ids:
        return {}
    out: dict[int, list[str]] = {}
    q = (
        sa.select(table.c[fk], table.c[column])
        .where(table.c[fk].in_(list(ids)))
        .order_by(table.c[fk], table.c.position)
    )
    for obj_id, value in conn.execute(q).all():
        out.setdefault(obj_id, []).append(value)
    return out


def with_first(first: str, others: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([first, *others]))


def set_members(conn: Connection, table: sa.Table, fk: str, obj_id: int, members: Sequence[str]) -> None:
    _set_list(conn, table, fk, obj_id, "username", dict.fromkeys(members))


def members_of(conn: Connection, table: sa.Table, fk: str, ids: Sequence[int]) -> dict[int, list[str]]:
    return _read_lists(conn, table, fk, "username", ids)


def set_bor(conn: Connection, rule_id: int, values: Sequence[str] | None) -> None:
    _set_list(conn, rule_bor_t, "rule_id", rule_id, "value", values or ())


def bor_lists(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
    """rule id → basisOfRecord values; a rule without any is left out (its basisOfRecord is None)."""
    return _read_lists(conn, rule_bor_t, "rule_id", "value", ids)


def vote_lists(
    conn: Connection,
    ids: Sequence[int],
    origin: str | None = None,
    *,
    table: sa.Table = votes_t,
    key: str = "rule_id",
) -> dict[int, tuple[list[str], list[str]]]:
    """rule id → (supportedBy, contestedBy), oldest vote first (GBIF appends to its arrays).

    ``table``/``key``: another votes table with the same ``username``, ``vote`` and ``created``
    columns, keyed by ``key`` (the image flags' votes)."""
    if not ids:
        return {}
    c = table.c
    q = sa.select(c[key], c.username, c.vote).where(c[key].in_(list(ids)))
    if origin is not None:
        q = q.where(c.origin == origin)
    q = q.order_by(c[key], c.created, c.username)
    out: dict[int, tuple[list[str], list[str]]] = {}
    for rid, username, vote in conn.execute(q).all():
        pair = out.setdefault(rid, ([], []))
        (pair[0] if vote == "support" else pair[1]).append(username)
    return out
