"""Rows ↔ models: validate user input into column values, and build models from stored rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import shapely

from gbifdl_assets.annotations.model import Comment, Project, Rule, RuleError, Ruleset, parse_rule
from gbifdl_assets.annotations.store.settings import LOCAL_SOURCE

__all__ = [
    "as_model",
    "comment_model",
    "compiled_id",
    "project_model",
    "rule_input",
    "rule_model",
    "rule_values",
    "ruleset_model",
]


def as_model(cls: type, value: Any, what: str) -> Any:
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


def rule_input(rule: Rule | Mapping[str, Any], *, repair: bool) -> Rule:
    """Validate user input; server-managed fields (as GBIF) are ignored."""
    data = rule.model_dump() if isinstance(rule, Rule) else dict(rule)
    name = f"rule {data['id']}" if data.get("id") is not None else None
    for managed in ("id", "supportedBy", "contestedBy", "created", "createdBy", "deleted", "deletedBy"):
        data.pop(managed, None)
    return parse_rule(data, name=name, repair=repair)


def rule_values(r: Rule) -> dict[str, Any]:
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


def rule_model(row: Any, bor: list[str] | None, supported: list[str], contested: list[str]) -> Rule:
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


def _group_fields(row: Any, members: list[str]) -> dict[str, Any]:
    """The fields projects and rulesets share (a ruleset adds its projectId)."""
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "members": members,
        "created": row.created,
        "createdBy": row.created_by,
        "modified": row.modified,
        "modifiedBy": row.modified_by,
        "deleted": row.deleted,
        "deletedBy": row.deleted_by,
    }


def project_model(row: Any, members: list[str]) -> Project:
    return Project.model_construct(**_group_fields(row, members))


def ruleset_model(row: Any, members: list[str]) -> Ruleset:
    return Ruleset.model_construct(projectId=row.project_id, **_group_fields(row, members))


def comment_model(row: Any) -> Comment:
    return Comment.model_construct(
        id=row.id,
        ruleId=row.rule_id,
        comment=row.comment,
        created=row.created,
        createdBy=row.created_by,
        deleted=row.deleted,
        deletedBy=row.deleted_by,
    )


def compiled_id(rule_id: int, source: str, external_id: str | None) -> str:
    if source == LOCAL_SOURCE or not external_id:
        return f"{LOCAL_SOURCE}:{rule_id}"
    return f"{source}:{external_id}"
