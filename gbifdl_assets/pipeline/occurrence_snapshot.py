"""occurrence_snapshot: an immutable snapshot of the training set's occurrences with images.

From the search API (paged, a few workers) or from the GBIF download the training set waits for
(fetched and ingested as a DwC-A). A snapshot run waits for a running download only a few minutes
(:class:`SnapshotSettings`); the download sensor launches it again once GBIF has finished.
Either way the snapshot gets GBIF's registry data (publisher, dataset title, DOI and licence) from the
same API before it is committed; an unreachable registry leaves those columns null and is counted.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.downloads import DEAD_STATUSES, RUNNING_STATUSES, wait_for_download
from gbifdl_assets.gbif.dwca import DwcaError
from gbifdl_assets.gbif.errors import GbifDownloadNotReady, GbifError
from gbifdl_assets.gbif.registry import RegistryClient
from gbifdl_assets.occurrences.snapshots import (
    SnapshotInfo,
    write_snapshot_from_dwca,
    write_snapshot_from_search,
)
from gbifdl_assets.occurrences.sources import (
    DownloadRecord,
    SourcePlan,
    citation_for,
    plan_source,
    record_spec_download,
    request_spec_download,
)
from gbifdl_assets.pipeline.errors import StageError, service_failure
from gbifdl_assets.pipeline.species_list import taxon_keys_of, taxon_names_of
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage

_log = logging.getLogger(__name__)

PREVIEW_COLUMNS = ("gbifID", "species", "countryCode", "media_license", "datasetTitle", "identifier")
PREVIEW_ROWS = 10


@dataclass(frozen=True)
class SnapshotSettings:
    """How long a snapshot run waits for a GBIF download that is still running, how many search
    pages it reads at once (GBIF asks for about 1 request/s per user: a few are polite), and how old
    a cached registry entry (dataset, publisher) may be before it is fetched again."""

    max_wait_minutes: float = 10.0
    poll_seconds: float = 15.0
    search_workers: int = 3
    registry_max_age_days: float = 30.0

    @property
    def registry_max_age(self) -> timedelta:
        return timedelta(days=self.registry_max_age_days)


@dataclass(frozen=True)
class SnapshotSource:
    """Where a snapshot's rows came from."""

    type: str  # search | download
    query: dict[str, list[str]] | None = None  # search: the occurrence-search parameters
    download_key: str = ""
    doi: str = ""
    citation: str = ""
    #: download: seconds spent waiting for GBIF to finish the archive (not the snapshot's own work)
    waited_seconds: float = 0.0


@dataclass(frozen=True)
class OccurrenceSnapshot:
    """A committed snapshot, where its rows came from, and its first rows."""

    info: SnapshotInfo
    source: SnapshotSource
    uri: str
    seconds: float
    preview: list[dict[str, Any]]
    taxon_names: dict[str, str] = field(default_factory=dict)  # taxon key -> name (the species list)

    @property
    def rows_per_second(self) -> float:
        """Rows a second of the snapshot's own work: the wait for GBIF's archive left out (in a load
        run it was 99 % of the stage, and the rate read 3,540 rows/s for an ingest of ~200,000)."""
        work = self.seconds - self.source.waited_seconds
        return int(self.info.counts.get("occurrences", 0)) / max(work, 1e-6)


def take_occurrence_snapshot(
    training_set: str,
    spec: TrainingSetSpec,
    client: GbifClient,
    storage: Storage,
    *,
    settings: SnapshotSettings = SnapshotSettings(),
    log: logging.Logger = _log,
) -> OccurrenceSnapshot:
    """Write a new snapshot of the training set from its source (search API or GBIF download)."""
    started = time.monotonic()
    try:
        with RegistryClient(client.base_url) as registry:
            info, source = _snapshot(training_set, spec, client, storage, settings, log, registry)
    except (GbifError, DwcaError) as exc:
        # DwcaError: the archive cannot serve this spec (SIMPLE_CSV has no media, truncated zip, ...)
        raise service_failure(f"occurrence_snapshot[{training_set}]", exc) from exc
    elapsed = time.monotonic() - started
    registry_counts = info.counts.get("registry", {})
    log.info(
        f"{training_set}: registry data for {sum(registry_counts.get('datasets', {}).values())} datasets "
        f"({registry_counts.get('datasets')}); {registry_counts.get('rows_without_publisher', 0)} rows "
        "without a publisher"
    )
    preview = storage.read_parquet(info.media_key, columns=list(PREVIEW_COLUMNS)).slice(0, PREVIEW_ROWS)
    return OccurrenceSnapshot(
        info,
        source,
        storage.uri_of(info.prefix),
        elapsed,
        preview.to_pylist(),
        taxon_names=taxon_names_of(storage, training_set),
    )


def _snapshot(
    training_set: str,
    spec: TrainingSetSpec,
    client: GbifClient,
    storage: Storage,
    settings: SnapshotSettings,
    log: logging.Logger,
    registry: RegistryClient,
) -> tuple[SnapshotInfo, SnapshotSource]:
    keys = taxon_keys_of(storage, training_set)
    plan = plan_source(spec, client, keys)
    if plan.type == "search":
        return _from_search(training_set, plan, client, storage, settings, log, registry)
    record = DownloadRecord.load(storage, training_set)
    if record is None:
        record = (
            request_spec_download(spec, client, keys, storage)
            if plan.type == "download"
            else record_spec_download(spec, client, storage)
        )
    return _from_download(training_set, record, client, storage, settings, log, registry)


def _from_search(
    training_set: str,
    plan: SourcePlan,
    client: GbifClient,
    storage: Storage,
    settings: SnapshotSettings,
    log: logging.Logger,
    registry: RegistryClient,
) -> tuple[SnapshotInfo, SnapshotSource]:
    log.info(f"{training_set}: paging {plan.count:,} records from the search API")
    info = write_snapshot_from_search(
        client.iter_occurrences(plan.params, workers=settings.search_workers),
        storage,
        training_set,
        {"type": "search", "query": plan.params, "api": client.base_url, "records": plan.count},
        registry=registry,
        registry_max_age=settings.registry_max_age,
    )
    return info, SnapshotSource("search", query=plan.params)


def _from_download(
    training_set: str,
    record: DownloadRecord,
    client: GbifClient,
    storage: Storage,
    settings: SnapshotSettings,
    log: logging.Logger,
    registry: RegistryClient,
) -> tuple[SnapshotInfo, SnapshotSource]:
    waiting_since = time.monotonic()
    status = wait_for_archive(client, record.key, settings, log)
    waited = time.monotonic() - waiting_since
    with tempfile.TemporaryDirectory(prefix="gbifdl-dwca-") as tmp:
        archive = client.fetch_download(record.key, Path(tmp) / f"{record.key}.zip")
        log.info(f"{training_set}: fetched {archive.stat().st_size:,} bytes; ingesting")
        info = write_snapshot_from_dwca(
            archive,
            storage,
            training_set,
            {
                "type": "download",
                "key": record.key,
                "doi": status.get("doi"),
                "citation": citation_for(status),
                "license": status.get("license"),
                "totalRecords": status.get("totalRecords"),
            },
            registry=registry,
            registry_max_age=settings.registry_max_age,
        )
    record.extra["snapshot_id"] = info.snapshot_id
    record.save(storage)  # the download poll stops here
    source = SnapshotSource(
        "download",
        download_key=record.key,
        doi=str(status.get("doi") or ""),
        citation=citation_for(status),
        waited_seconds=waited,
    )
    return info, source


def wait_for_archive(client: GbifClient, key: str, settings: SnapshotSettings, log: logging.Logger) -> dict:
    """The status of download ``key`` once it SUCCEEDED (waiting at most ``settings.max_wait_minutes``);
    a StageError, final, when it is dead or still running then."""

    def waiting(status: dict) -> None:
        state = str(status.get("status", "")).upper()
        if state in RUNNING_STATUSES:
            log.info(f"GBIF download {key} is {state}; waiting")

    try:
        status = wait_for_download(
            client,
            key,
            poll_seconds=settings.poll_seconds,
            timeout_seconds=settings.max_wait_minutes * 60,
            on_status=waiting,
        )
        state = str(status.get("status", "")).upper()
    except GbifDownloadNotReady as exc:
        state = exc.status
    if state == "SUCCEEDED":
        return status
    if state in DEAD_STATUSES:
        raise StageError(
            f"GBIF download {key} ended {state}: it will never produce an archive. "
            "Re-materialize gbif_download to request a new one (or fix the key/DOI in the spec).",
            metadata={"download_key": key, "status": state},
        )
    raise StageError(
        f"GBIF download {key} is still {state}; gbif_download_sensor launches this snapshot "
        "when GBIF has finished it.",
        metadata={"download_key": key, "status": state},
    )
