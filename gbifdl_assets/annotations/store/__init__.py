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
* a rule identical to a live local rule (same taxon, dataset, area, label, filters, ruleset and project)
  raises :class:`DuplicateRule` naming the existing rule (GBIF stores both);
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

The store is a few classes, one per responsibility, that :class:`AnnotationStore` (:mod:`.annotation_store`)
wires together and calls: :mod:`.database` (engine, change counter, provenance checks; engines per backend
in :mod:`.connection`), :mod:`.accounts` (users, with :mod:`.passwords`), :mod:`.projects`,
:mod:`.rulesets`, :mod:`.rules` (with GBIF's filters in :mod:`.rule_filters`), :mod:`.votes`,
:mod:`.comments`, :mod:`.mirror` (GBIF and rule-file sync, push links) and :mod:`.compiler` (the engine's
rules table). What they share: :mod:`.settings`, :mod:`.errors`, :mod:`.records` (defaults and limits,
exceptions, plain records), :mod:`.schema` (tables and the clock), :mod:`.params` (GBIF's parameter
conventions), :mod:`.queries` (query shapes several tables share), :mod:`.lists` (ordered child lists:
members, basisOfRecord, votes) and :mod:`.rows` (rows ↔ models). :mod:`.image_flags` keeps flags on
single images (issue 18), with votes like rules' and a change counter of their own.
"""

from __future__ import annotations

from gbifdl_assets.annotations.permissions import PermissionDenied
from gbifdl_assets.annotations.store.annotation_store import AnnotationStore
from gbifdl_assets.annotations.store.errors import Conflict, DuplicateRule, NotFound, StoreError
from gbifdl_assets.annotations.store.image_flags import FLAG_FILTERS, DuplicateFlag
from gbifdl_assets.annotations.store.passwords import check_password, hash_password
from gbifdl_assets.annotations.store.records import MirroredRule, RuleInfo, UserInfo
from gbifdl_assets.annotations.store.rule_filters import RULE_FILTERS
from gbifdl_assets.annotations.store.settings import (
    DEFAULT_LIMIT,
    DEFAULT_STORE_URL,
    LOCAL_SOURCE,
    MAX_LIMIT,
    SCHEMA_VERSION,
    default_store_url,
)

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_STORE_URL",
    "FLAG_FILTERS",
    "LOCAL_SOURCE",
    "MAX_LIMIT",
    "RULE_FILTERS",
    "SCHEMA_VERSION",
    "AnnotationStore",
    "Conflict",
    "DuplicateFlag",
    "DuplicateRule",
    "MirroredRule",
    "NotFound",
    "PermissionDenied",
    "RuleInfo",
    "StoreError",
    "UserInfo",
    "check_password",
    "default_store_url",
    "hash_password",
]
