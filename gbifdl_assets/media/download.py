"""The download pipeline: manifest rows in, images in the store and one ledger entry per image out.

::

    rows ─▶ producer ─▶ bounded queue ─▶ N workers ─▶ fetch (keep-alive HTTP, per-host slots, retries)
             │ skips what the ledger                 └▶ thread pool: validate (Pillow) + store.put
             │ already has, and what another                     │
             │ ledger of the store already stored                ▼
             └──────────────────────────────────────────▶ ledger buffer ─▶ segment every N rows / s

* One asyncio event loop runs the producer, ``concurrency`` worker tasks, the ledger flusher and the
  progress reporter. Pillow decoding, hashing and storage writes run in a small thread pool (Pillow
  and file/socket I/O release the GIL), so the loop keeps serving sockets while images decode; in
  worker processes writing a local store they run inline instead (see ``DownloadConfig.io_threads``).
* With ``processes`` > 1 (the default for 2,000+ rows: one per core, up to 4) the fetching,
  validation and storing move to worker processes (:mod:`.pool`), each running the same per-image
  code (:mod:`.work`) on its own loop; this process keeps the producer, the ledger and the progress
  reports, so everything below holds unchanged.
* Memory is bounded: the queue holds at most ``queue_size`` rows, the ledger buffer at most a flush
  worth of entries; results are never collected in a list. The run keeps the content keys of the
  manifest it has already seen (to skip duplicates) and of its own ledger.
* Resumability: the ledger is read first. Images it records as stored are not fetched again;
  failed ones are retried (``retry_failed``), or only they are (``only_failed``, for
  ``gbifdl images retry-failed``). Images another ledger of the same store already stored (same
  variant) are recorded as ``skipped/already_stored`` without any network traffic.
* The ledger is checked against the store before it is trusted (``verify_stored``): an object can
  vanish behind its back (an S3 bucket that lost data, files deleted from a local store). One
  listing per variant prefix (:meth:`.store.ImageStore.missing_keys`, ~N/1000 requests on S3) finds
  the recorded objects that are gone; those images are fetched again like new ones (a fresh ledger
  entry replaces the stale one; ``missing_refetched`` counts them), and another ledger's entry is
  never adopted when its object is gone. Even ``retry-failed`` heals them: a stored claim whose
  object is gone is a failure the ledger could not see.
* A storage outage is retried (see :class:`~.store.ImageStore`); if it outlasts
  ``store_retry_seconds`` the run stops with :class:`~gbifdl_assets.storage.StorageUnavailable`
  after flushing what it can; re-running resumes.

The entry point is :func:`download_images`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.media.fetch import FetchConfig, Fetcher
from gbifdl_assets.media.host_rates import DEFAULT_HOST_RATES_KEY, HostBook
from gbifdl_assets.media.image_cache import (
    CACHE_QUEUE,
    GBIF_API_URL,
    ImageCache,
    cache_gate,
    fetch_cached,
    gbif_id_of,
)
from gbifdl_assets.media.ledger import LedgerWriter, compact_ledger, ledger_files, list_ledgers, load_ledger
from gbifdl_assets.media.rows import Row, content_key_of, row_batches, row_count
from gbifdl_assets.media.same_bytes import SameBytes
from gbifdl_assets.media.schedule import HostScheduler
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.media.validate import ValidationOptions
from gbifdl_assets.media.work import entry, fetch_one, now_ms, relaxed_gc, resolve_io_threads, run_loop
from gbifdl_assets.storage import Storage

__all__ = [
    "DownloadConfig",
    "DownloadSummary",
    "Progress",
    "download_images",
]

log = logging.getLogger(__name__)

_INDEX_COLUMNS = [
    "content_key",
    "stored",
    "key",
    "bytes",
    "width",
    "height",
    "sha256",
    "format",
    "content_type",
    "content_sha256",
    "phash",
]


@dataclass(frozen=True)
class DownloadConfig:
    """Everything about a run except what to fetch and where to put it."""

    fetch: FetchConfig = field(default_factory=FetchConfig)
    #: threads for validation and storage writes in all; 0: inline in the event loop's thread;
    #: None: inline in worker processes for a local store, 8 threads in-process, 32 for S3 (see
    #: work.resolve_io_threads)
    io_threads: int | None = None
    #: rows waiting for a worker (in per-host backlogs, see .schedule); None: 4 x concurrency, at
    #: least 4,096, so that every host of a mixed manifest has work while slow ones pace theirs
    queue_size: int | None = None
    ledger_flush_rows: int = 2000
    ledger_flush_seconds: float = 5.0
    progress_interval: float = 5.0
    #: fetch again what the ledger records as failed (else only what it does not know)
    retry_failed: bool = True
    #: fetch only what the ledger records as failed (``gbifdl images retry-failed``)
    only_failed: bool = False
    #: look into the store's other ledgers and skip what they already stored
    dedup_across_ledgers: bool = True
    #: how long transient storage errors are retried before the run gives up
    store_retry_seconds: float = 120.0
    #: fold the ledger's segments into one file at the end of the run
    compact: bool = True
    #: "auto" (uvloop when installed), "uvloop" or "asyncio"
    event_loop: str = "auto"
    #: downloader processes (see .pool); None: one per core up to 4, or 1 below ``pool_min_rows``
    processes: int | None = None
    pool_min_rows: int = 2000
    #: list the store's image prefixes before the run and fetch again what the ledgers record as
    #: stored but is gone; off for stores so big that one listing per run costs too much. Measured
    #: on the 2-core machine: 100,000 objects in a local store 0.25 s (warm cache); 3,000 on moto
    #: S3 0.6 s in 3 ListObjectsV2 requests (one HEAD per object instead: 15 s); the cost grows
    #: with the objects under the variant prefix, which all training sets of the store share.
    verify_stored: bool = True
    #: storage key (in the image store's storage) of what runs learned about each host's rate
    #: (.host_rates); read at the start, written every host_rates_save_seconds and at the end.
    #: None: start every host from scratch and keep nothing
    host_rates_key: str | None = DEFAULT_HOST_RATES_KEY
    host_rates_save_seconds: float = 30.0
    #: ask again for images the ledger records as opted out (hosts can change their mind)
    recheck_opted_out: bool = False
    #: fetch dead links (404/410, DNS failure, refused connections) from GBIF's image cache
    #: (.image_cache; rows need their gbifID)
    image_cache: bool = True
    #: the GBIF API whose image cache is asked (the offline sandbox's /v1 in tests and demos)
    gbif_api_url: str = GBIF_API_URL
    #: store the same downloaded bytes once: a second URL with them points at the first object
    #: (.same_bytes; ledger content_sha256 / duplicate_of)
    same_bytes: bool = True

    @property
    def cache(self) -> ImageCache | None:
        return ImageCache(self.gbif_api_url) if self.image_cache else None

    @property
    def pending_jobs(self) -> int:
        """Jobs queued ahead of the workers (see ``queue_size``)."""
        return self.queue_size or max(4 * self.fetch.concurrency, 4096)


@dataclass
class Progress:
    """A progress snapshot, handed to the ``progress`` callback every ``progress_interval`` seconds."""

    done: int
    ok: int
    failed: int
    skipped: int
    bytes: int
    elapsed: float
    rate: float  # images handled per second since the start (ok + failed + skipped)
    total: int | None
    failed_by_reason: dict[str, int]
    final: bool = False
    #: images the ledger recorded as stored whose object was gone, handed to fetching again so far
    missing_refetched: int = 0
    #: images whose host opted out (robots.txt, X-Robots-Tag, tdm-reservation): not downloaded
    opted_out: int = 0

    def message(self) -> str:
        of = f" of {self.total:,}" if self.total is not None else ""
        top = ", ".join(f"{r} {n}" for r, n in list(self.failed_by_reason.items())[:3])
        opted = f", {self.opted_out:,} opted out" if self.opted_out else ""
        return (
            f"images: {self.done:,}{of} done ({self.ok:,} ok, {self.failed:,} failed, {self.skipped:,} skipped{opted})"
            f" · {self.rate:,.0f} img/s · {self.bytes / 1e6:,.1f} MB in {self.elapsed:,.0f} s"
            + (f" · {self.missing_refetched:,} missing objects re-fetched" if self.missing_refetched else "")
            + (f" · failures: {top}" if top else "")
        )


@dataclass
class DownloadSummary:
    """What a run did (its own work; see ``already_done`` for what earlier runs had done)."""

    ledger: str
    store: str
    variant: str
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0  # ok images per second
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    #: images not downloaded because their host opts out: robots_txt, x_robots_tag, tdm_reservation
    opted_out: int = 0
    opted_out_by_reason: dict[str, int] = field(default_factory=dict)
    #: dead links asked from GBIF's image cache, and how many of them it had (stored, source
    #: gbif_image_cache in the ledger)
    image_cache_tried: int = 0
    from_image_cache: int = 0
    #: images whose bytes another image of the run (or of the ledger) already stored: their entry
    #: points at that object (duplicate_of) instead of storing the bytes again
    same_bytes: int = 0
    #: rows not looked at because this ledger already had them (stored, or failed and not retried)
    already_done: int = 0
    ledger_entries: int = 0
    storage_retries: int = 0
    #: rows whose ledger entry said stored but whose object was gone: fetched again (see verify_stored)
    missing_refetched: int = 0
    #: seconds spent checking the ledgers' stored objects against a listing of the store
    verify_seconds: float = 0.0
    run_id: str = ""
    #: hosts requests went to, the 429/503 answers among them, and the hosts given up on with why
    hosts_contacted: int = 0
    throttled: int = 0
    hosts_skipped: dict[str, str] = field(default_factory=dict)
    #: the busiest hosts: requests, throttled, learned rate and ceiling (requests/s), window, latency
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------- indexes
@dataclass
class _Own:
    """What the run's own ledger says, by content_key."""

    stored: set[str]
    failed: set[str]
    #: recorded as opted out by their host: not asked again (unless recheck_opted_out)
    opted_out: set[str] = field(default_factory=set)
    #: recorded as stored, but the object is gone (filled in by _verify_stored)
    missing: set[str] = field(default_factory=set)
    #: the stored entries' content_key and key columns, for the check against the store
    stored_keys: pa.Table | None = None


def _own_state(store: ImageStore, ledger: str) -> _Own:
    table = load_ledger(store, ledger, columns=["status", "stored", "key", "sha256", "content_sha256"])
    keys = table.column("content_key")
    stored_rows = table.filter(pc.fill_null(table.column("stored"), False)).select(
        ["content_key", "key", "sha256", "content_sha256"]
    )
    failed = set(keys.filter(pc.equal(table.column("status"), "failed")).to_pylist())
    opted = set(keys.filter(pc.equal(table.column("status"), "opted_out")).to_pylist())
    return _Own(set(stored_rows.column("content_key").to_pylist()), failed, opted, stored_keys=stored_rows)


def _same_bytes_seed(own: _Own, variant: str) -> Iterator[tuple[str, str, str, str]]:
    """(body sha256, key, content key, sha256) of the own ledger's stored entries whose object is there."""
    table = own.stored_keys
    if table is None or table.num_rows == 0:
        return
    prefix = ImageStore.variant_prefix(variant)
    mask = pc.and_(pc.is_valid(table.column("content_sha256")), pc.starts_with(table.column("key"), prefix))
    mask = pc.and_(mask, pc.is_valid(table.column("sha256")))
    for batch in table.filter(pc.fill_null(mask, False)).to_batches(4096):
        for row in batch.to_pylist():
            if row["content_key"] not in own.missing:
                yield row["content_sha256"], row["key"], row["content_key"], row["sha256"]


def _verify_stored(
    store: ImageStore, ledger: str, own: _Own, index: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Check the own ledger's stored entries and the adoptable ``index`` against the store.

    Moves own images whose object is gone from ``own.stored`` to ``own.missing`` (they are fetched
    again) and returns ``index`` without the entries whose object is gone (never adopted).
    """
    table = own.stored_keys
    own_keys = table.column("key") if table is not None else pa.array([], pa.string())
    wanted = {k for k in own_keys.to_pylist() if k is not None}
    wanted.update(hit["key"] for hit in index.values() if hit.get("key"))
    gone = store.missing_keys(wanted)
    if table is not None and table.num_rows:
        # A stored claim without a key is as broken as one whose object is gone.
        lost = pc.or_(pc.is_null(own_keys), pc.is_in(own_keys, value_set=pa.array(sorted(gone), pa.string())))
        lost = pc.fill_null(lost, True)
        own.missing = set(table.column("content_key").filter(lost).to_pylist())
        own.stored -= own.missing
    if own.missing:
        log.warning(
            "ledger %r records %d images as stored whose object is gone from %s (deleted or lost "
            "by the storage): those among this run's rows are fetched again",
            ledger,
            len(own.missing),
            store.uri,
        )
    stale = {ck for ck, hit in index.items() if not hit.get("key") or hit["key"] in gone}
    if stale:
        log.warning(
            "%d images other ledgers of %s record as stored have no object: fetching them instead "
            "of adopting those entries",
            len(stale),
            store.uri,
        )
        index = {ck: hit for ck, hit in index.items() if ck not in stale}
    return index


def _other_index(
    store: ImageStore, ledger: str, variant: str, keys: pa.Array | None
) -> dict[str, dict[str, Any]]:
    """Images other ledgers of the store hold under the same variant (limited to ``keys`` if given)."""
    prefix = ImageStore.variant_prefix(variant)
    index: dict[str, dict[str, Any]] = {}
    value_set = pa.array(pc.unique(keys)) if keys is not None else None
    for name in list_ledgers(store):
        if name == ledger:
            continue
        try:
            table = load_ledger(store, name, columns=_INDEX_COLUMNS[1:])
        except Exception as exc:  # a broken foreign ledger must not stop this run
            log.warning("ignoring ledger %r of %s for de-duplication: %s", name, store.uri, exc)
            continue
        mask = pc.and_(
            pc.fill_null(table.column("stored"), False), pc.starts_with(table.column("key"), prefix)
        )
        if value_set is not None:
            mask = pc.and_(mask, pc.is_in(table.column("content_key"), value_set=value_set))
        for row in table.filter(mask).to_pylist():
            row["source_ledger"] = name
            index[row["content_key"]] = row
    return index


# ------------------------------------------------------------------------------------ state
class _Run:
    """Mutable state of one run, touched only from the event loop thread."""

    def __init__(
        self,
        store: ImageStore,
        writer: LedgerWriter,
        options: ValidationOptions,
        config: DownloadConfig,
        total: int | None,
        progress: Callable[[Progress], None] | None,
        on_result: Callable[[dict[str, Any], Row], None] | None,
        hosts: HostBook | None = None,
        same: SameBytes | None = None,
    ) -> None:
        self.hosts = hosts or HostBook(None, None)
        self.same = same
        self.same_bytes = 0
        self.store = store
        self.writer = writer
        self.options = options
        self.config = config
        self.total = total
        self.progress_cb = progress
        self.on_result = on_result
        self.counts: Counter[str] = Counter()
        self.failed_by: Counter[str] = Counter()
        self.skipped_by: Counter[str] = Counter()
        self.opted_out_by: Counter[str] = Counter()
        self.cache_tried = self.from_cache = 0
        self.bytes = 0
        self.already_done = 0
        self.missing_refetched = 0
        self.started = time.monotonic()
        self.flush_now = asyncio.Event()

    def record(self, entry: dict[str, Any], row: Row | None) -> None:
        entry.pop("dead_link", None)
        status = entry["status"]
        self.counts[status] += 1
        if status == "failed":
            self.failed_by[entry["reason"]] += 1
        elif status == "skipped":
            self.skipped_by[entry["reason"]] += 1
        elif status == "opted_out":
            self.opted_out_by[entry["reason"]] += 1
        if entry.get("stored") and status == "ok":
            self.bytes += entry.get("bytes") or 0
        if entry.get("duplicate_of"):
            self.same_bytes += 1
        if entry.get("source") == "gbif_image_cache":
            self.cache_tried += 1
            self.from_cache += status == "ok"
        self.writer.add(entry)
        if len(self.writer) >= self.config.ledger_flush_rows:
            self.flush_now.set()
        if self.on_result is not None:
            self.on_result(entry, row or {})

    def count_only(self, reason: str) -> None:
        """A row handled without a ledger entry (already done, duplicate, not failed…)."""
        self.counts["skipped"] += 1
        self.skipped_by[reason] += 1

    def snapshot(self, final: bool = False) -> Progress:
        elapsed = time.monotonic() - self.started
        done = self.counts["ok"] + self.counts["failed"] + self.counts["skipped"] + self.counts["opted_out"]
        return Progress(
            done=done,
            ok=self.counts["ok"],
            failed=self.counts["failed"],
            skipped=self.counts["skipped"],
            bytes=self.bytes,
            elapsed=elapsed,
            rate=done / elapsed if elapsed > 0 else 0.0,
            total=self.total,
            failed_by_reason=dict(self.failed_by.most_common()),
            final=final,
            missing_refetched=self.missing_refetched,
            opted_out=self.counts["opted_out"],
        )


def _jobs(
    rows: Any, run: _Run, index: dict[str, dict[str, Any]], own: _Own
) -> Iterator[tuple[Row, str, str]]:
    """The rows to fetch, as (row, content_key, url); records or counts everything else on the way."""
    cfg = run.config
    stored_before, failed_before, missing = own.stored, own.failed, own.missing
    seen: set[str] = set()
    for batch in row_batches(rows):
        for row in batch:
            ck, url, problem = content_key_of(row)
            if ck is None:
                run.count_only("no_content_key")
                continue
            if ck in seen:
                run.count_only("duplicate")
                continue
            seen.add(ck)
            if ck in stored_before:
                run.already_done += 1
                run.count_only("already_done")
                continue
            if ck in own.opted_out and not cfg.recheck_opted_out:
                run.already_done += 1
                run.count_only("opted_out_before")
                continue
            healing = ck in missing
            if cfg.only_failed and ck not in failed_before and not healing:
                run.count_only("not_failed")
                continue
            if ck in failed_before and not cfg.retry_failed:
                run.already_done += 1
                run.count_only("failed_before")
                continue
            if healing:
                run.missing_refetched += 1
            if problem is not None:
                run.record(entry(ck, url, now_ms(), status="failed", reason="bad_row", error=problem), row)
                continue
            hit = index.get(ck)
            if hit is not None:
                run.record(_adopt(ck, url, now_ms(), hit, run.options), row)
                continue
            yield row, ck, url  # type: ignore[misc]


# -------------------------------------------------------------------------------- the loop
async def _run_async(rows: Any, run: _Run, index: dict[str, dict[str, Any]], own: _Own) -> None:
    cfg = run.config
    fetch_cfg = cfg.fetch
    loop = asyncio.get_running_loop()
    io_threads = resolve_io_threads(cfg.io_threads, run.store, 1)
    pool = ThreadPoolExecutor(io_threads, thread_name_prefix="gbifdl-img") if io_threads else None
    flush_pool = ThreadPoolExecutor(1, thread_name_prefix="gbifdl-ledger")
    done = asyncio.Event()

    async def producer(fetcher: Fetcher, sched: HostScheduler) -> None:
        try:
            for job in _jobs(rows, run, index, own):
                await sched.put(job, fetcher.host_key(job[2]) or "")
        finally:
            sched.close()

    cache = cfg.cache

    async def worker(fetcher: Fetcher, sched: HostScheduler) -> None:
        while (item := await sched.get()) is not None:
            job, host = item
            row = job[0]
            try:
                if host == CACHE_QUEUE:  # (row, gbifID, the dead link's entry)
                    assert cache is not None
                    entry = await fetch_cached(
                        fetcher, loop, pool, run.store, run.options, cache, job[1], job[2], run.same
                    )
                else:  # (row, content_key, url)
                    entry = await fetch_one(
                        fetcher, loop, pool, run.store, run.options, job[1], job[2], run.same
                    )
            finally:
                sched.done(host)
            if entry.pop("dead_link", False) and cache is not None:
                gbif_id = gbif_id_of(row)
                if gbif_id is not None:
                    sched.put_nowait((row, gbif_id, entry), CACHE_QUEUE)
                    continue
            run.record(entry, row)

    async def flusher(fetcher: Fetcher) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.flush_now.wait(), timeout=min(1.0, cfg.ledger_flush_seconds))
            run.flush_now.clear()
            if run.writer.due():
                await _flush(loop, flush_pool, run.writer)
            run.hosts.update(0, fetcher.host_states())
            if run.hosts.storage is not None:
                await loop.run_in_executor(flush_pool, run.hosts.maybe_save)

    async def reporter() -> None:
        if run.progress_cb is None:
            return
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=cfg.progress_interval)
            if not done.is_set():
                run.progress_cb(run.snapshot())

    fetcher = Fetcher(fetch_cfg, host_states=run.hosts.learned)
    try:
        async with fetcher, asyncio.TaskGroup() as group:
            gate = cache_gate()
            sched = HostScheduler(lambda h: gate if h == CACHE_QUEUE else fetcher.host(h), cfg.pending_jobs)
            side = [group.create_task(flusher(fetcher)), group.create_task(reporter())]
            workers = [group.create_task(worker(fetcher, sched)) for _ in range(fetch_cfg.concurrency)]
            group.create_task(producer(fetcher, sched))
            await asyncio.gather(*workers)
            done.set()
            await asyncio.gather(*side)
    finally:
        done.set()
        run.hosts.update(0, fetcher.host_states())
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        # Whatever happened, write what was recorded: each entry's object write has returned.
        try:
            await _flush(loop, flush_pool, run.writer, always=True)
        finally:
            flush_pool.shutdown(wait=True)


async def _flush(
    loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor, writer: LedgerWriter, always: bool = False
) -> None:
    if not (always or writer.due()) or len(writer) == 0:
        return
    rows = writer.take()
    try:
        await loop.run_in_executor(pool, writer.write, rows)
    except BaseException:
        writer.restore(rows)
        raise


def _adopt(
    ck: str, url: str | None, started_ms: int, hit: dict[str, Any], options: ValidationOptions
) -> dict[str, Any]:
    """An entry for an image another ledger already stored (no network traffic)."""
    width, height = hit.get("width"), hit.get("height")
    if width is not None and height is not None and min(width, height) < options.min_side:
        return entry(
            ck,
            url,
            started_ms,
            status="failed",
            reason="too_small",
            error=f"{width}x{height} (stored by ledger {hit['source_ledger']!r}): the shorter side is below "
            f"min_side={options.min_side}",
        )
    return entry(
        ck,
        url,
        started_ms,
        status="skipped",
        reason="already_stored",
        stored=True,
        key=hit["key"],
        bytes=hit.get("bytes"),
        width=width,
        height=height,
        sha256=hit.get("sha256"),
        format=hit.get("format"),
        content_type=hit.get("content_type"),
        content_sha256=hit.get("content_sha256"),
        phash=hit.get("phash"),
        error=f"stored by ledger {hit['source_ledger']!r}",
    )


# ----------------------------------------------------------------------------------- API
def download_images(
    rows: pa.Table | pa.RecordBatchReader | Iterable[Row] | Iterable[pa.RecordBatch],
    store: ImageStore | Storage,
    *,
    ledger: str,
    options: ValidationOptions | None = None,
    config: DownloadConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_result: Callable[[dict[str, Any], Row], None] | None = None,
) -> DownloadSummary:
    """Fetch, validate and store the images of ``rows``; record each in ledger ``ledger``.

    ``rows`` are manifest rows: ``url`` and ``content_key`` (sha256 of the URL; computed when
    absent) plus any passthrough fields, which reach ``on_result(entry, row)``. ``store`` is an
    :class:`ImageStore` or a :class:`Storage` (local folder or S3). ``progress(Progress)`` is called
    every ``config.progress_interval`` seconds and once at the end (``final=True``).

    Blocking; runs its own event loop (in a helper thread when called from inside a running loop).
    Raises :class:`StorageUnavailable` when the store stays unusable for ``store_retry_seconds``.
    """
    config = config or DownloadConfig()
    options = options or ValidationOptions()
    if not isinstance(store, ImageStore):
        store = ImageStore(store, retry_seconds=config.store_retry_seconds)
    processes = _processes(config, row_count(rows), on_result)
    hosts = HostBook(store.storage, config.host_rates_key, save_seconds=config.host_rates_save_seconds)
    hosts.load()
    workers = None
    if processes > 1:
        from gbifdl_assets.media.pool import Workers

        # they start while we read the ledgers
        workers = Workers(store, options, config, processes, host_states=hosts.learned)
    try:
        with relaxed_gc():
            return _download(rows, store, ledger, options, config, progress, on_result, workers, hosts)
    finally:
        if workers is not None:
            workers.close(terminate=True)


def _download(
    rows: Any,
    store: ImageStore,
    ledger: str,
    options: ValidationOptions,
    config: DownloadConfig,
    progress: Callable[[Progress], None] | None,
    on_result: Callable[[dict[str, Any], Row], None] | None,
    workers: Any,
    hosts: HostBook,
) -> DownloadSummary:
    writer = LedgerWriter(
        store,
        ledger,
        flush_rows=config.ledger_flush_rows,
        flush_seconds=config.ledger_flush_seconds,
        next_seq=ledger_files(store, ledger).next_seq,
    )
    own = _own_state(store, ledger)
    keys = None
    if isinstance(rows, pa.Table) and "content_key" in rows.column_names:
        keys = rows.column("content_key").combine_chunks()
    index = _other_index(store, ledger, options.variant, keys) if config.dedup_across_ledgers else {}
    verify_seconds = 0.0
    if config.verify_stored:
        checked = time.monotonic()
        index = _verify_stored(store, ledger, own, index)
        verify_seconds = time.monotonic() - checked
    same = SameBytes(options.variant, _same_bytes_seed(own, options.variant)) if config.same_bytes else None
    own.stored_keys = None  # not needed any more; may be large
    run = _Run(store, writer, options, config, row_count(rows), progress, on_result, hosts, same)
    retries_before = store.retries

    if workers is not None:
        from gbifdl_assets.media.pool import run_pool

        run.started = time.monotonic()
        try:
            run_pool(workers, _jobs(rows, run, index, own), run)
        finally:
            hosts.save()
    else:

        async def main() -> None:
            run.started = time.monotonic()
            run.flush_now = asyncio.Event()
            await _run_async(rows, run, index, own)

        try:
            run_loop(main, config.event_loop)
        finally:
            hosts.save()
    if config.compact:
        try:
            compact_ledger(store, ledger, store=store)
        except Exception as exc:  # the segments are intact; the next run compacts
            log.warning("could not compact ledger %r in %s: %s", ledger, store.uri, exc)
    elapsed = time.monotonic() - run.started
    if progress is not None:
        progress(run.snapshot(final=True))
    host_summary = hosts.summary()
    for host, why in host_summary["hosts_skipped"].items():
        log.warning("%s", why if host in why else f"{host}: {why}")
    return DownloadSummary(
        ledger=ledger,
        store=store.uri,
        variant=options.variant,
        ok=run.counts["ok"],
        failed=run.counts["failed"],
        skipped=run.counts["skipped"],
        bytes=run.bytes,
        seconds=round(elapsed, 3),
        images_per_s=round(run.counts["ok"] / elapsed, 1) if elapsed > 0 else 0.0,
        failed_by_reason=dict(run.failed_by.most_common()),
        skipped_by_reason=dict(run.skipped_by.most_common()),
        opted_out=run.counts["opted_out"],
        opted_out_by_reason=dict(run.opted_out_by.most_common()),
        image_cache_tried=run.cache_tried,
        same_bytes=run.same_bytes,
        from_image_cache=run.from_cache,
        already_done=run.already_done,
        ledger_entries=writer.entries_written,
        storage_retries=store.retries - retries_before,
        missing_refetched=run.missing_refetched,
        verify_seconds=round(verify_seconds, 3),
        run_id=writer.run_id,
        **host_summary,
    )


def _processes(config: DownloadConfig, total: int | None, on_result: Any) -> int:
    if on_result is not None:  # the callback sees rows in this process
        return 1
    if config.processes is not None:
        if config.processes < 1:
            raise ValueError(f"processes={config.processes}: must be >= 1 (or None for one per core)")
        return config.processes
    if total is not None and total < config.pool_min_rows:
        return 1  # spawning workers (~0.5 s) does not pay for small downloads
    return max(1, min(os.cpu_count() or 1, 4))
