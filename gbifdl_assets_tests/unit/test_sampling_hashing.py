"""The stable hash under sampling and splits: vectorised == reference, pinned values, spread."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from gbifdl_assets.sampling import hashing
from gbifdl_assets.sampling.hashing import (
    hash_bytes_reference,
    hash_ints,
    hash_strings,
    mix64,
    to_unit_interval,
)


def _strings(n: int, seed: int = 1) -> list[str | None]:
    rnd = random.Random(seed)
    alphabet = "abcxyz/:._-0123456789éü漢字🦋"
    out: list[str | None] = ["", "a", "abcdefgh", "abcdefghi", "x" * 300, None, "é" * 13]
    for _ in range(n):
        if rnd.random() < 0.05:
            out.append(None)
        else:
            out.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 90))))
    return out


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks so a few hundred strings cross many block boundaries (and the thread pool)."""
    monkeypatch.setattr(hashing, "_BLOCK_ROWS", 37)


@pytest.mark.parametrize("seed", [0, 1, 2**63 + 5])
def test_vectorised_matches_reference(seed: int, small_blocks: None) -> None:
    values = _strings(500)
    expected = np.array([hash_bytes_reference(v, seed) for v in values], dtype=np.uint64)
    arr = pa.array(values, pa.string())
    np.testing.assert_array_equal(hash_strings(arr, seed), expected)
    np.testing.assert_array_equal(hash_strings(arr.cast(pa.large_string()), seed), expected)
    np.testing.assert_array_equal(hash_strings(arr.dictionary_encode(), seed), expected)
    np.testing.assert_array_equal(hash_strings(values, seed), expected)
    # sliced arrays, chunked arrays and a subset of rows
    np.testing.assert_array_equal(hash_strings(arr.slice(11, 300), seed), expected[11:311])
    chunked = pa.chunked_array([arr[:123], arr[123:124], arr[124:]])
    np.testing.assert_array_equal(hash_strings(chunked, seed), expected)
    rows = np.sort(np.random.default_rng(3).choice(len(values), 200, replace=False))
    np.testing.assert_array_equal(hash_strings(chunked, seed, rows=rows), expected[rows])
    np.testing.assert_array_equal(hash_strings(arr, seed, rows=rows), expected[rows])


def test_pinned_values() -> None:
    """The algorithm is a contract: a refresh relies on it. Changing these numbers re-draws
    every sample and every split of every training set built before."""
    url = "https://inaturalist-open-data.s3.amazonaws.com/photos/123456/medium.jpg"
    assert hash_bytes_reference(url, 0) == 0xC908DC15D1EB82BC
    assert int(hash_strings([url], 0)[0]) == 0xC908DC15D1EB82BC
    assert hash_bytes_reference("", 7) == 0x3F7023CE48685D62
    assert int(hash_strings(["Vanessa atalanta é"], 2**40)[0]) == 0xEA1EB6F31F2DB806
    assert int(hash_ints(np.array([42]), 0)[0]) == 0xCA685846B557F0FC


def test_seed_and_content_change_the_hash() -> None:
    a = hash_strings(["https://x/1.jpg", "https://x/2.jpg"], 0)
    b = hash_strings(["https://x/1.jpg", "https://x/2.jpg"], 1)
    assert a[0] != a[1]
    assert (a != b).all()
    # strings differing only by trailing NUL bytes or length differ
    assert hash_bytes_reference("ab", 0) != hash_bytes_reference("ab\0", 0)
    assert hash_bytes_reference(None, 0) != hash_bytes_reference("", 0)


def test_uniform_spread_of_similar_urls() -> None:
    """Sequential URLs (as media hosts hand them out) must spread evenly over [0, 1)."""
    urls = pa.array(
        [f"https://inaturalist-open-data.s3.amazonaws.com/photos/{i}/medium.jpg" for i in range(200_000)]
    )
    u = to_unit_interval(hash_strings(urls, 0))
    counts = np.bincount((u * 20).astype(int), minlength=20)
    expected = len(u) / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60, counts  # 19 dof: p(chi2 > 60) < 1e-5 for a uniform hash
    assert len(np.unique(hash_strings(urls, 0))) == len(urls)
    # every bit is used
    bits = (hash_strings(urls, 0)[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.01)


def test_ints_and_mix() -> None:
    x = np.arange(100_000, dtype=np.int64)
    h = hash_ints(x, 3)
    assert len(np.unique(h)) == len(x)
    np.testing.assert_array_equal(h, hash_ints(x, 3))
    assert (h != hash_ints(x, 4)).all()
    assert len(np.unique(mix64(x.astype(np.uint64)))) == len(x)  # a bijection
