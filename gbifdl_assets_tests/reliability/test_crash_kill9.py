"""kill -9 of a Dagster run mid-work, then the same materialization again.

The run is ``dagster asset materialize`` (it executes in its own process); the test waits until the
run's own progress shows it is mid-way, SIGKILLs its whole process group, and re-materializes. The
store must then hold exactly what the ledger says, object for object, with nothing lost, duplicated
or corrupt; a DwC-A ingest killed half-way must leave no snapshot that readers can see.
"""

from __future__ import annotations

import re
from collections import Counter

import pyarrow.compute as pc
import pytest

from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.occurrences.snapshots import latest_snapshot, list_snapshots, read_snapshot
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.pipeline.image_shards import shard_of
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.storage import TMP_PREFIX
from gbifdl_assets.storage.layout import ledger_name
from gbifdl_assets_tests.reliability.checks import assert_ledger_matches_store, leftover_temp_files
from gbifdl_assets_tests.reliability.project import image_partition

# The most common species of the session sandbox (20,000 occurrences, seed 42): ~2,750 occurrences.
BIG_SPECIES = "Tisciolops canadensis"
PROGRESS = re.compile(r"images: ([\d,]+) of ([\d,]+) done")
# One connection makes the shard take long enough (> one 5 s progress interval) to be killed mid-way;
# run config replaces the resource's whole configuration, so the sandbox's loopback address is allowed again.
SLOW_FETCH = {
    "resources": {"image_fetch": {"config": {"concurrency": 1, "per_host": 1, "allow_loopback": True}}}
}


def _progress(log: str) -> tuple[int, int] | None:
    found = PROGRESS.findall(log)
    if not found:
        return None
    done, total = found[-1]
    return int(done.replace(",", "")), int(total.replace(",", ""))


@pytest.mark.timeout(240)
def test_kill_9_during_image_download_then_rematerialize(project) -> None:
    project.write_spec(
        "crash-images",
        f"taxa: [{BIG_SPECIES}]\nsource: search\n"
        "balancing: {max_per_class: 1500, min_per_class: 1}\n"
        "licenses: [CC0, PDM, CC-BY, CC-BY-SA, CC-BY-NC, CC-BY-NC-SA]\n"
        "images: {max_side: 96, completeness_threshold: 0.1}\n",
    )
    project.add_partition("crash-images")
    project.upstream("crash-images")
    store = project.storage()
    manifest = read_latest_manifest(store, "crash-images")
    (shard,) = set(shard_of(manifest.column("label")).to_pylist())
    rows = manifest.filter(pc.equal(shard_of(manifest.column("label")), shard))
    assert rows.num_rows > 1000
    partition = str(image_partition("crash-images", shard))
    name = ledger_name("crash-images", shard)

    run = project.start("image_store", partition, run_config=SLOW_FETCH)

    def mid_way() -> bool:  # the first progress line comes after 5 s; the shard takes longer
        seen = _progress(run.log_text())
        return seen is not None and 0 < seen[0] < seen[1]

    run.wait_for(mid_way, timeout=150, what="the download progress to show it is under way")
    run.kill9()
    done_before, total = _progress(run.log_text()) or (0, 0)
    assert total == rows.num_rows
    # Right after the crash: what the ledger recorded is complete; unrecorded objects may exist.
    recorded = load_ledger(store, name)
    assert recorded.num_rows < rows.num_rows, "the run was killed after it finished"
    for row in recorded.filter(recorded.column("stored")).to_pylist():
        assert store.size(row["key"]) == row["bytes"]

    again = project.start("image_store", partition)
    assert again.wait(timeout=150) == 0, again.log_text()[-3000:]
    assert "RUN_SUCCESS" in again.log_text()
    final = assert_ledger_matches_store(store, name, rows)
    assert final.num_rows == rows.num_rows  # one row per image of the shard, none lost, none twice
    counts = Counter(final.column("status").to_pylist())
    assert counts.get("ok", 0) >= 0.9 * rows.num_rows, counts  # the rest: the sandbox's hidden faults
    assert leftover_temp_files(project.data / "images") == []
    print(f"killed at {done_before}/{total} images; after re-run {counts}")


@pytest.fixture(scope="module")
def big_sandbox():
    """100,000 occurrences: the Animalia archive has ~75,000 rows, about a second of ingest."""
    with start_sandbox(SandboxConfig(occurrences=100_000, seed=42, download_seconds=(0.2, 0.2))) as running:
        yield running


@pytest.mark.timeout(240)
def test_kill_9_during_dwca_ingest_leaves_no_visible_snapshot(project_factory, big_sandbox) -> None:
    project = project_factory(big_sandbox.api_url, GBIF_USERNAME="sandbox", GBIF_PASSWORD="sandbox")
    # The download source: the sandbox builds a DWCA, the run fetches it and streams it into Parquet.
    project.write_spec(
        "crash-dwca",
        "taxa: [Animalia]\nsource: download\nbalancing: {max_per_class: 5, min_per_class: 1}\n",
    )
    project.add_partition("crash-dwca")
    assert project.materialize(["species_list", "gbif_download"], "crash-dwca").success
    store = project.storage()
    staging_dir = project.data / "snapshots" / "crash-dwca"

    def staged() -> list:
        return list(staging_dir.glob(f"{TMP_PREFIX}*")) if staging_dir.is_dir() else []

    run = project.start(
        "occurrence_snapshot",
        "crash-dwca",
        run_config={"ops": {"occurrence_snapshot": {"config": {"poll_seconds": 0.2}}}},
    )
    # the run logs "fetched N bytes; ingesting", then streams rows into its staging Parquet file
    run.wait_for(lambda: any(p.stat().st_size > 0 for p in staged()), timeout=180, what="the ingest")
    run.freeze()  # stand still mid-ingest, so what follows is not a race with the commit
    assert staged(), "the ingest finished before it could be stopped"
    assert "ingesting" in run.log_text() and "RUN_SUCCESS" not in run.log_text()
    run.kill9()
    # Nothing half-written is visible: no snapshot, and readers say so clearly.
    assert latest_snapshot(store, "crash-dwca") is None
    assert list_snapshots(store, "crash-dwca") == []
    with pytest.raises(FileNotFoundError, match="has no committed snapshot"):
        read_snapshot(store, "crash-dwca")

    again = project.start("occurrence_snapshot", "crash-dwca")
    assert again.wait(timeout=180) == 0, again.log_text()[-3000:]
    (snapshot,) = list_snapshots(store, "crash-dwca")
    table = read_snapshot(store, "crash-dwca")
    assert table.num_rows == snapshot.counts["media"] > 10_000
    assert all(TMP_PREFIX not in key for key in store.list(f"snapshots/crash-dwca/{snapshot.snapshot_id}"))
