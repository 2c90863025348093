"""Rulesets: create, read, list, find by name, update, soft delete, and who may write rules into one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import RuleError, Ruleset
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_member, require_user
from gbifdl_assets.annotations.store.accounts import Accounts
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.errors import Conflict, NotFound
from gbifdl_assets.annotations.store.lists import members_of, set_members, with_first
from gbifdl_assets.annotations.store.params import clip_limit, int_filter, is_null
from gbifdl_assets.annotations.store.projects import Projects
from gbifdl_assets.annotations.store.queries import has_member, newest_first, row_by_id
from gbifdl_assets.annotations.store.rows import as_model, ruleset_model
from gbifdl_assets.annotations.store.schema import (
    project_members_t,
    rules_t,
    ruleset_members_t,
    rulesets_t,
    utc_now,
)
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE, MAX_LIMIT

__all__ = ["Rulesets"]


class Rulesets:
    """The rulesets table and its members; a ruleset's writers are its members and its project's."""

    def __init__(self, db: Database, accounts: Accounts, projects: Projects) -> None:
        self.db = db
        self.accounts = accounts
        self.projects = projects

    def create(self, ruleset: Ruleset | Mapping[str, Any], *, user: str | Actor) -> Ruleset:
        """Any user; inside a project only its members (GBIF does not check this)."""
        actor = self.accounts.actor(user)
        creator = require_user(actor, "create a ruleset")
        r = as_model(Ruleset, ruleset, "ruleset")
        members = with_first(creator, r.members)
        now = utc_now()
        with self.db.begin() as conn:
            if r.projectId is not None:
                self.projects.check_writable(conn, actor, r.projectId, "create a ruleset in it")
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
            set_members(conn, ruleset_members_t, "ruleset_id", rid, members)
        return self.get(rid)

    def get(self, ruleset_id: int) -> Ruleset:
        """A ruleset by id, deleted or not."""
        with self.db.connect() as conn:
            return self.load(conn, ruleset_id)

    def load(self, conn: Connection, ruleset_id: int) -> Ruleset:
        """:meth:`get` inside the caller's transaction."""
        row = row_by_id(conn, rulesets_t, ruleset_id, "ruleset")
        members = members_of(conn, ruleset_members_t, "ruleset_id", [row.id]).get(row.id, [])
        return ruleset_model(row, members)

    def list(
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
        limit, offset = clip_limit(limit, offset)
        q = sa.select(rulesets_t)
        if source:
            q = q.where(rulesets_t.c.source == source)
        if not include_deleted:
            q = q.where(rulesets_t.c.deleted.is_(None))
        if projectId is not None:
            if is_null(projectId):
                q = q.where(rulesets_t.c.project_id.is_(None))
            else:
                q = q.where(rulesets_t.c.project_id == int_filter(projectId, "projectId"))
        if member:
            q = q.where(has_member(ruleset_members_t, "ruleset_id", rulesets_t, member))
        if name:
            q = q.where(rulesets_t.c.name == name)
        q = q.order_by(*newest_first(rulesets_t)).limit(limit).offset(offset)
        with self.db.connect() as conn:
            rows = conn.execute(q).all()
            members = members_of(conn, ruleset_members_t, "ruleset_id", [r.id for r in rows])
        return [ruleset_model(r, members.get(r.id, [])) for r in rows]

    def find(self, name_or_id: str | int, *, source: str | None = None) -> Ruleset:
        """The one non-deleted ruleset with this name (or id); NotFound lists the names there are.

        ``source="local"`` looks only at local rulesets: a ruleset pulled from GBIF may share a name.
        """
        text = str(name_or_id).strip()
        if text.isdigit():
            return self.get(int(text))
        found = self.list(name=text, source=source, limit=MAX_LIMIT)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(str(r.id) for r in found)
            raise Conflict(f"{len(found)} rulesets are named {text!r} (ids {ids}); give the id instead")
        known = sorted({r.name for r in self.list(limit=MAX_LIMIT)})
        raise NotFound(
            f"no ruleset named {text!r}"
            + (f"; there are: {', '.join(known)}" if known else "; there are none yet")
        )

    def ensure(
        self, name: str, *, user: str | Actor, project_id: int | None = None, description: str | None = None
    ) -> Ruleset:
        """The local ruleset named ``name``, created (with ``user`` as member) when there is none."""
        try:
            return self.find(name, source=LOCAL_SOURCE)
        except NotFound:
            if str(name).strip().isdigit():
                raise
            return self.create({"name": name, "projectId": project_id, "description": description}, user=user)

    def require_rule_writer(self, ruleset_id: int, *, user: str | Actor) -> Ruleset:
        """Raise PermissionDenied unless ``user`` may add rules to the ruleset."""
        with self.db.connect() as conn:
            return self.check_writable(conn, self.accounts.actor(user), ruleset_id, "add rules to it")

    def update(self, ruleset_id: int, ruleset: Ruleset | Mapping[str, Any], *, user: str | Actor) -> Ruleset:
        """Members (of the ruleset or its project) replace name, description, projectId and members.

        Changing ``projectId`` (to another project or to none) also takes membership of the project it
        leaves and of the one it joins.
        """
        actor = self.accounts.actor(user)
        r = as_model(Ruleset, ruleset, "ruleset")
        with self.db.begin() as conn:
            current = self.load(conn, ruleset_id)
            who = require_member(
                actor, self._writers(conn, current), "edit this ruleset", f"ruleset {ruleset_id}"
            )
            if current.deleted is not None:
                raise Conflict(f"ruleset {ruleset_id} is deleted; it cannot be changed")
            self.db.refuse_mirrored(conn, rulesets_t, ruleset_id, f"ruleset {ruleset_id}")
            if r.projectId != current.projectId:
                # leaving a project (a PUT without projectId does) takes that project's permission,
                # not only the ruleset's: its members lose their say over the ruleset's rules
                if current.projectId is not None:
                    self.projects.check_writable(conn, actor, current.projectId, "move a ruleset out of it")
                if r.projectId is not None:
                    self.projects.check_writable(conn, actor, r.projectId, "move a ruleset into it")
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
                    modified=utc_now(),
                    modified_by=who,
                )
            )
            set_members(conn, ruleset_members_t, "ruleset_id", ruleset_id, members)
            self.db.touch_rules(conn, rules_t.c.ruleset_id == ruleset_id)
        return self.get(ruleset_id)

    def delete(self, ruleset_id: int, *, user: str | Actor) -> Ruleset:
        """Creator or admin; soft-deletes the ruleset and its rules."""
        actor = self.accounts.actor(user)
        with self.db.begin() as conn:
            current = self.load(conn, ruleset_id)
            who = require_creator(actor, current.createdBy, "delete this ruleset", f"ruleset {ruleset_id}")
            self.db.refuse_mirrored(conn, rulesets_t, ruleset_id, f"ruleset {ruleset_id}")
            self.soft_delete(conn, ruleset_id, who)
        return self.get(ruleset_id)

    def soft_delete(self, conn: Connection, ruleset_id: int, who: str) -> None:
        """Mark the ruleset and its rules deleted (no permission check)."""
        now = utc_now()
        seq = self.db.bump(conn)
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

    def _writers(self, conn: Connection, ruleset: Ruleset) -> list[str]:
        writers = list(ruleset.members)
        if ruleset.projectId is not None:
            writers += members_of(conn, project_members_t, "project_id", [ruleset.projectId]).get(
                ruleset.projectId, []
            )
        return list(dict.fromkeys(writers))

    def check_writable(self, conn: Connection, actor: Actor, ruleset_id: int, action: str) -> Ruleset:
        """The ruleset, if it exists, is live, local and ``actor`` may write to it; else the error why not."""
        try:
            ruleset = self.load(conn, ruleset_id)
        except NotFound:
            raise NotFound(f"rulesetId {ruleset_id}: no such ruleset") from None
        if ruleset.deleted is not None:
            raise Conflict(f"ruleset {ruleset_id} is deleted; choose another ruleset")
        self.db.refuse_mirrored(conn, rulesets_t, ruleset_id, f"ruleset {ruleset.name!r} ({ruleset_id})")
        require_member(actor, self._writers(conn, ruleset), action, f"ruleset {ruleset.name!r}")
        return ruleset
