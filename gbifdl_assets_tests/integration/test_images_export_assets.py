"""image_store[training_set x shard] and training_export through Dagster, on sandbox media."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rulesets
from gbifdl_assets.defs.images import image_store, shard_partitions, training_export
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.storage import open_storage
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::dagster.BetaWarning")]

UPSTREAM = [species_list, gbif_download, occurrence_snapshot, annotated_occurrences, balanced_manifest]
SPEC = """name: cats
taxa: [Panthera leo, Panthera tigris]
source: search
balancing: {max_per_class: 8, min_per_class: 2}
licenses: [CC0, CC-BY, CC-BY-SA, CC-BY-NC]
images: {max_side: 128, min_side: 32, completeness_threshold: 0.5}
"""


def test_images_are_fetched_per_shard_and_exported(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "cats.yaml").write_text(SPEC)
    resources = sandbox_resources(sandbox.api_url, tmp_path)
    everything = [*UPSTREAM, annotation_rulesets, image_store, training_export]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
        assert dg.materialize(
            everything,
            selection=[a.key for a in UPSTREAM],
            partition_key="cats",
            instance=instance,
            resources=resources,
        ).success
        ok, per_shard = 0, {}
        for shard in shard_partitions.get_partition_keys():
            key = dg.MultiPartitionKey({TRAINING_SET_PARTITION: "cats", "shard": shard})
            run = dg.materialize(
                everything,
                selection=[image_store.key],
                partition_key=key,
                instance=instance,
                resources=resources,
            )
            assert run.success
            per_shard[shard] = run.asset_materializations_for_node("image_store")[0].metadata["ok"].value
            ok += per_shard[shard]
        export = dg.materialize(
            everything,
            selection=[training_export.key],
            partition_key="cats",
            instance=instance,
            resources=resources,
        )
        assert export.success

        # a second pass over a shard fetches nothing new (the ledger and the content-addressed store)
        busy = max(per_shard, key=per_shard.get)
        assert per_shard[busy] > 0
        again = dg.materialize(
            everything,
            selection=[image_store.key],
            instance=instance,
            resources=resources,
            partition_key=dg.MultiPartitionKey({TRAINING_SET_PARTITION: "cats", "shard": busy}),
        )
        this_run = again.asset_materializations_for_node("image_store")[0].metadata["this_run"].value
        assert this_run["ok"] == 0 and this_run["already_done"] >= per_shard[busy]

    store = open_storage(str(tmp_path / "data"))
    manifest = read_latest_manifest(store, "cats")
    assert ok > 0 and ok <= manifest.num_rows
    meta = export.asset_materializations_for_node("training_export")[0].metadata
    assert meta["images"].value == ok and meta["classes"].value == 2
    out = tmp_path / "data" / "exports" / "cats"
    exported = pq.read_table(out / "manifest.parquet")
    assert exported.num_rows == ok
    credits = (out / "credits.csv").read_text()
    assert all(k in credits for k in exported.column("content_key").to_pylist())
    assert (out / "datacard.html").exists() and (out / "export.json").exists()
    images = list((out / "imagefolder").rglob("*.jpg"))
    assert len(images) == ok
