"""Comments on rules: add, read, list newest first, soft delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import Comment
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_user
from gbifdl_assets.annotations.store.accounts import Accounts
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.errors import NotFound
from gbifdl_assets.annotations.store.params import clip_limit
from gbifdl_assets.annotations.store.queries import newest_first, row_by_id
from gbifdl_assets.annotations.store.rows import as_model, comment_model
from gbifdl_assets.annotations.store.rules import Rules
from gbifdl_assets.annotations.store.schema import comments_t, utc_now
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE

__all__ = ["Comments"]


class Comments:
    """Comments on rules (they do not change the compiled table, so they leave the version alone)."""

    def __init__(self, db: Database, accounts: Accounts, rules: Rules) -> None:
        self.db = db
        self.accounts = accounts
        self.rules = rules

    def add(self, rule_id: int, comment: str | Comment | Mapping[str, Any], *, user: str | Actor) -> Comment:
        actor = self.accounts.actor(user)
        who = require_user(actor, "comment on a rule")
        if isinstance(comment, str):
            comment = {"comment": comment}
        c = as_model(Comment, comment, "comment")
        with self.db.begin() as conn:
            self.rules.live_row(conn, rule_id, "comment on")
            cid = conn.execute(
                sa.insert(comments_t).values(
                    rule_id=rule_id, comment=c.comment, created=utc_now(), created_by=who, source=LOCAL_SOURCE
                )
            ).inserted_primary_key[0]
            return self._load(conn, cid)

    def _load(self, conn: Connection, comment_id: int) -> Comment:
        return comment_model(row_by_id(conn, comments_t, comment_id, "comment"))

    def get(self, comment_id: int) -> Comment:
        with self.db.connect() as conn:
            return self._load(conn, comment_id)

    def list(
        self,
        rule_id: int,
        *,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Comment]:
        """Comments on a rule, newest first (NotFound for an unknown rule)."""
        limit, offset = clip_limit(limit, offset)
        with self.db.connect() as conn:
            self.rules.row(conn, rule_id)
            q = sa.select(comments_t).where(comments_t.c.rule_id == int(rule_id))
            if not include_deleted:
                q = q.where(comments_t.c.deleted.is_(None))
            q = q.order_by(*newest_first(comments_t)).limit(limit).offset(offset)
            return [comment_model(r) for r in conn.execute(q).all()]

    def delete(self, rule_id: int, comment_id: int, *, user: str | Actor) -> Comment:
        """The comment's creator or an admin; soft delete."""
        actor = self.accounts.actor(user)
        with self.db.begin() as conn:
            current = self._load(conn, comment_id)
            if current.ruleId != int(rule_id):
                raise NotFound(f"rule {rule_id} has no comment {comment_id}")
            who = require_creator(actor, current.createdBy, "delete this comment", f"comment {comment_id}")
            conn.execute(
                sa.update(comments_t)
                .where(comments_t.c.id == comment_id, comments_t.c.deleted.is_(None))
                .values(deleted=utc_now(), deleted_by=who)
            )
            return self._load(conn, comment_id)
