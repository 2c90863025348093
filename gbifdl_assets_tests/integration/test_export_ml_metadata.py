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


# ------------------------------------------------------------------------------------ Croissant
@pytest.fixture(scope="module")
def croissant_export(tmp_path_factory):
    """An export with provenance, records (countries, coordinates, years) and a search source too."""
    import pyarrow as pa

    from gbifdl_assets.export.layout import export_training_set
    from gbifdl_assets.storage import LocalStorage
    from gbifdl_assets_tests.unit.test_export_writers import CITATION, build_inputs

    tmp = tmp_path_factory.mktemp("cr")
    inputs = build_inputs(tmp)
    coords = inputs["coordinates"]
    n = coords.num_rows
    records = coords.append_column("countryCode", pa.array(["DE" if i % 3 else "FR" for i in range(n)]))
    records = records.append_column("year", pa.array([2001 + i % 20 for i in range(n)], pa.int32()))
    (tmp / "export").mkdir()
    (tmp / "export" / "notes.txt").write_text("the user's own file, not the export's")
    search = {"type": "search", "params": {"taxonKey": 5219404}, "date": "2026-02-03"}
    summary = export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        inputs["store"],
        LocalStorage(tmp / "export"),
        training_set="cats",
        citation={"sources": [CITATION, search]},
        records=records,
        shard_size=4,
        provenance={
            "spec_name": "cats",
            "spec_fingerprint": "f" * 16,
            "snapshot_id": "snap-1",
            "rules_version": "7",
            "manifest_id": "man-9",
            "version": "2.1.0",
        },
    )
    return tmp / "export", summary


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_croissant_validates_and_checksums_match(croissant_export):
    mlc = pytest.importorskip("mlcroissant")
    out, summary = croissant_export
    ds = mlc.Dataset(jsonld=str(out / "croissant.json"))  # raises on any validation error
    assert not ds.metadata.ctx.issues.errors and not ds.metadata.ctx.issues.warnings
    doc = json.loads((out / "croissant.json").read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1" and doc["version"] == "2.1.0"
    objects = [d for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
    listed = {d["contentUrl"] for d in objects}
    on_disk = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not p.relative_to(out).as_posix().startswith("imagefolder/0")
    }
    images = {p for p in on_disk if p.startswith("imagefolder/") and not p.endswith(".jsonl")}
    # every file but the images, croissant.json itself, export.json and the user's own file
    assert listed == on_disk - images - {"croissant.json", "export.json", "notes.txt"}
    assert {f"webdataset/{s}" for s in ("train-000000.tar", "val-000001.tar")} <= listed
    for d in objects:
        path = out / d["contentUrl"]
        assert d["sha256"] == _sha256(path), d["contentUrl"]
        assert d["contentSize"] == f"{path.stat().st_size} B"
    sets = {d["@id"]: d for d in doc["distribution"] if d["@type"] == "cr:FileSet"}
    assert set(sets) == {"imagefolder-images", "webdataset-shards"}
    assert sorted(sets["imagefolder-images"]["includes"]) == [
        "imagefolder/*/*/*.jpg",
        "imagefolder/*/*/*.png",
    ]
    # the image checksums are in the manifest: they match the image files
    man = pq.read_table(out / "manifest.parquet").to_pylist()
    assert all(_sha256(out / m["imagefolder_path"]) == m["sha256"] for m in man)
    assert summary.images == len(man)


def test_croissant_records_read_through_mlcroissant(croissant_export):
    mlc = pytest.importorskip("mlcroissant")
    out, _ = croissant_export
    ds = mlc.Dataset(jsonld=str(out / "croissant.json"))
    man = {m["content_key"]: m for m in pq.read_table(out / "manifest.parquet").to_pylist()}
    records = list(ds.records("images"))
    assert len(records) == len(man) == 30

    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    for r in records:
        m = man[text(r["images/content_key"])]
        assert r["images/label"] == m["label_index"] and r["images/taxon_key"] == m["label"]
        assert text(r["images/split"]) == m["split"] and r["images/gbifID"] == m["gbifID"]
        assert text(r["images/license"]) == m["license"] and text(r["images/creator"]) == m["creator"]
        assert text(r["images/rightsHolder"]) == m["rightsHolder"]
        assert text(r["images/attribution"]) == m["attribution"]
        assert text(r["images/file"]) == m["imagefolder_path"]
        img = r["images/image"]
        assert (img.width, img.height) == (m["width"], m["height"])
    classes = [{k.split("/")[1]: text(v) for k, v in r.items()} for r in ds.records("classes")]
    expected = [
        {
            "index": c["index"],
            "taxon_key": c["label"],
            "name": c["name"],
            "dirname": c["dirname"],
            "count": c["count"],
        }
        for c in json.loads((out / "classes.json").read_text())
    ]
    assert classes == expected


def test_croissant_citation_and_rai(croissant_export):
    mlc = pytest.importorskip("mlcroissant")
    out, _ = croissant_export
    meta = mlc.Dataset(jsonld=str(out / "croissant.json")).metadata
    assert "https://doi.org/10.15468/dl.abc123" in meta.cite_as and '"taxonKey": 5219404' in meta.cite_as
    assert "https://creativecommons.org/licenses/by/4.0/" in meta.license
    assert "https://doi.org/10.15468/dl.abc123" in meta.data_collection and "snap-1" in meta.data_collection
    assert "2 images of the manifest" in meta.data_collection_missing_data
    biases = " ".join(meta.data_biases)
    # counted over distinct exported occurrences: 30 occurrences, 10 in FR (i % 3 == 0) and 20 in DE
    assert "hold 100% of the 30 exported occurrences with a country (DE 20, FR 10)" in biases
    assert "Publisher skew: only 2 datasets" in biases
    assert any("CC BY 4.0" in x for x in meta.data_limitations)
    assert any("Names of natural persons" in x for x in meta.personal_sensitive_information)
    # the RAI vocabulary's spelling (croissant_rai.ttl); mlcroissant 1.1.1 looks for "...TimeFrame"
    doc = json.loads((out / "croissant.json").read_text())
    assert doc["rai:dataCollectionTimeframe"] == ["2001-01-01", "2020-12-31"]
    assert "rules version 7" in meta.data_annotation_protocol[0]


# ------------------------------------------------------------------- the data card's snippets
def _snippets(md: str) -> dict[str, str]:
    """The data card's code blocks by the tool named in the line above each."""
    import re

    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"^([^\n(]+?) \(needs [^\n]*\):\n\n```python\n(.*?)\n```", md, re.M | re.S)
    }


def test_datacard_snippets_run_on_the_export(export_dir, hf_datasets, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    pytest.importorskip("mlcroissant")
    snippets = _snippets((export_dir / "datacard.md").read_text(encoding="utf-8"))
    assert set(snippets) == {
        "PyTorch",
        "TensorFlow / Keras",
        "Hugging Face datasets",
        "WebDataset",
        "Croissant",
    }
    html = (export_dir / "datacard.html").read_text(encoding="utf-8")
    classes = json.loads((export_dir / "classes.json").read_text())
    monkeypatch.chdir(export_dir)  # the snippets say EXPORT = "." (this folder)
    for tool, code in snippets.items():
        assert code.splitlines()[0].split()[0] in {"import", "from"} and code.splitlines()[0] in html
        ns: dict = {}
        exec(compile(code, f"<datacard: {tool}>", "exec"), ns)  # noqa: S102 - our own snippet
        if tool in ("PyTorch", "WebDataset"):
            assert tuple(ns["images"].shape[1:]) == (3, 224, 224) and int(ns["labels"].max()) < len(classes)
        elif tool == "TensorFlow / Keras":
            assert tuple(ns["images"].shape[1:]) == (224, 224, 3) and int(ns["labels"].numpy().max()) < len(
                classes
            )
        elif tool == "Hugging Face datasets":
            assert ns["ds"]["train"].features["label"].names == [c["dirname"] for c in classes]
            assert ns["example"]["label"] in range(len(classes)) and ns["example"]["gbifID"] > 0
        else:
            assert ns["record"]["images/image"].size[0] > 0 and "images/license" in ns["record"]
