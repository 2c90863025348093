"""``gbifdl annotations flags``: add, list, support, contest, delete; one-line errors; help on every argument."""

from __future__ import annotations

import json

import pytest

from gbifdl_assets.cli import main

URL = "https://img.example/a.jpg"


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GBIFDL_ANNOTATIONS_DB", f"sqlite:///{tmp_path}/a.sqlite")

    def call(*argv: str) -> tuple[int, dict, str]:
        code = main(["annotations", "flags", *argv])
        out = capsys.readouterr()
        return code, json.loads(out.out.strip().splitlines()[-1]), out.out + out.err

    return call


def test_flag_vote_list_and_delete(run):
    code, summary, _ = run(
        "add", "12", URL, "poor-quality", "--user", "ann", "--taxon-key", "7", "--comment", "dark"
    )
    assert code == 0 and summary["flag"] == "POOR_QUALITY" and summary["createdBy"] == "ann"
    fid = str(summary["id"])
    assert run("support", fid, "--user", "bob")[1]["supportedBy"] == ["bob"]
    assert run("contest", fid, "--user", "bob")[1]["contestedBy"] == ["bob"]
    assert run("contest", fid, "--user", "bob", "--remove")[1]["contestedBy"] == []
    code, summary, text = run("list", "--flag", "POOR_QUALITY")
    assert code == 0 and summary["flags"] == 1 and URL in text
    code, _, text = run("list", "--format", "json", "--gbif-id", "12")
    listed = json.loads(text.splitlines()[0])
    assert listed[0]["taxonKey"] == 7 and listed[0]["comment"] == "dark"
    code, summary, text = run("delete", fid, "--user", "bob")
    assert code == 2 and "only its creator (ann)" in summary["error"] and "Traceback" not in text
    assert run("delete", fid, "--user", "ann")[1]["deletedBy"] == "ann"
    assert run("list")[1]["flags"] == 0


def test_mistakes_are_one_message(run):
    code, summary, text = run("add", "12", "not a url", "BLURRY", "--user", "ann")
    assert (
        code == 2 and "mediaIdentifier" in summary["error"] and "use one of NOT_ORGANISM" in summary["error"]
    )
    code, summary, _ = run("support", "99", "--user", "ann")
    assert code == 2 and summary["error"] == "no image flag with id 99"
    code, summary, _ = run("list", "--store", "nonsense://")
    assert code == 2 and "not a database URL" in summary["error"]


def test_every_argument_has_help(capsys):
    import argparse

    from gbifdl_assets.cli import build_parser

    parser = build_parser()
    flags = parser._subparsers._group_actions[0].choices["annotations"]  # noqa: SLF001 - argparse has no API
    flags = flags._subparsers._group_actions[0].choices["flags"]  # noqa: SLF001
    for name, sub in flags._subparsers._group_actions[0].choices.items():  # noqa: SLF001
        for action in sub._actions:  # noqa: SLF001
            if not isinstance(action, argparse._HelpAction):  # noqa: SLF001
                assert action.help, f"flags {name}: {action.dest} has no help"
