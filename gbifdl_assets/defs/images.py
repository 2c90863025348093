"""image_store[training_set x shard] and training_export[training_set].

The image store is partitioned by training set and a fixed number of shards (GBIFDL_IMAGE_SHARDS,
:mod:`gbifdl_assets.pipeline.image_shards`), so a backfill spreads one training set's downloads across
runs (and machines). The work is in :mod:`gbifdl_assets.pipeline.image_store` and
:mod:`~gbifdl_assets.pipeline.training_export`.
"""

import dagster as dg

from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.metadata import markdown_table
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION, training_set_partitions
from gbifdl_assets.defs.resources import ImageFetchResource, SpecsResource, StorageResource
from gbifdl_assets.defs.retries import final_attempt_says_why, stage_failures
from gbifdl_assets.pipeline.image_shards import shard_keys
from gbifdl_assets.pipeline.image_store import StoredShard, store_shard
from gbifdl_assets.pipeline.training_export import CHECKS as EXPORT_CHECKS
from gbifdl_assets.pipeline.training_export import TrainingExport, build_training_export

shard_partitions = dg.StaticPartitionsDefinition(shard_keys())
image_partitions = dg.MultiPartitionsDefinition(
    {TRAINING_SET_PARTITION: training_set_partitions, "shard": shard_partitions}
)
COMPLETE = "complete_enough"


def _keys(context: dg.AssetExecutionContext) -> tuple[str, str]:
    # Parse the string key: context.partition_key.keys_by_dimension fails for runs launched by tag.
    keys = image_partitions.get_partition_key_from_str(context.partition_key).keys_by_dimension
    return keys[TRAINING_SET_PARTITION], keys["shard"]


@dg.asset(
    partitions_def=image_partitions,
    deps=[
        dg.AssetDep(
            balanced_manifest,
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                partition_dimension_name=TRAINING_SET_PARTITION
            ),
        )
    ],
    group_name="images",
    kinds={"python", "s3"},
    # A new manifest (first build or a scheduled refresh) fetches what it added; the ledger skips the rest.
    automation_condition=dg.AutomationCondition.eager(),
    pool="image_download",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    check_specs=[
        dg.AssetCheckSpec(
            COMPLETE,
            asset="image_store",
            description="Stored share of each class >= the spec's completeness_threshold.",
        )
    ],
    description=(
        "The shard's images fetched, validated, resized and stored content-addressed (images/…); a ledger per "
        "shard records every image's status, so a re-run fetches only what is missing or failed."
    ),
)
def image_store(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    specs: SpecsResource,
    image_fetch: ImageFetchResource,
) -> dg.MaterializeResult:
    training_set, shard = _keys(context)
    result = run_shard(context, training_set, shard, storage, specs, image_fetch)
    return dg.MaterializeResult(
        metadata=shard_metadata(result),
        check_results=[
            dg.AssetCheckResult(
                check_name=COMPLETE, passed=result.complete, metadata=completeness_metadata(result)
            )
        ],
    )


def run_shard(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    training_set: str,
    shard: str,
    storage: StorageResource,
    specs: SpecsResource,
    image_fetch: ImageFetchResource,
) -> StoredShard:
    """store_shard on the resources, failing the step as image_store does (the asset and the Celery
    job's steps both run a shard through here)."""
    with final_attempt_says_why(context, f"image_store[{shard}|{training_set}]"), stage_failures(context):
        return store_shard(
            training_set,
            shard,
            specs.get(training_set),
            storage.open(),
            image_fetch.fetch_config(),
            log=context.log,
        )


def shard_metadata(result: StoredShard) -> dict[str, dg.MetadataValue]:
    """A stored shard as image_store's materialization metadata (also the Celery job's)."""
    counts, run = result.counts, result.this_run
    return {
        "images": dg.MetadataValue.int(result.images),
        "ok": dg.MetadataValue.int(int(counts.get("ok", 0))),
        "failed": dg.MetadataValue.int(int(counts.get("failed", 0))),
        "skipped": dg.MetadataValue.int(int(counts.get("skipped", 0))),
        "failed_by_reason": dg.MetadataValue.json(counts.get("failed_by_reason", {})),
        "this_run": dg.MetadataValue.json(run.to_dict()),
        "images_per_s": dg.MetadataValue.float(float(run.images_per_s)),
        "bytes": dg.MetadataValue.int(int(run.bytes)),
        # recorded as stored but gone from the storage (lost or deleted): fetched again by this run
        "missing_refetched": dg.MetadataValue.int(int(run.missing_refetched)),
        "completeness": dg.MetadataValue.md(
            markdown_table(result.completeness, result.completeness_columns, limit=50)
        ),
        "attribution_log": dg.MetadataValue.path(result.attribution_uri),
    }


def completeness_metadata(result: StoredShard) -> dict[str, dg.MetadataValue]:
    """The completeness check's metadata: the threshold and the classes below it."""
    return {
        "threshold": dg.MetadataValue.float(result.threshold),
        "classes_below": dg.MetadataValue.int(len(result.below)),
        "below": dg.MetadataValue.md(markdown_table(result.below, result.completeness_columns)),
    }


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[
        dg.AssetDep(
            image_store,
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                partition_dimension_name=TRAINING_SET_PARTITION
            ),
        )
    ],
    group_name="export",
    kinds={"python", "pytorch", "tensorflow"},
    # Re-export once every shard is stored again (eager waits while any shard is missing or running).
    automation_condition=dg.AutomationCondition.eager(),
    # the export is the last asset: its checks inform (nothing downstream to block)
    check_specs=[
        dg.AssetCheckSpec(name, asset="training_export", description=text)
        for name, text in EXPORT_CHECKS.items()
    ],
    description=(
        "What a training loop reads: the final manifest with storage keys, an ImageFolder tree (with Hugging "
        "Face metadata), WebDataset shards, credits for every image, the citation, a data card and "
        "croissant.json (exports/<training_set>/)."
    ),
)
def training_export(
    context: dg.AssetExecutionContext, storage: StorageResource, specs: SpecsResource
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)  # a clear failure when the spec went away
    with stage_failures(context):
        result = build_training_export(training_set, storage.open(), spec=spec, log=context.log)
    return dg.MaterializeResult(
        metadata=_export_metadata(result),
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
    )


def _export_metadata(result: TrainingExport) -> dict[str, dg.MetadataValue]:
    summary = result.summary
    return {
        "path": dg.MetadataValue.path(result.uri),
        "images": dg.MetadataValue.int(summary.images),
        "missing": dg.MetadataValue.int(summary.missing),
        "classes": dg.MetadataValue.int(summary.classes),
        "splits": dg.MetadataValue.json(summary.splits),
        "shards": dg.MetadataValue.json(summary.shards),
        "licenses": dg.MetadataValue.json(summary.licenses),
        # BY-licensed images with no name to credit, and how many the spec's images.unattributed left out
        "unattributed": dg.MetadataValue.int(summary.unattributed),
        "dropped_unattributed": dg.MetadataValue.int(summary.dropped_unattributed),
        "attribution_sources": dg.MetadataValue.json(summary.attribution_sources),
        "contributing_datasets": dg.MetadataValue.int(result.datasets),
        "provenance": dg.MetadataValue.json(result.provenance),
        "bytes": dg.MetadataValue.int(summary.bytes),
        "data_card": dg.MetadataValue.path(result.data_card_uri),
        "croissant": dg.MetadataValue.path(result.croissant_uri),
        "seconds": dg.MetadataValue.float(round(result.seconds, 2)),
    }
