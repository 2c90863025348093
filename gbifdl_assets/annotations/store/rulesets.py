"""Rulesets: create, read, list, find by name, update, soft delete, and who may write rules into one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import RuleError, Ruleset
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_member, require_user
from gbifdl_assets.annotations.store.errors import Conflict, NotFound
from gbifdl_assets.annotations.store.lists import _members, _set_members, _with_first
from gbifdl_assets.annotations.store.params import _clip_limit, _int_filter, _is_null
from gbifdl_assets.annotations.store.projects import ProjectsMixin
from gbifdl_assets.annotations.store.queries import _has_member, _newest_first, _row_by_id
from gbifdl_assets.annotations.store.rows import _as_model, _ruleset_model
from gbifdl_assets.annotations.store.schema import (
    _now,
    project_members_t,
    rules_t,
    ruleset_members_t,
    rulesets_t,
)
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE, MAX_LIMIT


class RulesetsMixin(ProjectsMixin):
    def create_ruleset(self, ruleset: Ruleset | Mapping[str, Any], *, user: str | Actor) -> Ruleset:
        """Any user; inside a project only its members (GBIF does not check this)."""
        actor = self.actor(user)
        creator = require_user(actor, "create a ruleset")
        r = _as_model(Ruleset, ruleset, "ruleset")
        members = _with_first(creator, r.members)
        now = _now()
        with self.engine.begin() as conn:
            if r.projectId is not None:
                self._check_project_writable(conn, actor, r.projectId, "create a ruleset in it")
            rid = conn.execute(
                sa.insert(rulesets_t).values(
                    project_id=r.projectId,
                    name=r.name,
                    description=r.description,
                    created=now,
                    created_by=creator,
                    source=LOCAL_SOURCE,
                )
            ).inserted_primary_key[0]
            _set_members(conn, ruleset_members_t, "ruleset_id", rid, members)
        return self.get_ruleset(rid)

    def get_ruleset(self, ruleset_id: int) -> Ruleset:
        """A ruleset by id, deleted or not."""
        with self.engine.connect() as conn:
            return self._ruleset(conn, ruleset_id)

    def _ruleset(self, conn: Connection, ruleset_id: int) -> Ruleset:
        row = _row_by_id(conn, rulesets_t, ruleset_id, "ruleset")
        members = _members(conn, ruleset_members_t, "ruleset_id", [row.id]).get(row.id, [])
        return _ruleset_model(row, members)

    def list_rulesets(
        self,
        *,
        projectId: int | str | None = None,
        member: str | None = None,
        name: str | None = None,
        source: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Ruleset]:
        """Rulesets newest first; ``source`` keeps only local (``local``) or mirrored (``gbif``) ones."""
        limit, offset = _clip_limit(limit, offset)
        q = sa.select(rulesets_t)
        if source:
            q = q.where(rulesets_t.c.source == source)
        if not include_deleted:
            q = q.where(rulesets_t.c.deleted.is_(None))
        if projectId is not None:
            if _is_null(projectId):
                q = q.where(rulesets_t.c.project_id.is_(None))
            else:
                q = q.where(rulesets_t.c.project_id == _int_filter(projectId, "projectId"))
        if member:
            q = q.where(_has_member(ruleset_members_t, "ruleset_id", rulesets_t, member))
        if name:
            q = q.where(rulesets_t.c.name == name)
        q = q.order_by(*_newest_first(rulesets_t)).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            members = _members(conn, ruleset_members_t, "ruleset_id", [r.id for r in rows])
        return [_ruleset_model(r, members.get(r.id, [])) for r in rows]

    def find_ruleset(self, name_or_id: str | int, *, source: str | None = None) -> Ruleset:
        """The one non-deleted ruleset with this name (or id); NotFound lists the names there are.

        ``source="local"`` looks only at local rulesets: a ruleset pulled from GBIF may share a name.
        """
        text = str(name_or_id).strip()
        if text.isdigit():
            return self.get_ruleset(int(text))
        found = self.list_rulesets(name=text, source=source, limit=MAX_LIMIT)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(str(r.id) for r in found)
            raise Conflict(f"{len(found)} rulesets are named {text!r} (ids {ids}); give the id instead")
        known = sorted({r.name for r in self.list_rulesets(limit=MAX_LIMIT)})
        raise NotFound(
            f"no ruleset named {text!r}"
            + (f"; there are: {', '.join(known)}" if known else "; there are none yet")
        )

    def ensure_ruleset(
        self, name: str, *, user: str | Actor, project_id: int | None = None, description: str | None = None
    ) -> Ruleset:
        """The local ruleset named ``name``, created (with ``user`` as member) when there is none."""
        try:
            return self.find_ruleset(name, source=LOCAL_SOURCE)
        except NotFound:
            if str(name).strip().isdigit():
                raise
            return self.create_ruleset(
                {"name": name, "projectId": project_id, "description": description}, user=user
            )

    def require_rule_writer(self, ruleset_id: int, *, user: str | Actor) -> Ruleset:
        """Raise PermissionDenied unless ``user`` may add rules to the ruleset."""
        with self.engine.connect() as conn:
            return self._check_ruleset_writable(conn, self.actor(user), ruleset_id, "add rules to it")

    def update_ruleset(
        self, ruleset_id: int, ruleset: Ruleset | Mapping[str, Any], *, user: str | Actor
    ) -> Ruleset:
        """Members (of the ruleset or its project) replace name, description, projectId and members."""
        actor = self.actor(user)
        r = _as_model(Ruleset, ruleset, "ruleset")
        with self.engine.begin() as conn:
            current = self._ruleset(conn, ruleset_id)
            who = require_member(
                actor, self._ruleset_writers(conn, current), "edit this ruleset", f"ruleset {ruleset_id}"
            )
            if current.deleted is not None:
                raise Conflict(f"ruleset {ruleset_id} is deleted; it cannot be changed")
            self._refuse_mirrored(conn, rulesets_t, ruleset_id, f"ruleset {ruleset_id}")
            if r.projectId is not None and r.projectId != current.projectId:
                self._check_project_writable(conn, actor, r.projectId, "move a ruleset into it")
            members = r.members or current.members
            if not members:
                raise RuleError(f"ruleset {ruleset_id}: at least one member must remain")
            conn.execute(
                sa.update(rulesets_t)
                .where(rulesets_t.c.id == ruleset_id)
                .values(
                    name=r.name,
                    description=r.description,
                    project_id=r.projectId,
                    modified=_now(),
                    modified_by=who,
                )
            )
            _set_members(conn, ruleset_members_t, "ruleset_id", ruleset_id, members)
            self._touch_rules(conn, rules_t.c.ruleset_id == ruleset_id)
        return self.get_ruleset(ruleset_id)

    def delete_ruleset(self, ruleset_id: int, *, user: str | Actor) -> Ruleset:
        """Creator or admin; soft-deletes the ruleset and its rules."""
        actor = self.actor(user)
        with self.engine.begin() as conn:
            current = self._ruleset(conn, ruleset_id)
            who = require_creator(actor, current.createdBy, "delete this ruleset", f"ruleset {ruleset_id}")
            self._refuse_mirrored(conn, rulesets_t, ruleset_id, f"ruleset {ruleset_id}")
            self._soft_delete_ruleset(conn, ruleset_id, who)
        return self.get_ruleset(ruleset_id)

    def _soft_delete_ruleset(self, conn: Connection, ruleset_id: int, who: str) -> None:
        now = _now()
        seq = self._bump(conn)
        conn.execute(
            sa.update(rulesets_t)
            .where(rulesets_t.c.id == ruleset_id, rulesets_t.c.deleted.is_(None))
            .values(deleted=now, deleted_by=who)
        )
        conn.execute(
            sa.update(rules_t)
            .where(rules_t.c.ruleset_id == ruleset_id, rules_t.c.deleted.is_(None))
            .values(deleted=now, deleted_by=who, seq=seq)
        )

    def _ruleset_writers(self, conn: Connection, ruleset: Ruleset) -> list[str]:
        writers = list(ruleset.members)
        if ruleset.projectId is not None:
            writers += _members(conn, project_members_t, "project_id", [ruleset.projectId]).get(
                ruleset.projectId, []
            )
        return list(dict.fromkeys(writers))

    def _check_ruleset_writable(
        self, conn: Connection, actor: Actor, ruleset_id: int, action: str
    ) -> Ruleset:
        try:
            ruleset = self._ruleset(conn, ruleset_id)
        except NotFound:
            raise NotFound(f"rulesetId {ruleset_id}: no such ruleset") from None
        if ruleset.deleted is not None:
            raise Conflict(f"ruleset {ruleset_id} is deleted; choose another ruleset")
        self._refuse_mirrored(conn, rulesets_t, ruleset_id, f"ruleset {ruleset.name!r} ({ruleset_id})")
        require_member(actor, self._ruleset_writers(conn, ruleset), action, f"ruleset {ruleset.name!r}")
        return ruleset
