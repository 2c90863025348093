"""Load: one training set through the whole graph at two sizes, each stage measured.

* 100,000 images from 1,000,000 sandbox occurrences;
* 1,000,000 images from 10,000,000 sandbox occurrences (the same shards: 8 per training set).

The sandbox runs as its own process so that its CPU is told apart from the product's. Each stage is
``dagster asset materialize`` process groups as an operator would run them: the upstream stages one
after another, image_store's first shard alone, then the other shards two at a time (a backfill with
the ``image_download`` pool at 2; measured pair by pair), then training_export. The sandbox keeps the DWCA's data entries between runs (``ARCHIVE_CACHE``): a
second run at a size waits for no rendering. The first shard is
also stored by a plain call (no Dagster, a fresh folder, same configuration; not at 1,000,000 images):
the ratio is what Dagster costs. The test writes LOAD_REPORT.md and load_results.json next to this
file after every stage, so a run stopped midway keeps what it measured. Marked ``soak``: ``make soak``
runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests

from gbifdl_assets.pipeline.image_shards import SHARDS
from gbifdl_assets_tests.harness.sandbox_process import sandbox_process
from gbifdl_assets_tests.reliability.load_measure import LoadRun, Stage, machine_line, run_stage, save
from gbifdl_assets_tests.reliability.project import image_partition

FAST_POLL = {"ops": {"occurrence_snapshot": {"config": {"poll_seconds": 1.0, "max_wait_minutes": 60.0}}}}
SHARD_SLOTS = 2
#: the sandbox keeps its DWCA's data entries here between runs (a 10 M-occurrence archive took 874
#: CPU-s of the sandbox to render, every run, for the same bytes); GBIFDL_LOAD_ARCHIVE_CACHE="" turns it off
_cache = os.environ.get(
    "GBIFDL_LOAD_ARCHIVE_CACHE",
    str(Path(os.environ.get("BENCH_CACHE", "/tmp/gbifdl_bench")) / "sandbox_archives"),
)
ARCHIVE_CACHE = Path(_cache) if _cache else None


@dataclass(frozen=True)
class LoadSize:
    key: str
    title: str
    occurrences: int
    balancing: str
    images: tuple[int, int]


# Every animal species with enough usable images, capped per class: the sandbox's species sizes follow
# Zipf's law like GBIF's, so the classes cannot be within 2x of each other; the tolerance admits the
# smallest class against the cap (min >= 0.05 x max). At 1,000,000 occurrences at most 450 each gives
# just over 100,000 images over ~960 classes; at 10x the occurrences 10x both bounds.
SIZES = {
    "10k": LoadSize(
        "10k", "10,000 images from 100,000 sandbox occurrences (a quick check of the harness)", 100_000,
        "{max_per_class: 45, min_per_class: 3, tolerance: 0.95}", (8_000, 14_000),
    ),
    "100k": LoadSize(
        "100k", "100,000 images from 1,000,000 sandbox occurrences", 1_000_000,
        "{max_per_class: 450, min_per_class: 24, tolerance: 0.95}", (100_000, 125_000),
    ),
    "1m": LoadSize(
        "1m", "1,000,000 images from 10,000,000 sandbox occurrences", 10_000_000,
        "{max_per_class: 4500, min_per_class: 240, tolerance: 0.95}", (900_000, 1_250_000),
    ),
}  # fmt: skip
SPEC = """taxa:
  - name: Animalia
    expand_to: SPECIES
source: download
balancing: {balancing}
licenses: [CC0, PDM, CC-BY, CC-BY-SA, CC-BY-NC, CC-BY-NC-SA]
images: {{max_side: 256, completeness_threshold: 0.5}}
"""


def _metadata(project, asset: str, partition: str | dg.MultiPartitionKey | None) -> dict:
    with project.instance() as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)] if partition else None
            ),
            limit=1,
        ).records
        assert records, f"no materialization of {asset} {partition}"
        meta = records[0].asset_materialization.metadata
    return {k: v.value for k, v in meta.items()}


def _stage(project, sandbox, asset: str, partition: str | None, run_config: dict | None = None) -> Stage:
    return run_stage(asset, [lambda: project.start(asset, partition, run_config=run_config)], sandbox)


@pytest.mark.soak
@pytest.mark.timeout(6 * 3600)
@pytest.mark.parametrize("size", list(SIZES))
def test_training_set_through_the_whole_graph(project_factory, tmp_path: Path, size: str) -> None:
    load = SIZES[size]
    run = LoadRun(
        size, load.title, f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}", machine_line(), list(os.getloadavg())
    )
    with sandbox_process(
        occurrences=load.occurrences, log_dir=tmp_path, timeout=1800, archive_cache=ARCHIVE_CACHE
    ) as sandbox:
        project = project_factory(sandbox.api_url, GBIF_USERNAME="sandbox", GBIF_PASSWORD="sandbox")
        project.write_spec("load", SPEC.format(balancing=load.balancing))
        project.add_partition("load")
        sandbox_cpu0 = sandbox.cpu_seconds()

        def sandbox_numbers() -> dict:
            return {
                "occurrences": load.occurrences,
                "ready_seconds": sandbox.started_seconds,
                "peak_mb": sandbox.peak_rss_mb(),
                "cpu_seconds": sandbox.cpu_seconds() - sandbox_cpu0,
            }

        def checkpoint() -> None:
            _checkpoint(run, sandbox_numbers())

        s = _stage(project, sandbox, "annotation_rulesets", None)
        s.note = f"{_metadata(project, 'annotation_rulesets', None).get('rules', '?')} rules"
        run.stages.append(s)
        checkpoint()
        s = _stage(project, sandbox, "species_list", "load")
        meta = _metadata(project, "species_list", "load")
        s.note = f"{meta.get('labels', '?')} classes from {meta.get('taxa', '?')} taxa"
        run.stages.append(s)
        checkpoint()
        s = _stage(project, sandbox, "gbif_download", "load")
        s.note = f"download {_metadata(project, 'gbif_download', 'load').get('download_key')}"
        run.stages.append(s)
        checkpoint()
        s = _stage(project, sandbox, "occurrence_snapshot", "load", FAST_POLL)
        meta = _metadata(project, "occurrence_snapshot", "load")
        s.name = "occurrence_snapshot (waits for the sandbox to build the DWCA, then ingests it)"
        s.note = f"{meta['occurrences']:,} occurrences, {meta['media']:,} media, ingest {meta['rows_per_second']:,.0f} rows/s"
        run.stages.append(s)
        checkpoint()
        s = _stage(project, sandbox, "annotated_occurrences", "load")
        meta = _metadata(project, "annotated_occurrences", "load")
        s.note = ", ".join(
            f"{k} {meta[k]:,}" for k in ("rows", "occurrences_matched", "rules_applied") if k in meta
        )
        run.stages.append(s)
        checkpoint()
        s = _stage(project, sandbox, "balanced_manifest", "load")
        meta = _metadata(project, "balanced_manifest", "load")
        images = int(meta.get("images", meta.get("rows", 0)))
        s.note = f"{images:,} images, {meta.get('classes', '?')} classes"
        run.stages.append(s)
        checkpoint()
        assert load.images[0] <= images <= load.images[1], meta

        shards = _store_images(project, sandbox, run, tmp_path, checkpoint, plain=size != "1m")

        s = _stage(project, sandbox, "training_export", "load")
        meta = _metadata(project, "training_export", "load")
        s.note = f"{meta['images']:,} images, {meta['classes']:,} classes, {meta['bytes'] / 1e6:,.0f} MB"
        run.stages.append(s)
        run.sandbox = sandbox_numbers()

    assert shards["ok"] >= 0.95 * images, (
        shards,
        images,
    )  # the rest: the sandbox's hidden media faults (2 %)
    assert meta["images"] <= shards["ok"]  # same-photo copies inside a split are exported once
    run.load_after = list(os.getloadavg())
    run.summary = _summary(run, images, shards)
    save(run)


def _store_images(
    project, sandbox, run: LoadRun, work: Path, checkpoint: Callable[[], None], *, plain: bool
) -> dict:
    """image_store: shard 00 alone, the same shard as a plain call (``plain``: not at 1,000,000
    images, where it would add ~125,000 downloads to a run of hours), then the other shards two at a
    time, measured pair by pair so that a run stopped midway keeps what it measured."""
    totals = {"ok": 0, "failed": 0, "rates": []}

    def count(key) -> dict:
        meta = _metadata(project, "image_store", key)
        totals["ok"] += int(meta["ok"])
        totals["failed"] += int(meta["failed"])
        totals["rates"].append(float(meta["images_per_s"]))
        return meta

    first = image_partition("load", "00")
    _fresh_faults(sandbox)
    s = run_stage("image_store shard 00, alone", [lambda: project.start("image_store", str(first))], sandbox)
    meta = count(first)
    totals["first_images"], totals["first_seconds"] = int(meta["images"]), s.seconds
    s.note = (
        f"{meta['images']:,} images: {meta['ok']:,} ok, {meta['failed']:,} failed; "
        f"{meta['images'] / s.seconds:,.0f} img/s over the whole process"
    )
    run.stages.append(s)
    checkpoint()

    if plain:
        totals["plain"] = _plain_shard(project, sandbox, work)
        run.stages.append(totals["plain"]["stage"])
        checkpoint()

    numbers = list(range(1, SHARDS))
    for pair in (numbers[i : i + SHARD_SLOTS] for i in range(0, len(numbers), SHARD_SLOTS)):
        keys = [image_partition("load", f"{n:02d}") for n in pair]
        starts = [lambda key=key: project.start("image_store", str(key)) for key in keys]
        name = "image_store shard" + (
            "s " + " and ".join(f"{n:02d}" for n in pair) if len(pair) > 1 else f" {pair[0]:02d}"
        )
        s = run_stage(f"{name}, at once", starts, sandbox, slots=SHARD_SLOTS)
        metas = [count(key) for key in keys]
        s.note = f"{sum(int(m['images']) for m in metas):,} images, {sum(int(m['ok']) for m in metas):,} ok"
        run.stages.append(s)
        checkpoint()
    return totals


def _checkpoint(run: LoadRun, sandbox: dict) -> None:
    """Save what a run measured so far: a run of hours stopped midway still reports its stages."""
    run.sandbox = sandbox
    graph = [s for s in run.stages if s.in_graph]
    cpu, sandbox_cpu = sum(s.cpu_seconds for s in graph), sum(s.sandbox_cpu_seconds for s in graph)
    last = run.stages[-1].name if run.stages else "none"
    run.summary = {
        "sandbox_share": sandbox_cpu / (cpu + sandbox_cpu) if cpu + sandbox_cpu else 0.0,
        "lines": [
            f'**Incomplete**: these are the stages measured up to "{last}"; the run was still going, or '
            "was stopped, after it.",
            f"So far: {sum(s.seconds for s in graph) / 60:,.1f} min wall, {cpu / 60:,.1f} CPU-min in the product, "
            f"{sandbox_cpu / 60:,.1f} CPU-min in the sandbox.",
        ],
    }
    save(run)


def _plain_shard(project, sandbox, work: Path) -> dict:
    """Shard 00 stored again by a plain ``store_shard`` call in a fresh folder (the anchor)."""
    fresh = work / "plain-store"
    command = [
        sys.executable, "-m", "gbifdl_assets_tests.reliability.plain_shard", str(project.data), str(fresh),
        "load", "00", str(project.root / "specs" / "load.yaml"),
    ]  # fmt: skip
    out: dict = {}
    log = work / "plain-shard.log"

    class Plain:  # the CliRun surface run_stage needs
        def __init__(self) -> None:
            self.process = subprocess.Popen(
                command, env=project.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )

        def _close(self) -> None:
            handle.flush()
            out.update(json.loads(log.read_text().strip().splitlines()[-1]))

        def log_text(self) -> str:
            return log.read_text(errors="replace")

    _fresh_faults(sandbox)  # the flaky URLs fail once for this run too, as for the Dagster run
    with open(log, "wb") as handle:
        name = "image_store shard 00 as a plain call (no Dagster; not part of the graph)"
        stage = run_stage(name, [Plain], sandbox)
    stage.in_graph = False
    stage.note = f"{out['images']:,} images, {out['ok']:,} fetched; {out['images'] / stage.seconds:,.0f} img/s over the whole process"
    return {**out, "stage": stage, "seconds": stage.seconds}


def _fresh_faults(sandbox) -> None:
    requests.post(f"{sandbox.url}/sandbox/faults/reset", timeout=10).raise_for_status()


def _summary(run: LoadRun, images: int, shards: dict) -> dict:
    graph = [s for s in run.stages if s.in_graph]
    wall = sum(s.seconds for s in graph)
    cpu = sum(s.cpu_seconds for s in graph)
    sandbox_cpu = sum(s.sandbox_cpu_seconds for s in graph)
    store = [s for s in graph if s.name.startswith("image_store")]
    store_wall, store_cpu = sum(s.seconds for s in store), sum(s.cpu_seconds for s in store)
    dagster_rate = shards["first_images"] / shards["first_seconds"]
    plain = shards.get("plain")
    plain_rate = plain["images"] / plain["seconds"] if plain else None
    rates = shards["rates"]
    versus = (
        f"image_store through Dagster against the plain call, shard 00: {dagster_rate:,.0f} vs "
        f"{plain_rate:,.0f} img/s over the whole process = **{dagster_rate / plain_rate:.0%}** "
        f"(the plain call alone: {plain['call_seconds']:,.1f} s)."
        if plain
        else f"image_store shard 00 through Dagster: {dagster_rate:,.0f} img/s over the whole process "
        "(no plain call at this size)."
    )
    return {
        "graph_seconds": wall,
        "graph_cpu_seconds": cpu,
        "sandbox_share": sandbox_cpu / (cpu + sandbox_cpu) if cpu + sandbox_cpu else 0.0,
        "store_ms_per_image": 1000 * store_wall / images,
        "store_cpu_ms_per_image": 1000 * store_cpu / images,
        "dagster_vs_plain": dagster_rate / plain_rate if plain_rate else None,
        "lines": [
            f"Whole graph: **{wall / 60:,.1f} min** wall, {cpu / 60:,.1f} CPU-min in the product's processes, "
            f"{sandbox_cpu / 60:,.1f} CPU-min in the sandbox.",
            f"image_store: {store_wall:,.0f} s for {images:,} images ({images / store_wall:,.0f} img/s, "
            f"{1000 * store_cpu / images:,.1f} CPU-ms per image); fetch loop {min(rates):,.0f}-{max(rates):,.0f} img/s per shard.",
            versus,
        ],
    }
