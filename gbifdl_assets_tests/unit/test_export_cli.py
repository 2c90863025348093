"""``gbifdl export`` end to end on the synthetic export inputs."""

from __future__ import annotations

import argparse
import json

import pyarrow as pa
import pyarrow.parquet as pq

from gbifdl_assets.export.cli import add_export_parser
from gbifdl_assets_tests.unit.test_export_writers import CITATION, build_inputs


def _run(argv: list[str], capsys) -> tuple[int, dict, str]:
    parser = argparse.ArgumentParser(prog="gbifdl")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_cli_export(tmp_path, capsys):
    inputs = build_inputs(tmp_path)
    store = inputs["store"]
    store.write_parquet("ledgers/cats/seg-000000000000-abc.parquet", inputs["ledger"])
    pq.write_table(inputs["manifest"], tmp_path / "cats.parquet")
    pq.write_table(inputs["coordinates"], tmp_path / "coords.parquet")
    (tmp_path / "snapshot.json").write_text(json.dumps({"source": CITATION}))
    out = tmp_path / "export"
    code, summary, _ = _run(
        [
            "export",
            str(tmp_path / "cats.parquet"),
            "--images",
            str(store.root),
            "--ledger",
            "cats",
            "--format",
            "webdataset",
            "--out",
            str(out),
            "--snapshot",
            str(tmp_path / "snapshot.json"),
            "--coordinates",
            str(tmp_path / "coords.parquet"),
            # 2 of the 32 manifest images were never stored: 6 %, above the default limit of 5 %
            "--max-missing",
            "0.1",
        ],
        capsys,
    )
    assert code == 0 and summary["ok"] and summary["images"] == 30 and summary["missing"] == 2
    assert summary["training_set"] == "cats" and summary["formats"] == ["webdataset"]
    assert (out / "export.json").is_file() and not (out / "imagefolder").exists()
    assert "10.15468/dl.abc123" in (out / "CITATION.md").read_text()


def test_cli_export_errors(tmp_path, capsys):
    inputs = build_inputs(tmp_path)
    pq.write_table(inputs["manifest"], tmp_path / "m.parquet")
    base = [
        "export",
        str(tmp_path / "m.parquet"),
        "--images",
        str(inputs["store"].root),
        "--out",
        str(tmp_path / "o"),
    ]
    code, summary, err = _run([*base, "--ledger", "nope"], capsys)
    assert code == 2 and not summary["ok"] and "no ledger 'nope'" in err
    code, summary, err = _run(
        ["export", str(tmp_path / "missing.parquet"), *base[2:], "--ledger", "x"], capsys
    )
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "o").exists()


def test_cli_export_duplicate_options(tmp_path, capsys):
    inputs = build_inputs(tmp_path)
    inputs["store"].write_parquet("ledgers/cats/seg-000000000000-abc.parquet", inputs["ledger"])
    pq.write_table(inputs["manifest"], tmp_path / "m.parquet")
    base = ["export", str(tmp_path / "m.parquet"), "--images", str(inputs["store"].root), "--ledger", "cats"]
    base += ["--out", str(tmp_path / "o"), "--max-missing", "0.1"]
    code, summary, err = _run([*base, "--duplicates-max-distance", "100"], capsys)
    assert code == 2 and "max_distance=100: give a Hamming distance between 0 and 64" in err
    code, summary, _ = _run([*base, "--keep-copies-within-split", "--duplicates-max-distance", "0"], capsys)
    assert code == 0 and summary["duplicates"]["max_distance"] == 0 and summary["duplicates"]["clusters"] == 0
    code, summary, _ = _run([*base, "--no-dedup"], capsys)
    assert code == 0 and summary["images"] == 30


def _shard_store(tmp_path, shards: int = 4):
    """The platform's layout: one ledger per shard, NAME.shardNN, each holding part of the images."""
    inputs = build_inputs(tmp_path)
    store, ledger = inputs["store"], inputs["ledger"]
    for i in range(shards):
        part = ledger.filter(pa.array([k % shards == i for k in range(ledger.num_rows)]))
        store.write_parquet(f"ledgers/cats.shard{i:02d}/seg-000000000000-abc.parquet", part)
    store.write_parquet("ledgers/dogs.shard00/seg-000000000000-abc.parquet", ledger.slice(0, 3))
    pq.write_table(inputs["manifest"], tmp_path / "cats.parquet")
    return inputs


def _base(tmp_path, inputs, out="o"):
    return [
        "export",
        str(tmp_path / "cats.parquet"),
        "--images",
        str(inputs["store"].root),
        "--out",
        str(tmp_path / out),
    ]


def test_cli_reads_every_shard_ledger_of_the_training_set(tmp_path, capsys):
    inputs = _shard_store(tmp_path)
    code, summary, _ = _run(
        [*_base(tmp_path, inputs), "--training-set", "cats", "--max-missing", "0.1"], capsys
    )
    assert code == 0 and summary["ok"], summary
    assert summary["ledgers"] == ["cats.shard00", "cats.shard01", "cats.shard02", "cats.shard03"]
    assert summary["images"] == 30 and summary["missing"] == 2
    assert summary["training_set"] == "cats"
    md = (tmp_path / "o" / "datacard.md").read_text()
    assert "| training-set spec | cats |" in md and "| manifest | cats.parquet |" in md
    assert "| occurrence snapshot | s1 |" in md


def test_cli_several_ledgers_and_the_missing_limit(tmp_path, capsys):
    inputs = _shard_store(tmp_path)
    # one shard of four: three quarters of the manifest missing -> ok: false, exit 1, nothing written
    code, summary, err = _run([*_base(tmp_path, inputs), "--ledger", "cats.shard01"], capsys)
    assert code == 1 and not summary["ok"] and summary["missing"] == 24 and summary["manifest_images"] == 32
    assert summary["ledgers"] == ["cats.shard01"] and "every ledger of the training set" in err
    assert not (tmp_path / "o").exists()
    # the four shards named one by one: 2 of 32 missing (6.25 %) is still above the default 5 %
    four = [a for i in range(4) for a in ("--ledger", f"cats.shard{i:02d}")]
    code, summary, _ = _run([*_base(tmp_path, inputs), *four], capsys)
    assert code == 1 and summary["missing"] == 2 and not (tmp_path / "o" / "export.json").exists()
    code, summary, _ = _run([*_base(tmp_path, inputs), *four, "--max-missing", "0.0625"], capsys)
    assert code == 0 and summary["ok"] and summary["images"] == 30 and len(summary["ledgers"]) == 4
    assert (tmp_path / "o" / "export.json").is_file() and (tmp_path / "o" / "croissant.json").is_file()


def test_cli_training_set_without_ledgers_and_bad_limits(tmp_path, capsys):
    inputs = _shard_store(tmp_path)
    code, summary, err = _run([*_base(tmp_path, inputs), "--training-set", "birds"], capsys)
    assert code == 2 and "no ledger of the training set 'birds'" in err and "cats.shard00" in err
    code, summary, err = _run(_base(tmp_path, inputs), capsys)
    assert code == 2 and "--ledger NAME" in err
    code, summary, err = _run(
        [*_base(tmp_path, inputs), "--training-set", "cats", "--max-missing", "2"], capsys
    )
    assert code == 2 and "between 0 and 1" in err
    assert not (tmp_path / "o").exists()


def test_training_set_ledgers_names():
    from gbifdl_assets.export.cli import training_set_ledgers

    names = ["cats", "cats.shard00", "cats.shard07", "cats.shardx", "cats2.shard00", "xcats.shard01"]
    assert training_set_ledgers(names, "cats") == ["cats", "cats.shard00", "cats.shard07"]
    assert training_set_ledgers(["a.b.shard01"], "a.b") == ["a.b.shard01"]
