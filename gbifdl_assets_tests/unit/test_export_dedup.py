"""Split assignment of duplicate clusters at export (export/dedup.py), on tables: no Dagster, no images."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from gbifdl_assets.export.dedup import DuplicatePolicy, check_no_duplicates_across_splits, resolve_duplicates
from gbifdl_assets.media.duplicates import DEFAULT_MAX_DISTANCE
from gbifdl_assets.pipeline.training_export import duplicate_policy
from gbifdl_assets.specs import DuplicateOptions, TrainingSetSpec

RNG = np.random.default_rng(11)
HASHES = [RNG.integers(0, 256, 32, dtype=np.uint8) for _ in range(4)]


def _near(h: np.ndarray, bits: int) -> str:
    out = h.copy()
    for b in range(bits):  # flip bits outside the index key's bytes (odd bytes)
        out[1 + 2 * (b % 8)] ^= 1 << (b // 8)
    return out.tobytes().hex()


def _table(rows: list[tuple[str, str, int, str | None, str | None]]) -> pa.Table:
    keys, splits, labels, shas, hashes = zip(*rows, strict=True)
    return pa.table(
        {
            "content_key": list(keys),
            "split": list(splits),
            "label": list(labels),
            "sha256": list(shas),
            "phash": list(hashes),
        }
    )


def test_a_cluster_goes_to_its_representatives_split_and_copies_are_kept_once_per_class() -> None:
    a, b, c = (h.tobytes().hex() for h in HASHES[:3])
    table = _table(
        [
            ("k5", "test", 1, "s5", _near(HASHES[0], 6)),  # near copy of k2
            ("k2", "val", 1, "s2", a),  # representative of the cluster (smallest key)
            ("k9", "train", 1, "s2", None),  # identical bytes as k2, no hash (e.g. an older ledger)
            ("k7", "train", 2, "s7", a),  # same photo under another label: a different example
            ("k1", "train", 1, "s1", b),  # unrelated
            ("k3", "test", 3, "s3", c),  # unrelated
        ]
    )
    out, report = resolve_duplicates(table)
    rows = {r["content_key"]: r for r in out.to_pylist()}
    assert sorted(rows) == ["k1", "k2", "k3", "k7"]  # k5 and k9 are copies of k2 in its class
    assert rows["k2"]["split"] == "val" and rows["k7"]["split"] == "val"
    assert rows["k1"]["split"] == "train" and rows["k3"]["split"] == "test"
    assert report.clusters == 1 and report.images_in_clusters == 4
    assert report.moved == 3 and report.dropped == 2 and sorted(report.dropped_keys) == ["k5", "k9"]
    example = report.examples[0]
    assert example["representative"] == "k2" and example["split"] == "val"
    assert {m["content_key"]: (m["split_before"], m["kept"]) for m in example["members"]} == {
        "k2": ("val", True),
        "k5": ("test", False),
        "k7": ("train", True),
        "k9": ("train", False),
    }
    assert check_no_duplicates_across_splits(out)[0]


def test_keep_copies_and_distance_and_switch() -> None:
    a = HASHES[0].tobytes().hex()
    table = _table([("k1", "train", 1, "s1", a), ("k2", "test", 1, "s2", _near(HASHES[0], 12))])
    kept, report = resolve_duplicates(table, DuplicatePolicy(keep_copies_within_split=True))
    assert kept.column("split").to_pylist() == ["train", "train"] and report.dropped == 0
    apart, report = resolve_duplicates(table, DuplicatePolicy(max_distance=8))  # 12 bits apart: distinct
    assert apart.column("split").to_pylist() == ["train", "test"] and report.clusters == 0
    off, report = resolve_duplicates(table, DuplicatePolicy(enabled=False))
    assert off.column("split").to_pylist() == ["train", "test"] and report.clusters == 0
    passed, details = check_no_duplicates_across_splits(off)
    assert not passed and details["clusters_across_splits"] == 1
    assert details["examples"][0]["splits"] == ["test", "train"] and "images.duplicates" in details["message"]


def test_a_refresh_keeps_images_in_their_splits() -> None:
    """Adding unrelated images, or reordering rows, changes no existing image's split."""
    a, b = HASHES[0].tobytes().hex(), HASHES[1].tobytes().hex()
    first = _table([("k4", "test", 1, "s4", _near(HASHES[0], 2)), ("k3", "val", 1, "s3", a)])
    later = _table(
        [("k8", "train", 1, "s8", b), ("k3", "val", 1, "s3", a), ("k4", "test", 1, "s4", _near(HASHES[0], 2))]
    )
    before, _ = resolve_duplicates(first, DuplicatePolicy(keep_copies_within_split=True))
    after, _ = resolve_duplicates(later, DuplicatePolicy(keep_copies_within_split=True))
    split = dict(zip(after["content_key"].to_pylist(), after["split"].to_pylist(), strict=True))
    assert dict(zip(before["content_key"].to_pylist(), before["split"].to_pylist(), strict=True)) == {
        k: split[k] for k in ("k3", "k4")
    }


def test_spec_option_reaches_the_export_policy() -> None:
    assert DuplicateOptions().max_distance == DEFAULT_MAX_DISTANCE  # one default, in two layers
    spec = TrainingSetSpec.model_validate(
        {
            "name": "cats",
            "taxa": ["Panthera leo"],
            "images": {"duplicates": {"max_distance": 12, "keep_copies_within_split": True}},
        }
    )
    assert duplicate_policy(spec) == DuplicatePolicy(max_distance=12, keep_copies_within_split=True)
    assert duplicate_policy(None) == DuplicatePolicy()
    with pytest.raises(ValueError, match="max_distance"):
        TrainingSetSpec.model_validate(
            {"name": "cats", "taxa": ["Panthera leo"], "images": {"duplicates": {"max_distance": 100}}}
        )
