"""CLI manners (issue 20, item 6): --version, help for every argument, the demo fails like the others."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gbifdl_assets import __version__
from gbifdl_assets.cli import build_parser, main


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str | None]]:
    """(``command path + argument``, its help) for every argument and subcommand of the tree."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", helps.get(name)
                yield from _walk(sub, f"{path} {name}")
            continue
        yield f"{path} {action.option_strings[-1] if action.option_strings else action.dest}", action.help


def test_every_argument_and_command_has_help() -> None:
    missing = sorted(name for name, text in _walk(build_parser(), "gbifdl") if not text)
    assert not missing, missing


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"gbifdl {__version__}"


def _summary(capsys) -> tuple[dict, str]:
    out, err = capsys.readouterr()
    return json.loads(out.strip().splitlines()[-1]), err


def test_demo_with_a_bad_spec_fails_like_every_command(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\ntaxa: []\n")
    assert main(["demo", "--spec", str(bad), "--data-dir", str(tmp_path / "data")]) == 2
    summary, err = _summary(capsys)
    assert summary["ok"] is False and summary["command"] == "demo"
    assert summary["error"].startswith(f"{bad}: invalid training-set spec")
    assert err.startswith(f"error: {bad}: invalid training-set spec") and "Traceback" not in err
    assert not (tmp_path / "data").exists()  # nothing started, nothing written

    assert main(["demo", "--spec", str(tmp_path / "missing.yaml")]) == 2
    summary, err = _summary(capsys)
    assert "file not found" in summary["error"] and err.startswith("error: ")


def test_demo_without_gbif_and_without_the_sandbox_fails_in_one_line(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("GBIF_API_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GBIFDL_OFFLINE", "0")
    assert main(["demo", "--data-dir", str(tmp_path / "data")]) == 2
    summary, err = _summary(capsys)
    assert "GBIFDL_OFFLINE=0 rules out the offline sandbox" in summary["error"]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
