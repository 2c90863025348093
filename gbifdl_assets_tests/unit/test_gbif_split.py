"""Paging past GBIF's offset cap, against an in-memory GBIF that enforces it like GBIF does.

The fake answers /occurrence/search with counts, facets and pages over synthetic records, returns
400 ``Max offset of N exceeded`` exactly where GBIF would, rejects parameters it does not know,
and counts how often each record was served, so duplicates and gaps both fail the tests.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
import requests
from requests.adapters import BaseAdapter

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.errors import GbifQueryTooLarge
from gbifdl_assets.gbif.search import QuerySplitter, bisect_year, format_year, parse_year

DATASETS = np.array(["ds-a", "ds-b", "ds-c", "ds-d"])
BASES = np.array(["HUMAN_OBSERVATION", "PRESERVED_SPECIMEN", "MACHINE_OBSERVATION"])
FILTERS = {"year", "month", "datasetKey", "basisOfRecord", "occurrenceStatus"}


class FakeGbif(BaseAdapter):
    """/v1/occurrence/search over columns ``year`` (-1 = none), ``month`` (0 = none), ``ds``, ``bor``."""

    def __init__(self, year, month, ds, bor, *, max_offset: int):
        super().__init__()
        self.year, self.month, self.ds, self.bor = year, month, ds, bor
        self.keys = np.arange(1, len(year) + 1, dtype=np.int64)
        self.max_offset = max_offset
        self.cache: dict[tuple, np.ndarray] = {}
        self.lock = threading.Lock()
        self.calls: list[dict[str, list[str]]] = []
        self.served: Counter[int] = Counter()

    # -- query evaluation
    @staticmethod
    def _range_mask(column: np.ndarray, values: list[str], missing: int) -> np.ndarray:
        mask = np.zeros(len(column), dtype=bool)
        for value in values:
            low, _, high = value.partition(",") if "," in value else (value, ",", value)
            sel = column != missing
            if low not in ("*", ""):
                sel &= column >= int(low)
            if high not in ("*", ""):
                sel &= column <= int(high)
            mask |= sel
        return mask

    def select(self, filters: dict[str, list[str]]) -> np.ndarray:
        key = tuple(sorted((k, tuple(sorted(v))) for k, v in filters.items()))
        with self.lock:
            hit = self.cache.get(key)
        if hit is not None:
            return hit
        mask = np.ones(len(self.year), dtype=bool)
        if "year" in filters:
            mask &= self._range_mask(self.year, filters["year"], -1)
        if "month" in filters:
            mask &= self._range_mask(self.month, filters["month"], 0)
        if "datasetKey" in filters:
            mask &= np.isin(DATASETS[self.ds], filters["datasetKey"])
        if "basisOfRecord" in filters:
            mask &= np.isin(BASES[self.bor], filters["basisOfRecord"])
        idx = np.nonzero(mask)[0]
        with self.lock:
            self.cache[key] = idx
        return idx

    def facet(self, idx: np.ndarray, field: str, limit: int) -> list[dict]:
        column = {"year": self.year, "month": self.month, "datasetKey": self.ds, "basisOfRecord": self.bor}[
            field
        ]
        names = {"datasetKey": DATASETS, "basisOfRecord": BASES}.get(field)
        values, counts = np.unique(column[idx], return_counts=True)
        buckets = [
            (str(names[v]) if names is not None else str(v), int(c))
            for v, c in zip(values, counts, strict=True)
            if names is not None or v > 0
        ]
        buckets.sort(key=lambda b: -b[1])
        return [{"name": n, "count": c} for n, c in buckets[:limit]]

    def record(self, i: int) -> dict:
        rec = {
            "key": int(self.keys[i]),
            "gbifID": str(self.keys[i]),
            "datasetKey": str(DATASETS[self.ds[i]]),
            "basisOfRecord": str(BASES[self.bor[i]]),
        }
        if self.year[i] != -1:
            rec["year"] = int(self.year[i])
        if self.month[i] != 0:
            rec["month"] = int(self.month[i])
        return rec

    # -- transport
    def _response(self, request, status: int, body: bytes, content_type: str) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.headers["Content-Type"] = content_type
        response._content = body
        response.url = request.url
        response.request = request
        return response

    def send(self, request, **kwargs) -> requests.Response:
        parts = urlsplit(request.url)
        assert parts.path == "/v1/occurrence/search", parts.path
        params: dict[str, list[str]] = defaultdict(list)
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            params[k].append(v)
        with self.lock:
            self.calls.append(dict(params))
        offset = int(params.pop("offset", ["0"])[0])
        limit = min(int(params.pop("limit", ["20"])[0]), 300)
        facet = params.pop("facet", [None])[0]
        facet_limit = int(params.pop("facetLimit", ["10"])[0])
        unknown = set(params) - FILTERS
        if unknown:
            return self._response(request, 400, f"Unknown parameter {unknown}".encode(), "text/plain")
        if offset + limit > self.max_offset:
            text = f"Max offset of {self.max_offset} exceeded: {offset} + {limit}"
            return self._response(request, 400, text.encode(), "text/plain")
        idx = self.select(dict(params))
        page = idx[offset : offset + limit]
        with self.lock:
            self.served.update(int(self.keys[i]) for i in page)
        body = {
            "offset": offset,
            "limit": limit,
            "endOfRecords": offset + len(page) >= len(idx),
            "count": int(len(idx)),
            "results": [self.record(int(i)) for i in page],
            "facets": [{"field": facet.upper(), "counts": self.facet(idx, facet, facet_limit)}]
            if facet
            else [],
        }
        return self._response(request, 200, json.dumps(body).encode(), "application/json")

    def close(self) -> None:
        pass

    def client(self, **kwargs) -> GbifClient:
        session = requests.Session()
        session.mount("https://", self)
        return GbifClient(session=session, max_offset=self.max_offset, sleep=lambda s: None, **kwargs)

    def page_calls(self) -> list[dict[str, list[str]]]:
        return [c for c in self.calls if c.get("limit", ["20"])[0] != "0"]


def big_gbif(max_offset: int = 100_000) -> FakeGbif:
    """250k records in 4 datasets; ds-a (130k) always has a year, the others sometimes do not."""
    rng = np.random.default_rng(42)
    sizes = [130_000, 60_000, 40_000, 20_000]
    ds = np.repeat(np.arange(4), sizes)
    rng.shuffle(ds)
    n = len(ds)
    year = rng.integers(1900, 2025, n)
    year[ds == 0] = rng.integers(1950, 2025, int((ds == 0).sum()))
    year[(ds != 0) & (rng.random(n) < 0.03)] = -1
    month = rng.integers(1, 13, n)
    month[rng.random(n) < 0.02] = 0
    bor = rng.choice(3, n, p=[0.8, 0.15, 0.05])
    return FakeGbif(year, month, ds, bor, max_offset=max_offset)


@pytest.fixture(scope="module")
def gbif250k() -> FakeGbif:
    return big_gbif()


def assert_complete(fake: FakeGbif, records: list[dict], expected_keys: set[int]) -> None:
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "a record was yielded twice"
    assert set(keys) == expected_keys, "records are missing or extra"
    assert all(n == 1 for n in fake.served.values()), "a record was fetched twice"


@pytest.mark.parametrize("workers", [1, 4])
def test_250k_records_each_exactly_once(gbif250k: FakeGbif, workers: int):
    fake = gbif250k
    fake.served.clear()
    fake.calls.clear()
    client = fake.client()
    records = list(client.iter_occurrences({"occurrenceStatus": "PRESENT"}, workers=workers))
    assert len(records) == 250_000
    assert_complete(fake, records, set(range(1, 250_001)))
    # the year split lost the year-less records, so datasetKey was used, then years inside ds-a
    page_queries = {
        tuple(sorted((k, tuple(v)) for k, v in c.items() if k not in ("offset", "limit")))
        for c in fake.page_calls()
    }
    assert (("datasetKey", ("ds-b",)), ("occurrenceStatus", ("PRESENT",))) in page_queries
    assert (
        ("datasetKey", ("ds-a",)),
        ("occurrenceStatus", ("PRESENT",)),
        ("year", ("*,1999",)),
    ) in page_queries
    # every page but the last of a sub-query is full
    assert sum(1 for c in fake.page_calls()) <= 250_000 // 300 + 8


def test_results_are_in_the_same_order_with_workers(gbif250k: FakeGbif):
    client = gbif250k.client()
    params = {"datasetKey": "ds-d"}
    sequential = [r["key"] for r in client.iter_occurrences(params)]
    parallel = [r["key"] for r in client.iter_occurrences(params, workers=3)]
    assert sequential == parallel and len(sequential) == 20_000


def test_plan_is_disjoint_and_sums_exactly(gbif250k: FakeGbif):
    fake = gbif250k
    client = fake.client()
    leaves = QuerySplitter(client).plan({})
    assert sum(c for _, c in leaves) == 250_000
    assert all(0 < c <= 100_000 for _, c in leaves)
    sets = [set(fake.select(q).tolist()) for q, _ in leaves]
    assert sum(len(s) for s in sets) == len(set().union(*sets)) == 250_000


def deep_gbif(max_offset: int) -> FakeGbif:
    """30k records of one dataset, all with year and month, ~3k per year."""
    rng = np.random.default_rng(7)
    n = 30_000
    year = rng.integers(2015, 2025, n)
    month = rng.integers(1, 13, n)
    ds = np.zeros(n, dtype=int)
    bor = rng.choice(3, n, p=[0.8, 0.15, 0.05])
    return FakeGbif(year, month, ds, bor, max_offset=max_offset)


def test_deep_split_down_to_months():
    fake = deep_gbif(max_offset=2_000)
    records = list(fake.client().iter_occurrences({}, page_size=300, workers=2))
    assert_complete(fake, records, set(range(1, 30_001)))
    used = {k for c in fake.page_calls() for k in c if k not in ("offset", "limit")}
    assert used == {"year", "basisOfRecord", "month"}, (
        "single years of one dataset split by basis, then month"
    )


def test_existing_year_range_and_dataset_list_are_respected(gbif250k: FakeGbif):
    fake = gbif250k
    fake.calls.clear()
    fake.served.clear()
    small = FakeGbif(fake.year, fake.month, fake.ds, fake.bor, max_offset=10_000)
    params = {"year": "2000,2010", "datasetKey": ["ds-a", "ds-c"], "basisOfRecord": "HUMAN_OBSERVATION"}
    expected = set(
        small.keys[small.select({k: v if isinstance(v, list) else [v] for k, v in params.items()})].tolist()
    )
    assert len(expected) > 10_000
    records = list(small.client().iter_occurrences(params))
    assert_complete(small, records, expected)
    for call in small.calls:
        for value in call["year"]:
            low, high = parse_year(value)
            assert low is not None and high is not None and 2000 <= low <= high <= 2010, value
        assert set(call["datasetKey"]) <= {"ds-a", "ds-c"}
        assert call["basisOfRecord"] == ["HUMAN_OBSERVATION"]


def test_exactly_max_offset_records_pages_within_the_cap():
    rng = np.random.default_rng(1)
    n = 1_000
    fake = FakeGbif(
        rng.integers(2000, 2002, n), np.ones(n, int), np.zeros(n, int), np.zeros(n, int), max_offset=1_000
    )
    records = list(fake.client().iter_occurrences({}))
    assert_complete(fake, records, set(range(1, 1001)))
    assert [c["limit"] for c in fake.page_calls()] == [["300"], ["300"], ["300"], ["100"]]


def test_unsplittable_query_says_use_downloads():
    n = 3_000
    fake = FakeGbif(np.full(n, 2020), np.full(n, 5), np.zeros(n, int), np.zeros(n, int), max_offset=1_000)
    with pytest.raises(GbifQueryTooLarge, match=r"use the download source") as err:
        list(fake.client().iter_occurrences({"datasetKey": "ds-a"}))
    assert "1,000" in str(err.value) and "datasetKey=ds-a" in str(err.value)
    assert fake.served == Counter(), "nothing paged before the plan failed"


def test_year_less_records_inside_one_dataset_are_not_lost():
    """Year and month both lose records here: the split must fail rather than drop them."""
    n = 3_000
    year = np.where(np.arange(n) % 10 == 0, -1, 2000 + np.arange(n) % 5)
    fake = FakeGbif(year, np.zeros(n, int), np.zeros(n, int), np.zeros(n, int), max_offset=1_000)
    with pytest.raises(GbifQueryTooLarge):
        list(fake.client().iter_occurrences({}))


@pytest.mark.parametrize(
    ("rng", "halves"),
    [
        ((None, None), ((None, 1999), (2000, None))),
        ((1700, 2025), ((1700, 1862), (1863, 2025))),
        ((2000, 2001), ((2000, 2000), (2001, 2001))),
        ((2020, 2020), None),
    ],
)
def test_bisect_year(rng, halves):
    assert bisect_year(rng, this_year=2025) == halves


def test_open_ended_year_ranges_converge():
    for target in (2024, 1987, 1650):
        rng: tuple[int | None, int | None] = (None, None)
        for _ in range(30):  # keep the half that holds `target`: must reach that single year
            halves = bisect_year(rng, this_year=2025)
            if halves is None:
                break
            low, high = halves[0]
            rng = (
                halves[0]
                if (low is None or low <= target) and (high is None or target <= high)
                else halves[1]
            )
        assert rng == (target, target)
    assert format_year((None, 1999)) == "*,1999" and format_year((2000, None)) == "2000,*"
    assert format_year((2001, 2001)) == "2001" and parse_year("*,1999") == (None, 1999)
