"""GBIF occurrence downloads: request, status, user listing, DOI lookup, streaming the zip.

The endpoints (``/occurrence/download/...``) and their quirks are in the shared GBIF reference:
POST answers 201 with a *bare, unquoted* key despite ``application/json``; the status ``size`` is
the zip's byte count once SUCCEEDED; the file URL redirects to an archive server; 404/410 mean the
download is unknown or its file was erased (GBIF keeps files for about six months).
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import requests

from gbifdl_assets.gbif.errors import (
    GbifCredentialsMissing,
    GbifDownloadNotReady,
    GbifNotFound,
    GbifRateLimited,
    GbifResponseError,
    GbifUnavailable,
)
from gbifdl_assets.gbif.http import RETRYABLE_EXCEPTIONS, display_url
from gbifdl_assets.vocabulary import DEAD_STATUSES, FAILED_STATUSES, RUNNING_STATUSES

if TYPE_CHECKING:
    from gbifdl_assets.gbif.http import GbifHttp


class DownloadClient(Protocol):
    """What the download calls need of a client (:class:`gbifdl_assets.gbif.client.GbifClient` is
    one): typed by shape, so this module does not import the client that delegates to it."""

    username: str | None
    password: str | None
    http: GbifHttp

    def url(self, path: str) -> str: ...

    def get_json(self, path: str, params: Any = None, *, auth: bool = False) -> Any: ...


log = logging.getLogger("gbifdl_assets.gbif")

FORMATS = (
    "DWCA",
    "SIMPLE_CSV",
    "SIMPLE_PARQUET",
    "SPECIES_LIST",
    "SQL_TSV_ZIP",
    "BIONOMIA",
    "FASTA_ARCHIVE",
    "SIMPLE_WITH_VERBATIM_AVRO",
    "SIMPLE_AVRO",
    "MAP_OF_LIFE",
)
DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_KEY = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{2,63}$")

RATE_LIMIT_HINT = (
    "GBIF allows about 3 concurrent downloads per user (fewer when GBIF is busy); wait for one of "
    "your running downloads to finish, or cancel one, then try again"
)
ERASED_HINT = (
    "GBIF does not know this download or has erased its file (files are kept for about six months); "
    "check the key/DOI or request a new download"
)
CHUNK = 1 << 20


def normalize_doi(value: str) -> str | None:
    """``doi:10.15468/dl.x``, ``https://doi.org/10.15468/dl.x`` or ``10.15468/dl.x`` → ``10.15468/dl.x``."""
    text = value.strip()
    lowered = text.lower()
    for prefix in DOI_PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text if _DOI.match(text) else None


def check_key(key: str) -> str:
    key = str(key).strip()
    if not _KEY.match(key):
        raise ValueError(f"{key!r} is not a GBIF download key (like 0012150-260108223611665) or DOI")
    return key


def credentials_of(client: DownloadClient) -> tuple[str, str]:
    if not client.username or not client.password:
        raise GbifCredentialsMissing(0, client.url("/occurrence/download"))
    return (client.username, client.password)


def parse_download_key(body: bytes, url: str) -> str:
    """The key from a download POST: a bare token, a JSON string, or a JSON object with ``key``."""
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith(("{", '"')):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, str):
            text = data.strip()
        elif isinstance(data, dict) and isinstance(data.get("key"), str):
            text = data["key"].strip()
    if not _KEY.match(text):
        raise GbifResponseError(url, "expected a download key", body)
    return text


def request_download(
    client: DownloadClient,
    predicate: dict,
    *,
    format: str = "DWCA",
    notification_addresses: Sequence[str] = (),
    description: str | None = None,
) -> str:
    fmt = format.upper()
    if fmt not in FORMATS:
        raise ValueError(f"download format {format!r} is not one of {', '.join(FORMATS)}")
    username, password = credentials_of(client)
    body: dict[str, Any] = {
        "creator": username,
        "notificationAddresses": list(notification_addresses),
        "sendNotification": bool(notification_addresses),
        "format": fmt,
        "predicate": predicate,
    }
    if description:
        body["description"] = description
    url = client.url("/occurrence/download/request")
    try:
        # 420/429 here means the user's download slots are full: retrying in seconds is pointless
        response = client.http.request(
            "POST", url, json=body, auth=(username, password), retry_rate_limits=False
        )
    except GbifRateLimited as exc:
        raise GbifRateLimited(exc.status, exc.url, exc.message, method="POST", hint=RATE_LIMIT_HINT) from None
    key = parse_download_key(response.content, url)
    log.info("requested GBIF download %s (%s)", key, fmt)
    return key


def resolve_ref(key_or_doi: str) -> str:
    """A key stays a key; a DOI in any common spelling becomes ``10.x/...``."""
    doi = normalize_doi(key_or_doi)
    return doi if doi else check_key(key_or_doi)


def download_status(client: DownloadClient, key_or_doi: str) -> dict:
    ref = resolve_ref(key_or_doi)
    try:
        status = client.get_json(f"/occurrence/download/{ref}")
    except GbifNotFound as exc:
        raise GbifNotFound(exc.status, exc.url, exc.message, hint=ERASED_HINT) from None
    if not isinstance(status, dict) or "key" not in status:
        raise GbifResponseError(
            client.url(f"/occurrence/download/{ref}"), "expected a download status object"
        )
    return status


def download_key_for_doi(client: DownloadClient, doi: str) -> str:
    normalized = normalize_doi(doi)
    if normalized is None:
        raise ValueError(
            f"{doi!r} is not a DOI (expected e.g. 10.15468/dl.hx3uzz or https://doi.org/10.15468/dl.hx3uzz)"
        )
    return str(download_status(client, normalized)["key"])


def iter_user_downloads(
    client: DownloadClient,
    user: str | None = None,
    *,
    status: str | Sequence[str] | None = None,
    page_size: int = 100,
) -> Iterator[dict]:
    auth = credentials_of(client)
    user = user or auth[0]
    params: dict[str, Any] = {}
    if status:
        params["status"] = [status] if isinstance(status, str) else list(status)
    offset = 0
    while True:
        page = client.get_json(
            f"/occurrence/download/user/{user}", {**params, "limit": page_size, "offset": offset}, auth=True
        )
        if not isinstance(page, dict) or not isinstance(page.get("results", []), list):
            raise GbifResponseError(client.url(f"/occurrence/download/user/{user}"), "expected a paged list")
        results = page.get("results") or []
        yield from results
        offset += len(results)
        if page.get("endOfRecords", True) or not results:
            return


def cancel_download(client: DownloadClient, key: str) -> None:
    key = check_key(key)
    auth = credentials_of(client)
    try:
        client.http.request("DELETE", client.url(f"/occurrence/download/request/{key}"), auth=auth)
    except GbifNotFound as exc:
        raise GbifNotFound(exc.status, exc.url, exc.message, method="DELETE", hint=ERASED_HINT) from None


def wait_for_download(
    client: DownloadClient,
    key_or_doi: str,
    *,
    poll_seconds: float = 30.0,
    timeout_seconds: float | None = None,
    on_status: Callable[[dict], None] | None = None,
) -> dict:
    """Poll until the download leaves PREPARING/RUNNING/SUSPENDED; returns the final status.

    The one wait for a download: the snapshot stage waits here too (for a few minutes; the Dagster
    sensor does the long waiting). Raises :class:`GbifDownloadNotReady` when it ends in one of
    :data:`DEAD_STATUSES` (CANCELLED/KILLED/FAILED/FILE_ERASED) or times out.
    """
    waited = 0.0
    while True:
        status = download_status(client, key_or_doi)
        if on_status:
            on_status(status)
        state = str(status.get("status", "")).upper()
        if state not in RUNNING_STATUSES:
            if state in DEAD_STATUSES:
                raise GbifDownloadNotReady(str(status["key"]), state)
            return status
        if timeout_seconds is not None and waited >= timeout_seconds:
            raise GbifDownloadNotReady(
                str(status["key"]),
                state,
                f"GBIF download {status['key']} is still {state} after {waited:.0f}s; "
                "check again later (it keeps running at GBIF)",
            )
        client.http.sleep(poll_seconds)
        waited += poll_seconds


def fetch_download(
    client: DownloadClient,
    key: str,
    dest: Path,
    *,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Stream the download's zip to ``dest`` (a directory → ``dest/<key>.zip``), atomically.

    Checks the status first (so a RUNNING download gives a clear "not ready" instead of a 404),
    writes to a hidden temp file next to ``dest``, compares the byte count with the status
    ``size`` when GBIF reports one, and renames only a complete file. Transfers that break off
    are retried from the start with the client's backoff.
    """
    status = download_status(client, key)
    key = str(status.get("key") or key)
    state = str(status.get("status", "")).upper()
    zip_url = client.url(f"/occurrence/download/request/{key}.zip")
    if state == "FILE_ERASED":
        raise GbifNotFound(410, zip_url, "the download's file was erased", hint=ERASED_HINT)
    if state in RUNNING_STATUSES or state in FAILED_STATUSES:
        raise GbifDownloadNotReady(key, state)
    expected = int(status.get("size") or 0) or None

    dest = Path(dest)
    if dest.is_dir():
        dest = dest / f"{key}.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    http = client.http
    attempt = 0
    while True:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            written = _stream_once(client, zip_url, tmp, expected, progress)
            os.replace(tmp, dest)
            log.info("fetched GBIF download %s: %d bytes → %s", key, written, dest)
            return dest
        except GbifNotFound as exc:
            raise GbifNotFound(exc.status, exc.url, exc.message, hint=ERASED_HINT) from None
        except (*RETRYABLE_EXCEPTIONS, _Truncated) as exc:
            if attempt >= http.max_retries:
                raise GbifUnavailable(0, display_url(zip_url), f"transfer failed: {exc}") from exc
            delay = http.backoff_delay(attempt)
            attempt += 1
            log.warning(
                "GBIF download %s transfer failed (%s); retry %d/%d in %.1fs",
                key,
                exc,
                attempt,
                http.max_retries,
                delay,
            )
            http.sleep(delay)
        finally:
            if tmp.exists():
                tmp.unlink()


class _Truncated(Exception):
    """The zip's byte count differs from the status ``size``: the transfer was cut short."""


def _stream_once(
    client: DownloadClient,
    url: str,
    tmp: Path,
    expected: int | None,
    progress: Callable[[int, int | None], None] | None,
) -> int:
    response: requests.Response = client.http.request(
        "GET", url, stream=True, headers={"Accept": "application/zip, application/octet-stream, */*"}
    )
    written = 0
    try:
        total = expected or int(response.headers.get("Content-Length") or 0) or None
        with open(tmp, "wb") as fh:
            for chunk in response.iter_content(CHUNK):
                if not chunk:
                    continue
                fh.write(chunk)
                written += len(chunk)
                if progress:
                    progress(written, total)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        response.close()
    if expected is not None and written != expected:
        raise _Truncated(f"got {written} bytes but GBIF reports the file has {expected}")
    return written


__all__ = [
    "FORMATS",
    "cancel_download",
    "download_key_for_doi",
    "download_status",
    "fetch_download",
    "iter_user_downloads",
    "normalize_doi",
    "request_download",
    "resolve_ref",
    "wait_for_download",
]
