"""Mirroring: projects, rulesets and rules from elsewhere (GBIF, rule files) kept in step by external id,
retired when they disappear at the source, and links of local rules pushed to a remote annotation API.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import Project, Ruleset
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.lists import bor_lists, members_of, set_bor, set_members, vote_lists
from gbifdl_assets.annotations.store.projects import Projects
from gbifdl_assets.annotations.store.records import MirroredRule
from gbifdl_assets.annotations.store.rows import rule_values
from gbifdl_assets.annotations.store.rules import Rules
from gbifdl_assets.annotations.store.rulesets import Rulesets
from gbifdl_assets.annotations.store.schema import (
    MIRRORED_TABLES,
    project_members_t,
    projects_t,
    rule_links_t,
    rules_t,
    ruleset_members_t,
    rulesets_t,
    utc_now,
    votes_t,
)
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE

__all__ = ["Mirror"]


class Mirror:
    """Objects from elsewhere, matched by (source, origin, external id); read-only everywhere else."""

    def __init__(self, db: Database, projects: Projects, rulesets: Rulesets, rules: Rules) -> None:
        self.db = db
        self.projects = projects
        self.rulesets = rulesets
        self.rules = rules

    def upsert_project(
        self, project: Project, *, source: str, origin: str, external_id: str
    ) -> tuple[int, str]:
        """Create or update a project mirrored from ``source``; returns (local id, created|updated|unchanged)."""
        with self.db.begin() as conn:
            return self._upsert_group(
                conn, projects_t, project_members_t, "project_id", project, {}, source, origin, external_id
            )

    def upsert_ruleset(
        self, ruleset: Ruleset, *, source: str, origin: str, external_id: str, project_id: int | None
    ) -> tuple[int, str]:
        """As :meth:`upsert_project`; ``project_id`` is the local id of its project."""
        with self.db.begin() as conn:
            return self._upsert_group(
                conn,
                rulesets_t,
                ruleset_members_t,
                "ruleset_id",
                ruleset,
                {"project_id": project_id},
                source,
                origin,
                external_id,
            )

    def _upsert_group(
        self,
        conn: Connection,
        table: sa.Table,
        members_table: sa.Table,
        fk: str,
        obj: Project | Ruleset,
        extra: dict[str, Any],
        source: str,
        origin: str,
        external_id: str,
    ) -> tuple[int, str]:
        if source == LOCAL_SOURCE:
            raise ValueError(f"mirrored objects need a source other than {LOCAL_SOURCE!r}")
        values = {
            "name": obj.name,
            "description": obj.description,
            "created": obj.created or utc_now(),
            "created_by": obj.createdBy,
            "modified": obj.modified,
            "modified_by": obj.modifiedBy,
            "deleted": obj.deleted,
            "deleted_by": obj.deletedBy,
            **extra,
        }
        row = conn.execute(
            sa.select(table).where(
                table.c.source == source, table.c.origin == origin, table.c.external_id == external_id
            )
        ).first()
        if row is not None and obj.created is None:
            values["created"] = row.created
        if row is None:
            new_id = conn.execute(
                sa.insert(table).values(**values, source=source, origin=origin, external_id=external_id)
            ).inserted_primary_key[0]
            set_members(conn, members_table, fk, new_id, obj.members)
            return int(new_id), "created"
        old_members = members_of(conn, members_table, fk, [row.id]).get(row.id, [])
        changed = any(getattr(row, k) != v for k, v in values.items()) or old_members != obj.members
        if changed:
            conn.execute(sa.update(table).where(table.c.id == row.id).values(**values))
            set_members(conn, members_table, fk, row.id, obj.members)
            if table is rulesets_t:
                self.db.touch_rules(conn, rules_t.c.ruleset_id == row.id)
            elif table is projects_t:
                self.db.touch_rules(conn, rules_t.c.project_id == row.id)
        return int(row.id), "updated" if changed else "unchanged"

    def upsert_rules(
        self, items: Iterable[MirroredRule], *, source: str, origin: str, batch: int = 500
    ) -> dict[str, int]:
        """Create or update rules mirrored from ``source``/``origin`` by external id (idempotent).

        Source votes (``MirroredRule.votes``) replace the votes previously mirrored for that rule; local
        votes stay unless the same user voted at the source. Returns counts per outcome.
        """
        if source == LOCAL_SOURCE:
            raise ValueError(f"mirrored rules need a source other than {LOCAL_SOURCE!r}")
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        pending: list[MirroredRule] = []
        for item in items:
            pending.append(item)
            if len(pending) >= batch:
                self._upsert_rule_batch(pending, source, origin, counts)
                pending = []
        if pending:
            self._upsert_rule_batch(pending, source, origin, counts)
        return counts

    def _upsert_rule_batch(
        self, items: list[MirroredRule], source: str, origin: str, counts: dict[str, int]
    ) -> None:
        with self.db.begin() as conn:
            ext_ids = [i.external_id for i in items]
            existing = {
                r.external_id: r
                for r in conn.execute(
                    sa.select(rules_t).where(
                        rules_t.c.source == source,
                        rules_t.c.origin == origin,
                        rules_t.c.external_id.in_(ext_ids),
                    )
                ).all()
            }
            bor = bor_lists(conn, [r.id for r in existing.values()])
            votes = vote_lists(conn, [r.id for r in existing.values()], origin=source)
            seq: int | None = None
            for item in items:
                r = item.rule
                values = {
                    **rule_values(r),
                    "ruleset_id": item.ruleset_id,
                    "project_id": item.project_id,
                    "description": item.description,
                    "created": item.created or r.created or utc_now(),
                    "created_by": item.created_by or r.createdBy,
                    "deleted": r.deleted,
                    "deleted_by": r.deletedBy,
                }
                row = existing.get(item.external_id)
                if row is not None and item.created is None and r.created is None:
                    values["created"] = row.created  # the source has no date: keep the first import's
                new_votes = item.votes
                if row is None:
                    seq = seq or self.db.bump(conn)
                    rid = conn.execute(
                        sa.insert(rules_t).values(
                            **values, seq=seq, source=source, origin=origin, external_id=item.external_id
                        )
                    ).inserted_primary_key[0]
                    set_bor(conn, rid, r.basisOfRecord)
                    if new_votes:
                        _mirror_votes(conn, rid, new_votes, source)
                    counts["created"] += 1
                    continue
                same = (
                    all(getattr(row, k) == v for k, v in values.items())
                    and bor.get(row.id) == r.basisOfRecord
                    and (
                        new_votes is None
                        or votes.get(row.id, ([], [])) == (list(new_votes[0]), list(new_votes[1]))
                    )
                )
                if same:
                    counts["unchanged"] += 1
                    continue
                seq = seq or self.db.bump(conn)
                conn.execute(sa.update(rules_t).where(rules_t.c.id == row.id).values(**values, seq=seq))
                set_bor(conn, row.id, r.basisOfRecord)
                if new_votes is not None:
                    _mirror_votes(conn, row.id, new_votes, source)
                counts["updated"] += 1

    def retire(
        self,
        kind: str,
        *,
        source: str,
        origin: str,
        keep: Iterable[str],
        who: str,
        where: Mapping[str, Any] | None = None,
    ) -> int:
        """Soft-delete mirrored ``kind`` ("rule", "ruleset", "project") from source/origin not in ``keep``.

        A full pull or file import calls this for what disappeared at the source. ``where`` limits the
        scope (e.g. ``{"project_id": 3}`` after a pull of one project). Returns how many were deleted.
        """
        table = MIRRORED_TABLES[kind]
        keep = set(keep)
        conds = [table.c.source == source, table.c.origin == origin, table.c.deleted.is_(None)]
        for col, value in (where or {}).items():
            conds.append(table.c[col] == value)
        with self.db.begin() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.external_id).where(*conds)).all()
            gone = [r.id for r in rows if r.external_id not in keep]
            if not gone:
                return 0
            for obj_id in gone:
                if kind == "rule":
                    self.rules.soft_delete(conn, obj_id, who)
                elif kind == "ruleset":
                    self.rulesets.soft_delete(conn, obj_id, who)
                else:
                    self.projects.soft_delete(conn, obj_id, who)
        return len(gone)

    # ------------------------------------------------------------------------------ push links
    def link_remote(self, rule_id: int, remote_url: str, remote_id: str) -> None:
        with self.db.begin() as conn:
            conn.execute(
                sa.delete(rule_links_t).where(
                    rule_links_t.c.rule_id == rule_id, rule_links_t.c.remote_url == remote_url
                )
            )
            conn.execute(
                sa.insert(rule_links_t).values(
                    rule_id=rule_id, remote_url=remote_url, remote_id=str(remote_id), pushed=utc_now()
                )
            )

    def remote_links(self, remote_url: str) -> dict[int, str]:
        """local rule id → remote id of rules already pushed to ``remote_url``."""
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(rule_links_t.c.rule_id, rule_links_t.c.remote_id).where(
                    rule_links_t.c.remote_url == remote_url
                )
            ).all()
        return {int(r.rule_id): r.remote_id for r in rows}


def _mirror_votes(
    conn: Connection, rule_id: int, votes: tuple[Sequence[str], Sequence[str]], origin: str
) -> None:
    supported, contested = votes
    conn.execute(sa.delete(votes_t).where(votes_t.c.rule_id == rule_id, votes_t.c.origin == origin))
    both = set(supported) & set(contested)  # GBIF keeps them exclusive; if not, the contest wins
    rows = []
    base = utc_now()
    for i, name in enumerate(supported):
        if name not in both:
            rows.append(("support", name, i))
    for i, name in enumerate(contested):
        rows.append(("contest", name, len(supported) + i))
    if not rows:
        return
    names = [r[1] for r in rows]
    conn.execute(sa.delete(votes_t).where(votes_t.c.rule_id == rule_id, votes_t.c.username.in_(names)))
    conn.execute(
        sa.insert(votes_t),
        [
            {
                "rule_id": rule_id,
                "username": name,
                "vote": vote,
                # keep the source's order: GBIF's arrays are in voting order
                "created": base + dt.timedelta(milliseconds=pos),
                "origin": origin,
            }
            for vote, name, pos in rows
        ],
    )
