"""The export read by the ML tools that read dataset metadata: Hugging Face ``datasets``, ``mlcroissant``.

Offline: ``datasets`` gets HF_DATASETS_OFFLINE/HF_HUB_OFFLINE and a cache in the test's tmp folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gbifdl_assets_tests.unit.test_export_writers import run_export


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    _, out, _ = run_export(tmp_path_factory.mktemp("ml"))
    return out


@pytest.fixture
def hf_datasets(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    return datasets


def test_metadata_jsonl_per_split(export_dir):
    man = pq.read_table(export_dir / "manifest.parquet").to_pylist()
    for split in ("train", "val", "test"):
        lines = (
            (export_dir / "imagefolder" / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        )
        rows = [json.loads(x) for x in lines]
        expected = [m for m in man if m["split"] == split]
        assert len(rows) == len(expected) > 0
        by_key = {m["content_key"]: m for m in expected}
        for r in rows:
            m = by_key[r["content_key"]]
            assert (export_dir / "imagefolder" / split / r["file_name"]).is_file()
            assert f"imagefolder/{split}/{r['file_name']}" == m["imagefolder_path"]
            assert r["label"] == m["label_index"] and r["taxon_key"] == m["label"]
            assert r["attribution"] == m["creator"] and r["license"] == m["license"]
            assert r["gbifID"] == m["gbifID"]


def test_load_dataset_imagefolder(export_dir, hf_datasets, tmp_path):
    ds = hf_datasets.load_dataset(
        "imagefolder", data_dir=str(export_dir / "imagefolder"), cache_dir=str(tmp_path / "cache")
    )
    assert sorted(ds) == ["test", "train", "validation"]
    assert {k: ds[k].num_rows for k in ds} == {"train": 18, "validation": 6, "test": 6}
    man = {r["content_key"]: r for r in pq.read_table(export_dir / "manifest.parquet").to_pylist()}
    for split, ours in (("train", "train"), ("validation", "val"), ("test", "test")):
        for row in ds[split]:
            m = man[row["content_key"]]
            assert m["split"] == ours and row["label"] == m["label_index"]
            assert row["label_name"] == m["label_name"] and row["creator"] == m["creator"]
            img = row["image"]
            assert (img.width, img.height) == (m["width"], m["height"])
    classes = json.loads((export_dir / "classes.json").read_text())
    # the data card's snippet: the label as a ClassLabel with the names of classes.json
    cast = ds["train"].cast_column("label", hf_datasets.ClassLabel(names=[c["name"] for c in classes]))
    assert cast.features["label"].names[0] == classes[0]["name"]
