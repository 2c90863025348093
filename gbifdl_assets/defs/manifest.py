"""balanced_manifest[training_set]: filters, licence policy, exact balancing and stable splits.

One row per image (label, split, licence, attribution, the content key the image store uses). Four
blocking checks guard what a model would train on (:data:`~gbifdl_assets.pipeline.balanced_manifest.CHECKS`);
``strata_columns_filled`` warns when a ``balancing.by`` column is empty in every candidate row.
The work is in :mod:`gbifdl_assets.pipeline.balanced_manifest`.
"""

import dagster as dg

from gbifdl_assets.defs.annotations import annotated_occurrences
from gbifdl_assets.defs.metadata import markdown_table
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import SpecsResource, StorageResource
from gbifdl_assets.defs.retries import stage_failures
from gbifdl_assets.pipeline.balanced_manifest import (
    CHECKS,
    WARNING_CHECKS,
    BalancedManifest,
    build_balanced_manifest,
)


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[annotated_occurrences],
    group_name="manifest",
    kinds={"python", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            name, asset="balanced_manifest", blocking=name not in WARNING_CHECKS, description=text
        )
        for name, text in CHECKS.items()
    ],
    description=(
        "One row per image: label, split, licence and attribution. Exact, seeded balancing by label and "
        "publisher; splits by a stable hash of the group key, so a refresh keeps every image in its split."
    ),
)
def balanced_manifest(
    context: dg.AssetExecutionContext, storage: StorageResource, specs: SpecsResource
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    with stage_failures(context):
        result = build_balanced_manifest(training_set, spec, storage.open(), log=context.log)
    return dg.MaterializeResult(
        metadata=_metadata(result),
        check_results=[
            dg.AssetCheckResult(
                check_name=check.name,
                passed=check.passed,
                severity=dg.AssetCheckSeverity.WARN if check.warning else dg.AssetCheckSeverity.ERROR,
                metadata={"details": dg.MetadataValue.json(check.details)},
                description=check.description,
            )
            for check in result.checks
        ],
        data_version=dg.DataVersion(result.output_id),
    )


def _metadata(result: BalancedManifest) -> dict:
    stats = result.stats
    return {
        "path": dg.MetadataValue.path(result.uri),
        "snapshot_id": result.snapshot_id,
        "images": dg.MetadataValue.int(result.images),
        "classes": dg.MetadataValue.int(len(result.per_class)),
        "per_class": dg.MetadataValue.md(
            markdown_table(result.per_class, ("label", "name", "images"), limit=50)
        ),
        "per_split": dg.MetadataValue.json(stats.get("per_split", {})),
        "license_mix": dg.MetadataValue.json(stats.get("licenses", {})),
        "dropped": dg.MetadataValue.json(stats.get("dropped", {})),
        "classes_below_min": dg.MetadataValue.json(stats.get("classes_below_min", {})),
        "shortfall_classes": dg.MetadataValue.int(int(stats.get("shortfall_classes", 0))),
        # balancing.by columns: candidate rows and empty ones; a column empty everywhere is no balancing
        "strata_columns": dg.MetadataValue.json(stats.get("strata_columns", {})),
        "empty_strata_columns": dg.MetadataValue.json(_empty_strata(result)),
        # classes with fewer images than max_per_class asks for: how many are missing
        "shortfall": dg.MetadataValue.md(markdown_table(result.shortfall, ("label", "name", "missing"))),
        "kept_from_previous": dg.MetadataValue.json(stats.get("previous") or {}),
        "bytes": dg.MetadataValue.int(result.bytes),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
    }


def _empty_strata(result: BalancedManifest) -> dict[str, str]:
    """balancing.by columns empty in every candidate row, each with what to do about it."""
    check = next((c for c in result.checks if c.name == "strata_columns_filled"), None)
    if check is None or check.passed:
        return {}
    return dict(check.details.get("fixes", {}))
