"""Flags reach the manifest: flag an image (store or API), image_flags compiles, the next manifest
leaves it out (and fills its class from the other candidates); a policy that ignores it drops nothing."""

from __future__ import annotations

import dagster as dg
import pytest

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.storage import layout, open_storage
from gbifdl_assets_tests.harness.manifest_graph import (
    BUTTERFLIES_SPEC,
    materialize_to_manifest,
    rebuild_manifest,
)
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

pytestmark = pytest.mark.integration


def test_a_flagged_image_leaves_the_next_manifest(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "b.yaml").write_text(BUTTERFLIES_SPEC)
    resources = sandbox_resources(sandbox.api_url, tmp_path, seed_rules=True, images=False)
    store_url = resources["annotations"].store_url
    storage = open_storage(str(tmp_path / "data"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["butterflies"])
        assert materialize_to_manifest(sandbox, tmp_path, instance).success
        before = read_latest_manifest(storage, "butterflies")
        rows = before.to_pylist()
        victim, wrong = rows[0], rows[-1]
        with AnnotationStore(store_url) as store:
            flag = store.create_flag(
                {"gbifID": victim["gbifID"], "mediaIdentifier": victim["url"], "flag": "NOT_ORGANISM"},
                user="alice",
            )
            # WRONG_TAXON under another class than the image's: does not touch it
            store.create_flag(
                {"gbifID": 1, "mediaIdentifier": wrong["url"], "flag": "WRONG_TAXON", "taxonKey": 1},
                user="alice",
            )
        result = rebuild_manifest(instance, resources)
        after = read_latest_manifest(storage, "butterflies")
        urls = set(after.column("url").to_pylist())
        assert victim["url"] not in urls and wrong["url"] in urls
        assert after.num_rows == before.num_rows  # the class was filled from its other candidates
        meta = result.asset_materializations_for_node("balanced_manifest")[0].metadata
        assert "image_flag" in meta["dropped"].value
        annotated, flags_version = layout.split_manifest_id(meta["path"].value.split("/")[-2])
        assert flags_version is not None and layout.split_annotated_id(annotated)[1]

        # a contested flag under a policy that ignores contested flags no longer counts
        (tmp_path / "specs" / "b.yaml").write_text(
            BUTTERFLIES_SPEC + "annotations: {image_flags: {exclude_contested: true}}\n"
        )
        with AnnotationStore(store_url) as store:
            store.vote_flag(flag.id, "contest", user="bob")
        again = rebuild_manifest(instance, resources)
        meta = again.asset_materializations_for_node("balanced_manifest")[0].metadata
        # nothing dropped by flags now (the manifest keeps its previous images where it can, so the
        # image is a candidate again rather than necessarily back)
        assert "image_flag" not in meta["dropped"].value
