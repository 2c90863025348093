"""balanced_manifest[training_set]: filters, licence policy, exact balancing and stable splits.

One row per image (label, split, licence, attribution, the content key the image store uses). Four
blocking checks guard what a model would train on (:data:`~gbifdl_assets.pipeline.balanced_manifest.CHECKS`);
``strata_columns_filled`` warns when a ``balancing.by`` column is empty in every candidate row.
The work is in :mod:`gbifdl_assets.pipeline.balanced_manifest`.
"""

import dagster as dg

from gbifdl_assets.defs.annotations import annotated_occurrences
from gbifdl_assets.defs.image_flags import image_flags
from gbifdl_assets.defs.metadata import (
    NONE,
    STORAGE_KIND,
    check_result,
    count_table,
    fields_table,
    markdown_table,
    md,
    numbers,
)
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
    deps=[annotated_occurrences, image_flags],
    group_name="manifest",
    kinds={"python", "parquet", STORAGE_KIND},
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            name, asset="balanced_manifest", blocking=name not in WARNING_CHECKS, description=text
        )
        for name, text in CHECKS.items()
    ],
    description=(
        "One row per image: label, split, licence and attribution. Exact, seeded balancing by label and "
        "publisher; splits by a stable hash of the group key, so a refresh keeps every image in its split. "
        "Flagged images (image_flags) are left out under the spec's annotations.image_flags policy."
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
        check_results=[check_result(check, names=result.names) for check in result.checks],
        data_version=dg.DataVersion(result.output_id),
    )


def _metadata(result: BalancedManifest) -> dict:
    stats = result.stats
    per_split = stats.get("per_split", {})
    strata = [{"column": k, **v} for k, v in stats.get("strata_columns", {}).items()]
    return {
        "path": dg.MetadataValue.path(result.uri),
        "snapshot_id": result.snapshot_id,
        "images": dg.MetadataValue.int(result.images),
        "classes": dg.MetadataValue.int(len(result.per_class)),
        **numbers(per_split, "images_"),
        "per_class": md(markdown_table(result.per_class, ("label", "name", "images"), limit=50)),
        "per_split": md(count_table(per_split, ("split", "images"))),
        "license_mix": md(count_table(stats.get("licenses", {}), ("licence", "images"))),
        # rows left out on the way, by reason (filters, licences, annotations, balancing)
        "dropped": md(count_table(stats.get("dropped", {}), ("reason", "rows"), skip_zero=True, share=False)),
        # classes with fewer candidate images than min_per_class: left out of the manifest
        "classes_below_min": md(_below_min(result)),
        "dropped_classes": dg.MetadataValue.int(len(result.below_min)),
        "shortfall_classes": dg.MetadataValue.int(int(stats.get("shortfall_classes", 0))),
        # classes with fewer images than max_per_class asks for: how many are missing
        "shortfall": md(
            markdown_table(result.shortfall, ("label", "name", "missing")) if result.shortfall else NONE
        ),
        # balancing.by columns: candidate rows and empty ones; a column empty everywhere is no balancing
        "strata_columns": md(
            markdown_table(strata, ("column", "rows", "empty"), headers=("column", "candidate rows", "empty"))
            if strata
            else NONE
        ),
        "empty_strata_columns": md(fields_table(_empty_strata(result), columns=("column", "what to do"))),
        "kept_from_previous": md(fields_table(stats.get("previous") or {}, columns=("images", "count"))),
        "bytes": dg.MetadataValue.int(result.bytes),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
    }


def _below_min(result: BalancedManifest) -> str:
    rows = result.below_min
    return markdown_table(rows, ("label", "name", "images"), limit=30) if rows else NONE


def _empty_strata(result: BalancedManifest) -> dict[str, str]:
    """balancing.by columns empty in every candidate row, each with what to do about it."""
    check = next((c for c in result.checks if c.name == "strata_columns_filled"), None)
    if check is None or check.passed:
        return {}
    return dict(check.details.get("fixes", {}))
