"""YAML and GeoJSON rule files: reading, errors, rules tables, store import/sync, export round trips."""

from __future__ import annotations

import json
import textwrap

import pytest
import shapely
import yaml

from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA
from gbifdl_assets.annotations.files import (
    RuleFileError,
    content_key,
    export_rules,
    export_store,
    import_rule_file,
    load_rule_file,
    rules_table_from_file,
)
from gbifdl_assets.annotations.permissions import PermissionDenied
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.unit.test_annotation_rule_text import FakeClient

LION, TIGER = 5219404, 5219416
GREENLAND = "POLYGON ((-55 60, -20 60, -20 84, -55 84, -55 60))"
KENYA = "POLYGON ((34 -5, 42 -5, 42 5, 34 5, 34 -5))"
DATASET = "50c9509d-22c7-4a22-a47d-8c48425ef4a7"

LIONS_YAML = f"""
ruleset: lions
project: big-cats
rules:
  - id: lions-greenland
    taxon: Panthera leo
    area: GL
    annotation: suspicious
    description: Lions are not found in Greenland
  - taxonKey: {LION}
    geometry: {KENYA}
    annotation: NATIVE
    yearRange: "1900,1950"
    basisOfRecord: [PRESERVED_SPECIMEN, FossilSpecimen]
    basisOfRecordNegated: true
    datasetKey: {DATASET}
  - text: Panthera leo in FR are former before 1900
    ruleset: old-lions
"""


@pytest.fixture
def store(tmp_path):
    s = AnnotationStore(f"sqlite:///{tmp_path}/a.sqlite")
    yield s
    s.close()


@pytest.fixture
def lions_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rules" / "lions.yaml"
    path.parent.mkdir()
    path.write_text(LIONS_YAML)
    return path


def test_yaml_file_reads_every_form(lions_file):
    rf = load_rule_file(lions_file, client=FakeClient())
    assert rf.origin == "rules/lions.yaml"
    gl, ke, fr = rf.rules
    assert (gl.key, gl.ruleset, gl.project, gl.description) == (
        "lions-greenland",
        "lions",
        "big-cats",
        "Lions are not found in Greenland",
    )
    assert gl.rule.taxonKey == LION and gl.rule.annotation == "SUSPICIOUS"
    assert shapely.from_wkt(gl.rule.geometry).intersects(shapely.Point(-42, 72))
    assert ke.rule.basisOfRecord == ["PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"] and ke.rule.basisOfRecordNegated
    assert ke.rule.yearRange == "1900,1950" and ke.rule.datasetKey == DATASET
    assert ke.key == content_key(ke.rule) and len(ke.key) == 12
    assert fr.ruleset == "old-lions" and fr.rule.annotation == "FORMER" and fr.rule.yearRange == "*,1899"
    assert fr.description == "Panthera leo in FR are former before 1900"


def test_content_key_is_stable_and_follows_the_content(lions_file):
    a = load_rule_file(lions_file, client=FakeClient()).rules[1]
    b = load_rule_file(lions_file, client=FakeClient()).rules[1]
    assert a.key == b.key
    # the same polygon written differently (start vertex, spacing) is the same rule
    moved = a.rule.model_copy(update={"geometry": "POLYGON((42 -5,42 5,34 5,34 -5,42 -5))"})
    assert content_key(moved) == a.key
    assert content_key(a.rule.model_copy(update={"annotation": "INTRODUCED"})) != a.key


def test_names_need_a_client(lions_file):
    with pytest.raises(
        RuleFileError, match=r"rule 1 \(id lions-greenland\): taxon 'Panthera leo': give a taxon key"
    ):
        load_rule_file(lions_file)


def test_every_bad_rule_is_reported_with_file_and_position(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            - taxonKey: {LION}
              geometry: POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))
              annotation: SUSPICIOUS
            - taxonKey: {LION}
              area: Atlantis
              annotation: SUSPICIOUS
            - taxonKey: {LION}
              geometry: {KENYA}
              annotation: SPOOKY
            - id: x
              taxonKey: {LION}
              geometry: {KENYA}
              annotation: NATIVE
            - id: x
              taxonKey: {TIGER}
              geometry: {KENYA}
              annotation: NATIVE
            - taxonKey: {LION}
              taxon: Panthera leo
              geometry: {KENYA}
              annotation: NATIVE
            - taxonKey: {LION}
              geometry: {KENYA}
              annotation: NATIVE
              colour: red
            """
        )
    )
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: 6 invalid rules:")
    assert "rule 1: geometry is not a valid polygon (Self-intersection" in text
    assert "rule 2: area: unknown area 'Atlantis'" in text
    assert "rule 3: annotation: unknown annotation label 'SPOOKY'" in text
    assert "rule 5: same id 'x' as rule 4 (ids must be unique in a file)" in text
    assert "rule 6: give either 'taxon' or 'taxonKey'" in text
    assert "rule 7: colour is not a rule field" in text


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("a.yaml", "rules: [\n", "not valid YAML"),
        ("a.yaml", "rulez: []", "unknown top-level key"),
        ("a.yaml", "42", "expected a list of rules"),
        ("a.txt", "[]", "unknown rule file type '.txt'"),
        ("a.geojson", '{"type": "Feature"}', "expected a GeoJSON FeatureCollection"),
        ("a.geojson", "{", "not valid JSON"),
        (
            "a.geojson",
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": null}]}',
            "feature 1: has no geometry",
        ),
    ],
)
def test_file_level_errors(tmp_path, name, body, message):
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(RuleFileError, match=message):
        load_rule_file(path)
    with pytest.raises(RuleFileError, match="no such rule file"):
        load_rule_file(tmp_path / "missing.yaml")


def test_geojson_file(tmp_path):
    doc = {
        "type": "FeatureCollection",
        "ruleset": "felids",
        "features": [
            {
                "type": "Feature",
                "id": "kenya-lions",
                "geometry": json.loads(json.dumps(shapely.geometry.mapping(shapely.from_wkt(KENYA)))),
                "properties": {"taxonKey": LION, "annotation": "native", "yearRange": "1900,*"},
            },
            {
                "type": "Feature",
                "geometry": {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]},
                "properties": {"taxon": "Panthera leo", "annotation": "SUSPICIOUS", "ruleset": "zero"},
            },
        ],
    }
    path = tmp_path / "felids.geojson"
    path.write_text(json.dumps(doc))
    rf = load_rule_file(path, client=FakeClient())
    a, b = rf.rules
    assert (a.key, a.ruleset, a.rule.annotation, a.rule.yearRange) == (
        "kenya-lions",
        "felids",
        "NATIVE",
        "1900,*",
    )
    assert shapely.from_wkt(a.rule.geometry).equals(shapely.from_wkt(KENYA))
    assert b.ruleset == "zero" and b.rule.taxonKey == LION
    assert shapely.from_wkt(b.rule.geometry).geom_type == "MultiPolygon"


def test_rules_table_from_file(lions_file):
    table = rules_table_from_file(lions_file, client=FakeClient())
    assert table.schema.equals(RULES_TABLE_SCHEMA)
    rows = table.to_pylist()
    assert rows[0]["id"] == "file:rules/lions.yaml#lions-greenland"
    assert {r["source"] for r in rows} == {"file"}
    assert [r["ruleset"] for r in rows] == ["lions", "lions", "old-lions"]
    assert rows[0]["project"] == "big-cats" and rows[0]["description"] == "Lions are not found in Greenland"
    assert rows[1]["basisOfRecordNegated"] is True and rows[1]["supportCount"] == 0


def test_default_ruleset_is_the_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "zero-coords.yaml"
    path.write_text(f"- taxonKey: {LION}\n  geometry: {KENYA}\n  annotation: SUSPICIOUS\n")
    assert rules_table_from_file(path).column("ruleset").to_pylist() == ["zero-coords"]
    assert rules_table_from_file(path, ruleset="other").column("ruleset").to_pylist() == ["other"]


def test_import_into_the_store_is_idempotent_and_syncs(store, lions_file):
    client = FakeClient()
    first = import_rule_file(store, lions_file, user="alice", client=client)
    assert (first["created"], first["updated"], first["deleted"]) == (3, 0, 0)
    assert first["rulesets"] == ["lions", "old-lions"]
    table = store.compile()
    assert sorted(table.column("id").to_pylist())[-1] == "file:rules/lions.yaml#lions-greenland"
    assert set(table.column("source").to_pylist()) == {"file"}
    assert set(table.column("project").to_pylist()) == {"big-cats"}
    version = store.version()
    again = import_rule_file(store, lions_file, user="alice", client=client)
    assert (again["created"], again["updated"], again["unchanged"], again["deleted"]) == (0, 0, 3, 0)
    assert store.version() == version
    # drop the sentence rule, change the Greenland rule
    doc = yaml.safe_load(lions_file.read_text())
    doc["rules"] = doc["rules"][:2]
    doc["rules"][0]["annotation"] = "VAGRANT"
    lions_file.write_text(yaml.safe_dump(doc))
    third = import_rule_file(store, lions_file, user="alice", client=client)
    assert (third["created"], third["updated"], third["unchanged"], third["deleted"]) == (0, 1, 1, 1)
    assert store.version() != version
    labels = sorted(store.compile().column("label").to_pylist())
    assert labels == ["NATIVE", "VAGRANT"]


def test_import_checks_ruleset_membership(store, lions_file):
    store.create_ruleset({"name": "lions"}, user="bob")
    with pytest.raises(
        PermissionDenied, match=r"alice may not add rules to it: only members of ruleset 'lions'"
    ):
        import_rule_file(store, lions_file, user="alice", client=FakeClient())
    assert store.list_rules() == []


def _fill(store):
    p = store.create_project({"name": "big-cats"}, user="alice")
    rs = store.create_ruleset({"name": "lions", "projectId": p.id}, user="alice")
    a = store.create_rule(
        {"taxonKey": LION, "geometry": GREENLAND, "annotation": "SUSPICIOUS", "rulesetId": rs.id},
        user="alice",
        description="Lions in Greenland are suspicious",
    )
    store.create_rule(
        {
            "taxonKey": LION,
            "geometry": "MULTIPOLYGON (((34 -5, 42 -5, 42 5, 34 5, 34 -5)), ((0 0, 1 0, 1 1, 0 0)))",
            "annotation": "NATIVE",
            "basisOfRecord": ["PRESERVED_SPECIMEN"],
            "basisOfRecordNegated": True,
            "yearRange": "*,1950",
            "datasetKey": DATASET,
        },
        user="bob",
    )
    deleted = store.create_rule({"taxonKey": TIGER, "geometry": KENYA, "annotation": "OTHER"}, user="bob")
    store.delete_rule(deleted.id, user="bob")
    store.support(a.id, user="carol")
    store.contest(a.id, user="dave")


def _comparable(table):
    """What a rule says (ids, sources and text formatting of WKT aside)."""
    rows = []
    for r in table.to_pylist():
        geom = shapely.normalize(shapely.from_wkt(r["geometry"]))
        rows.append(
            (
                r["taxonKey"],
                shapely.to_wkt(geom, rounding_precision=6),
                r["label"],
                r["datasetKey"],
                tuple(r["basisOfRecord"] or ()),
                r["basisOfRecordNegated"],
                r["yearRange"],
                r["supportCount"],
                r["contestCount"],
                r["createdBy"],
                r["ruleset"] if r["ruleset"] != "local" else None,
            )
        )
    return sorted(rows, key=repr)


@pytest.mark.parametrize("suffix", [".yaml", ".geojson"])
def test_export_round_trips_through_files_and_stores(store, tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    _fill(store)
    path = tmp_path / f"export{suffix}"
    assert export_store(store, path) == 2  # deleted rules are not exported
    original = store.compile()

    table = rules_table_from_file(path)
    assert table.num_rows == 2
    assert table.column("id").to_pylist() == [f"file:export{suffix}#local:{i}" for i in (1, 2)]
    exported = _comparable(table)
    # a rule without a ruleset gets the file's name as ruleset when read back
    expected = [row[:-1] + ((row[-1] or "export"),) for row in _comparable(original)]
    assert exported == expected

    other = AnnotationStore(f"sqlite:///{tmp_path}/b.sqlite")
    try:
        summary = import_rule_file(other, path, user="erin")
        assert summary["created"] == 2
        assert _comparable(other.compile()) == expected
        again = tmp_path / f"again{suffix}"
        export_store(other, again)
        assert _comparable(rules_table_from_file(again)) == expected
    finally:
        other.close()


def test_export_of_selected_rulesets_and_formats(store, tmp_path):
    _fill(store)
    assert export_store(store, tmp_path / "lions.yaml", rulesets=["lions"]) == 1
    doc = yaml.safe_load((tmp_path / "lions.yaml").read_text())
    (rec,) = doc["rules"]
    assert rec["ruleset"] == "lions" and rec["project"] == "big-cats"
    assert rec["supportedBy"] == ["carol"] and rec["contestedBy"] == ["dave"]
    assert rec["description"] == "Lions in Greenland are suspicious"
    assert "basisOfRecordNegated" not in rec  # defaults are left out for readability
    export_store(store, tmp_path / "all.geojson")
    fc = json.loads((tmp_path / "all.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    assert fc["features"][1]["geometry"]["type"] == "MultiPolygon"
    assert fc["features"][1]["properties"]["basisOfRecordNegated"] is True
    with pytest.raises(RuleFileError, match="unknown export type '.csv'"):
        export_rules([], tmp_path / "x.csv")
    assert not list(tmp_path.glob(".*.part"))  # atomic writes leave nothing behind
