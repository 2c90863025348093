"""Where a training set's occurrences come from: the search API or a GBIF download.

The spec says ``search``, ``download``, ``download_key``, ``doi`` or ``auto`` (search while the query
matches at most ``search_max_records`` records: a few dozen polite requests; a download above that,
as GBIF asks bulk users to do). A download is asynchronous at GBIF (minutes to hours), so the request
is recorded in the storage (``downloads/<training_set>/request.json``) and the Dagster sensor polls it;
downloads named by key or DOI in the spec are recorded the same way, so one mechanism serves both.

This module knows both the spec model and the GBIF client, so it sits above ``gbif/`` (which never
imports the spec): the one download request is :func:`gbifdl_assets.gbif.downloads.request_download`;
:func:`request_spec_download` builds its predicate from a spec and records the download.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.errors import GbifRateLimited
from gbifdl_assets.gbif.predicates import predicate_from_filters
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout
from gbifdl_assets.vocabulary import RUNNING_STATUSES

log = logging.getLogger(__name__)

#: GBIF runs about 3 downloads per user at a time and answers 420 beyond that.
MAX_RUNNING_DOWNLOADS = 3


@dataclass(frozen=True)
class SourcePlan:
    type: str  # search | download | download_key | doi
    params: dict[str, list[str]]  # the occurrence-search parameters (taxon keys included)
    count: int | None = None  # matching records when known (search API count)
    reason: str = ""


def plan_source(spec: TrainingSetSpec, client: GbifClient, taxon_keys: Sequence[int]) -> SourcePlan:
    """Decide the source; for ``auto`` one count request tells search from download."""
    params = spec.search_params(taxon_keys)
    kind = spec.source.type
    if kind in ("download_key", "doi"):
        return SourcePlan(
            kind, params, reason=f"the spec names an existing download ({spec.source.key or spec.source.doi})"
        )
    if kind == "search":
        return SourcePlan("search", params, client.count(params), reason="the spec asks for the search API")
    if kind == "download":
        return SourcePlan("download", params, reason="the spec asks for a GBIF download")
    count = client.count(params)
    limit = spec.source.search_max_records
    if count <= limit:
        return SourcePlan(
            "search", params, count, reason=f"{count:,} records <= search_max_records {limit:,}"
        )
    return SourcePlan("download", params, count, reason=f"{count:,} records > search_max_records {limit:,}")


@dataclass
class DownloadRecord:
    """A GBIF download a training set waits for (requested by us, or named in the spec)."""

    training_set: str
    key: str
    origin: str  # requested | spec_key | spec_doi
    requested_at: str
    predicate: dict[str, Any] | None = None
    doi: str | None = None
    spec_fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, storage: Storage) -> None:
        key = layout.download_request_key(self.training_set)
        storage.write_bytes(key, json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, storage: Storage, training_set: str) -> DownloadRecord | None:
        key = layout.download_request_key(training_set)
        if not storage.exists(key):
            return None
        return cls(**json.loads(storage.read_bytes(key)))

    @classmethod
    def load_all(cls, storage: Storage) -> list[DownloadRecord]:
        records = []
        for key in storage.list(f"{layout.DOWNLOADS_PREFIX}/"):
            if layout.is_download_request_key(key):
                records.append(cls(**json.loads(storage.read_bytes(key))))
        return records


def running_downloads(client: GbifClient) -> list[dict]:
    """The user's downloads that GBIF still counts against the concurrent limit."""
    return list(client.iter_user_downloads(status=sorted(RUNNING_STATUSES)))


def request_spec_download(
    spec: TrainingSetSpec, client: GbifClient, taxon_keys: Sequence[int], storage: Storage
) -> DownloadRecord:
    """Submit a DWCA download for the spec and record it; refuses politely above GBIF's limit.

    GBIF deduplicates identical requests from the same user while one is running or recent, so a
    retried submit returns the same key instead of starting a second download.
    """
    running = running_downloads(client)
    if len(running) >= MAX_RUNNING_DOWNLOADS:
        keys = ", ".join(str(d.get("key")) for d in running[:5])
        raise GbifRateLimited(
            420,
            client.url("/occurrence/download/request"),
            f"{len(running)} of your GBIF downloads are still running ({keys})",
            method="POST",
        )
    predicate = predicate_from_filters(spec.occurrence_filters, taxon_keys=taxon_keys)
    key = client.request_download(
        predicate,
        format="DWCA",
        description=f"gbifdl_assets training set '{spec.name}'",
    )
    record = DownloadRecord(
        training_set=spec.name,
        key=key,
        origin="requested",
        requested_at=_now(),
        predicate=predicate,
        spec_fingerprint=spec.fingerprint(),
    )
    record.save(storage)
    log.info("requested GBIF download %s for %s", key, spec.name)
    return record


def record_spec_download(spec: TrainingSetSpec, client: GbifClient, storage: Storage) -> DownloadRecord:
    """Record the download a spec names by key or DOI (a DOI is resolved to its key)."""
    if spec.source.key:
        key, origin, doi = spec.source.key, "spec_key", None
    elif spec.source.doi:
        doi = spec.source.doi
        key, origin = client.download_key_for_doi(doi), "spec_doi"
    else:
        raise ValueError(f"spec '{spec.name}' names no download key or DOI")
    record = DownloadRecord(
        training_set=spec.name,
        key=key,
        origin=origin,
        requested_at=_now(),
        doi=doi,
        spec_fingerprint=spec.fingerprint(),
    )
    record.save(storage)
    return record


def citation_for(status: dict[str, Any]) -> str:
    """GBIF's citation form for a download (the DOI is what users must cite)."""
    created = str(status.get("created", ""))[:10]
    try:
        day = datetime.fromisoformat(created).strftime("%-d %B %Y")
    except ValueError:
        day = created or "n.d."
    doi = status.get("doi")
    link = f"https://doi.org/{doi}" if doi else f"download {status.get('key')}"
    return f"GBIF.org ({day}) GBIF Occurrence Download {link}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
