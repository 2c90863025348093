"""Comments on rules: add, read, list newest first, soft delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import Comment
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_user
from gbifdl_assets.annotations.store.errors import NotFound
from gbifdl_assets.annotations.store.params import _clip_limit
from gbifdl_assets.annotations.store.queries import _newest_first, _row_by_id
from gbifdl_assets.annotations.store.rows import _as_model, _comment_model
from gbifdl_assets.annotations.store.rules import RulesMixin
from gbifdl_assets.annotations.store.schema import _now, comments_t
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE


class CommentsMixin(RulesMixin):
    def add_comment(
        self, rule_id: int, comment: str | Comment | Mapping[str, Any], *, user: str | Actor
    ) -> Comment:
        actor = self.actor(user)
        who = require_user(actor, "comment on a rule")
        if isinstance(comment, str):
            comment = {"comment": comment}
        c = _as_model(Comment, comment, "comment")
        with self.engine.begin() as conn:
            self._live_rule_row(conn, rule_id, "comment on")
            cid = conn.execute(
                sa.insert(comments_t).values(
                    rule_id=rule_id, comment=c.comment, created=_now(), created_by=who, source=LOCAL_SOURCE
                )
            ).inserted_primary_key[0]
            return self._comment(conn, cid)

    def _comment(self, conn: Connection, comment_id: int) -> Comment:
        return _comment_model(_row_by_id(conn, comments_t, comment_id, "comment"))

    def get_comment(self, comment_id: int) -> Comment:
        with self.engine.connect() as conn:
            return self._comment(conn, comment_id)

    def list_comments(
        self,
        rule_id: int,
        *,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Comment]:
        """Comments on a rule, newest first (NotFound for an unknown rule)."""
        limit, offset = _clip_limit(limit, offset)
        with self.engine.connect() as conn:
            self._rule_row(conn, rule_id)
            q = sa.select(comments_t).where(comments_t.c.rule_id == int(rule_id))
            if not include_deleted:
                q = q.where(comments_t.c.deleted.is_(None))
            q = q.order_by(*_newest_first(comments_t)).limit(limit).offset(offset)
            return [_comment_model(r) for r in conn.execute(q).all()]

    def delete_comment(self, rule_id: int, comment_id: int, *, user: str | Actor) -> Comment:
        """The comment's creator or an admin; soft delete."""
        actor = self.actor(user)
        with self.engine.begin() as conn:
            current = self._comment(conn, comment_id)
            if current.ruleId != int(rule_id):
                raise NotFound(f"rule {rule_id} has no comment {comment_id}")
            who = require_creator(actor, current.createdBy, "delete this comment", f"comment {comment_id}")
            conn.execute(
                sa.update(comments_t)
                .where(comments_t.c.id == comment_id, comments_t.c.deleted.is_(None))
                .values(deleted=_now(), deleted_by=who)
            )
            return self._comment(conn, comment_id)
