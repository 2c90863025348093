"""The annotation service: the REST API, the login check, the OpenAPI document, the map page and the
gallery page (a training set's images, to flag).

``create_app(store, api_url=...)`` returns a Starlette app; :func:`serve` runs it with uvicorn. The
access log is uvicorn's (client, method, path and status: never headers, so never the Authorization
header); request bodies are limited to ``max_body_bytes``; every answer carries a strict
Content-Security-Policy. Plain HTTP only: put a TLS-terminating proxy in front in production (Basic
credentials are only base64-encoded).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gbifdl_assets.annotations.service.api import API_PREFIX, AnnotationApi
from gbifdl_assets.annotations.service.auth import MAX_FAILURES, Authenticator
from gbifdl_assets.annotations.service.csrf import SameOriginWrites
from gbifdl_assets.annotations.service.gallery import Gallery, gallery_routes
from gbifdl_assets.annotations.service.http import (
    DEFAULT_MAX_BODY_BYTES,
    BodySizeLimit,
    SecurityHeaders,
    json_response,
)
from gbifdl_assets.annotations.service.openapi import openapi_document
from gbifdl_assets.annotations.service.page import STATIC_DIR, TaxonSearch, page_routes
from gbifdl_assets.annotations.service.preview import DEFAULT_PREVIEW_CACHE_BYTES, PreviewService
from gbifdl_assets.annotations.service.proxies import TrustedProxies
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.storage import Storage

__all__ = ["DEFAULT_GBIF_API_URL", "create_app", "serve"]

log = logging.getLogger(__name__)
DEFAULT_GBIF_API_URL = "https://api.gbif.org/v1"


def create_app(
    store: AnnotationStore,
    *,
    api_url: str = DEFAULT_GBIF_API_URL,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    authenticator: Authenticator | None = None,
    max_failed_logins: int = MAX_FAILURES,
    allowed_origins: tuple[str, ...] = (),
    trusted_proxies: tuple[str, ...] = (),
    max_account_failures: int | None = None,
    password_workers: int | None = None,
    data_storage: Storage | None = None,
    preview_cache_bytes: int = DEFAULT_PREVIEW_CACHE_BYTES,
    media_loopback_origins: tuple[str, ...] = (),
) -> Any:
    """The ASGI app (Starlette wrapped in the body-size, same-origin-write and security-header middleware).

    ``max_failed_logins`` per client address in 10 minutes before 429s (0: no throttling),
    ``max_account_failures`` per account (default 5 times that), ``password_workers`` threads for
    password checks (:mod:`.auth`); ``allowed_origins``: pages on other origins that may write (besides
    the service's own; :mod:`.csrf`); ``trusted_proxies``: addresses or networks whose
    ``X-Forwarded-*`` headers are believed (none by default; :mod:`.proxies`); ``data_storage``: where
    the rule preview finds the training sets' snapshots (None: the preview answers 503) and the gallery
    page the training sets' manifests, ledgers and images (:mod:`.gallery`), keeping at most
    ``preview_cache_bytes`` of the snapshots' columns in memory; ``media_loopback_origins``: ``host:port``
    of the offline sandbox, whose sample images the preview's thumbnails may fetch (:mod:`.preview`).
    """
    proxies = TrustedProxies(trusted_proxies)
    if authenticator is None:
        authenticator = Authenticator(
            store,
            max_failures=max_failed_logins,
            max_account_failures=max_account_failures,
            password_workers=password_workers,
        )
    api = AnnotationApi(store, authenticator, proxies)
    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return json_response(document)

    async def health(request: Request) -> Response:
        """For load balancers and compose health checks: 200 when the store answers, else 503."""
        try:
            await run_in_threadpool(store.version)
        except Exception as exc:  # any driver error means "not ready"; the log has the details
            log.warning("annotation service health check: the store did not answer: %s", type(exc).__name__)
            return json_response({"ok": False, "message": "the annotation store does not answer"}, 503)
        return json_response({"ok": True})

    preview = PreviewService(
        data_storage, cache_bytes=preview_cache_bytes, media_loopback_origins=media_loopback_origins
    )
    routes: list[Any] = [
        *preview.routes((API_PREFIX, "/v1" + API_PREFIX)),
        *api.routes(API_PREFIX),
        # GBIF's full path (API root + /v1): clients configured with GBIF's base URL work unchanged
        *api.routes("/v1" + API_PREFIX),
        api.login_route("/user/login"),
        api.login_route("/v1/user/login"),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route(API_PREFIX + "/openapi.json", openapi, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        *page_routes(TaxonSearch(api_url)),
        *gallery_routes(Gallery(data_storage, store), STATIC_DIR),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"no such path: {request.url.path} (the API lives under {API_PREFIX}/)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return json_response({"message": message}, exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        # the traceback goes to the server log; the client gets no internals
        log.error("annotation service: %s %s failed", request.method, request.url.path, exc_info=exc)
        return json_response({"message": "internal error; the server log has the details"}, 500)

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.store = store
    app.state.preview = preview
    # a body over the limit is refused first (413), then a cross-site or non-JSON write (403, 415)
    guarded = SameOriginWrites(app, allowed_origins=allowed_origins, own_origin=proxies.origin)
    return SecurityHeaders(BodySizeLimit(guarded, max_body_bytes))


def serve(
    store: AnnotationStore,
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    api_url: str = DEFAULT_GBIF_API_URL,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = True,
    max_failed_logins: int = MAX_FAILURES,
    allowed_origins: tuple[str, ...] = (),
    trusted_proxies: tuple[str, ...] = (),
    max_account_failures: int | None = None,
    password_workers: int | None = None,
    data_storage: Storage | None = None,
    preview_cache_bytes: int = DEFAULT_PREVIEW_CACHE_BYTES,
    media_loopback_origins: tuple[str, ...] = (),
) -> None:
    """Run the service until interrupted (uvicorn; the access log never shows request headers)."""
    import uvicorn
    import uvicorn.config

    app = create_app(
        store,
        api_url=api_url,
        max_body_bytes=max_body_bytes,
        max_failed_logins=max_failed_logins,
        allowed_origins=allowed_origins,
        trusted_proxies=trusted_proxies,
        max_account_failures=max_account_failures,
        password_workers=password_workers,
        data_storage=data_storage,
        preview_cache_bytes=preview_cache_bytes,
        media_loopback_origins=media_loopback_origins,
    )
    # uvicorn logs requests to stdout by default; stdout is for the command's JSON summary line
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_config=log_config,
        log_level="info",
        server_header=False,
        # X-Forwarded-* are read by the app, from the configured trusted proxies only (.proxies);
        # uvicorn's own reading would trust 127.0.0.1 (or $FORWARDED_ALLOW_IPS) by default
        proxy_headers=False,
        timeout_keep_alive=5,
        limit_concurrency=200,
    )
    uvicorn.Server(config).run()
