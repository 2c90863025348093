"""GBIF's ``RuleMetrics``: counts of rules, datasets, projects, taxa and votes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gbifdl_assets.annotations.store.base import StoreBase
from gbifdl_assets.annotations.store.rule_filters import _rule_conditions
from gbifdl_assets.annotations.store.schema import rules_t, votes_t


class MetricsMixin(StoreBase):
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
        conds = _rule_conditions({k: v for k, v in filters.items() if v is not None})
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
