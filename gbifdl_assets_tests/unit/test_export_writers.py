"""Export writers on a small synthetic export: layout, classes, shards, credits, citation, data card."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbifdl_assets.export import layout
from gbifdl_assets.export.layout import ExportError, export_training_set, label_dirname
from gbifdl_assets.media.ledger import LEDGER_SCHEMA
from gbifdl_assets.sampling.manifest import MANIFEST_SCHEMA
from gbifdl_assets.storage import LocalStorage

CLASSES = [
    (5219404, "Panthera leo", (200, 40, 40)),
    (5219416, "Panthera pardus", (40, 200, 40)),
    (12, "Ünïcode name/x", (40, 40, 200)),
]
SPLITS = ["train"] * 6 + ["val", "val"] + ["test", "test"]


def build_inputs(root: Path, *, per_class: int = 10, missing: int = 2) -> dict:
    """~30 small images (one colour per class, some noise, mixed sizes, one PNG) + manifest + ledger."""
    store = LocalStorage(root / "store")
    man, led = [], []
    n = 0
    for label, name, colour in CLASSES:
        for i in range(per_class + (missing if label == 12 else 0)):
            url = f"https://img.example.org/{label}/{i}.jpg"
            ck = hashlib.sha256(url.encode()).hexdigest()
            fmt = "PNG" if n == 3 else "JPEG"
            size = (24 + (i % 3) * 4, 24 + (i % 2) * 6)
            img = Image.new("RGB", size, colour)
            img.putpixel((i % size[0], 0), (255, 255, 255))
            buf = io.BytesIO()
            img.save(buf, format=fmt)
            key = f"images/original/{ck[:2]}/{ck}.{'png' if fmt == 'PNG' else 'jpg'}"
            stored = i < per_class
            if stored:
                store.write_bytes(key, buf.getvalue())
            led.append(
                {
                    "content_key": ck,
                    "url": url,
                    "status": "ok" if stored else "failed",
                    "stored": stored,
                    "key": key if stored else None,
                    "bytes": len(buf.getvalue()),
                    "width": size[0],
                    "height": size[1],
                    "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
                    "format": fmt,
                }
            )
            man.append(
                {
                    "content_key": ck,
                    "url": url,
                    "label": label,
                    "label_name": name,
                    "speciesKey": label,
                    "gbifID": 1000 + n,
                    "media_index": 0,
                    "datasetKey": f"ds-{n % 2}",
                    "publisher": "pub",
                    "license": ["CC-BY-4.0", "CC0-1.0", "CC-BY-NC-4.0"][n % 3],
                    "license_raw": "x",
                    "creator": f"Creator | {n}",
                    "rightsHolder": f"Holder {n}",
                    "references": f"https://inat.example.org/obs/{n}" if n % 2 else None,
                    "split": SPLITS[i % len(SPLITS)],
                    "split_group": str(n),
                    "stratum": "",
                    "snapshot_id": "s1",
                }
            )
            n += 1
    led_table = pa.Table.from_pylist(led)
    for f in LEDGER_SCHEMA:
        if f.name not in led_table.column_names:
            led_table = led_table.append_column(f.name, pa.nulls(len(led_table), f.type))
    return {
        "manifest": pa.Table.from_pylist(man, schema=MANIFEST_SCHEMA),
        "ledger": led_table.select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA),
        "store": store,
        "coordinates": pa.table(
            {
                "gbifID": [1000 + k for k in range(n)],
                "decimalLatitude": [-30.0 + k for k in range(n)],
                "decimalLongitude": [10.0 + 3 * k for k in range(n)],
            }
        ),
    }


CITATION = {
    "type": "download",
    "key": "0001-1",
    "doi": "10.15468/dl.abc123",
    "created": "2026-01-02T03:04:05Z",
}


def run_export(tmp_path: Path, **kw) -> tuple[dict, Path, layout.ExportSummary]:
    inputs = build_inputs(tmp_path)
    out = tmp_path / "export"
    summary = export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        inputs["store"],
        LocalStorage(out),
        training_set="cats",
        citation=kw.pop("citation", CITATION),
        coordinates=inputs["coordinates"],
        shard_size=kw.pop("shard_size", 4),
        **kw,
    )
    return inputs, out, summary


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return run_export(tmp_path_factory.mktemp("exp"))


def test_summary_and_manifest(exported):
    inputs, out, summary = exported
    assert summary.images == 30 and summary.missing == 2 and summary.classes == 3
    assert summary.splits == {"test": 6, "train": 18, "val": 6}
    marker = json.loads((out / "export.json").read_text())
    assert marker["images"] == 30 and marker["training_set"] == "cats"
    man = pq.read_table(out / "manifest.parquet")
    assert man.num_rows == 30
    for col in ("key", "local_path", "width", "height", "sha256", "label_index", "imagefolder_path"):
        assert col in man.column_names, col
    assert all(Path(p).is_file() for p in man.column("local_path").to_pylist())
    assert not [p for p in out.iterdir() if p.name.startswith(".gbifdl-tmp")]


def test_classes_json_ordered_by_taxon_key_and_matches_folder_sort(exported):
    _, out, _ = exported
    classes = json.loads((out / "classes.json").read_text())
    assert [c["label"] for c in classes] == [12, 5219404, 5219416]
    assert [c["index"] for c in classes] == [0, 1, 2]
    # torchvision / Keras sort folder names as strings: that order must be our index order
    dirs = sorted(p.name for p in (out / "imagefolder" / "train").iterdir() if p.is_dir())
    assert dirs == [c["dirname"] for c in classes]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", d) for d in dirs)


def test_label_dirname_is_safe_and_stable():
    assert label_dirname(5219404, "Panthera leo") == "0005219404_Panthera_leo"
    assert label_dirname(7, "Ünïcode name/x") == "0000000007_Unicode_name_x"
    assert label_dirname(7, None) == "0000000007"
    assert label_dirname(7, "../..") == "0000000007"


def test_imagefolder_layout_holds_every_image_once(exported):
    inputs, out, _ = exported
    man = pq.read_table(out / "manifest.parquet").to_pylist()
    files = sorted(p.relative_to(out).as_posix() for p in (out / "imagefolder").rglob("*") if p.is_file())
    # beside the images: one Hugging Face metadata.jsonl per split folder (test_export_ml_metadata)
    meta = [f"imagefolder/{s}/metadata.jsonl" for s in ("test", "train", "val")]
    assert [f for f in files if f.endswith("metadata.jsonl")] == meta
    files = [f for f in files if f not in meta]
    assert files == sorted(r["imagefolder_path"] for r in man)
    for r in man:
        f = out / r["imagefolder_path"]
        assert hashlib.sha256(f.read_bytes()).hexdigest() == r["sha256"]
        assert f.parent.parent.name == r["split"]
        assert f.stat().st_ino == Path(r["local_path"]).stat().st_ino  # hardlinked on one filesystem
    assert any(p.endswith(".png") for p in files)


def test_webdataset_shards(exported):
    _, out, summary = exported
    man = {r["content_key"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    shards = sorted((out / "webdataset").glob("*.tar"))
    assert summary.shards == {"test": 2, "train": 5, "val": 2}
    assert len(shards) == 9 and shards[0].name == "test-000000.tar"
    seen = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            assert len(names) <= 3 * 4
            for name in names:
                ck, ext = name.split(".", 1)
                data = tar.extractfile(name).read()
                seen.setdefault(ck, {})[ext] = data
                assert man[ck]["split"] == shard.name.split("-")[0]
    assert set(seen) == set(man)
    for ck, members in seen.items():
        assert set(members) == {man[ck]["ext"], "cls", "json"}
        assert int(members["cls"]) == man[ck]["label_index"]
        doc = json.loads(members["json"])
        assert doc["gbifID"] == man[ck]["gbifID"] and doc["license"] == man[ck]["license"]
        assert doc["creator"] == man[ck]["creator"] and doc["name"] == man[ck]["label_name"]
        assert hashlib.sha256(members[man[ck]["ext"]]).hexdigest() == man[ck]["sha256"]


def test_shards_are_reproducible(tmp_path, exported):
    _, out, _ = exported
    _, out2, _ = run_export(tmp_path)
    for shard in (out / "webdataset").glob("*.tar"):
        assert (out2 / "webdataset" / shard.name).read_bytes() == shard.read_bytes()


def test_credits_cover_every_exported_image(exported):
    _, out, _ = exported
    man = pq.read_table(out / "manifest.parquet").to_pylist()
    with open(out / "credits.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["content_key"] for r in rows} == {r["content_key"] for r in man}
    assert len(rows) == len(man)
    by_key = {r["content_key"]: r for r in rows}
    for m in man:
        c = by_key[m["content_key"]]
        assert c["creator"] == m["creator"] and c["rightsHolder"] == m["rightsHolder"]
        assert c["image_url"] == m["url"]
        assert c["source_url"] == (m["references"] or f"https://www.gbif.org/occurrence/{m['gbifID']}")
        assert c["license_url"].startswith("https://creativecommons.org/")
    assert by_key[man[0]["content_key"]]["license_label"] in {"CC BY 4.0", "CC0 1.0", "CC BY-NC 4.0"}
    md = (out / "CREDITS.md").read_text()
    assert all(m["content_key"][:12] in md for m in man)
    assert "Creator \\| 0" in md or "Creator \\| 1" in md  # a '|' in a name does not break the table


def test_citation_for_download_and_search(tmp_path, exported):
    _, out, _ = exported
    text = (out / "CITATION.md").read_text()
    assert "GBIF.org (2026-01-02) GBIF Occurrence Download https://doi.org/10.15468/dl.abc123" in text
    assert "ds-0" in text and "ds-1" in text
    search = {"type": "search", "params": {"taxonKey": 5219404}, "date": "2026-02-03T00:00:00Z"}
    _, out2, _ = run_export(tmp_path, citation=search)
    text2 = (out2 / "CITATION.md").read_text()
    assert "2026-02-03" in text2 and "taxonKey" in text2 and "derived dataset" in text2
    assert "doi.org" not in text2


def test_datacard_renders_with_its_images(exported):
    _, out, _ = exported
    page = (out / "datacard.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 2
    for src in srcs:
        img = Image.open(out / src)
        img.load()
        assert img.format == "PNG" and img.width > 100
    md = (out / "datacard.md").read_text()
    for src in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / src).is_file()
    assert "Panthera leo" in md and "CC BY 4.0" in md and "| train | 18 |" in md
    assert "30 of the 30 exported occurrences (30 images) have coordinates" in md
    # the map has red dots where the points are (lon 10, lat -30 → pixel)
    m = Image.open(out / "datacard/map.png").convert("RGB")
    x, y = round((10 + 180) / 360 * 999), round((90 + 30) / 180 * 499)
    assert m.getpixel((x, y)) == (200, 40, 40)


def test_failure_mid_export_leaves_nothing(tmp_path, monkeypatch):
    from gbifdl_assets.export import datacard

    inputs = build_inputs(tmp_path)
    out = tmp_path / "export"

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(datacard, "write_datacard", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_training_set(
            inputs["manifest"],
            inputs["ledger"],
            inputs["store"],
            LocalStorage(out),
            training_set="cats",
            citation=CITATION,
        )
    assert not out.exists() or list(out.iterdir()) == []


def test_failure_on_rewrite_removes_old_marker(tmp_path, monkeypatch):
    from gbifdl_assets.export import webdataset

    inputs, out, _ = run_export(tmp_path)
    assert (out / "export.json").is_file()
    monkeypatch.setattr(webdataset, "write_webdataset", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        export_training_set(
            inputs["manifest"],
            inputs["ledger"],
            inputs["store"],
            LocalStorage(out),
            training_set="cats",
            citation=CITATION,
        )
    assert not (out / "export.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".gbifdl-tmp")]


def test_imagefolder_only_and_bad_inputs(tmp_path):
    inputs = build_inputs(tmp_path)
    out = LocalStorage(tmp_path / "e1")
    s = export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        inputs["store"],
        out,
        training_set="t",
        formats=["imagefolder"],
        citation={},
    )
    assert s.shards == {} and not (tmp_path / "e1" / "webdataset").exists()
    # re-exporting with the other format replaces the folder: no stale ImageFolder tree is left
    (tmp_path / "e1" / "notes.txt").write_text("mine")
    export_training_set(
        inputs["manifest"], inputs["ledger"], inputs["store"], out, training_set="t", formats=["webdataset"]
    )
    assert not (tmp_path / "e1" / "imagefolder").exists() and (tmp_path / "e1" / "webdataset").is_dir()
    assert (tmp_path / "e1" / "notes.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="unknown export format"):
        export_training_set(
            inputs["manifest"], inputs["ledger"], inputs["store"], out, training_set="t", formats=["zip"]
        )
    empty = inputs["ledger"].slice(0, 0)
    with pytest.raises(ExportError, match="download the images"):
        export_training_set(
            inputs["manifest"], empty, inputs["store"], LocalStorage(tmp_path / "e2"), training_set="t"
        )
    with pytest.raises(ExportError, match="'split'"):
        export_training_set(
            inputs["manifest"].drop(["split"]), inputs["ledger"], inputs["store"], out, training_set="t"
        )


def test_repeated_ledger_entries_do_not_duplicate_images(tmp_path):
    inputs = build_inputs(tmp_path)
    ledger = pa.concat_tables([inputs["ledger"], inputs["ledger"].slice(0, 5)])
    table, missing = layout.prepare_export_table(inputs["manifest"], ledger)
    assert table.num_rows == 30 and missing == 2
    assert len(set(table.column("content_key").to_pylist())) == 30


def test_credits_csv_neutralises_spreadsheet_formulas(tmp_path):
    """A creator called '=HYPERLINK(...)' must reach the CSV as text, not as a formula."""
    from gbifdl_assets.export.credits import write_credits
    from gbifdl_assets.storage import LocalStorage

    table = pa.table(
        {
            "content_key": ["a" * 64, "b" * 64],
            "split": ["train", "val"],
            "gbifID": [1, 2],
            "label": ["1", "2"],
            "creator": ['=HYPERLINK("http://evil.example","x")', "Ann-Marie"],
            "rightsHolder": ["@SUM(A1)", "-1+2"],
            "license": ["CC_BY_4_0", "CC0_1_0"],
            "url": ["http://img/1.jpg", "http://img/2.jpg"],
            "references": [None, None],
        }
    )
    write_credits(table, LocalStorage(tmp_path))
    with open(tmp_path / "credits.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["creator"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[0]["rightsHolder"] == "'@SUM(A1)"
    assert rows[1]["rightsHolder"] == "'-1+2"
    assert rows[1]["creator"] == "Ann-Marie"  # a hyphen inside a name is left alone
    assert "=HYPERLINK" in (tmp_path / "CREDITS.md").read_text()  # Markdown is not a spreadsheet
