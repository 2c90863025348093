"""The gallery page: a training set's stored images per class, each one click away from a flag.

``/ui/gallery`` (``static/gallery.html`` + ``gallery.js``) lists the training sets that have a
manifest in the data storage the service was started with (``gbifdl annotations serve --data``),
shows the images of one class as thumbnails (the stored copies, served by the service itself: the
page never loads a third-party URL) and writes flags through the REST API (``POST /image-flag``) with
the user's Basic credentials, like the map page writes rules.

Helper endpoints (not part of GBIF's API; keys only through :mod:`gbifdl_assets.storage.layout`):

* ``GET /ui/api/gallery``: the training sets with a manifest;
* ``GET /ui/api/gallery/{ts}?label=&limit=&offset=``: the newest manifest's classes and one page of
  images of a class, each with its stored copy (from the training set's ledgers) and live flags;
* ``GET /ui/api/gallery/{ts}/image/{content_key}``: a stored image's bytes (image types only).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gbifdl_assets.annotations.service.http import ApiError, error_response, json_response
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.media.ledger import list_ledgers, load_ledger
from gbifdl_assets.storage import Storage, layout

__all__ = ["Gallery", "gallery_routes"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}
_LEDGER_COLUMNS = ["url", "stored", "key", "content_type", "content_sha256", "width", "height"]
MAX_PAGE = 500


class Gallery:
    """A training set's manifest and ledgers in the data storage, cached for ``ttl`` seconds."""

    def __init__(self, storage: Storage | None, store: AnnotationStore, ttl: float = 10.0) -> None:
        self.storage = storage
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[float, str, pa.Table, pa.Table]] = {}
        self._lock = threading.Lock()

    def _storage(self) -> Storage:
        if self.storage is None:
            raise ApiError(
                404,
                "this service was started without a data storage: restart it with "
                "gbifdl annotations serve --data <folder or s3://bucket/prefix> (or set GBIFDL_DATA_URI)",
            )
        return self.storage

    def training_sets(self) -> list[str]:
        storage = self._storage()
        prefix = layout.MANIFESTS_PREFIX + "/"
        names = {key[len(prefix) :].split("/", 1)[0] for key in storage.list(prefix)}
        return sorted(n for n in names if n and self._manifest_id(storage, n) is not None)

    @staticmethod
    def _manifest_id(storage: Storage, training_set: str) -> str | None:
        try:
            folder = layout.manifests(layout.check_training_set(training_set))
        except ValueError:
            return None
        return layout.newest_complete(storage, folder)

    def _load(self, training_set: str) -> tuple[str, pa.Table, pa.Table]:
        """(manifest id, manifest, ledger of its stored images)."""
        storage = self._storage()
        manifest_id = self._manifest_id(storage, training_set)
        if manifest_id is None:
            raise ApiError(404, f"training set {training_set[:100]!r} has no manifest in this data storage")
        with self._lock:
            cached = self._cache.get(training_set)
        if cached and cached[1] == manifest_id and time.monotonic() - cached[0] < self.ttl:
            return cached[1], cached[2], cached[3]
        manifest = storage.read_parquet(layout.manifests(training_set).commit_key(manifest_id))
        prefix = f"{training_set}.shard"
        ledgers = [
            load_ledger(storage, name, columns=_LEDGER_COLUMNS)
            for name in list_ledgers(storage)
            if name.startswith(prefix)
        ]
        ledgers = [t for t in ledgers if t.num_rows]
        ledger = pa.concat_tables(ledgers) if ledgers else None
        if ledger is not None:
            ledger = ledger.filter(pc.fill_null(ledger.column("stored"), False))
        else:
            ledger = pa.table({"content_key": pa.array([], pa.string())})
        with self._lock:
            self._cache[training_set] = (time.monotonic(), manifest_id, manifest, ledger)
        return manifest_id, manifest, ledger

    def page(self, training_set: str, label: int | None, limit: int, offset: int) -> dict[str, Any]:
        manifest_id, manifest, ledger = self._load(training_set)
        counts = manifest.group_by(["label", "label_name"]).aggregate([("url", "count")]).to_pylist()
        classes = sorted(
            ({"label": r["label"], "name": r["label_name"], "images": r["url_count"]} for r in counts),
            key=lambda c: (c["name"] or "", c["label"]),
        )
        if label is None and classes:
            label = classes[0]["label"]
        rows = manifest.filter(pc.equal(manifest.column("label"), label)) if label is not None else manifest
        total = rows.num_rows
        rows = rows.slice(offset, limit).to_pylist()
        stored = {}
        if ledger.num_rows:
            keys = pa.array([r["content_key"] for r in rows], pa.string())
            hits = ledger.filter(pc.is_in(ledger.column("content_key"), keys)).to_pylist()
            stored = {h["content_key"]: h for h in hits}
        flags = self._flags()
        images = []
        for r in rows:
            entry = stored.get(r["content_key"]) or {}
            sha = entry.get("content_sha256")
            mine = flags.get(("url", r["url"]), []) + (flags.get(("sha", sha), []) if sha else [])
            images.append(
                {
                    "gbifID": r["gbifID"],
                    "url": r["url"],
                    "label": r["label"],
                    "labelName": r["label_name"],
                    "split": r["split"],
                    "license": r["license"],
                    "creator": r["creator"],
                    "contentKey": r["content_key"],
                    "contentSha256": sha,
                    "thumbnail": (
                        f"/ui/api/gallery/{training_set}/image/{r['content_key']}" if entry else None
                    ),
                    "flags": sorted({(f["flag_id"], f["flag"]) for f in mine}),
                }
            )
        return {
            "trainingSet": training_set,
            "manifestId": manifest_id,
            "classes": classes,
            "label": label,
            "total": total,
            "offset": offset,
            "images": [{**i, "flags": [{"id": fid, "flag": f} for fid, f in i["flags"]]} for i in images],
        }

    def _flags(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for f in self.store.compile_flags().to_pylist():
            out.setdefault(("url", f["media_identifier"]), []).append(f)
            if f["content_sha256"]:
                out.setdefault(("sha", f["content_sha256"]), []).append(f)
        return out

    def image(self, training_set: str, content_key: str) -> tuple[bytes, str]:
        if not _HEX64.match(content_key):
            raise ApiError(400, "the image key must be 64 lowercase hex digits (a manifest's content_key)")
        _, _, ledger = self._load(training_set)
        if not ledger.num_rows:
            raise ApiError(404, f"no stored image {content_key} in training set {training_set[:100]!r}")
        hits = ledger.filter(pc.equal(ledger.column("content_key"), content_key)).to_pylist()
        key = hits[-1]["key"] if hits else None
        if not key or not key.startswith("images/"):
            raise ApiError(404, f"no stored image {content_key} in training set {training_set[:100]!r}")
        kind = (hits[-1]["content_type"] or "").split(";")[0].strip().lower()
        return self._storage().read_bytes(key), kind if kind in _IMAGE_TYPES else "application/octet-stream"


def _int(request: Request, name: str, default: int | None, maximum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,18}", raw) or int(raw) > maximum:
        raise ApiError(400, f"{name}={raw[:30]!r} is not a whole number from 0 to {maximum:,}")
    return int(raw)


def gallery_routes(gallery: Gallery, static_dir: Any) -> list[Route]:
    async def page(request: Request) -> Response:
        return FileResponse(static_dir / "gallery.html", headers={"Cache-Control": "no-cache"})

    async def sets(request: Request) -> Response:
        try:
            return json_response(await run_in_threadpool(gallery.training_sets))
        except ApiError as exc:
            return error_response(exc)

    async def images(request: Request) -> Response:
        try:
            label = _int(request, "label", None, 2**63 - 1)
            limit = _int(request, "limit", 60, MAX_PAGE) or 0
            offset = _int(request, "offset", 0, 2**63 - 1) or 0
            found = await run_in_threadpool(gallery.page, request.path_params["ts"], label, limit, offset)
        except ApiError as exc:
            return error_response(exc)
        return json_response(found)

    async def image(request: Request) -> Response:
        try:
            data, kind = await run_in_threadpool(
                gallery.image, request.path_params["ts"], request.path_params["key"]
            )
        except ApiError as exc:
            return error_response(exc)
        return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})

    return [
        Route("/ui/gallery", page, methods=["GET"]),
        Route("/ui/api/gallery", sets, methods=["GET"]),
        Route("/ui/api/gallery/{ts}", images, methods=["GET"]),
        Route("/ui/api/gallery/{ts}/image/{key}", image, methods=["GET"]),
    ]
