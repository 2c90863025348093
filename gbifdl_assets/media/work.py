"""The work on one image, shared by the in-process downloader and the worker processes.

Kept free of pyarrow and of the ledger, so a spawned worker (:mod:`.pool`) starts in ~0.2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gbifdl_assets.media.fetch import Fetcher, FetchResult
from gbifdl_assets.media.same_bytes import SameBytes
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.media.validate import InvalidImage, ValidationOptions, validate_image
from gbifdl_assets.storage import StorageUnavailable

__all__ = [
    "DEAD_LINK_REASONS",
    "entry",
    "fetch_one",
    "now_ms",
    "relaxed_gc",
    "resolve_io_threads",
    "run_loop",
    "store_body",
]

#: failures that say the link is dead (not that the image is bad or the host busy): GBIF's image
#: cache may still have the image (see .image_cache)
DEAD_LINK_REASONS = frozenset({"http_404", "http_410", "dns_error", "connection_error"})


@contextlib.contextmanager
def relaxed_gc(threshold: int = 50_000) -> Iterator[None]:
    """Run the cyclic garbage collector ~70x less often while downloading (restored afterwards).

    Every request allocates short-lived container objects (tasks, futures, results, ledger entries),
    so the default generation-0 threshold (700) ran a collection every few requests: ~3% of the CPU
    in a profile. Almost nothing here forms reference cycles, and reference counting frees the rest
    at once.
    """
    old = gc.get_threshold()
    gc.set_threshold(threshold, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def resolve_io_threads(io_threads: int | None, store: ImageStore, processes: int) -> int:
    """Threads for validation and storage writes in each of ``processes`` downloader processes.

    0 means inline: each image is validated and written in the event loop's thread. ``None`` picks:

    * S3: 32 threads in all (writes wait on the network);
    * a local store written by several processes (one per core): inline. Measured with strace on
      2,000 images: the hand-off to 4-8 threads cost ~43 futex calls per image (GIL and queue
      wake-ups) against none inline, and the loop is blocked only ~0.1 ms per image (Pillow's
      reduced decode and one small write), during which its sockets simply wait;
    * a local store written by one process: 8 threads, so decoding can use a second core.
    """
    if io_threads is None:
        if not store.is_local:
            io_threads = 32
        elif processes > 1:
            io_threads = 0
        else:
            io_threads = 8
    if io_threads == 0:
        return 0
    return max(1, -(-io_threads // processes))


def now_ms() -> int:
    return int(time.time() * 1000)


def entry(content_key: str, url: str | None, started_ms: int, **fields: Any) -> dict[str, Any]:
    entry = {
        "content_key": content_key,
        "url": url,
        "stored": False,
        "started_at": started_ms,
        "finished_at": now_ms(),
    }
    entry.update(fields)
    return entry


def store_body(
    store: ImageStore,
    options: ValidationOptions,
    result: FetchResult,
    content_key: str,
    started_ms: int,
    same: SameBytes | None = None,
) -> dict[str, Any]:
    """Validate a fetched body and store it (runs in the thread pool).

    With ``same`` (see .same_bytes), a body already stored under another image's key is not stored
    again: the entry points at that object (``duplicate_of``).
    """
    assert result.body is not None
    body_sha = hashlib.sha256(result.body).hexdigest()
    first = same.claim(body_sha) if same is not None else None
    claimed = same is not None and first is None
    if first is not None and first.content_key == content_key:
        first = None  # our own earlier copy (being fetched again because its object is gone)
    stored: str | None = None
    try:
        try:
            image = validate_image(result.body, result.content_type, options)
        except InvalidImage as exc:
            return entry(
                content_key,
                result.url,
                started_ms,
                status="failed",
                reason=exc.reason,
                http_status=result.http_status,
                attempts=result.attempts,
                error=str(exc),
                bytes=len(result.body),
                content_sha256=body_sha,
            )
        facts = {
            "bytes": len(image.data),
            "width": image.width,
            "height": image.height,
            "sha256": image.sha256,
            "format": image.format,
            "content_type": image.content_type,
            "http_status": result.http_status,
            "attempts": result.attempts,
            "content_sha256": body_sha,
            "phash": image.phash,
        }
        if first is not None and first.same_object_bytes(image.sha256):
            return entry(
                content_key,
                result.url,
                started_ms,
                status="ok",
                stored=True,
                key=first.key,
                duplicate_of=first.content_key,
                **facts,
            )
        key = ImageStore.image_key(content_key, options.variant, image.ext)
        store.put(key, image.data)  # StorageUnavailable propagates: the run stops
        stored = key
        return entry(content_key, result.url, started_ms, status="ok", stored=True, key=key, **facts)
    finally:
        if claimed:
            same.publish(body_sha, stored, content_key, facts["sha256"] if stored else "")  # type: ignore[union-attr]


async def fetch_one(
    fetcher: Fetcher,
    loop: asyncio.AbstractEventLoop,
    pool: ThreadPoolExecutor | None,
    store: ImageStore,
    options: ValidationOptions,
    content_key: str,
    url: str,
    same: SameBytes | None = None,
) -> dict[str, Any]:
    """Fetch, validate and store one image; its ledger entry (shared by the in-process and pool paths)."""
    started_ms = now_ms()
    result = await fetcher.fetch(url)
    if result.ok:
        if pool is None:  # inline: see DownloadConfig.io_threads
            return store_body(store, options, result, content_key, started_ms, same)
        return await loop.run_in_executor(
            pool, store_body, store, options, result, content_key, started_ms, same
        )
    failed = entry(
        content_key,
        url,
        started_ms,
        status="opted_out" if result.opted_out else "failed",
        reason=result.reason,
        http_status=result.http_status,
        attempts=result.attempts,
        error=result.error,
    )
    if result.reason in DEAD_LINK_REASONS or (
        result.reason == "host_skipped" and result.cause in DEAD_LINK_REASONS
    ):
        failed["dead_link"] = True  # not a ledger column: the caller may try GBIF's image cache
    return failed


def run_loop(main: Callable[[], Any], event_loop: str) -> None:
    factory = None
    if event_loop in ("auto", "uvloop"):
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            if event_loop == "uvloop":
                raise
    elif event_loop != "asyncio":
        raise ValueError(f"event_loop={event_loop!r}: use 'auto', 'uvloop' or 'asyncio'")

    def run() -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            try:
                runner.run(main())
            except BaseExceptionGroup as group:
                raise _first(group) from None

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run()
        return
    # Called from inside an event loop (a notebook, an async framework): run in a helper thread.
    error: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="gbifdl-download")
    thread.start()
    thread.join()
    if error:
        raise error[0]


def _first(group: BaseExceptionGroup) -> BaseException:
    """The most telling exception of a TaskGroup failure (storage problems first)."""
    flat: list[BaseException] = []

    def walk(g: BaseExceptionGroup) -> None:
        for exc in g.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                flat.append(exc)

    walk(group)
    for exc in flat:
        if isinstance(exc, StorageUnavailable):
            return exc
    return flat[0]
