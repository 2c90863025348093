"""``gbifdl export`` end to end on the synthetic export inputs."""

from __future__ import annotations

import argparse
import json

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
