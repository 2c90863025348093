"""The occurrence download service: requests, lifecycle, archives.

A download moves PREPARING → RUNNING → SUCCEEDED by elapsed time (``config.download_seconds``); its
archive is written by a background worker as soon as the request arrives, and the status only turns
SUCCEEDED once the archive exists, because ``size`` must equal the zip's byte count. ``doi`` and
``size`` appear only at SUCCEEDED (and stay for FILE_ERASED), like GBIF.

Downloads GBIF already holds (the ones example specs cite by DOI or key, :mod:`.published`) are
registered, and their archives built, on the first request that reads downloads.

Fault injection: ``config.download_final_status`` or the keyword ``sandbox:<STATUS>`` in a request's
``description`` makes it end FAILED, KILLED, FILE_ERASED, CANCELLED or stay SUSPENDED.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from gbifdl_assets.vocabulary import RUNNING_STATUSES

from . import hashing
from .archive_cache import ArchiveCache, cache_key
from .config import DOWNLOAD_FAULT_STATUSES, SandboxConfig
from .dwca import Stopped, write_archive
from .filters import BadRequest
from .predicates import echo, evaluate
from .published import PUBLISHED_CREATOR, PUBLISHED_DOWNLOADS, PublishedDownload
from .registry import dataset_citation, dataset_doi
from .vocab import LICENSE_URLS
from .world import World

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = ("DWCA", "SIMPLE_CSV")
KNOWN_FORMATS = (
    "DWCA",
    "SIMPLE_CSV",
    "SIMPLE_PARQUET",
    "SPECIES_LIST",
    "SQL_TSV_ZIP",
    "BIONOMIA",
    "FASTA_ARCHIVE",
    "SIMPLE_WITH_VERBATIM_AVRO",
    "SIMPLE_AVRO",
    "MAP_OF_LIFE",
)
DOI_PREFIX = "10.15468/dl."
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class TooManyDownloads(Exception):
    pass


def iso(ts: float) -> str:
    d = datetime.fromtimestamp(ts, UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}+00:00"


@dataclass
class Download:
    key: str
    doi: str
    creator: str
    request: dict[str, Any]
    predicate: Any
    format: str
    created: float
    final_status: str
    media_base: str
    description: str | None = None
    api_url: str | None = None
    total_records: int = 0
    number_datasets: int = 0
    license: str = "unspecified"
    cancelled_at: float | None = None
    path: Path | None = None
    size: int = 0
    built: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    finished_at: float | None = None


class DownloadService:
    def __init__(self, world: World, config: SandboxConfig) -> None:
        self.world = world
        self.config = config
        self._lock = threading.Lock()
        self._downloads: dict[str, Download] = {}
        self._by_doi: dict[str, str] = {}
        self._seq = 0
        self._stamp = datetime.now(UTC).strftime("%y%m%d%H%M%S") + "000"
        self._own_dir = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="gbif-sandbox-downloads-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-dwca")
        self._archive_cache = ArchiveCache(config.archive_cache_dir) if config.archive_cache_dir else None
        #: held while the published downloads are registered and built (once, on first use)
        self._publish_lock = threading.Lock()
        self._published = False

    def close(self) -> None:
        with self._lock:
            for d in self._downloads.values():
                if d.cancelled_at is None and not d.built.is_set():
                    d.cancelled_at = time.time()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # ----------------------------------------------------------------------------- lifecycle
    def status_of(self, d: Download, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if d.cancelled_at is not None:
            return "CANCELLED"
        prep, run = self.config.download_seconds
        elapsed = now - d.created
        if elapsed < prep:
            return "PREPARING"
        if d.final_status == "SUSPENDED":
            return "SUSPENDED"
        if d.error is not None:
            return "FAILED" if elapsed >= prep + run else "RUNNING"
        if elapsed < prep + run or not d.built.is_set():
            return "RUNNING"
        return d.final_status

    def _modified(self, d: Download, status: str) -> float:
        prep, run = self.config.download_seconds
        if status == "CANCELLED":
            return d.cancelled_at or d.created
        if status == "PREPARING":
            return d.created
        if status in ("RUNNING", "SUSPENDED"):
            return d.created + prep
        return max(d.created + prep + run, d.finished_at or 0)

    def running_count(self, user: str) -> int:
        now = time.time()
        return sum(
            1
            for d in self._downloads.values()
            if d.creator == user and self.status_of(d, now) in RUNNING_STATUSES
        )

    # ----------------------------------------------------------------------------- requests
    def request(self, user: str, body: dict[str, Any], media_base: str, api_url: str | None = None) -> str:
        if not isinstance(body, dict):
            raise BadRequest("The download request must be a JSON object with a 'predicate'")
        creator = body.get("creator") or user
        if creator != user:
            raise PermissionError(
                f"The creator {creator!r} of the request must be the authenticated user {user!r}"
            )
        fmt = str(body.get("format") or "DWCA").upper()
        if fmt not in KNOWN_FORMATS:
            raise BadRequest(f"Unknown download format {fmt}. Use one of {', '.join(KNOWN_FORMATS)}")
        if fmt not in SUPPORTED_FORMATS:
            raise BadRequest(
                f"The sandbox does not produce {fmt} downloads; use one of {', '.join(SUPPORTED_FORMATS)}"
            )
        if body.get("sql"):
            raise BadRequest("SQL downloads are not supported by the sandbox")
        predicate = body.get("predicate")
        mask = evaluate(self.world, predicate)  # validates; BadRequest on a bad predicate
        description = body.get("description")
        final = self._final_status(description)
        echoed = echo(predicate)
        notification = (
            body.get("notificationAddresses")
            or body.get("notificationAddress")
            or body.get("notification_addresses")
            or body.get("notification_address")
            or []
        )
        if isinstance(notification, str):
            notification = [notification]
        request_echo: dict[str, Any] = {
            "predicate": echoed,
            "creator": creator,
            "notificationAddresses": list(notification),
            "sendNotification": bool(body.get("sendNotification", False)),
            "format": fmt,
            "type": str(body.get("type") or "OCCURRENCE"),
            "verbatimExtensions": list(body.get("verbatimExtensions") or []),
        }
        if description:
            request_echo["description"] = description
        with self._lock:
            if self.config.dedupe_downloads and final == "SUCCEEDED":
                for d in self._downloads.values():
                    if (
                        d.creator == creator
                        and d.format == fmt
                        and d.request["predicate"] == echoed
                        and d.final_status == "SUCCEEDED"
                        and self.status_of(d) in ("PREPARING", "RUNNING", "SUCCEEDED", "SUSPENDED")
                    ):
                        return d.key  # GBIF hands back the existing download
            if self.running_count(creator) >= self.config.max_running_downloads:
                raise TooManyDownloads(
                    f"User {creator} already has {self.config.max_running_downloads} downloads running; "
                    "wait for one to finish or cancel one"
                )
            self._seq += 1
            key = f"{self._seq:07d}-{self._stamp}"
            doi = DOI_PREFIX + _doi_suffix(self.world.seed, key)
            d = Download(
                key=key,
                doi=doi,
                creator=creator,
                request=request_echo,
                predicate=predicate,
                format=fmt,
                created=time.time(),
                final_status=final,
                media_base=media_base,
                description=description,
                api_url=api_url,
            )
            rows = np.flatnonzero(mask)
            self._summarise(d, rows)
            self._downloads[key] = d
            self._by_doi[doi] = key
        if final in ("SUCCEEDED", "FILE_ERASED"):
            self._pool.submit(self._build, d, rows)
        else:
            d.built.set()
        return key

    def ensure_published(self, media_base: str, api_url: str | None = None) -> None:
        """Register the downloads GBIF already holds (:data:`.published.PUBLISHED_DOWNLOADS`) and build
        their archives, once: their status is SUCCEEDED from the start, so the archive must exist before
        anyone reads it. ``media_base`` is the address the archive's image links point at."""
        with self._publish_lock:
            if self._published:
                return
            for published in PUBLISHED_DOWNLOADS:
                self._publish(published, media_base, api_url)
            self._published = True

    def _publish(self, p: PublishedDownload, media_base: str, api_url: str | None) -> None:
        mask = evaluate(self.world, p.predicate)
        d = Download(
            key=p.key,
            doi=p.doi,
            creator=PUBLISHED_CREATOR,
            request={
                "predicate": echo(p.predicate),
                "creator": PUBLISHED_CREATOR,
                "notificationAddresses": [],
                "sendNotification": False,
                "format": p.format,
                "type": "OCCURRENCE",
                "verbatimExtensions": [],
            },
            predicate=p.predicate,
            format=p.format,
            created=datetime.fromisoformat(p.created).timestamp(),
            final_status="SUCCEEDED",
            media_base=media_base,
            api_url=api_url,
        )
        rows = np.flatnonzero(mask)
        self._summarise(d, rows)
        self._build(d, rows)  # here, not in the pool: nobody sees the download before its archive exists
        d.finished_at = datetime.fromisoformat(p.modified).timestamp()
        with self._lock:
            self._downloads[d.key] = d
            self._by_doi[d.doi.lower()] = d.key

    def _final_status(self, description: Any) -> str:
        m = re.search(r"sandbox:([A-Za-z_]+)", description) if isinstance(description, str) else None
        if m and m.group(1).upper() in DOWNLOAD_FAULT_STATUSES:
            return m.group(1).upper()
        if self.config.download_final_status:
            return self.config.download_final_status.upper()
        return "SUCCEEDED"

    def _summarise(self, d: Download, rows: np.ndarray) -> None:
        occ = self.world.occ
        d.total_records = int(len(rows))
        ds = np.unique(occ.dataset[rows]) if len(rows) else np.zeros(0, dtype=np.int64)
        d.number_datasets = int(len(ds))
        if len(rows):
            d.license = LICENSE_URLS[int(occ.license[rows].max())]  # enum order = restrictiveness

    def _build(self, d: Download, rows: np.ndarray) -> None:
        try:
            path = self.work_dir / f"{d.key}.zip"
            real_columns = self.config.real_dwca_columns
            cache = self._archive_cache if d.format == "DWCA" else None
            cached = (
                cache_key(self.config, rows, media_base=d.media_base, real_columns=real_columns)
                if cache
                else ""
            )
            d.size = write_archive(
                self.world,
                rows,
                path,
                key=d.key,
                doi=d.doi,
                created=iso(d.created),
                predicate=d.request["predicate"],
                fmt=d.format,
                media_base=d.media_base,
                should_stop=lambda: d.cancelled_at is not None,
                real_columns=real_columns,
                creator=d.creator,
                download_url=f"{d.api_url or d.media_base + '/v1'}/occurrence/download/request/{d.key}.zip",
                cache=cache,
                cache_key=cached,
            )
            d.path = path
        except Stopped:
            pass
        except Exception as exc:  # a bug here must show up as FAILED, not hang the client
            log.exception("sandbox download %s failed", d.key)
            d.error = str(exc)
        finally:
            d.finished_at = time.time()
            d.built.set()

    def cancel(self, user: str, key: str) -> None:
        d = self.get(key)
        if d is None:
            raise KeyError(key)
        if d.creator != user:
            raise PermissionError(f"User {user} is not the creator of download {key}")
        with self._lock:
            if self.status_of(d) in RUNNING_STATUSES:
                d.cancelled_at = time.time()

    # ----------------------------------------------------------------------------- reads
    def get(self, key_or_doi: str) -> Download | None:
        k = key_or_doi.strip()
        for prefix in ("https://doi.org/", "http://doi.org/", "doi:"):
            if k.lower().startswith(prefix):
                k = k[len(prefix) :]
        if k.startswith("10."):
            k = self._by_doi.get(k.lower(), "")
        return self._downloads.get(k)

    def for_user(self, user: str, statuses: set[str] | None = None) -> list[Download]:
        now = time.time()
        out = [d for d in self._downloads.values() if d.creator == user]
        if statuses:
            out = [d for d in out if self.status_of(d, now) in statuses]
        return sorted(out, key=lambda d: (d.created, d.key), reverse=True)

    def to_json(self, d: Download, api_url: str, *, private: bool = False) -> dict[str, Any]:
        status = self.status_of(d)
        req = dict(d.request)
        if not private:
            req.pop("creator", None)
            req.pop("notificationAddresses", None)
        out: dict[str, Any] = {"key": d.key}
        if status in ("SUCCEEDED", "FILE_ERASED"):
            out["doi"] = d.doi
        out["license"] = d.license if status in ("SUCCEEDED", "FILE_ERASED") else "unspecified"
        out["request"] = req
        out["created"] = iso(d.created)
        out["modified"] = iso(self._modified(d, status))
        out["eraseAfter"] = iso(d.created + timedelta(days=182).total_seconds())
        out["status"] = status
        out["downloadLink"] = f"{api_url}/occurrence/download/request/{d.key}.zip"
        out["size"] = d.size if status in ("SUCCEEDED", "FILE_ERASED") else 0
        out["totalRecords"] = d.total_records
        out["numberDatasets"] = d.number_datasets if status in ("SUCCEEDED", "FILE_ERASED") else 0
        # numberOrganizations, numberPublishingCountries and source exist in GBIF's model but no
        # recorded status carries them (null fields are omitted), so neither does the sandbox's
        return out

    def citation(self, d: Download) -> str:
        day = datetime.fromtimestamp(d.created, UTC)
        return f"GBIF.org ({day.day} {day.strftime('%B')} {day.year}) GBIF Occurrence Download https://doi.org/{d.doi}"

    def dataset_counts(self, d: Download) -> list[dict[str, Any]]:
        rows = np.flatnonzero(evaluate(self.world, d.predicate))
        bc = np.bincount(self.world.occ.dataset[rows].astype(np.int64), minlength=len(self.world.datasets))
        out = []
        for ds in self.world.datasets:
            if bc[ds.idx]:
                out.append(
                    {
                        "downloadKey": d.key,
                        "datasetKey": ds.key,
                        "datasetTitle": ds.title,
                        "datasetDOI": dataset_doi(self.world, ds),
                        "datasetCitation": dataset_citation(self.world, ds),
                        "numberRecords": int(bc[ds.idx]),
                    }
                )
        return sorted(out, key=lambda x: (-x["numberRecords"], x["datasetKey"]))


def _doi_suffix(seed: int, key: str) -> str:
    h = hashing.h64(seed, int(key.replace("-", "")[:18]), 77)
    out = ""
    for _ in range(6):
        h, r = divmod(h, 36)
        out += _B36[r]
    return out
