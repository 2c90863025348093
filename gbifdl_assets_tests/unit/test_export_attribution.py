"""Attribution that holds: every BY-family image gets a name along the fallback chain, or is counted."""

from __future__ import annotations

import csv
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.export.attribution import attribute, requires_attribution
from gbifdl_assets.export.layout import ExportError, export_training_set
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.test_export_writers import build_inputs

PUB_UUID = "3c5e4331-7f2f-4a8d-aa56-81c1c2c2b7a0"


def _case(n: int) -> int:
    return n % 8


def _inputs(tmp_path):
    """Manifest rows whose names sit at a different link of the chain, by gbifID % 8."""
    inputs = build_inputs(tmp_path)
    man = inputs["manifest"]
    ids = man["gbifID"].to_pylist()
    cases = [_case(i - 1000) for i in ids]
    creator = ["C" if c == 0 else ("unknown" if c == 7 else None) for c in cases]
    holder = ["H" if c == 1 else ("  " if c == 7 else None) for c in cases]
    dkeys = [f"ds-{c}" for c in cases]
    for col, values in (("creator", creator), ("rightsHolder", holder), ("datasetKey", dkeys)):
        i = man.schema.get_field_index(col)
        man = man.set_column(i, man.schema.field(i), pa.array(values, pa.string()))
    inputs["manifest"] = man
    # one row per media item: two rows per occurrence, as the snapshot's media table has
    rows = []
    for gid, c in zip(ids, cases, strict=True):
        for media in (0, 1):
            rows.append(
                {
                    "gbifID": gid,
                    "media_index": media,
                    "decimalLatitude": 10.0,
                    "decimalLongitude": 20.0,
                    "record_rightsHolder": "RH" if c == 2 else None,
                    "recordedBy": "Rec" if c in (2, 3) else None,
                    "publisher": PUB_UUID if c == 6 else None,
                }
            )
    inputs["records"] = pa.Table.from_pylist(rows)
    inputs["datasets"] = {"ds-4": {"title": "T4", "publisher": "P4"}, "ds-5": {"title": "T5"}}
    return inputs


EXPECTED = {
    0: ("C", "creator"),
    1: ("H", "rightsHolder"),
    2: ("RH", "record_rightsHolder"),
    3: ("Rec", "recordedBy"),
    4: ("P4 (dataset: T4)", "publisher"),
    5: ("publisher of the dataset T5", "publisher"),
    6: ("", ""),
    7: ("", ""),
}


def _export(tmp_path, **kw):
    inputs = _inputs(tmp_path)
    out = tmp_path / "export"
    summary = export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        inputs["store"],
        LocalStorage(out),
        training_set="cats",
        records=inputs["records"],
        datasets=inputs["datasets"],
        **kw,
    )
    return inputs, out, summary


def _credits(out):
    with open(out / "credits.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_fallback_chain_and_count(tmp_path):
    _, out, summary = _export(tmp_path)
    rows = _credits(out)
    assert len(rows) == 30 == summary.images  # two media rows per occurrence do not duplicate images
    expected_missing = 0
    for r in rows:
        case = _case(int(r["gbifID"]) - 1000)
        assert (r["attribution"], r["attribution_source"]) == EXPECTED[case], r
        if case in (6, 7) and requires_attribution(r["license"]):
            expected_missing += 1
    assert expected_missing > 0 and summary.unattributed == expected_missing
    assert summary.dropped_unattributed == 0
    assert sum(summary.attribution_sources.values()) == sum(1 for r in rows if r["attribution"])
    md = (out / "CREDITS.md").read_text()
    assert f"{expected_missing} images under an attribution licence have no creator" in md
    assert "Rec (recorded by)" in md and "P4 (dataset: T4) (publisher)" in md
    assert "no name on record" in md
    marker = json.loads((out / "export.json").read_text())
    assert marker["unattributed"] == expected_missing
    # the WebDataset metadata carries the credit too
    docs = []
    for shard in (out / "webdataset").glob("*.tar"):
        with tarfile.open(shard) as tar:
            docs += [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    assert {d["attribution"] for d in docs} >= {"C", "Rec", "P4 (dataset: T4)"}


def test_drop_unattributed(tmp_path):
    _, out, summary = _export(tmp_path, unattributed="drop")
    rows = _credits(out)
    dropped = summary.dropped_unattributed
    assert dropped > 0 and dropped == summary.unattributed and summary.images == 30 - dropped
    assert len(rows) == summary.images
    assert all(r["attribution"] for r in rows if requires_attribution(r["license"]))
    man = pq.read_table(out / "manifest.parquet")
    assert man.num_rows == summary.images
    assert sorted(set(man["label_index"].to_pylist())) == list(range(summary.classes))
    assert "no name on record" not in (out / "CREDITS.md").read_text()


def test_bad_option_and_all_dropped(tmp_path):
    inputs = _inputs(tmp_path)
    with pytest.raises(ExportError, match="'keep' or 'drop'"):
        export_training_set(
            inputs["manifest"],
            inputs["ledger"],
            inputs["store"],
            LocalStorage(tmp_path / "o"),
            training_set="t",
            unattributed="maybe",
        )
    man = inputs["manifest"]
    i = man.schema.get_field_index("license")
    man = man.set_column(i, man.schema.field(i), pa.array(["CC-BY-4.0"] * man.num_rows))
    for col in ("creator", "rightsHolder"):
        j = man.schema.get_field_index(col)
        man = man.set_column(j, man.schema.field(j), pa.nulls(man.num_rows, pa.string()))
    with pytest.raises(ExportError, match="lacks a name"):
        export_training_set(
            man,
            inputs["ledger"],
            inputs["store"],
            LocalStorage(tmp_path / "o2"),
            training_set="t",
            unattributed="drop",
        )


def test_attribute_uses_manifest_columns_first():
    table = pa.table(
        {
            "gbifID": [1, 2, 3],
            "license": ["CC-BY-SA-4.0", "CC_BY_4_0", "CC0-1.0"],
            "creator": [None, None, None],
            "recordedBy": ["own", None, None],
            "datasetTitle": [None, "Title", None],
        }
    )
    records = pa.table(
        {"gbifID": [1, 2], "recordedBy": ["other", "x"], "publisher": ["Named Pub", "Named Pub"]}
    )
    out, report = attribute(table, records=records)
    # records are not consulted for a column the manifest has (row 2 keeps its empty recordedBy), but
    # give the publisher name the manifest lacks (the media table's "publisher" is a name, not a key)
    assert out["attribution"].to_pylist() == ["own", "Named Pub (dataset: Title)", None]
    assert report.sources == {"publisher": 1, "recordedBy": 1} and report.unattributed == 0
    out2, report2 = attribute(table.drop(["recordedBy"]), records=records)
    assert out2["attribution"].to_pylist() == ["other", "x", None]
    assert report2.sources == {"recordedBy": 2} and report2.unattributed == 0
    out3, report3 = attribute(table.drop(["recordedBy", "datasetTitle"]))
    assert out3["attribution"].to_pylist() == [None, None, None] and report3.unattributed == 2


def test_requires_attribution():
    assert requires_attribution("CC-BY-NC-4.0") and requires_attribution("CC_BY_SA_4_0")
    assert (
        not requires_attribution("CC0-1.0")
        and not requires_attribution("PDM")
        and not requires_attribution(None)
    )
