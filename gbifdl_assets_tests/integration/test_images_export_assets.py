"""image_store[training_set x shard] and training_export through Dagster, on sandbox media."""

from __future__ import annotations

import json

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
from gbifdl_assets_tests.harness.markdown_tables import markdown_column
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
        again_meta = again.asset_materializations_for_node("image_store")[0].metadata
        assert again_meta["this_run_fetched"].value == 0
        assert again_meta["this_run_already_done"].value >= per_shard[busy]

    store = open_storage(str(tmp_path / "data"))
    manifest = read_latest_manifest(store, "cats")
    assert ok > 0 and ok <= manifest.num_rows
    meta = export.asset_materializations_for_node("training_export")[0].metadata
    dropped = meta["duplicates_dropped"].value  # copies of a photo inside one split (issue 18)
    ok -= dropped
    assert meta["images"].value == ok and meta["classes"].value == 2
    out = tmp_path / "data" / "exports" / "cats"
    exported = pq.read_table(out / "manifest.parquet")
    assert exported.num_rows == ok
    credits = (out / "credits.csv").read_text()
    assert all(k in credits for k in exported.column("content_key").to_pylist())
    assert (out / "datacard.html").exists() and (out / "export.json").exists()
    images = list((out / "imagefolder").rglob("*.jpg"))
    assert len(images) == ok

    # issue 19's wiring: the checks, what the export was built from, and the names behind it
    checks = {c.check_name: c for c in export.get_asset_check_evaluations()}
    assert set(checks) == {
        "manifest_images_accounted_for",
        "credits_cover_every_image",
        "no_duplicates_across_splits",
    }
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
    covered = {k: v.value for k, v in checks["manifest_images_accounted_for"].metadata.items()}
    assert covered["manifest_images"] == manifest.num_rows and covered["exported"] == ok
    # "failed: http_404: 3; failed: not_an_image: 1" (or "none")
    reasons = [
        int(part.rsplit(": ", 1)[1]) for part in covered["not_exported_by_reason"].split("; ") if ": " in part
    ]
    assert covered["not_exported"] == sum(reasons) == manifest.num_rows - ok
    apart = {k: v.value for k, v in checks["no_duplicates_across_splits"].metadata.items()}
    assert apart["clusters_across_splits"] == 0 and apart["copies_dropped"] == dropped
    assert meta["unattributed"].value == 0 and meta["dropped_unattributed"].value == 0
    assert meta["contributing_datasets"].value > 0
    provenance = markdown_column(meta["provenance"].value, "field", "value")
    snapshot_id = manifest.column("snapshot_id")[0].as_py()
    assert provenance["spec"] == "cats" and len(provenance["spec fingerprint"]) == 17  # 16 and "…"
    assert provenance["snapshot"] == snapshot_id and provenance["manifest"].startswith(snapshot_id)
    assert provenance["rules version"] and provenance["source"].startswith("search API")
    assert provenance["retrieved"]
    card = (out / "datacard.md").read_text()
    assert "## Contributing datasets" in card and snapshot_id in card and provenance["rules version"] in card
    citation = (out / "CITATION.md").read_text()
    assert "https://www.gbif.org/occurrence/search?" in citation and "```json" in citation
    titles = {
        v
        for v in pq.read_table(
            next((tmp_path / "data" / "snapshots" / "cats").glob("*/media.parquet")), columns=["datasetTitle"]
        )
        .column("datasetTitle")
        .to_pylist()
        if v
    }
    assert titles and any(t in citation for t in titles)
    croissant = json.loads((out / "croissant.json").read_text())
    assert croissant["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert (out / "imagefolder" / "train" / "metadata.jsonl").exists()
