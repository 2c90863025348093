"""``gbifdl manifest build`` end to end: JSON summary line, clear errors, no half-written output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.gbif.media_schema import conform
from gbifdl_assets.sampling.cli import add_manifest_parser
from gbifdl_assets.sampling.manifest import MANIFEST_METADATA_KEY, check_split_leakage, check_unique_urls

SPEC = """\
name: cli-test
taxa: [Vanessa]
balancing:
  max_per_class: 25
  min_per_class: 5
splits:
  group_by: occurrence
"""


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gbifdl")
    add_manifest_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def summary(capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # exactly one JSON line on stdout
    return json.loads(lines[0]), err


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    n = 2000
    species = rng.choice(6, n, p=[0.4, 0.3, 0.2, 0.07, 0.02, 0.01])
    table = conform(
        pa.table(
            {
                "gbifID": pa.array(np.arange(n) + 1, pa.int64()),
                "speciesKey": pa.array(500 + species, pa.int64()),
                "species": pa.array([f"Vanessa sp{s}" for s in species]),
                "publishingOrgKey": pa.array([f"pub-{i % 3}" for i in range(n)]),
                "identifier": pa.array([f"https://img.example/{i}.jpg" for i in range(n)]),
                "media_license": pa.array(["CC-BY-4.0" if i % 5 else "CC-BY-NC-4.0" for i in range(n)]),
            }
        )
    )
    snap = tmp_path / "snapshot.parquet"
    pq.write_table(table, snap)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return snap, spec


def test_build_end_to_end(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap, spec = files
    out = tmp_path / "out" / "manifest.parquet"
    stats = tmp_path / "stats.json"
    code = run(
        ["manifest", "build", str(snap), "--spec", str(spec), "--out", str(out), "--stats", str(stats)]
    )
    line, err = summary(capsys)
    assert code == 0
    assert line["ok"] is True and line["command"] == "manifest build"
    manifest = pq.read_table(out)
    assert line["images"] == manifest.num_rows
    assert line["classes"] == len(set(manifest.column("label").to_pylist()))
    assert sum(line["splits"].values()) == manifest.num_rows
    assert line["dropped"]["license"] == 400
    assert line["snapshot_id"] == "snapshot"
    assert set(manifest.column("snapshot_id").to_pylist()) == {"snapshot"}
    assert check_split_leakage(manifest)[0] and check_unique_urls(manifest)[0]
    assert json.loads(stats.read_text())["images"] == manifest.num_rows
    assert MANIFEST_METADATA_KEY in manifest.schema.metadata
    assert "| label | name |" in err  # the per-class table goes to stderr
    # a refresh with --previous and an explicit id
    code = run(
        ["manifest", "build", str(snap), "--spec", str(spec), "--out", str(tmp_path / "m2.parquet"),
         "--snapshot-id", "v2", "--previous", str(out)]
    )  # fmt: skip
    line2, _ = summary(capsys)
    assert code == 0 and line2["snapshot_id"] == "v2"
    again = pq.read_table(tmp_path / "m2.parquet")
    assert again.column("url").to_pylist() == manifest.column("url").to_pylist()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bad_spec", "invalid training-set spec"),
        ("missing_input", "nope.parquet: not found"),
        ("not_parquet", "cannot read it as Parquet"),
        ("missing_column", "lacks column speciesKey"),
        ("empty_after_filters", "no images left after filtering"),
        ("unknown_by", "balancing.by names column somethingElse"),
    ],
)
def test_bad_input_is_one_clear_message_and_no_output(
    case: str, message: str, files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap, spec = files
    out = tmp_path / "out.parquet"
    if case == "bad_spec":
        spec.write_text("name: x\ntaxa: [a]\nbalancing: {max_per_clas: 3}\n")
    elif case == "missing_input":
        snap = tmp_path / "nope.parquet"
    elif case == "not_parquet":
        snap.write_text("gbifID,identifier\n1,x\n")
    elif case == "missing_column":
        pq.write_table(pq.read_table(snap).drop_columns(["speciesKey"]), snap)
    elif case == "empty_after_filters":
        spec.write_text(SPEC + "licenses: [PDM]\n")
    elif case == "unknown_by":
        spec.write_text(SPEC.replace("  min_per_class: 5\n", "  min_per_class: 5\n  by: [somethingElse]\n"))
    code = run(["manifest", "build", str(snap), "--spec", str(spec), "--out", str(out)])
    line, err = summary(capsys)
    assert code == 2
    assert line["ok"] is False and message in line["error"]
    assert err.startswith("error: ") and message in err
    named = spec if case == "bad_spec" else snap
    assert str(named) in line["error"]  # the message names the input at fault
    assert not out.exists()
    assert list(tmp_path.glob(".out.parquet*")) == []
