"""Rules: create, read (with basisOfRecord and votes), list with GBIF's filters, update, soft delete."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import Rule, RuleError
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_user
from gbifdl_assets.annotations.store.errors import Conflict, NotFound
from gbifdl_assets.annotations.store.lists import _bor_lists, _set_bor, _vote_lists
from gbifdl_assets.annotations.store.params import _clip_limit
from gbifdl_assets.annotations.store.queries import (
    _id_chunks,
    _newest_first,
    _row_by_id,
    _select_rules_with_names,
)
from gbifdl_assets.annotations.store.records import RuleInfo
from gbifdl_assets.annotations.store.rows import _compiled_id, _rule_input, _rule_model, _rule_values
from gbifdl_assets.annotations.store.rule_filters import _ids_intersecting, _rule_conditions
from gbifdl_assets.annotations.store.rulesets import RulesetsMixin
from gbifdl_assets.annotations.store.schema import _now, rules_t
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE


class RulesMixin(RulesetsMixin):
    def create_rule(
        self,
        rule: Rule | Mapping[str, Any],
        *,
        user: str | Actor,
        description: str | None = None,
        repair: bool = False,
    ) -> Rule:
        """Any user; with a ruleset or project, only its members. Server-managed fields are ignored."""
        actor = self.actor(user)
        creator = require_user(actor, "create a rule")
        r = _rule_input(rule, repair=repair)
        with self.engine.begin() as conn:
            ruleset_id, project_id = self._rule_placement(conn, actor, r, "add rules to it")
            seq = self._bump(conn)
            rid = conn.execute(
                sa.insert(rules_t).values(
                    **_rule_values(r),
                    ruleset_id=ruleset_id,
                    project_id=project_id,
                    description=description,
                    created=_now(),
                    created_by=creator,
                    seq=seq,
                    source=LOCAL_SOURCE,
                )
            ).inserted_primary_key[0]
            _set_bor(conn, rid, r.basisOfRecord)
            return self._rules(conn, [rid])[0]

    def _rule_placement(
        self, conn: Connection, actor: Actor, r: Rule, action: str
    ) -> tuple[int | None, int | None]:
        """Check the rule's ruleset/project and return them (a ruleset's project is implied)."""
        project_id = r.projectId
        if r.rulesetId is not None:
            ruleset = self._check_ruleset_writable(conn, actor, r.rulesetId, action)
            if project_id is None:
                project_id = ruleset.projectId
            elif ruleset.projectId is not None and ruleset.projectId != project_id:
                raise RuleError(
                    f"rulesetId {r.rulesetId} belongs to project {ruleset.projectId}, not projectId {project_id}"
                )
            elif ruleset.projectId is None:
                # a ruleset outside any project, with a project named beside it: that project must
                # exist and take the user too (unchecked, an unknown id failed as a foreign-key error)
                self._check_project_writable(conn, actor, project_id, action)
        if project_id is not None and r.rulesetId is None:
            self._check_project_writable(conn, actor, project_id, action)
        return r.rulesetId, project_id

    def get_rule(self, rule_id: int) -> Rule:
        """A rule by id, deleted or not (as GBIF's ``GET /rule/{id}``)."""
        with self.engine.connect() as conn:
            found = self._rules(conn, [int(rule_id)])
        if not found:
            raise NotFound(f"no rule with id {rule_id}")
        return found[0]

    def rule_info(self, rule_id: int) -> RuleInfo:
        """Source, origin, external id, description, ruleset and project names of a rule."""
        found = self.rule_infos([int(rule_id)])
        if not found:
            raise NotFound(f"no rule with id {rule_id}")
        return found[int(rule_id)]

    def rule_infos(self, rule_ids: Sequence[int]) -> dict[int, RuleInfo]:
        """:meth:`rule_info` for many rules at once (unknown ids are left out)."""
        out: dict[int, RuleInfo] = {}
        ids = [int(i) for i in rule_ids]
        with self.engine.connect() as conn:
            for part in _id_chunks(ids):
                q = _select_rules_with_names(rules_t).where(rules_t.c.id.in_(part))
                for row in conn.execute(q).all():
                    out[row.id] = RuleInfo(
                        id=row.id,
                        compiled_id=_compiled_id(row.id, row.source, row.external_id),
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

    def _rules(self, conn: Connection, ids: Sequence[int]) -> list[Rule]:
        """Hydrate rules (with basisOfRecord and votes) in the order of ``ids``."""
        if not ids:
            return []
        rows = {r.id: r for r in conn.execute(sa.select(rules_t).where(rules_t.c.id.in_(list(ids)))).all()}
        bor = _bor_lists(conn, list(rows))
        votes = _vote_lists(conn, list(rows))
        out = []
        for rid in ids:
            row = rows.get(rid)
            if row is None:
                continue
            supported, contested = votes.get(rid, ([], []))
            out.append(_rule_model(row, bor.get(rid), supported, contested))
        return out

    def list_rules(
        self,
        *,
        geometry: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
        **filters: Any,
    ) -> list[Rule]:
        """Rules newest first, filtered as GBIF's ``GET /rule`` (module docstring); deleted ones hidden.

        Filters: taxonKey (exact), datasetKey / rulesetId / projectId (``"null"`` = none), basisOfRecord
        (list or comma text; any value in the rule's list; ``"null"`` = none), basisOfRecordNegated,
        yearRange (exact text), annotation, createdBy, supportedBy, contestedBy, comment (a non-deleted
        comment containing the text, case-insensitive), source; ``geometry``: WKT that the rule's
        polygon must intersect (boundary contact counts).
        """
        limit, offset = _clip_limit(limit, offset)
        conds = _rule_conditions({k: v for k, v in filters.items() if v is not None})
        if not include_deleted:
            conds.append(rules_t.c.deleted.is_(None))
        order = _newest_first(rules_t)
        with self.engine.connect() as conn:
            if geometry is None:
                q = sa.select(rules_t.c.id).where(*conds).order_by(*order).limit(limit).offset(offset)
                ids = list(conn.execute(q).scalars())
            else:
                ids = _ids_intersecting(conn, geometry, conds, order, limit, offset)
            return self._rules(conn, ids)

    def iter_rules(self, *, batch: int = 1000, **filters: Any) -> Iterator[Rule]:
        """Every matching rule, newest first, fetched ``batch`` at a time."""
        offset = 0
        while True:
            page = self.list_rules(limit=batch, offset=offset, **filters)
            yield from page
            if len(page) < batch:
                return
            offset += batch

    def update_rule(
        self, rule_id: int, rule: Rule | Mapping[str, Any], *, user: str | Actor, repair: bool = False
    ) -> Rule:
        """Creator or admin; replaces every user field (as GBIF's PUT); a deleted rule is refused."""
        actor = self.actor(user)
        r = _rule_input(rule, repair=repair)
        with self.engine.begin() as conn:
            row = self._rule_row(conn, rule_id)
            who = require_creator(actor, row.created_by, "change this rule", f"rule {rule_id}")
            if row.deleted is not None:
                raise Conflict(f"rule {rule_id} is deleted; it cannot be changed (create a new rule)")
            self._refuse_mirrored(conn, rules_t, rule_id, f"rule {rule_id}")
            ruleset_id, project_id = self._rule_placement(conn, actor, r, "move rules into it")
            seq = self._bump(conn)
            conn.execute(
                sa.update(rules_t)
                .where(rules_t.c.id == rule_id)
                .values(
                    **_rule_values(r),
                    ruleset_id=ruleset_id,
                    project_id=project_id,
                    modified=_now(),
                    modified_by=who,
                    seq=seq,
                )
            )
            _set_bor(conn, rule_id, r.basisOfRecord)
            return self._rules(conn, [rule_id])[0]

    def delete_rule(self, rule_id: int, *, user: str | Actor) -> Rule:
        """Creator or admin; soft delete; returns the rule (deleting twice changes nothing)."""
        actor = self.actor(user)
        with self.engine.begin() as conn:
            row = self._rule_row(conn, rule_id)
            who = require_creator(actor, row.created_by, "delete this rule", f"rule {rule_id}")
            self._refuse_mirrored(conn, rules_t, rule_id, f"rule {rule_id}")
            if row.deleted is None:
                self._soft_delete_rule(conn, rule_id, who)
            return self._rules(conn, [rule_id])[0]

    def _soft_delete_rule(self, conn: Connection, rule_id: int, who: str) -> None:
        seq = self._bump(conn)
        conn.execute(
            sa.update(rules_t).where(rules_t.c.id == rule_id).values(deleted=_now(), deleted_by=who, seq=seq)
        )

    def _rule_row(self, conn: Connection, rule_id: int) -> Any:
        return _row_by_id(conn, rules_t, rule_id, "rule")

    def _live_rule_row(self, conn: Connection, rule_id: int, action: str) -> Any:
        row = self._rule_row(conn, rule_id)
        if row.deleted is not None:
            raise Conflict(f"rule {rule_id} is deleted; you cannot {action} it")
        return row
