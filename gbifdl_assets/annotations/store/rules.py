"""Rules: create, read (with basisOfRecord and votes), list with GBIF's filters, update, soft delete,
and GBIF's ``RuleMetrics`` over them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import Rule, RuleError
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_user
from gbifdl_assets.annotations.store.accounts import Accounts
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.errors import Conflict, DuplicateRule, NotFound
from gbifdl_assets.annotations.store.lists import bor_lists, set_bor, vote_lists
from gbifdl_assets.annotations.store.params import clip_limit
from gbifdl_assets.annotations.store.projects import Projects
from gbifdl_assets.annotations.store.queries import (
    id_chunks,
    newest_first,
    row_by_id,
    select_rules_with_names,
)
from gbifdl_assets.annotations.store.records import RuleInfo
from gbifdl_assets.annotations.store.rows import compiled_id, rule_input, rule_model, rule_values
from gbifdl_assets.annotations.store.rule_filters import ids_intersecting, rule_conditions
from gbifdl_assets.annotations.store.rulesets import Rulesets
from gbifdl_assets.annotations.store.schema import rules_t, utc_now, votes_t
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE

__all__ = ["Rules"]


class Rules:
    """The rules table with its basisOfRecord lists; methods taking ``conn`` run in the caller's
    transaction."""

    def __init__(self, db: Database, accounts: Accounts, projects: Projects, rulesets: Rulesets) -> None:
        self.db = db
        self.accounts = accounts
        self.projects = projects
        self.rulesets = rulesets

    def create(
        self,
        rule: Rule | Mapping[str, Any],
        *,
        user: str | Actor,
        description: str | None = None,
        repair: bool = False,
    ) -> Rule:
        """Any user; with a ruleset or project, only its members. Server-managed fields are ignored."""
        actor = self.accounts.actor(user)
        creator = require_user(actor, "create a rule")
        r = rule_input(rule, repair=repair)
        with self.db.begin() as conn:
            ruleset_id, project_id = self._placement(conn, actor, r, "add rules to it")
            self._refuse_duplicate(conn, r, ruleset_id, project_id)
            seq = self.db.bump(conn)
            rid = conn.execute(
                sa.insert(rules_t).values(
                    **rule_values(r),
                    ruleset_id=ruleset_id,
                    project_id=project_id,
                    description=description,
                    created=utc_now(),
                    created_by=creator,
                    seq=seq,
                    source=LOCAL_SOURCE,
                )
            ).inserted_primary_key[0]
            set_bor(conn, rid, r.basisOfRecord)
            return self.load(conn, [rid])[0]

    def _placement(
        self, conn: Connection, actor: Actor, r: Rule, action: str
    ) -> tuple[int | None, int | None]:
        """Check the rule's ruleset/project and return them (a ruleset's project is implied)."""
        project_id = r.projectId
        if r.rulesetId is not None:
            ruleset = self.rulesets.check_writable(conn, actor, r.rulesetId, action)
            if project_id is None:
                project_id = ruleset.projectId
            elif ruleset.projectId is not None and ruleset.projectId != project_id:
                raise RuleError(
                    f"rulesetId {r.rulesetId} belongs to project {ruleset.projectId}, not projectId {project_id}"
                )
            elif ruleset.projectId is None:
                # a ruleset outside any project, with a project named beside it: that project must
                # exist and take the user too (unchecked, an unknown id failed as a foreign-key error)
                self.projects.check_writable(conn, actor, project_id, action)
        if project_id is not None and r.rulesetId is None:
            self.projects.check_writable(conn, actor, project_id, action)
        return r.rulesetId, project_id

    def _refuse_duplicate(
        self,
        conn: Connection,
        r: Rule,
        ruleset_id: int | None,
        project_id: int | None,
        exclude: int | None = None,
    ) -> None:
        """:class:`DuplicateRule` when a live local rule says the same (the same area, even if its
        vertices are written or ordered differently; the same basisOfRecord set)."""
        c = rules_t.c
        values = rule_values(r)

        def same(column: Any, value: Any) -> Any:
            return column.is_(None) if value is None else column == value

        q = sa.select(c.id, c.geometry).where(
            c.deleted.is_(None),
            c.source == LOCAL_SOURCE,
            same(c.taxon_key, r.taxonKey),
            same(c.dataset_key, r.datasetKey),
            same(c.year_range, r.yearRange),
            same(c.ruleset_id, ruleset_id),
            same(c.project_id, project_id),
            c.annotation == r.annotation,
            c.basis_of_record_negated == bool(r.basisOfRecordNegated),
            *(getattr(c, k) == values[k] for k in ("minx", "miny", "maxx", "maxy")),
        )
        if exclude is not None:
            q = q.where(c.id != exclude)
        candidates = conn.execute(q.order_by(c.id)).all()
        if not candidates:
            return
        bor = bor_lists(conn, [row.id for row in candidates])
        geom = shapely.from_wkt(r.geometry)
        wanted = sorted(r.basisOfRecord or [])
        for row in candidates:
            if sorted(bor.get(row.id) or []) == wanted and shapely.equals(
                geom, shapely.from_wkt(row.geometry)
            ):
                raise DuplicateRule(
                    f"an identical rule exists already: rule {row.id} (same taxon, area, label and filters); "
                    "support it instead of adding another",
                    row.id,
                )

    def get(self, rule_id: int) -> Rule:
        """A rule by id, deleted or not (as GBIF's ``GET /rule/{id}``)."""
        with self.db.connect() as conn:
            found = self.load(conn, [int(rule_id)])
        if not found:
            raise NotFound(f"no rule with id {rule_id}")
        return found[0]

    def info(self, rule_id: int) -> RuleInfo:
        """Source, origin, external id, description, ruleset and project names of a rule."""
        found = self.infos([int(rule_id)])
        if not found:
            raise NotFound(f"no rule with id {rule_id}")
        return found[int(rule_id)]

    def infos(self, rule_ids: Sequence[int]) -> dict[int, RuleInfo]:
        """:meth:`info` for many rules at once (unknown ids are left out)."""
        out: dict[int, RuleInfo] = {}
        ids = [int(i) for i in rule_ids]
        with self.db.connect() as conn:
            for part in id_chunks(ids):
                q = select_rules_with_names(rules_t).where(rules_t.c.id.in_(part))
                for row in conn.execute(q).all():
                    out[row.id] = RuleInfo(
                        id=row.id,
                        compiled_id=compiled_id(row.id, row.source, row.external_id),
                        source=row.source,
                        origin=row.origin,
                        external_id=row.external_id,
                        description=row.description,
                        ruleset=row.ruleset_name,
                        project=row.project_name,
                        modified=row.modified,
                        modifiedBy=row.modified_by,
                    )
        return out

    def load(self, conn: Connection, ids: Sequence[int]) -> list[Rule]:
        """Hydrate rules (with basisOfRecord and votes) in the order of ``ids``; unknown ids are left out."""
        if not ids:
            return []
        rows = {r.id: r for r in conn.execute(sa.select(rules_t).where(rules_t.c.id.in_(list(ids)))).all()}
        bor = bor_lists(conn, list(rows))
        votes = vote_lists(conn, list(rows))
        out = []
        for rid in ids:
            row = rows.get(rid)
            if row is None:
                continue
            supported, contested = votes.get(rid, ([], []))
            out.append(rule_model(row, bor.get(rid), supported, contested))
        return out

    def list(
        self,
        *,
        geometry: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
        **filters: Any,
    ) -> list[Rule]:
        """Rules newest first, filtered as GBIF's ``GET /rule`` (package docstring); deleted ones hidden.

        Filters: taxonKey (exact), datasetKey / rulesetId / projectId (``"null"`` = none), basisOfRecord
        (list or comma text; any value in the rule's list; ``"null"`` = none), basisOfRecordNegated,
        yearRange (exact text), annotation, createdBy, supportedBy, contestedBy, comment (a non-deleted
        comment containing the text, case-insensitive), source; ``geometry``: WKT that the rule's
        polygon must intersect (boundary contact counts).
        """
        limit, offset = clip_limit(limit, offset)
        conds = rule_conditions({k: v for k, v in filters.items() if v is not None})
        if not include_deleted:
            conds.append(rules_t.c.deleted.is_(None))
        order = newest_first(rules_t)
        with self.db.connect() as conn:
            if geometry is None:
                q = sa.select(rules_t.c.id).where(*conds).order_by(*order).limit(limit).offset(offset)
                ids = list(conn.execute(q).scalars())
            else:
                ids = ids_intersecting(conn, geometry, conds, order, limit, offset)
            return self.load(conn, ids)

    def iter(self, *, batch: int = 1000, **filters: Any) -> Iterator[Rule]:
        """Every matching rule, newest first, fetched ``batch`` at a time."""
        offset = 0
        while True:
            page = self.list(limit=batch, offset=offset, **filters)
            yield from page
            if len(page) < batch:
                return
            offset += batch

    def update(
        self, rule_id: int, rule: Rule | Mapping[str, Any], *, user: str | Actor, repair: bool = False
    ) -> Rule:
        """Creator or admin; replaces every user field (as GBIF's PUT); a deleted rule is refused."""
        actor = self.accounts.actor(user)
        r = rule_input(rule, repair=repair)
        with self.db.begin() as conn:
            row = self.row(conn, rule_id)
            who = require_creator(actor, row.created_by, "change this rule", f"rule {rule_id}")
            if row.deleted is not None:
                raise Conflict(f"rule {rule_id} is deleted; it cannot be changed (create a new rule)")
            self.db.refuse_mirrored(conn, rules_t, rule_id, f"rule {rule_id}")
            ruleset_id, project_id = self._placement(conn, actor, r, "move rules into it")
            self._refuse_duplicate(conn, r, ruleset_id, project_id, rule_id)
            seq = self.db.bump(conn)
            conn.execute(
                sa.update(rules_t)
                .where(rules_t.c.id == rule_id)
                .values(
                    **rule_values(r),
                    ruleset_id=ruleset_id,
                    project_id=project_id,
                    modified=utc_now(),
                    modified_by=who,
                    seq=seq,
                )
            )
            set_bor(conn, rule_id, r.basisOfRecord)
            return self.load(conn, [rule_id])[0]

    def delete(self, rule_id: int, *, user: str | Actor) -> Rule:
        """Creator or admin; soft delete; returns the rule (deleting twice changes nothing)."""
        actor = self.accounts.actor(user)
        with self.db.begin() as conn:
            row = self.row(conn, rule_id)
            who = require_creator(actor, row.created_by, "delete this rule", f"rule {rule_id}")
            self.db.refuse_mirrored(conn, rules_t, rule_id, f"rule {rule_id}")
            if row.deleted is None:
                self.soft_delete(conn, rule_id, who)
            return self.load(conn, [rule_id])[0]

    def soft_delete(self, conn: Connection, rule_id: int, who: str) -> None:
        """Mark the rule deleted (no permission check)."""
        seq = self.db.bump(conn)
        conn.execute(
            sa.update(rules_t)
            .where(rules_t.c.id == rule_id)
            .values(deleted=utc_now(), deleted_by=who, seq=seq)
        )

    def row(self, conn: Connection, rule_id: int) -> Any:
        """The rule's row, deleted or not (NotFound for an unknown id)."""
        return row_by_id(conn, rules_t, rule_id, "rule")

    def live_row(self, conn: Connection, rule_id: int, action: str) -> Any:
        """The rule's row; Conflict when it is deleted (``action``: what the caller wanted to do)."""
        row = self.row(conn, rule_id)
        if row.deleted is not None:
            raise Conflict(f"rule {rule_id} is deleted; you cannot {action} it")
        return row

    def metrics(
        self,
        *,
        username: str | None = None,
        taxonKey: int | None = None,
        datasetKey: str | None = None,
        rulesetId: int | None = None,
        projectId: int | None = None,
    ) -> dict[str, Any]:
        """GBIF's ``RuleMetrics`` over non-deleted rules (of ``username`` when given).

        ``supportCount``/``contestCount`` count the votes those rules received.
        """
        filters = {
            "createdBy": username,
            "taxonKey": taxonKey,
            "datasetKey": datasetKey,
            "rulesetId": rulesetId,
            "projectId": projectId,
        }
        conds = rule_conditions({k: v for k, v in filters.items() if v is not None})
        conds.append(rules_t.c.deleted.is_(None))
        c = rules_t.c
        ids = sa.select(c.id).where(*conds).scalar_subquery()
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(
                    sa.func.count(c.id),
                    sa.func.count(sa.distinct(c.dataset_key)),
                    sa.func.count(sa.distinct(c.project_id)),
                    sa.func.count(sa.distinct(c.taxon_key)),
                ).where(*conds)
            ).one()
            votes = dict(
                conn.execute(
                    sa.select(votes_t.c.vote, sa.func.count())
                    .where(votes_t.c.rule_id.in_(ids))
                    .group_by(votes_t.c.vote)
                ).all()
            )
        return {
            "username": username,
            "ruleCount": int(row[0]),
            "datasetCount": int(row[1]),
            "projectCount": int(row[2]),
            "taxonCount": int(row[3]),
            "supportCount": int(votes.get("support", 0)),
            "contestCount": int(votes.get("contest", 0)),
        }
