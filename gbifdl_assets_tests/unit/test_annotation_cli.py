"""``gbifdl rules …`` end to end through ``main([...])`` (names given as keys: no network needed)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from gbifdl_assets.annotations.cli import add_rules_parser, main

LION, TIGER, FELIDAE = 5219404, 5219416, 9703


@pytest.fixture
def store_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    monkeypatch.setenv("GBIFDL_ANNOTATIONS_DB", url)
    monkeypatch.setenv("GBIFDL_API_URL", "http://127.0.0.1:9/v1")  # never reached in these tests
    monkeypatch.chdir(tmp_path)
    return url


def run(capsys, *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    if code:
        assert captured.err.startswith("error: ")  # the message goes to stderr too
    summary = json.loads(out[-1])  # every command ends with one JSON line
    return code, summary, "\n".join(out[:-1])


def occurrences(path):
    """Lions in Greenland and Kenya, a tiger in Kenya, a record without coordinates (two media rows)."""
    table = pa.table(
        {
            "gbifID": pa.array([1, 2, 3, 4, 4, 5], pa.int64()),
            "decimalLatitude": [72.0, 0.5, 0.5, None, None, 72.0],
            "decimalLongitude": [-42.0, 38.0, 38.0, None, None, -42.0],
            "taxonKey": pa.array([LION, LION, TIGER, LION, LION, TIGER], pa.int64()),
            "speciesKey": pa.array([LION, LION, TIGER, LION, LION, TIGER], pa.int64()),
            "familyKey": pa.array([FELIDAE] * 6, pa.int64()),
            "basisOfRecord": ["HUMAN_OBSERVATION"] * 5 + ["PRESERVED_SPECIMEN"],
            "year": pa.array([2020, 1920, 2001, 2001, 2001, 1990], pa.int32()),
        }
    )
    pq.write_table(table, path)
    return path


def test_add_list_vote_export_import_apply(store_url, capsys, tmp_path):
    code, s, _ = run(
        capsys, "rules", "add", f"{LION} in GL are suspicious", "--ruleset", "lions", "--user", "alice"
    )
    assert code == 0 and s["ok"] and s["command"] == "rules add"
    assert (s["id"], s["taxonKey"], s["annotation"], s["ruleset"], s["area"]) == (
        1,
        LION,
        "SUSPICIOUS",
        "lions",
        "Greenland",
    )
    code, s, _ = run(
        capsys,
        "rules",
        "add",
        f"{FELIDAE} in Kenya is native from 1900 to 1950",
        "--ruleset",
        "lions",
        "--user",
        "alice",
    )
    assert code == 0 and s["yearRange"] == "1900,1950"
    code, s, _ = run(
        capsys, "rules", "add", f"{TIGER} in KE are managed", "--ruleset", "tigers", "--user", "bob"
    )
    assert code == 0

    code, s, table = run(capsys, "rules", "list")
    assert code == 0 and s["rules"] == 3
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["id", "taxonKey", "annotation", "ruleset"]
    assert lines[1].split()[:4] == ["3", str(TIGER), "MANAGED", "tigers"]  # newest first
    code, s, body = run(capsys, "rules", "list", "--ruleset", "lions", "--format", "json")
    rules = json.loads(body)
    assert [r["id"] for r in rules] == [2, 1] and rules[0]["createdBy"] == "alice"
    code, s, body = run(capsys, "rules", "list", "--taxon", str(LION), "--format", "json")
    assert [r["id"] for r in json.loads(body)] == [1]

    code, s, _ = run(capsys, "rules", "vote", "1", "support", "--user", "carol")
    assert code == 0 and s["supportedBy"] == ["carol"]
    code, s, _ = run(capsys, "rules", "vote", "2", "contest", "--user", "carol")
    assert s["contestedBy"] == ["carol"]

    code, s, _ = run(capsys, "rules", "export", "lions.yaml", "--ruleset", "lions")
    assert code == 0 and s["rules"] == 2
    assert len(yaml.safe_load((tmp_path / "lions.yaml").read_text())["rules"]) == 2
    code, s, _ = run(capsys, "rules", "export", "all.geojson")
    assert (
        s["rules"] == 3 and json.loads((tmp_path / "all.geojson").read_text())["type"] == "FeatureCollection"
    )

    other = f"sqlite:///{tmp_path}/other.sqlite"
    code, s, _ = run(capsys, "rules", "import", "lions.yaml", "--store", other, "--user", "erin")
    assert code == 0 and (s["created"], s["rules"], s["deleted"]) == (2, 2, 0) and s["version"]
    code, s, _ = run(capsys, "rules", "import", "lions.yaml", "--store", other, "--user", "erin")
    assert (s["created"], s["unchanged"]) == (0, 2)

    occ = occurrences(tmp_path / "occ.parquet")
    code, s, _ = run(
        capsys, "rules", "apply", "lions", str(occ), "out.parquet", "--matches", "matches.parquet"
    )
    assert code == 0 and s["command"] == "rules apply"
    # gbifID 1: a lion in Greenland; 2: a lion (a felid) in Kenya in 1920; not 3: a felid in Kenya, but in
    # 2001; not 4: no coordinates; not 5: a tiger in Greenland (the Greenland rule is on lions only)
    assert (s["occurrences"], s["rows"], s["matched"], s["rules"], s["conflicts"]) == (5, 6, 2, 2, 0)
    assert s["labels"] == {"SUSPICIOUS": 1, "NATIVE": 1}
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.num_rows == 6 and "annotation_labels" in out.column_names
    labels = dict(
        zip(out.column("gbifID").to_pylist(), out.column("annotation_labels").to_pylist(), strict=True)
    )
    assert labels[1] == ["SUSPICIOUS"] and labels[2] == ["NATIVE"] and labels[3] == [] and labels[4] == []
    assert pq.read_table(tmp_path / "matches.parquet").num_rows == s["matches"]

    # votes policy: rule 1 has one supporter, rule 2 one contest
    code, s, _ = run(capsys, "rules", "apply", "lions", str(occ), "out2.parquet", "--min-support", "1")
    assert s["rules_applied"] == 1 and s["rules_skipped_by_votes"] == 1 and set(s["labels"]) == {"SUSPICIOUS"}
    code, s, _ = run(
        capsys, "rules", "apply", "lions,tigers", str(occ), "out3.parquet", "--exclude-contested"
    )
    assert s["rules_applied"] == 2 and "NATIVE" not in s["labels"]
    # a rule file works as well as a ruleset, and "all" takes every rule
    code, s, _ = run(capsys, "rules", "apply", "lions.yaml", str(occ), "out4.parquet")
    assert code == 0 and s["rules"] == 2
    code, s, _ = run(capsys, "rules", "apply", "all", str(occ), "out5.parquet")
    assert s["rules"] == 3


def test_user_errors_exit_2_with_one_json_line(store_url, capsys, tmp_path):
    code, s, _ = run(
        capsys, "rules", "add", f"{LION} in GL are spooky", "--ruleset", "lions", "--user", "alice"
    )
    assert code == 2 and not s["ok"] and "label: unknown label 'spooky'" in s["error"]
    run(capsys, "rules", "add", f"{LION} in GL are suspicious", "--ruleset", "lions", "--user", "alice")
    code, s, _ = run(
        capsys, "rules", "add", f"{LION} in KE are native", "--ruleset", "lions", "--user", "bob"
    )
    assert code == 2 and "bob may not add rules to it: only members of ruleset 'lions'" in s["error"]
    code, s, _ = run(capsys, "rules", "vote", "99", "support", "--user", "bob")
    assert code == 2 and s["error"] == "no rule with id 99"
    code, s, _ = run(capsys, "rules", "apply", "tigers", "missing.parquet", "out.parquet")
    assert code == 2 and "missing.parquet: no such occurrences file" in s["error"]
    occ = occurrences(tmp_path / "occ.parquet")
    code, s, _ = run(capsys, "rules", "apply", "tigers", str(occ), "out.parquet")
    assert code == 2 and "no ruleset 'tigers' in the store; there are: lions" in s["error"]
    assert not (tmp_path / "out.parquet").exists()
    code, s, _ = run(capsys, "rules", "apply", "nope.yaml", str(occ), "out.parquet")
    assert code == 2 and "nope.yaml: no such rules file" in s["error"]
    code, s, _ = run(capsys, "rules", "import")
    assert code == 2 and "give a rule FILE or --from-gbif URL" in s["error"]
    code, s, _ = run(capsys, "rules", "push", "http://127.0.0.1:9/v1")
    assert code == 2 and "GBIF_USERNAME" in s["error"]


def test_parser_registers_under_an_existing_cli():
    import argparse

    parser = argparse.ArgumentParser(prog="gbifdl")
    sub = parser.add_subparsers(dest="command", required=True)
    add_rules_parser(sub)
    args = parser.parse_args(["rules", "apply", "lions", "occ.parquet", "out.parquet", "--min-support", "2"])
    assert args.min_support == 2 and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["rules", "vote", "1", "maybe"])


def test_add_without_a_ruleset_makes_a_one_off_rule_and_a_twin_is_refused(store_url, capsys):
    code, s, _ = run(capsys, "rules", "add", f"{LION} in GL are suspicious", "--user", "alice")
    assert code == 0 and (s["rulesetId"], s["ruleset"], s["projectId"]) == (None, None, None)
    code, s, _ = run(
        capsys, "rules", "add", f"{LION} in KE are native", "--project", "cats", "--user", "alice"
    )
    assert code == 0 and s["rulesetId"] is None and s["projectId"] is not None
    code, s, _ = run(capsys, "rules", "add", f"{LION} in GL are suspicious", "--user", "bob")
    assert code == 2 and "an identical rule exists already: rule 1" in s["error"]


def _gbif_rule(rule_id: int, geometry: str, annotation: str, *, deleted: str | None = None) -> dict:
    """A rule exactly as GBIF's annotation API returns it (reference annotations.md §2)."""
    return {
        "id": rule_id,
        "taxonKey": LION,
        "datasetKey": None,
        "geometry": geometry,
        "annotation": annotation,
        "basisOfRecord": None,
        "basisOfRecordNegated": False,
        "yearRange": None,
        "rulesetId": None,
        "projectId": None,
        "supportedBy": [],
        "contestedBy": [],
        "created": "2025-11-20T08:09:43.949+00:00",
        "createdBy": "jwaller",
        "deleted": deleted,
        "deletedBy": "jwaller" if deleted else None,
    }


GREENLAND_BOX = "POLYGON ((-60 60, -20 60, -20 84, -60 84, -60 60))"
KENYA_BOX = "POLYGON ((33 -5, 42 -5, 42 5, 33 5, 33 -5))"


@pytest.mark.parametrize("shape", ["list", "page"])
def test_rules_apply_takes_a_file_saved_from_gbifs_annotation_api(shape, store_url, capsys, tmp_path):
    rules = [
        _gbif_rule(60, GREENLAND_BOX, "SUSPICIOUS"),
        _gbif_rule(61, KENYA_BOX, "NATIVE"),
        _gbif_rule(62, KENYA_BOX, "MANAGED", deleted="2025-12-01T10:00:00.000+00:00"),
    ]
    body = rules if shape == "list" else {"offset": 0, "limit": 20, "endOfRecords": True, "results": rules}
    saved = tmp_path / "gbif-rules.json"
    saved.write_text(json.dumps(body))
    occ = occurrences(tmp_path / "occ.parquet")

    code, s, _ = run(capsys, "rules", "apply", str(saved), str(occ), str(tmp_path / "out.parquet"))

    assert code == 0 and s["ok"], s
    assert s["rules"] == 2  # the deleted rule is left out, as GBIF's lists leave it out
    out = pq.read_table(tmp_path / "out.parquet")
    labels = dict(
        zip(out.column("gbifID").to_pylist(), out.column("annotation_labels").to_pylist(), strict=True)
    )
    assert labels[1] == ["SUSPICIOUS"] and labels[2] == ["NATIVE"] and labels[3] == []


def test_rules_import_takes_gbif_api_json_and_refuses_other_json_by_name(store_url, capsys, tmp_path):
    saved = tmp_path / "gbif-rules.json"
    saved.write_text(json.dumps([_gbif_rule(60, GREENLAND_BOX, "SUSPICIOUS")]))
    code, s, _ = run(capsys, "rules", "import", str(saved), "--user", "alice")
    assert code == 0 and s["ok"], s

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    code, s, _ = run(capsys, "rules", "import", str(other), "--user", "alice")
    assert code == 2 and "GBIF's annotation API" in s["error"] and "FeatureCollection" in s["error"]
