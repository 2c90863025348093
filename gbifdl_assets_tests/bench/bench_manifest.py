"""Benchmark: 10 M snapshot rows → balanced manifest (read Parquet → write manifest Parquet).

Target (issue 22): faster than polars lazy with the same semantics, in the same run. Anchors,
measured on the same input and interleaved with ours (one run of each per round, in an order that
turns each round, so a load spike from other work on the shared machine hits all three alike),
median of ``BENCH_RUNS`` (3) rounds:

* ``polars_lazy``: ``scan_parquet`` → filters (predicate pushdown) → duplicate URLs → order keys →
  one image per occurrence → class minimum → water-filled publisher strata → splits → output
  columns → ``write_parquet`` (bench/manifest_anchors.py);
* ``duckdb``: the same in SQL over ``read_parquet`` (window functions; ``COPY ... TO`` Parquet).

Both give the manifest ours gives: before the timed rounds, all three are built on the
``BENCH_CHECK_ROWS`` (200,000) row snapshot of the same generator and compared column by column
(rows, order, splits, licences, strata). The pandas and per-record anchors of issue 5 are retired:
pandas read 16 columns as object strings (12 GB) and was no anchor anyone would pick.

Each timed run is a fresh child process (so no runner inherits another's memory or warm caches):
its wall and CPU seconds are measured inside it, start-up and imports left out, and its peak RSS is
that of its process tree (:mod:`.proctree`). The CPU seconds are there because wall times on this
shared 2-core machine move with the load average (recorded before and after). ``ours`` is what the
balanced_manifest stage runs: the picked rows written a part at a time. Results go to
gbifdl_assets_tests/bench/results/manifest.json. Run: ``make bench`` or
``.venv/bin/python -m pytest -o python_files='bench_*.py' gbifdl_assets_tests/bench/bench_manifest.py -s``.
The input is generated once and cached under /tmp/gbifdl_bench, keyed by the generator's version
and a fingerprint of the product code it uses (BENCH_ROWS overrides 10 M).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.gbif.licenses import normalize_licenses
from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA, conform
from gbifdl_assets.sampling.manifest import pick_manifest_from_parquet
from gbifdl_assets.specs import parse_spec
from gbifdl_assets_tests.bench.fingerprint import source_fingerprint
from gbifdl_assets_tests.bench.manifest_anchors import run_duckdb, run_polars
from gbifdl_assets_tests.bench.proctree import run_measured

ROWS = int(os.environ.get("BENCH_ROWS", 10_000_000))
RUNS = int(os.environ.get("BENCH_RUNS", 3))
CHECK_ROWS = min(ROWS, int(os.environ.get("BENCH_CHECK_ROWS", 200_000)))
CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/gbifdl_bench"))
RESULTS = Path(__file__).parent / "results" / "manifest.json"
REPO = Path(__file__).resolve().parents[2]
GENERATOR_VERSION = 2
# the product code make_snapshot calls: a change to it re-generates the input
GENERATOR_KEY = (
    f"v{GENERATOR_VERSION}-"
    f"{source_fingerprint('gbifdl_assets.gbif.media_schema', 'gbifdl_assets.gbif.licenses')}"
)
N_SPECIES = 10_000
N_PUBLISHERS = 500
N_DATASETS = 3_000
N_OBSERVERS = 300_000
CAP = 200

SPEC = {
    "name": "bench",
    "taxa": ["Lepidoptera"],
    "occurrence_filters": {
        "basisOfRecord": ["HUMAN_OBSERVATION", "MACHINE_OBSERVATION"],
        "occurrenceStatus": "PRESENT",
        "coordinateUncertaintyInMeters": "0,10000",
        "year": "2000,*",
    },
    "exclude_filters": {"issue": ["ZERO_COORDINATE", "COUNTRY_COORDINATE_MISMATCH"]},
    "balancing": {
        "max_per_class": CAP,
        "min_per_class": 5,
        "by": ["publishingOrgKey"],
        "max_per_occurrence": 1,
    },
    "splits": {"train": 0.8, "val": 0.1, "test": 0.1, "group_by": "occurrence"},
    "annotations": {"drop_labels": ["SUSPICIOUS", "MANAGED", "FORMER"], "conflicts": "exclude_any"},
}

_RAW_LICENSES = [
    ("http://creativecommons.org/licenses/by-nc/4.0/", 0.40),
    ("http://creativecommons.org/licenses/by/4.0/", 0.20),
    ("CC BY-SA 4.0", 0.05),
    ("http://creativecommons.org/publicdomain/zero/1.0/", 0.12),
    ("https://creativecommons.org/licenses/by-nc-sa/3.0/", 0.06),
    ("CC BY 3.0", 0.03),
    ("All rights reserved", 0.08),
    ("Usage Conditions Apply", 0.02),
    (None, 0.04),
]
_BASIS = [
    ("HUMAN_OBSERVATION", 0.88),
    ("PRESERVED_SPECIMEN", 0.08),
    ("MACHINE_OBSERVATION", 0.03),
    ("OCCURRENCE", 0.01),
]
_COUNTRIES = [
    "DE",
    "FR",
    "GB",
    "US",
    "ES",
    "IT",
    "NL",
    "BE",
    "SE",
    "NO",
    "DK",
    "FI",
    "PL",
    "CZ",
    "AT",
    "CH",
    "PT",
    "IE",
    "CA",
    "MX",
    "BR",
    "AR",
    "AU",
    "NZ",
    "ZA",
    "KE",
    "IN",
    "CN",
    "JP",
    "RU",
]
_ISSUES = [
    "COORDINATE_ROUNDED",
    "GEODETIC_DATUM_ASSUMED_WGS84",
    "ZERO_COORDINATE",
    "COUNTRY_COORDINATE_MISMATCH",
]


def _choice(rng: np.random.Generator, items: list[tuple[object, float]], n: int) -> pa.Array:
    values = [v for v, _ in items]
    p = np.array([w for _, w in items], dtype=float)
    idx = rng.choice(len(values), size=n, p=p / p.sum())
    return pa.array(values).take(pa.array(idx))


def _zipf_index(rng: np.random.Generator, n_items: int, n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n_items + 1) ** a
    return rng.choice(n_items, size=n, p=w / w.sum())


def _join(*parts: object) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def make_snapshot(n: int, path: Path, seed: int = 7) -> Path:
    """A synthetic annotated snapshot of ``n`` media rows with realistic skew (cached)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    # occurrences with 1-4 images (mean ~1.5); each image a row
    n_occ = int(n / 1.5)
    per_occ = rng.choice([1, 2, 3, 4], size=n_occ, p=[0.65, 0.22, 0.09, 0.04])
    per_occ = per_occ[np.cumsum(per_occ) <= n]
    occ = np.repeat(np.arange(len(per_occ)), per_occ)
    occ = np.concatenate([occ, np.arange(len(per_occ), len(per_occ) + n - len(occ))])
    n_occ = int(occ.max()) + 1
    media_index = (
        np.arange(n) - np.repeat(np.cumsum(np.bincount(occ)) - np.bincount(occ), np.bincount(occ))
    ).astype(np.int32)
    gbif_ids = 1_000_000_000 + rng.permutation(n_occ * 3)[:n_occ].astype(np.int64)

    species_of_occ = _zipf_index(rng, N_SPECIES, n_occ, 0.9)
    species_keys = 1_000_000 + np.arange(N_SPECIES, dtype=np.int64) * 7
    genus_keys = 500_000 + (np.arange(N_SPECIES) // 8).astype(np.int64)
    dataset_pub = _zipf_index(rng, N_PUBLISHERS, N_DATASETS, 1.0)
    dataset_of_occ = _zipf_index(rng, N_DATASETS, n_occ, 1.1)
    pub_uuids = pa.array([f"{i:08x}-0000-4000-8000-{i * 7919 % 10**12:012d}" for i in range(N_PUBLISHERS)])
    ds_uuids = pa.array([f"{i:08x}-1111-4000-8000-{i * 104729 % 10**12:012d}" for i in range(N_DATASETS)])
    species_names = pa.array([f"Genus{i // 8} species{i}" for i in range(N_SPECIES)])
    observers = pa.array([f"Observer {i}" for i in range(N_OBSERVERS)])
    obs_of_occ = _zipf_index(rng, N_OBSERVERS, n_occ, 0.9)

    def occ_col(values: np.ndarray | pa.Array) -> pa.Array:
        arr = values if isinstance(values, pa.Array) else pa.array(values)
        return arr.take(pa.array(occ))

    sp = species_of_occ[occ]
    lat = rng.uniform(-60, 70, n_occ)
    lon = rng.uniform(-180, 180, n_occ)
    unc = rng.choice(
        [10.0, 30.0, 100.0, 1000.0, 25000.0, np.nan], size=n_occ, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.05]
    )
    photo_ids = rng.permutation(n * 4)[:n].astype(np.int64)
    dup = rng.random(n) < 0.003  # a few URLs listed twice (re-used media)
    photo_ids[dup] = photo_ids[np.maximum(np.flatnonzero(dup) - 1, 0)]
    host = _choice(
        rng,
        [
            ("https://inaturalist-open-data.s3.amazonaws.com/photos/", 0.7),
            ("https://observation.org/media/photo/", 0.2),
            ("https://api.gbif.org/v1/image/cache/", 0.1),
        ],
        n,
    )
    pid = pc.cast(pa.array(photo_ids), pa.string())
    identifier = _join(host, pid, "/medium.jpg")
    raw_lic = _choice(rng, _RAW_LICENSES, n)
    n_issues = rng.choice([0, 1, 2], size=n_occ, p=[0.8, 0.15, 0.05])
    issue_values = rng.choice(len(_ISSUES), size=int(n_issues.sum()), p=[0.6, 0.3, 0.05, 0.05])
    issues_occ = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(n_issues)]).astype(np.int32)),
        pa.array(_ISSUES).take(pa.array(issue_values)),
    )
    n_ann = rng.choice([0, 1, 2], size=n_occ, p=[0.96, 0.035, 0.005])
    ann_values = rng.choice(["NATIVE", "INTRODUCED", "MANAGED", "SUSPICIOUS"], size=int(n_ann.sum()))
    ann_occ = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(n_ann)]).astype(np.int32)), pa.array(ann_values)
    )
    columns = {
        "gbifID": occ_col(gbif_ids),
        "occurrenceID": _join("urn:occ:", pc.cast(occ_col(gbif_ids), pa.string())),
        "taxonKey": pa.array(species_keys[sp]),
        "acceptedTaxonKey": pa.array(species_keys[sp]),
        "kingdomKey": pa.array(np.full(n, 1, np.int64)),
        "phylumKey": pa.array(np.full(n, 54, np.int64)),
        "classKey": pa.array(np.full(n, 216, np.int64)),
        "orderKey": pa.array(np.full(n, 797, np.int64)),
        "familyKey": pa.array(np.full(n, 7017, np.int64)),
        "genusKey": pa.array(genus_keys[sp]),
        "speciesKey": pa.array(species_keys[sp]),
        "scientificName": species_names.take(pa.array(sp)),
        "acceptedScientificName": species_names.take(pa.array(sp)),
        "species": species_names.take(pa.array(sp)),
        "taxonRank": pa.array(["SPECIES"] * n),
        "datasetKey": ds_uuids.take(pa.array(dataset_of_occ[occ])),
        "publishingOrgKey": pub_uuids.take(pa.array(dataset_pub[dataset_of_occ][occ])),
        "basisOfRecord": occ_col(_choice(rng, _BASIS, n_occ)),
        "occurrenceStatus": occ_col(_choice(rng, [("PRESENT", 0.99), ("ABSENT", 0.01)], n_occ)),
        "decimalLatitude": occ_col(lat),
        "decimalLongitude": occ_col(lon),
        "coordinateUncertaintyInMeters": occ_col(unc),
        "countryCode": occ_col(pa.array(_COUNTRIES).take(pa.array(rng.integers(0, len(_COUNTRIES), n_occ)))),
        "year": occ_col(rng.integers(1980, 2025, n_occ).astype(np.int32)),
        "month": occ_col(rng.integers(1, 13, n_occ).astype(np.int32)),
        "recordedBy": occ_col(observers.take(pa.array(obs_of_occ))),
        "issues": issues_occ.take(pa.array(occ)),
        "license": occ_col(
            _choice(rng, [("CC_BY_NC_4_0", 0.6), ("CC_BY_4_0", 0.25), ("CC0_1_0", 0.15)], n_occ)
        ),
        "media_index": pa.array(media_index),
        "identifier": identifier,
        "format": pa.array(["image/jpeg"] * n),
        "media_license": normalize_licenses(raw_lic),
        "media_license_raw": raw_lic,
        "rightsHolder": occ_col(observers.take(pa.array(obs_of_occ))),
        "creator": occ_col(observers.take(pa.array(obs_of_occ))),
        "references": _join("https://example.org/photos/", pid),
    }
    table = conform(pa.table(columns))
    assert table.schema.equals(SNAPSHOT_SCHEMA)
    table = table.append_column("annotation_labels", ann_occ.take(pa.array(occ)))
    table = table.append_column(
        "annotation_conflict", pc.greater(pc.list_value_length(table["annotation_labels"]), 1)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
    tmp.rename(path)
    return path


# ---------------------------------------------------------------------------------------------------
# runners
# ---------------------------------------------------------------------------------------------------
def run_ours(src: Path, out: Path) -> dict:
    """What balanced_manifest does: pick the rows, then write the manifest a part at a time."""
    spec = parse_spec(SPEC)
    t0 = time.perf_counter()
    picked = pick_manifest_from_parquet(src, spec, snapshot_id="bench")
    t_build = time.perf_counter() - t0
    picked.write(out)
    total = time.perf_counter() - t0
    stats = picked.stats
    return {
        "seconds": total,
        "build_s": t_build,
        "write_s": total - t_build,
        "images": stats["images"],
        "classes": stats["classes"],
        "shortfall_classes": stats["shortfall_classes"],
        "min_class": stats["min_class_images"],
        "max_class": stats["max_class_images"],
        "timings": stats["timings"],
    }


def _timed(name: str, src: Path, out: Path) -> dict:
    """One run of ``name`` in a fresh child process: its own wall and CPU time (start-up and imports
    left out) and the peak RSS of its process tree, so no runner inherits another's memory."""
    cmd = [sys.executable, "-m", "gbifdl_assets_tests.bench.bench_manifest", name, str(src), str(out)]
    result = run_measured(cmd, cwd=REPO)
    return {**result, "load_average_1m": os.getloadavg()[0]}


def _child(name: str, src: Path, out: Path) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    info = RUNNERS[name](src, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({**info, "seconds": wall, "cpu_s": cpu}, default=float))


RUNNERS = {
    "ours": lambda src, out: run_ours(src, out),
    "polars_lazy": lambda src, out: run_polars(src, out, SPEC),
    "duckdb": lambda src, out: run_duckdb(src, out, SPEC),
}


def _same_manifest(ours: Path, other: Path, name: str) -> None:
    a = pq.read_table(ours)
    b = pq.read_table(other)
    assert a.num_rows == b.num_rows, f"{name}: {b.num_rows} rows, ours {a.num_rows}"
    for column in a.column_names:
        typ = a.schema.field(column).type
        assert a.column(column).equals(b.column(column).cast(typ)), f"{name}: column {column} differs"


def _median(runs: list[dict]) -> dict:
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {
        **best,
        "runs_s": [round(r["seconds"], 3) for r in runs],
        "median_s": statistics.median(r["seconds"] for r in runs),
    }


@pytest.mark.timeout(3600)  # anchors included, a few minutes; the suite's 300 s default is for tests
def test_bench_manifest(tmp_path: Path) -> None:
    # the anchors first give our manifest, on a small input of the same generator
    check = make_snapshot(CHECK_ROWS, CACHE / f"snapshot_{CHECK_ROWS}_{GENERATOR_KEY}.parquet")
    for name, run in RUNNERS.items():
        run(check, tmp_path / f"check_{name}.parquet")
        if name != "ours":
            _same_manifest(tmp_path / "check_ours.parquet", tmp_path / f"check_{name}.parquet", name)
    print(f"\nanchors checked: polars_lazy and duckdb give our manifest on {CHECK_ROWS:,} rows")

    t0 = time.perf_counter()
    src = make_snapshot(ROWS, CACHE / f"snapshot_{ROWS}_{GENERATOR_KEY}.parquet")
    gen_s = time.perf_counter() - t0
    print(f"input {src} ({src.stat().st_size / 1e6:.0f} MB; generated/cached in {gen_s:.1f} s)")

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in RUNNERS}
    names = list(RUNNERS)
    for i in range(RUNS):
        # the order turns each round: a run right after DuckDB's (2.4 GB freed just before) was seen
        # slower than one after ours, so no runner always follows the same one
        for name in names[i % len(names) :] + names[: i % len(names)]:
            runs[name].append(_timed(name, src, tmp_path / f"{name}_{i}.parquet"))
            r = runs[name][-1]
            extra = f"  {r['timings']}" if name == "ours" else ""
            print(
                f"  round {i + 1} {name}: {r['seconds']:.2f} s (cpu {r['cpu_s']:.1f} s, "
                f"peak RSS {r['peak_tree_rss_mb']:,.0f} MB, load {r['load_average_1m']:.1f}){extra}"
            )
    a = pq.read_table(tmp_path / "ours_0.parquet")
    b = pq.read_table(tmp_path / f"ours_{RUNS - 1}.parquet")
    assert a.equals(b), "the manifest must be identical across runs"
    for name in RUNNERS:
        if name != "ours":  # the anchors' 10 M-row manifests are ours too
            _same_manifest(tmp_path / "ours_0.parquet", tmp_path / f"{name}_0.parquet", name)
    results = {name: _median(r) for name, r in runs.items()}

    peaks = {name: max(r["peak_tree_rss_mb"] for r in runs[name]) for name in RUNNERS}
    ours_s = results["ours"]["median_s"]
    ratios = {name: round(results[name]["median_s"] / ours_s, 2) for name in RUNNERS if name != "ours"}
    per_round = {
        name: [round(a["seconds"] / o["seconds"], 2) for a, o in zip(runs[name], runs["ours"], strict=True)]
        for name in ratios
    }
    report = {
        "benchmark": "manifest",
        "rows": ROWS,
        "check_rows": CHECK_ROWS,
        "input": src.name,
        "target": "faster than polars_lazy (ratio > 1)",
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "polars": _version("polars"),
        "duckdb": _version("duckdb"),
        "results": results,
        "speedup_vs_anchor": ratios,
        "speedup_per_round": per_round,
        "peak_tree_rss_mb_max_of_rounds": peaks,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"  ours: median {ours_s:.2f} s for {ROWS:,} rows")
    for name, ratio in ratios.items():
        print(f"  vs {name}: ours is {ratio}x as fast (per round {per_round[name]})")
    print(f"  peak RSS of the process tree, largest of the rounds (MB): {peaks}")
    print(f"  results: {RESULTS}")


def _version(module: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(module)


if __name__ == "__main__":  # one timed run in a child process: NAME SRC OUT (see _timed)
    _child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
