"""The annotation store: projects, rulesets, rules, votes, comments and users in SQL (SQLAlchemy 2 Core).

``AnnotationStore("sqlite:///data/annotations.sqlite")`` by default, ``postgresql+psycopg2://…`` in
production; the schema is created on first use. The store is the one place that enforces GBIF's rules
of the game (reference annotations.md §2–4), with GBIF's known gaps fixed (§8):

* reads are open to anyone; writes take a ``user`` (a username, or an :class:`Actor`; admin rights come
  from the users table) and are checked by :mod:`.permissions`;
* unknown ids raise :class:`NotFound` (GBIF answers with a null body); votes and comments need a rule
  that exists and is not deleted; changing a deleted object raises :class:`Conflict`;
* soft delete: a ruleset takes its rules with it, a project its rulesets and rules; lists hide deleted
  rows, ``get_*`` shows them (as GBIF);
* support and contest are mutually exclusive per user (one vote row per rule and user, so the database
  itself guarantees it) and idempotent; votes are timestamped;
* :meth:`AnnotationStore.list_rules` takes GBIF's filters, including the literal ``"null"`` for IS NULL,
  and a *real* ``geometry`` intersects filter (GBIF compares strings): a bounding-box prefilter in SQL,
  then shapely on the candidates, so limit/offset count true matches;
* lists are newest first (``created`` DESC, then id DESC), ``limit`` 100 and ``offset`` 0 by default.

Rules that come from elsewhere (the GBIF API, rule files) are *mirrored*: they keep their source, origin
and external id (the GBIF id), re-importing updates them in place, and local edits are refused (change
them at the source). :meth:`compile` turns the non-deleted rules into the engine's rules table, and
:meth:`version` changes with every change that can alter that table, so Dagster can tell when the
compiled rules are stale.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gbifdl_assets.annotations.model import Comment, Project, Rule, RuleError, Ruleset, parse_rule
from gbifdl_assets.annotations.permissions import (
    Actor,
    PermissionDenied,
    require_creator,
    require_member,
    require_user,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_STORE_URL",
    "AnnotationStore",
    "Conflict",
    "MirroredRule",
    "NotFound",
    "PermissionDenied",
    "RuleInfo",
    "StoreError",
    "UserInfo",
    "default_store_url",
]

DEFAULT_STORE_URL = "sqlite:///data/annotations.sqlite"
SCHEMA_VERSION = 1
#: GBIF's list defaults (no maximum at GBIF; we cap to keep one request bounded)
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
#: where a rule was made; mirrored sources are read-only here
LOCAL_SOURCE = "local"
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
#: scrypt cost (about 0.1 s and 32 MiB per hash on the CI machines); stored in each hash, so it can rise
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 128 * 1024 * 1024


def default_store_url() -> str:
    """``GBIFDL_ANNOTATIONS_DB`` or ``sqlite:///data/annotations.sqlite``."""
    return os.environ.get("GBIFDL_ANNOTATIONS_DB") or DEFAULT_STORE_URL


class StoreError(Exception):
    """Base of the store's errors (besides :class:`RuleError` and :class:`PermissionDenied`)."""


class NotFound(StoreError, LookupError):
    """No object with that id (or name)."""


class Conflict(StoreError, ValueError):
    """The request contradicts the stored state (a deleted object, a duplicate user, …)."""


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


# ---------------------------------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------------------------------
class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC in and out on every backend (SQLite has no time zones)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = sa.MetaData()

state_t = sa.Table(
    "ann_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("store_id", sa.String(36), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

users_t = sa.Table(
    "ann_users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created", UTCDateTime, nullable=False),
)


def _provenance() -> list[sa.Column]:
    return [
        sa.Column("source", sa.String(16), nullable=False, default=LOCAL_SOURCE),
        sa.Column("origin", sa.Text, nullable=True),
        sa.Column("external_id", sa.String(200), nullable=True),
    ]


def _audit(modified: bool = True) -> list[sa.Column]:
    cols = [sa.Column("created", UTCDateTime, nullable=False), sa.Column("created_by", sa.String(64))]
    if modified:
        cols += [sa.Column("modified", UTCDateTime), sa.Column("modified_by", sa.String(64))]
    cols += [sa.Column("deleted", UTCDateTime), sa.Column("deleted_by", sa.String(64))]
    return cols


projects_t = sa.Table(
    "ann_projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text),
    *_audit(),
    *_provenance(),
    sa.UniqueConstraint("source", "origin", "external_id", name="uq_ann_projects_ext"),
)

project_members_t = sa.Table(
    "ann_project_members",
    metadata,
    sa.Column(
        "project_id", sa.Integer, sa.ForeignKey("ann_projects.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
)

rulesets_t = sa.Table(
    "ann_rulesets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("ann_projects.id", ondelete="CASCADE"), index=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("description", sa.Text),
    *_audit(),
    *_provenance(),
    sa.UniqueConstraint("source", "origin", "external_id", name="uq_ann_rulesets_ext"),
)

ruleset_members_t = sa.Table(
    "ann_ruleset_members",
    metadata,
    sa.Column(
        "ruleset_id", sa.Integer, sa.ForeignKey("ann_rulesets.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
)

rules_t = sa.Table(
    "ann_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("taxon_key", sa.BigInteger, index=True),
    sa.Column("dataset_key", sa.String(36), index=True),
    sa.Column("geometry", sa.Text, nullable=False),
    sa.Column("annotation", sa.String(32), nullable=False),
    sa.Column("basis_of_record_negated", sa.Boolean, nullable=False, default=False),
    sa.Column("year_range", sa.String(32)),
    sa.Column("ruleset_id", sa.Integer, sa.ForeignKey("ann_rulesets.id", ondelete="CASCADE"), index=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("ann_projects.id", ondelete="CASCADE"), index=True),
    sa.Column("description", sa.Text),
    # bounding box of the geometry: the SQL prefilter of the intersects filter
    sa.Column("minx", sa.Float, nullable=False),
    sa.Column("miny", sa.Float, nullable=False),
    sa.Column("maxx", sa.Float, nullable=False),
    sa.Column("maxy", sa.Float, nullable=False),
    # the store's change counter when this rule (or its votes) last changed
    sa.Column("seq", sa.BigInteger, nullable=False, default=0),
    *_audit(),
    *_provenance(),
    sa.UniqueConstraint("source", "origin", "external_id", name="uq_ann_rules_ext"),
    sa.Index("ix_ann_rules_created", "created", "id"),
)

rule_bor_t = sa.Table(
    "ann_rule_basis_of_record",
    metadata,
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("ann_rules.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("value", sa.String(32), nullable=False, index=True),
)

votes_t = sa.Table(
    "ann_votes",
    metadata,
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("ann_rules.id", ondelete="CASCADE"), primary_key=True),
    # one row per (rule, user): support and contest cannot both exist
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("vote", sa.String(8), nullable=False),  # support | contest
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("origin", sa.String(16), nullable=False, default=LOCAL_SOURCE),
    sa.CheckConstraint("vote IN ('support', 'contest')", name="ck_ann_votes_vote"),
    sa.Index("ix_ann_votes_user", "username", "vote"),
)

comments_t = sa.Table(
    "ann_comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("ann_rules.id", ondelete="CASCADE"), index=True),
    sa.Column("comment", sa.Text, nullable=False),
    *_audit(modified=False),
    *_provenance(),
    sa.UniqueConstraint("source", "origin", "external_id", name="uq_ann_comments_ext"),
)

rule_links_t = sa.Table(
    "ann_rule_links",
    metadata,
    # a local rule pushed to a remote annotation API: pushing again does not duplicate it
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("ann_rules.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("remote_url", sa.String(500), primary_key=True),
    sa.Column("remote_id", sa.String(200), nullable=False),
    sa.Column("pushed", UTCDateTime, nullable=False),
)


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def _now() -> dt.datetime:
    """UTC now at millisecond precision: what GBIF's JSON carries, so values round-trip exactly."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _is_null(value: Any) -> bool:
    """GBIF's convention: the literal text ``null`` in a filter means IS NULL."""
    return isinstance(value, str) and value.strip().lower() == "null"


def _int_filter(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise RuleError(f"{name}={value!r} is not a number (or the literal null)") from None


def _listify(value: Any) -> list[str]:
    """Repeated or comma-separated parameter values."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        out += [p.strip() for p in str(item).split(",") if p.strip()]
    return out


def _clip_limit(limit: int | None, offset: int | None) -> tuple[int, int]:
    limit = DEFAULT_LIMIT if limit is None else int(limit)
    offset = 0 if offset is None else int(offset)
    if limit < 0 or offset < 0:
        raise RuleError(f"limit={limit} offset={offset}: neither may be negative")
    return min(limit, MAX_LIMIT), offset


def _actor_name(user: str | Actor | None) -> str | None:
    return user.username if isinstance(user, Actor) else user


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64): salted and memory-hard; never the password itself."""
    if not isinstance(password, str) or len(password) < 8:
        raise RuleError("the password must have at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=_SCRYPT_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        maxmem=_SCRYPT_MAXMEM,
        dklen=32,
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    """Checked against for unknown users, so a login takes as long whether or not the user exists."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(16))
    return _DUMMY_HASH


def _redact_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


# ---------------------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------------------
#: GBIF's ``GET /rule`` query filters (besides ``geometry``, which is an intersects test), in GBIF's order.
RULE_FILTERS = (
    "taxonKey",
    "datasetKey",
    "rulesetId",
    "projectId",
    "basisOfRecord",
    "basisOfRecordNegated",
    "yearRange",
    "annotation",
    "createdBy",
    "supportedBy",
    "contestedBy",
    "comment",
)


class AnnotationStore:
    """Projects, rulesets, rules, votes, comments and users in one SQL database (module docstring)."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None, echo: bool = False):
        self.url = url or default_store_url()
        if engine is None:
            engine = self._make_engine(self.url, echo)
        self.engine = engine
        self._create_schema()
        with self.engine.connect() as conn:
            self.store_id = str(conn.execute(sa.select(state_t.c.store_id)).scalar_one())

    def __repr__(self) -> str:
        return f"AnnotationStore({_redact_url(self.url)!r})"

    @staticmethod
    def _make_engine(url: str, echo: bool) -> Engine:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            db = parsed.database
            if db and db != ":memory:" and not db.startswith("file:"):
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            if not db or db == ":memory:":
                # one shared connection, or every pooled connection would see its own empty database
                engine = sa.create_engine(
                    url, echo=echo, connect_args={"check_same_thread": False}, poolclass=sa.pool.StaticPool
                )
            else:
                engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 30})

            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                if db and db != ":memory:":
                    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                cur.close()

            return engine
        return sa.create_engine(url, echo=echo, pool_pre_ping=True)

    def _create_schema(self) -> None:
        metadata.create_all(self.engine)
        try:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(state_t.c.id).where(state_t.c.id == 1)).first() is None:
                    conn.execute(
                        sa.insert(state_t).values(
                            id=1, store_id=str(uuid.uuid4()), schema_version=SCHEMA_VERSION, seq=0
                        )
                    )
        except sa.exc.IntegrityError:  # another process created it at the same moment
            pass
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(state_t.c.schema_version).where(state_t.c.id == 1)).scalar_one()
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"the annotation store {_redact_url(self.url)} has schema version {found}, "
                f"newer than this gbifdl_assets ({SCHEMA_VERSION}): upgrade gbifdl_assets"
            )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ change tracking
    def _bump(self, conn: Connection) -> int:
        """Advance the change counter inside the caller's transaction (row lock serialises writers)."""
        conn.execute(sa.update(state_t).where(state_t.c.id == 1).values(seq=state_t.c.seq + 1))
        return int(conn.execute(sa.select(state_t.c.seq).where(state_t.c.id == 1)).scalar_one())

    def version(self) -> str:
        """Changes whenever anything the compiled rules table depends on changes.

        ``<store id>:<change counter>``: the store id is random per database, so a recreated database
        never repeats an old version; the counter advances with every rule, vote, ruleset or project
        change (comments and users do not affect the compiled table).
        """
        with self.engine.connect() as conn:
            seq = conn.execute(sa.select(state_t.c.seq).where(state_t.c.id == 1)).scalar_one()
        return f"{self.store_id}:{seq}"

    # ------------------------------------------------------------------------------ users
    def add_user(self, username: str, password: str, *, admin: bool = False) -> UserInfo:
        if not isinstance(username, str) or not _USERNAME_RE.match(username):
            raise RuleError(
                f"username {username!r}: use 1-64 letters, digits and . _ @ + - (starting with a letter or digit)"
            )
        hashed = hash_password(password)
        created = _now()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(users_t.c.username).where(users_t.c.username == username)).first():
                raise Conflict(f"user {username} exists already; choose another name or set a new password")
            conn.execute(
                sa.insert(users_t).values(
                    username=username, password_hash=hashed, is_admin=bool(admin), created=created
                )
            )
        log.info("annotation store: added user %s%s", username, " (admin)" if admin else "")
        return UserInfo(username, bool(admin), created)

    def set_password(self, username: str, password: str) -> None:
        hashed = hash_password(password)
        with self.engine.begin() as conn:
            n = conn.execute(
                sa.update(users_t).where(users_t.c.username == username).values(password_hash=hashed)
            ).rowcount
        if not n:
            raise NotFound(f"no user {username!r}; add it first")

    def verify_user(self, username: str, password: str) -> bool:
        """True when the password is right (constant-time; unknown users take as long)."""
        if not username or not isinstance(password, str):
            return False
        with self.engine.connect() as conn:
            stored = conn.execute(
                sa.select(users_t.c.password_hash).where(users_t.c.username == username)
            ).scalar_one_or_none()
        if stored is None:
            check_password(password, _dummy_hash())
            return False
        return check_password(password, stored)

    def get_user(self, username: str) -> UserInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(users_t.c.username, users_t.c.is_admin, users_t.c.created).where(
                    users_t.c.username == username
                )
            ).first()
        return UserInfo(row.username, bool(row.is_admin), row.created) if row else None

    def list_users(self) -> list[UserInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(users_t.c.username, users_t.c.is_admin, users_t.c.created).order_by(
                    users_t.c.username
                )
            ).all()
        return [UserInfo(r.username, bool(r.is_admin), r.created) for r in rows]

    def actor(self, user: str | Actor | None) -> Actor:
        """The acting user, with admin rights looked up in the users table."""
        if isinstance(user, Actor):
            return user
        if not user:
            return Actor(None)
        with self.engine.connect() as conn:
            admin = conn.execute(
                sa.select(users_t.c.is_admin).where(users_t.c.username == user)
            ).scalar_one_or_none()
        return Actor(str(user), bool(admin))

    # ------------------------------------------------------------------------------ projects
    def create_project(self, project: Project | Mapping[str, Any], *, user: str | Actor) -> Project:
        """Any user; the creator is always a member (GBIF dev keeps given members and adds none)."""
        actor = self.actor(user)
        creator = require_user(actor, "create a project")
        p = _as_model(Project, project, "project")
        members = _with_first(creator, p.members)
        now = _now()
        with self.engine.begin() as conn:
            pid = conn.execute(
                sa.insert(projects_t).values(
                    name=p.name,
                    description=p.description,
                    created=now,
                    created_by=creator,
                    source=LOCAL_SOURCE,
                )
            ).inserted_primary_key[0]
            _set_members(conn, project_members_t, "project_id", pid, members)
        return self.get_project(pid)

    def get_project(self, project_id: int) -> Project:
        """A project by id, deleted or not."""
        with self.engine.connect() as conn:
            return self._project(conn, project_id)

    def _project(self, conn: Connection, project_id: int) -> Project:
        row = conn.execute(sa.select(projects_t).where(projects_t.c.id == int(project_id))).first()
        if row is None:
            raise NotFound(f"no project with id {project_id}")
        members = _members(conn, project_members_t, "project_id", [row.id]).get(row.id, [])
        return _project_model(row, members)

    def list_projects(
        self,
        *,
        member: str | None = None,
        name: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Project]:
        limit, offset = _clip_limit(limit, offset)
        q = sa.select(projects_t)
        if not include_deleted:
            q = q.where(projects_t.c.deleted.is_(None))
        if member:
            q = q.where(
                sa.exists().where(
                    project_members_t.c.project_id == projects_t.c.id, project_members_t.c.username == member
                )
            )
        if name:
            q = q.where(sa.func.lower(projects_t.c.name).contains(name.lower(), autoescape=True))
        q = q.order_by(projects_t.c.created.desc(), projects_t.c.id.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            members = _members(conn, project_members_t, "project_id", [r.id for r in rows])
        return [_project_model(r, members.get(r.id, [])) for r in rows]

    def update_project(
        self, project_id: int, project: Project | Mapping[str, Any], *, user: str | Actor
    ) -> Project:
        """Members replace name, description and members (at least one member must remain).

        GBIF also copies the members onto every ruleset of the project; here project members simply
        have the rights of ruleset members, which gives the same access without rewriting rulesets.
        """
        actor = self.actor(user)
        p = _as_model(Project, project, "project")
        with self.engine.begin() as conn:
            current = self._project(conn, project_id)
            who = require_member(actor, current.members, "edit this project", f"project {project_id}")
            if current.deleted is not None:
                raise Conflict(f"project {project_id} is deleted; it cannot be changed")
            self._refuse_mirrored(conn, projects_t, project_id, f"project {project_id}")
            members = p.members or current.members
            if not members:
                raise RuleError(f"project {project_id}: at least one member must remain")
            conn.execute(
                sa.update(projects_t)
                .where(projects_t.c.id == project_id)
                .values(name=p.name, description=p.description, modified=_now(), modified_by=who)
            )
            _set_members(conn, project_members_t, "project_id", project_id, members)
            self._touch_rules(conn, rules_t.c.project_id == project_id)  # names are in the compiled table
        return self.get_project(project_id)

    def delete_project(self, project_id: int, *, user: str | Actor) -> Project:
        """Creator or admin; soft-deletes the project, its rulesets and their rules."""
        actor = self.actor(user)
        with self.engine.begin() as conn:
            current = self._project(conn, project_id)
            who = require_creator(actor, current.createdBy, "delete this project", f"project {project_id}")
            self._refuse_mirrored(conn, projects_t, project_id, f"project {project_id}")
            self._soft_delete_project(conn, project_id, who)
        return self.get_project(project_id)

    def _soft_delete_project(self, conn: Connection, project_id: int, who: str) -> None:
        now = _now()
        seq = self._bump(conn)
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

    # ------------------------------------------------------------------------------ rulesets
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
        row = conn.execute(sa.select(rulesets_t).where(rulesets_t.c.id == int(ruleset_id))).first()
        if row is None:
            raise NotFound(f"no ruleset with id {ruleset_id}")
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
            q = q.where(
                sa.exists().where(
                    ruleset_members_t.c.ruleset_id == rulesets_t.c.id, ruleset_members_t.c.username == member
                )
            )
        if name:
            q = q.where(rulesets_t.c.name == name)
        q = q.order_by(rulesets_t.c.created.desc(), rulesets_t.c.id.desc()).limit(limit).offset(offset)
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

    def find_project(self, name_or_id: str | int, *, source: str | None = None) -> Project:
        """The one non-deleted project with this name (or id); ``source`` as in :meth:`find_ruleset`."""
        text = str(name_or_id).strip()
        if text.isdigit():
            return self.get_project(int(text))
        found = [p for p in self.list_projects(name=text, limit=MAX_LIMIT) if p.name == text]
        if source is not None:
            local_ids = set(self.mirrored_ids("project", source=source, origin=None).values())
            found = [p for p in found if p.id in local_ids]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(str(p.id) for p in found)
            raise Conflict(f"{len(found)} projects are named {text!r} (ids {ids}); give the id instead")
        raise NotFound(f"no project named {text!r}")

    def ensure_project(self, name: str, *, user: str | Actor, description: str | None = None) -> Project:
        """The local project named ``name``, created (with ``user`` as member) when there is none."""
        try:
            return self.find_project(name, source=LOCAL_SOURCE)
        except NotFound:
            if str(name).strip().isdigit():
                raise
            return self.create_project({"name": name, "description": description}, user=user)

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

    def _check_project_writable(
        self, conn: Connection, actor: Actor, project_id: int, action: str
    ) -> Project:
        try:
            project = self._project(conn, project_id)
        except NotFound:
            raise NotFound(f"projectId {project_id}: no such project") from None
        if project.deleted is not None:
            raise Conflict(f"project {project_id} is deleted; choose another project")
        self._refuse_mirrored(conn, projects_t, project_id, f"project {project.name!r} ({project_id})")
        require_member(actor, project.members, action, f"project {project_id}")
        return project

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

    def _refuse_mirrored(self, conn: Connection, table: sa.Table, obj_id: int, what: str) -> None:
        row = conn.execute(sa.select(table.c.source, table.c.origin).where(table.c.id == obj_id)).first()
        if row is not None and row.source != LOCAL_SOURCE:
            raise PermissionDenied(
                f"{what} is mirrored from {row.source} ({row.origin}); change it there and import it again"
            )

    def _touch_rules(self, conn: Connection, where: Any) -> None:
        seq = self._bump(conn)
        conn.execute(sa.update(rules_t).where(where).values(seq=seq))

    # ------------------------------------------------------------------------------ rules
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
            for start in range(0, len(ids), 5000):
                q = (
                    sa.select(
                        rules_t,
                        rulesets_t.c.name.label("ruleset_name"),
                        projects_t.c.name.label("project_name"),
                    )
                    .select_from(
                        rules_t.outerjoin(rulesets_t, rules_t.c.ruleset_id == rulesets_t.c.id).outerjoin(
                            projects_t, rules_t.c.project_id == projects_t.c.id
                        )
                    )
                    .where(rules_t.c.id.in_(ids[start : start + 5000]))
                )
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

    def _rule_filters(self, filters: Mapping[str, Any]) -> list[Any]:
        """GBIF's ``GET /rule`` filters as SQL conditions (geometry is handled separately)."""
        known = {*RULE_FILTERS, "source"}
        unknown = sorted(set(filters) - known)
        if unknown:
            raise RuleError(f"unknown rule filter(s) {', '.join(unknown)}; use {', '.join(sorted(known))}")
        c = rules_t.c
        conds: list[Any] = []
        for name, column in (
            ("taxonKey", c.taxon_key),
            ("rulesetId", c.ruleset_id),
            ("projectId", c.project_id),
        ):
            value = filters.get(name)
            if value is None:
                continue
            conds.append(column.is_(None) if _is_null(value) else column == _int_filter(value, name))
        if (value := filters.get("datasetKey")) is not None:
            conds.append(c.dataset_key.is_(None) if _is_null(value) else c.dataset_key == str(value).strip())
        if (value := filters.get("yearRange")) is not None:
            conds.append(c.year_range.is_(None) if _is_null(value) else c.year_range == str(value).strip())
        if (value := filters.get("annotation")) is not None:
            conds.append(sa.func.upper(c.annotation) == str(value).strip().upper())
        if (value := filters.get("basisOfRecordNegated")) is not None:
            flag = value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")
            conds.append(c.basis_of_record_negated == flag)
        if (value := filters.get("basisOfRecord")) is not None:
            values = _listify(value)
            has_bor = sa.exists().where(rule_bor_t.c.rule_id == c.id)
            if any(_is_null(v) for v in values):
                conds.append(~has_bor)
            elif values:
                names = [v.upper() for v in values]
                conds.append(sa.exists().where(rule_bor_t.c.rule_id == c.id, rule_bor_t.c.value.in_(names)))
        if (value := filters.get("createdBy")) is not None:
            conds.append(c.created_by == str(value))
        for name, vote in (("supportedBy", "support"), ("contestedBy", "contest")):
            if (value := filters.get(name)) is not None:
                conds.append(
                    sa.exists().where(
                        votes_t.c.rule_id == c.id, votes_t.c.username == str(value), votes_t.c.vote == vote
                    )
                )
        if (value := filters.get("comment")) is not None and str(value) != "":
            conds.append(
                sa.exists().where(
                    comments_t.c.rule_id == c.id,
                    comments_t.c.deleted.is_(None),
                    sa.func.lower(comments_t.c.comment).contains(str(value).lower(), autoescape=True),
                )
            )
        if (value := filters.get("source")) is not None:
            conds.append(c.source == str(value))
        return conds

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
        conds = self._rule_filters({k: v for k, v in filters.items() if v is not None})
        if not include_deleted:
            conds.append(rules_t.c.deleted.is_(None))
        order = (rules_t.c.created.desc(), rules_t.c.id.desc())
        with self.engine.connect() as conn:
            if geometry is None:
                q = sa.select(rules_t.c.id).where(*conds).order_by(*order).limit(limit).offset(offset)
                ids = list(conn.execute(q).scalars())
            else:
                ids = self._ids_intersecting(conn, geometry, conds, order, limit, offset)
            return self._rules(conn, ids)

    def _ids_intersecting(
        self, conn: Connection, wkt: str, conds: list[Any], order: tuple, limit: int, offset: int
    ) -> list[int]:
        try:
            query_geom = shapely.from_wkt(str(wkt))
        except (shapely.errors.GEOSException, ValueError) as exc:
            raise RuleError(f"geometry filter is not valid WKT ({exc})") from None
        if query_geom is None or query_geom.is_empty:
            return []
        if not query_geom.is_valid:
            query_geom = shapely.make_valid(query_geom)
        qminx, qminy, qmaxx, qmaxy = query_geom.bounds
        c = rules_t.c
        q = (
            sa.select(c.id, c.geometry)
            .where(*conds, c.maxx >= qminx, c.minx <= qmaxx, c.maxy >= qminy, c.miny <= qmaxy)
            .order_by(*order)
            .execution_options(yield_per=1000)
        )
        shapely.prepare(query_geom)
        out: list[int] = []
        skip = offset
        for chunk in conn.execute(q).partitions(1000):
            geoms = shapely.from_wkt([r.geometry for r in chunk], on_invalid="ignore")
            hits = shapely.intersects(query_geom, geoms)
            for row, hit in zip(chunk, hits, strict=True):
                if not hit:
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append(row.id)
                if len(out) >= limit:
                    return out
        return out

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
                seq = self._bump(conn)
                conn.execute(
                    sa.update(rules_t)
                    .where(rules_t.c.id == rule_id)
                    .values(deleted=_now(), deleted_by=who, seq=seq)
                )
            return self._rules(conn, [rule_id])[0]

    def _rule_row(self, conn: Connection, rule_id: int) -> Any:
        row = conn.execute(sa.select(rules_t).where(rules_t.c.id == int(rule_id))).first()
        if row is None:
            raise NotFound(f"no rule with id {rule_id}")
        return row

    def _live_rule_row(self, conn: Connection, rule_id: int, action: str) -> Any:
        row = self._rule_row(conn, rule_id)
        if row.deleted is not None:
            raise Conflict(f"rule {rule_id} is deleted; you cannot {action} it")
        return row

    # ------------------------------------------------------------------------------ votes
    def vote(self, rule_id: int, vote: str, *, user: str | Actor) -> Rule:
        """``support``, ``contest`` or ``remove`` (also ``removeSupport``/``removeContest``); idempotent.

        One vote per user and rule: supporting replaces a contest and vice versa.
        """
        kind = str(vote).strip().lower().replace("_", "").replace("-", "")
        if kind not in ("support", "contest", "remove", "removesupport", "removecontest"):
            raise RuleError(f"vote {vote!r}: use support, contest or remove")
        actor = self.actor(user)
        who = require_user(actor, f"{kind} a rule")
        with self.engine.begin() as conn:
            self._live_rule_row(conn, rule_id, "vote on")
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
                seq = self._bump(conn)
                conn.execute(
                    sa.delete(votes_t).where(votes_t.c.rule_id == rule_id, votes_t.c.username == who)
                )
                if wanted is not None:
                    conn.execute(
                        sa.insert(votes_t).values(
                            rule_id=rule_id, username=who, vote=wanted, created=_now(), origin=LOCAL_SOURCE
                        )
                    )
                conn.execute(sa.update(rules_t).where(rules_t.c.id == rule_id).values(seq=seq))
            return self._rules(conn, [rule_id])[0]

    def support(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.vote(rule_id, "support", user=user)

    def contest(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.vote(rule_id, "contest", user=user)

    def remove_support(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.vote(rule_id, "removeSupport", user=user)

    def remove_contest(self, rule_id: int, *, user: str | Actor) -> Rule:
        return self.vote(rule_id, "removeContest", user=user)

    # ------------------------------------------------------------------------------ comments
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
        row = conn.execute(sa.select(comments_t).where(comments_t.c.id == int(comment_id))).first()
        if row is None:
            raise NotFound(f"no comment with id {comment_id}")
        return _comment_model(row)

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
            q = q.order_by(comments_t.c.created.desc(), comments_t.c.id.desc()).limit(limit).offset(offset)
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

    # ------------------------------------------------------------------------------ metrics
    def rule_metrics(
        self,
        *,
        username: str | None = None,
        taxonKey: int | None = None,
        datasetKey: str | None = None,
        rulesetId: int | None = None,
        projectId: int | None = None,
    ) -> dict[str, Any]:
        """GBIF's ``RuleMetrics`` over non-deleted rules (of ``username`` when given).

        ``supportCount``/``contestCount`` count the votes those rules received.
        """
        filters = {
            "createdBy": username,
            "taxonKey": taxonKey,
            "datasetKey": datasetKey,
            "rulesetId": rulesetId,
            "projectId": projectId,
        }
        conds = self._rule_filters({k: v for k, v in filters.items() if v is not None})
        conds.append(rules_t.c.deleted.is_(None))
        c = rules_t.c
        ids = sa.select(c.id).where(*conds).scalar_subquery()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    sa.func.count(c.id),
                    sa.func.count(sa.distinct(c.dataset_key)),
                    sa.func.count(sa.distinct(c.project_id)),
                    sa.func.count(sa.distinct(c.taxon_key)),
                ).where(*conds)
            ).one()
            votes = dict(
                conn.execute(
                    sa.select(votes_t.c.vote, sa.func.count())
                    .where(votes_t.c.rule_id.in_(ids))
                    .group_by(votes_t.c.vote)
                ).all()
            )
        return {
            "username": username,
            "ruleCount": int(row[0]),
            "datasetCount": int(row[1]),
            "projectCount": int(row[2]),
            "taxonCount": int(row[3]),
            "supportCount": int(votes.get("support", 0)),
            "contestCount": int(votes.get("contest", 0)),
        }

    # ------------------------------------------------------------------------------ mirroring
    def upsert_mirrored_project(
        self, project: Project, *, source: str, origin: str, external_id: str
    ) -> tuple[int, str]:
        """Create or update a project mirrored from ``source``; returns (local id, created|updated|unchanged)."""
        with self.engine.begin() as conn:
            return self._upsert_mirrored_group(
                conn, projects_t, project_members_t, "project_id", project, {}, source, origin, external_id
            )

    def upsert_mirrored_ruleset(
        self, ruleset: Ruleset, *, source: str, origin: str, external_id: str, project_id: int | None
    ) -> tuple[int, str]:
        """As :meth:`upsert_mirrored_project`; ``project_id`` is the local id of its project."""
        with self.engine.begin() as conn:
            return self._upsert_mirrored_group(
                conn,
                rulesets_t,
                ruleset_members_t,
                "ruleset_id",
                ruleset,
                {"project_id": project_id},
                source,
                origin,
                external_id,
            )

    def _upsert_mirrored_group(
        self,
        conn: Connection,
        table: sa.Table,
        members_table: sa.Table,
        fk: str,
        obj: Project | Ruleset,
        extra: dict[str, Any],
        source: str,
        origin: str,
        external_id: str,
    ) -> tuple[int, str]:
        if source == LOCAL_SOURCE:
            raise ValueError(f"mirrored objects need a source other than {LOCAL_SOURCE!r}")
        values = {
            "name": obj.name,
            "description": obj.description,
            "created": obj.created or _now(),
            "created_by": obj.createdBy,
            "modified": obj.modified,
            "modified_by": obj.modifiedBy,
            "deleted": obj.deleted,
            "deleted_by": obj.deletedBy,
            **extra,
        }
        row = conn.execute(
            sa.select(table).where(
                table.c.source == source, table.c.origin == origin, table.c.external_id == external_id
            )
        ).first()
        if row is not None and obj.created is None:
            values["created"] = row.created
        if row is None:
            new_id = conn.execute(
                sa.insert(table).values(**values, source=source, origin=origin, external_id=external_id)
            ).inserted_primary_key[0]
            _set_members(conn, members_table, fk, new_id, obj.members)
            return int(new_id), "created"
        old_members = _members(conn, members_table, fk, [row.id]).get(row.id, [])
        changed = any(getattr(row, k) != v for k, v in values.items()) or old_members != obj.members
        if changed:
            conn.execute(sa.update(table).where(table.c.id == row.id).values(**values))
            _set_members(conn, members_table, fk, row.id, obj.members)
            if table is rulesets_t:
                self._touch_rules(conn, rules_t.c.ruleset_id == row.id)
            elif table is projects_t:
                self._touch_rules(conn, rules_t.c.project_id == row.id)
        return int(row.id), "updated" if changed else "unchanged"

    def upsert_mirrored_rules(
        self, items: Iterable[MirroredRule], *, source: str, origin: str, batch: int = 500
    ) -> dict[str, int]:
        """Create or update rules mirrored from ``source``/``origin`` by external id (idempotent).

        Source votes (``MirroredRule.votes``) replace the votes previously mirrored for that rule; local
        votes stay unless the same user voted at the source. Returns counts per outcome.
        """
        if source == LOCAL_SOURCE:
            raise ValueError(f"mirrored rules need a source other than {LOCAL_SOURCE!r}")
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        pending: list[MirroredRule] = []
        for item in items:
            pending.append(item)
            if len(pending) >= batch:
                self._upsert_rule_batch(pending, source, origin, counts)
                pending = []
        if pending:
            self._upsert_rule_batch(pending, source, origin, counts)
        return counts

    def _upsert_rule_batch(
        self, items: list[MirroredRule], source: str, origin: str, counts: dict[str, int]
    ) -> None:
        with self.engine.begin() as conn:
            ext_ids = [i.external_id for i in items]
            existing = {
                r.external_id: r
                for r in conn.execute(
                    sa.select(rules_t).where(
                        rules_t.c.source == source,
                        rules_t.c.origin == origin,
                        rules_t.c.external_id.in_(ext_ids),
                    )
                ).all()
            }
            bor = _bor_lists(conn, [r.id for r in existing.values()])
            votes = _vote_lists(conn, [r.id for r in existing.values()], origin=source)
            seq: int | None = None
            for item in items:
                r = item.rule
                values = {
                    **_rule_values(r),
                    "ruleset_id": item.ruleset_id,
                    "project_id": item.project_id,
                    "description": item.description,
                    "created": item.created or r.created or _now(),
                    "created_by": item.created_by or r.createdBy,
                    "deleted": r.deleted,
                    "deleted_by": r.deletedBy,
                }
                row = existing.get(item.external_id)
                if row is not None and item.created is None and r.created is None:
                    values["created"] = row.created  # the source has no date: keep the first import's
                new_votes = item.votes
                if row is None:
                    seq = seq or self._bump(conn)
                    rid = conn.execute(
                        sa.insert(rules_t).values(
                            **values, seq=seq, source=source, origin=origin, external_id=item.external_id
                        )
                    ).inserted_primary_key[0]
                    _set_bor(conn, rid, r.basisOfRecord)
                    if new_votes:
                        _mirror_votes(conn, rid, new_votes, source)
                    counts["created"] += 1
                    continue
                same = (
                    all(getattr(row, k) == v for k, v in values.items())
                    and bor.get(row.id) == r.basisOfRecord
                    and (
                        new_votes is None
                        or votes.get(row.id, ([], [])) == (list(new_votes[0]), list(new_votes[1]))
                    )
                )
                if same:
                    counts["unchanged"] += 1
                    continue
                seq = seq or self._bump(conn)
                conn.execute(sa.update(rules_t).where(rules_t.c.id == row.id).values(**values, seq=seq))
                _set_bor(conn, row.id, r.basisOfRecord)
                if new_votes is not None:
                    _mirror_votes(conn, row.id, new_votes, source)
                counts["updated"] += 1

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
        """Soft-delete mirrored ``kind`` ("rule", "ruleset", "project") from source/origin not in ``keep``.

        A full pull or file import calls this for what disappeared at the source. ``where`` limits the
        scope (e.g. ``{"project_id": 3}`` after a pull of one project). Returns how many were deleted.
        """
        table = {"rule": rules_t, "ruleset": rulesets_t, "project": projects_t}[kind]
        keep = set(keep)
        conds = [table.c.source == source, table.c.origin == origin, table.c.deleted.is_(None)]
        for col, value in (where or {}).items():
            conds.append(table.c[col] == value)
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.external_id).where(*conds)).all()
            gone = [r.id for r in rows if r.external_id not in keep]
            if not gone:
                return 0
            for obj_id in gone:
                if kind == "rule":
                    seq = self._bump(conn)
                    conn.execute(
                        sa.update(rules_t)
                        .where(rules_t.c.id == obj_id)
                        .values(deleted=_now(), deleted_by=who, seq=seq)
                    )
                elif kind == "ruleset":
                    self._soft_delete_ruleset(conn, obj_id, who)
                else:
                    self._soft_delete_project(conn, obj_id, who)
        return len(gone)

    def mirrored_ids(self, kind: str, *, source: str, origin: str) -> dict[str, int]:
        """external id → local id of mirrored objects (deleted ones included)."""
        table = {"rule": rules_t, "ruleset": rulesets_t, "project": projects_t}[kind]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.external_id, table.c.id).where(
                    table.c.source == source, table.c.origin == origin
                )
            ).all()
        return {r.external_id: int(r.id) for r in rows}

    # ------------------------------------------------------------------------------ push links
    def link_remote(self, rule_id: int, remote_url: str, remote_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(rule_links_t).where(
                    rule_links_t.c.rule_id == rule_id, rule_links_t.c.remote_url == remote_url
                )
            )
            conn.execute(
                sa.insert(rule_links_t).values(
                    rule_id=rule_id, remote_url=remote_url, remote_id=str(remote_id), pushed=_now()
                )
            )

    def remote_links(self, remote_url: str) -> dict[int, str]:
        """local rule id → remote id of rules already pushed to ``remote_url``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(rule_links_t.c.rule_id, rule_links_t.c.remote_id).where(
                    rule_links_t.c.remote_url == remote_url
                )
            ).all()
        return {int(r.rule_id): r.remote_id for r in rows}

    # ------------------------------------------------------------------------------ compile
    def compile(self, rulesets: Sequence[str | int] | None = None) -> pa.Table:
        """The non-deleted rules as the engine's rules table (``compiled.RULES_TABLE_SCHEMA``).

        ``rulesets``: names or ids; None takes every rule. A rule outside any ruleset is selected by
        the name of its source (``local``, ``gbif``, ``file``), which is also its ``ruleset`` value.
        Unknown names raise NotFound (a typo must not silently select no rules). Rows are ordered by
        ``id``; ``id`` is ``local:<n>`` for local rules and ``<source>:<external id>`` for mirrored ones.
        """
        from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA, validate_rules_table

        c = rules_t.c
        q = (
            sa.select(
                c.id,
                c.source,
                c.external_id,
                c.taxon_key,
                c.geometry,
                c.annotation,
                c.dataset_key,
                c.basis_of_record_negated,
                c.year_range,
                c.created_by,
                c.description,
                c.ruleset_id,
                rulesets_t.c.name.label("ruleset_name"),
                projects_t.c.name.label("project_name"),
            )
            .select_from(
                rules_t.outerjoin(rulesets_t, c.ruleset_id == rulesets_t.c.id).outerjoin(
                    projects_t, c.project_id == projects_t.c.id
                )
            )
            .where(c.deleted.is_(None))
            .order_by(c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            if rulesets is not None:
                rows = self._select_rulesets(conn, rows, rulesets)
            ids = [r.id for r in rows]
            bor: dict[int, list[str] | None] = {}
            counts: dict[int, dict[str, int]] = {}
            for start in range(0, len(ids), 5000):
                part = ids[start : start + 5000]
                bor.update(_bor_lists(conn, part))
                for rid, vote, n in conn.execute(
                    sa.select(votes_t.c.rule_id, votes_t.c.vote, sa.func.count())
                    .where(votes_t.c.rule_id.in_(part))
                    .group_by(votes_t.c.rule_id, votes_t.c.vote)
                ).all():
                    counts.setdefault(rid, {})[vote] = int(n)
        compiled_ids = _unique_compiled_ids(rows)
        columns: dict[str, list[Any]] = {
            "id": compiled_ids,
            "source": [r.source for r in rows],
            "ruleset": [r.ruleset_name if r.ruleset_id is not None else r.source for r in rows],
            "project": [r.project_name for r in rows],
            "taxonKey": [r.taxon_key for r in rows],
            "geometry": [r.geometry for r in rows],
            "label": [r.annotation for r in rows],
            "datasetKey": [r.dataset_key for r in rows],
            "basisOfRecord": [bor.get(r.id) for r in rows],
            "basisOfRecordNegated": [bool(r.basis_of_record_negated) for r in rows],
            "yearRange": [r.year_range for r in rows],
            "supportCount": [counts.get(r.id, {}).get("support", 0) for r in rows],
            "contestCount": [counts.get(r.id, {}).get("contest", 0) for r in rows],
            "createdBy": [r.created_by for r in rows],
            "description": [r.description or _describe_row(r) for r in rows],
        }
        table = pa.table(
            {f.name: pa.array(columns[f.name], type=f.type) for f in RULES_TABLE_SCHEMA},
            schema=RULES_TABLE_SCHEMA,
        )
        # stored rules were validated on the way in; this normalises and guards the engine's input
        return validate_rules_table(table)

    def _select_rulesets(self, conn: Connection, rows: list[Any], wanted: Sequence[str | int]) -> list[Any]:
        names: set[str] = set()
        ids: set[int] = set()
        for item in wanted:
            text = str(item).strip()
            if isinstance(item, int) or text.isdigit():
                ids.add(int(text))
            else:
                names.add(text)
        available = {r.ruleset_name if r.ruleset_id is not None else r.source for r in rows}
        known_ids = {r.ruleset_id for r in rows if r.ruleset_id is not None}
        missing = sorted(names - available) + sorted(str(i) for i in ids - known_ids)
        if missing:
            # an existing ruleset without live rules is fine: it selects nothing
            live = conn.execute(
                sa.select(rulesets_t.c.id, rulesets_t.c.name).where(rulesets_t.c.deleted.is_(None))
            ).all()
            existing = {r.name for r in live} | {str(r.id) for r in live}
            missing = [m for m in missing if m not in existing]
        if missing:
            choices = ", ".join(sorted(available)) or "none"
            raise NotFound(
                f"no ruleset {', '.join(repr(m) for m in missing)} in the store; there are: {choices}"
            )
        return [
            r
            for r in rows
            if (r.ruleset_id is not None and (r.ruleset_name in names or r.ruleset_id in ids))
            or (r.ruleset_id is None and r.source in names)
        ]


# ---------------------------------------------------------------------------------------------------
# row <-> model
# ---------------------------------------------------------------------------------------------------
def _as_model(cls: type, value: Any, what: str) -> Any:
    from pydantic import ValidationError

    from gbifdl_assets.annotations.model import format_validation_error

    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise RuleError(f"{what}: expected an object with {what} fields, got {type(value).__name__}")
    try:
        return cls.from_gbif(value)
    except ValidationError as exc:
        raise RuleError(format_validation_error(exc, what)) from None


def _rule_input(rule: Rule | Mapping[str, Any], *, repair: bool) -> Rule:
    """Validate user input; server-managed fields (as GBIF) are ignored."""
    data = rule.model_dump() if isinstance(rule, Rule) else dict(rule)
    name = f"rule {data['id']}" if data.get("id") is not None else None
    for managed in ("id", "supportedBy", "contestedBy", "created", "createdBy", "deleted", "deletedBy"):
        data.pop(managed, None)
    return parse_rule(data, name=name, repair=repair)


def _rule_values(r: Rule) -> dict[str, Any]:
    geom = shapely.from_wkt(r.geometry)
    minx, miny, maxx, maxy = geom.bounds
    return {
        "taxon_key": r.taxonKey,
        "dataset_key": r.datasetKey,
        "geometry": r.geometry,
        "annotation": r.annotation,
        "basis_of_record_negated": bool(r.basisOfRecordNegated),
        "year_range": r.yearRange,
        "minx": float(minx),
        "miny": float(miny),
        "maxx": float(maxx),
        "maxy": float(maxy),
    }


def _rule_model(row: Any, bor: list[str] | None, supported: list[str], contested: list[str]) -> Rule:
    # built without re-validation: stored rules were validated on the way in
    return Rule.model_construct(
        id=row.id,
        taxonKey=row.taxon_key,
        datasetKey=row.dataset_key,
        geometry=row.geometry,
        annotation=row.annotation,
        basisOfRecord=bor,
        basisOfRecordNegated=bool(row.basis_of_record_negated),
        yearRange=row.year_range,
        rulesetId=row.ruleset_id,
        projectId=row.project_id,
        supportedBy=supported,
        contestedBy=contested,
        created=row.created,
        createdBy=row.created_by,
        deleted=row.deleted,
        deletedBy=row.deleted_by,
    )


def _project_model(row: Any, members: list[str]) -> Project:
    return Project.model_construct(
        id=row.id,
        name=row.name,
        description=row.description,
        members=members,
        created=row.created,
        createdBy=row.created_by,
        modified=row.modified,
        modifiedBy=row.modified_by,
        deleted=row.deleted,
        deletedBy=row.deleted_by,
    )


def _ruleset_model(row: Any, members: list[str]) -> Ruleset:
    return Ruleset.model_construct(
        id=row.id,
        projectId=row.project_id,
        name=row.name,
        description=row.description,
        members=members,
        created=row.created,
        createdBy=row.created_by,
        modified=row.modified,
        modifiedBy=row.modified_by,
        deleted=row.deleted,
        deletedBy=row.deleted_by,
    )


def _comment_model(row: Any) -> Comment:
    return Comment.model_construct(
        id=row.id,
        ruleId=row.rule_id,
        comment=row.comment,
        created=row.created,
        createdBy=row.created_by,
        deleted=row.deleted,
        deletedBy=row.deleted_by,
    )


def _with_first(first: str, others: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([first, *others]))


def _set_members(conn: Connection, table: sa.Table, fk: str, obj_id: int, members: Sequence[str]) -> None:
    conn.execute(sa.delete(table).where(table.c[fk] == obj_id))
    rows = [{fk: obj_id, "username": m, "position": i} for i, m in enumerate(dict.fromkeys(members))]
    if rows:
        conn.execute(sa.insert(table), rows)


def _members(conn: Connection, table: sa.Table, fk: str, ids: Sequence[int]) -> dict[int, list[str]]:
    if not ids:
        return {}
    out: dict[int, list[str]] = {}
    q = (
        sa.select(table.c[fk], table.c.username)
        .where(table.c[fk].in_(list(ids)))
        .order_by(table.c[fk], table.c.position)
    )
    for obj_id, username in conn.execute(q).all():
        out.setdefault(obj_id, []).append(username)
    return out


def _set_bor(conn: Connection, rule_id: int, values: Sequence[str] | None) -> None:
    conn.execute(sa.delete(rule_bor_t).where(rule_bor_t.c.rule_id == rule_id))
    if values:
        conn.execute(
            sa.insert(rule_bor_t),
            [{"rule_id": rule_id, "position": i, "value": v} for i, v in enumerate(values)],
        )


def _bor_lists(conn: Connection, ids: Sequence[int]) -> dict[int, list[str] | None]:
    if not ids:
        return {}
    out: dict[int, list[str] | None] = {}
    q = (
        sa.select(rule_bor_t.c.rule_id, rule_bor_t.c.value)
        .where(rule_bor_t.c.rule_id.in_(list(ids)))
        .order_by(rule_bor_t.c.rule_id, rule_bor_t.c.position)
    )
    for rid, value in conn.execute(q).all():
        out.setdefault(rid, []).append(value)  # type: ignore[union-attr]
    return out


def _vote_lists(
    conn: Connection, ids: Sequence[int], origin: str | None = None
) -> dict[int, tuple[list[str], list[str]]]:
    """rule id → (supportedBy, contestedBy), oldest vote first (GBIF appends to its arrays)."""
    if not ids:
        return {}
    q = sa.select(votes_t.c.rule_id, votes_t.c.username, votes_t.c.vote).where(
        votes_t.c.rule_id.in_(list(ids))
    )
    if origin is not None:
        q = q.where(votes_t.c.origin == origin)
    q = q.order_by(votes_t.c.rule_id, votes_t.c.created, votes_t.c.username)
    out: dict[int, tuple[list[str], list[str]]] = {}
    for rid, username, vote in conn.execute(q).all():
        pair = out.setdefault(rid, ([], []))
        (pair[0] if vote == "support" else pair[1]).append(username)
    return out


def _mirror_votes(
    conn: Connection, rule_id: int, votes: tuple[Sequence[str], Sequence[str]], origin: str
) -> None:
    supported, contested = votes
    conn.execute(sa.delete(votes_t).where(votes_t.c.rule_id == rule_id, votes_t.c.origin == origin))
    both = set(supported) & set(contested)  # GBIF keeps them exclusive; if not, the contest wins
    rows = []
    base = _now()
    for i, name in enumerate(supported):
        if name not in both:
            rows.append(("support", name, i))
    for i, name in enumerate(contested):
        rows.append(("contest", name, len(supported) + i))
    if not rows:
        return
    names = [r[1] for r in rows]
    conn.execute(sa.delete(votes_t).where(votes_t.c.rule_id == rule_id, votes_t.c.username.in_(names)))
    conn.execute(
        sa.insert(votes_t),
        [
            {
                "rule_id": rule_id,
                "username": name,
                "vote": vote,
                # keep the source's order: GBIF's arrays are in voting order
                "created": base + dt.timedelta(milliseconds=pos),
                "origin": origin,
            }
            for vote, name, pos in rows
        ],
    )


def _compiled_id(rule_id: int, source: str, external_id: str | None) -> str:
    if source == LOCAL_SOURCE or not external_id:
        return f"{LOCAL_SOURCE}:{rule_id}"
    return f"{source}:{external_id}"


def _unique_compiled_ids(rows: Sequence[Any]) -> list[str]:
    """Compiled ids, made unique if two origins of one source reuse an external id."""
    ids = [_compiled_id(r.id, r.source, r.external_id) for r in rows]
    seen: set[str] = set()
    out = []
    for cid, r in zip(ids, rows, strict=True):
        if cid in seen:
            cid = f"{cid}@{r.id}"
        seen.add(cid)
        out.append(cid)
    return out


def _describe_row(r: Any) -> str:
    taxon = f"taxon {r.taxon_key}" if r.taxon_key is not None else "any taxon"
    extra = f" ({r.year_range})" if r.year_range else ""
    return f"{taxon} in polygon are {r.annotation}{extra}"
