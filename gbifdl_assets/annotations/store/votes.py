"""Votes: one support or contest per user and rule, idempotent, timestamped."""

from __future__ import annotations

import sqlalchemy as sa

from gbifdl_assets.annotations.model import Rule, RuleError
from gbifdl_assets.annotations.permissions import Actor, require_user
from gbifdl_assets.annotations.store.accounts import Accounts
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.rules import Rules
from gbifdl_assets.annotations.store.schema import rules_t, utc_now, votes_t
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE

__all__ = ["Votes"]


class Votes:
    """Support and contest of rules; a vote changes the compiled table, so it advances the version."""

    def __init__(self, db: Database, accounts: Accounts, rules: Rules) -> None:
        self.db = db
        self.accounts = accounts
        self.rules = rules

    def vote(self, rule_id: int, vote: str, *, user: str | Actor) -> Rule:
        """``support``, ``contest`` or ``remove`` (also ``removeSupport``/``removeContest``); idempotent.

        One vote per user and rule: supporting replaces a contest and vice versa.
        """
        kind = str(vote).strip().lower().replace("_", "").replace("-", "")
        if kind not in ("support", "contest", "remove", "removesupport", "removecontest"):
            raise RuleError(f"vote {vote!r}: use support, contest or remove")
        actor = self.accounts.actor(user)
        who = require_user(actor, f"{kind} a rule")
        with self.db.begin() as conn:
            self.rules.live_row(conn, rule_id, "vote on")
            current = conn.execute(
                sa.select(votes_t.c.vote).where(votes_t.c.rule_id == rule_id, votes_t.c.username == who)
            ).scalar_one_or_none()
            wanted: str | None
            if kind in ("support", "contest"):
                wanted = kind
            elif kind == "remove":
                wanted = None
            else:  # removeSupport removes only a support, removeContest only a contest (as GBIF)
                target = kind.removeprefix("remove")
                wanted = None if current == target else current
            if wanted != current:
                seq = self.db.bump(conn)
                conn.execute(
                    sa.delete(votes_t).where(votes_t.c.rule_id == rule_id, votes_t.c.username == who)
                )
                if wanted is not None:
                    conn.execute(
                        sa.insert(votes_t).values(
                            rule_id=rule_id, username=who, vote=wanted, created=utc_now(), origin=LOCAL_SOURCE
                        )
                    )
                conn.execute(sa.update(rules_t).where(rules_t.c.id == rule_id).values(seq=seq))
            return self.rules.load(conn, [rule_id])[0]
