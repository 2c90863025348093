"""annotated_occurrences: the newest snapshot with the labels of the rules that match each occurrence.

Matching is taxonomy-aware and counts boundary points as inside; the spec's votes policy decides which
rules count. Conflicting labels are kept and flagged: the manifest's policy decides what to do with
them. The output is named by its two inputs (``<snapshot_id>-<rules version>``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.annotations.engine import apply_rules
from gbifdl_assets.occurrences.snapshots import latest_snapshot
from gbifdl_assets.pipeline.annotation_rulesets import newest_rules
from gbifdl_assets.pipeline.errors import StageError
from gbifdl_assets.pipeline.species_list import taxon_names_of
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout

PREVIEW_COLUMNS = ("gbifID", "species", "countryCode", "annotation_labels")
PREVIEW_ROWS = 15
TOP_RULES = 10


@dataclass(frozen=True)
class AnnotatedOccurrences:
    """A written annotated table: its inputs, where it is, and what the rules did."""

    snapshot_id: str
    rules_version: str
    output_id: str
    uri: str
    rows: int
    rules_applied: int
    rules_skipped_by_votes: int
    occurrences_matched: int
    conflicts: int
    by_label: dict[str, int]
    top_rules: list[dict[str, Any]]  # rule_id, label, taxon (name and key), hits, description
    preview: list[dict[str, Any]]  # labelled rows (PREVIEW_COLUMNS)
    bytes: int
    seconds: float


def annotate_occurrences(training_set: str, spec: TrainingSetSpec, storage: Storage) -> AnnotatedOccurrences:
    """Apply the newest rules to the newest snapshot and write ``annotated/<training_set>/<id>/``."""
    snapshot = latest_snapshot(storage, training_set)
    if snapshot is None:
        raise StageError(
            f"no committed occurrence snapshot for '{training_set}'; materialize occurrence_snapshot"
        )
    version, rules = newest_rules(storage)
    policy = spec.annotations
    if policy.rulesets is not None:
        rules = _only_rulesets(rules, policy.rulesets, training_set, version)
    occurrences = storage.read_parquet(snapshot.media_key)
    started = time.monotonic()
    result = apply_rules(
        occurrences, rules, min_support=policy.min_support, exclude_contested=policy.exclude_contested
    )
    elapsed = time.monotonic() - started
    folder = layout.annotated(training_set)
    output_id = layout.annotated_id(snapshot.snapshot_id, version)
    storage.write_parquet(folder.key(output_id, layout.MATCHES_FILE), result.matches)
    nbytes = storage.write_parquet(folder.commit_key(output_id), result.annotated)  # the commit file
    layout.publish(storage, folder, output_id)

    annotated = result.annotated
    labelled = annotated.filter(pc.greater(pc.list_value_length(annotated.column("annotation_labels")), 0))
    return AnnotatedOccurrences(
        snapshot_id=snapshot.snapshot_id,
        rules_version=version,
        output_id=output_id,
        uri=storage.uri_of(folder.folder(output_id)),
        rows=annotated.num_rows,
        rules_applied=result.rules_applied,
        rules_skipped_by_votes=result.rules_skipped_by_votes,
        occurrences_matched=len(set(result.matches.column("gbifID").to_pylist())),
        conflicts=int(pc.sum(annotated.column("annotation_conflict")).as_py() or 0),
        by_label=result.label_counts(),
        top_rules=top_rules(result.matches, rules, names=taxon_names_of(storage, training_set)),
        preview=labelled.select(list(PREVIEW_COLUMNS)).slice(0, PREVIEW_ROWS).to_pylist(),
        bytes=nbytes,
        seconds=elapsed,
    )


def _only_rulesets(rules: pa.Table, wanted: list[str], training_set: str, version: str) -> pa.Table:
    known = set(rules.column("ruleset").to_pylist())
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise StageError(
            f"spec '{training_set}' asks for rulesets {unknown}, which the compiled rules "
            f"(version {version}) do not have; known: {sorted(k for k in known if k)}"
        )
    return rules.filter(pc.is_in(rules.column("ruleset"), pa.array(wanted, pa.string())))


def top_rules(
    matches: pa.Table, rules: pa.Table, limit: int = TOP_RULES, *, names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The rules that matched the most occurrences, with their taxon (name and key; "any" for a rule
    without one) and description. ``names``: taxon key (as text) -> name."""
    if not matches.num_rows:
        return []
    hits = matches.group_by(["rule_id", "label"]).aggregate([("gbifID", "count_distinct")])
    rows = sorted(hits.to_pylist(), key=lambda r: -r["gbifID_count_distinct"])[:limit]
    ids = rules.column("id").to_pylist()
    descriptions = dict(zip(ids, rules.column("description").to_pylist(), strict=True))
    taxa = dict(zip(ids, rules.column("taxonKey").to_pylist(), strict=True))
    return [
        {
            "rule_id": r["rule_id"],
            "label": r["label"],
            "taxon": _taxon(taxa.get(r["rule_id"]), names or {}),
            "hits": r["gbifID_count_distinct"],
            "description": (descriptions.get(r["rule_id"]) or "")[:80],
        }
        for r in rows
    ]


def _taxon(key: Any, names: dict[str, str]) -> str:
    if key is None:
        return "any"
    name = names.get(str(key))
    return f"{name} ({key})" if name else str(key)


@dataclass(frozen=True)
class AnnotatedTable:
    """The newest complete annotated table of a training set, and the inputs it was made from."""

    training_set: str
    output_id: str
    key: str

    @property
    def snapshot_id(self) -> str:
        return layout.split_annotated_id(self.output_id)[0]

    @property
    def rules_version(self) -> str:
        return layout.split_annotated_id(self.output_id)[1]


def newest_annotated(storage: Storage, training_set: str) -> AnnotatedTable:
    """The newest complete annotated table (the storage layout's commit rule); StageError when none."""
    folder = layout.annotated(training_set)
    output_id = layout.newest_complete(storage, folder)
    if output_id is None:
        raise StageError(
            f"'{training_set}' has no annotated occurrences yet; materialize annotated_occurrences"
        )
    return AnnotatedTable(training_set, output_id, folder.commit_key(output_id))


def latest_annotated_key(storage: Storage, training_set: str) -> str:
    """The key of the newest complete annotated table (``.../annotated.parquet``)."""
    return newest_annotated(storage, training_set).key
