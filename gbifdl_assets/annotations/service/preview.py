"""The rule preview over HTTP: ``POST …/rule/preview``, the training sets it looks at, sample thumbnails.

* ``POST {API_PREFIX}/rule/preview`` (and under ``/v1``): a rule body as ``POST /rule`` takes it (``annotation``
  optional), plus ``trainingSets`` (default: the newest snapshot of every training set in the data
  storage) and ``samples`` (default 12). Answers what the rule would flag (:mod:`..preview`): totals, per
  training set, by dataset and basisOfRecord, and sample images. No login (it changes nothing, like
  ``GET /rule``), but it is a POST with a JSON body, so the same-origin and JSON rules of writes hold
  (:mod:`.csrf`: another site's page cannot make a browser run previews), and it is bounded: GBIF's
  geometry limits as on rule creation, the body-size limit, at most ``max_concurrent`` previews at once
  and ``max_waiting`` queued (then 503 with Retry-After).
* ``GET /ui/api/preview/training-sets``: the training sets with a committed snapshot (name, snapshot id,
  rows); it also starts loading their columns in the background, so the page's first preview is warm.
* ``GET /ui/api/preview/thumbnail/{token}``: a small JPEG of a sample image. The page's
  Content-Security-Policy allows images from this origin only, so the service fetches the image itself,
  but only URLs a preview listed (the token is the hash of such a URL; never a URL a client names), with
  the image downloader's address guard (:mod:`gbifdl_assets.media.ssrf`: public addresses only, plus the
  offline sandbox's own origin), its size and time bounds and robots.txt, and Pillow's pixel limit.

Snapshots are found with the storage layout's commit rule (:func:`~gbifdl_assets.occurrences.snapshots.latest_snapshots`,
remembered for a few seconds so drawing does not list the storage on every change) and their columns are
kept in a bounded in-process cache (:class:`~gbifdl_assets.annotations.preview.SnapshotCache`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gbifdl_assets.annotations.preview import (
    LoadedSnapshot,
    PreviewError,
    PreviewRequest,
    SnapshotCache,
    parse_preview_request,
    preview_rule,
)
from gbifdl_assets.annotations.service.api import check_body_types
from gbifdl_assets.annotations.service.http import ApiError, error_response, json_response, read_json_object
from gbifdl_assets.occurrences.snapshots import SnapshotInfo, latest_snapshots
from gbifdl_assets.storage import Storage, StorageError

__all__ = ["DEFAULT_PREVIEW_CACHE_BYTES", "PreviewService"]

log = logging.getLogger(__name__)
DEFAULT_PREVIEW_CACHE_BYTES = 2 << 30
#: how long the list of newest snapshots is reused (drawing sends a preview every few hundred ms)
SNAPSHOT_LIST_SECONDS = 5.0
THUMBNAIL_PIXELS = 240
MAX_THUMBNAIL_SOURCE_BYTES = 15_000_000
MAX_SOURCE_PIXELS = 60_000_000
MAX_TOKENS = 20_000
MAX_THUMBNAILS = 500


class PreviewService:
    """The preview endpoints on one data storage (None: the service was started without one)."""

    def __init__(
        self,
        storage: Storage | None,
        *,
        cache_bytes: int = DEFAULT_PREVIEW_CACHE_BYTES,
        max_concurrent: int = 2,
        max_waiting: int = 8,
        media_loopback_origins: tuple[str, ...] = (),
    ) -> None:
        self.storage = storage
        self.cache = SnapshotCache(cache_bytes)
        self.max_waiting = max_waiting
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self._listed: dict[tuple[str, ...] | None, tuple[float, list[SnapshotInfo]]] = {}
        self._list_lock = threading.Lock()
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()
        self._token_lock = threading.Lock()
        self._thumb_slots = asyncio.Semaphore(4)
        self._warmer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-warm")
        self.media_loopback_origins = tuple(media_loopback_origins)

    # ------------------------------------------------------------------ snapshots
    def _no_storage(self) -> ApiError:
        return ApiError(
            503,
            "this annotation service has no data storage to preview rules on: start it with "
            "'gbifdl annotations serve --data <folder or s3://bucket/prefix>' (or set GBIFDL_DATA_URI)",
        )

    def snapshots(self, names: tuple[str, ...] | None) -> list[SnapshotInfo]:
        """The newest snapshot of each named training set (None: all), remembered for a few seconds."""
        if self.storage is None:
            raise self._no_storage()
        now = time.monotonic()
        with self._list_lock:
            cached = self._listed.get(names)
            if cached and now - cached[0] < SNAPSHOT_LIST_SECONDS:
                return cached[1]
        try:
            found = latest_snapshots(self.storage, names)
        except (StorageError, OSError) as exc:
            log.warning("rule preview: the data storage %s failed: %s", self.storage.uri, exc)
            raise ApiError(
                503, f"the data storage {self.storage.uri} does not answer; try again later"
            ) from None
        if names is not None:
            missing = sorted(set(names) - {s.training_set for s in found})
            if missing:
                known = [s.training_set for s in self.snapshots(None)]
                raise ApiError(
                    400,
                    f"trainingSets: {', '.join(missing)} has no committed snapshot in the data storage; "
                    f"use {', '.join(known[:20]) or 'a training set with a snapshot (none has one yet)'}",
                )
        with self._list_lock:
            if len(self._listed) > 100:
                self._listed.clear()
            self._listed[names] = (now, found)
        return found

    def load(self, info: SnapshotInfo) -> LoadedSnapshot:
        assert self.storage is not None
        try:
            return self.cache.get(self.storage, info)
        except (StorageError, OSError) as exc:
            log.warning(
                "rule preview: reading snapshot %s/%s failed: %s", info.training_set, info.snapshot_id, exc
            )
            raise ApiError(
                503,
                f"the snapshot of {info.training_set} could not be read from the data storage; try again later",
            ) from None

    def warm(self) -> None:
        """Load every newest snapshot's columns in the background (one at a time)."""
        try:
            infos = self.snapshots(None)
        except ApiError:
            return
        for info in infos:
            self._warmer.submit(self._warm_one, info)

    def _warm_one(self, info: SnapshotInfo) -> None:
        try:
            self.load(info)
        except Exception as exc:  # noqa: BLE001 - a warm-up failure shows again, with its answer, on use
            log.info("rule preview: warming %s failed: %s", info.training_set, exc)

    # ------------------------------------------------------------------ preview
    def run(self, request: PreviewRequest) -> dict[str, Any]:
        infos = self.snapshots(request.training_sets)
        try:
            answer = preview_rule(request, [self.load(info) for info in infos])
        except ValueError as exc:  # the rule model accepted it, so this is a snapshot the engine cannot read
            raise ApiError(400, f"the rule cannot be previewed: {exc}") from None
        for sample in answer["samples"]:
            url = sample.get("identifier")
            sample["thumbnail"] = self._thumbnail_path(url) if isinstance(url, str) and url else None
        if not infos:
            answer["message"] = (
                "no training set has a committed snapshot yet: materialize occurrence_snapshot first"
            )
        return answer

    def _thumbnail_path(self, url: str) -> str:
        token = hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:32]
        with self._token_lock:
            self._tokens[token] = url
            self._tokens.move_to_end(token)
            while len(self._tokens) > MAX_TOKENS:
                self._tokens.popitem(last=False)
        return f"/ui/api/preview/thumbnail/{token}"

    async def preview(self, request: Request) -> Response:
        try:
            if self.storage is None:
                raise self._no_storage()
            body = await read_json_object(request, "rule to preview")
            check_body_types(body, "RuleInput")
            try:
                parsed = parse_preview_request(body)
            except PreviewError as exc:
                raise ApiError(400, str(exc)) from None
            if self._waiting >= self.max_waiting:
                raise ApiError(503, "too many previews at once; try again in a moment", {"Retry-After": "1"})
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            try:
                answer = await run_in_threadpool(self.run, parsed)
            finally:
                self._slots.release()
        except ApiError as exc:
            return error_response(exc)
        return json_response(answer)

    async def training_sets(self, request: Request) -> Response:
        try:
            infos = await run_in_threadpool(self.snapshots, None)
        except ApiError as exc:
            return error_response(exc)
        self.warm()
        return json_response(
            [
                {
                    "trainingSet": i.training_set,
                    "snapshotId": i.snapshot_id,
                    "rows": i.counts.get("media"),
                    "created": i.created or None,
                }
                for i in infos
            ]  # fmt: skip
        )

    # ------------------------------------------------------------------ thumbnails
    async def thumbnail(self, request: Request) -> Response:
        token = request.path_params["token"]
        with self._token_lock:
            url = self._tokens.get(token)
            cached = self._thumbs.get(token)
        if url is None:
            return error_response(ApiError(404, "no such preview image: preview the rule again for new ones"))
        if cached is None:
            async with self._thumb_slots:
                try:
                    body = await self._fetch(url)
                    cached = await run_in_threadpool(_thumbnail_jpeg, body)
                except ApiError as exc:
                    return error_response(exc)
            with self._token_lock:
                self._thumbs[token] = cached
                while len(self._thumbs) > MAX_THUMBNAILS:
                    self._thumbs.popitem(last=False)
        return Response(cached, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def _fetch(self, url: str) -> bytes:
        from gbifdl_assets.media.fetch import Fetcher
        from gbifdl_assets.media.fetch_config import FetchConfig

        config = FetchConfig(
            concurrency=1, per_host=1, connect_timeout=5.0, read_timeout=8.0, deadline=12.0, max_attempts=1,
            max_bytes=MAX_THUMBNAIL_SOURCE_BYTES, loopback_origins=self.media_loopback_origins,
        )  # fmt: skip
        async with Fetcher(config) as fetcher:
            result = await fetcher.fetch(url)
        if not result.ok or not result.body:
            log.info("preview thumbnail %s: %s %s", url[:200], result.reason, result.error)
            raise ApiError(502, f"the image host did not give the image ({result.reason or 'no body'})")
        return result.body

    def routes(self, prefixes: tuple[str, ...]) -> list[Route]:
        out = [
            Route(p + "/rule/preview", self.preview, methods=["POST"], name=f"{p}:preview") for p in prefixes
        ]
        out.append(Route("/ui/api/preview/training-sets", self.training_sets, methods=["GET"]))
        out.append(Route("/ui/api/preview/thumbnail/{token:str}", self.thumbnail, methods=["GET"]))
        return out


def _thumbnail_jpeg(body: bytes) -> bytes:
    """A JPEG at most :data:`THUMBNAIL_PIXELS` on a side; ApiError 502 for bytes that are no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as image:
            if image.width * image.height > MAX_SOURCE_PIXELS:
                raise ApiError(
                    502, f"the image is too large to preview ({image.width}x{image.height} pixels)"
                )
            image.draft("RGB", (THUMBNAIL_PIXELS * 2, THUMBNAIL_PIXELS * 2))
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            out = io.BytesIO()
            small.save(out, "JPEG", quality=80)
            return out.getvalue()
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ApiError(502, "the image host answered with something that is not a readable image") from None
