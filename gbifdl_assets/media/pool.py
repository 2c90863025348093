"""Several downloader processes for one run: one event loop per core.

One Python process cannot keep 2+ cores busy with this work: the event loop (HTTP), Pillow
decoding and file writes contend for one GIL, and the loop thread waits for it after every socket
event. Measured on the 2-core reference machine, two processes over halves of 10,000 images did
~1.3x the images/s of one.

Shape: the calling process stays the only one that reads the manifest, decides what to fetch
(ledger, duplicates, images other ledgers already stored), writes the ledger and reports progress,
exactly as in-process. It deals the images to fetch to ``processes`` spawned workers by
``content_key`` and bounds how many are in flight. Each worker runs the same fetch/validate/store
code as the in-process path (:func:`.work.fetch_one`) on its own event loop (validating inline for
a local store, in a thread pool for S3; see :func:`.work.resolve_io_threads`),
and sends the ledger entries back in small batches *after* each object write returned, so the
ledger still only records stored images.

Hosts and workers: each worker keeps its jobs in per-host backlogs (:mod:`.schedule`) and its own
politeness state per host (:mod:`.hosts`). Every host starts with one owner (a hash of its name),
so one controller learns its pace instead of two that would each think they have the host to
themselves. A host that proves fast and clean (its owner's window fully open, no rate of its own,
work waiting) is spread over all workers by ``content_key``, its owner handing back the jobs it
has not started: a fast host keeps both cores busy (``per_host`` is divided between the workers,
16 over 2: 8 each, so the host sees the same number of connections). A spread host that starts
throttling gets one owner again, which goes on from the sum of what the workers learned, and the
others hand back its jobs. Workers report their hosts' state twice a second (at once when a host
gets a rate); the parent merges them for the run summary and the host rates file.

A worker exits when its job queue ends, and also when the calling process disappears (checked every
second), so ``kill -9`` of the caller leaves no orphan downloading forever; the images it stored
without a ledger entry are fetched again by the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import queue as queue_mod
import sys
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from gbifdl_assets.media.fetch import FetchConfig, Fetcher
from gbifdl_assets.media.hosts import host_key_of
from gbifdl_assets.media.image_cache import CACHE_QUEUE, ImageCache, cache_gate, fetch_cached, gbif_id_of
from gbifdl_assets.media.same_bytes import SameBytes
from gbifdl_assets.media.schedule import HostScheduler
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.media.validate import ValidationOptions
from gbifdl_assets.media.work import fetch_one, relaxed_gc, resolve_io_threads, run_loop
from gbifdl_assets.storage import Storage, StorageUnavailable

log = logging.getLogger(__name__)

_JOB_BATCH = 64
_START_LOCK = threading.Lock()
_SEND_EVERY = 0.05  # seconds between result batches from a worker
_HOSTS_EVERY = 0.5  # seconds between host state reports from a worker
_ORPHANED = "orphaned"
#: requests/s a host's owner must be sending it before the host is spread over all workers: only a
#: host that keeps one worker busy gains from a second (and spreading splits what is learned)
_SPREAD_RATE = 400.0


class WorkerFailed(RuntimeError):
    """A worker process died or raised something that could not be sent back whole."""


def worker_fetch_config(config: FetchConfig, processes: int) -> FetchConfig:
    """The share of the run's limits one of ``processes`` workers gets."""
    return replace(
        config,
        concurrency=max(1, math.ceil(config.concurrency / processes)),
        per_host=max(1, math.ceil(config.per_host / processes)),
    )


def _worker_main(
    storage: Storage,
    options: ValidationOptions,
    fetch: FetchConfig,
    io_threads: int,
    store_retry_seconds: float,
    event_loop: str,
    jobs: Any,
    results: Any,
    parent_pid: int,
    index: int = 0,
    host_states: dict[str, Any] | None = None,
    max_pending: int = 4096,
    cache: ImageCache | None = None,
    same_bytes: bool = True,
) -> None:
    """Entry point of a worker process (spawned; everything arrives pickled).

    The job queue carries lists of jobs (``(content_key, url)``, or ``(content_key, url, gbifID,
    the dead link's entry)`` for GBIF's image cache), ``("release", host)`` (hand back the queued
    jobs of ``host``: another worker owns it now) and None (no more jobs).
    """
    store = ImageStore(storage, retry_seconds=store_retry_seconds)
    orphaned = threading.Event()

    def next_jobs() -> Any:
        while True:
            try:
                return jobs.get(timeout=1.0)
            except queue_mod.Empty:
                if os.getppid() != parent_pid:  # the caller is gone (kill -9): stop
                    return _ORPHANED

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(io_threads, thread_name_prefix="gbifdl-img") if io_threads else None
        getter = ThreadPoolExecutor(1, thread_name_prefix="gbifdl-jobs")
        fetcher = Fetcher(fetch, host_states=host_states)
        gate = cache_gate()
        # what this worker stored (the caller sees what the others did: _one_object)
        same = SameBytes(options.variant) if same_bytes else None
        # bounded by the parent's jobs in flight
        sched = HostScheduler(lambda h: gate if h == CACHE_QUEUE else fetcher.host(h), 1 << 30)
        outbox: list[dict[str, Any]] = []
        finished = asyncio.Event()
        reported: dict[str, int] = {}

        def abandon() -> None:
            """The caller is gone (kill -9): nobody will record what we fetch; stop soon."""
            if not orphaned.is_set():
                orphaned.set()
                results.cancel_join_thread()  # nobody reads: exiting must not wait for the pipe
                for host in list(sched.backlog()):
                    sched.take_back(host)
                sched.close()

        def send() -> None:
            if orphaned.is_set():
                outbox.clear()
            elif outbox:
                results.put(("entries", list(outbox)))
                outbox.clear()

        def send_hosts() -> None:
            if orphaned.is_set():
                return
            states = {h: st for h, st in fetcher.host_states().items() if reported.get(h) != st["requests"]}
            if states:
                reported.update((h, st["requests"]) for h, st in states.items())
                results.put(("hosts", (index, states)))

        async def reader() -> None:
            try:
                while True:
                    message = await loop.run_in_executor(getter, next_jobs)
                    if message is _ORPHANED:
                        abandon()
                        break
                    if message is None:
                        break
                    if isinstance(message, tuple) and message[0] == "adopt":  # ("adopt", host, state)
                        fetcher.host(message[1]).control.adopt(message[2], soft=True)
                        continue
                    if isinstance(message, tuple):  # ("release", host)
                        results.put(("returned", (message[1], sched.take_back(message[1]))))
                        continue
                    for job in message:
                        sched.put_nowait(
                            job, CACHE_QUEUE if len(job) == 4 else fetcher.host_key(job[1]) or ""
                        )
            finally:
                sched.close()

        async def worker() -> None:
            while (item := await sched.get()) is not None:
                job, host = item
                try:
                    if host == CACHE_QUEUE and cache is not None:
                        entry = await fetch_cached(
                            fetcher, loop, pool, store, options, cache, job[2], job[3], same
                        )
                    else:
                        entry = await fetch_one(fetcher, loop, pool, store, options, job[0], job[1], same)
                    outbox.append(entry)  # a dead link goes back to the caller, who deals its cache job
                finally:
                    sched.done(host)
                if len(outbox) >= _JOB_BATCH:
                    send()

        rated: set[str] = set()

        async def sender() -> None:
            last_hosts = time.monotonic()
            while not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), _SEND_EVERY)
                send()
                newly = fetcher.rated_hosts() - rated
                if newly:  # a host got a rate of its own: tell the caller now, so one worker takes it
                    rated.update(newly)
                    send_hosts()
                if time.monotonic() - last_hosts >= _HOSTS_EVERY:
                    last_hosts = time.monotonic()
                    if os.getppid() != parent_pid:  # the backlog may outlast the job queue's end
                        abandon()
                    send_hosts()

        try:
            async with fetcher, asyncio.TaskGroup() as group:
                flusher = group.create_task(sender())
                group.create_task(reader())
                await asyncio.gather(*[group.create_task(worker()) for _ in range(fetch.concurrency)])
                finished.set()
                await flusher
        finally:
            finished.set()
            send()  # entries of completed writes are never dropped
            send_hosts()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            getter.shutdown(wait=False, cancel_futures=True)

    try:
        with relaxed_gc():
            run_loop(main, event_loop)
    except BaseException as exc:
        try:
            results.put(("error", exc))
        except Exception:  # not picklable: send its text
            results.put(("error", WorkerFailed(f"{type(exc).__name__}: {exc}")))
        return
    if not orphaned.is_set():
        results.put(("done", store.retries))


@contextlib.contextmanager
def _main_module_hidden() -> Any:
    """Start workers without re-running the caller's ``__main__`` in them.

    The "spawn" start method normally imports the parent's main script (or ``-m`` module) in every
    child, so a script calling :func:`download_images` at top level, without an
    ``if __name__ == "__main__"`` guard, would start downloading again in each worker. The workers
    need nothing from ``__main__`` (their target and arguments live in this package), so the main
    module's ``__spec__``/``__file__`` are hidden while the processes start.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if main is not None and k in main.__dict__}
    with _START_LOCK:
        try:
            if main is not None:
                main.__dict__.pop("__file__", None)
                main.__dict__["__spec__"] = None
            yield
        finally:
            if main is not None:
                main.__dict__.pop("__spec__", None)
                main.__dict__.update(saved)


class Workers:
    """The worker processes of one run, started early so their start-up overlaps the caller's."""

    def __init__(
        self,
        store: ImageStore,
        options: ValidationOptions,
        config: Any,
        processes: int,
        *,
        host_states: dict[str, Any] | None = None,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._closed = False
        self.processes = processes
        self.job_queues = [ctx.Queue() for _ in range(processes)]
        self.results = ctx.Queue()
        fetch = worker_fetch_config(config.fetch, processes)
        self.fetch = config.fetch
        self.cache = config.cache
        self.host_states = dict(host_states or {})
        io_threads = resolve_io_threads(config.io_threads, store, processes)
        self.procs = [
            ctx.Process(
                target=_worker_main,
                args=(
                    store.storage,
                    options,
                    fetch,
                    io_threads,
                    config.store_retry_seconds,
                    config.event_loop,
                    self.job_queues[i],
                    self.results,
                    os.getpid(),
                    i,
                    self.host_states,
                    config.pending_jobs,
                    config.cache,
                    config.same_bytes,
                ),
                name=f"gbifdl-download-{i}",
                daemon=True,
            )
            for i in range(processes)
        ]
        with _main_module_hidden():
            for w in self.procs:
                w.start()

    def close(self, *, terminate: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self.procs:
            if terminate and w.is_alive():
                w.terminate()
        for q in self.job_queues:
            with contextlib.suppress(Exception):
                q.put(None)  # workers still waiting for jobs end cleanly
        for w in self.procs:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
                w.join(timeout=5)
        for q in (*self.job_queues, self.results):
            q.close()
            q.cancel_join_thread()


class _Dealer:
    """Which worker gets a job: its host's owner, or any (by content key) for a host spread out.

    Every host starts with one owner, so one controller learns its pace; a host that proves fast and
    clean (its owner's window is fully open, it has no rate of its own, and work is waiting for it)
    is spread over all workers; a spread host that throttles gets one owner again.
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.spread: set[str] = set()
        self.in_flight: Counter[str] = Counter()  # jobs dealt and not recorded, per host
        self._reported: dict[str, tuple[float, int]] = {}

    def pace(self, host: str, requests: int) -> float:
        """Requests/s its owner sent the host since its last report."""
        now = time.monotonic()
        then, before = self._reported.get(host, (now, requests))
        self._reported[host] = (now, requests)
        return (requests - before) / (now - then) if now > then else 0.0

    def owner(self, host: str) -> int | None:
        if host in self.spread:
            return None
        return 0 if host == CACHE_QUEUE else zlib.crc32(host.encode()) % self.processes

    def worker_for(self, content_key: str, host: str) -> int:
        owner = self.owner(host)
        return int(content_key[:8], 16) % self.processes if owner is None else owner


def _one_object(store: ImageStore, same: SameBytes, entry: dict[str, Any]) -> None:
    """Two workers stored the same bytes under two keys: point this entry at the first, drop its own.

    A worker knows only what it stored itself (.same_bytes); the caller, which sees every entry
    (and what the ledger stored before the run), keeps the first object. The second one was written by this run for this URL moments
    ago; deleting it takes nothing any ledger recorded.
    """
    key, content_key = entry["key"], entry.get("duplicate_of") or entry["content_key"]
    first = same.remember(entry["content_sha256"], key, content_key, entry["sha256"])
    if (
        first.key == key
        or first.content_key == entry["content_key"]
        or not first.same_object_bytes(entry["sha256"])
    ):
        return
    if not entry.get("duplicate_of"):  # the worker wrote this copy; it points at its own first otherwise
        try:
            store.storage.delete(key)
        except Exception as exc:  # a second copy left behind wastes space, misleads nobody
            log.warning("could not delete %s, a second copy of %s: %s", key, first.key, exc)
    entry["key"], entry["duplicate_of"] = first.key, first.content_key


class _Flusher:
    """Writes ledger segments in a thread, so the caller keeps dealing jobs and reading results.

    A segment write begins with a sync of the image store (syncfs on a local store), which can take
    a second or more on a busy disk; done in the dealing loop, it left the workers without new jobs
    for that long. One write at a time, in order; a failed write puts its entries back (in this
    thread) and raises here.
    """

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="gbifdl-ledger")
        self._pending: tuple[Any, list[dict[str, Any]]] | None = None

    def _settle(self, wait: bool) -> bool:
        """True when no write is in progress (raising the error of a failed one)."""
        if self._pending is None:
            return True
        future, rows = self._pending
        if not wait and not future.done():
            return False
        self._pending = None
        try:
            future.result()
        except BaseException:
            self.writer.restore(rows)
            raise
        return True

    def flush(self) -> None:
        if self._settle(wait=False):
            rows = self.writer.take()
            if rows:
                self._pending = (self._executor.submit(self.writer.write, rows), rows)

    def finish(self, *, raise_errors: bool = True) -> None:
        try:
            self._settle(wait=True)
        except BaseException:
            if raise_errors:
                raise
        finally:
            self._executor.shutdown(wait=True)


def run_pool(pool: Workers, jobs_iter: Any, run: Any) -> None:
    """Drive the workers over ``jobs_iter`` ((row, content_key, url) tuples) for ``run``.

    ``run`` is the download's ``_Run`` (ledger writer, counters, progress, host book); everything
    it does happens in this thread.
    """
    cfg = run.config
    processes = pool.processes
    job_queues, results, workers = pool.job_queues, pool.results, pool.procs
    max_inflight = cfg.pending_jobs
    dealer = _Dealer(processes)
    window = worker_fetch_config(pool.fetch, processes).per_host  # a worker's most requests per host
    rows_in_flight: dict[str, Any] = {}
    pending: list[list[tuple[str, str]]] = [[] for _ in range(processes)]
    releases = 0  # release requests whose answer ("returned") has not come back yet
    jobs = iter(jobs_iter)
    input_done = ends_sent = False
    finished = 0
    last_progress = time.monotonic()
    error: BaseException | None = None

    def deal(job: tuple[Any, ...], host: str) -> None:
        dealer.in_flight[host] += 1
        p = dealer.worker_for(job[0], host)
        pending[p].append(job)
        if len(pending[p]) >= _JOB_BATCH:
            job_queues[p].put(pending[p])
            pending[p] = []

    same: SameBytes | None = run.same

    def record(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            ck = entry["content_key"]
            if same is not None and entry.get("status") == "ok" and entry.get("content_sha256"):
                _one_object(run.store, same, entry)
            dealer.in_flight[CACHE_QUEUE if entry.get("source") else host_key_of(entry["url"] or "")] -= 1
            if entry.pop("dead_link", False) and pool.cache is not None and not ends_sent:
                gbif_id = gbif_id_of(rows_in_flight.get(ck) or {})
                if gbif_id is not None:  # one worker asks GBIF's image cache, one request at a time
                    deal((ck, entry["url"], gbif_id, entry), CACHE_QUEUE)
                    continue
            if entry.get("stored"):
                run.store.mark_dirty()  # the workers wrote: sync before the ledger claims it
            run.record(entry, rows_in_flight.pop(ck, None))

    background = _Flusher(run.writer)
    try:
        while finished < processes:
            # deal jobs while there is room in flight
            while not input_done and len(rows_in_flight) < max_inflight:
                job = next(jobs, None)
                if job is None:
                    input_done = True
                    break
                row, ck, url = job
                rows_in_flight[ck] = row
                deal((ck, url), host_key_of(url))
            for p in range(processes):
                if pending[p]:
                    job_queues[p].put(pending[p])
                    pending[p] = []
            if input_done and not ends_sent and releases == 0 and not rows_in_flight:
                for q in job_queues:
                    q.put(None)
                ends_sent = True
            # collect results
            try:
                kind, payload = results.get(timeout=0.05)
            except queue_mod.Empty:
                dead = [w for w in workers if not w.is_alive() and w.exitcode not in (0, None)]
                if dead:
                    raise WorkerFailed(
                        f"download worker {dead[0].name} died (exit code {dead[0].exitcode})"
                    ) from None
            else:
                if kind == "entries":
                    record(payload)
                elif kind == "hosts":
                    index, states = payload
                    # a host one worker owns is reported by that worker only (the others' last
                    # words about it are about their share, from before)
                    states = {h: s for h, s in states.items() if dealer.owner(h) in (None, index)}
                    run.hosts.update(index, states)
                    for host, state in states.items():
                        if ends_sent:
                            break
                        if host in dealer.spread and state.get("rate") is not None:
                            dealer.spread.discard(host)  # it throttles: one worker paces it again
                            owner = dealer.worker_for("0", host)
                            shared = run.hosts.merged().get(host)
                            if shared:  # what the workers learned together, the owner goes on from
                                job_queues[owner].put(("adopt", host, shared))
                            run.hosts.keep_only(host, owner)
                            for q, job_queue in enumerate(job_queues):
                                if q != owner:
                                    job_queue.put(("release", host))
                                    releases += 1
                        elif (
                            processes > 1
                            and host not in dealer.spread
                            and state.get("rate") is None
                            and not state.get("skipped")
                            and (state.get("concurrency") or 0) >= window
                            and dealer.in_flight[host] > 4 * window
                            and dealer.pace(host, state.get("requests") or 0) >= _SPREAD_RATE
                        ):
                            dealer.spread.add(host)  # fast and clean, with work waiting: all workers
                            job_queues[index].put(("release", host))  # its backlog is dealt again
                            releases += 1
                elif kind == "returned":
                    releases -= 1
                    for job in payload[1]:
                        host = CACHE_QUEUE if len(job) == 4 else host_key_of(job[1])
                        dealer.in_flight[host] -= 1  # dealt again below
                        deal(job, host)
                elif kind == "done":
                    finished += 1
                    run.store.retries += payload
                elif kind == "error":
                    raise payload
            if run.writer.due():
                background.flush()
            run.hosts.maybe_save()
            now = time.monotonic()
            if run.progress_cb is not None and now - last_progress >= cfg.progress_interval:
                last_progress = now
                run.progress_cb(run.snapshot())
    except BaseException as exc:
        error = exc
        raise
    finally:
        if error is not None:
            for w in workers:
                if w.is_alive():
                    w.terminate()
            # keep the entries that arrived before the workers stopped
            with contextlib.suppress(Exception):
                while True:
                    kind, payload = results.get(timeout=0.2)
                    if kind == "entries":
                        record(payload)
        else:
            with contextlib.suppress(Exception):  # the last host reports, sent just before "done"
                while True:
                    kind, payload = results.get_nowait()
                    if kind == "hosts":
                        run.hosts.update(*payload)
        pool.close()
        try:
            background.finish(raise_errors=error is None)
            run.writer.flush()
        except StorageUnavailable:
            if error is None:
                raise
            log.error("could not write the last ledger entries after %s", error)
