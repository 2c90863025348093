"""The Starlette application: GBIF API under /v1 (and /v2/species/match), media, archives, controls.

Handlers that do numpy work are plain functions, which Starlette runs in its thread pool, so a long
facet or archive request never blocks the event loop that serves media and status polls.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import re
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .annotations_api import annotation_routes
from .config import SandboxConfig
from .downloads import DownloadService, TooManyDownloads, iso
from .duplicates import duplicate_groups
from .faults import FaultState, body_429
from .filters import BadRequest
from .hosts import MediaHostMiddleware, MediaSites
from .media import ERROR_HTML, FAULTS, cache_copy, cached_item, hidden_fault, media_body
from .records import render_record
from .registry_api import registry_routes
from .search import SearchIndex, parse_query
from .species_api import match_v1, match_v2, name_usage, search_usage, species_search
from .taxonomy import NAMED_SPECIES
from .verbatim import verbatim_terms
from .world import World, get_world, media_items

log = logging.getLogger(__name__)


class SandboxState:
    """Everything one sandbox app instance serves from."""

    def __init__(self, config: SandboxConfig) -> None:
        config.validate()
        self.config = config
        self.world: World = get_world(config.seed, config.occurrences, config.species)
        self.index = SearchIndex(self.world)
        self.downloads = DownloadService(self.world, config)
        self.faults = FaultState(config)
        self._flaky: dict[str, int] = {}
        #: requests and 429s per media host (see .hosts)
        self.media_host_counts: dict[str, dict[str, int]] = {}
        self._flaky_lock = threading.Lock()

    def forget_flaky(self) -> None:
        """Every ``flaky`` media URL fails its next request again (a fresh start for a measurement)."""
        with self._flaky_lock:
            self._flaky.clear()

    def flaky_hit(self, url_id: str) -> int:
        with self._flaky_lock:
            n = self._flaky.get(url_id, 0) + 1
            self._flaky[url_id] = n
            return n


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _media_base(request: Request) -> str:
    cfg = _state(request).config
    base = (cfg.media_base_url or _base(request)).rstrip("/")
    if cfg.media_hosts:  # identifiers spread over the media hosts, on the port we listen on
        port = request.url.port or (request.scope.get("server") or ("", 80))[1]
        return MediaSites(base, cfg.media_hosts, port, cfg.seed)
    return base


def _text(msg: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(msg, status_code=status)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


def _not_found_json(request: Request) -> Response:
    path = request.url.path
    for prefix in ("/v1", "/v2"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    return _json(
        {
            "timestamp": iso(time.time()),
            "status": 404,
            "error": "",
            "message": f"Entity not found for uri: {path}",
        },
        404,
    )


def _int_arg(request: Request, name: str, default: int, cap: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid {name}: {raw}. Use a whole number.") from None
    if v < 0:
        raise BadRequest(f"Invalid {name}: {raw}. It cannot be negative.")
    return min(v, cap) if cap is not None else v


def _auth_user(request: Request) -> tuple[str | None, bool]:
    """(user named in the Authorization header, credentials valid?)"""
    cfg = _state(request).config
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None, False
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, False
    ok = hmac.compare_digest(user.encode(), cfg.username.encode()) and hmac.compare_digest(
        password.encode(), cfg.password.encode()
    )
    return user, ok


def _unauthorized(user: str | None) -> Response:
    return Response(
        f"Failed to authenticate user {user or 'anonymous'}",
        status_code=401,
        media_type="text/plain",
        headers={"WWW-Authenticate": 'Basic realm="GBIF"'},
    )


def _paged(results: list, offset: int, limit: int, count: int | None = None, end: bool | None = None) -> dict:
    out: dict[str, Any] = {"offset": offset, "limit": limit}
    if end is None:
        end = count is not None and offset + len(results) >= count
    out["endOfRecords"] = end
    if count is not None:
        out["count"] = count
    out["results"] = results
    return out


def handles_bad_request(fn):
    """Turn BadRequest into GBIF's 400 text/plain answer."""

    def wrapper(request: Request) -> Response:
        try:
            return fn(request)
        except BadRequest as exc:
            return _text(str(exc), 400)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# ---------------------------------------------------------------------------------------------------
# occurrences
# ---------------------------------------------------------------------------------------------------
@handles_bad_request
def occurrence_search(request: Request) -> Response:
    st = _state(request)
    cfg = st.config
    q = parse_query(request.query_params.multi_items(), max_limit=cfg.max_limit, max_offset=cfg.max_offset)
    rows = st.index.matches(q)
    count = int(len(rows))
    page = rows[q.offset : q.offset + q.limit]
    base = _media_base(request)
    results = [render_record(st.world, int(i), base) for i in page]
    body = _paged(results, q.offset, q.limit, count)
    body["facets"] = st.index.facets(q, rows) if q.facets else []
    return _json(body)


@handles_bad_request
def occurrence_count(request: Request) -> Response:
    st = _state(request)
    q = parse_query(request.query_params.multi_items(), max_offset=None)
    return _json(int(len(st.index.matches(q))))


def occurrence_get(request: Request) -> Response:
    st = _state(request)
    i = st.world.occ.index_of(int(request.path_params["key"]))
    if i is None:
        return _not_found_json(request)
    return _json(render_record(st.world, i, _media_base(request)))


def occurrence_verbatim(request: Request) -> Response:
    st = _state(request)
    i = st.world.occ.index_of(int(request.path_params["key"]))
    if i is None:
        return _not_found_json(request)
    r = render_record(st.world, i, _media_base(request))
    out: dict[str, Any] = {
        k: r[k]
        for k in (
            "key",
            "datasetKey",
            "publishingOrgKey",
            "installationKey",
            "publishingCountry",
            "protocol",
            "lastCrawled",
            "lastParsed",
            "crawlId",
        )
    }
    out["extensions"] = {}
    if "publishedByGbifRegion" in r:
        out["publishedByGbifRegion"] = r["publishedByGbifRegion"]
    out.update(verbatim_terms(st.world, i, r))
    return _json(out)


# ---------------------------------------------------------------------------------------------------
# species
# ---------------------------------------------------------------------------------------------------
def species_match_v1(request: Request) -> Response:
    params = dict(request.query_params)
    verbose = params.get("verbose", "false").lower() == "true"
    return _json(match_v1(_state(request).world.taxonomy, params, verbose=verbose))


def species_match_v2(request: Request) -> Response:
    return _json(match_v2(_state(request).world.taxonomy, dict(request.query_params)))


def _taxon_or_404(request: Request):
    tax = _state(request).world.taxonomy
    try:
        return tax, tax.get(int(request.path_params["key"]))
    except ValueError:
        return tax, None


def species_get(request: Request) -> Response:
    tax, t = _taxon_or_404(request)
    if t is None:
        return _not_found_json(request)
    return _json(name_usage(tax, t))


@handles_bad_request
def species_related(request: Request) -> Response:
    tax, t = _taxon_or_404(request)
    if t is None:
        return _not_found_json(request)
    what = request.path_params["what"]
    if what == "parents":
        return _json([name_usage(tax, p) for p in tax.classification(t.idx)])
    cap = _state(request).config.max_species_limit
    offset = _int_arg(request, "offset", 0)
    limit = _int_arg(request, "limit", 20, cap)
    if what == "children":
        items = sorted(tax.children[t.idx], key=lambda i: tax.taxa[i].canonical)
    elif what == "synonyms":
        items = sorted(tax.synonyms[t.idx], key=lambda i: tax.taxa[i].key)
    else:
        return _not_found_json(request)
    page = [name_usage(tax, tax.taxa[i]) for i in items[offset : offset + limit]]
    return _json(_paged(page, offset, limit, end=offset + len(page) >= len(items)))


@handles_bad_request
def species_search_route(request: Request) -> Response:
    st = _state(request)
    tax = st.world.taxonomy
    params: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        canon = {
            "q": "q",
            "rank": "rank",
            "highertaxonkey": "highertaxonKey",
            "status": "status",
            "datasetkey": "datasetKey",
        }.get(k.replace("_", "").lower())
        if canon:
            params.setdefault(canon, []).append(v)
    offset = _int_arg(request, "offset", 0)
    limit = _int_arg(request, "limit", 20, st.config.max_species_limit)
    found = species_search(tax, params)
    page = [search_usage(tax, t) for t in found[offset : offset + limit]]
    body = _paged(page, offset, limit, len(found))
    body["facets"] = []
    return _json(body)


# ---------------------------------------------------------------------------------------------------
# downloads
# ---------------------------------------------------------------------------------------------------
async def download_request(request: Request) -> Response:
    st = _state(request)
    user, ok = _auth_user(request)
    if not ok:
        return _unauthorized(user)
    ctype = request.headers.get("content-type", "")
    if ctype and "json" not in ctype.lower():
        return _text(f"Unsupported Media Type {ctype}: send the request as application/json", 415)
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        return _text(f"Invalid JSON in download request: {exc}", 400)
    api_url = _base(request) + "/v1"
    try:
        key = await run_in_threadpool(st.downloads.request, user, body, _media_base(request), api_url)
    except BadRequest as exc:
        return _text(str(exc), 400)
    except PermissionError as exc:
        return _text(str(exc), 401)
    except TooManyDownloads as exc:
        return _text(str(exc), 420)
    log.info("sandbox download %s requested (%s)", key, api_url)
    return Response(key, status_code=201, media_type="application/json")


def download_cancel(request: Request) -> Response:
    st = _state(request)
    user, ok = _auth_user(request)
    if not ok:
        return _unauthorized(user)
    key = request.path_params["key"].removesuffix(".zip")
    try:
        st.downloads.cancel(user, key)
    except KeyError:
        return _text("Download with this key not found.", 404)
    except PermissionError as exc:
        return _text(str(exc), 403)
    return Response(status_code=204)


def _published(request: Request) -> None:
    """The downloads GBIF already holds exist from the first request that reads downloads."""
    _state(request).downloads.ensure_published(_media_base(request), _base(request) + "/v1")


def download_file(request: Request) -> Response:
    st = _state(request)
    _published(request)
    key = request.path_params["key"].removesuffix(".zip")
    d = st.downloads.get(key)
    if d is None:
        return _text("Download with this key not found.", 404)
    status = st.downloads.status_of(d)
    if status == "FILE_ERASED":
        return _text("This download was erased, but the metadata is retained.", 410)
    if status != "SUCCEEDED" or d.path is None:
        return _text(
            f"Download {key} has no file (status {status}); poll /occurrence/download/{key} "
            "until it is SUCCEEDED.",
            404,
        )
    return RedirectResponse(
        f"{_base(request)}/archive/occurrence/download/request/{key}.zip", status_code=302
    )


def archive_file(request: Request) -> Response:
    st = _state(request)
    _published(request)
    key = request.path_params["name"].removesuffix(".zip")
    d = st.downloads.get(key)
    if d is None:
        return _text("Not found", 404)
    status = st.downloads.status_of(d)
    if status == "FILE_ERASED":
        return _text("This download was erased, but the metadata is retained.", 410)
    if status != "SUCCEEDED" or d.path is None or not d.path.exists():
        return _text("Not found", 404)
    return FileResponse(d.path, media_type="application/octet-stream", filename=f"{key}.zip")


@handles_bad_request
def download_get(request: Request) -> Response:
    """Dispatch of GET /v1/occurrence/download/… (status by key or DOI, user listing, citation, datasets)."""
    st = _state(request)
    _published(request)
    rest = request.path_params["rest"].strip("/")
    api_url = _base(request) + "/v1"
    parts = rest.split("/")
    if parts[0] == "user" and len(parts) >= 2:
        user = parts[1]
        auth_user, ok = _auth_user(request)
        if not ok or auth_user != user:
            return _unauthorized(user)
        if len(parts) == 3 and parts[2] == "count":
            return _json(len(st.downloads.for_user(user)))
        statuses = {s.upper() for v in request.query_params.getlist("status") for s in v.split(",") if s}
        items = st.downloads.for_user(user, statuses or None)
        offset = _int_arg(request, "offset", 0)
        limit = _int_arg(request, "limit", 20, 1000)
        page = [st.downloads.to_json(d, api_url, private=True) for d in items[offset : offset + limit]]
        return _json(_paged(page, offset, limit, len(items)))
    if parts[0] == "describe":
        return _text("The sandbox does not implement describe; parse archives by their header.", 404)
    if parts[0].startswith("10.") and len(parts) >= 2:
        key, tail = f"{parts[0]}/{parts[1]}", parts[2:]
    else:
        key, tail = parts[0], parts[1:]
    d = st.downloads.get(key)
    if d is None:
        return _text("Download with this key not found.", 404) if tail else _not_found_json(request)
    if not tail:
        return _json(st.downloads.to_json(d, api_url))
    if tail == ["citation"]:
        return _text(st.downloads.citation(d), 200)
    if tail == ["datasets"]:
        items = st.downloads.dataset_counts(d)
        offset = _int_arg(request, "offset", 0)
        limit = _int_arg(request, "limit", 20, 1000)
        return _json(_paged(items[offset : offset + limit], offset, limit, len(items)))
    return _not_found_json(request)


# ---------------------------------------------------------------------------------------------------
# media
# ---------------------------------------------------------------------------------------------------
async def media(request: Request) -> Response:
    st = _state(request)
    cfg = st.config
    try:
        key = int(request.path_params["key"])
    except ValueError:
        return _text("Not found", 404)
    name = request.path_params["name"]
    stem, _, ext = name.partition(".")
    row = st.world.occ.index_of(key)
    if row is None or not stem.isdigit() or int(stem) >= len(media_items(st.world.occ, row)):
        return _text("Not found", 404)
    item = int(stem)
    fault = request.query_params.get("fault")
    if fault is None:
        fault = hidden_fault(st.world, st.faults.settings.media_fault_rate, key, item)
    elif fault not in FAULTS and fault != "none":
        return _text(f"Unknown fault {fault!r}; use one of {', '.join(FAULTS)}", 400)
    if fault == "none":
        fault = None
    if fault == "flaky":
        if st.flaky_hit(f"{key}/{item}") == 1:
            return Response(
                "Service temporarily unavailable",
                status_code=503,
                media_type="text/plain",
                headers={"Retry-After": "1"},
            )
        fault = None
    if fault in ("404", "410", "500", "503", "429"):
        headers = {"Retry-After": "1"} if fault in ("503", "429") else {}
        return Response(f"Error {fault}", status_code=int(fault), media_type="text/plain", headers=headers)
    if fault == "html":
        return Response(ERROR_HTML, media_type="text/html; charset=utf-8")
    if fault == "empty":
        return Response(b"", media_type="image/jpeg")
    if fault and fault.startswith("redirect"):
        n = int(fault[len("redirect") :] or 1)
        nxt = "none" if n <= 1 else f"redirect{n - 1}"
        return RedirectResponse(f"{request.url.path}?fault={nxt}", status_code=302)
    if fault == "timeout":
        await asyncio.sleep(cfg.media_timeout_seconds)
    if fault == "png":
        ext = "png"
    body, ctype = await run_in_threadpool(
        media_body,
        st.world,
        row,
        item,
        ext,
        size=tuple(cfg.media_size),
        quality=cfg.media_jpeg_quality,
        duplicate_rate=cfg.media_duplicate_rate,
    )
    if fault == "truncated":
        return Response(body[: max(1, len(body) // 2)], media_type=ctype)
    if fault == "cut":
        return _CutResponse(body, ctype)
    if fault == "slow":
        return _SlowResponse(body, ctype, cfg.media_slow_seconds)
    headers = {"Cache-Control": "public, max-age=86400", "ETag": f'"{st.world.seed}-{key}-{item}"'}
    if request.method == "HEAD":
        return Response(b"", media_type=ctype, headers={**headers, "Content-Length": str(len(body))})
    return Response(body, media_type=ctype, headers=headers)


_CACHE_PATH = re.compile(r"(?:\d*x\d*/)?occurrence/(\d+)/media/([0-9a-f]{32})")
_CACHE_DOWN = (
    b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>503 Service Unavailable</h1><p>No server is available to handle this request.</p></body></html>"
)


async def image_cache(request: Request) -> Response:
    """GBIF's image cache: ``/v1/image/cache/[200x/]occurrence/{gbifID}/media/{md5(identifier)}``."""
    st = _state(request)
    if st.faults.settings.image_cache_down:
        return Response(_CACHE_DOWN, status_code=503, media_type="text/html")
    m = _CACHE_PATH.fullmatch(request.path_params["rest"])
    if m is None:
        return _text("Not found", 404)
    row = st.world.occ.index_of(int(m.group(1)))
    if row is None:
        return _text("Not found", 404)
    bases = list(dict.fromkeys([_media_base(request), _base(request)]))
    item = cached_item(st.world, row, m.group(2), bases)
    if item is None:
        return _text("Not found", 404)
    cfg = st.config
    body = await run_in_threadpool(
        cache_copy, st.world, row, item, quality=cfg.media_jpeg_quality, size=tuple(cfg.media_size)
    )
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=604800"})


class _SlowResponse(Response):
    """Sends the body in small pieces spread over ``seconds``."""

    def __init__(self, body: bytes, ctype: str, seconds: float) -> None:
        super().__init__(b"", media_type=ctype)
        self._payload = body
        self._seconds = seconds
        self.headers["content-length"] = str(len(body))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pieces = 10
        step = max(1, len(self._payload) // pieces + 1)
        for i in range(0, len(self._payload), step):
            await asyncio.sleep(self._seconds / pieces)
            await send({"type": "http.response.body", "body": self._payload[i : i + step], "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


_CUT_MESSAGE = "sandbox 'cut' fault: connection dropped mid-body"


class _QuietCutFault(logging.Filter):
    """Keep the deliberate 'cut' fault out of uvicorn's error log (it is not a server bug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionAbortedError) and str(exc) == _CUT_MESSAGE)


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietCutFault) for f in logger.filters):
        logger.addFilter(_QuietCutFault())


class _CutResponse(Response):
    """Announces the full length, sends half, then drops the connection."""

    def __init__(self, body: bytes, ctype: str) -> None:
        super().__init__(b"", media_type=ctype)
        self._payload = body
        self.headers["content-length"] = str(len(body))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send(
            {
                "type": "http.response.body",
                "body": self._payload[: len(self._payload) // 2],
                "more_body": True,
            }
        )
        raise ConnectionAbortedError(_CUT_MESSAGE)


# ---------------------------------------------------------------------------------------------------
# sandbox controls
# ---------------------------------------------------------------------------------------------------
def info(request: Request) -> Response:
    st = _state(request)
    w = st.world
    tax = w.taxonomy
    named = {n: tax.find(n)[0].key for n in NAMED_SPECIES}
    named["Inachis io"] = tax.find("Inachis io")[0].key
    return _json(
        {
            "service": "gbifdl offline GBIF sandbox",
            "api": _base(request) + "/v1",
            "seed": w.seed,
            "occurrences": len(w.occ),
            "taxa": len(tax.taxa),
            "species": int(sum(1 for t in tax.taxa if t.rank == "SPECIES" and not t.is_synonym)),
            "datasets": len(w.datasets),
            "publishers": len(w.publishers),
            "generation_seconds": round(w.generation_seconds, 3),
            "named_taxa": named,
            "username": st.config.username,
            "faults": st.faults.describe(),
            "media_hosts": [
                {
                    "name": h.name,
                    "address": h.address,
                    "listening": h.listens,
                    **st.media_host_counts.get(h.name, {"requests": 0, "throttled": 0}),
                }
                for h in st.config.media_hosts
            ],
        }
    )


def duplicates(request: Request) -> Response:
    """The ground truth of the duplicate photos (.duplicates): groups of gbifID/item with the kind of
    each copy (item 0 of each record)."""
    st = _state(request)
    groups = duplicate_groups(st.world, st.config.media_duplicate_rate)
    return _json({"rate": st.config.media_duplicate_rate, "count": len(groups), "groups": groups})


def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def faults(request: Request) -> Response:
    st = _state(request)
    if request.method == "DELETE":
        st.faults.reset()
    elif request.method == "POST":
        try:
            payload = json.loads(await request.body() or b"{}")
            if payload.get("reset") is True and len(payload) == 1:
                st.faults.reset()
            else:
                st.faults.update(payload)
        except (ValueError, AttributeError) as exc:
            return _text(str(exc), 400)
    return _json(st.faults.describe())


async def faults_reset(request: Request) -> Response:
    """The API faults back to the configuration's, and the ``flaky`` media URLs fail once more, so
    two runs over the same images meet the same faults."""
    _state(request).faults.reset()
    _state(request).forget_flaky()
    return _json(_state(request).faults.describe())


# ---------------------------------------------------------------------------------------------------
# API fault middleware
# ---------------------------------------------------------------------------------------------------
class ApiFaultMiddleware:
    """Answers API requests with 429/503 as configured, and adds API latency; media are never touched."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(("/v1/", "/v2/")):
            faults_ = self.state.faults
            if faults_.settings.api_latency > 0:
                await asyncio.sleep(faults_.settings.api_latency)
            fault = faults_.check(path)
            if fault:
                retry = str(faults_.settings.retry_after)
                if fault == "429":
                    resp = Response(
                        body_429(),
                        status_code=429,
                        media_type="application/json",
                        headers={"Retry-After": retry},
                    )
                else:
                    resp = Response(
                        "Service Unavailable",
                        status_code=503,
                        media_type="text/plain",
                        headers={"Retry-After": retry},
                    )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """Build the sandbox ASGI app (generates the data for ``config`` on first use of these parameters)."""
    config = config or SandboxConfig()
    state = SandboxState(config)
    _install_log_filter()
    routes = [
        Route("/", info),
        Route("/sandbox/info", info),
        Route("/sandbox/health", health),
        Route("/sandbox/duplicates", duplicates),
        Route("/sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/sandbox/faults/reset", faults_reset, methods=["POST"]),
        Route("/v1/occurrence/search", occurrence_search),
        Route("/v1/occurrence/count", occurrence_count),
        Route("/v1/occurrence/download/request", download_request, methods=["POST"]),
        Route("/v1/occurrence/download/request/{key}", download_file, methods=["GET", "HEAD"]),
        Route("/v1/occurrence/download/request/{key}", download_cancel, methods=["DELETE"]),
        Route("/v1/occurrence/download/{rest:path}", download_get),
        Route("/v1/occurrence/{key:int}", occurrence_get),
        Route("/v1/occurrence/{key:int}/verbatim", occurrence_verbatim),
        Route("/v1/species/match", species_match_v1),
        Route("/v2/species/match", species_match_v2),
        Route("/v1/species/search", species_search_route),
        Route("/v1/species/{key}", species_get),
        Route("/v1/species/{key}/{what}", species_related),
        Route("/archive/occurrence/download/request/{name}", archive_file, methods=["GET", "HEAD"]),
        Route("/media/{key}/{name}", media, methods=["GET", "HEAD"]),
        Route("/v1/image/cache/{rest:path}", image_cache, methods=["GET", "HEAD"]),
    ]
    # GBIF's rule-based annotation API (/v1/occurrence/experimental/annotation/...)
    routes += annotation_routes(state)
    # GBIF's registry: /v1/dataset/{key}, /v1/organization/{key}
    routes += registry_routes(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        state.downloads.close()

    middleware = [Middleware(ApiFaultMiddleware, state=state)]
    if config.media_hosts:  # outermost: a media host answers for itself before the API's faults
        middleware.insert(
            0,
            Middleware(
                MediaHostMiddleware,
                hosts=config.media_hosts,
                seed=config.seed,
                counts=state.media_host_counts,
            ),
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.sandbox = state
    return app
