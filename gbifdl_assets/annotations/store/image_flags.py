"""Image flags: create, read, list, soft delete, support and contest; compiled for the manifest stage.

The rules of the game are the rules' (package docstring): anyone reads; any user flags; only the
flag's creator (or an admin) deletes it; any user supports or contests a live flag, one vote per
user (supporting replaces a contest), idempotently. A flag identical to a live one (same occurrence,
media URL, term and taxon) raises :class:`DuplicateFlag` naming it: support that one instead.

Flags keep their own change counter (``ann_flag_state``), not the store's: a flag never changes the
compiled rules table, so it must not make every training set re-annotate its occurrences.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.image_flags import (
    FLAGS_TABLE_SCHEMA,
    FlagInput,
    ImageFlag,
    parse_flag_input,
)
from gbifdl_assets.annotations.model import RuleError
from gbifdl_assets.annotations.permissions import Actor, require_creator, require_user
from gbifdl_assets.annotations.store.accounts import Accounts
from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.errors import Conflict, NotFound
from gbifdl_assets.annotations.store.lists import vote_lists
from gbifdl_assets.annotations.store.params import clip_limit
from gbifdl_assets.annotations.store.queries import newest_first, row_by_id
from gbifdl_assets.annotations.store.schema import (
    flag_state_t,
    image_flag_votes_t,
    image_flags_t,
    utc_now,
)
from gbifdl_assets.annotations.vocabulary import normalize_flag

__all__ = ["FLAG_FILTERS", "DuplicateFlag", "ImageFlags", "identifier_hash"]

#: the filters of :meth:`ImageFlags.list` (and of ``GET /image-flag``)
FLAG_FILTERS = (
    "gbifID",
    "mediaIdentifier",
    "contentSha256",
    "phash",
    "taxonKey",
    "flag",
    "createdBy",
    "supportedBy",
    "contestedBy",
)


class DuplicateFlag(Conflict):
    """An identical live flag exists already; ``existing_id`` is its id (support it instead)."""

    def __init__(self, message: str, existing_id: int) -> None:
        super().__init__(message)
        self.existing_id = existing_id


def identifier_hash(identifier: str) -> str:
    """sha256 hex of the media URL: an indexable column (URLs are long texts) and the image store's
    content key of that URL."""
    return hashlib.sha256(identifier.encode()).hexdigest()


class ImageFlags:
    """The image flags table and its votes."""

    def __init__(self, db: Database, accounts: Accounts) -> None:
        self.db = db
        self.accounts = accounts
        try:
            with db.begin() as conn:
                if conn.execute(sa.select(flag_state_t.c.id)).first() is None:
                    conn.execute(sa.insert(flag_state_t).values(id=1, seq=0))
        except sa.exc.IntegrityError:  # another process created it at the same moment
            pass

    # ------------------------------------------------------------------------------ change counter
    def _bump(self, conn: Connection) -> int:
        conn.execute(sa.update(flag_state_t).where(flag_state_t.c.id == 1).values(seq=flag_state_t.c.seq + 1))
        return int(conn.execute(sa.select(flag_state_t.c.seq).where(flag_state_t.c.id == 1)).scalar_one())

    def version(self) -> str:
        """``<store id>:flags:<counter>``: changes with every flag, deletion and vote."""
        with self.db.connect() as conn:
            seq = conn.execute(sa.select(flag_state_t.c.seq).where(flag_state_t.c.id == 1)).scalar_one()
        return f"{self.db.store_id}:flags:{seq}"

    # ------------------------------------------------------------------------------ writes
    def create(self, data: FlagInput | Mapping[str, Any], *, user: str | Actor) -> ImageFlag:
        """Any user; server-managed fields in ``data`` are ignored."""
        actor = self.accounts.actor(user)
        creator = require_user(actor, "flag an image")
        f = data if isinstance(data, FlagInput) else parse_flag_input(data)
        id_hash = identifier_hash(f.mediaIdentifier)
        c = image_flags_t.c
        with self.db.begin() as conn:
            same = conn.execute(
                sa.select(c.id).where(
                    c.deleted.is_(None),
                    c.gbif_id == f.gbifID,
                    c.identifier_sha256 == id_hash,
                    c.flag == f.flag,
                    c.taxon_key.is_(None) if f.taxonKey is None else c.taxon_key == f.taxonKey,
                )
            ).first()
            if same is not None:
                raise DuplicateFlag(
                    f"image flag {same.id} says the same already ({f.flag} on occurrence {f.gbifID}, "
                    "this media URL): support it instead of adding another",
                    int(same.id),
                )
            seq = self._bump(conn)
            fid = conn.execute(
                sa.insert(image_flags_t).values(
                    gbif_id=f.gbifID,
                    media_identifier=f.mediaIdentifier,
                    identifier_sha256=id_hash,
                    content_sha256=f.contentSha256,
                    phash=f.phash,
                    taxon_key=f.taxonKey,
                    flag=f.flag,
                    comment=f.comment,
                    seq=seq,
                    created=utc_now(),
                    created_by=creator,
                )
            ).inserted_primary_key[0]
            return self.load(conn, [int(fid)])[0]

    def delete(self, flag_id: int, *, user: str | Actor) -> ImageFlag:
        """Its creator or an admin; soft delete; deleting twice changes nothing."""
        actor = self.accounts.actor(user)
        with self.db.begin() as conn:
            row = row_by_id(conn, image_flags_t, flag_id, "image flag")
            who = require_creator(actor, row.created_by, "delete this image flag", f"image flag {flag_id}")
            if row.deleted is None:
                seq = self._bump(conn)
                conn.execute(
                    sa.update(image_flags_t)
                    .where(image_flags_t.c.id == flag_id)
                    .values(deleted=utc_now(), deleted_by=who, seq=seq)
                )
            return self.load(conn, [int(flag_id)])[0]

    def vote(self, flag_id: int, vote: str, *, user: str | Actor) -> ImageFlag:
        """``support``, ``contest`` or ``remove`` (also ``removeSupport``/``removeContest``); idempotent."""
        kind = str(vote).strip().lower().replace("_", "").replace("-", "")
        if kind not in ("support", "contest", "remove", "removesupport", "removecontest"):
            raise RuleError(f"vote {vote!r}: use support, contest or remove")
        actor = self.accounts.actor(user)
        who = require_user(actor, f"{kind} an image flag")
        v = image_flag_votes_t.c
        with self.db.begin() as conn:
            row = row_by_id(conn, image_flags_t, flag_id, "image flag")
            if row.deleted is not None:
                raise Conflict(f"image flag {flag_id} is deleted; you cannot vote on it")
            mine = (v.flag_id == flag_id) & (v.username == who)
            current = conn.execute(sa.select(v.vote).where(mine)).scalar_one_or_none()
            if kind in ("support", "contest"):
                wanted: str | None = kind
            elif kind == "remove":
                wanted = None
            else:
                wanted = None if current == kind.removeprefix("remove") else current
            if wanted != current:
                seq = self._bump(conn)
                conn.execute(sa.delete(image_flag_votes_t).where(mine))
                if wanted is not None:
                    conn.execute(
                        sa.insert(image_flag_votes_t).values(
                            flag_id=flag_id, username=who, vote=wanted, created=utc_now()
                        )
                    )
                conn.execute(sa.update(image_flags_t).where(image_flags_t.c.id == flag_id).values(seq=seq))
            return self.load(conn, [int(flag_id)])[0]

    # ------------------------------------------------------------------------------ reads
    def get(self, flag_id: int) -> ImageFlag:
        """A flag by id, deleted or not."""
        with self.db.connect() as conn:
            found = self.load(conn, [int(flag_id)])
        if not found:
            raise NotFound(f"no image flag with id {flag_id}")
        return found[0]

    def load(self, conn: Connection, ids: Sequence[int]) -> list[ImageFlag]:
        """Flags with their votes, in the order of ``ids`` (unknown ids left out)."""
        if not ids:
            return []
        c = image_flags_t.c
        rows = {r.id: r for r in conn.execute(sa.select(image_flags_t).where(c.id.in_(list(ids)))).all()}
        votes = vote_lists(conn, list(rows), table=image_flag_votes_t, key="flag_id")
        out = []
        for fid in ids:
            row = rows.get(fid)
            if row is None:
                continue
            supported, contested = votes.get(fid, ([], []))
            out.append(
                ImageFlag(
                    id=row.id,
                    gbifID=int(row.gbif_id),
                    mediaIdentifier=row.media_identifier,
                    contentSha256=row.content_sha256,
                    phash=row.phash,
                    taxonKey=row.taxon_key,
                    flag=row.flag,
                    comment=row.comment,
                    supportedBy=supported,
                    contestedBy=contested,
                    created=row.created,
                    createdBy=row.created_by,
                    deleted=row.deleted,
                    deletedBy=row.deleted_by,
                )
            )
        return out

    def list(
        self,
        *,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int | None = None,
        **filters: Any,
    ) -> list[ImageFlag]:
        """Flags newest first; filters (:data:`FLAG_FILTERS`) are exact; deleted flags hidden."""
        limit, offset = clip_limit(limit, offset)
        conds = self._conditions({k: v for k, v in filters.items() if v is not None})
        if not include_deleted:
            conds.append(image_flags_t.c.deleted.is_(None))
        q = sa.select(image_flags_t.c.id).where(*conds).order_by(*newest_first(image_flags_t))
        with self.db.connect() as conn:
            ids = list(conn.execute(q.limit(limit).offset(offset)).scalars())
            return self.load(conn, ids)

    @staticmethod
    def _conditions(filters: Mapping[str, Any]) -> list[Any]:
        unknown = sorted(set(filters) - set(FLAG_FILTERS))
        if unknown:
            raise RuleError(
                f"unknown image flag filter(s) {', '.join(unknown)}: use {', '.join(FLAG_FILTERS)}"
            )
        c, v = image_flags_t.c, image_flag_votes_t.c
        conds: list[Any] = []
        for name, value in filters.items():
            text = str(value).strip()
            if name in ("gbifID", "taxonKey"):
                if not text.isdigit():
                    raise RuleError(f"{name}={text[:40]!r} is not a whole number")
                conds.append((c.gbif_id if name == "gbifID" else c.taxon_key) == int(text))
            elif name == "mediaIdentifier":
                conds.append(c.identifier_sha256 == identifier_hash(text))
            elif name in ("contentSha256", "phash"):
                conds.append((c.content_sha256 if name == "contentSha256" else c.phash) == text.lower())
            elif name == "flag":
                try:
                    conds.append(c.flag == normalize_flag(text))
                except ValueError as exc:
                    raise RuleError(str(exc)) from None
            elif name == "createdBy":
                conds.append(c.created_by == text)
            else:
                kind = "support" if name == "supportedBy" else "contest"
                conds.append(sa.exists().where(v.flag_id == c.id, v.username == text, v.vote == kind))
        return conds

    # ------------------------------------------------------------------------------ compiled
    def compile(self) -> pa.Table:
        """Every live flag with its vote counts (:data:`FLAGS_TABLE_SCHEMA`), by id."""
        c, v = image_flags_t.c, image_flag_votes_t.c
        counts = (
            sa.select(
                v.flag_id,
                sa.func.sum(sa.case((v.vote == "support", 1), else_=0)).label("support"),
                sa.func.sum(sa.case((v.vote == "contest", 1), else_=0)).label("contest"),
            )
            .group_by(v.flag_id)
            .subquery()
        )
        q = (
            sa.select(
                c.id,
                c.gbif_id,
                c.media_identifier,
                c.content_sha256,
                c.phash,
                c.taxon_key,
                c.flag,
                counts.c.support,
                counts.c.contest,
                c.created_by,
            )  # fmt: skip
            .select_from(image_flags_t.outerjoin(counts, counts.c.flag_id == c.id))
            .where(c.deleted.is_(None))
            .order_by(c.id)
        )
        with self.db.connect() as conn:
            rows = conn.execute(q).all()
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in FLAGS_TABLE_SCHEMA]
        data = {}
        for f, values in zip(FLAGS_TABLE_SCHEMA, columns, strict=True):
            if f.name in ("support", "contest"):
                values = [int(x or 0) for x in values]
            data[f.name] = pa.array(list(values), f.type)
        return pa.table(data, schema=FLAGS_TABLE_SCHEMA)
