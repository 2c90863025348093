"""Benchmark: DWCA download -> snapshot Parquet (read, join, write), against DuckDB and polars.

Run with ``make bench`` (or ``pytest -o python_files='bench_*.py' gbifdl_assets_tests/bench/bench_dwca.py -s``).

* Archives are generated once with the sandbox's GBIF-layout writer (seed 42) and cached under
  ``$GBIFDL_BENCH_DIR`` (default ``/tmp/gbifdl_bench_dwca``): ``BENCH_DWCA_ROWS`` occurrences
  (default 2,000,000) with multimedia, and its first ``BENCH_DWCA_PREFIX_ROWS`` (200,000) rows.
* Ours: :func:`gbifdl_assets.gbif.dwca.convert_to_snapshot` end to end, in a fresh subprocess per
  run; peak RSS is the process tree's own (proctree.py: VmRSS sampled over the tree; ``ru_maxrss``
  inherited the pytest parent's high-water mark). Median of ``BENCH_RUNS`` (3).
* Anchors (issue 22), what a data engineer would pick, on the same full archive in the same run:
  DuckDB (``read_csv`` with quoting off, the join and ``COPY ... TO`` Parquet) and polars
  (``scan_csv`` → join → ``sink_parquet``), both after the same streamed extract of the two files
  from the zip (zipfile, charged to them), only the columns we read, types inferred from a sample
  (DuckDB's default 20,480 rows; polars 10,000: inferring from the whole file, as a cautious user
  might, costs polars 3x the CPU). Each must give
  as many media rows as ours. Target: ours at least 2x both.
* Older anchor: python-dwca-reader's pandas path (``DwCAReader.pd_read`` for occurrence.txt and
  multimedia.txt with ``quoting=QUOTE_NONE`` — needed for GBIF files — and ``dtype=str``; keep
  StillImage rows with a URL; merge on gbifID; ``to_parquet``), in two variants: whole files (the
  documented usage) and ``usecols`` = only the columns we read (generous). Neither converts types.
  It extracts the archive and loads whole files into memory (~6 GB peak on the 2M-row archive).
  ``ratio_vs_dwca_reader``: whole files on the same full archive with ``BENCH_DWCA_READER_FULL=1``
  (and ``BENCH_DWCA_ANCHOR_FULL_GB``, default 10, of memory available); by default the prefix
  ratio below stands in. Also reported: both variants on the prefix archive against our
  run on the same prefix (our fixed costs charged to 10x fewer rows: the harder ratio for us), and
  their time per row extrapolated to the full archive. Needs ``pip install -e '.[bench]'``.
* Memory: peak RSS on the full archive and on a ``BENCH_DWCA_SCALE``x larger one (rows repeated
  with shifted gbifIDs, ~5.6 GB uncompressed at the defaults) shows RSS does not grow with size.
  ``BENCH_DWCA_SCALE=0`` skips it.

Targets: >= 500,000 occurrence rows/s, >= 10x python-dwca-reader (issue 3), >= 2x DuckDB and
polars (issue 22), < 1.5 GB peak RSS.
Results: ``gbifdl_assets_tests/bench/results/dwca.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import zipfile
from pathlib import Path

import pytest

from gbifdl_assets_tests.bench.fingerprint import source_fingerprint
from gbifdl_assets_tests.bench.proctree import run_measured

BENCH_DIR = Path(os.environ.get("GBIFDL_BENCH_DIR", "/tmp/gbifdl_bench_dwca"))
ROWS = int(os.environ.get("BENCH_DWCA_ROWS", "2000000"))
PREFIX_ROWS = int(os.environ.get("BENCH_DWCA_PREFIX_ROWS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SCALE = int(os.environ.get("BENCH_DWCA_SCALE", "3"))
#: python-dwca-reader holds the whole archive as Python strings: ~6 GB peak on the 2M-row archive
ANCHOR_FULL_GB = float(os.environ.get("BENCH_DWCA_ANCHOR_FULL_GB", "10"))
#: python-dwca-reader on the whole archive (3 x ~35 s): no longer the anchor, so only on request
READER_FULL = os.environ.get("BENCH_DWCA_READER_FULL") == "1"
RESULTS = Path(__file__).parent / "results" / "dwca.json"
GENERATOR_VERSION = 1  # bump when the generated archives change on purpose
#: The version and a hash of the sandbox code that writes the archives: a changed writer never
#: reuses a stale cached archive (the first one changed size, 1.88 -> 1.96 GB, under the same name).
GENERATOR_KEY = (
    f"v{GENERATOR_VERSION}-{source_fingerprint('gbifdl_assets.sandbox.dwca', 'gbifdl_assets.sandbox.world')}"
)


# ------------------------------------------------------------------------------------ archives
def _sandbox_archive(rows: int, world_rows: int) -> Path:
    """The first ``rows`` occurrences of a ``world_rows`` sandbox world as a GBIF DWCA zip."""
    path = BENCH_DIR / f"sandbox-{GENERATOR_KEY}-{world_rows}-first-{rows}.zip"
    if path.exists():
        return path
    import numpy as np

    from gbifdl_assets.sandbox.dwca import write_archive
    from gbifdl_assets.sandbox.world import build_world

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world = build_world(42, world_rows, 1500)
    write_archive(
        world,
        np.arange(rows),
        path,
        key="0000001-260101000000000",
        doi="10.15468/dl.bench1",
        created="2026-01-01T00:00:00",
        predicate={"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"},
        fmt="DWCA",
        media_base="https://media.sandbox.invalid",
    )
    print(f"generated {path.name} ({rows:,} occurrences) in {time.perf_counter() - started:.0f} s")
    return path


def _scaled_archive(source: Path, copies: int) -> Path:
    """``copies`` x the rows of ``source``, gbifIDs shifted per copy (streamed, never in memory)."""
    path = BENCH_DIR / f"{source.stem}-x{copies}.zip"
    if path.exists():
        return path
    started = time.perf_counter()
    tmp = path.with_suffix(".part")
    with (
        zipfile.ZipFile(source) as src,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst,
    ):
        for info in src.infolist():
            if info.filename not in ("occurrence.txt", "multimedia.txt"):
                dst.writestr(info.filename, src.read(info.filename))
                continue
            with dst.open(info.filename, "w", force_zip64=True) as out:
                for copy in range(copies):
                    offset = copy * 10_000_000_000
                    with src.open(info.filename) as fh:
                        header = fh.readline()
                        if copy == 0:
                            out.write(header)
                        buf = []
                        for line in fh:
                            gbif_id, sep, rest = line.partition(b"\t")
                            buf.append(str(int(gbif_id) + offset).encode() + sep + rest)
                            if len(buf) >= 50_000:
                                out.write(b"".join(buf))
                                buf.clear()
                        out.write(b"".join(buf))
    tmp.replace(path)
    print(f"generated {path.name} in {time.perf_counter() - started:.0f} s")
    return path


def _uncompressed(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(i.file_size for i in zf.infolist())


# ------------------------------------------------------------------------------------ runners
_OURS = """
import json, sys, time
from pathlib import Path
from gbifdl_assets.gbif.dwca import convert_to_snapshot
cpu0 = time.process_time()
started = time.perf_counter()
report = convert_to_snapshot(sys.argv[1], Path(sys.argv[2]))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "cpu_timed": time.process_time() - cpu0,
                  "occurrences": report.occurrences, "media": report.media,
                  "buckets": report.buckets}))
"""

_PANDAS = """
import csv, json, sys, time
import pandas
from dwca.read import DwCAReader
cpu0 = time.process_time()
started = time.perf_counter()  # after the imports, as for ours
# python-dwca-reader names the id column "id" (core) / "coreid" (extensions): both are gbifID here
OCC = ["id", "occurrenceID", "taxonKey", "acceptedTaxonKey", "kingdomKey", "phylumKey", "classKey",
       "orderKey", "familyKey", "genusKey", "speciesKey", "scientificName", "acceptedScientificName", "species",
       "taxonRank", "datasetKey", "basisOfRecord", "occurrenceStatus", "decimalLatitude", "decimalLongitude",
       "coordinateUncertaintyInMeters", "countryCode", "eventDate", "year", "month", "recordedBy",
       "institutionCode", "issue", "license"]
MM = ["coreid", "type", "format", "identifier", "references", "title", "creator", "publisher", "license",
      "rightsHolder"]
kw = dict(quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, na_values=[""])
if sys.argv[3] == "usecols":  # generous: only the columns the snapshot needs
    kw_occ, kw_mm = dict(kw, usecols=OCC), dict(kw, usecols=MM)
else:  # the documented usage: whole files
    kw_occ, kw_mm = kw, kw
with DwCAReader(sys.argv[1]) as archive:
    occ = archive.pd_read("occurrence.txt", **kw_occ)
    media = archive.pd_read("multimedia.txt", **kw_mm)
media = media[(media["type"] == "StillImage") & media["identifier"].notna()]
media = media.assign(coreid=media["coreid"].str.strip()).rename(columns={"license": "media_license_raw"})
joined = occ.merge(media, left_on="id", right_on="coreid", how="inner")
joined.to_parquet(sys.argv[2], compression="zstd")
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "cpu_timed": time.process_time() - cpu0,
                  "occurrences": len(occ), "media": len(joined)}))
"""

# The anchors a data engineer would pick: the archive's two files streamed out of the zip (the same
# extract for both: zipfile + copyfileobj into a temporary folder, charged to the anchor), read as
# tab-separated text with quoting off (GBIF's files are unquoted) and types inferred, StillImage
# rows with a URL kept, joined on gbifID, written as zstd Parquet, only the columns we read.
_EXTRACT = """
import json, os, shutil, sys, tempfile, time, zipfile
cpu0 = time.process_time()
started = time.perf_counter()
OCC = ["gbifID", "occurrenceID", "taxonKey", "acceptedTaxonKey", "kingdomKey", "phylumKey", "classKey",
       "orderKey", "familyKey", "genusKey", "speciesKey", "scientificName", "acceptedScientificName", "species",
       "taxonRank", "datasetKey", "basisOfRecord", "occurrenceStatus", "decimalLatitude", "decimalLongitude",
       "coordinateUncertaintyInMeters", "countryCode", "eventDate", "year", "month", "recordedBy",
       "institutionCode", "issue", "license"]
MM = ["gbifID", "type", "format", "identifier", "references", "title", "creator", "publisher", "license",
      "rightsHolder"]
work = tempfile.mkdtemp(dir=os.path.dirname(sys.argv[2]))
with zipfile.ZipFile(sys.argv[1]) as zf:
    for name in ("occurrence.txt", "multimedia.txt"):
        with zf.open(name) as src, open(os.path.join(work, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
occ_path, mm_path = os.path.join(work, "occurrence.txt"), os.path.join(work, "multimedia.txt")
extract_s = time.perf_counter() - started
"""

_DUCKDB = (
    "import duckdb"
    + _EXTRACT
    + """
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # it writes to stdout, where the JSON line goes
opts = "delim='\\t', header=true, quote='', escape=''"
occ_cols = ", ".join(f'o."{c}"' for c in OCC)
mm_cols = ", ".join(f'm."{c}" AS "media_{c}"' for c in MM if c != "gbifID")
con.execute(f\"\"\"
COPY (
  SELECT {occ_cols}, {mm_cols}
  FROM read_csv('{occ_path}', {opts}) o
  JOIN (SELECT * FROM read_csv('{mm_path}', {opts}) WHERE type = 'StillImage' AND identifier IS NOT NULL) m
  USING (gbifID)
) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)
\"\"\")
media = con.execute(f"SELECT count(*) FROM read_parquet('{sys.argv[2]}')").fetchone()[0]
occurrences = con.execute(f"SELECT count(*) FROM read_csv('{occ_path}', {opts})").fetchone()[0]
shutil.rmtree(work)
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_timed": time.process_time() - cpu0,
                  "extract_seconds": extract_s, "occurrences": occurrences, "media": media}))
"""
)

_POLARS = (
    "import polars as pl"
    + _EXTRACT
    + """
kw = dict(separator="\\t", quote_char=None, infer_schema_length=10_000)
occ = pl.scan_csv(occ_path, **kw).select(OCC)
mm = (
    pl.scan_csv(mm_path, **kw).select(MM)
    .filter((pl.col("type") == "StillImage") & pl.col("identifier").is_not_null())
    .rename({c: f"media_{c}" for c in MM if c != "gbifID"})
)
occ.join(mm, on="gbifID", how="inner").sink_parquet(sys.argv[2], compression="zstd")
media = pl.scan_parquet(sys.argv[2]).select(pl.len()).collect().item()
occurrences = pl.scan_csv(occ_path, **kw).select(pl.len()).collect().item()
shutil.rmtree(work)
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_timed": time.process_time() - cpu0,
                  "extract_seconds": extract_s, "occurrences": occurrences, "media": media}))
"""
)


def _run(code: str, archive: Path, out: Path, *extra: str) -> dict:
    # Every runner gets the allocator settings gbifdl_assets makes when it is imported (mimalloc keeps
    # freed memory for 10 s, no huge pages; pandas' to_parquet goes through pyarrow too), so no side
    # gains by them. Peak memory is the runner's process tree's own (proctree: VmRSS sampled over the
    # tree, not ru_maxrss, which a child inherits from the pytest parent's high-water mark).
    from gbifdl_assets import MIMALLOC_SETTINGS

    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in MIMALLOC_SETTINGS.items()}}
    r = run_measured([sys.executable, "-c", code, str(archive), str(out), *extra], env=env)
    out.unlink(missing_ok=True)
    r["peak_rss_mb"] = r["peak_tree_rss_mb"]
    # CPU of the timed part (after the imports, all threads); wait4's figure, imports included, beside it
    r["cpu_seconds_tree"] = r["cpu_seconds"]
    r["cpu_seconds"] = r.pop("cpu_timed")
    return r


def _median_runs(code: str, archive: Path, runs: int, label: str, *extra: str) -> dict:
    results = []
    for i in range(runs):
        r = _run(code, archive, BENCH_DIR / "out.parquet", *extra)
        print(
            f"  {label} run {i + 1}: {r['seconds']:.2f} s (CPU {r['cpu_seconds']:.2f} s), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        results.append(r)
    med = statistics.median(r["seconds"] for r in results)
    best = dict(results[0])
    best.update(
        seconds=med,
        cpu_seconds=statistics.median(r["cpu_seconds"] for r in results),
        runs=[round(r["seconds"], 3) for r in results],
        peak_rss_mb=max(r["peak_rss_mb"] for r in results),
        rows_per_s=results[0]["occurrences"] / med,
    )
    return best


def _memory_available_gb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e6
    return 0.0


def _have_dwca_reader() -> bool:
    try:
        import dwca.read  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------ bench
@pytest.mark.timeout(3600)  # a benchmark, not a test: on a loaded machine it takes long
def test_bench_dwca_ingest() -> None:
    full = _sandbox_archive(ROWS, ROWS)
    prefix = _sandbox_archive(PREFIX_ROWS, ROWS)
    results: dict = {
        "benchmark": "dwca",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "archive": {
            "rows": ROWS,
            "path": str(full),
            "bytes": full.stat().st_size,
            "uncompressed_bytes": _uncompressed(full),
        },
        "prefix_rows": PREFIX_ROWS,
        "runs": RUNS,
        "targets": {
            "rows_per_s": 500_000,
            "ratio_vs_duckdb": 2,
            "ratio_vs_polars": 2,
            "ratio_vs_dwca_reader": 10,
            "peak_rss_mb_5gb": 1536,
        },
        "load_average_before": os.getloadavg(),
    }
    print(f"\n[dwca] ours on {ROWS:,} occurrences ({results['archive']['uncompressed_bytes'] / 1e9:.2f} GB):")
    ours = _median_runs(_OURS, full, RUNS, "ours")
    results["ours"] = ours
    print(f"[dwca] ours on the {PREFIX_ROWS:,}-row prefix:")
    ours_prefix = _median_runs(_OURS, prefix, RUNS, "ours/prefix")
    results["ours_prefix"] = ours_prefix
    for name, code in (("duckdb", _DUCKDB), ("polars", _POLARS)):
        print(f"[dwca] {name}: extract, read_csv, filter, join, Parquet on {ROWS:,} occurrences:")
        anchor = _median_runs(code, full, RUNS, name)
        assert anchor["media"] == ours["media"], f"{name} must produce the same rows ({anchor['media']})"
        results[name] = anchor
        results[f"ratio_vs_{name}"] = anchor["seconds"] / ours["seconds"]
        results[f"cpu_ratio_vs_{name}"] = anchor["cpu_seconds"] / ours["cpu_seconds"]
    if _have_dwca_reader():
        for variant, label in (("all", "whole files"), ("usecols", "only our columns")):
            print(f"[dwca] python-dwca-reader pandas path ({label}) on the {PREFIX_ROWS:,}-row prefix:")
            anchor = _median_runs(_PANDAS, prefix, RUNS, f"dwca-reader/{variant}", variant)
            assert anchor["media"] == ours_prefix["media"], "the anchor must produce the same rows"
            anchor["extrapolated_seconds_full"] = anchor["seconds"] / anchor["occurrences"] * ROWS
            results[f"python_dwca_reader_{variant}"] = anchor
            results[f"ratio_{variant}_same_input"] = anchor["seconds"] / ours_prefix["seconds"]
            results[f"ratio_{variant}_extrapolated_full"] = (
                anchor["extrapolated_seconds_full"] / ours["seconds"]
            )
            results[f"cpu_ratio_{variant}_same_input"] = anchor["cpu_seconds"] / ours_prefix["cpu_seconds"]
        if READER_FULL and _memory_available_gb() >= ANCHOR_FULL_GB:
            # The ratio: the documented usage on the same (full) archive in the same run.
            print(f"[dwca] python-dwca-reader pandas path (whole files) on all {ROWS:,} occurrences:")
            anchor = _median_runs(_PANDAS, full, RUNS, "dwca-reader/all/full", "all")
            assert anchor["media"] == ours["media"], "the anchor must produce the same rows"
            results["python_dwca_reader_all_full"] = anchor
            results["ratio_all_full"] = anchor["seconds"] / ours["seconds"]
            results["cpu_ratio_all_full"] = anchor["cpu_seconds"] / ours["cpu_seconds"]
            results["ratio_vs_dwca_reader"] = results["ratio_all_full"]
        else:
            # Not enough memory for pandas on the whole archive: the same-prefix ratio stands in
            # (it charges our fixed costs to 10x fewer rows, so it is the harder one for us).
            print(
                "[dwca] python-dwca-reader on the prefix only (BENCH_DWCA_READER_FULL=1 for the full archive)"
            )
            results["ratio_vs_dwca_reader"] = results["ratio_all_same_input"]
    else:
        print("[dwca] python-dwca-reader is not installed (pip install -e '.[bench]'): no ratio")
    if SCALE > 1:
        big = _scaled_archive(full, SCALE)
        size = _uncompressed(big)
        print(f"[dwca] ours on {ROWS * SCALE:,} occurrences ({size / 1e9:.2f} GB uncompressed), one run:")
        scaled = _run(_OURS, big, BENCH_DIR / "out.parquet")
        scaled.update(uncompressed_bytes=size, rows_per_s=scaled["occurrences"] / scaled["seconds"])
        print(f"  {scaled['seconds']:.1f} s, peak RSS {scaled['peak_rss_mb']:.0f} MB")
        results["ours_scaled"] = scaled

    results["load_average_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\n[dwca] {ours['rows_per_s']:,.0f} occurrence rows/s end to end (target 500,000), median of {RUNS}"
    )
    print(
        f"[dwca] {ROWS / ours['cpu_seconds']:,.0f} rows per CPU-second ({ours['cpu_seconds']:.1f} CPU s); load "
        f"average before/after {results['load_average_before'][0]:.1f}/{results['load_average_after'][0]:.1f} "
        f"on {os.cpu_count()} CPUs (other processes share them: CPU seconds are the steadier measure)"
    )
    print(
        f"[dwca] peak RSS {ours['peak_rss_mb']:.0f} MB on {results['archive']['uncompressed_bytes'] / 1e9:.2f} GB"
    )
    if "ours_scaled" in results:
        s = results["ours_scaled"]
        print(
            f"[dwca] peak RSS {s['peak_rss_mb']:.0f} MB on {s['uncompressed_bytes'] / 1e9:.2f} GB (target < 1536 MB)"
        )
    for name in ("duckdb", "polars"):
        print(
            f"[dwca] vs {name} on the same archive: {results[f'ratio_vs_{name}']:.2f}x; "
            f"{results[f'cpu_ratio_vs_{name}']:.2f}x in CPU time (target 2x); its peak RSS "
            f"{results[name]['peak_rss_mb']:.0f} MB"
        )
    if "ratio_all_full" in results:
        print(
            f"[dwca] vs python-dwca-reader pandas (whole files) on the same {ROWS:,}-row archive: "
            f"{results['ratio_all_full']:.1f}x; {results['cpu_ratio_all_full']:.1f}x in CPU time (target 10x)"
        )
    for variant, label in (("all", "whole files"), ("usecols", "only our columns")):
        if f"ratio_{variant}_same_input" in results:
            print(
                f"[dwca] vs python-dwca-reader pandas ({label}): {results[f'ratio_{variant}_same_input']:.1f}x on "
                f"the same {PREFIX_ROWS:,} rows, {results[f'ratio_{variant}_extrapolated_full']:.1f}x "
                f"extrapolated to {ROWS:,}; {results[f'cpu_ratio_{variant}_same_input']:.1f}x in CPU time "
                "(target 10x)"
            )
    print(f"[dwca] results: {RESULTS}")
    assert ours["occurrences"] == ROWS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s", "-o", "python_files=bench_*.py"]))
