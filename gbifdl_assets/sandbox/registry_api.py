"""The registry endpoints of the sandbox: ``GET /v1/dataset/{key}`` and ``GET /v1/organization/{key}``.

Answers with the objects of :mod:`.registry`. An unknown key answers 404 with the JSON body GBIF's
web services send for a missing entity (``{"timestamp","status","error","message"}``, as recorded for
the species API in rgbif ``name_usage_fails_well.yml``); a key that is not a UUID answers 400
text/plain. Wire it into the app with ``routes += registry_routes(state)``; the API fault middleware
(429/503 every Nth request, latency) applies to these paths like to every ``/v1/`` path.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .registry import dataset_json, find_dataset, find_publisher, is_uuid, organization_json

__all__ = ["registry_routes"]


def _json(obj: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


def _not_found(path: str) -> Response:
    now = dt.datetime.now(dt.UTC)
    return _json(
        {
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+00:00",
            "status": 404,
            "error": "",
            "message": f"Entity not found for uri: {path}",
        },
        404,
    )


def registry_routes(state: Any) -> list[Route]:
    """Routes serving ``state.world``'s datasets and publishers."""

    def dataset(request: Request) -> Response:
        key = request.path_params["key"]
        if not is_uuid(key):
            return PlainTextResponse(f"Invalid UUID string: {key}", status_code=400)
        ds = find_dataset(state.world, key)
        if ds is None:
            return _not_found(f"/dataset/{key}")
        return _json(dataset_json(state.world, ds))

    def organization(request: Request) -> Response:
        key = request.path_params["key"]
        if not is_uuid(key):
            return PlainTextResponse(f"Invalid UUID string: {key}", status_code=400)
        pub = find_publisher(state.world, key)
        if pub is None:
            return _not_found(f"/organization/{key}")
        return _json(organization_json(state.world, pub))

    return [
        Route("/v1/dataset/{key}", dataset),
        Route("/v1/organization/{key}", organization),
    ]
