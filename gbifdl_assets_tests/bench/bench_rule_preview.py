"""Benchmark: the rule preview (``POST …/rule/preview``) on a 1,000,000-row snapshot; budget 1 s.

Workload (deterministic, seed 11): one committed snapshot of ``GBIFDL_BENCH_PREVIEW_ROWS`` rows (default
1,000,000; about 770,000 occurrences, up to 3 images each) written in the storage layout with the
snapshot schema: points clustered around 600 hotspots drawn on land (Natural Earth 1:50m), plus 5 %
uniform background and 1 % without coordinates; 5,000 species in 25 families; 40 datasets with titles;
five basisOfRecord values (80 % human observations); years 1850-2025 (5 % missing).

Two previews, each through the service's own code path (the snapshot found in the storage, its columns
read and cached, the rule parsed by the model and applied by the engine):

* **country**: France's outline (``resolve_area("FR")``, metropolitan France plus overseas departments,
  simplified to GBIF's 2,500 vertices), every taxon, basisOfRecord all but PRESERVED_SPECIMEN;
* **complex**: a 2,400-vertex star-shaped polygon with a hole over central Europe, one family,
  yearRange 1950-2020.

Timed: the first (cold) preview, which reads the columns from Parquet and indexes the points, and the
median of ``GBIFDL_BENCH_REPEATS`` (default 7) warm previews (cached columns). Every timing must stay
under 1 s on the reference machine (2 cores); the counts are checked against a plain-shapely
reference. Writes ``gbifdl_assets_tests/bench/results/rule_preview.json``. Run::

    .venv/bin/python -m pytest -o python_files='bench_*.py' gbifdl_assets_tests/bench/bench_rule_preview.py -s
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely

from gbifdl_assets.annotations.areas import land_parts, resolve_area
from gbifdl_assets.annotations.preview import SnapshotCache, parse_preview_request, preview_rule
from gbifdl_assets.gbif.media_schema import conform
from gbifdl_assets.occurrences.snapshots import latest_snapshots
from gbifdl_assets.storage import LocalStorage, Storage
from gbifdl_assets_tests.harness.snapshots import write_committed_snapshot

RESULTS = Path(__file__).resolve().parent / "results" / "rule_preview.json"
N_ROWS = int(os.environ.get("GBIFDL_BENCH_PREVIEW_ROWS", "1000000"))
REPEATS = int(os.environ.get("GBIFDL_BENCH_REPEATS", "7"))
BUDGET_SECONDS = 1.0
BOR = ("HUMAN_OBSERVATION", "PRESERVED_SPECIMEN", "MACHINE_OBSERVATION", "MATERIAL_SAMPLE", "OCCURRENCE")
BOR_P = (0.8, 0.1, 0.05, 0.03, 0.02)
FAMILY_BASE, GENUS_BASE, SPECIES_BASE = 9_000, 20_000, 1_000_000


def land_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` (lon, lat) points on land (rejection sampling against Natural Earth's land)."""
    land = shapely.union_all(land_parts())
    shapely.prepare(land)
    out = np.empty((0, 2))
    while len(out) < n:
        cand = np.column_stack([rng.uniform(-180, 180, 4 * n), rng.uniform(-60, 80, 4 * n)])
        out = np.vstack([out, cand[shapely.contains_xy(land, cand[:, 0], cand[:, 1])]])
    return out[:n]


def snapshot_table(n_rows: int, seed: int = 11) -> pa.Table:
    """A snapshot-schema table of ``n_rows`` image rows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    per_occ = rng.choice([1, 2, 3], size=n_rows, p=[0.75, 0.2, 0.05])
    per_occ = per_occ[np.cumsum(per_occ) <= n_rows]
    per_occ = np.append(per_occ, n_rows - per_occ.sum()) if per_occ.sum() < n_rows else per_occ
    n_occ = len(per_occ)
    hot = land_points(rng, 600)
    which = rng.integers(0, len(hot), n_occ)
    spread = rng.uniform(0.3, 4.0, len(hot))[which]
    lon = hot[which, 0] + rng.normal(0, 1, n_occ) * spread
    lat = hot[which, 1] + rng.normal(0, 1, n_occ) * spread * 0.6
    background = rng.random(n_occ) < 0.05
    lon[background] = rng.uniform(-180, 180, background.sum())
    lat[background] = rng.uniform(-60, 75, background.sum())
    lon, lat = np.clip(lon, -180, 180), np.clip(lat, -89, 89)
    missing = rng.random(n_occ) < 0.01
    species = rng.integers(0, 5000, n_occ)
    datasets = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(1, 41)]
    dataset = rng.choice(40, n_occ, p=np.arange(40, 0, -1) / np.arange(40, 0, -1).sum())
    bor = rng.choice(len(BOR), n_occ, p=BOR_P)
    year = rng.integers(1850, 2026, n_occ).astype(float)
    year[rng.random(n_occ) < 0.05] = np.nan
    rep = lambda a: np.repeat(a, per_occ)  # noqa: E731 - one value per image row
    gbif_id = rep(np.arange(1, n_occ + 1, dtype=np.int64) * 7 + 1_000_000_000)
    starts = np.repeat(np.cumsum(per_occ) - per_occ, per_occ)
    media_index = np.arange(n_rows) - starts
    species_key = rep(SPECIES_BASE + species)
    columns = {
        "gbifID": gbif_id,
        "taxonKey": species_key,
        "acceptedTaxonKey": species_key,
        "kingdomKey": np.full(n_rows, 1, dtype=np.int64),
        "phylumKey": np.full(n_rows, 44, dtype=np.int64),
        "classKey": np.full(n_rows, 212, dtype=np.int64),
        "orderKey": rep(1000 + species % 5),
        "familyKey": rep(FAMILY_BASE + species % 25),
        "genusKey": rep(GENUS_BASE + species % 500),
        "speciesKey": species_key,
        "species": pa.array([f"Species {k}" for k in range(5000)]).take(pa.array(rep(species))),
        "datasetKey": pa.array(datasets).take(pa.array(rep(dataset))),
        "datasetTitle": pa.array([f"Dataset number {i}" for i in range(1, 41)]).take(pa.array(rep(dataset))),
        "basisOfRecord": pa.array(BOR).take(pa.array(rep(bor))),
        "decimalLatitude": pa.array(rep(lat), mask=rep(missing)),
        "decimalLongitude": pa.array(rep(lon), mask=rep(missing)),
        "year": pa.array(rep(year), mask=np.isnan(rep(year))).cast(pa.int32()),
        "media_index": media_index.astype(np.int32),
        "identifier": pa.array(
            [f"https://images.example.org/{g}/{m}.jpg" for g, m in zip(gbif_id, media_index, strict=True)]
        ),
    }
    return conform(pa.table({k: v for k, v in columns.items()}))


def star(cx: float, cy: float, r: float, n: int, seed: int) -> shapely.Polygon:
    rng = np.random.default_rng(seed)
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radius = r * (0.6 + 0.4 * rng.random(n))
    return shapely.Polygon(np.column_stack([cx + radius * np.cos(angle), cy + 0.6 * radius * np.sin(angle)]))


def complex_polygon() -> str:
    outer = star(12.0, 48.0, 12.0, 2300, seed=3)
    hole = star(12.0, 48.0, 3.0, 100, seed=4)
    return shapely.to_wkt(
        shapely.Polygon(outer.exterior.coords, [hole.exterior.coords]), rounding_precision=5
    )


def reference_count(table: pa.Table, wkt: str, keep: np.ndarray) -> int:
    """Distinct gbifIDs inside the polygon among rows ``keep`` (plain shapely, boundary included)."""
    geom = shapely.from_wkt(wkt)
    lon = table.column("decimalLongitude").to_numpy(zero_copy_only=False)
    lat = table.column("decimalLatitude").to_numpy(zero_copy_only=False)
    ok = keep & np.isfinite(lon) & np.isfinite(lat)
    rows = np.flatnonzero(ok)
    inside = rows[shapely.intersects_xy(geom, lon[rows], lat[rows])]
    return len(np.unique(table.column("gbifID").to_numpy()[inside]))


def run_preview(storage: Storage, cache: SnapshotCache, body: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    request = parse_preview_request(body)
    snapshots = [cache.get(storage, info) for info in latest_snapshots(storage, request.training_sets)]
    answer = preview_rule(request, snapshots)
    return answer, time.perf_counter() - t0


def test_rule_preview_on_a_million_rows(tmp_path):
    storage = LocalStorage(tmp_path / "data")
    t0 = time.perf_counter()
    table = snapshot_table(N_ROWS)
    write_committed_snapshot(storage, "birds", table)
    setup_seconds = time.perf_counter() - t0
    france = resolve_area("FR").geometry
    cases = {
        "country": {
            "geometry": shapely.to_wkt(france, rounding_precision=4),
            "basisOfRecord": ["PRESERVED_SPECIMEN"],
            "basisOfRecordNegated": True,
        },
        "complex": {"geometry": complex_polygon(), "taxonKey": FAMILY_BASE + 7, "yearRange": "1950,2020"},
    }
    bor = table.column("basisOfRecord").to_numpy(zero_copy_only=False)
    year = table.column("year").to_numpy(zero_copy_only=False)
    family = table.column("familyKey").to_numpy()
    year_ok = np.nan_to_num(year.astype(float), nan=-1)
    keeps = {
        "country": bor != "PRESERVED_SPECIMEN",
        "complex": (family == FAMILY_BASE + 7) & (year_ok >= 1950) & (year_ok <= 2020),
    }
    results: dict[str, dict] = {}
    for name, body in cases.items():
        cache = SnapshotCache()
        cold_answer, cold = run_preview(storage, cache, body)
        warm = []
        for _ in range(REPEATS):
            answer, seconds = run_preview(storage, cache, body)
            warm.append(seconds)
        assert answer["flagged"] == cold_answer["flagged"]
        expected = reference_count(table, body["geometry"], keeps[name])
        assert answer["flagged"]["occurrences"] == expected, (name, answer["flagged"], expected)
        vertices = int(shapely.get_num_coordinates(shapely.from_wkt(body["geometry"])))
        results[name] = {
            "vertices": vertices,
            "flagged": answer["flagged"],
            "rows_in_bounding_box": answer["trainingSets"][0]["rowsInBoundingBox"],
            "datasets": len(answer["byDataset"]),
            "samples": len(answer["samples"]),
            "cold_seconds": round(cold, 4),
            "warm_median_seconds": round(statistics.median(warm), 4),
            "warm_max_seconds": round(max(warm), 4),
            "warm_runs": [round(s, 4) for s in warm],
        }
        print(
            f"\n{name}: {vertices} vertices, {answer['flagged']['occurrences']:,} occurrences "
            f"({answer['flagged']['images']:,} images) of {N_ROWS:,} rows; "
            f"cold {cold:.3f} s, warm median {statistics.median(warm):.3f} s (max {max(warm):.3f} s); "
            f"{cold / BUDGET_SECONDS:.2f}x / {statistics.median(warm) / BUDGET_SECONDS:.2f}x of the 1 s budget"
        )
    report = {
        "benchmark": "rule_preview",
        "rows": N_ROWS,
        "occurrences": len(np.unique(table.column("gbifID").to_numpy())),
        "budget_seconds": BUDGET_SECONDS,
        "setup_seconds": round(setup_seconds, 1),
        "repeats": REPEATS,
        "cases": results,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "date": dt.date.today().isoformat(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        assert r["cold_seconds"] < BUDGET_SECONDS, (name, r)
        assert r["warm_median_seconds"] < BUDGET_SECONDS, (name, r)
