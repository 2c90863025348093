"""gbif_download[training_set] and occurrence_snapshot[training_set], and the sensor between them.

Search-sourced training sets go straight to the snapshot. Download-sourced ones submit a DWCA
request (``gbif_download``, in the ``gbif_download`` pool so at most 3 run at once), and
``gbif_download_sensor`` polls GBIF and launches the snapshot when the download SUCCEEDED — or
launches it anyway when the download is dead (FAILED, KILLED, CANCELLED, FILE_ERASED), so the
failure shows up as one failed run with a clear message instead of a silent stall.
"""

import json
import tempfile
import time
from pathlib import Path

import dagster as dg

from gbifdl_assets.defs.metadata import markdown_table
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import GbifResource, SpecCatalog, StorageResource
from gbifdl_assets.defs.retries import step_failure
from gbifdl_assets.defs.species import species_list, species_list_key
from gbifdl_assets.gbif.downloads import DEAD_STATUSES, RUNNING_STATUSES
from gbifdl_assets.gbif.dwca import DwcaError
from gbifdl_assets.gbif.errors import GbifError, GbifRateLimited, GbifUnavailable
from gbifdl_assets.occurrences.snapshots import write_snapshot_from_dwca, write_snapshot_from_search
from gbifdl_assets.occurrences.sources import (
    DownloadRecord,
    citation_for,
    plan_source,
    record_spec_download,
    request_spec_download,
)
from gbifdl_assets.storage import Storage

PREVIEW_COLUMNS = ("gbifID", "species", "countryCode", "media_license", "identifier")
GBIF_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def _failure(context: dg.AssetExecutionContext, training_set: str, stage: str, exc: Exception) -> dg.Failure:
    """One clear line; only errors that waiting can fix go back to the retry policy (and the last
    attempt's failure is final, so this line is the step's failure message, not only its cause)."""
    transient = isinstance(exc, GbifUnavailable | GbifRateLimited)
    return step_failure(context, f"{stage}[{training_set}]: {exc}", transient=transient)


def taxon_keys_of(storage: Storage, training_set: str) -> list[int]:
    """The accepted keys labelled in the species list (expanded groups are covered by their members)."""
    table = storage.read_parquet(species_list_key(training_set))
    return [
        int(row["taxon_key"])
        for row in table.select(["taxon_key", "role", "match_type"]).to_pylist()
        if row["taxon_key"] is not None and row["role"] == "label" and row["match_type"] != "NONE"
    ]


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[species_list],
    group_name="gbif",
    kinds={"python"},
    pool="gbif_download",
    retry_policy=dg.RetryPolicy(max_retries=5, delay=120, backoff=dg.Backoff.EXPONENTIAL),
    description=(
        "The GBIF download a training set waits for: a DWCA request built from the spec (download "
        "source, or auto above search_max_records), or the download the spec names by key or DOI. "
        "Search-sourced training sets need none."
    ),
)
def gbif_download(
    context: dg.AssetExecutionContext, gbif: GbifResource, storage: StorageResource, specs: SpecCatalog
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    store = storage.open()
    client = gbif.client()
    try:
        plan = plan_source(spec, client, taxon_keys_of(store, training_set))
        if plan.type == "search":
            context.log.info(f"{training_set}: search source ({plan.reason}); no download needed")
            return dg.MaterializeResult(
                metadata={"source": "search", "reason": plan.reason, "records": plan.count or 0}
            )
        if plan.type == "download":
            record = request_spec_download(spec, client, taxon_keys_of(store, training_set), store)
        else:
            record = record_spec_download(spec, client, store)
        status = client.download_status(record.key)
    except GbifError as exc:
        raise _failure(context, training_set, "gbif_download", exc) from exc
    context.log.info(f"{training_set}: GBIF download {record.key} is {status.get('status')} ({plan.reason})")
    return dg.MaterializeResult(
        metadata={
            "source": plan.type,
            "reason": plan.reason,
            "download_key": record.key,
            "status": str(status.get("status")),
            "status_url": dg.MetadataValue.url(client.url(f"/occurrence/download/{record.key}")),
            "predicate": dg.MetadataValue.json(record.predicate or {}),
            "records": int(status.get("totalRecords") or plan.count or 0),
        }
    )


class SnapshotConfig(dg.Config):
    """How long a snapshot run waits for a GBIF download that is still running before it gives up
    (the sensor launches the snapshot again when the download has SUCCEEDED)."""

    max_wait_minutes: float = 10.0
    poll_seconds: float = 15.0
    search_workers: int = 3  # parallel pages: polite to GBIF (it asks for about 1 request/s per user)


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[species_list, gbif_download],
    group_name="gbif",
    kinds={"python", "parquet"},
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
    specs: SpecCatalog,
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    store = storage.open()
    client = gbif.client()
    started = time.monotonic()
    try:
        keys = taxon_keys_of(store, training_set)
        plan = plan_source(spec, client, keys)
        if plan.type == "search":
            context.log.info(f"{training_set}: paging {plan.count:,} records from the search API")
            info = write_snapshot_from_search(
                client.iter_occurrences(plan.params, workers=config.search_workers),
                store,
                training_set,
                {"type": "search", "query": plan.params, "api": gbif.base_url, "records": plan.count},
            )
            source_meta = {"source": "search", "query": dg.MetadataValue.json(plan.params)}
        else:
            record = DownloadRecord.load(store, training_set)
            if record is None:
                record = (
                    record_spec_download(spec, client, store)
                    if plan.type != "download"
                    else request_spec_download(spec, client, keys, store)
                )
            status = _wait_for(context, client, record.key, config)
            with tempfile.TemporaryDirectory(prefix="gbifdl-dwca-") as tmp:
                archive = client.fetch_download(record.key, Path(tmp) / f"{record.key}.zip")
                context.log.info(f"{training_set}: fetched {archive.stat().st_size:,} bytes; ingesting")
                info = write_snapshot_from_dwca(
                    archive,
                    store,
                    training_set,
                    {
                        "type": "download",
                        "key": record.key,
                        "doi": status.get("doi"),
                        "citation": citation_for(status),
                        "license": status.get("license"),
                        "totalRecords": status.get("totalRecords"),
                    },
                )
            record.extra["snapshot_id"] = info.snapshot_id
            record.save(store)  # the sensor stops polling this download
            source_meta = {
                "source": "download",
                "download_key": record.key,
                "doi": str(status.get("doi") or ""),
                "citation": citation_for(status),
            }
    except (GbifError, DwcaError) as exc:
        # DwcaError: the archive cannot serve this spec (SIMPLE_CSV has no media, truncated zip, ...)
        raise _failure(context, training_set, "occurrence_snapshot", exc) from exc
    elapsed = time.monotonic() - started
    counts = info.counts
    preview = store.read_parquet(info.media_key, columns=list(PREVIEW_COLUMNS)).slice(0, 10)
    return dg.MaterializeResult(
        metadata={
            **source_meta,
            "snapshot_id": info.snapshot_id,
            "path": dg.MetadataValue.path(store.uri_of(info.prefix)),
            "occurrences": dg.MetadataValue.int(int(counts.get("occurrences", 0))),
            "occurrences_with_media": dg.MetadataValue.int(int(counts.get("occurrences_with_media", 0))),
            "media": dg.MetadataValue.int(int(counts.get("media", 0))),
            "species": dg.MetadataValue.int(int(counts.get("species", 0))),
            "skipped": dg.MetadataValue.json(counts.get("skipped", {})),
            "bytes": dg.MetadataValue.int(info.bytes),
            "seconds": dg.MetadataValue.float(round(elapsed, 2)),
            "rows_per_second": dg.MetadataValue.float(
                round(int(counts.get("occurrences", 0)) / max(elapsed, 1e-6), 1)
            ),
            "preview": dg.MetadataValue.md(markdown_table(preview.to_pylist(), PREVIEW_COLUMNS)),
        },
        data_version=dg.DataVersion(info.snapshot_id),
    )


def _wait_for(context: dg.AssetExecutionContext, client, key: str, config: SnapshotConfig) -> dict:
    deadline = time.monotonic() + config.max_wait_minutes * 60
    while True:
        status = client.download_status(key)
        state = str(status.get("status", "")).upper()
        if state == "SUCCEEDED":
            return status
        if state in DEAD_STATUSES:
            raise dg.Failure(
                description=(
                    f"GBIF download {key} ended {state}: it will never produce an archive. "
                    "Re-materialize gbif_download to request a new one (or fix the key/DOI in the spec)."
                ),
                metadata={"download_key": key, "status": state},
                allow_retries=False,
            )
        if state not in RUNNING_STATUSES or time.monotonic() >= deadline:
            raise dg.Failure(
                description=(
                    f"GBIF download {key} is still {state}; gbif_download_sensor launches this snapshot "
                    "when GBIF has finished it."
                ),
                metadata={"download_key": key, "status": state},
                allow_retries=False,
            )
        context.log.info(f"GBIF download {key} is {state}; waiting")
        time.sleep(config.poll_seconds)


@dg.sensor(
    target=[occurrence_snapshot],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Polls the GBIF downloads training sets wait for; launches their snapshot when each ends.",
)
def gbif_download_sensor(context: dg.SensorEvaluationContext, gbif: GbifResource, storage: StorageResource):
    store = storage.open()
    client = gbif.client()
    previous: dict[str, str] = json.loads(context.cursor or "{}")
    known = {name for name in context.instance.get_dynamic_partitions(training_set_partitions.name)}
    # A record whose snapshot was written is done; only the ones still waiting are polled.
    records = [
        r
        for r in DownloadRecord.load_all(store)
        if r.training_set in known and not r.extra.get("snapshot_id")
    ]
    if not records:
        return dg.SkipReason("no training set waits for a GBIF download")
    # One listing call covers every download of the user (including ones made on the website);
    # per-key status calls only for the rest.
    statuses: dict[str, dict] = {}
    if gbif.username and gbif.password:
        try:
            for item in client.iter_user_downloads(status=None):
                statuses[str(item.get("key"))] = item
                if len(statuses) >= 200:
                    break
        except GbifError as exc:
            context.log.warning(f"could not list the user's GBIF downloads: {exc}")
    run_requests = []
    current: dict[str, str] = {}
    for record in records:
        try:
            status = statuses.get(record.key) or client.download_status(record.key)
        except GbifError as exc:
            context.log.warning(f"{record.training_set}: status of GBIF download {record.key}: {exc}")
            continue
        state = str(status.get("status", "")).upper()
        current[record.key] = state
        if state != previous.get(record.key):
            context.log.info(f"{record.training_set}: GBIF download {record.key} is {state}")
        if state == "SUCCEEDED" or state in DEAD_STATUSES:
            run_requests.append(
                dg.RunRequest(
                    partition_key=record.training_set,
                    run_key=f"{record.training_set}:{record.key}:{state}",
                    tags={"gbifdl/download_key": record.key, "gbifdl/download_status": state},
                )
            )
    cursor = json.dumps(current, sort_keys=True)
    if not run_requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"waiting for {len(current)} GBIF downloads"), cursor=cursor
        )
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)
