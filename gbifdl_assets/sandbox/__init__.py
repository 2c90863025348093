"""An offline GBIF: occurrence search, species API, downloads, media server and fault injection.

Generated data is deterministic in ``(seed, occurrences, species)``; a million occurrences take about
a second to generate and ~41 bytes each in memory (numpy columns; JSON is built per page). Use::

    from gbifdl_assets.sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(occurrences=50_000, download_seconds=(0.2, 0.3))) as sb:
        client = GbifClient(sb.api_url, username="sandbox", password="sandbox")

``gbifdl sandbox serve`` runs :func:`serve` in the foreground.

Endpoints (GBIF's shapes and errors; see ``app.py``):

- ``/v1/occurrence/search`` (paging envelope, limit ≤ 300, offset cap → 400, facets),
  ``/v1/occurrence/count``, ``/v1/occurrence/{key}``, ``/v1/occurrence/{key}/verbatim``
- ``/v1/species/match``, ``/v2/species/match``, ``/v1/species/search``, ``/v1/species/{key}``,
  ``/v1/species/{key}/children|synonyms`` (paged, no count), ``/v1/species/{key}/parents`` (array)
- ``POST /v1/occurrence/download/request`` (Basic auth, predicate; 201 + bare key; 420 beyond
  ``max_running_downloads``), ``GET /v1/occurrence/download/{key|doi}[/citation|/datasets]``,
  ``GET|DELETE /v1/occurrence/download/request/{key}[.zip]`` (302 to the archive / 204 cancel),
  ``GET /v1/occurrence/download/user/{user}`` (Basic auth, newest first)
- ``/v1/dataset/{key}``, ``/v1/organization/{key}`` (the registry: GBIF's Dataset and Organization
  objects of the generated datasets and publishers; 404 JSON for an unknown key)

DWCA downloads have the layout and the columns of real GBIF downloads (``dwca_text``): no
``publishingOrgKey`` in ``occurrence.txt`` (``SandboxConfig.real_dwca_columns``, True by default; False
adds the sandbox-only column back), so snapshots must take the publisher from the registry, as with GBIF.
``gbifdl_assets_tests/integration/test_sandbox_conformance.py`` holds all of this against recorded GBIF.
- ``/media/{occurrenceKey}/{item}.{jpg|png|…}[?fault=…]`` (see :mod:`.media` for fault names)
- ``/v1/image/cache/[200x/]occurrence/{gbifID}/media/{md5(identifier)}``: GBIF's image cache (the
  copy of an image whose own link is dead; ``image_cache_down`` makes it answer 503)
- media hosts (``SandboxConfig.media_hosts``, or ``GBIFDL_SANDBOX_MEDIA_HOSTS=default`` for
  ``gbifdl sandbox serve``): media served from several host names on 127.0.0.x, each with its own
  manners (rate limits with 429 + Retry-After, slowness, robots.txt, X-Robots-Tag, tdm-reservation,
  dead links, a name that does not resolve, a refusing server, a CDN redirect); see :mod:`.hosts`
  and ``RunningSandbox.resolve``
- ``/sandbox/info``, ``/sandbox/health``, ``GET|POST|DELETE /sandbox/faults``
  (``{"api_429_every": N, "api_503_every": N, "retry_after": s, "api_latency": s,
  "media_fault_rate": f, "image_cache_down": true}``; DELETE resets to the configured values)
"""

from .app import create_app
from .config import SandboxConfig
from .hosts import parse_media_hosts
from .server import RunningSandbox, serve, start_sandbox
from .taxonomy import NAMED_SPECIES
from .world import World, build_world, get_world

__all__ = [
    "SandboxConfig",
    "create_app",
    "start_sandbox",
    "RunningSandbox",
    "serve",
    "World",
    "build_world",
    "get_world",
    "NAMED_SPECIES",
    "parse_media_hosts",
]
