"""gbif_download[training_set] and occurrence_snapshot[training_set], and the sensor between them.

Search-sourced training sets go straight to the snapshot. Download-sourced ones submit a DWCA
request (``gbif_download``, in the ``gbif_download`` pool so at most 3 run at once), and
``gbif_download_sensor`` polls GBIF and launches the snapshot when the download SUCCEEDED — or
launches it anyway when the download is dead (FAILED, KILLED, CANCELLED, FILE_ERASED), so the
failure shows up as one failed run with a clear message instead of a silent stall.
The work is in :mod:`gbifdl_assets.pipeline.gbif_download` and :mod:`~gbifdl_assets.pipeline.occurrence_snapshot`.
"""

import json

import dagster as dg

from gbifdl_assets.defs.metadata import STORAGE_KIND, count_table, fields_table, markdown_table, md, taxon
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import GbifResource, SpecsResource, StorageResource
from gbifdl_assets.defs.retries import stage_failures
from gbifdl_assets.defs.sensor_timing import every, sensor_seconds
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.pipeline.gbif_download import (
    TrainingSetDownload,
    poll_downloads,
    request_training_set_download,
    waiting_downloads,
)
from gbifdl_assets.pipeline.occurrence_snapshot import (
    PREVIEW_COLUMNS,
    OccurrenceSnapshot,
    SnapshotSettings,
    take_occurrence_snapshot,
)

#: characters of one query parameter's values shown on the snapshot's page
QUERY_CELL = 500

GBIF_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[species_list],
    group_name="gbif",
    kinds={"python", STORAGE_KIND},
    pool="gbif_download",
    retry_policy=dg.RetryPolicy(max_retries=5, delay=120, backoff=dg.Backoff.EXPONENTIAL),
    description=(
        "The GBIF download a training set waits for: a DWCA request built from the spec (download "
        "source, or auto above search_max_records), or the download the spec names by key or DOI. "
        "Search-sourced training sets need none."
    ),
)
def gbif_download(
    context: dg.AssetExecutionContext, gbif: GbifResource, storage: StorageResource, specs: SpecsResource
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    with stage_failures(context):
        result = request_training_set_download(
            training_set, spec, gbif.client(), storage.open(), log=context.log
        )
    return dg.MaterializeResult(metadata=_download_metadata(result))


def _download_metadata(result: TrainingSetDownload) -> dict:
    plan, record = result.plan, result.record
    if record is None:
        return {"source": "search", "reason": plan.reason, "records": plan.count or 0}
    return {
        "source": plan.type,
        "reason": plan.reason,
        "download_key": record.key,
        "status": str((result.status or {}).get("status")),
        "status_url": dg.MetadataValue.url(result.status_url),
        "predicate": dg.MetadataValue.json(record.predicate or {}),
        "records": result.records,
    }


class SnapshotConfig(dg.Config):
    """How long a snapshot run waits for a GBIF download that is still running before it gives up
    (the sensor launches the snapshot again when the download has SUCCEEDED)."""

    max_wait_minutes: float = SnapshotSettings.max_wait_minutes
    poll_seconds: float = SnapshotSettings.poll_seconds
    search_workers: int = SnapshotSettings.search_workers  # parallel pages, polite to GBIF
    # cached registry entries (dataset title/DOI/licence, publisher) older than this are fetched again
    registry_max_age_days: float = SnapshotSettings.registry_max_age_days


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[species_list, gbif_download],
    group_name="gbif",
    kinds={"python", "parquet", STORAGE_KIND},
    pool="gbif_api",
    retry_policy=GBIF_RETRY,
    description=(
        "An immutable, versioned snapshot of the training set's occurrences with images: one row per "
        "media item (snapshots/<training_set>/<snapshot_id>/), from the search API or a GBIF DWCA download."
    ),
)
def occurrence_snapshot(
    context: dg.AssetExecutionContext,
    config: SnapshotConfig,
    gbif: GbifResource,
    storage: StorageResource,
    specs: SpecsResource,
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    settings = SnapshotSettings(
        config.max_wait_minutes, config.poll_seconds, config.search_workers, config.registry_max_age_days
    )
    with stage_failures(context):
        result = take_occurrence_snapshot(
            training_set, spec, gbif.client(), storage.open(), settings=settings, log=context.log
        )
    return dg.MaterializeResult(
        metadata=_snapshot_metadata(result), data_version=dg.DataVersion(result.info.snapshot_id)
    )


def _snapshot_metadata(result: OccurrenceSnapshot) -> dict:
    source, info, counts = result.source, result.info, result.info.counts
    if source.type == "search":
        origin = {"source": "search", "query": md(query_table(source.query or {}, result.taxon_names))}
    else:
        origin = {
            "source": "download",
            "download_key": source.download_key,
            "doi": source.doi,
            "citation": source.citation,
            "waited_for_gbif_seconds": dg.MetadataValue.float(round(source.waited_seconds, 2)),
        }
    skipped = counts.get("skipped", {})
    registry = counts.get("registry", {})
    return {
        **origin,
        "snapshot_id": info.snapshot_id,
        "path": dg.MetadataValue.path(result.uri),
        "occurrences": dg.MetadataValue.int(int(counts.get("occurrences", 0))),
        "occurrences_with_media": dg.MetadataValue.int(int(counts.get("occurrences_with_media", 0))),
        "media": dg.MetadataValue.int(int(counts.get("media", 0))),
        "species": dg.MetadataValue.int(int(counts.get("species", 0))),
        "skipped_rows": dg.MetadataValue.int(sum(int(v) for v in skipped.values())),
        "skipped": md(count_table(skipped, ("reason", "rows"), skip_zero=True)),
        # GBIF's registry: outcomes per distinct dataset/publisher key by reason, and what stayed empty
        "registry": md(registry_table(registry)),
        "rows_without_publisher": dg.MetadataValue.int(int(registry.get("rows_without_publisher", 0))),
        "registry_gaps": md(fields_table(info.registry.get("gaps", {}), columns=("column", "why empty"))),
        "bytes": dg.MetadataValue.int(info.bytes),
        "seconds": dg.MetadataValue.float(round(result.seconds, 2)),
        "rows_per_second": dg.MetadataValue.float(round(result.rows_per_second, 1)),
        "preview": dg.MetadataValue.md(markdown_table(result.preview, PREVIEW_COLUMNS, inline=True)),
    }


def query_table(query: dict[str, list[str]], names: dict[str, str]) -> str:
    """The occurrence-search parameters, one per row; taxon keys with their names (as many as keep
    the table on the page; the species list has them all)."""
    rows = []
    for name, values in sorted(query.items()):
        shown = [taxon(v, names) if name == "taxonKey" else str(v) for v in values]
        text = ", ".join(shown)
        while len(text) > QUERY_CELL and len(shown) > 1:
            shown.pop()
            text = ", ".join(shown) + f", … {len(values) - len(shown)} more"
        rows.append({"parameter": name, "values": text})
    return markdown_table(rows, ("parameter", "values"), limit=60) if rows else "none"


def registry_table(registry: dict) -> str:
    """Registry look-ups per kind (datasets, organizations) and outcome."""
    rows = [
        {"lookup": kind, "outcome": outcome, "keys": n}
        for kind, outcomes in registry.items()
        if isinstance(outcomes, dict)
        for outcome, n in sorted(outcomes.items(), key=lambda kv: -kv[1])
    ]
    return markdown_table(rows, ("lookup", "outcome", "keys")) if rows else "none"


@dg.sensor(
    target=[occurrence_snapshot],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_seconds(60),
    description=(
        f"{every(sensor_seconds(60))}: polls the GBIF downloads that training sets wait for, and launches "
        "occurrence_snapshot[<training set>] when one ends (SUCCEEDED, or dead, so the failure shows in "
        "one run). Its runs carry the tags gbifdl/trigger=download_ended, gbifdl/target, gbifdl/download_key and "
        "gbifdl/download_status."
    ),
)
def gbif_download_sensor(context: dg.SensorEvaluationContext, gbif: GbifResource, storage: StorageResource):
    previous: dict[str, str] = json.loads(context.cursor or "{}")
    known = context.instance.get_dynamic_partitions(training_set_partitions.name)
    # A record whose snapshot was written is done; only the ones still waiting are polled.
    records = waiting_downloads(storage.open(), known)
    if not records:
        return dg.SkipReason("no training set waits for a GBIF download")
    states = poll_downloads(
        records, gbif.client(), list_user_downloads=bool(gbif.username and gbif.password), log=context.log
    )
    for s in states:
        if s.state != previous.get(s.key):
            context.log.info(f"{s.training_set}: GBIF download {s.key} is {s.state}")
    run_requests = [
        dg.RunRequest(
            partition_key=s.training_set,
            run_key=f"{s.training_set}:{s.key}:{s.state}",
            tags={
                "gbifdl/trigger": "download_ended",
                "gbifdl/target": f"occurrence_snapshot[{s.training_set}]",
                "gbifdl/download_key": s.key,
                "gbifdl/download_status": s.state,
            },
        )
        for s in states
        if s.ended
    ]
    cursor = json.dumps({s.key: s.state for s in states}, sort_keys=True)
    if not run_requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"waiting for {len(states)} GBIF downloads"), cursor=cursor
        )
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)
