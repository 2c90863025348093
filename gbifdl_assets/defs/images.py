"""image_store[training_set x shard] and training_export[training_set].

The image store is partitioned by training set and a fixed number of shards (GBIFDL_IMAGE_SHARDS,
:mod:`gbifdl_assets.pipeline.image_shards`), so a backfill spreads one training set's downloads across
runs (and machines). The work is in :mod:`gbifdl_assets.pipeline.image_store` and
:mod:`~gbifdl_assets.pipeline.training_export`.
"""

from typing import Any

import dagster as dg

from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.metadata import (
    NONE,
    STORAGE_KIND,
    check_result,
    count_table,
    fields_table,
    markdown_table,
    md,
    numbers,
    percent,
)
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION, training_set_partitions
from gbifdl_assets.defs.resources import ImageFetchResource, SpecsResource, StorageResource
from gbifdl_assets.defs.retries import final_attempt_says_why, stage_failures
from gbifdl_assets.media.download import DownloadSummary
from gbifdl_assets.pipeline.image_shards import shard_keys
from gbifdl_assets.pipeline.image_store import StoredShard, TrainingSetImages, store_shard
from gbifdl_assets.pipeline.training_export import BLOCKING_CHECKS, TrainingExport, build_training_export
from gbifdl_assets.pipeline.training_export import CHECKS as EXPORT_CHECKS

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
    kinds={"python", STORAGE_KIND},
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
        check_results=[completeness_check(result)],
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
            image_fetch.download_config(),
            log=context.log,
        )


def shard_metadata(result: StoredShard) -> dict[str, dg.MetadataValue]:
    """A stored shard as image_store's materialization metadata (also the Celery job's): the whole
    training set so far first (the page shows the latest shard to run), then this shard and this run."""
    counts, run = result.counts, result.this_run
    return {
        **training_set_metadata(result.training_set),
        "shard": dg.MetadataValue.text(shard_line(result)),
        "images": dg.MetadataValue.int(result.images),
        "ok": dg.MetadataValue.int(int(counts.get("ok", 0))),
        "failed": dg.MetadataValue.int(int(counts.get("failed", 0))),
        "skipped": dg.MetadataValue.int(int(counts.get("skipped", 0))),
        "failed_by_reason": md(count_table(counts.get("failed_by_reason", {}), ("reason", "images"))),
        "this_run": md(this_run_table(run)),
        "this_run_fetched": dg.MetadataValue.int(int(run.ok)),
        "this_run_failed": dg.MetadataValue.int(int(run.failed)),
        "this_run_already_done": dg.MetadataValue.int(int(run.already_done)),
        "this_run_ledger_entries": dg.MetadataValue.int(int(run.ledger_entries)),
        "this_run_id": dg.MetadataValue.text(run.run_id),
        "images_per_s": dg.MetadataValue.float(float(run.images_per_s)),
        "bytes": dg.MetadataValue.int(int(run.bytes)),
        # recorded as stored but gone from the storage (lost or deleted): fetched again by this run
        "missing_refetched": dg.MetadataValue.int(int(run.missing_refetched)),
        "completeness": md(completeness_table(result.completeness)),
        "attribution_log": dg.MetadataValue.path(result.attribution_uri),
    }


def shard_line(result: StoredShard) -> str:
    classes = len(result.completeness)
    return f"{result.shard}: {result.images} images in {classes} {'class' if classes == 1 else 'classes'}"


def training_set_metadata(summary: TrainingSetImages | None) -> dict[str, dg.MetadataValue]:
    """The training set's images across every shard so far (from the ledgers)."""
    if summary is None:
        return {}
    return {
        "training_set_images": dg.MetadataValue.int(summary.total("images")),
        "training_set_stored": dg.MetadataValue.int(summary.total("stored")),
        "training_set_failed": dg.MetadataValue.int(summary.total("failed")),
        "training_set_to_fetch": dg.MetadataValue.int(summary.total("pending")),
        "training_set_complete": dg.MetadataValue.float(round(summary.completeness, 4)),
        "training_set_shards_done": dg.MetadataValue.int(summary.shards_done),
        "training_set_classes_below": dg.MetadataValue.int(summary.classes_below),
        "training_set": md(shards_table(summary)),
    }


def shards_table(summary: TrainingSetImages) -> str:
    """One row per shard holding images, then the whole training set, then a line naming the empty
    shards; the skipped column only when something was skipped."""
    rows = [
        {**row, "share": percent(row["stored"], row["images"])} for row in summary.shards if row["images"]
    ]
    total = {c: summary.total(c) for c in ("images", "stored", "failed", "skipped", "pending")}
    done = summary.shards_done == len(summary.shards)
    rows.append(
        {
            "shard": "**all**",
            "state": "done" if done else "to do",
            **total,
            "share": percent(total["stored"], total["images"]),
        }
    )
    columns = ["shard", "state", "images", "stored", "share", "failed", "skipped", "pending"]
    headers = ["shard", "state", "images", "stored", "stored %", "failed", "skipped", "to fetch"]
    if not total["skipped"]:
        del columns[6], headers[6]
    empty = [row["shard"] for row in summary.shards if not row["images"]]
    line = f"{summary.shards_done} of {len(summary.shards)} shards done" + (
        f"; no images in shard {', '.join(empty)}" if empty else ""
    )
    return markdown_table(rows, columns, headers=headers, limit=len(rows)) + f"\n\n{line}."


def this_run_table(run: DownloadSummary) -> str:
    """What this run did, one row per count (reasons only when there are some)."""
    fields: dict[str, Any] = {
        "fetched and stored": run.ok,
        "failed": run.failed,
        "skipped": run.skipped,
        "already done by earlier runs": run.already_done,
        "stored but gone, fetched again": run.missing_refetched,
        "ledger entries written": run.ledger_entries,
        "bytes": run.bytes,
        "seconds": round(run.seconds, 2),
        "images per second": round(run.images_per_s, 1),
        "storage retries": run.storage_retries,
    }
    for name, reasons in (("failed", run.failed_by_reason), ("skipped", run.skipped_by_reason)):
        fields.update({f"{name}: {reason}": n for reason, n in reasons.items()})
    fields.update({"image variant": run.variant, "run id": run.run_id})
    return fields_table(fields, columns=("this run", "value"))


def completeness_table(rows: list[dict[str, Any]]) -> str:
    """Per class: expected and stored images, and the stored share (marked when below the threshold)."""
    if not rows:
        return NONE
    shown = [
        {
            **row,
            "share": percent(row["stored"], row["expected"]) + (" (below)" if row["below_threshold"] else ""),
        }
        for row in rows
    ]
    columns = ("label", "label_name", "expected", "stored", "share")
    return markdown_table(
        shown, columns, headers=("label", "name", "expected", "stored", "stored %"), limit=50
    )


def completeness_check(result: StoredShard) -> dg.AssetCheckResult:
    """complete_enough for one shard: its classes against the spec's completeness_threshold."""
    below = [taxon_label(row) for row in result.below]
    threshold = f"{100 * result.threshold:g}%"
    return dg.AssetCheckResult(
        check_name=COMPLETE,
        passed=result.complete,
        metadata=completeness_metadata(result),
        description=(
            f"every class of the shard ({len(result.completeness)}) has at least {threshold} of its images stored"
            if result.complete
            else f"{len(below)} of {len(result.completeness)} classes have less than {threshold} of their images "
            f"stored: {', '.join(below[:10])}{' …' if len(below) > 10 else ''}; see failed_by_reason"
        ),
    )


def taxon_label(row: dict[str, Any]) -> str:
    return f"{row.get('label_name') or ''} ({row.get('label')})".strip()


def completeness_metadata(result: StoredShard) -> dict[str, dg.MetadataValue]:
    """The completeness check's metadata: the threshold and the classes below it."""
    return {
        "threshold": dg.MetadataValue.float(result.threshold),
        "classes_below": dg.MetadataValue.int(len(result.below)),
        "classes": dg.MetadataValue.int(len(result.completeness)),
        # one line (a check's page shows Markdown only behind a button)
        "below": dg.MetadataValue.text(
            "; ".join(
                f"{taxon_label(row)}: {row['stored']} of {row['expected']} stored "
                f"({percent(row['stored'], row['expected'])})"
                for row in result.below
            )
            or "none"
        ),
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
    kinds={"python", "pytorch", "tensorflow", STORAGE_KIND},
    # Re-export once every shard is stored again (eager waits while any shard is missing or running).
    automation_condition=dg.AutomationCondition.eager(),
    # the export is the last asset: its checks inform; no_duplicates_across_splits also blocks
    # whatever a user puts downstream of it (a training job must not start on a leaking split)
    check_specs=[
        dg.AssetCheckSpec(name, asset="training_export", description=text, blocking=name in BLOCKING_CHECKS)
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
        check_results=[check_result(check, **check_extras(check.details)) for check in result.checks],
    )


def check_extras(details: dict[str, Any]) -> dict[str, dg.MetadataValue]:
    """A Markdown table of the duplicate clusters a check's details carry as examples."""
    examples = details.get("examples")
    return {"examples": md(duplicate_examples_table(examples))} if examples else {}


def duplicate_examples_table(examples: list[dict[str, Any]]) -> str:
    """One row per member of each example cluster: where it was, where it went, kept or dropped."""
    rows = []
    for cluster in examples:
        for member in cluster.get("members", []):
            key = member["content_key"] if isinstance(member, dict) else member
            rows.append(
                {
                    "cluster": str(cluster.get("representative", ""))[:12],
                    "image": str(key)[:12],
                    "label": member.get("label", "") if isinstance(member, dict) else "",
                    "split before": member.get("split_before", "") if isinstance(member, dict) else "",
                    "split": cluster.get("split", ", ".join(cluster.get("splits", []))),
                    "kept": ("yes" if member.get("kept") else "no (a copy)")
                    if isinstance(member, dict)
                    else "",
                }
            )
    columns = ("cluster", "image", "label", "split before", "split", "kept")
    return markdown_table(rows, columns, limit=50) if rows else NONE


def _export_metadata(result: TrainingExport) -> dict[str, dg.MetadataValue]:
    summary = result.summary
    return {
        "path": dg.MetadataValue.path(result.uri),
        "images": dg.MetadataValue.int(summary.images),
        "missing": dg.MetadataValue.int(summary.missing),
        "classes": dg.MetadataValue.int(summary.classes),
        **numbers({split: summary.splits.get(split, 0) for split in result.splits}, "images_"),
        "per_class": md(per_class_table(result)),
        "splits": md(count_table(summary.splits, ("split", "images"))),
        "webdataset_shards": md(count_table(summary.shards, ("split", "shards"), share=False)),
        "licenses": md(count_table(summary.licenses, ("licence", "images"))),
        # BY-licensed images with no name to credit, and how many the spec's images.unattributed left out
        "unattributed": dg.MetadataValue.int(summary.unattributed),
        "dropped_unattributed": dg.MetadataValue.int(summary.dropped_unattributed),
        # copies of one photo (same bytes or close perceptual hashes): clusters, moved into their
        # representative's split, dropped inside a split (images.duplicates)
        "duplicate_clusters": dg.MetadataValue.int(summary.duplicates.get("clusters", 0)),
        "duplicates_moved": dg.MetadataValue.int(summary.duplicates.get("moved", 0)),
        "duplicates_dropped": dg.MetadataValue.int(summary.duplicates.get("dropped", 0)),
        "duplicate_examples": md(duplicate_examples_table(summary.duplicates.get("examples", []))),
        # which field of the record each image's credit came from (creator, rightsHolder, …)
        "attribution_sources": md(count_table(summary.attribution_sources, ("credited from", "images"))),
        "contributing_datasets": dg.MetadataValue.int(result.datasets),
        "provenance": md(fields_table(provenance_fields(result.provenance))),
        "bytes": dg.MetadataValue.int(summary.bytes),
        "data_card": dg.MetadataValue.path(result.data_card_uri),
        "croissant": dg.MetadataValue.path(result.croissant_uri),
        "seconds": dg.MetadataValue.float(round(result.seconds, 2)),
    }


def per_class_table(result: TrainingExport) -> str:
    """Exported images per class and split, and what each class misses of the manifest."""
    columns = ("label", "name", "images", *result.splits, "missing")
    return markdown_table(result.per_class, columns, limit=100) if result.per_class else NONE


def provenance_fields(provenance: dict[str, Any]) -> dict[str, Any]:
    """What the export was built from, one short row each (the search query with taxon names is on
    occurrence_snapshot's page; the data card and croissant.json keep the whole provenance)."""
    source = dict(provenance.get("snapshot_source") or {})
    if source.get("type") == "download":
        origin = f"GBIF download {source.get('key', '')}" + (
            f" (doi:{source['doi']})" if source.get("doi") else ""
        )
    elif source:
        origin = f"search API, {source.get('records', '?')} records ({source.get('api', '')})"
    else:
        origin = ""
    fingerprint = str(provenance.get("spec_fingerprint") or "")
    return {
        "spec": provenance.get("spec_name", ""),
        "spec fingerprint": fingerprint[:16] + ("…" if len(fingerprint) > 16 else ""),
        "snapshot": provenance.get("snapshot_id", ""),
        "source": origin,
        "retrieved": provenance.get("date", ""),
        "rules version": provenance.get("rules_version", ""),
        "manifest": provenance.get("manifest_id", ""),
    }
