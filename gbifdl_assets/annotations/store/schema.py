"""The store's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL, and its clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE

__all__ = [
    "MIRRORED_TABLES",
    "UTCDateTime",
    "comments_t",
    "flag_state_t",
    "image_flag_votes_t",
    "image_flags_t",
    "metadata",
    "project_members_t",
    "projects_t",
    "rule_bor_t",
    "rule_links_t",
    "rules_t",
    "ruleset_members_t",
    "rulesets_t",
    "state_t",
    "users_t",
    "utc_now",
    "votes_t",
]


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


def utc_now() -> dt.datetime:
    """UTC now at millisecond precision: what GBIF's JSON carries, so values round-trip exactly."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


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

image_flags_t = sa.Table(
    "ann_image_flags",
    metadata,
    # one image: an occurrence's media item (gbifID + its URL), and when known the photo's content
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gbif_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("media_identifier", sa.Text, nullable=False),
    sa.Column("identifier_sha256", sa.String(64), nullable=False, index=True),  # indexable form of the URL
    sa.Column("content_sha256", sa.String(64), index=True),
    sa.Column("phash", sa.String(64), index=True),
    sa.Column("taxon_key", sa.BigInteger, index=True),
    sa.Column("flag", sa.String(32), nullable=False),
    sa.Column("comment", sa.Text),
    # the flags' change counter (flag_state_t) when this flag or its votes last changed
    sa.Column("seq", sa.BigInteger, nullable=False, default=0),
    *_audit(modified=False),
    sa.Index("ix_ann_image_flags_created", "created", "id"),
)

image_flag_votes_t = sa.Table(
    "ann_image_flag_votes",
    metadata,
    sa.Column(
        "flag_id", sa.Integer, sa.ForeignKey("ann_image_flags.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("username", sa.String(64), primary_key=True),  # one vote per user and flag
    sa.Column("vote", sa.String(8), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.CheckConstraint("vote IN ('support', 'contest')", name="ck_ann_image_flag_votes_vote"),
)

flag_state_t = sa.Table(
    "ann_flag_state",
    metadata,
    # the flags' own change counter: a flag never changes the compiled rules (the store's version)
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

#: the tables of what can be mirrored from elsewhere, by the ``kind`` the mirroring methods take
MIRRORED_TABLES = {"rule": rules_t, "ruleset": rulesets_t, "project": projects_t}
