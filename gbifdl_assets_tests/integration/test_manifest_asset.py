"""The graph from species list to balanced manifest, through Dagster, against the sandbox."""

from __future__ import annotations

import dagster as dg
import pyarrow.compute as pc
import pytest

from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rulesets
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.gbif.licenses import parse_license_allowlist
from gbifdl_assets.pipeline.balanced_manifest import CHECKS, read_latest_manifest
from gbifdl_assets.storage import open_storage
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

pytestmark = pytest.mark.integration

PARTITIONED = [species_list, gbif_download, occurrence_snapshot, annotated_occurrences, balanced_manifest]

SPEC = """name: butterflies
taxa: [Vanessa atalanta, Vanessa cardui, Aglais io, Pieris rapae]
source: search
balancing: {max_per_class: 12, min_per_class: 3, seed: 1}
licenses: [CC0, CC-BY, CC-BY-SA, CC-BY-NC]
"""


def _run(sandbox, tmp_path, instance):
    resources = sandbox_resources(sandbox.api_url, tmp_path, seed_rules=True, images=False)
    assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
    return dg.materialize(
        [*PARTITIONED, annotation_rulesets],
        selection=[a.key for a in PARTITIONED],
        partition_key="butterflies",
        instance=instance,
        resources=resources,
    )


def test_manifest_is_exact_checked_and_reproducible(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "b.yaml").write_text(SPEC)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["butterflies"])
        result = _run(sandbox, tmp_path, instance)
        assert result.success
        checks = {
            c.check_name: c.passed
            for c in result.get_asset_check_evaluations()
            if c.asset_key.path == ["balanced_manifest"]
        }
        assert checks == dict.fromkeys(CHECKS, True)
        meta = result.asset_materializations_for_node("balanced_manifest")[0].metadata
        store = open_storage(str(tmp_path / "data"))
        first = read_latest_manifest(store, "butterflies")
        counts = first.group_by("label").aggregate([("url", "count")]).column("url_count").to_pylist()
        assert counts == [12] * meta["classes"].value  # exactly the cap for each species
        assert set(first.column("split").to_pylist()) <= {"train", "val", "test"}
        allowed = set(parse_license_allowlist(["CC0", "CC-BY", "CC-BY-SA", "CC-BY-NC"]))
        assert set(first.column("license").to_pylist()) <= allowed
        assert "ALL-RIGHTS-RESERVED" not in first.column("license").to_pylist()

        # same inputs, same seed: the same manifest (a second full run is a refresh of the same data)
        again = _run(sandbox, tmp_path, instance)
        assert again.success
        second = read_latest_manifest(store, "butterflies")
        assert sorted(second.column("url").to_pylist()) == sorted(first.column("url").to_pylist())
        by_url = dict(zip(first.column("url").to_pylist(), first.column("split").to_pylist(), strict=True))
        assert all(
            by_url[u] == s
            for u, s in zip(second.column("url").to_pylist(), second.column("split").to_pylist(), strict=True)
        )
        assert pc.count_distinct(second.column("snapshot_id")).as_py() == 1
