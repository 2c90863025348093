"""Who may change what, as GBIF's annotation API has it (reference annotations.md §4), plus its gaps fixed.

* Anyone reads (no user needed).
* Projects: any user creates one; its members edit it; its creator (or an admin) deletes it.
* Rulesets: any user creates one, but inside a project only a project member may (GBIF never checks
  this); members of the ruleset or of its project edit it; its creator (or an admin) deletes it.
* Rules: any user creates one; inside a ruleset or project only its members may (GBIF dev checks the
  project, never the ruleset); **only the rule's creator edits or deletes it** (admins may).
* Votes and comments: any user, on a rule that exists and is not deleted (GBIF checks neither);
  a comment is deleted by its creator or an admin.

The functions take plain values (usernames, member lists) so the store, the REST service and tests share
one definition. Every refusal is a :class:`PermissionDenied` with one message naming the object, the
user and who may do it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gbifdl_assets.errors import GbifdlError

__all__ = [
    "Actor",
    "PermissionDenied",
    "require_creator",
    "require_member",
    "require_user",
]


class PermissionDenied(GbifdlError, PermissionError):
    """The acting user may not do this; the message says who may."""


@dataclass(frozen=True)
class Actor:
    """The user acting on the store: ``username`` None is an anonymous reader."""

    username: str | None
    admin: bool = False

    @property
    def label(self) -> str:
        return self.username or "an anonymous user"


def require_user(actor: Actor, action: str) -> str:
    """Writing needs a user; returns the username."""
    if not actor.username:
        raise PermissionDenied(f"{action} needs a user: log in (or pass --user)")
    return actor.username


def require_member(actor: Actor, members: Iterable[str], action: str, what: str) -> str:
    """``actor`` must be one of ``members`` (or an admin)."""
    user = require_user(actor, action)
    members = list(members)
    if actor.admin or user in members:
        return user
    who = ", ".join(members) if members else "nobody"
    raise PermissionDenied(f"{user} may not {action}: only members of {what} may ({who})")


def require_creator(actor: Actor, created_by: str | None, action: str, what: str) -> str:
    """Only the creator of ``what`` (or an admin) may do ``action``."""
    user = require_user(actor, action)
    if actor.admin or (created_by is not None and user == created_by):
        return user
    raise PermissionDenied(
        f"{user} may not {action}: only its creator ({created_by or 'unknown'}) or an admin may change {what}"
    )
