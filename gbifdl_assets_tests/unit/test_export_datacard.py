"""The data card is right: counts add up, provenance, small-class warnings, licences, duplicates."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbifdl_assets.export.dedup import DuplicatePolicy
from gbifdl_assets.export.layout import ExportError, export_training_set
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.test_export_writers import CITATION, build_inputs

PROVENANCE = {
    "spec_name": "big-cats",
    "spec_fingerprint": "9f2c4e1d0a7b3c55",
    "snapshot_id": "snap-2026-01-02-abc",
    "snapshot_source": CITATION,
    "rules_version": "42",
    "manifest_id": "manifest-7d1e",
    "date": "2026-01-02",
}


def _inputs(tmp_path):
    """Two images per occurrence; a snapshot-like records table with 2 media rows per occurrence,
    coordinates for every other occurrence, and occurrences that are not exported at all."""
    inputs = build_inputs(tmp_path)
    man = inputs["manifest"]
    n = man.num_rows
    i = man.schema.get_field_index("gbifID")
    man = man.set_column(i, man.schema.field(i), pa.array([1000 + k // 2 for k in range(n)], pa.int64()))
    inputs["manifest"] = man
    rows = []
    for gid in range(1000, 1000 + n // 2 + 40):  # 40 snapshot occurrences the manifest never picked
        for media in (0, 1):
            located = gid % 2 == 0
            rows.append(
                {
                    "gbifID": gid,
                    "media_index": media,
                    "decimalLatitude": 45.0 if located else None,
                    "decimalLongitude": (gid - 1000) * 1.0 if located else None,
                    "countryCode": "FR",
                }
            )
    inputs["records"] = pa.Table.from_pylist(rows)
    return inputs


def _export(tmp_path, inputs=None, **kw):
    inputs = inputs or _inputs(tmp_path)
    out = tmp_path / "export"
    summary = export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        inputs["store"],
        LocalStorage(out),
        training_set="big-cats",
        records=inputs["records"],
        **kw,
    )
    return inputs, out, summary


def _tables(md: str, nth: int = 0) -> dict[str, list[list[str]]]:
    """The ``nth`` Markdown table under each heading: rows of cells (header row first)."""
    found: dict[str, list[list[list[str]]]] = {}
    heading, previous = "", ""
    for line in md.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip().replace("\\", "") for c in line.strip().strip("|").split("|")]
            if not previous.startswith("|"):
                found.setdefault(heading, []).append([])
            found[heading][-1].append(cells)
        previous = line
    return {k: v[nth] for k, v in found.items() if len(v) > nth}


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    inputs, out, summary = _export(tmp_path_factory.mktemp("card"), provenance=PROVENANCE)
    return inputs, out, summary, (out / "datacard.md").read_text(encoding="utf-8")


def test_counts_add_up(card):
    inputs, out, summary, md = card
    man = pq.read_table(out / "manifest.parquet")
    exported_ids = set(man["gbifID"].to_pylist())
    assert summary.images == 30 and len(exported_ids) == 15
    assert "30 images of 15 occurrences in 3 classes (train 18, val 6, test 6)." in md
    tables = _tables(md)
    splits = tables["Splits"]
    assert splits[-1][:2] == ["total", "30"] and sum(int(r[1]) for r in splits[1:-1]) == 30
    classes = tables["Classes"]
    assert sum(int(r[-1]) for r in classes[1:]) == 30
    for row in classes[1:]:  # per-split columns add up to the class total
        assert sum(int(v) for v in row[3:-1]) == int(row[-1])
    licences = tables["Licences"]
    assert licences[-1][2] == "30" and sum(int(r[2]) for r in licences[1:-1]) == 30
    # the map counts the exported occurrences, once each, not the snapshot's rows
    located = {g for g in exported_ids if g % 2 == 0}
    assert f"{len(located)} of the 15 exported occurrences (30 images) have coordinates" in md
    # ...and draws exactly those: one red dot per located exported occurrence (lon = gbifID - 1000)
    img = Image.open(out / "datacard" / "map.png").convert("RGB")
    w, h = img.size

    def dot(lon: float, lat: float) -> bool:
        x, y = round((lon + 180) / 360 * (w - 1)), round((90 - lat) / 180 * (h - 1))
        return img.getpixel((x, y)) == (200, 40, 40)

    assert all(dot(g - 1000, 45.0) for g in located)
    assert not any(dot(g - 1000, 45.0) for g in range(1016, 1040, 2))  # snapshot-only occurrences


def test_provenance_section(card):
    _, out, summary, md = card
    prov = {r[0]: r[1] for r in _tables(md)["Provenance"][1:]}
    assert prov["training-set spec"] == "big-cats"
    assert prov["spec fingerprint"] == "9f2c4e1d0a7b3c55"
    assert prov["occurrence snapshot"] == "snap-2026-01-02-abc"
    assert prov["annotation rules version"] == "42" and prov["manifest"] == "manifest-7d1e"
    assert prov["data retrieved"] == "2026-01-02" and prov["exported"] == summary.created
    assert "https://doi.org/10.15468/dl.abc123" in prov["snapshot source"]
    # the snapshot source doubles as the citation when none is given
    assert "https://doi.org/10.15468/dl.abc123" in (out / "CITATION.md").read_text()
    html = (out / "datacard.html").read_text()
    assert "9f2c4e1d0a7b3c55" in html and 'href="https://doi.org/10.15468/dl.abc123"' in html


def test_small_class_warning_threshold(tmp_path, card):
    _, _, _, md = card
    # val and test hold 2 images per class: below the default 5
    small = _tables(md, 1)["Classes"]
    assert "Warning: 6 class/split pairs have fewer than 5 images" in md
    assert sorted((r[0], r[2], r[3]) for r in small[1:]) == sorted(
        (name, split, "2")
        for name in ("Panthera leo", "Panthera pardus", "Ünïcode name/x")
        for split in ("test", "val")
    )
    _, out2, _ = _export(tmp_path, min_class_images=2)
    md2 = (out2 / "datacard.md").read_text()
    assert "Every class has at least 2 images in every split." in md2 and "Warning: " not in md2
    with pytest.raises(ExportError, match="min_class_images"):
        _export(tmp_path / "x", min_class_images=-1)


def test_missing_class_in_a_split_is_warned(tmp_path):
    inputs = _inputs(tmp_path)
    man = inputs["manifest"]
    keep = [
        not (lab == 12 and split == "test")
        for lab, split in zip(man["label"].to_pylist(), man["split"].to_pylist(), strict=True)
    ]
    inputs["manifest"] = man.filter(pa.array(keep))
    _, out, _ = _export(tmp_path, inputs=inputs)
    rows = _tables((out / "datacard.md").read_text(), 1)["Classes"]
    warned = [r for r in rows if r[:4] == ["Ünïcode name/x", "12", "test", "0"]]
    assert warned, rows


def test_licence_mix_credits_and_duplicates(tmp_path):
    inputs = _inputs(tmp_path)
    led = inputs["ledger"]
    # two stored images with identical bytes: one in train, one in test (a leak between splits)
    man = inputs["manifest"].to_pylist()
    train = next(m["content_key"] for m in man if m["split"] == "train")
    test = next(m["content_key"] for m in man if m["split"] == "test")
    shas = dict(zip(led["content_key"].to_pylist(), led["sha256"].to_pylist(), strict=True))
    j = led.schema.get_field_index("sha256")
    led = led.set_column(
        j,
        led.schema.field(j),
        pa.array([shas[train] if ck == test else shas[ck] for ck in led["content_key"].to_pylist()]),
    )
    inputs["ledger"] = led
    # with the duplicate handling switched off, the data card still tells the leak
    _, out, _ = _export(tmp_path, inputs=inputs, duplicates=DuplicatePolicy(enabled=False))
    md = (out / "datacard.md").read_text()
    assert "2 images are byte-identical copies in 1 groups; 1 groups span more than one split" in md
    lic = {r[1]: int(r[2]) for r in _tables(md)["Licences"][1:-1]}
    assert lic == {"CC-BY-4.0": 10, "CC-BY-NC-4.0": 10, "CC0-1.0": 10}
    assert "Images credited: 30 by the media creator." in md
    doc = json.loads((out / "croissant.json").read_text())
    assert any("FR" in b for b in doc["rai:dataBiases"])


def test_duplicates_go_to_one_split_and_the_card_says_so(tmp_path):
    """By default the copy joins its representative's split and, in the same class, is kept once."""
    inputs = _inputs(tmp_path)
    led = inputs["ledger"]
    man = inputs["manifest"].to_pylist()
    train = next(m for m in man if m["split"] == "train")
    test = next(m for m in man if m["split"] == "test" and m["label"] == train["label"])
    shas = dict(zip(led["content_key"].to_pylist(), led["sha256"].to_pylist(), strict=True))
    j = led.schema.get_field_index("sha256")
    copied = [shas[train["content_key"]] if ck == test["content_key"] else shas[ck] for ck in shas]
    inputs["ledger"] = led.set_column(j, led.schema.field(j), pa.array(copied))
    _, out, summary = _export(tmp_path, inputs=inputs)
    assert summary.duplicates["clusters"] == 1 and summary.duplicates["dropped"] == 1
    rep = min(train["content_key"], test["content_key"])
    assert summary.duplicates["examples"][0]["representative"] == rep
    md = (out / "datacard.md").read_text()
    assert "1 clusters of copies (2 stored images" in md and "copies inside a split were left out" in md
    assert "span more than one split" not in md
    exported = pq.read_table(out / "manifest.parquet").column("content_key").to_pylist()
    assert rep in exported and max(train["content_key"], test["content_key"]) not in exported


def test_no_provenance_says_so(tmp_path):
    inputs = _inputs(tmp_path)
    _, out, _ = _export(tmp_path, inputs=inputs)
    md = (out / "datacard.md").read_text()
    assert "No provenance was given to this export" in md
    assert re.search(r"^## How to load it$", md, re.M)
