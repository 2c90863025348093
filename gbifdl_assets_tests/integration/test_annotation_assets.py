"""annotation_rulesets and annotated_occurrences through Dagster; the rules-changed sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rules_sensor, annotation_rulesets
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import AnnotationsResource as AnnotationSources
from gbifdl_assets.defs.resources import GbifResource, StorageResource
from gbifdl_assets.defs.resources import SpecsResource as SpecCatalog
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.pipeline.annotated_occurrences import latest_annotated_key
from gbifdl_assets.storage import open_storage

pytestmark = pytest.mark.integration

WORLD = "POLYGON ((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"
LEO = 5219404  # the sandbox keeps GBIF's key for Panthera leo


def _setup(sandbox, tmp_path: Path, spec_extra: str = ""):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "cats.yaml").write_text(
        f"name: cats\ntaxa: [Panthera leo, Panthera tigris]\nsource: search\n{spec_extra}"
    )
    db = f"sqlite:///{tmp_path / 'annotations.sqlite'}"
    store = AnnotationStore(db)
    store.add_user("alice", "correct horse battery staple")
    ruleset = store.ensure_ruleset("lions", user="alice")
    store.create_rule(
        {"taxonKey": LEO, "geometry": WORLD, "annotation": "SUSPICIOUS", "rulesetId": ruleset.id},
        user="alice",
    )
    resources = {
        "gbif": GbifResource(base_url=sandbox.api_url),
        "storage": StorageResource(uri=str(tmp_path / "data")),
        "specs": SpecCatalog(folder=str(specs)),
        "annotations": AnnotationSources(store_url=db, seeds=False),
    }
    return store, ruleset, resources


ALL = [species_list, gbif_download, occurrence_snapshot, annotation_rulesets, annotated_occurrences]


def test_rules_label_the_right_occurrences(sandbox, tmp_path):
    _, _, resources = _setup(sandbox, tmp_path)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
        result = dg.materialize(
            ALL,
            selection=[k for a in ALL if a is not annotation_rulesets for k in a.keys],
            partition_key="cats",
            instance=instance,
            resources=resources,
        )
    assert result.success
    meta = result.asset_materializations_for_node("annotated_occurrences")[0].metadata
    assert "SUSPICIOUS" in meta["records_per_label"].value
    store = open_storage(str(tmp_path / "data"))
    table = store.read_parquet(latest_annotated_key(store, "cats"))
    labelled = pc.list_value_length(table.column("annotation_labels")).to_numpy() > 0
    has_coords = pc.is_valid(table.column("decimalLatitude")).to_numpy()
    is_leo = table.column("speciesKey").to_numpy(zero_copy_only=False) == LEO
    assert labelled.sum() > 0
    # every lion with coordinates is labelled, and nothing else is
    assert (labelled == (is_leo & has_coords)).all()
    assert meta["occurrences_matched"].value == len(
        set(table.filter(pa.array(labelled)).column("gbifID").to_pylist())
    )


def test_spec_votes_policy_and_unknown_ruleset(sandbox, tmp_path):
    _, _, resources = _setup(sandbox, tmp_path, "annotations: {min_support: 1}\n")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
        result = dg.materialize(
            ALL,
            selection=[k for a in ALL if a is not annotation_rulesets for k in a.keys],
            partition_key="cats",
            instance=instance,
            resources=resources,
        )
        meta = result.asset_materializations_for_node("annotated_occurrences")[0].metadata
        assert meta["rules_skipped_by_votes"].value == 1 and meta["occurrences_matched"].value == 0

        (tmp_path / "specs" / "cats.yaml").write_text(
            "name: cats\ntaxa: [Panthera leo]\nannotations: {rulesets: [tigers]}\n"
        )
        failed = dg.materialize(
            ALL,
            selection=[annotated_occurrences.key],
            partition_key="cats",
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        assert not failed.success
        message = failed.get_step_failure_events()[0].event_specific_data.error.message
        assert "tigers" in message and "lions" in message


def test_rules_sensor_fires_on_change_only(sandbox, tmp_path):
    store, ruleset, resources = _setup(sandbox, tmp_path)
    with dg.instance_for_test() as instance:
        first = annotation_rules_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert len(first.run_requests) == 1
        assert first.run_requests[0].tags["gbifdl/target"] == "annotation_rulesets"
        quiet = annotation_rules_sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
        )
        assert isinstance(quiet, dg.SkipReason)
        store.create_rule(
            {"taxonKey": LEO, "geometry": WORLD, "annotation": "MANAGED", "rulesetId": ruleset.id},
            user="alice",
        )
        changed = annotation_rules_sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
        )
        assert len(changed.run_requests) == 1 and changed.cursor != first.cursor


def test_new_rules_make_annotated_occurrences_eagerly_requested(sandbox, tmp_path):
    store, ruleset, resources = _setup(sandbox, tmp_path)
    defs = dg.Definitions(assets=ALL, resources=resources)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
        assert dg.materialize(
            ALL,
            selection=[k for a in ALL if a is not annotation_rulesets for k in a.keys],
            partition_key="cats",
            instance=instance,
            resources=resources,
        ).success
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # everything is up to date
        store.create_rule(
            {"taxonKey": LEO, "geometry": WORLD, "annotation": "MANAGED", "rulesetId": ruleset.id},
            user="alice",
        )
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert second.get_requested_partitions(annotated_occurrences.key) == {"cats"}


def test_the_annotated_table_is_the_same_annotated_in_small_batches(sandbox, tmp_path, monkeypatch):
    """The snapshot is annotated a batch at a time (bounded memory at millions of rows); an occurrence
    whose media rows fall into two batches must not be counted or matched twice."""
    from gbifdl_assets.pipeline import annotated_occurrences as stage
    from gbifdl_assets.specs import load_spec

    _, _, resources = _setup(sandbox, tmp_path)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
        upstream = [species_list, gbif_download, occurrence_snapshot, annotation_rulesets]
        selection = [k for a in upstream if a is not annotation_rulesets for k in a.keys]
        assert dg.materialize(
            upstream, selection=selection, partition_key="cats", instance=instance, resources=resources
        ).success
    store = open_storage(str(tmp_path / "data"))
    spec = load_spec(tmp_path / "specs" / "cats.yaml")

    def annotate() -> tuple:
        result = stage.annotate_occurrences("cats", spec, store)
        key = latest_annotated_key(store, "cats")
        matches = store.read_parquet(key.rsplit("/", 1)[0] + "/matches.parquet")
        fields = {k: v for k, v in vars(result).items() if k not in ("seconds", "bytes")}
        return fields, store.read_parquet(key), matches

    whole, table, matches = annotate()
    monkeypatch.setattr(stage, "BATCH_ROWS", 7)
    batched, table7, matches7 = annotate()
    assert table.num_rows > 20 and whole["occurrences_matched"] > 0  # several batches, some matches
    gid = table.column("gbifID").to_pylist()
    straddling = {gid[i] for i in range(7, len(gid), 7) if gid[i - 1] == gid[i]}
    assert straddling & set(matches.column("gbifID").to_pylist())  # a matched occurrence in two batches
    assert table7.equals(table)
    assert matches7.equals(matches)
    assert batched == whole
