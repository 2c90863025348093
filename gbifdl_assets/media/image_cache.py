"""Dead links recovered from GBIF's image cache.

Media links rot: museum servers move, photo sites close, hosts stop resolving. GBIF keeps a cached
copy of occurrence images (Thumbor; at most 1200x1200, JPEG quality at most 85) at::

    {GBIF API}/image/cache/occurrence/{gbifID}/media/{md5 hex of the media identifier}

So an image whose own URL answers 404 or 410, whose host name does not resolve, or whose host
refuses connections (also when the host was skipped for it) is fetched from there instead: through
the same fetcher (one connection to GBIF, as GBIF asks of scripted use: the cache host's window
is fixed at 1), validated like any image and stored under the image's own content key. The ledger
records ``source`` ``gbif_image_cache`` and the URL fetched (``fetched_from``); its ``url`` stays
the original, and the credits keep naming the original creator, licence and URL (they come from
the manifest). When the cache fails too (it has no copy, answers an error page, is down), the image
keeps its original reason (``http_404``…) and the error says what the cache answered.

Only rows that carry their occurrence's ``gbifID`` can be recovered. ``DownloadConfig.image_cache``
switches the fallback off; ``gbif_api_url`` points it at another GBIF (the offline sandbox).
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gbifdl_assets.media.fetch import Fetcher
from gbifdl_assets.media.hosts import HostControl, HostGate, HostLimits, host_key_of
from gbifdl_assets.media.same_bytes import SameBytes
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.media.validate import ValidationOptions
from gbifdl_assets.media.work import entry, now_ms, store_body

__all__ = ["CACHE_QUEUE", "GBIF_API_URL", "ImageCache", "cache_gate", "fetch_cached", "gbif_id_of"]

GBIF_API_URL = "https://api.gbif.org/v1"
SOURCE = "gbif_image_cache"
#: the scheduler queue of cache jobs (not a host name): one job at a time, so one connection to
#: GBIF, whatever else the API's host serves (the offline sandbox serves its media there too)
CACHE_QUEUE = " gbif-image-cache"


def gbif_id_of(row: Any) -> int | None:
    """The row's occurrence key (``gbifID``), or None when it has none."""
    value = row.get("gbifID") if hasattr(row, "get") else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    text = str(value).strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def cache_gate() -> HostGate:
    """The gate of the cache queue: one request in flight, no rate of its own (the host's applies)."""
    return HostGate(
        HostControl(CACHE_QUEUE, HostLimits(max_concurrency=1, start_concurrency=1, skip_after=0))
    )


@dataclass(frozen=True)
class ImageCache:
    """Where GBIF's image cache is (``{api_url}/image/cache/…``)."""

    api_url: str = GBIF_API_URL

    def url_for(self, gbif_id: int, identifier: str) -> str:
        digest = hashlib.md5(identifier.encode("utf-8"), usedforsecurity=False).hexdigest()
        return f"{self.api_url.rstrip('/')}/image/cache/occurrence/{gbif_id}/media/{digest}"

    @property
    def host_key(self) -> str:
        return host_key_of(self.api_url)


async def fetch_cached(
    fetcher: Fetcher,
    loop: asyncio.AbstractEventLoop,
    pool: ThreadPoolExecutor | None,
    store: ImageStore,
    options: ValidationOptions,
    cache: ImageCache,
    gbif_id: int,
    origin: dict[str, Any],
    same: SameBytes | None = None,
) -> dict[str, Any]:
    """The ledger entry of an image whose own link is dead (``origin``): GBIF's cached copy, or why not."""
    content_key, url = origin["content_key"], origin["url"]
    started_ms = origin.get("started_at") or now_ms()
    cache_url = cache.url_for(gbif_id, url)
    result = await fetcher.fetch(cache_url, robots=False)  # GBIF offers the copy; no robots.txt to ask
    if result.ok:
        result.url = url  # the entry names the image, not where its bytes came from
        if pool is None:
            stored = store_body(store, options, result, content_key, started_ms, same)
        else:
            stored = await loop.run_in_executor(
                pool, store_body, store, options, result, content_key, started_ms, same
            )
        stored.update(source=SOURCE, fetched_from=cache_url)
        if stored["status"] == "ok":
            stored["error"] = f"{origin.get('error')}: stored GBIF's cached copy"
            return stored
        why = f"{stored['reason']} ({stored.get('error')})"
    else:
        why = f"{result.reason} ({result.error})"
    return entry(
        content_key,
        url,
        started_ms,
        status="failed",
        reason=origin.get("reason"),
        http_status=origin.get("http_status"),
        attempts=(origin.get("attempts") or 0) + result.attempts,
        error=f"{origin.get('error')}; GBIF's image cache has no usable copy either: {why}",
        source=SOURCE,
        fetched_from=cache_url,
    )
