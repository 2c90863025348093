"""A scheduled refresh is incremental: after the snapshot grows, only images not stored yet are fetched,
and images already in the training set keep their split.

The first build runs on a smaller snapshot (the GBIF query's results at an earlier time: a committed
snapshot holding a subset of the records); the refresh then materializes exactly what
training_set_refresh_schedule's run does (REFRESH_SELECTION: a fresh snapshot from the sandbox, the
annotations, the manifest), followed by the image shards that eager automation requests after it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import dagster as dg
import pyarrow.compute as pc
import pytest

from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rulesets
from gbifdl_assets.defs.images import image_store, shard_partitions, training_export
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.schedules import REFRESH_SELECTION
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.occurrences.snapshots import latest_snapshot
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.pipeline.image_shards import shard_of
from gbifdl_assets.storage import open_storage
from gbifdl_assets.storage.layout import (
    SNAPSHOT_MEDIA_FILE as MEDIA_FILE,
)
from gbifdl_assets.storage.layout import (
    SNAPSHOT_META_FILE as META_FILE,
)
from gbifdl_assets.storage.layout import (
    new_snapshot_id,
    snapshot_prefix,
)
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::dagster.BetaWarning")]

EVERYTHING = [
    species_list, gbif_download, occurrence_snapshot, annotation_rulesets, annotated_occurrences,
    balanced_manifest, image_store, training_export,
]  # fmt: skip
SPEC = """name: cats
taxa: [Panthera leo, Panthera tigris]
source: search
balancing: {max_per_class: 12, min_per_class: 2}
licenses: [CC0, CC-BY, CC-BY-SA, CC-BY-NC]
images: {max_side: 64, min_side: 16, completeness_threshold: 0.25}
refresh: "0 3 1 * *"
"""


def _commit_earlier_subset(store, training_set: str) -> int:
    """Commit a snapshot holding 60 % of the latest one's records (by gbifID), as the newest snapshot."""
    full = latest_snapshot(store, training_set)
    table = store.read_parquet(full.media_key)
    keep = pc.less(pc.bit_wise_and(pc.cast(table.column("gbifID"), "int64"), 7), 5)  # ~5 of 8 records
    subset = table.filter(keep)
    digest = hashlib.sha256(
        json.dumps(sorted(map(str, subset.column("gbifID").to_pylist()))).encode()
    ).hexdigest()
    snapshot_id = new_snapshot_id(digest, dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=5))
    prefix = snapshot_prefix(training_set, snapshot_id)
    store.write_parquet(f"{prefix}/{MEDIA_FILE}", subset)
    meta = {**full.metadata, "snapshot_id": snapshot_id, "counts": {**full.counts, "media": subset.num_rows}}
    meta.pop("files", None)
    store.write_bytes(f"{prefix}/{META_FILE}", json.dumps(meta).encode())  # the commit marker, last
    assert latest_snapshot(store, training_set).snapshot_id == snapshot_id
    return subset.num_rows


def _store_shards(instance, resources, manifest) -> dict[str, int]:
    """image_store for the shards of 'cats' that hold images (the others have nothing to fetch);
    the summed this_run counters."""
    totals: dict[str, int] = {}
    for shard in sorted(set(shard_of(manifest.column("label")).to_pylist())):
        run = dg.materialize(
            EVERYTHING,
            selection=[image_store.key],
            partition_key=dg.MultiPartitionKey({TRAINING_SET_PARTITION: "cats", "shard": shard}),
            instance=instance,
            resources=resources,
        )
        assert run.success
        meta = run.asset_materializations_for_node("image_store")[0].metadata
        # ledger_entries = images this run fetched (or tried to); already_done = skipped as stored
        for name, key in (
            ("ok", "fetched"),
            ("ledger_entries", "ledger_entries"),
            ("already_done", "already_done"),
        ):
            totals[name] = totals.get(name, 0) + meta[f"this_run_{key}"].value
    return totals


def _settled_keys(store) -> set[str]:
    """Content keys the ledgers record as final (stored, or skipped for good)."""
    keys: set[str] = set()
    for shard in shard_partitions.get_partition_keys():
        ledger = load_ledger(store, f"cats.shard{shard}")
        done = ledger.filter(pc.is_in(ledger.column("status"), pc.cast(["ok", "skipped"], "string")))
        keys |= set(done.column("content_key").to_pylist())
    return keys


def test_refresh_after_the_snapshot_grew_fetches_only_new_images_and_keeps_splits(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "cats.yaml").write_text(SPEC)
    resources = sandbox_resources(sandbox.api_url, tmp_path)
    store = open_storage(str(tmp_path / "data"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success

        def materialize(assets) -> None:
            result = dg.materialize(
                EVERYTHING, selection=[a.key for a in assets], partition_key="cats", instance=instance,
                resources=resources,
            )  # fmt: skip
            assert result.success

        # first build, on the earlier (smaller) state of GBIF
        materialize([species_list, gbif_download, occurrence_snapshot])
        earlier_rows = _commit_earlier_subset(store, "cats")
        materialize([annotated_occurrences, balanced_manifest])
        before = read_latest_manifest(store, "cats")
        first = _store_shards(instance, resources, before)
        assert first["ok"] > 0 and first["already_done"] == 0
        settled = _settled_keys(store)

        # the refresh: the schedule's run, then the shards
        materialize(REFRESH_SELECTION)
        grown = latest_snapshot(store, "cats")
        assert grown.counts["media"] > earlier_rows  # the snapshot grew
        after = read_latest_manifest(store, "cats")
        refresh = _store_shards(instance, resources, after)

    old_keys = set(before.column("content_key").to_pylist())
    new_keys = set(after.column("content_key").to_pylist())
    assert new_keys - old_keys, "the refresh brought no new images: the test would prove nothing"
    # only what was not settled before is fetched; everything settled is skipped
    assert refresh["ledger_entries"] == len(new_keys - settled)
    assert refresh["already_done"] == len(new_keys & settled)
    assert len(new_keys & old_keys & settled) > 0

    # images in both manifests keep their split
    split_before = dict(zip(*before.select(["content_key", "split"]).to_pydict().values(), strict=True))
    split_after = dict(zip(*after.select(["content_key", "split"]).to_pydict().values(), strict=True))
    common = old_keys & new_keys
    assert common and all(split_before[k] == split_after[k] for k in common)
    print(
        f"\nrefresh: snapshot {earlier_rows} -> {grown.counts['media']} records; manifest {len(old_keys)} -> "
        f"{len(new_keys)} images ({len(new_keys - old_keys)} new); fetched {refresh['ledger_entries']}, "
        f"skipped as stored {refresh['already_done']}; {len(common)} kept their split"
    )
