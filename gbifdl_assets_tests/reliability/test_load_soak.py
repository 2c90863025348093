"""Load: one training set of ~100,000 images from 1,000,000 sandbox occurrences through the whole graph.

Each stage is its own ``dagster asset materialize`` process group (as an operator would run it), so
its wall time and peak memory (the resident memory of every process in the group, summed and sampled
every 0.25 s: the run, its step process, downloader workers) are measured per stage. The test writes LOAD_REPORT.md next to
this file; ``make soak`` regenerates it. Marked ``soak``: skipped unless GBIFDL_SOAK=1.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import time
from pathlib import Path

import dagster as dg
import pytest

from gbifdl_assets.pipeline.image_shards import SHARDS
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets_tests.reliability.project import image_partition

REPORT = Path(__file__).resolve().parent / "LOAD_REPORT.md"
PAGE = os.sysconf("SC_PAGE_SIZE")
OCCURRENCES = 1_000_000
# Every animal species with at least 24 usable images, at most 450 each: just over 100,000 images over
# ~1,000 classes (at most 380 each gave 96,101; 440, 99,797). The sandbox's species sizes follow Zipf's law like
# GBIF's, so the classes cannot be within 2x of each other at this size: the tolerance admits 24 vs
# 450 (24 >= 0.05 x 450, so the balanced check passes).
SPEC = """taxa:
  - name: Animalia
    expand_to: SPECIES
source: download
balancing: {max_per_class: 450, min_per_class: 24, tolerance: 0.95}
licenses: [CC0, PDM, CC-BY, CC-BY-SA, CC-BY-NC, CC-BY-NC-SA]
images: {max_side: 256, completeness_threshold: 0.5}
"""
FAST_POLL = {"ops": {"occurrence_snapshot": {"config": {"poll_seconds": 1.0, "max_wait_minutes": 30.0}}}}


def _group_rss_mb(pgid: int) -> float:
    """Resident memory of every live process in the run's process group (the run, its step process,
    downloader workers), in MB."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += int(fields[21]) * PAGE  # rss in pages
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def _run_stage(project, select: str, partition: str | None, run_config: dict | None = None) -> dict:
    run = project.start(select, partition, run_config=run_config)
    started = time.monotonic()
    peak = 0.0
    while run.process.poll() is None:  # sampled: the sum over the group at the same instant
        peak = max(peak, _group_rss_mb(run.process.pid))
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    run._close()
    assert run.process.returncode == 0, f"{select} failed:\n{run.log_text()[-4000:]}"
    return {"seconds": elapsed, "peak_mb": peak}


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


@pytest.mark.soak
@pytest.mark.timeout(5400)
def test_100k_images_from_1m_occurrences(project_factory) -> None:
    load_before = os.getloadavg()
    started_at = dt.datetime.now(dt.UTC)
    sandbox_started = time.monotonic()
    config = SandboxConfig(occurrences=OCCURRENCES, seed=42, download_seconds=(0.5, 0.5))
    with start_sandbox(config) as sandbox:
        sandbox_seconds = time.monotonic() - sandbox_started
        project = project_factory(sandbox.api_url, GBIF_USERNAME="sandbox", GBIF_PASSWORD="sandbox")
        project.write_spec("load", SPEC)
        project.add_partition("load")
        rows: list[tuple[str, dict, str]] = []

        stage = _run_stage(project, "annotation_rulesets", None)
        rows.append(
            (
                "annotation_rulesets",
                stage,
                f"{_metadata(project, 'annotation_rulesets', None).get('rules', '?')} rules",
            )
        )
        stage = _run_stage(project, "species_list", "load")
        meta = _metadata(project, "species_list", "load")
        rows.append(
            ("species_list", stage, f"{meta.get('labels', '?')} classes from {meta.get('taxa', '?')} taxa")
        )
        stage = _run_stage(project, "gbif_download", "load")
        rows.append(
            (
                "gbif_download",
                stage,
                f"download {_metadata(project, 'gbif_download', 'load').get('download_key')}",
            )
        )
        stage = _run_stage(project, "occurrence_snapshot", "load", FAST_POLL)
        meta = _metadata(project, "occurrence_snapshot", "load")
        rows.append((
            "occurrence_snapshot (waits for the sandbox to build the DWCA, then ingests it)",
            stage,
            f"{meta['occurrences']:,} occurrences, {meta['media']:,} media, ingest {meta['rows_per_second']:,.0f} rows/s",
        ))  # fmt: skip
        stage = _run_stage(project, "annotated_occurrences", "load")
        rows.append(
            ("annotated_occurrences", stage, _short(_metadata(project, "annotated_occurrences", "load")))
        )
        stage = _run_stage(project, "balanced_manifest", "load")
        meta = _metadata(project, "balanced_manifest", "load")
        images = int(meta.get("images", meta.get("rows", 0)))
        rows.append(("balanced_manifest", stage, f"{images:,} images, {meta.get('classes', '?')} classes"))
        assert 100_000 <= images <= 125_000, meta

        ok = failed = 0
        shard_total = {"seconds": 0.0, "peak_mb": 0.0}
        for shard in range(SHARDS):
            key = image_partition("load", f"{shard:02d}")
            stage = _run_stage(project, "image_store", str(key))
            meta = _metadata(project, "image_store", key)
            ok += int(meta["ok"])
            failed += int(meta["failed"])
            rows.append((
                f"image_store shard {shard:02d}",
                stage,
                f"{meta['images']:,} images: {meta['ok']:,} ok, {meta['failed']:,} failed, "
                f"{meta['images_per_s']:,.0f} img/s in the fetch loop",
            ))  # fmt: skip
            shard_total["seconds"] += stage["seconds"]
            shard_total["peak_mb"] = max(shard_total["peak_mb"], stage["peak_mb"])
        rows.append(
            ("image_store, all 8 shards (one after another)", shard_total, f"{ok:,} ok, {failed:,} failed")
        )
        stage = _run_stage(project, "training_export", "load")
        meta = _metadata(project, "training_export", "load")
        rows.append(
            (
                "training_export",
                stage,
                f"{meta['images']:,} images, {meta['classes']:,} classes, {meta['bytes'] / 1e6:,.0f} MB",
            )
        )

    assert ok >= 0.95 * images, (ok, images)  # the rest: the sandbox's hidden media faults (2 %)
    assert meta["images"] == ok
    load_after = os.getloadavg()
    test_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _write_report(rows, started_at, load_before, load_after, sandbox_seconds, test_peak)


def _short(meta: dict) -> str:
    keys = [k for k in ("rows", "occurrences_matched", "rules_applied") if k in meta]
    return (
        ", ".join(f"{k} {meta[k]:,}" if isinstance(meta[k], int) else f"{k} {meta[k]}" for k in keys) or "-"
    )


def _write_report(rows, started_at, load_before, load_after, sandbox_seconds, test_peak) -> None:
    total = sum(s["seconds"] for name, s, _ in rows if not name.startswith("image_store shard"))
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        "# Load report: 100,000 images from 1,000,000 sandbox occurrences",
        "",
        "Written by `gbifdl_assets_tests/reliability/test_load_soak.py` (`make soak` regenerates it).",
        "Each stage ran as its own `dagster asset materialize` process against the offline sandbox; the",
        "time is the wall time of that process (it includes ~5-10 s of Python/Dagster start-up), the",
        "memory is the peak of the summed resident memory of the run's processes (the run, its step process,",
        "downloader workers), sampled every 0.25 s.",
        "",
        f"- run started: {started_at:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores, {mem_total:.1f} GiB RAM, "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        f"- load average (1/5/15 min) before: {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}; "
        f"after: {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} (a load above ~1 before the "
        "run means other work shared the 2 cores: the times are then upper bounds)",
        f"- sandbox: {OCCURRENCES:,} occurrences (seed 42, 2 % hidden media faults), generated in "
        f"{sandbox_seconds:.1f} s; it runs in the test process (peak {test_peak:,.0f} MB), serving the API, "
        "the DWCA and every image on the same 2 cores",
        "",
        "| stage | wall time (s) | peak memory (MB) | result |",
        "|---|---:|---:|---|",
    ]
    for name, stage, note in rows:
        lines.append(f"| {name} | {stage['seconds']:,.1f} | {stage['peak_mb']:,.0f} | {note} |")
    lines += ["", f"Whole graph, one stage after another: {total / 60:,.1f} min.", ""]
    REPORT.write_text("\n".join(lines))
