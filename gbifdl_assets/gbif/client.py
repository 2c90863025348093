"""The GBIF API client: occurrence search and counts, species, downloads.

One object per GBIF endpoint (real GBIF or the offline sandbox, chosen by ``base_url``). It is
safe to share between threads: the underlying ``requests`` session pools connections and the
client keeps no per-request state. Credentials are only sent to the download endpoints that need
them and are never logged or shown in ``repr``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from gbifdl_assets.gbif import downloads as _downloads
from gbifdl_assets.gbif.errors import GbifResponseError
from gbifdl_assets.gbif.http import GbifHttp
from gbifdl_assets.gbif.search import MAX_PAGE_SIZE, canonical_name, iter_occurrences, normalize_params
from gbifdl_assets.vocabulary import BACKBONE_DATASET_KEY

DEFAULT_BASE_URL = "https://api.gbif.org/v1"
#: the GBIF Backbone Taxonomy checklist; occurrence keys (speciesKey, taxonKey) refer to it
#: /v1/species/search caps ``limit`` at 1000
SPECIES_PAGE_SIZE = 1000


def _int_or_str(value: Any) -> int | str | None:
    """GBIF v2 keys are strings; backbone keys are numeric, other checklists' may not be."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


@dataclass(frozen=True)
class NameMatch:
    """The answer of GBIF's name matcher, the same shape for /v1 and /v2.

    ``accepted_key`` is the usage to label occurrences with: the accepted usage of a synonym,
    otherwise ``usage_key`` itself. ``usage_key`` is None when ``match_type == "NONE"``. Keys are
    ints; a v2 match against a non-backbone checklist may carry alphanumeric keys, kept as str.
    """

    query: str
    usage_key: int | None
    scientific_name: str | None
    canonical_name: str | None
    rank: str | None
    status: str | None
    match_type: str  # EXACT FUZZY HIGHERRANK AGGREGATE NONE
    confidence: int | None
    synonym: bool
    accepted_key: int | None
    species_key: int | None
    kingdom: str | None
    raw: dict = field(repr=False, compare=False)

    @property
    def matched(self) -> bool:
        return self.usage_key is not None and self.match_type != "NONE"

    @classmethod
    def from_v1(cls, query: str, raw: Mapping[str, Any]) -> NameMatch:
        usage_key = _int_or_str(raw.get("usageKey"))
        synonym = bool(raw.get("synonym")) or str(raw.get("status", "")).upper().endswith("SYNONYM")
        accepted = _int_or_str(raw.get("acceptedUsageKey")) if synonym else usage_key
        return cls(
            query=query,
            usage_key=usage_key,  # type: ignore[arg-type]
            scientific_name=raw.get("scientificName"),
            canonical_name=raw.get("canonicalName"),
            rank=raw.get("rank"),
            status=raw.get("status"),
            match_type=str(raw.get("matchType") or "NONE").upper(),
            confidence=_confidence(raw.get("confidence")),
            synonym=synonym,
            accepted_key=(accepted if accepted is not None else usage_key),  # type: ignore[arg-type]
            species_key=_int_or_str(raw.get("speciesKey")),  # type: ignore[arg-type]
            kingdom=raw.get("kingdom"),
            raw=dict(raw),
        )

    @classmethod
    def from_v2(cls, query: str, raw: Mapping[str, Any]) -> NameMatch:
        usage = raw.get("usage") or {}
        accepted_usage = raw.get("acceptedUsage") or {}
        diagnostics = raw.get("diagnostics") or {}
        classification = raw.get("classification") or []
        by_rank = {str(c.get("rank", "")).upper(): c for c in classification if isinstance(c, Mapping)}
        usage_key = _int_or_str(usage.get("key"))
        synonym = (
            bool(raw.get("synonym"))
            or bool(accepted_usage)
            or str(usage.get("status", "")).upper().endswith("SYNONYM")
        )
        accepted = _int_or_str(accepted_usage.get("key")) if synonym and accepted_usage else usage_key
        match_type = str(diagnostics.get("matchType") or ("NONE" if usage_key is None else "EXACT")).upper()
        return cls(
            query=query,
            usage_key=usage_key,  # type: ignore[arg-type]
            scientific_name=usage.get("name"),
            canonical_name=usage.get("canonicalName"),
            rank=usage.get("rank"),
            status=usage.get("status"),
            match_type=match_type,
            confidence=_confidence(diagnostics.get("confidence")),
            synonym=synonym,
            accepted_key=accepted,  # type: ignore[arg-type]
            species_key=_int_or_str((by_rank.get("SPECIES") or {}).get("key")),  # type: ignore[arg-type]
            kingdom=(by_rank.get("KINGDOM") or {}).get("name"),
            raw=dict(raw),
        )


def _confidence(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class GbifClient:
    """GBIF API client (see module docstring). ``base_url`` is the v1 root.

    ``checklist_dataset_key`` restricts species searches (``iter_species_search``,
    ``iter_descendants``) to one checklist, by default the GBIF Backbone whose keys occurrences
    use; pass None for a server that has only one taxonomy. ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float | tuple[float, float] = (10, 60),
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        user_agent: str | None = None,
        session: requests.Session | None = None,
        max_offset: int = 100_000,
        checklist_dataset_key: str | None = BACKBONE_DATASET_KEY,
        v2_base_url: str | None = None,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        if v2_base_url:
            self.v2_base_url = v2_base_url.rstrip("/")
        elif self.base_url.endswith("/v1"):
            self.v2_base_url = self.base_url[: -len("/v1")] + "/v2"
        else:
            self.v2_base_url = self.base_url + "/v2"
        self.username = username or None
        self.password = password or None
        self.max_offset = int(max_offset)
        self.checklist_dataset_key = checklist_dataset_key
        self.http = GbifHttp(
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            user_agent=user_agent,
            session=session,
            pool_size=pool_size,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        return f"GbifClient({self.base_url!r}{user})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GbifClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _auth(self) -> tuple[str, str]:
        return _downloads.credentials_of(self)

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *, auth: bool = False) -> Any:
        """GET ``path`` (relative to ``base_url``, or absolute) and return the parsed JSON."""
        return self.http.get_json(self.url(path), params, auth=self._auth() if auth else None)

    def _iter_paged(self, path: str, params: Mapping[str, Any] | None, page_size: int) -> Iterator[dict]:
        """Offset paging on GBIF's envelope until ``endOfRecords`` (``count`` may be absent)."""
        offset = 0
        base = dict(params or {})
        while True:
            page = self.get_json(path, {**base, "offset": offset, "limit": page_size})
            if not isinstance(page, dict) or not isinstance(page.get("results", []), list):
                raise GbifResponseError(self.url(path), "expected a paged result object")
            results = page.get("results") or []
            yield from results
            offset += len(results)
            if page.get("endOfRecords", True) or not results:
                return
            if "count" in page and offset >= int(page["count"]):
                return

    # ------------------------------------------------------------------ occurrences
    def search_page(self, params: Mapping[str, Any], *, offset: int = 0, limit: int = MAX_PAGE_SIZE) -> dict:
        """One raw page of /occurrence/search (``limit`` capped at 300 as GBIF does)."""
        query: dict[str, Any] = dict(normalize_params(params))
        query["offset"] = max(0, int(offset))
        query["limit"] = max(0, min(int(limit), MAX_PAGE_SIZE))
        page = self.get_json("/occurrence/search", query)
        if not isinstance(page, dict) or not isinstance(page.get("results"), list) or "count" not in page:
            raise GbifResponseError(
                self.url("/occurrence/search"), "expected a search page with 'count' and 'results'", str(page)
            )
        return page

    def count(self, params: Mapping[str, Any]) -> int:
        """Exact number of records matching ``params`` (a search with ``limit=0``)."""
        return int(self.search_page(params, limit=0)["count"])

    def facet_counts(self, params: Mapping[str, Any], field: str, limit: int = 1000) -> list[tuple[str, int]]:
        """(value, count) buckets of ``field`` among records matching ``params``, largest first.

        GBIF names the facet in UPPER_SNAKE (``BASIS_OF_RECORD``); it is matched back to ``field``.
        """
        query: dict[str, Any] = dict(normalize_params(params))
        query.update({"facet": field, "facetLimit": int(limit), "limit": 0, "offset": 0})
        page = self.get_json("/occurrence/search", query)
        if not isinstance(page, dict):
            raise GbifResponseError(
                self.url("/occurrence/search"), "expected a search page with facets", str(page)
            )
        wanted = canonical_name(field)
        for facet in page.get("facets") or []:
            if canonical_name(str(facet.get("field", ""))) == wanted:
                return [(str(c["name"]), int(c["count"])) for c in facet.get("counts") or []]
        return []

    def iter_occurrences(
        self, params: Mapping[str, Any], *, page_size: int = MAX_PAGE_SIZE, workers: int = 1
    ) -> Iterator[dict]:
        """Every matching record exactly once; queries above ``max_offset`` are split transparently."""
        return iter_occurrences(self, params, page_size=page_size, workers=workers)

    def get_occurrence(self, key: int | str) -> dict:
        return self.get_json(f"/occurrence/{int(key)}")

    # ------------------------------------------------------------------ species
    def match_name(
        self, name: str, *, rank: str | None = None, kingdom: str | None = None, strict: bool = False
    ) -> NameMatch:
        """GBIF backbone name match (/v1/species/match)."""
        params = {"name": name, "rank": rank, "kingdom": kingdom, "strict": strict, "verbose": False}
        raw = self.get_json("/species/match", params)
        if not isinstance(raw, dict):
            raise GbifResponseError(self.url("/species/match"), "expected a match object", str(raw))
        return NameMatch.from_v1(name, raw)

    def match_name_v2(
        self,
        name: str,
        *,
        rank: str | None = None,
        kingdom: str | None = None,
        strict: bool = False,
        checklist_key: str | None = None,
    ) -> NameMatch:
        """Name match on /v2/species/match (string keys converted; synonyms carry acceptedUsage)."""
        params = {
            "scientificName": name,
            "taxonRank": rank,
            "kingdom": kingdom,
            "strict": True if strict else None,
            "checklistKey": checklist_key,
            "verbose": False,
        }
        url = f"{self.v2_base_url}/species/match"
        raw = self.get_json(url, params)
        if not isinstance(raw, dict):
            raise GbifResponseError(url, "expected a match object", str(raw))
        return NameMatch.from_v2(name, raw)

    def get_species(self, key: int) -> dict:
        return self.get_json(f"/species/{int(key)}")

    def get_parents(self, key: int) -> list[dict]:
        """Classification above ``key``, kingdom first (/species/{key}/parents is a bare array)."""
        parents = self.get_json(f"/species/{int(key)}/parents")
        if not isinstance(parents, list):
            raise GbifResponseError(self.url(f"/species/{int(key)}/parents"), "expected a list", str(parents))
        return parents

    def iter_children(self, key: int) -> Iterator[dict]:
        return self._iter_paged(f"/species/{int(key)}/children", None, SPECIES_PAGE_SIZE)

    def iter_synonyms(self, key: int) -> Iterator[dict]:
        return self._iter_paged(f"/species/{int(key)}/synonyms", None, SPECIES_PAGE_SIZE)

    def iter_species_search(self, params: Mapping[str, Any]) -> Iterator[dict]:
        """/v1/species/search, paged 1000 at a time (GBIF's cap)."""
        return self._iter_paged("/species/search", params, SPECIES_PAGE_SIZE)

    def iter_descendants(self, key: int, rank: str = "SPECIES") -> Iterator[dict]:
        """Accepted usages at ``rank`` anywhere below ``key`` (in ``checklist_dataset_key``)."""
        rank = rank.upper()
        params: dict[str, Any] = {"highertaxonKey": int(key), "rank": rank, "status": "ACCEPTED"}
        if self.checklist_dataset_key:
            params["datasetKey"] = self.checklist_dataset_key
        seen: set[Any] = set()
        for usage in self.iter_species_search(params):
            usage_key = usage.get("key")
            # the search is full-text backed; re-check what we asked for instead of trusting it
            if usage_key is None or usage_key in seen or int(usage_key) == int(key):
                continue
            if str(usage.get("rank", rank)).upper() != rank:
                continue
            if str(usage.get("taxonomicStatus", "ACCEPTED")).upper() != "ACCEPTED":
                continue
            seen.add(usage_key)
            yield usage

    def accepted_key(self, key: int) -> int:
        """The accepted usage key for ``key`` (identity for an accepted usage)."""
        usage = self.get_species(key)
        status = str(usage.get("taxonomicStatus", "")).upper()
        accepted = usage.get("acceptedKey")
        if accepted is not None and (usage.get("synonym") or "SYNONYM" in status):
            return int(accepted)
        return int(usage.get("key", key))

    # ------------------------------------------------------------------ downloads
    def request_download(
        self,
        predicate: dict,
        *,
        format: str = "DWCA",
        notification_addresses: Sequence[str] = (),
        description: str | None = None,
    ) -> str:
        """POST a download request; returns the download key (GBIF may return an existing one)."""
        return _downloads.request_download(
            self,
            predicate,
            format=format,
            notification_addresses=notification_addresses,
            description=description,
        )

    def download_status(self, key_or_doi: str) -> dict:
        return _downloads.download_status(self, key_or_doi)

    def iter_user_downloads(
        self, user: str | None = None, *, status: str | Sequence[str] | None = None
    ) -> Iterator[dict]:
        return _downloads.iter_user_downloads(self, user, status=status)

    def download_key_for_doi(self, doi: str) -> str:
        """Accepts ``10.15468/dl.x``, ``doi:10…`` and ``https://doi.org/10…``."""
        return _downloads.download_key_for_doi(self, doi)

    def wait_for_download(
        self,
        key_or_doi: str,
        *,
        poll_seconds: float = 30.0,
        timeout_seconds: float | None = None,
        on_status: Callable[[dict], None] | None = None,
    ) -> dict:
        return _downloads.wait_for_download(
            self, key_or_doi, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds, on_status=on_status
        )

    def fetch_download(
        self, key: str, dest: Path, *, progress: Callable[[int, int | None], None] | None = None
    ) -> Path:
        """Stream the download's zip to ``dest`` atomically (temp file + rename)."""
        return _downloads.fetch_download(self, key, Path(dest), progress=progress)

    def cancel_download(self, key: str) -> None:
        _downloads.cancel_download(self, key)
