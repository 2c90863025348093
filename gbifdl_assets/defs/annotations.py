"""annotation_rulesets and annotated_occurrences[training_set], and the sensor that notices rule changes.

``annotation_rulesets`` compiles every rule source into one versioned table (the annotation store,
rule files, GBIF's annotation API, seed rules). ``annotation_rules_sensor`` re-materializes it when any
source changes, and ``annotated_occurrences`` follows through its eager automation condition, so a new
rule reaches every training set without anyone clicking. The work is in
:mod:`gbifdl_assets.pipeline.annotation_rulesets` and :mod:`~gbifdl_assets.pipeline.annotated_occurrences`.
"""

import dagster as dg

from gbifdl_assets.defs.metadata import STORAGE_KIND, count_table, markdown_table, md
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import AnnotationsResource, SpecsResource, StorageResource
from gbifdl_assets.defs.retries import stage_failures
from gbifdl_assets.defs.sensor_timing import every, sensor_seconds
from gbifdl_assets.defs.snapshots import occurrence_snapshot
from gbifdl_assets.defs.source_sensor import rebuild_on_change
from gbifdl_assets.pipeline.annotated_occurrences import (
    PREVIEW_COLUMNS,
    AnnotatedOccurrences,
    annotate_occurrences,
)
from gbifdl_assets.pipeline.annotation_rulesets import CompiledRules, compile_rulesets

#: annotation_rulesets' metadata: the fingerprint of the sources it was compiled from (the sensor's too)
SOURCES_FINGERPRINT = "sources_fingerprint"


@dg.asset(
    group_name="annotations",
    kinds={"python", "parquet", STORAGE_KIND},
    description=(
        "Every rule source compiled into one versioned table (annotations/rulesets/<version>/): the "
        "annotation store, rule files, GBIF's annotation API (when configured) and seed rules."
    ),
)
def annotation_rulesets(
    context: dg.AssetExecutionContext, annotations: AnnotationsResource, storage: StorageResource
) -> dg.MaterializeResult:
    sources = annotations.sources()
    with stage_failures(context):
        fingerprint = sources.fingerprint()  # before compiling: a change during the build shows next tick
        result = compile_rulesets(sources, storage.open(), log=context.log)
    metadata = {**_rules_metadata(result), SOURCES_FINGERPRINT: fingerprint}
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(result.version))


def _rules_metadata(result: CompiledRules) -> dict:
    return {
        "version": result.version,
        "rules": dg.MetadataValue.int(result.rules),
        "path": dg.MetadataValue.path(result.uri),
        "store_version": result.store_version,
        "rule_files": dg.MetadataValue.int(result.rule_files),
        "by_label": md(count_table(result.by_label, ("label", "rules"), skip_zero=True)),
        "by_source": md(count_table(result.by_source, ("source", "rules"))),
        "gbif_pull": dg.MetadataValue.text(result.gbif_pull or "not configured"),
    }


@dg.sensor(
    target=[annotation_rulesets],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_seconds(60),
    description=(
        f"{every(sensor_seconds(60))}: re-compiles annotation_rulesets when a rule source changed (the annotation store, "
        "the rule files, GBIF's annotation API); annotated_occurrences follows through automation. Its "
        "runs carry the tags gbifdl/target and gbifdl/trigger=rules_changed."
    ),
)
def annotation_rules_sensor(context: dg.SensorEvaluationContext, annotations: AnnotationsResource):
    return rebuild_on_change(
        context,
        annotations.sources().fingerprint(),
        asset_key=annotation_rulesets.key,
        metadata_key=SOURCES_FINGERPRINT,
        what="rules",
        trigger="rules_changed",
        run_key_prefix="rules",
    )


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[occurrence_snapshot, annotation_rulesets],
    group_name="annotations",
    kinds={"python", "parquet", STORAGE_KIND},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The snapshot with the labels of the rules that match each occurrence (taxonomy-aware, "
        "boundary points inside), under the spec's votes policy. Conflicts are kept and flagged; the "
        "manifest's policy decides."
    ),
)
def annotated_occurrences(
    context: dg.AssetExecutionContext, storage: StorageResource, specs: SpecsResource
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    with stage_failures(context):
        result = annotate_occurrences(training_set, spec, storage.open())
    return dg.MaterializeResult(
        metadata=_annotated_metadata(result), data_version=dg.DataVersion(result.output_id)
    )


def _annotated_metadata(result: AnnotatedOccurrences) -> dict:
    return {
        "snapshot_id": result.snapshot_id,
        "rules_version": result.rules_version,
        "rules_applied": dg.MetadataValue.int(result.rules_applied),
        "rules_skipped_by_votes": dg.MetadataValue.int(result.rules_skipped_by_votes),
        "rows": dg.MetadataValue.int(result.rows),
        "occurrences_matched": dg.MetadataValue.int(result.occurrences_matched),
        "conflicts": dg.MetadataValue.int(result.conflicts),
        "records_per_label": md(count_table(result.by_label, ("label", "occurrences"), skip_zero=True)),
        "top_rules": dg.MetadataValue.md(
            markdown_table(
                result.top_rules, ("rule_id", "label", "taxon", "hits", "description"), inline=True
            )
        ),
        "preview": dg.MetadataValue.md(markdown_table(result.preview, PREVIEW_COLUMNS, inline=True)),
        "path": dg.MetadataValue.path(result.uri),
        "bytes": dg.MetadataValue.int(result.bytes),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
    }
