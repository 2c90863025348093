"""image_store[training_set x shard] and training_export[training_set].

The image store is partitioned by training set and a fixed number of shards, so a backfill spreads
one training set's downloads across runs (and machines); a species always falls in one shard (the
shard is a hash of the label), so per-class completeness is decided within one run. Images are
content-addressed in the shared store: two training sets never download the same image twice.
"""

import hashlib
import logging
import os
import time
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from gbifdl_assets.defs.manifest import balanced_manifest, read_latest_manifest
from gbifdl_assets.defs.metadata import markdown_table
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION, training_set_partitions
from gbifdl_assets.defs.resources import SpecCatalog, StorageResource
from gbifdl_assets.defs.retries import final_attempt_says_why
from gbifdl_assets.export.layout import export_training_set
from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import attribution_table, completeness_table, load_ledger, summarize_ledger
from gbifdl_assets.media.validate import ValidationOptions
from gbifdl_assets.occurrences.snapshots import latest_snapshot

DEFAULT_SHARDS = 8


def _shard_count() -> int:
    """Shards per training set: GBIFDL_IMAGE_SHARDS (default 8), read once when the code loads.

    It names image_store's partitions, so it is a per-deployment constant: set it before the first
    image_store run and keep it (a spec's images.shards is advisory; partition keys must not change
    under a running backfill). Small installations want few shards (fewer runs), clusters more.
    """
    raw = os.environ.get("GBIFDL_IMAGE_SHARDS", str(DEFAULT_SHARDS)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ValueError(
            f"GBIFDL_IMAGE_SHARDS={raw!r} is not a shard count; give a whole number from 1 to 100 "
            f"(default {DEFAULT_SHARDS}), and keep it once image_store has run"
        )
    return int(raw)


SHARDS = _shard_count()
shard_partitions = dg.StaticPartitionsDefinition([f"{i:02d}" for i in range(SHARDS)])
image_partitions = dg.MultiPartitionsDefinition(
    {TRAINING_SET_PARTITION: training_set_partitions, "shard": shard_partitions}
)
COMPLETE = "complete_enough"


class ImageFetchResource(dg.ConfigurableResource):
    """Network politeness and safety of image downloads."""

    concurrency: int = 64
    per_host: int = 16
    allow_loopback: bool = Field(default=False, description="only for the offline sandbox and tests")
    allow_private: bool = False

    def config(self, max_bytes: int) -> DownloadConfig:
        return DownloadConfig(
            fetch=FetchConfig(
                concurrency=self.concurrency,
                per_host=self.per_host,
                allow_loopback=self.allow_loopback,
                allow_private=self.allow_private,
                max_bytes=max_bytes,
            )
        )


def shard_of(labels: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The shard of each label: a stable hash, so a species never moves between shards."""
    shards = [int(hashlib.sha256(str(v).encode()).hexdigest()[:8], 16) % SHARDS for v in labels.to_pylist()]
    return pa.array([f"{s:02d}" for s in shards])


def ledger_name(training_set: str, shard: str) -> str:
    return f"{training_set}.shard{shard}"


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
    specs: SpecCatalog,
    image_fetch: ImageFetchResource,
) -> dg.MaterializeResult:
    training_set, shard = _keys(context)
    with final_attempt_says_why(context, f"image_store[{shard}|{training_set}]"):
        outcome = store_shard(
            training_set, shard, storage=storage, specs=specs, image_fetch=image_fetch, log=context.log
        )
    return dg.MaterializeResult(
        metadata=outcome.metadata,
        check_results=[
            dg.AssetCheckResult(check_name=COMPLETE, passed=outcome.complete, metadata=outcome.check_metadata)
        ],
    )


@dataclass(frozen=True)
class ShardOutcome:
    """What one shard's download produced: the asset's metadata and the completeness check's."""

    metadata: dict[str, dg.MetadataValue]
    complete: bool
    check_metadata: dict[str, dg.MetadataValue]


def store_shard(
    training_set: str,
    shard: str,
    *,
    storage: StorageResource,
    specs: SpecCatalog,
    image_fetch: ImageFetchResource,
    log: logging.Logger | dg.DagsterLogManager,
) -> ShardOutcome:
    """Fetch, validate and store the images of one (training set, shard); the one implementation
    behind ``image_store`` and the Celery job's shard steps (defs/celery.py)."""
    spec = specs.get(training_set)
    store = storage.open()
    manifest = read_latest_manifest(store, training_set)
    rows = manifest.filter(pc.equal(shard_of(manifest.column("label")), shard))
    name = ledger_name(training_set, shard)
    log.info(f"{training_set} shard {shard}: {rows.num_rows} images of {manifest.num_rows}")
    summary = download_images(
        rows,
        store,
        ledger=name,
        options=ValidationOptions.from_image_options(spec.images),
        config=image_fetch.config(spec.images.max_bytes),
        progress=lambda p: log.info(p.message()),
    )
    ledger = load_ledger(store, name)
    counts = summarize_ledger(
        ledger.filter(pc.is_in(ledger.column("content_key"), rows.column("content_key")))
    )
    threshold = spec.images.completeness_threshold
    complete = completeness_table(rows, ledger, by=["label", "label_name"], threshold=threshold)
    below = complete.filter(pc.field("below_threshold")) if complete.num_rows else complete
    attribution = attribution_table(rows, ledger)
    log_key = f"attribution/{training_set}/shard{shard}.parquet"
    store.write_parquet(log_key, attribution)
    return ShardOutcome(
        metadata={
            "images": dg.MetadataValue.int(rows.num_rows),
            "ok": dg.MetadataValue.int(int(counts.get("ok", 0))),
            "failed": dg.MetadataValue.int(int(counts.get("failed", 0))),
            "skipped": dg.MetadataValue.int(int(counts.get("skipped", 0))),
            "failed_by_reason": dg.MetadataValue.json(counts.get("failed_by_reason", {})),
            "this_run": dg.MetadataValue.json(summary.to_dict()),
            "images_per_s": dg.MetadataValue.float(float(summary.images_per_s)),
            "bytes": dg.MetadataValue.int(int(summary.bytes)),
            # recorded as stored but gone from the storage (lost or deleted): fetched again by this run
            "missing_refetched": dg.MetadataValue.int(int(summary.missing_refetched)),
            "completeness": dg.MetadataValue.md(
                markdown_table(complete.to_pylist(), complete.column_names, limit=50)
            ),
            "attribution_log": dg.MetadataValue.path(store.uri_of(log_key)),
        },
        complete=below.num_rows == 0,
        check_metadata={
            "threshold": dg.MetadataValue.float(float(threshold)),
            "classes_below": dg.MetadataValue.int(below.num_rows),
            "below": dg.MetadataValue.md(markdown_table(below.to_pylist(), below.column_names)),
        },
    )


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
    description=(
        "What a training loop reads: the final manifest with storage keys, an ImageFolder tree, WebDataset "
        "shards, credits for every image, the citation and a data card (exports/<training_set>/)."
    ),
)
def training_export(
    context: dg.AssetExecutionContext, storage: StorageResource, specs: SpecCatalog
) -> dg.MaterializeResult:
    training_set = context.partition_key
    specs.get(training_set)  # a clear failure when the spec went away
    store = storage.open()
    manifest = read_latest_manifest(store, training_set)
    ledgers = [
        load_ledger(store, ledger_name(training_set, s)) for s in shard_partitions.get_partition_keys()
    ]
    ledger = pa.concat_tables([t for t in ledgers if t.num_rows] or [ledgers[0]])
    snapshot = latest_snapshot(store, training_set)
    coordinates = None
    if snapshot is not None:
        coordinates = store.read_parquet(
            snapshot.media_key, columns=["gbifID", "decimalLatitude", "decimalLongitude"]
        )
    started = time.monotonic()
    out = store.child(f"exports/{training_set}")
    summary = export_training_set(
        manifest,
        ledger,
        store,
        out,
        training_set=training_set,
        citation=snapshot.source if snapshot else {},
        coordinates=coordinates,
    )
    elapsed = time.monotonic() - started
    context.log.info(
        f"exported {training_set}: {summary.images} images, {summary.classes} classes, {summary.missing} missing"
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(out.uri),
            "images": dg.MetadataValue.int(summary.images),
            "missing": dg.MetadataValue.int(summary.missing),
            "classes": dg.MetadataValue.int(summary.classes),
            "splits": dg.MetadataValue.json(summary.splits),
            "shards": dg.MetadataValue.json(summary.shards),
            "licenses": dg.MetadataValue.json(summary.licenses),
            "bytes": dg.MetadataValue.int(summary.bytes),
            "data_card": dg.MetadataValue.path(out.uri_of("datacard.html")),
            "seconds": dg.MetadataValue.float(round(elapsed, 2)),
        }
    )
