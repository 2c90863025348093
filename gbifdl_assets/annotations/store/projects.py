"""Projects: create, read, list, find by name, update, soft delete (taking rulesets and rules along)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import Project, RuleError
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_member, require_user
from gbifdl_assets.annotations.store.accounts import Accounts
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.errors import Conflict, NotFound
from gbifdl_assets.annotations.store.lists import members_of, set_members, with_first
from gbifdl_assets.annotations.store.params import clip_limit
from gbifdl_assets.annotations.store.queries import has_member, newest_first, row_by_id
from gbifdl_assets.annotations.store.rows import as_model, project_model
from gbifdl_assets.annotations.store.schema import project_members_t, projects_t, rules_t, rulesets_t, utc_now
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE, MAX_LIMIT

__all__ = ["Projects"]


class Projects:
    """The projects table and its members; methods taking ``conn`` run in the caller's transaction."""

    def __init__(self, db: Database, accounts: Accounts) -> None:
        self.db = db
        self.accounts = accounts

    def create(self, project: Project | Mapping[str, Any], *, user: str | Actor) -> Project:
        """Any user; the creator is always a member (GBIF dev keeps given members and adds none)."""
        actor = self.accounts.actor(user)
        creator = require_user(actor, "create a project")
        p = as_model(Project, project, "project")
        members = with_first(creator, p.members)
        now = utc_now()
        with self.db.begin() as conn:
            pid = conn.execute(
                sa.insert(projects_t).values(
                    name=p.name,
                    description=p.description,
                    created=now,
                    created_by=creator,
                    source=LOCAL_SOURCE,
                )
            ).inserted_primary_key[0]
            set_members(conn, project_members_t, "project_id", pid, members)
        return self.get(pid)

    def get(self, project_id: int) -> Project:
        """A project by id, deleted or not."""
        with self.db.connect() as conn:
            return self.load(conn, project_id)

    def load(self, conn: Connection, project_id: int) -> Project:
        """:meth:`get` inside the caller's transaction."""
        row = row_by_id(conn, projects_t, project_id, "project")
        members = members_of(conn, project_members_t, "project_id", [row.id]).get(row.id, [])
        return project_model(row, members)

    def list(
        self,
        *,
        member: str | None = None,
        name: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Project]:
        limit, offset = clip_limit(limit, offset)
        q = sa.select(projects_t)
        if not include_deleted:
            q = q.where(projects_t.c.deleted.is_(None))
        if member:
            q = q.where(has_member(project_members_t, "project_id", projects_t, member))
        if name:
            q = q.where(sa.func.lower(projects_t.c.name).contains(name.lower(), autoescape=True))
        q = q.order_by(*newest_first(projects_t)).limit(limit).offset(offset)
        with self.db.connect() as conn:
            rows = conn.execute(q).all()
            members = members_of(conn, project_members_t, "project_id", [r.id for r in rows])
        return [project_model(r, members.get(r.id, [])) for r in rows]

    def find(self, name_or_id: str | int, *, source: str | None = None) -> Project:
        """The one non-deleted project with this name (or id); ``source`` as in :meth:`Rulesets.find`."""
        text = str(name_or_id).strip()
        if text.isdigit():
            return self.get(int(text))
        found = [p for p in self.list(name=text, limit=MAX_LIMIT) if p.name == text]
        if source is not None:
            local_ids = set(self.db.mirrored_ids("project", source=source, origin=None).values())
            found = [p for p in found if p.id in local_ids]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(str(p.id) for p in found)
            raise Conflict(f"{len(found)} projects are named {text!r} (ids {ids}); give the id instead")
        raise NotFound(f"no project named {text!r}")

    def ensure(self, name: str, *, user: str | Actor, description: str | None = None) -> Project:
        """The local project named ``name``, created (with ``user`` as member) when there is none."""
        try:
            return self.find(name, source=LOCAL_SOURCE)
        except NotFound:
            if str(name).strip().isdigit():
                raise
            return self.create({"name": name, "description": description}, user=user)

    def update(self, project_id: int, project: Project | Mapping[str, Any], *, user: str | Actor) -> Project:
        """Members replace name, description and members (at least one member must remain).

        GBIF also copies the members onto every ruleset of the project; here project members simply
        have the rights of ruleset members, which gives the same access without rewriting rulesets.
        """
        actor = self.accounts.actor(user)
        p = as_model(Project, project, "project")
        with self.db.begin() as conn:
            current = self.load(conn, project_id)
            who = require_member(actor, current.members, "edit this project", f"project {project_id}")
            if current.deleted is not None:
                raise Conflict(f"project {project_id} is deleted; it cannot be changed")
            self.db.refuse_mirrored(conn, projects_t, project_id, f"project {project_id}")
            members = p.members or current.members
            if not members:
                raise RuleError(f"project {project_id}: at least one member must remain")
            conn.execute(
                sa.update(projects_t)
                .where(projects_t.c.id == project_id)
                .values(name=p.name, description=p.description, modified=utc_now(), modified_by=who)
            )
            set_members(conn, project_members_t, "project_id", project_id, members)
            self.db.touch_rules(conn, rules_t.c.project_id == project_id)  # names are in the compiled table
        return self.get(project_id)

    def delete(self, project_id: int, *, user: str | Actor) -> Project:
        """Creator or admin; soft-deletes the project, its rulesets and their rules."""
        actor = self.accounts.actor(user)
        with self.db.begin() as conn:
            current = self.load(conn, project_id)
            who = require_creator(actor, current.createdBy, "delete this project", f"project {project_id}")
            self.db.refuse_mirrored(conn, projects_t, project_id, f"project {project_id}")
            self.soft_delete(conn, project_id, who)
        return self.get(project_id)

    def soft_delete(self, conn: Connection, project_id: int, who: str) -> None:
        """Mark the project, its rulesets and all their rules deleted (no permission check)."""
        now = utc_now()
        seq = self.db.bump(conn)
        conn.execute(
            sa.update(projects_t)
            .where(projects_t.c.id == project_id, projects_t.c.deleted.is_(None))
            .values(deleted=now, deleted_by=who)
        )
        conn.execute(
            sa.update(rulesets_t)
            .where(rulesets_t.c.project_id == project_id, rulesets_t.c.deleted.is_(None))
            .values(deleted=now, deleted_by=who)
        )
        in_project_rulesets = sa.select(rulesets_t.c.id).where(rulesets_t.c.project_id == project_id)
        conn.execute(
            sa.update(rules_t)
            .where(
                sa.or_(rules_t.c.project_id == project_id, rules_t.c.ruleset_id.in_(in_project_rulesets)),
                rules_t.c.deleted.is_(None),
            )
            .values(deleted=now, deleted_by=who, seq=seq)
        )

    def check_writable(self, conn: Connection, actor: Actor, project_id: int, action: str) -> Project:
        """The project, if it exists, is live, local and ``actor`` is a member; else the error why not."""
        try:
            project = self.load(conn, project_id)
        except NotFound:
            raise NotFound(f"projectId {project_id}: no such project") from None
        if project.deleted is not None:
            raise Conflict(f"project {project_id} is deleted; choose another project")
        self.db.refuse_mirrored(conn, projects_t, project_id, f"project {project.name!r} ({project_id})")
        require_member(actor, project.members, action, f"project {project_id}")
        return project
