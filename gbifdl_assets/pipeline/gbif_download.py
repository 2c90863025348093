"""gbif_download: the GBIF download a training set waits for, and polling the ones still running.

Search-sourced training sets need none. Download-sourced ones submit a DWCA request built from the
spec (source ``download``, or ``auto`` above ``search_max_records``), or record the download the spec
names by key or DOI. GBIF prepares a download in minutes to hours, so nothing here waits: the record
(``downloads/<training_set>/request.json``) is polled by :func:`poll_downloads` until the download
SUCCEEDED or is dead (FAILED, KILLED, CANCELLED, FILE_ERASED), and the snapshot stage then runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.downloads import DEAD_STATUSES
from gbifdl_assets.gbif.errors import GbifError
from gbifdl_assets.occurrences.sources import (
    DownloadRecord,
    SourcePlan,
    plan_source,
    record_spec_download,
    request_spec_download,
)
from gbifdl_assets.pipeline.errors import service_failure
from gbifdl_assets.pipeline.species_list import taxon_keys_of
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage

_log = logging.getLogger(__name__)

#: How many of the user's downloads one poll lists (one call instead of one per download).
USER_DOWNLOADS_LISTED = 200


@dataclass(frozen=True)
class TrainingSetDownload:
    """The source decision and, for a download source, the download and its current status."""

    plan: SourcePlan
    record: DownloadRecord | None = None  # None: the search API serves this training set
    status: dict[str, Any] | None = None
    status_url: str = ""

    @property
    def records(self) -> int:
        return int((self.status or {}).get("totalRecords") or self.plan.count or 0)


def request_training_set_download(
    training_set: str,
    spec: TrainingSetSpec,
    client: GbifClient,
    storage: Storage,
    *,
    log: logging.Logger = _log,
) -> TrainingSetDownload:
    """Decide the source; for a download source request (or record) the download and read its status."""
    try:
        keys = taxon_keys_of(storage, training_set)
        plan = plan_source(spec, client, keys)
        if plan.type == "search":
            log.info(f"{training_set}: search source ({plan.reason}); no download needed")
            return TrainingSetDownload(plan)
        if plan.type == "download":
            record = request_spec_download(spec, client, keys, storage)
        else:
            record = record_spec_download(spec, client, storage)
        status = client.download_status(record.key)
    except GbifError as exc:
        raise service_failure(f"gbif_download[{training_set}]", exc) from exc
    log.info(f"{training_set}: GBIF download {record.key} is {status.get('status')} ({plan.reason})")
    return TrainingSetDownload(plan, record, status, client.url(f"/occurrence/download/{record.key}"))


@dataclass(frozen=True)
class DownloadState:
    """Where a download a training set waits for stands at GBIF."""

    training_set: str
    key: str
    state: str

    @property
    def ended(self) -> bool:
        """SUCCEEDED, or dead: either way the snapshot stage has something to do (ingest, or fail clearly)."""
        return self.state == "SUCCEEDED" or self.state in DEAD_STATUSES


def waiting_downloads(storage: Storage, training_sets: Iterable[str]) -> list[DownloadRecord]:
    """The recorded downloads of these training sets whose snapshot is not written yet."""
    wanted = set(training_sets)
    return [
        r
        for r in DownloadRecord.load_all(storage)
        if r.training_set in wanted and not r.extra.get("snapshot_id")
    ]


def poll_downloads(
    records: Iterable[DownloadRecord],
    client: GbifClient,
    *,
    list_user_downloads: bool,
    log: logging.Logger = _log,
) -> list[DownloadState]:
    """The GBIF status of each record's download; a download whose status cannot be read is left out
    (and logged) until the next poll.

    With ``list_user_downloads`` (credentials are set), one listing call covers every download of the
    user (including ones made on the website); per-key status calls only for the rest.
    """
    statuses: dict[str, dict] = {}
    if list_user_downloads:
        try:
            for item in client.iter_user_downloads(status=None):
                statuses[str(item.get("key"))] = item
                if len(statuses) >= USER_DOWNLOADS_LISTED:
                    break
        except GbifError as exc:
            log.warning(f"could not list the user's GBIF downloads: {exc}")
    states = []
    for record in records:
        try:
            status = statuses.get(record.key) or client.download_status(record.key)
        except GbifError as exc:
            log.warning(f"{record.training_set}: status of GBIF download {record.key}: {exc}")
            continue
        states.append(DownloadState(record.training_set, record.key, str(status.get("status", "")).upper()))
    return states
