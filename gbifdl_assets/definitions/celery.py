"""image_shards_celery: the image shards of one training set as parallel steps on Celery workers.

The default path spreads a training set's shards over *runs* (a backfill of ``image_store``, one run per
(training set, shard), placed by the run launcher: processes, containers or Kubernetes Jobs). This
job is the other way to scale out: one run per training set whose steps (one per shard) are Celery
tasks, so any worker on any machine that reaches the broker and the instance storage picks them up.

Each step runs :func:`gbifdl_assets.pipeline.image_store.store_shard` through
:func:`gbifdl_assets.defs.images.run_shard`, as ``image_store`` does, and records its result as a
materialization of ``image_store[<shard>|<training set>]``, so the asset catalogue, the ledger and the
export see no difference between the two paths.

Needs the ``celery`` extra (dagster-celery, redis). It is a code location of its own
(``-m gbifdl_assets.definitions.celery``) so that neither the main location nor the ``defs`` folder
depends on Celery. Workers:
``dagster-celery worker start -A dagster_celery.app -y celery.yaml`` with the same environment as the
code server (README, "Scaling out").
"""

import dagster as dg
from dagster_celery import celery_executor

from gbifdl_assets.definitions import location_resources
from gbifdl_assets.defs.images import (
    COMPLETE,
    completeness_metadata,
    image_store,
    run_shard,
    shard_metadata,
    shard_partitions,
)
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION, training_set_partitions
from gbifdl_assets.defs.resources import ImageFetchResource, SpecsResource, StorageResource


def shard_step(shard: str) -> dg.OpDefinition:
    """The step that stores one shard of the run's training set (its partition key)."""

    @dg.op(
        name=f"image_shard_{shard}",
        description=f"image_store[{shard}|<training set>] through store_shard, on a Celery worker.",
        retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
        tags={"gbifdl/shard": shard},
    )
    def store_one_shard(
        context: dg.OpExecutionContext,
        storage: StorageResource,
        specs: SpecsResource,
        image_fetch: ImageFetchResource,
    ):
        training_set = context.partition_key
        result = run_shard(context, training_set, shard, storage, specs, image_fetch)
        yield dg.AssetMaterialization(
            asset_key=image_store.key,
            partition=dg.MultiPartitionKey({TRAINING_SET_PARTITION: training_set, "shard": shard}),
            metadata={
                **shard_metadata(result),
                COMPLETE: dg.MetadataValue.bool(result.complete),
                "classes_below": completeness_metadata(result)["classes_below"],
            },
        )
        yield dg.Output(None)

    return store_one_shard


@dg.job(
    name="image_shards_celery",
    partitions_def=training_set_partitions,
    executor_def=celery_executor,
    resource_defs=location_resources(),
    description="All image shards of one training set as parallel Celery tasks (see definitions/celery.py).",
)
def image_shards_celery() -> None:
    for shard in shard_partitions.get_partition_keys():
        shard_step(shard)()


defs = dg.Definitions(jobs=[image_shards_celery])
