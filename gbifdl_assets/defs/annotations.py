"""annotation_rulesets and annotated_occurrences[training_set], and the sensor that notices rule changes.

``annotation_rulesets`` compiles every rule source into one versioned table: the annotation store
(rules written with ``gbifdl rules add``, the REST service, or pulled from GBIF's annotation API),
rule files in a folder, and CoordinateCleaner-style seeds. ``annotation_rules_sensor`` re-materializes
it when any source changes, and ``annotated_occurrences`` follows through its eager automation
condition, so a new rule reaches every training set without anyone clicking.
"""

import hashlib
import time

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA, validate_rules_table
from gbifdl_assets.annotations.engine import apply_rules
from gbifdl_assets.annotations.files import rules_table_from_file
from gbifdl_assets.annotations.gbif_api import pull_from_gbif
from gbifdl_assets.annotations.seeds import coordinate_cleaner_rules
from gbifdl_assets.annotations.vocabulary import LABELS
from gbifdl_assets.defs.metadata import markdown_table
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import AnnotationSources, SpecCatalog, StorageResource
from gbifdl_assets.defs.snapshots import occurrence_snapshot
from gbifdl_assets.occurrences.snapshots import latest_snapshot
from gbifdl_assets.storage import Storage

RULES_PREFIX = "annotations/rulesets"
SEED_RULESET = "seeds"


def _table_version(table: pa.Table) -> str:
    """Content hash of the compiled rules: equal content, equal version (a no-op refresh stays fresh)."""
    digest = hashlib.sha256()
    for batch in table.sort_by("id").to_batches():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:16]


def _count_by(table: pa.Table, column: str) -> dict[str, int]:
    if not table.num_rows:
        return {}
    counts = table.group_by(column).aggregate([("id", "count")])
    return dict(zip(counts.column(column).to_pylist(), counts.column("id_count").to_pylist(), strict=True))


def compiled_rules_key(version: str) -> str:
    return f"{RULES_PREFIX}/{version}/rules.parquet"


def latest_rules(storage: Storage) -> tuple[str, pa.Table]:
    pointer = f"{RULES_PREFIX}/latest"
    if not storage.exists(pointer):
        raise dg.Failure(
            description="annotation_rulesets has not been materialized yet; materialize it first",
            allow_retries=False,
        )
    version = storage.read_bytes(pointer).decode().strip()
    return version, storage.read_parquet(compiled_rules_key(version))


@dg.asset(
    group_name="annotations",
    kinds={"python", "parquet"},
    description=(
        "Every rule source compiled into one versioned table (annotations/rulesets/<version>/): the "
        "annotation store, rule files, GBIF's annotation API (when configured) and seed rules."
    ),
)
def annotation_rulesets(
    context: dg.AssetExecutionContext, annotations: AnnotationSources, storage: StorageResource
) -> dg.MaterializeResult:
    store = annotations.store()
    pulled = None
    if annotations.gbif_annotation_url:
        pulled = pull_from_gbif(store, annotations.gbif_annotation_url)
        context.log.info(f"mirrored GBIF annotations from {annotations.gbif_annotation_url}: {pulled}")
    tables = [store.compile()]
    for path in annotations.rule_files():
        tables.append(rules_table_from_file(path))
    if annotations.seeds:
        seeds = coordinate_cleaner_rules()
        seeds = seeds.set_column(
            seeds.schema.get_field_index("ruleset"),
            "ruleset",
            pa.array([SEED_RULESET] * seeds.num_rows, pa.string()),
        )
        tables.append(seeds)
    table = validate_rules_table(
        pa.concat_tables([t.cast(RULES_TABLE_SCHEMA) for t in tables]), max_vertices=None
    )
    version = _table_version(table)
    out = storage.open()
    key = compiled_rules_key(version)
    if not out.exists(key):
        out.write_parquet(key, table)
    out.write_bytes(f"{RULES_PREFIX}/latest", version.encode())
    by_label = _count_by(table, "label")
    by_source = _count_by(table, "source")
    context.log.info(f"compiled {table.num_rows} rules (version {version}): {by_label}")
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "rules": dg.MetadataValue.int(table.num_rows),
            "path": dg.MetadataValue.path(out.uri_of(key)),
            "store_version": store.version(),
            "rule_files": dg.MetadataValue.int(len(tables) - 1 - int(annotations.seeds)),
            "by_label": dg.MetadataValue.md(
                markdown_table(
                    [{"label": k, "rules": by_label.get(k, 0)} for k in LABELS], ("label", "rules")
                )
            ),
            "by_source": dg.MetadataValue.json(by_source),
            "gbif_pull": dg.MetadataValue.text(str(pulled) if pulled else "not configured"),
        },
        data_version=dg.DataVersion(version),
    )


@dg.sensor(
    target=[annotation_rulesets],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Re-compiles the rules when the annotation store or the rule files change.",
)
def annotation_rules_sensor(context: dg.SensorEvaluationContext, annotations: AnnotationSources):
    fingerprint = annotations.fingerprint()
    if fingerprint == context.cursor:
        return dg.SkipReason("rules unchanged")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"rules:{fingerprint}", tags={"gbifdl/trigger": "rules_changed"})
        ],
        cursor=fingerprint,
    )


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[occurrence_snapshot, annotation_rulesets],
    group_name="annotations",
    kinds={"python", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The snapshot with the labels of the rules that match each occurrence (taxonomy-aware, "
        "boundary points inside), under the spec's votes policy. Conflicts are kept and flagged; the "
        "manifest's policy decides."
    ),
)
def annotated_occurrences(
    context: dg.AssetExecutionContext, storage: StorageResource, specs: SpecCatalog
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    store = storage.open()
    snapshot = latest_snapshot(store, training_set)
    if snapshot is None:
        raise dg.Failure(
            description=f"no committed occurrence snapshot for '{training_set}'; materialize occurrence_snapshot",
            allow_retries=False,
        )
    version, rules = latest_rules(store)
    policy = spec.annotations
    if policy.rulesets is not None:
        known = set(rules.column("ruleset").to_pylist())
        unknown = sorted(set(policy.rulesets) - known)
        if unknown:
            raise dg.Failure(
                description=(
                    f"spec '{training_set}' asks for rulesets {unknown}, which the compiled rules "
                    f"(version {version}) do not have; known: {sorted(k for k in known if k)}"
                ),
                allow_retries=False,
            )
        rules = rules.filter(pc.is_in(rules.column("ruleset"), pa.array(policy.rulesets, pa.string())))
    occurrences = store.read_parquet(snapshot.media_key)
    started = time.monotonic()
    result = apply_rules(
        occurrences, rules, min_support=policy.min_support, exclude_contested=policy.exclude_contested
    )
    elapsed = time.monotonic() - started
    prefix = f"annotated/{training_set}/{snapshot.snapshot_id}-{version}"
    store.write_parquet(f"{prefix}/matches.parquet", result.matches)
    nbytes = store.write_parquet(f"{prefix}/annotated.parquet", result.annotated)
    store.write_bytes(f"annotated/{training_set}/latest", prefix.encode())  # after both files: the commit

    by_label = result.label_counts()
    top_rules = _top_rules(result.matches, rules)
    annotated = result.annotated
    flagged = annotated.filter(pc.greater(pc.list_value_length(annotated.column("annotation_labels")), 0))
    preview_rows = (
        flagged.select(["gbifID", "species", "countryCode", "annotation_labels"]).slice(0, 15).to_pylist()
    )
    return dg.MaterializeResult(
        metadata={
            "snapshot_id": snapshot.snapshot_id,
            "rules_version": version,
            "rules_applied": dg.MetadataValue.int(result.rules_applied),
            "rules_skipped_by_votes": dg.MetadataValue.int(result.rules_skipped_by_votes),
            "rows": dg.MetadataValue.int(annotated.num_rows),
            "occurrences_matched": dg.MetadataValue.int(
                len(set(result.matches.column("gbifID").to_pylist()))
            ),
            "conflicts": dg.MetadataValue.int(
                int(pc.sum(annotated.column("annotation_conflict")).as_py() or 0)
            ),
            "records_per_label": dg.MetadataValue.md(
                markdown_table(
                    [{"label": k, "occurrences": v} for k, v in by_label.items()], ("label", "occurrences")
                )
            ),
            "top_rules": dg.MetadataValue.md(
                markdown_table(top_rules, ("rule_id", "label", "hits", "description"))
            ),
            "preview": dg.MetadataValue.md(
                markdown_table(preview_rows, ("gbifID", "species", "countryCode", "annotation_labels"))
            ),
            "path": dg.MetadataValue.path(store.uri_of(prefix)),
            "bytes": dg.MetadataValue.int(nbytes),
            "seconds": dg.MetadataValue.float(round(elapsed, 3)),
        },
        data_version=dg.DataVersion(f"{snapshot.snapshot_id}-{version}"),
    )


def _top_rules(matches: pa.Table, rules: pa.Table, limit: int = 10) -> list[dict]:
    if not matches.num_rows:
        return []
    hits = matches.group_by(["rule_id", "label"]).aggregate([("gbifID", "count_distinct")])
    rows = sorted(hits.to_pylist(), key=lambda r: -r["gbifID_count_distinct"])[:limit]
    descriptions = dict(
        zip(rules.column("id").to_pylist(), rules.column("description").to_pylist(), strict=True)
    )
    return [
        {
            "rule_id": r["rule_id"],
            "label": r["label"],
            "hits": r["gbifID_count_distinct"],
            "description": (descriptions.get(r["rule_id"]) or "")[:80],
        }
        for r in rows
    ]


def latest_annotated_key(storage: Storage, training_set: str) -> str:
    pointer = f"annotated/{training_set}/latest"
    if not storage.exists(pointer):
        raise dg.Failure(
            description=f"'{training_set}' has no annotated occurrences yet; materialize annotated_occurrences",
            allow_retries=False,
        )
    return storage.read_bytes(pointer).decode().strip() + "/annotated.parquet"
