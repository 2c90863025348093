"""``gbifdl dwca ingest`` through its argparse wiring (as cli.py registers it)."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import pytest

from gbifdl_assets.gbif import registry as registry_module
from gbifdl_assets.gbif.registry import RegistryClient
from gbifdl_assets.occurrences.ingest_cli import add_dwca_parser, default_training_set
from gbifdl_assets.occurrences.snapshots import latest_snapshot
from gbifdl_assets.storage import LocalStorage


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    parser = argparse.ArgumentParser(prog="gbifdl")
    add_dwca_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON summary line on stdout
    return code, json.loads(lines[0])


def test_ingest_writes_the_snapshot_and_a_summary(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = fixtures_dir / "archives" / "rgbif_0000066-140928181241064_DWCA.zip"
    code, summary = run(["dwca", "ingest", str(archive), str(tmp_path / "out"), "--offline"], capsys)
    assert code == 0 and summary["ok"] is True
    assert (summary["occurrences"], summary["media"]) == (470, 210)
    assert summary["skipped"] == {
        "no_url": 5,
        "not_image": 0,
        "orphan": 0,
        "bad_row": 0,
        "bad_id": 0,
        "duplicate": 0,
    }
    assert summary["training_set"] == "0000066-140928181241064"
    info = latest_snapshot(LocalStorage(tmp_path / "out"), "0000066-140928181241064")
    assert info is not None and info.snapshot_id == summary["snapshot_id"]
    assert (
        Path(summary["path"], "media.parquet").is_file() and Path(summary["path"], "snapshot.json").is_file()
    )


def test_ingest_without_network_still_ingests_and_says_which_columns_stayed_empty(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = fixtures_dir / "archives" / "rgbif_0000066-140928181241064_DWCA.zip"
    monkeypatch.setenv("GBIF_API_URL", "http://127.0.0.1:9/v1")  # nothing listens: connection refused
    # no retries, so the test does not wait for the backoff (retries are test_gbif_registry's business)
    monkeypatch.setattr(registry_module, "RegistryClient", functools.partial(RegistryClient, max_retries=0))
    parser = argparse.ArgumentParser(prog="gbifdl")
    add_dwca_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dwca", "ingest", str(archive), str(tmp_path / "out")])
    code = args.func(args)
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0 and summary["ok"] is True and summary["media"] == 210
    registry = summary["registry"]
    assert registry["api_url"] == "http://127.0.0.1:9/v1"  # the default comes from GBIF_API_URL
    assert registry["datasets"] == {"unreachable": 3} and registry["rows_without_publisher"] == 210
    assert registry["empty"]["publishingOrgKey"] == "210 of 210 rows empty (registry: 3 unreachable)"
    assert set(registry["empty"]) == {
        "publishingOrgKey",
        "datasetTitle",
        "datasetDOI",
        "datasetLicense",
        "publishingOrganizationTitle",
    }  # publishingCountry is in the archive itself
    assert "did not answer: run again with network" in registry["fix"]
    assert "registry column datasetTitle left empty: 210 of 210 rows empty" in captured.err


def test_ingest_offline_says_so(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = fixtures_dir / "archives" / "finch_0000154-150116162929234_DWCA.zip"
    code, summary = run(["dwca", "ingest", str(archive), str(tmp_path / "out"), "--offline"], capsys)
    assert code == 0 and summary["registry"]["api_url"] is None
    assert summary["registry"]["datasets"] == {"offline": 1}
    assert "(registry: 1 offline)" in summary["registry"]["empty"]["datasetTitle"]
    assert "--offline" in summary["registry"]["fix"]


def test_ingest_simple_csv_fails_with_the_fix(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = fixtures_dir / "archives" / "rgbif_0009886-250127130748423_SIMPLE_CSV.zip"
    code, summary = run(
        ["dwca", "ingest", str(archive), str(tmp_path / "out"), "--training-set", "x"], capsys
    )
    assert code == 2 and summary["ok"] is False
    assert "is SIMPLE_CSV and has no media URLs; request a DWCA download" in summary["error"]
    assert not (tmp_path / "out" / "snapshots" / "x").exists() or not any(
        p.name == "snapshot.json" for p in (tmp_path / "out").rglob("*")
    )


def test_ingest_missing_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, summary = run(["dwca", "ingest", str(tmp_path / "nope.zip"), str(tmp_path / "out")], capsys)
    assert code == 2 and "does not exist" in summary["error"]


def test_default_training_set_names() -> None:
    assert default_training_set(Path("rgbif_0000066-140928181241064_DWCA.zip")) == "0000066-140928181241064"
    assert default_training_set(Path("my archive (1).zip")) == "my-archive-1"


def test_ingest_of_a_file_that_is_not_a_zip_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "0000001-260101000000000.zip"
    page.write_text("<!DOCTYPE html><html><body>Service unavailable</body></html>")
    code, summary = run(["dwca", "ingest", str(page), str(tmp_path / "out"), "--offline"], capsys)
    assert code == 2 and summary["ok"] is False
    assert "is not a zip file: it holds an HTML page" in summary["error"]
    assert "truncated" not in summary["error"]
    assert not (tmp_path / "out" / "snapshots").exists() or not any((tmp_path / "out").rglob("snapshot.json"))
