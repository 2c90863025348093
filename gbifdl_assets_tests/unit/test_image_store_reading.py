"""image_store reads the manifest a shard at a time: the rows and the training-set summary are the
ones the whole manifest gives."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gbifdl_assets.media.ledger import LEDGER_SCHEMA, completeness_table
from gbifdl_assets.pipeline.balanced_manifest import open_latest_manifest
from gbifdl_assets.pipeline.image_shards import ShardedManifest, shard_keys, shard_of
from gbifdl_assets.pipeline.image_store import training_set_images
from gbifdl_assets.storage import LocalStorage, layout

TS = "moths"
SHARDS = 4


def _manifest(n: int = 300) -> pa.Table:
    rng = np.random.default_rng(3)
    urls = [f"https://img.example/{i}.jpg" for i in range(n)]
    return pa.table(
        {
            "content_key": pa.array([hashlib.sha256(u.encode()).hexdigest() for u in urls]),
            "url": pa.array(urls),
            "label": pa.array(np.sort(rng.integers(100, 130, n)).astype(np.int64)),
            "label_name": pa.array([None if i % 11 == 0 else f"name {i % 7}" for i in range(n)]),
            "creator": pa.array([f"person {i % 5}" for i in range(n)]),
        }
    )


def _store(tmp_path: Path, manifest: pa.Table) -> LocalStorage:
    storage = LocalStorage(tmp_path)
    folder = layout.manifests(TS)
    output_id = layout.annotated_id("20260105T031500123Z-0123456789ab", "abc")
    with storage.open_write(folder.commit_key(output_id)) as fh:
        pq.write_table(manifest, fh, row_group_size=37)  # many row groups and batches
    layout.publish(storage, folder, output_id)
    return storage


def _shard_per_row(manifest: pa.Table) -> pa.Array:
    return shard_of(manifest.column("label"), SHARDS)


def test_a_shard_s_rows_are_the_whole_manifest_s_rows_of_that_shard(tmp_path: Path) -> None:
    manifest = _manifest()
    sharded = ShardedManifest(open_latest_manifest(_store(tmp_path, manifest), TS), shards=SHARDS)
    assert sharded.num_rows == manifest.num_rows
    shards = _shard_per_row(manifest)
    seen = 0
    for shard in shard_keys(SHARDS):
        expected = manifest.filter(pc.equal(shards, shard))
        got = sharded.rows_of(shard)
        assert got.schema.equals(manifest.schema) and got.equals(expected)
        narrow = sharded.rows_of(shard, ["content_key", "creator"])  # label is read, not returned
        assert narrow.column_names == ["content_key", "creator"]
        assert narrow.equals(expected.select(["content_key", "creator"]))
        seen += got.num_rows
    assert seen == manifest.num_rows
    assert sharded.rows_of("99").num_rows == 0  # no such shard: an empty table of the manifest's schema


def _ledger(rows: pa.Table, statuses: list[str]) -> pa.Table:
    return pa.table(
        {
            "content_key": rows.column("content_key"),
            "url": rows.column("url"),
            "status": pa.array(statuses),
            "stored": pa.array([s == "ok" for s in statuses]),
        }
    )


def test_the_training_set_summary_is_the_whole_manifest_s(tmp_path: Path) -> None:
    manifest = _manifest()
    storage = _store(tmp_path, manifest)
    sharded = ShardedManifest(open_latest_manifest(storage, TS), shards=SHARDS)
    shards = _shard_per_row(manifest)
    ledgers = {}
    for i, shard in enumerate(shard_keys(SHARDS)[:3]):  # the last shard has not run
        rows = manifest.filter(pc.equal(shards, shard))
        seen = rows.slice(0, rows.num_rows - 5 * i)  # shard 02 leaves 10 images to fetch
        statuses = ["failed" if (k + i) % 4 == 0 else "ok" for k in range(seen.num_rows)]
        ledger = _ledger(seen, statuses)
        stale = _ledger(seen.slice(0, 3), ["failed"] * 3)  # an older entry each: the later one wins
        name = layout.ledger_name(TS, shard)
        storage.write_parquet(f"ledgers/{name}/seg-000000000000-a.parquet", stale)
        storage.write_parquet(f"ledgers/{name}/seg-000000000001-b.parquet", ledger)
        ledgers[shard] = ledger
    own = shard_keys(SHARDS)[1]
    summary = training_set_images(
        storage,
        TS,
        sharded,
        threshold=0.8,
        known={own: (sharded.rows_of(own), ledgers[own])},  # as store_shard passes its own shard
    )
    # the same figures from the whole manifest and every ledger at once
    everything = pa.concat_tables(
        [t.cast(pa.schema([LEDGER_SCHEMA.field(c) for c in t.column_names])) for t in ledgers.values()]
    )
    whole = completeness_table(manifest, everything, by="label", threshold=0.8)
    assert summary.classes == whole.num_rows
    assert summary.classes_below == int(pc.sum(whole.column("below_threshold")).as_py())
    assert 0 < summary.classes_below < summary.classes  # the threshold splits the classes
    rows = {r["shard"]: r for r in summary.shards}
    assert list(rows) == shard_keys(SHARDS)
    for shard in shard_keys(SHARDS):
        images = int(pc.sum(pc.equal(shards, shard)).as_py())
        ledger = ledgers.get(shard)
        stored = int(pc.sum(ledger.column("stored")).as_py()) if ledger is not None else 0
        failed = ledger.column("status").to_pylist().count("failed") if ledger is not None else 0
        seen = ledger.num_rows if ledger is not None else 0
        assert rows[shard]["images"] == images
        assert (rows[shard]["stored"], rows[shard]["failed"], rows[shard]["pending"]) == (
            stored,
            failed,
            images - seen,
        )
    assert rows["00"]["state"] == "done" and rows["02"]["state"] == "partly done"
    assert rows["03"]["state"] == "to do"
    assert summary.total("images") == manifest.num_rows
