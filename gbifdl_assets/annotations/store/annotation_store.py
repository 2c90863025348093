""":class:`AnnotationStore`: the store's parts wired together, behind the methods its callers use.

The parts, each a class with one responsibility (module docstring of the package for the rules they
enforce); every part receives the ones it builds on:

* ``db`` (:class:`Database`): engine, schema, change counter (:meth:`version`), provenance checks;
* ``accounts`` (:class:`Accounts`): users, passwords, the acting user;
* ``projects``, ``rulesets``, ``rules`` (:class:`Projects`, :class:`Rulesets`, :class:`Rules`, the last
  with GBIF's filters and metrics), ``votes`` and ``comments``: the objects of GBIF's annotation API;
* ``mirror`` (:class:`Mirror`): objects from GBIF and rule files, and links of pushed rules;
* ``compiler`` (:class:`RuleCompiler`): the engine's rules table (:meth:`compile`);
* ``image_flags`` (:class:`ImageFlags`): flags on single images and their votes, with their own
  change counter (:meth:`flags_version`) and compiled table (:meth:`compile_flags`).

The methods below are the store's public API (the REST service, the CLI, Dagster's resources and the
tests use them); each hands the call to one part. Code that works with one part only may use it
directly (``store.mirror.upsert_rules(...)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

import pyarrow as pa
from sqlalchemy.engine import Engine

from gbifdl_assets.annotations.image_flags import ImageFlag
from gbifdl_assets.annotations.model import Comment, Project, Rule, Ruleset
from gbifdl_assets.annotations.permissions import Actor
from gbifdl_assets.annotations.store.accounts import Accounts
from gbifdl_assets.annotations.store.comments import Comments
from gbifdl_assets.annotations.store.compiler import RuleCompiler
from gbifdl_assets.annotations.store.connection import redact_url
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.image_flags import ImageFlags
from gbifdl_assets.annotations.store.mirror import Mirror
from gbifdl_assets.annotations.store.projects import Projects
from gbifdl_assets.annotations.store.records import MirroredRule, RuleInfo, UserInfo
from gbifdl_assets.annotations.store.rules import Rules
from gbifdl_assets.annotations.store.rulesets import Rulesets
from gbifdl_assets.annotations.store.votes import Votes

__all__ = ["AnnotationStore"]


class AnnotationStore:
    """Projects, rulesets, rules, votes, comments and users in one SQL database (package docstring)."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None, echo: bool = False):
        self.db = Database(url, engine=engine, echo=echo)
        self.url = self.db.url  # an attribute, not a property: repr() needs only this (and no database)
        self.accounts = Accounts(self.db)
        self.projects = Projects(self.db, self.accounts)
        self.rulesets = Rulesets(self.db, self.accounts, self.projects)
        self.rules = Rules(self.db, self.accounts, self.projects, self.rulesets)
        self.votes = Votes(self.db, self.accounts, self.rules)
        self.comments = Comments(self.db, self.accounts, self.rules)
        self.mirror = Mirror(self.db, self.projects, self.rulesets, self.rules)
        self.compiler = RuleCompiler(self.db)
        self.image_flags = ImageFlags(self.db, self.accounts)

    # ------------------------------------------------------------------------------ the database
    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def store_id(self) -> str:
        """Random per database: a recreated database never repeats an old :meth:`version`."""
        return self.db.store_id

    def version(self) -> str:
        """``<store id>:<change counter>``; changes whenever the compiled rules table may change."""
        return self.db.version()

    def compile(self, rulesets: Sequence[str | int] | None = None) -> pa.Table:
        """The non-deleted rules as the apply engine's rules table (:meth:`RuleCompiler.compile`)."""
        return self.compiler.compile(rulesets)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AnnotationStore({redact_url(self.url)!r})"

    # ------------------------------------------------------------------------------ users
    def add_user(self, username: str, password: str, *, admin: bool = False) -> UserInfo:
        return self.accounts.add(username, password, admin=admin)

    def set_password(self, username: str, password: str) -> None:
        self.accounts.set_password(username, password)

    def verify_user(self, username: str, password: str) -> bool:
        return self.accounts.verify(username, password)

    def get_user(self, username: str) -> UserInfo | None:
        return self.accounts.get(username)

    def list_users(self) -> list[UserInfo]:
        return self.accounts.list()

    def actor(self, user: str | Actor | None) -> Actor:
        return self.accounts.actor(user)

    # ------------------------------------------------------------------------------ projects
    def create_project(self, project: Project | Mapping[str, Any], *, user: str | Actor) -> Project:
        return self.projects.create(project, user=user)

    def get_project(self, project_id: int) -> Project:
        return self.projects.get(project_id)

    def list_projects(self, **query: Any) -> list[Project]:
        """:meth:`Projects.list`: ``member``, ``name``, ``include_deleted``, ``limit``, ``offset``."""
        return self.projects.list(**query)

    def ensure_project(self, name: str, *, user: str | Actor, description: str | None = None) -> Project:
        return self.projects.ensure(name, user=user, description=description)

    def update_project(
        self, project_id: int, project: Project | Mapping[str, Any], *, user: str | Actor
    ) -> Project:
        return self.projects.update(project_id, project, user=user)

    def delete_project(self, project_id: int, *, user: str | Actor) -> Project:
        return self.projects.delete(project_id, user=user)

    # ------------------------------------------------------------------------------ rulesets
    def create_ruleset(self, ruleset: Ruleset | Mapping[str, Any], *, user: str | Actor) -> Ruleset:
        return self.rulesets.create(ruleset, user=user)

    def get_ruleset(self, ruleset_id: int) -> Ruleset:
        return self.rulesets.get(ruleset_id)

    def list_rulesets(self, **query: Any) -> list[Ruleset]:
        """:meth:`Rulesets.list`: ``projectId``, ``member``, ``name``, ``source``, ``include_deleted``,
        ``limit``, ``offset``."""
        return self.rulesets.list(**query)

    def find_ruleset(self, name_or_id: str | int, *, source: str | None = None) -> Ruleset:
        return self.rulesets.find(name_or_id, source=source)

    def ensure_ruleset(
        self, name: str, *, user: str | Actor, project_id: int | None = None, description: str | None = None
    ) -> Ruleset:
        return self.rulesets.ensure(name, user=user, project_id=project_id, description=description)

    def update_ruleset(
        self, ruleset_id: int, ruleset: Ruleset | Mapping[str, Any], *, user: str | Actor
    ) -> Ruleset:
        return self.rulesets.update(ruleset_id, ruleset, user=user)

    def delete_ruleset(self, ruleset_id: int, *, user: str | Actor) -> Ruleset:
        return self.rulesets.delete(ruleset_id, user=user)

    # ------------------------------------------------------------------------------ rules
    def create_rule(
        self,
        rule: Rule | Mapping[str, Any],
        *,
        user: str | Actor,
        description: str | None = None,
        repair: bool = False,
    ) -> Rule:
        return self.rules.create(rule, user=user, description=description, repair=repair)

    def get_rule(self, rule_id: int) -> Rule:
        return self.rules.get(rule_id)

    def rule_info(self, rule_id: int) -> RuleInfo:
        return self.rules.info(rule_id)

    def rule_infos(self, rule_ids: Sequence[int]) -> dict[int, RuleInfo]:
        return self.rules.infos(rule_ids)

    def list_rules(self, **query: Any) -> list[Rule]:
        """:meth:`Rules.list`: GBIF's filters, ``geometry``, ``include_deleted``, ``limit``, ``offset``."""
        return self.rules.list(**query)

    def iter_rules(self, *, batch: int = 1000, **filters: Any) -> Iterator[Rule]:
        return self.rules.iter(batch=batch, **filters)

    def update_rule(
        self, rule_id: int, rule: Rule | Mapping[str, Any], *, user: str | Actor, repair: bool = False
    ) -> Rule:
        return self.rules.update(rule_id, rule, user=user, repair=repair)

    def delete_rule(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.rules.delete(rule_id, user=user)

    def rule_metrics(self, **query: Any) -> dict[str, Any]:
        """:meth:`Rules.metrics`: ``username``, ``taxonKey``, ``datasetKey``, ``rulesetId``, ``projectId``."""
        return self.rules.metrics(**query)

    # ------------------------------------------------------------------------------ votes, comments
    def vote(self, rule_id: int, vote: str, *, user: str | Actor) -> Rule:
        return self.votes.vote(rule_id, vote, user=user)

    def support(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.votes.vote(rule_id, "support", user=user)

    def contest(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.votes.vote(rule_id, "contest", user=user)

    def remove_support(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.votes.vote(rule_id, "removeSupport", user=user)

    def remove_contest(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.votes.vote(rule_id, "removeContest", user=user)

    def add_comment(
        self, rule_id: int, comment: str | Comment | Mapping[str, Any], *, user: str | Actor
    ) -> Comment:
        return self.comments.add(rule_id, comment, user=user)

    def get_comment(self, comment_id: int) -> Comment:
        return self.comments.get(comment_id)

    def list_comments(self, rule_id: int, **query: Any) -> list[Comment]:
        """:meth:`Comments.list`: ``include_deleted``, ``limit``, ``offset``."""
        return self.comments.list(rule_id, **query)

    def delete_comment(self, rule_id: int, comment_id: int, *, user: str | Actor) -> Comment:
        return self.comments.delete(rule_id, comment_id, user=user)

    # ------------------------------------------------------------------------------ image flags
    def create_flag(self, flag: Mapping[str, Any], *, user: str | Actor) -> ImageFlag:
        return self.image_flags.create(flag, user=user)

    def get_flag(self, flag_id: int) -> ImageFlag:
        return self.image_flags.get(flag_id)

    def list_flags(self, **query: Any) -> list[ImageFlag]:
        """:meth:`ImageFlags.list`: :data:`FLAG_FILTERS`, ``include_deleted``, ``limit``, ``offset``."""
        return self.image_flags.list(**query)

    def delete_flag(self, flag_id: int, *, user: str | Actor) -> ImageFlag:
        return self.image_flags.delete(flag_id, user=user)

    def vote_flag(self, flag_id: int, vote: str, *, user: str | Actor) -> ImageFlag:
        return self.image_flags.vote(flag_id, vote, user=user)

    def flags_version(self) -> str:
        """Changes with every flag, deletion and vote (not with rules: :meth:`version` is theirs)."""
        return self.image_flags.version()

    def compile_flags(self) -> pa.Table:
        """The live flags with vote counts, as the manifest stage reads them."""
        return self.image_flags.compile()

    # ------------------------------------------------------------------------------ mirroring
    def upsert_mirrored_rules(
        self, items: Iterable[MirroredRule], *, source: str, origin: str, batch: int = 500
    ) -> dict[str, int]:
        return self.mirror.upsert_rules(items, source=source, origin=origin, batch=batch)

    def retire_mirrored(
        self,
        kind: str,
        *,
        source: str,
        origin: str,
        keep: Iterable[str],
        who: str,
        where: Mapping[str, Any] | None = None,
    ) -> int:
        return self.mirror.retire(kind, source=source, origin=origin, keep=keep, who=who, where=where)
