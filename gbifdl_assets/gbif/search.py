"""Occurrence search paging past GBIF's offset cap.

GBIF answers ``offset + limit > max_offset`` (100,000) with 400, so a search matching more records
cannot be paged as one query. We split it into disjoint sub-queries, each matching at most
``max_offset`` records, whose counts add up *exactly* to the parent's count, then page each one.

Splitting order (the first dimension that loses no records wins, recursively per sub-query):

1. ``year`` ranges, halved with count calls (``"*,1999"`` / ``"2000,*"`` … down to single years).
   Records without a year match no year range, so when the halves do not add up to the parent the
   dimension is abandoned for that query.
2. ``datasetKey`` facet values (every record has one),
3. ``basisOfRecord`` facet values (every record has one),
4. ``month`` facet values (records without a month are lost, checked like years).

Values the user already gave are respected: an existing year range is the range that is halved, an
existing list of datasetKeys (or years, months, bases of record) is split value by value. If no
dimension works, :class:`GbifQueryTooLarge` tells the user to use the download source instead.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from typing import Any, Protocol

from gbifdl_assets.gbif.errors import GbifQueryTooLarge

log = logging.getLogger("gbifdl_assets.gbif")

#: GBIF's silent page-size cap for occurrence search
MAX_PAGE_SIZE = 300
#: parameters owned by the pager, never taken from the user's filters
PAGING_PARAMS = frozenset(
    {"OFFSET", "LIMIT", "FACET", "FACETLIMIT", "FACETOFFSET", "FACETMINCOUNT", "FACETMULTISELECT"}
)
#: facet dimensions tried after ``year``; ``lossless`` ones are present on every GBIF record
FACET_DIMENSIONS = ("datasetKey", "basisOfRecord", "month")

Query = dict[str, list[str]]


class SearchBackend(Protocol):
    """What the splitter needs from :class:`~gbifdl_assets.gbif.client.GbifClient`."""

    max_offset: int

    def count(self, params: Mapping[str, Any]) -> int: ...

    def facet_counts(
        self, params: Mapping[str, Any], field: str, limit: int = 1000
    ) -> list[tuple[str, int]]: ...

    def search_page(self, params: Mapping[str, Any], *, offset: int = 0, limit: int = 300) -> dict: ...


def canonical_name(name: str) -> str:
    """GBIF matches parameter names case- and separator-insensitively; so do we."""
    return re.sub(r"[._\-]", "", name).upper()


def normalize_params(params: Mapping[str, Any] | None) -> Query:
    """name → list of string values; paging/facet parameters and ``None`` values are dropped."""
    out: Query = {}
    for name, value in (params or {}).items():
        if value is None or canonical_name(name) in PAGING_PARAMS:
            continue
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        strings = [
            ("true" if v else "false") if isinstance(v, bool) else str(v) for v in values if v is not None
        ]
        if strings:
            out.setdefault(name, []).extend(strings)
    return out


def find_param(params: Mapping[str, Any], field: str) -> str | None:
    """The key under which ``field`` appears in ``params`` (any spelling), or None."""
    wanted = canonical_name(field)
    for name in params:
        if canonical_name(name) == wanted:
            return name
    return None


def with_param(params: Query, field: str, values: list[str]) -> Query:
    """A copy of ``params`` with ``field`` (any existing spelling) replaced by ``values``."""
    out = {k: list(v) for k, v in params.items() if canonical_name(k) != canonical_name(field)}
    out[field] = list(values)
    return out


def describe(params: Mapping[str, Any]) -> str:
    return (
        "&".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in params.items())
        or "(no filters)"
    )


# --------------------------------------------------------------------------- year ranges
YearRange = tuple[int | None, int | None]  # None = open end ("*")


def parse_year(value: str) -> YearRange | None:
    """``"2001"``, ``"1990,2000"``, ``"*,1999"``, ``"2000,*"`` → (low, high); None if unparseable."""
    parts = [p.strip() for p in value.split(",")]
    try:
        if len(parts) == 1:
            year = int(parts[0])
            return (year, year)
        if len(parts) == 2:
            low = None if parts[0] in ("*", "") else int(parts[0])
            high = None if parts[1] in ("*", "") else int(parts[1])
            return (low, high)
    except ValueError:
        return None
    return None


def format_year(rng: YearRange) -> str:
    low, high = rng
    if low is not None and low == high:
        return str(low)
    return f"{'*' if low is None else low},{'*' if high is None else high}"


def bisect_year(rng: YearRange, *, this_year: int | None = None) -> tuple[YearRange, YearRange] | None:
    """Halve a year range; open ends are halved towards plausible years. None if it is one year."""
    low, high = rng
    this_year = this_year or date.today().year
    if low is None and high is None:
        pivot = 2000
        return (None, pivot - 1), (pivot, None)
    if low is None:
        assert high is not None
        if high < -10_000:
            return None
        floor = 1500 if high > 1500 else high - 512
        mid = (floor + high) // 2
        return (None, mid), (mid + 1, high)
    if high is None:
        if low > 10_000:
            return None
        ceiling = max(this_year + 1, low + 1)
        mid = (low + ceiling) // 2
        return (low, mid), (mid + 1, None)
    if low >= high:
        return None
    mid = (low + high) // 2
    return (low, mid), (mid + 1, high)


# --------------------------------------------------------------------------- planning
class QuerySplitter:
    """Plans disjoint sub-queries of at most ``max_offset`` records each (see module docstring)."""

    def __init__(self, backend: SearchBackend, *, max_offset: int | None = None, facet_limit: int = 1000):
        self.backend = backend
        self.max_offset = int(max_offset if max_offset is not None else backend.max_offset)
        self.facet_limit = facet_limit
        self.count_calls = 0

    def _count(self, params: Query) -> int:
        self.count_calls += 1
        return int(self.backend.count(params))

    def plan(self, params: Mapping[str, Any], count: int | None = None) -> list[tuple[Query, int]]:
        """Leaf sub-queries with their counts; empty ones are left out."""
        query = normalize_params(params)
        if count is None:
            count = self._count(query)
        return self._plan(query, count, original=query)

    def _plan(self, query: Query, count: int, *, original: Query) -> list[tuple[Query, int]]:
        if count == 0:
            return []
        if count <= self.max_offset:
            return [(query, count)]
        tried: list[str] = []
        for name, splitter in (
            ("year", self._split_year),
            *((field, self._facet_splitter(field)) for field in FACET_DIMENSIONS),
        ):
            parts = splitter(query, count)
            if parts is None:
                tried.append(name)
                continue
            log.debug("split %s (%d records) by %s into %d parts", describe(query), count, name, len(parts))
            leaves: list[tuple[Query, int]] = []
            for sub_query, sub_count in parts:
                leaves.extend(self._plan(sub_query, sub_count, original=original))
            return leaves
        raise GbifQueryTooLarge(
            f"the occurrence search {describe(original)} matches more than {self.max_offset:,} records and "
            f"its part {describe(query)} ({count:,} records) cannot be split further by {', '.join(tried)}; "
            "GBIF's search API cannot page past that many records, so use the download source "
            "(source: {type: download}) for this training set, or narrow the filters"
        )

    def _exact(self, parts: list[tuple[Query, int]], count: int, dimension: str, query: Query) -> bool:
        total = sum(c for _, c in parts)
        if total != count:
            log.info(
                "splitting %s by %s covers %d of %d records (records without %s?); trying the next dimension",
                describe(query),
                dimension,
                total,
                count,
                dimension,
            )
            return False
        return True

    def _split_values(self, query: Query, field: str, values: list[str]) -> list[tuple[Query, int]]:
        return [(with_param(query, field, [v]), self._count(with_param(query, field, [v]))) for v in values]

    def _split_year(self, query: Query, count: int) -> list[tuple[Query, int]] | None:
        key = find_param(query, "year")
        values = query[key] if key else []
        if len(values) > 1:
            parts = self._split_values(query, key or "year", values)
            return parts if self._exact(parts, count, "year", query) else None
        rng = parse_year(values[0]) if values else (None, None)
        if rng is None:
            return None
        halves = bisect_year(rng)
        if halves is None:
            return None
        parts = self._split_values(query, key or "year", [format_year(h) for h in halves])
        return parts if self._exact(parts, count, "year", query) else None

    def _facet_splitter(self, field: str) -> Callable[[Query, int], list[tuple[Query, int]] | None]:
        def split(query: Query, count: int) -> list[tuple[Query, int]] | None:
            key = find_param(query, field)
            if key:
                values = query[key]
                if field == "month":
                    values = _expand_month_ranges(values)
                if len(values) <= 1:
                    return None
                parts = self._split_values(query, key, values)
            else:
                buckets = self.backend.facet_counts(query, field, limit=self.facet_limit)
                parts = [(with_param(query, field, [name]), int(n)) for name, n in buckets if int(n) > 0]
                if len(parts) <= 1 and sum(c for _, c in parts) == count:
                    return None  # a single value: adding it as a filter changes nothing
            return parts if self._exact(parts, count, field, query) else None

        return split


def _expand_month_ranges(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        rng = parse_year(value)  # same syntax
        if rng is None:
            out.append(value)
            continue
        low, high = rng
        low = 1 if low is None else low
        high = 12 if high is None else high
        out.extend(str(m) for m in range(low, high + 1))
    return out


# --------------------------------------------------------------------------- paging
class OccurrencePager:
    """Yields every record of a search exactly once, splitting past the offset cap.

    With ``workers > 1`` the pages of a sub-query are fetched concurrently (at most
    ``2 * workers`` in flight) and still yielded in offset order.
    """

    def __init__(self, backend: SearchBackend, *, page_size: int = MAX_PAGE_SIZE, workers: int = 1):
        self.backend = backend
        self.max_offset = int(backend.max_offset)
        self.page_size = max(1, min(int(page_size), MAX_PAGE_SIZE, self.max_offset))
        self.workers = max(1, int(workers))
        self.splitter = QuerySplitter(backend, max_offset=self.max_offset)
        self.pages_fetched = 0
        self.duplicates_dropped = 0

    def _limit(self, offset: int) -> int:
        return min(self.page_size, self.max_offset - offset)

    def _fetch(self, query: Query, offset: int) -> dict:
        self.pages_fetched += 1
        return self.backend.search_page(query, offset=offset, limit=self._limit(offset))

    def __call__(self, params: Mapping[str, Any]) -> Iterator[dict]:
        query = normalize_params(params)
        seen: set[Any] = set()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gbif-page") if self.workers > 1 else None
        try:
            for record in self._iter_query(query, pool):
                key = record.get("key")
                if not isinstance(key, int):  # keys are ints in GBIF JSON; gbifID is their string form
                    key = record.get("gbifID", key)
                if key is not None:
                    if key in seen:
                        # GBIF's index can change while we page; never hand a record out twice
                        self.duplicates_dropped += 1
                        continue
                    seen.add(key)
                yield record
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if self.duplicates_dropped:
                log.warning(
                    "dropped %d duplicate records while paging %s", self.duplicates_dropped, describe(query)
                )

    def _iter_query(self, query: Query, pool: ThreadPoolExecutor | None) -> Iterator[dict]:
        # Count first (a limit=0 request): a query that must be split is never paged at all.
        total = self.splitter._count(query)
        if total == 0:
            return
        if total <= self.max_offset:
            yield from self._iter_leaf(query, pool, depth=0)
            return
        leaves = self.splitter._plan(query, total, original=query)
        log.info(
            "occurrence search %s matches %d records (more than %d can be paged): %d sub-queries",
            describe(query),
            total,
            self.max_offset,
            len(leaves),
        )
        for leaf, _ in leaves:
            yield from self._iter_leaf(leaf, pool, depth=0)

    def _iter_leaf(self, query: Query, pool: ThreadPoolExecutor | None, depth: int) -> Iterator[dict]:
        """Page one sub-query planned to fit under the cap."""
        first = self._fetch(query, 0)
        count = int(first.get("count") or 0)
        if count > self.max_offset:
            # the index grew since it was counted: plan this part again (its first page is dropped)
            if depth >= 3:
                raise GbifQueryTooLarge(
                    f"the occurrence search {describe(query)} keeps changing size while being split; "
                    "use the download source for this training set"
                )
            for leaf, _ in self.splitter._plan(query, count, original=query):
                yield from self._iter_leaf(leaf, pool, depth + 1)
            return
        results = first.get("results") or []
        yield from results
        if first.get("endOfRecords") or not results:
            return
        offsets = range(self.page_size, min(count, self.max_offset), self.page_size)
        if pool is None:
            for offset in offsets:
                page = self._fetch(query, offset)
                results = page.get("results") or []
                yield from results
                if page.get("endOfRecords") or not results:
                    return
            return
        yield from self._iter_concurrent(query, offsets, pool)

    def _iter_concurrent(self, query: Query, offsets: range, pool: ThreadPoolExecutor) -> Iterator[dict]:
        pending: deque[Future[dict]] = deque()
        todo = iter(offsets)
        window = 2 * self.workers
        try:
            while True:
                while len(pending) < window:
                    offset = next(todo, None)
                    if offset is None:
                        break
                    pending.append(pool.submit(self._fetch, query, offset))
                if not pending:
                    return
                page = pending.popleft().result()
                results = page.get("results") or []
                yield from results
                if page.get("endOfRecords") or not results:
                    return
        finally:
            for future in pending:
                future.cancel()


def iter_occurrences(
    backend: SearchBackend, params: Mapping[str, Any], *, page_size: int = MAX_PAGE_SIZE, workers: int = 1
) -> Iterator[dict]:
    """Every occurrence matching ``params`` exactly once (see :class:`OccurrencePager`)."""
    return OccurrencePager(backend, page_size=page_size, workers=workers)(params)
