"""Exact, seeded, refresh-stable stratified sampling (what gbif-dl's balancing gets wrong)."""

from __future__ import annotations

import itertools
import zlib
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from gbifdl_assets.sampling.balance import (
    balance,
    grouped_rank,
    largest_remainder,
    order_keys,
    water_fill,
)
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.hashing import hash_strings
from gbifdl_assets.specs import BalancingSpec


def make(
    counts: dict[tuple[int, str | None], int], *, by: str = "datasetKey", start: int = 0, per_occ: int = 1
) -> pa.Table:
    """Rows per (label, stratum); ``per_occ`` images per occurrence; URLs unique per (label, stratum, i)."""
    cols: dict[str, list[Any]] = {"gbifID": [], "speciesKey": [], by: [], "identifier": []}
    for (label, stratum), n in counts.items():
        sid = zlib.crc32(str(stratum).encode()) % 997 + 1
        for i in range(start, start + n):
            # unique per (label, stratum, occurrence); `start` continues a stratum in a refresh
            cols["gbifID"].append(10**9 * label + 10**6 * sid + i // per_occ)
            cols["speciesKey"].append(label)
            cols[by].append(stratum)
            cols["identifier"].append(f"https://img.example/{label}/{stratum}/{i}.jpg")
    return pa.table(
        {
            "gbifID": pa.array(cols["gbifID"], pa.int64()),
            "speciesKey": pa.array(cols["speciesKey"], pa.int64()),
            by: pa.array(cols[by], pa.string()),
            "identifier": pa.array(cols["identifier"], pa.string()),
        }
    )


def bal(**fields: Any) -> BalancingSpec:
    return BalancingSpec.model_validate({"by": ["datasetKey"], **fields})


def picked(table: pa.Table, result) -> pa.Table:
    return table.take(pa.array(result.indices))


def per_stratum(table: pa.Table, result, by: str = "datasetKey") -> Counter:
    t = picked(table, result)
    return Counter(zip(t.column("speciesKey").to_pylist(), t.column(by).to_pylist(), strict=True))


def urls(table: pa.Table, result) -> set[str]:
    return set(picked(table, result).column("identifier").to_pylist())


# --- exactness ---------------------------------------------------------------------------------
def test_gbif_dl_counts_example_is_balanced_exactly() -> None:
    """anchors-downloaders.md §2.4: gbif-dl yields 18-25 per stream; we split 60 as the data allow."""
    table = make({(1, "A"): 50, (1, "B"): 400, (2, "A"): 120, (2, "B"): 30, (3, "A"): 900, (3, "B"): 10})
    result = balance(table, bal(max_per_class=60), label_col="speciesKey")
    assert per_stratum(table, result) == {
        (1, "A"): 30,
        (1, "B"): 30,
        (2, "A"): 30,
        (2, "B"): 30,
        (3, "A"): 50,
        (3, "B"): 10,
    }
    assert result.per_class == {1: 60, 2: 60, 3: 60}
    assert result.dropped["max_per_class"] == 1510 - 180


def test_asked_20_gives_exactly_20_wherever_20_exist() -> None:
    rng = np.random.default_rng(5)
    counts = {}
    for label in range(1, 201):
        for s in range(int(rng.integers(1, 6))):
            counts[(label, f"d{s}")] = int(rng.integers(1, 40))
    table = make(counts)
    result = balance(table, bal(max_per_class=20, min_per_class=1), label_col="speciesKey")
    available = Counter()
    for (label, _), n in counts.items():
        available[label] += n
    for label, n in available.items():
        assert result.per_class[label] == min(20, n), label
    shortfall = {label: 20 - n for label, n in available.items() if n < 20}
    assert result.shortfall == shortfall


def test_strata_are_water_filled() -> None:
    # 5 strata, cap 50: the two small ones give everything, the rest share evenly (+1 for one)
    table = make({(1, "a"): 3, (1, "b"): 7, (1, "c"): 100, (1, "d"): 100, (1, "e"): 100})
    result = balance(table, bal(max_per_class=50), label_col="speciesKey")
    got = per_stratum(table, result)
    assert got[(1, "a")] == 3 and got[(1, "b")] == 7
    assert sorted(got[(1, s)] for s in "cde") == [13, 13, 14]
    assert sum(got.values()) == 50


def test_null_stratum_is_a_stratum_and_by_can_be_empty_or_several() -> None:
    table = make({(1, None): 30, (1, "A"): 30})
    result = balance(table, bal(max_per_class=20), label_col="speciesKey")
    assert per_stratum(table, result) == {(1, None): 10, (1, "A"): 10}
    result = balance(table, bal(max_per_class=20, by=[]), label_col="speciesKey")
    assert result.per_class == {1: 20}
    t2 = table.append_column("countryCode", pa.array(["DE", "FR"] * 30))
    result = balance(t2, bal(max_per_class=20, by=["datasetKey", "countryCode"]), label_col="speciesKey")
    got = Counter(
        zip(
            picked(t2, result).column("datasetKey").to_pylist(),
            picked(t2, result).column("countryCode").to_pylist(),
            strict=True,
        )
    )
    assert sorted(got.values()) == [5, 5, 5, 5]


def test_unknown_by_column_is_a_clear_error() -> None:
    table = make({(1, "A"): 3})
    with pytest.raises(SamplingError, match="balancing.by names column institutionCode"):
        balance(table, bal(by=["institutionCode"]), label_col="speciesKey")


# --- determinism -------------------------------------------------------------------------------
def test_same_input_and_seed_same_picks_whatever_the_row_order() -> None:
    table = make({(1, "A"): 200, (1, "B"): 50, (2, "A"): 80, (3, "C"): 300})
    spec = bal(max_per_class=25)
    first = urls(table, balance(table, spec, label_col="speciesKey"))
    perm = np.random.default_rng(1).permutation(table.num_rows)
    shuffled = table.take(pa.array(perm))
    assert urls(shuffled, balance(shuffled, spec, label_col="speciesKey")) == first
    other = urls(table, balance(table, bal(max_per_class=25, seed=1), label_col="speciesKey"))
    assert other != first
    assert len(other) == len(first) == 75


# --- refresh -----------------------------------------------------------------------------------
def test_refresh_without_previous_only_new_images_displace_old_picks() -> None:
    old = make({(1, "A"): 100, (1, "B"): 100})
    spec = bal(max_per_class=20)
    before = balance(old, spec, label_col="speciesKey")
    new = pa.concat_tables([old, make({(1, "A"): 30}, start=100)])  # 30 new images in stratum A only
    after = balance(new, spec, label_col="speciesKey")
    b = picked(old, before)
    a = picked(new, after)
    in_b = {
        u
        for u, s in zip(b.column("identifier").to_pylist(), b.column("datasetKey").to_pylist(), strict=True)
        if s == "B"
    }
    in_a = {
        u
        for u, s in zip(a.column("identifier").to_pylist(), a.column("datasetKey").to_pylist(), strict=True)
        if s == "B"
    }
    assert in_a == in_b  # untouched stratum, same quota: identical picks
    old_a = set(b.column("identifier").to_pylist()) - in_b
    new_a = set(a.column("identifier").to_pylist()) - in_a
    lost = old_a - new_a
    gained_new = {u for u in new_a - old_a if int(u.rsplit("/", 1)[1].split(".")[0]) >= 100}
    assert len(lost) == len(gained_new)  # every displacement is caused by a new image
    # and the new images that got in have lower order keys than every old pick they displaced
    key = dict(
        zip(
            new.column("identifier").to_pylist(),
            order_keys(hash_strings(new.column("identifier")), 0),
            strict=True,
        )
    )
    if lost:
        assert max(key[u] for u in gained_new) < min(key[u] for u in lost)


def test_refresh_with_previous_keeps_every_old_pick_the_quota_allows() -> None:
    old = make({(1, "A"): 100, (1, "B"): 100, (2, "A"): 15})
    spec = bal(max_per_class=20)
    before = balance(old, spec, label_col="speciesKey")
    prev = sorted(urls(old, before))
    # many new images everywhere: without `previous` some old picks would be displaced
    new = pa.concat_tables([old, make({(1, "A"): 500, (1, "B"): 500, (2, "A"): 10}, start=100)])
    plain = balance(new, spec, label_col="speciesKey")
    assert not set(prev) <= urls(new, plain)
    sticky = balance(new, spec, label_col="speciesKey", previous_urls=prev)
    assert set(prev) <= urls(new, sticky)
    assert sticky.per_class == {1: 20, 2: 20}
    assert sticky.previous == {"eligible": 35, "kept": 35}
    # a new publisher for class 1: quotas become 7/7/6, so each old stratum keeps its quota of old picks
    grown = pa.concat_tables([new, make({(1, "C"): 50})])
    again = balance(grown, spec, label_col="speciesKey", previous_urls=prev)
    got = per_stratum(grown, again)
    assert sorted(got[(1, s)] for s in "ABC") == [6, 7, 7]
    kept_old = urls(grown, again) & set(prev)
    assert len(kept_old) == got[(1, "A")] + got[(1, "B")] + 15


# --- min, weighted, totals, occurrences ------------------------------------------------------------
def test_min_per_class_drops_and_reports() -> None:
    table = make({(1, "A"): 4, (2, "A"): 5, (3, "A"): 50})
    result = balance(table, bal(max_per_class=10, min_per_class=5), label_col="speciesKey")
    assert result.per_class == {2: 5, 3: 10}
    assert result.below_min == {1: 4}
    assert result.dropped["class_below_min"] == 4
    assert result.shortfall == {2: 5}


def test_weighted_mode_keeps_natural_proportions() -> None:
    table = make({(1, "A"): 600, (2, "A"): 300, (3, "A"): 100})
    result = balance(table, bal(mode="weighted", max_total=100), label_col="speciesKey")
    assert result.per_class == {1: 60, 2: 30, 3: 10}
    assert result.dropped["max_total"] == 900
    # rounding: 3 equal classes, 2 places -> exactly 2, deterministic
    table = make({(1, "A"): 1, (2, "A"): 1, (3, "A"): 1})
    a = balance(table, bal(mode="weighted", max_total=2), label_col="speciesKey")
    b = balance(table, bal(mode="weighted", max_total=2), label_col="speciesKey")
    assert sum(a.per_class.values()) == 2 and a.per_class == b.per_class
    # strata inside a class are proportional too
    table = make({(1, "A"): 300, (1, "B"): 100})
    result = balance(table, bal(mode="weighted", max_total=40), label_col="speciesKey")
    assert per_stratum(table, result) == {(1, "A"): 30, (1, "B"): 10}


def test_max_total_in_exact_mode_water_fills_classes() -> None:
    table = make({(1, "A"): 5, (2, "A"): 50, (3, "A"): 100})
    result = balance(table, bal(max_total=60), label_col="speciesKey")
    assert result.per_class[1] == 5
    assert sorted([result.per_class[2], result.per_class[3]]) == [27, 28]
    assert sum(result.per_class.values()) == 60


def test_max_per_occurrence() -> None:
    table = make({(1, "A"): 90}, per_occ=3)  # 30 occurrences of 3 images
    one = balance(table, bal(max_per_occurrence=1), label_col="speciesKey")
    assert len(one.indices) == 30
    assert len(set(picked(table, one).column("gbifID").to_pylist())) == 30
    assert one.dropped["per_occurrence_cap"] == 60
    two = balance(table, bal(max_per_occurrence=2), label_col="speciesKey")
    assert Counter(picked(table, two).column("gbifID").to_pylist()).most_common(1)[0][1] == 2
    assert len(two.indices) == 60
    unlimited = balance(table, bal(max_per_occurrence=None), label_col="speciesKey")
    assert len(unlimited.indices) == 90


# --- building blocks against brute force ------------------------------------------------------
def _water_fill_reference(sizes: list[int], budget: int, tiebreak: list[int]) -> list[int]:
    if sum(sizes) <= budget:
        return list(sizes)
    level = max(t for t in range(max(sizes) + 1) if sum(min(s, t) for s in sizes) <= budget)
    q = [min(s, level) for s in sizes]
    left = budget - sum(q)
    open_ = sorted((tiebreak[i], i) for i, s in enumerate(sizes) if s > level)
    for _, i in open_[:left]:
        q[i] += 1
    return q


def test_water_fill_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    groups, sizes, ties, budgets, expected = [], [], [], [], []
    for g in range(300):
        m = int(rng.integers(1, 7))
        s = [int(x) for x in rng.integers(1, 30, m)]
        t = [int(x) for x in rng.integers(0, 2**62, m)]
        b = int(rng.integers(0, 120))
        groups += [g] * m
        sizes += s
        ties += t
        budgets.append(b)
        expected += _water_fill_reference(s, b, t)
    got = water_fill(np.array(groups), np.array(sizes), np.array(budgets), np.array(ties, dtype=np.uint64))
    assert got.tolist() == expected


def test_largest_remainder_sums_exactly_and_stays_within_one() -> None:
    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 1000, 50)
    group = np.repeat(np.arange(5), 10)
    budget = np.array([0, 1, 77, 300, 100_000])
    q = largest_remainder(group, sizes, budget, rng.integers(0, 2**62, 50).astype(np.uint64))
    for g in range(5):
        m = group == g
        total = sizes[m].sum()
        b = min(budget[g], total)
        assert q[m].sum() == b
        exact = b * sizes[m] / total
        assert np.all(np.abs(q[m] - exact) < 1)
        assert np.all(q[m] <= sizes[m])


def test_grouped_rank_equals_lexsort_even_with_truncated_key_collisions() -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 50, 5000)
    keys = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    keys[::3] = (keys[::3] >> np.uint64(20)) << np.uint64(20)  # equal top bits, different low bits
    keys[1::3] = keys[::3][: len(keys[1::3])] | np.uint64(1)
    order = np.lexsort((keys, codes))
    expected = np.empty(len(codes), np.int64)
    for code in np.unique(codes):
        members = order[codes[order] == code]
        expected[members] = np.arange(len(members))
    np.testing.assert_array_equal(grouped_rank(codes, keys), expected)
    # large codes take the lexsort path
    big = codes.astype(np.int64) << 45
    np.testing.assert_array_equal(grouped_rank(big, keys), expected)


def test_order_keys_put_sticky_rows_first() -> None:
    h = np.arange(10, dtype=np.uint64) * np.uint64(2**60)
    sticky = np.zeros(10, bool)
    sticky[[7, 9]] = True
    keys = order_keys(h, 0, sticky)
    assert set(np.argsort(keys)[:2]) == {7, 9}
    assert list(itertools.islice(np.argsort(order_keys(h, 0)), 10)) != list(np.argsort(order_keys(h, 1)))
