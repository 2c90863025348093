"""Plain records the store hands out (users, rule provenance) or takes in (mirrored rules)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gbifdl_assets.annotations.model import Rule

__all__ = ["MirroredRule", "RuleInfo", "UserInfo"]


@dataclass(frozen=True)
class UserInfo:
    username: str
    admin: bool
    created: dt.datetime | None


@dataclass(frozen=True)
class RuleInfo:
    """What the store knows about a rule beyond GBIF's fields."""

    id: int
    compiled_id: str
    source: str
    origin: str | None
    external_id: str | None
    description: str | None
    ruleset: str | None
    project: str | None
    modified: dt.datetime | None
    modifiedBy: str | None


@dataclass
class MirroredRule:
    """A rule from elsewhere (GBIF, a file) to upsert: the rule plus where it lives there."""

    rule: Rule
    external_id: str
    ruleset_id: int | None = None  # local ids (already mapped)
    project_id: int | None = None
    description: str | None = None
    created_by: str | None = None
    created: dt.datetime | None = None
    votes: tuple[list[str], list[str]] | None = None  # (supportedBy, contestedBy) at the source
