"""The map page and its helper endpoints (``/ui/…``), served by the same process as the API.

The page (``static/index.html`` + ``app.js``) draws the shipped Natural Earth 1:110m country outlines
with the vendored Leaflet (no tile server, no CDN: it works offline), finds a taxon by name through the
project's GBIF client (so the offline sandbox answers when ``--api-url`` points at it), shows that
taxon's rules coloured by label, and writes rules, votes and comments through the REST API with the
user's Basic credentials.

Helper endpoints (not part of GBIF's API):

* ``GET /ui/api/config``: labels with GBIF's colours, geometry limits, basisOfRecord names, the API prefix;
* ``GET /ui/api/world.geojson``: the basemap;
* ``GET /ui/api/taxa?q=``: taxon search (a key, or a name: the name match first, then a species search);
* ``GET /ui/api/taxon-names?key=…&key=…``: the names of taxa the service has looked up (no request to
  GBIF), so rule details can show a name beside a key;
* ``GET /ui/api/country/{code}``: a country's 1:50m outline reduced to GBIF's vertex limit, as WKT.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import shapely
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gbifdl_assets.annotations.areas import AreaNotFoundError, resolve_area, world_outlines_path
from gbifdl_assets.annotations.model import BASIS_OF_RECORD, MAX_POLYGON_VERTICES, MAX_WKT_LENGTH
from gbifdl_assets.annotations.service.api import API_PREFIX, vocabulary
from gbifdl_assets.annotations.service.http import ApiError, check_values, error_response, json_response

__all__ = ["STATIC_DIR", "TaxonSearch", "page_routes"]

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")
BACKBONE_DATASET_KEY = "d7dddbf4-2cf0-4f39-9b2a-bb099caae36c"


class TaxonSearch:
    """Taxon look-up through :class:`GbifClient` (short timeouts: a person is waiting)."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self._names: dict[int, str] = {}  # key -> scientific name of every taxon GBIF told us about
        self._lock = threading.Lock()

    def _learn(self, usage: dict[str, Any]) -> dict[str, Any]:
        taxon = _taxon(usage)
        key, name = taxon.get("key"), taxon.get("scientificName") or taxon.get("canonicalName")
        if isinstance(key, int) and isinstance(name, str) and name:
            with self._lock:
                if len(self._names) >= 100_000:
                    self._names.clear()
                self._names[key] = name
        return taxon

    def names(self, keys: list[int]) -> dict[str, str]:
        """The names this service has seen for these keys (no request to GBIF): ``{"5219404": "Panthera leo"}``."""
        with self._lock:
            return {str(k): self._names[k] for k in keys if k in self._names}

    def _client(self) -> Any:
        from gbifdl_assets.gbif.client import GbifClient

        return GbifClient(self.api_url, max_retries=1, timeout=(5, 20))

    def search(self, q: str, limit: int = 10) -> list[dict[str, Any]]:
        from gbifdl_assets.gbif.errors import GbifError, GbifNotFound

        text = q.strip()
        if not text:
            raise ApiError(400, "q is empty: type a scientific name (Panthera leo) or a taxon key")
        out: dict[Any, dict[str, Any]] = {}
        try:
            with self._client() as client:
                if re.fullmatch(r"[0-9]{1,12}", text):
                    try:
                        usage = client.get_species(int(text))
                    except GbifNotFound:
                        raise ApiError(404, f"GBIF has no taxon with key {text}") from None
                    return [self._learn(usage)]
                match = client.match_name(text)
                if match.matched and match.accepted_key is not None:
                    out[match.accepted_key] = self._learn(client.get_species(int(match.accepted_key)))
                page = client.get_json(
                    "/species/search",
                    {"q": text, "limit": limit, "datasetKey": BACKBONE_DATASET_KEY, "status": "ACCEPTED"},
                )
        except ApiError:
            raise
        except GbifError as exc:
            # the details (URL, upstream text) go to the server log; the page gets a summary
            log.warning("taxon search for %r: the GBIF API at %s failed: %s", text[:100], self.api_url, exc)
            raise ApiError(
                502, f"the taxon search needs GBIF's species API, which {_failure(exc)}; try again later"
            ) from None
        for usage in (page or {}).get("results", []) if isinstance(page, dict) else []:
            key = usage.get("key")
            if key is not None and key not in out and len(out) < limit:
                out[key] = self._learn(usage)
        return list(out.values())


def _failure(exc: Exception) -> str:
    """What went wrong upstream, in a few words: never the URL, never the upstream's own text."""
    from gbifdl_assets.gbif.errors import GbifHTTPError, GbifRateLimited, GbifResponseError

    if isinstance(exc, GbifRateLimited):
        return "is throttling requests (HTTP 429)"
    if isinstance(exc, GbifHTTPError):
        return (
            f"answered HTTP {exc.status}"
            if exc.status
            else "could not be reached (no connection or no answer in time)"
        )
    if isinstance(exc, GbifResponseError):
        return "answered with something that is not its JSON"
    return "failed"


def _taxon(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": usage.get("key"),
        "scientificName": usage.get("scientificName"),
        "canonicalName": usage.get("canonicalName"),
        "rank": usage.get("rank"),
        "status": usage.get("taxonomicStatus") or usage.get("status"),
        "kingdom": usage.get("kingdom"),
    }


def page_routes(taxa: TaxonSearch) -> list[Route | Mount]:
    async def home(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        return json_response(
            {
                "apiPrefix": API_PREFIX,
                "labels": vocabulary(),
                "maxVertices": MAX_POLYGON_VERTICES,
                "maxWktLength": MAX_WKT_LENGTH,
                "basisOfRecord": list(BASIS_OF_RECORD),
            }
        )

    async def world(request: Request) -> Response:
        return FileResponse(
            world_outlines_path(),
            media_type="application/geo+json",
            headers={"Cache-Control": "max-age=86400"},
        )

    async def taxa_search(request: Request) -> Response:
        q = request.query_params.get("q", "")
        try:
            check_values(q, "q")
            found = await run_in_threadpool(taxa.search, q)
        except ApiError as exc:
            return error_response(exc)
        return json_response(found)

    async def taxon_names(request: Request) -> Response:
        raw = request.query_params.getlist("key")
        if len(raw) > 1000 or not all(re.fullmatch(r"[0-9]{1,12}", k) for k in raw):
            return error_response(ApiError(400, "key must be taxon keys (whole numbers), at most 1,000"))
        return json_response(taxa.names([int(k) for k in raw]))

    async def country(request: Request) -> Response:
        code = request.path_params["code"]
        if not re.fullmatch(r"[A-Za-z]{2,3}", code):
            return error_response(ApiError(400, f"{code!r} is not an ISO 3166-1 code (GL, GRL)"))
        try:
            area = await run_in_threadpool(resolve_area, code)
        except AreaNotFoundError as exc:
            return error_response(ApiError(404, str(exc)))
        wkt = shapely.to_wkt(area.geometry, rounding_precision=4)
        return json_response({"code": area.code, "name": area.name, "geometry": wkt, "note": area.note})

    return [
        Route("/", home, methods=["GET"]),
        Route("/ui", home, methods=["GET"]),
        Route("/ui/", index, methods=["GET"]),
        Route("/ui/api/config", config, methods=["GET"]),
        Route("/ui/api/world.geojson", world, methods=["GET"]),
        Route("/ui/api/taxa", taxa_search, methods=["GET"]),
        Route("/ui/api/taxon-names", taxon_names, methods=["GET"]),
        Route("/ui/api/country/{code}", country, methods=["GET"]),
        Mount("/ui/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
