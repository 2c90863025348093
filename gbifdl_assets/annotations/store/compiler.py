"""Compile the non-deleted rules into the apply engine's rules table (``compiled.RULES_TABLE_SCHEMA``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gbifdl_assets.annotations.store.database import Database
from gbifdl_assets.annotations.store.errors import NotFound
from gbifdl_assets.annotations.store.lists import bor_lists
from gbifdl_assets.annotations.store.queries import id_chunks, select_rules_with_names
from gbifdl_assets.annotations.store.rows import compiled_id
from gbifdl_assets.annotations.store.schema import rules_t, rulesets_t, votes_t

__all__ = ["RuleCompiler"]


class RuleCompiler:
    """Turns the store into the one input the apply engine reads: a validated Arrow rules table."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
            select_rules_with_names(
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
            )
            .where(c.deleted.is_(None))
            .order_by(c.id)
        )
        with self.db.connect() as conn:
            rows = conn.execute(q).all()
            if rulesets is not None:
                rows = self._select_rulesets(conn, rows, rulesets)
            ids = [r.id for r in rows]
            bor: dict[int, list[str] | None] = {}
            counts: dict[int, dict[str, int]] = {}
            for part in id_chunks(ids):
                bor.update(bor_lists(conn, part))
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


def _unique_compiled_ids(rows: Sequence[Any]) -> list[str]:
    """Compiled ids, made unique if two origins of one source reuse an external id."""
    ids = [compiled_id(r.id, r.source, r.external_id) for r in rows]
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
