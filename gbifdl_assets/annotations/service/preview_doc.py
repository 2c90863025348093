"""The rule preview's part of the OpenAPI document (paths and schemas; :mod:`.openapi` merges them)."""

from __future__ import annotations

from typing import Any

from gbifdl_assets.annotations.preview import DEFAULT_SAMPLES, MAX_SAMPLES, MAX_TRAINING_SETS

__all__ = ["preview_paths", "preview_schemas"]

_STR_N = {"type": "string", "nullable": True}
_COUNT = {"type": "integer", "minimum": 0}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required or list(props),
        "additionalProperties": False,
    }


def preview_schemas(rule_input: dict[str, Any]) -> dict[str, Any]:
    """Schemas of the preview (``rule_input``: the RuleInput schema, whose fields the preview takes)."""
    props = {k: v for k, v in rule_input["properties"].items() if k != "annotation"}
    props["annotation"] = {"type": "string", "nullable": True, "description": "optional (SUSPICIOUS)"}
    props["trainingSets"] = {
        "type": "array", "items": {"type": "string"}, "nullable": True, "maxItems": MAX_TRAINING_SETS,
        "description": "training sets whose newest snapshot to look at (default: every one in the data storage)",
    }  # fmt: skip
    props["samples"] = {"type": "integer", "minimum": 0, "maximum": MAX_SAMPLES, "default": DEFAULT_SAMPLES,
                        "nullable": True, "description": "how many sample images to return"}  # fmt: skip
    counts = {"occurrences": {**_COUNT, "description": "distinct gbifIDs"},
              "images": {**_COUNT, "description": "snapshot rows (one per image)"}}  # fmt: skip
    by_dataset = _obj({
        "datasetKey": _STR_N, "datasetTitle": _STR_N, **counts,
        "datasets": {**_COUNT, "description": "only on the 'n more datasets' row"},
    }, required=["datasetKey", "datasetTitle", "occurrences", "images"])  # fmt: skip
    by_bor = _obj({"basisOfRecord": _STR_N, **counts})
    rule_fields = ("taxonKey", "datasetKey", "geometry", "annotation", "basisOfRecord", "basisOfRecordNegated",
                   "yearRange")  # fmt: skip
    rule = _obj({k: {"nullable": True} for k in rule_fields})
    sample = _obj({
        "trainingSet": {"type": "string"}, "gbifID": {"type": "integer"}, "identifier": _STR_N,
        "thumbnail": {**_STR_N, "description": "a small JPEG served by this service (GET)"},
        "species": _STR_N, "datasetKey": _STR_N, "datasetTitle": _STR_N, "basisOfRecord": _STR_N,
        "year": {"type": "integer", "nullable": True}, "decimalLatitude": {"type": "number", "nullable": True},
        "decimalLongitude": {"type": "number", "nullable": True},
    })  # fmt: skip
    per_set = _obj({
        "trainingSet": {"type": "string"}, "snapshotId": {"type": "string"}, "rows": _COUNT,
        "rowsInBoundingBox": _COUNT, "flagged": _obj(counts), "byDataset": {"type": "array", "items": by_dataset},
        "byBasisOfRecord": {"type": "array", "items": by_bor}, "seconds": {"type": "number"},
    })  # fmt: skip
    preview = _obj({
        "rule": rule, "flagged": _obj(counts), "byDataset": {"type": "array", "items": by_dataset},
        "byBasisOfRecord": {"type": "array", "items": by_bor}, "trainingSets": {"type": "array", "items": per_set},
        "samples": {"type": "array", "items": sample}, "seconds": {"type": "number"},
        "message": {"type": "string", "description": "when there is nothing to look at"},
    }, required=["rule", "flagged", "byDataset", "byBasisOfRecord", "trainingSets", "samples", "seconds"])  # fmt: skip
    preview_input = {"type": "object", "properties": props, "required": ["geometry"], "additionalProperties": False,
                     "example": {"geometry": "POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))", "taxonKey": 5219404}}  # fmt: skip
    snapshot = _obj({"trainingSet": {"type": "string"}, "snapshotId": {"type": "string"},
                     "rows": {"type": "integer", "nullable": True}, "created": _STR_N})  # fmt: skip
    return {"RulePreviewInput": preview_input, "RulePreview": preview, "TrainingSetSnapshot": snapshot}


def preview_paths(prefix: str, responses: Any) -> dict[str, Any]:
    """Paths of the preview; ``responses(schema, codes)`` builds the answers as the other operations'."""
    return {
        prefix + "/rule/preview": {
            "post": {
                "operationId": "preview_rule",
                "summary": "What a rule would flag in the training sets' snapshots (an extension GBIF does not have)",
                "description": (
                    "Counts of the occurrences (distinct gbifIDs) and images the rule would flag in the newest "
                    "snapshot of each training set, by dataset and basisOfRecord, and sample images. Nothing is "
                    "stored and no login is needed; as a POST it takes JSON only and no Origin of another site. "
                    "GBIF's geometry limits apply as on rule creation; 503 when the service has no data storage "
                    "or too many previews run at once."
                ),
                "tags": ["rule"],
                "security": [{}, {"basicAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/RulePreviewInput"}}
                    },
                },
                "responses": responses("RulePreview", {400, 403, 413, 415, 503}),
            }
        },
        "/ui/api/preview/training-sets": {
            "get": {
                "operationId": "preview_training_sets",
                "summary": "Training sets with a committed snapshot (what a preview looks at by default)",
                "tags": ["page"],
                "security": [{}, {"basicAuth": []}],
                "responses": responses("TrainingSetSnapshot[]", {503}),
            }
        },
    }
