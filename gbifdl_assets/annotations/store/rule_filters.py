"""GBIF's ``GET /rule`` filters as SQL conditions, and the real geometry intersects filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.model import MAX_WKT_LENGTH, RuleError
from gbifdl_assets.annotations.store.params import int_filter, is_null, listify
from gbifdl_assets.annotations.store.schema import comments_t, rule_bor_t, rules_t, votes_t
from gbifdl_assets.annotations.wkt import read_wkt

__all__ = ["MAX_FILTER_WKT_LENGTH", "RULE_FILTERS", "ids_intersecting", "rule_conditions"]

#: the geometry filter may be as long as a rule's polygon
MAX_FILTER_WKT_LENGTH = MAX_WKT_LENGTH

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


def rule_conditions(filters: Mapping[str, Any]) -> list[Any]:
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
        conds.append(column.is_(None) if is_null(value) else column == int_filter(value, name))
    for name, column in (("datasetKey", c.dataset_key), ("yearRange", c.year_range)):
        if (value := filters.get(name)) is not None:
            conds.append(column.is_(None) if is_null(value) else column == str(value).strip())
    if (value := filters.get("annotation")) is not None:
        conds.append(sa.func.upper(c.annotation) == str(value).strip().upper())
    if (value := filters.get("basisOfRecordNegated")) is not None:
        flag = value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")
        conds.append(c.basis_of_record_negated == flag)
    if (value := filters.get("basisOfRecord")) is not None:
        values = listify(value)
        has_bor = sa.exists().where(rule_bor_t.c.rule_id == c.id)
        if any(is_null(v) for v in values):
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


def ids_intersecting(
    conn: Connection, wkt: str, conds: list[Any], order: tuple, limit: int, offset: int
) -> list[int]:
    """Ids of rules matching ``conds`` whose polygon intersects ``wkt``, paged over true matches.

    A bounding-box prefilter in SQL, then shapely on the candidates, ``order``ed and streamed.
    """
    text = str(wkt)
    if len(text) > MAX_FILTER_WKT_LENGTH:
        raise RuleError(
            f"geometry filter has {len(text):,} characters; give at most {MAX_FILTER_WKT_LENGTH:,}"
        )
    try:
        query_geom = read_wkt(text)
    except ValueError as exc:
        raise RuleError(f"geometry filter {exc}") from None
    if query_geom.is_empty:
        return []
    try:
        if not query_geom.is_valid:
            query_geom = shapely.make_valid(query_geom)
        shapely.prepare(query_geom)
    except shapely.errors.GEOSException as exc:
        raise RuleError(f"geometry filter cannot be used for an intersection test ({exc})") from None
    qminx, qminy, qmaxx, qmaxy = query_geom.bounds
    c = rules_t.c
    q = (
        sa.select(c.id, c.geometry)
        .where(*conds, c.maxx >= qminx, c.minx <= qmaxx, c.maxy >= qminy, c.miny <= qmaxy)
        .order_by(*order)
        .execution_options(yield_per=1000)
    )
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
