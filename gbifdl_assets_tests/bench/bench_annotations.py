"""Benchmark: the annotation engine against PostGIS and a naive per-rule shapely loop.

Workload (deterministic, seed 7): ``GBIFDL_BENCH_OCCURRENCES`` occurrences (default 10,000,000) of a
synthetic taxonomy (5 kingdoms … 60,000 species; 10% of records identified below species, 5% under a
synonym) clustered around 400 hotspots plus a uniform background, 1% without coordinates, 5%
without a year; ``GBIFDL_BENCH_RULES`` rules (default 1,000) at mixed ranks (2% any taxon, 5%
kingdom, 8% phylum, 15% class, 20% order, 20% family, 15% genus, 15% species) with star-shaped
polygons of 4 to 2,500 vertices (log-uniform; 10% multipolygons, 5% with a hole), 10% with a
datasetKey, 15% with basisOfRecord (a third negated), 20% with a yearRange (open ends included).

Three implementations, identical semantics (boundary points inside):

* the engine, ``apply_rules`` (median of ``GBIFDL_BENCH_REPEATS`` runs, default 3);
* PostGIS 3 on PostgreSQL 15 (``postgresql-15-postgis-3``; installed with apt-get when missing):
  points COPYed in a spatially clustered order, a GiST index, ``ST_Intersects`` (boundary-inclusive,
  unlike ``ST_Within``) joined with the same taxon/dataset/basisOfRecord/year predicates; the rules
  are split over two connections so both cores work; timed once (the query only; load and index
  times are reported). Twice: on the polygons as they are, and (the anchor of issue 22, what a
  PostGIS user does with big polygons) on ``ST_Subdivide(geom, max_vertices)`` pieces with their own
  GiST index and ``SELECT DISTINCT`` (a point on a cut lies in two pieces), max_vertices swept over
  ``GBIFDL_BENCH_SUBDIVIDE_VERTICES`` (default 256,1024; the fastest query is the anchor); the
  subdivision time is reported beside the query's;
* two naive per-rule loops (no spatial index, no prepared polygons, no taxon index), extrapolated
  linearly from a sample: gbifrules' order (per rule: numpy taxon/attribute masks, then
  ``shapely.intersects`` on the unprepared polygon and point geometries; ``GBIFDL_BENCH_SAMPLE``,
  default 100,000) and GBIF's UI order (per rule: the spatial test on every record first, then
  taxon and attributes; ``GBIFDL_BENCH_SAMPLE_UI``, default 10,000).

Matches must be identical (PostGIS: all of them; naive: on the sample). Prints the ratios and writes
``gbifdl_assets_tests/bench/results/annotations.json``. Run::

    .venv/bin/python -m pytest -o python_files='bench_*.py' gbifdl_assets_tests/bench/bench_annotations.py -s
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import shapely

from gbifdl_assets.annotations.compiled import rules_table_from_records, validate_rules_table
from gbifdl_assets.annotations.engine import KEY_COLUMNS, apply_rules
from gbifdl_assets_tests.bench.fingerprint import source_fingerprint

RESULTS = Path(__file__).resolve().parent / "results" / "annotations.json"
N_OCC = int(os.environ.get("GBIFDL_BENCH_OCCURRENCES", "10000000"))
N_RULES = int(os.environ.get("GBIFDL_BENCH_RULES", "1000"))
N_SAMPLE = int(os.environ.get("GBIFDL_BENCH_SAMPLE", "100000"))
N_SAMPLE_UI = int(os.environ.get("GBIFDL_BENCH_SAMPLE_UI", "10000"))
REPEATS = int(os.environ.get("GBIFDL_BENCH_REPEATS", "3"))
SKIP_POSTGIS = os.environ.get("GBIFDL_BENCH_SKIP_POSTGIS") == "1"
#: ST_Subdivide's max_vertices values swept for the subdivided PostGIS anchor (256 is its default)
SUBDIVIDE_VERTICES = [
    int(v) for v in os.environ.get("GBIFDL_BENCH_SUBDIVIDE_VERTICES", "256,1024").split(",")
]
#: bump when make_occurrences/make_rules change on purpose; recorded with a fingerprint of the
#: product code they call, so results from different inputs are never compared unknowingly
GENERATOR_VERSION = 1

RANKS = ("kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey", "genusKey", "speciesKey")
RANK_SIZES = (5, 40, 200, 1000, 4000, 15000, 60000)
RANK_BASE = (1, 100, 1_000, 10_000, 100_000, 1_000_000, 2_000_000)
BOR = ("HUMAN_OBSERVATION", "PRESERVED_SPECIMEN", "MACHINE_OBSERVATION", "MATERIAL_SAMPLE", "OCCURRENCE")


# ------------------------------------------------------------------------------------------ data
def make_taxonomy(rng: np.random.Generator) -> np.ndarray:
    """(60,000 species, 7 ranks) keys: each taxon's parent drawn from the rank above."""
    parents = [np.zeros(RANK_SIZES[0], dtype=np.int64)]
    for level in range(1, len(RANKS)):
        parents.append(rng.integers(0, RANK_SIZES[level - 1], RANK_SIZES[level]))
    path = np.empty((RANK_SIZES[-1], len(RANKS)), dtype=np.int64)
    idx = np.arange(RANK_SIZES[-1])
    for level in range(len(RANKS) - 1, -1, -1):
        path[:, level] = RANK_BASE[level] + idx
        idx = parents[level][idx]
    return path


def make_occurrences(n: int, seed: int = 7) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The occurrence table, the taxonomy paths and the hotspot centres."""
    rng = np.random.default_rng(seed)
    paths = make_taxonomy(rng)
    weights = 1.0 / np.arange(1, len(paths) + 1) ** 0.9
    species = rng.choice(len(paths), size=n, p=weights / weights.sum())
    keys = paths[species]
    taxon = keys[:, -1].copy()
    below = rng.random(n) < 0.10  # subspecies-level identifications
    taxon[below] = 5_000_000 + species[below] * 3 + rng.integers(0, 3, below.sum())
    accepted = taxon.copy()
    synonym = rng.random(n) < 0.05
    taxon[synonym] = 9_000_000 + species[synonym]
    accepted[synonym] = keys[synonym, -1]
    hotspots = np.column_stack([rng.uniform(-170, 170, 400), rng.uniform(-60, 70, 400)])
    clustered = rng.random(n) < 0.7
    centre = hotspots[rng.integers(0, len(hotspots), n)]
    lon = np.where(clustered, centre[:, 0] + rng.normal(0, 5, n), rng.uniform(-180, 180, n))
    lat = np.where(clustered, centre[:, 1] + rng.normal(0, 4, n), rng.uniform(-90, 90, n))
    lon, lat = np.clip(lon, -180, 180).round(5), np.clip(lat, -90, 90).round(5)
    no_coords = rng.random(n) < 0.01
    year = rng.integers(1900, 2025, n).astype(np.int32)
    no_year = rng.random(n) < 0.05
    datasets = np.array([f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(200)])
    bor = np.array(BOR)[rng.integers(0, len(BOR), n)].astype(object)
    bor[rng.random(n) < 0.03] = None
    columns = {
        "gbifID": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "taxonKey": pa.array(taxon),
        "acceptedTaxonKey": pa.array(accepted),
        **{rank: pa.array(keys[:, i]) for i, rank in enumerate(RANKS)},
        "datasetKey": pa.array(datasets[rng.integers(0, len(datasets), n)]),
        "basisOfRecord": pa.array(bor, pa.string()),
        "decimalLatitude": pa.array(lat, mask=no_coords),
        "decimalLongitude": pa.array(lon, mask=no_coords),
        "year": pa.array(year, mask=no_year),
    }
    return pa.table(columns), paths, hotspots


def _star(rng: np.random.Generator, cx: float, cy: float, radius: float, nverts: int) -> shapely.Polygon:
    angles = np.sort(rng.uniform(0, 2 * np.pi, nverts))
    radii = radius * rng.uniform(0.55, 1.0, nverts)
    xs = np.clip(cx + radii * np.cos(angles), -180, 180)
    ys = np.clip(cy + radii * np.sin(angles) * 0.8, -90, 90)
    poly = shapely.Polygon(np.column_stack([xs, ys]).round(6))
    return poly if poly.is_valid else shapely.make_valid(poly).buffer(0)


def make_rules(n: int, paths: np.ndarray, hotspots: np.ndarray, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    rank_choice = rng.choice(8, size=n, p=[0.02, 0.05, 0.08, 0.15, 0.20, 0.20, 0.15, 0.15])
    weights = 1.0 / np.arange(1, len(paths) + 1) ** 0.9
    datasets = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(200)]
    records = []
    for i in range(n):
        rank = rank_choice[i]
        taxon = None if rank == 0 else int(paths[rng.choice(len(paths), p=weights / weights.sum()), rank - 1])
        cx, cy = hotspots[rng.integers(0, len(hotspots))] + rng.normal(0, 3, 2)
        cx, cy = float(np.clip(cx, -150, 150)), float(np.clip(cy, -60, 60))
        budget = int(np.exp(rng.uniform(np.log(4), np.log(2500))))
        radius = float(rng.uniform(0.5, 25))
        kind = rng.random()
        if kind < 0.10:  # multipolygon: 2-3 disjoint parts sharing the vertex budget
            k = int(rng.integers(2, 4))
            parts = [_star(rng, cx + 3 * radius * j, cy, radius, max(budget // k - 1, 3)) for j in range(k)]
            geom = shapely.MultiPolygon([p for p in parts if p.geom_type == "Polygon"])
        elif kind < 0.15:  # polygon with a hole
            outer = shapely.Point(cx, cy).buffer(radius, quad_segs=max(budget // 8, 1))
            geom = outer.difference(shapely.Point(cx, cy).buffer(radius / 3, quad_segs=8))
        else:
            geom = _star(rng, cx, cy, radius, max(budget - 1, 3))
        rec = {
            "id": f"bench:{i:04d}",
            "source": "local",
            "taxonKey": taxon,
            "geometry": shapely.to_wkt(geom, rounding_precision=6),
            "label": ("SUSPICIOUS", "NATIVE", "INTRODUCED", "MANAGED")[i % 4],
            "supportCount": int(rng.integers(0, 5)),
        }
        if rng.random() < 0.10:
            rec["datasetKey"] = datasets[int(rng.integers(0, len(datasets)))]
        if rng.random() < 0.15:
            rec["basisOfRecord"] = list(rng.choice(BOR, size=int(rng.integers(1, 3)), replace=False))
            rec["basisOfRecordNegated"] = bool(rng.random() < 1 / 3)
        if rng.random() < 0.20:
            a = int(rng.integers(1900, 2000))
            rec["yearRange"] = rng.choice([f"{a},{a + 40}", f"*,{a}", f"{a},*"])
        records.append(rec)
    return validate_rules_table(rules_table_from_records(records), max_vertices=2600)


# ------------------------------------------------------------------------------------------ naive
def naive_matches(occ: pa.Table, rules: pa.Table, *, spatial_first: bool = False) -> set[tuple[int, str]]:
    """A per-rule loop without spatial index, prepared polygons or taxon index.

    ``spatial_first=False`` is gbifrules' order (per rule: the taxon's records with numpy masks,
    then unprepared ``shapely.intersects`` on point geometries); ``True`` is GBIF's UI order
    (``downloadProcessor.ts``: spatial test on every record, then taxon, basisOfRecord, dataset,
    year on the records inside).
    """
    gid = occ.column("gbifID").to_numpy()
    lon = occ.column("decimalLongitude").to_numpy(zero_copy_only=False)
    lat = occ.column("decimalLatitude").to_numpy(zero_copy_only=False)
    points = shapely.points(lon, lat)  # NaN coordinates give empty points: never intersect
    keys = np.stack([occ.column(c).to_numpy() for c in KEY_COLUMNS])
    year = occ.column("year").fill_null(-(2**31)).to_numpy()
    dataset = np.array(occ.column("datasetKey").to_pylist(), dtype=object)
    bor = np.array(occ.column("basisOfRecord").to_pylist(), dtype=object)
    out: set[tuple[int, str]] = set()
    everything = np.arange(len(gid))
    for rule in rules.to_pylist():
        polygon = shapely.from_wkt(rule["geometry"])
        # gbifrules order filters whole columns; UI order only the records inside the polygon
        idx = everything[shapely.intersects(polygon, points)] if spatial_first else slice(None)
        mask = np.ones(len(gid[idx]), bool)
        if rule["taxonKey"] is not None:
            mask &= (keys[:, idx] == rule["taxonKey"]).any(0)
        if rule["basisOfRecord"]:
            inside = np.isin(bor[idx], rule["basisOfRecord"])
            mask &= ~inside if rule["basisOfRecordNegated"] else inside
        if rule["datasetKey"]:
            mask &= dataset[idx] == rule["datasetKey"]
        if rule["yearRange"]:
            a, b = rule["yearRange"].split(",")
            mask &= year[idx] != -(2**31)
            if a != "*":
                mask &= year[idx] >= int(a)
            if b != "*":
                mask &= year[idx] <= int(b)
        hits = everything[idx][mask]
        if not spatial_first:
            hits = hits[shapely.intersects(polygon, points[hits])]
        out.update((int(g), rule["id"]) for g in gid[hits])
    return out


# ------------------------------------------------------------------------------------------ PostGIS
def _postgis_available() -> bool:
    return any(Path("/usr/share/postgresql").glob("*/extension/postgis.control"))


def _ensure_postgis() -> bool:
    if _postgis_available():
        return True
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "postgresql-15-postgis-3"], capture_output=True, check=False
        )
    return _postgis_available()


_SQL_MATCH = """
COPY (
  SELECT o.gbifid, r.idx FROM rules r JOIN occ o ON ST_Intersects(r.geom, o.geom)
  WHERE r.part = {part}
    AND (r.taxonkey IS NULL OR r.taxonkey IN (o.taxonkey, o.acceptedtaxonkey, o.kingdomkey, o.phylumkey,
         o.classkey, o.orderkey, o.familykey, o.genuskey, o.specieskey))
    AND (r.datasetkey IS NULL OR o.datasetkey = r.datasetkey)
    AND (r.bor IS NULL
         OR (NOT r.bor_negated AND o.basisofrecord = ANY (r.bor))
         OR (r.bor_negated AND (o.basisofrecord IS NULL OR o.basisofrecord <> ALL (r.bor))))
    AND (NOT r.has_years OR (o.year IS NOT NULL AND o.year >= r.ylo AND o.year <= r.yhi))
) TO STDOUT WITH (FORMAT csv)
"""


def postgis_matches(occ: pa.Table, rules: pa.Table) -> dict:
    from gbifdl_assets_tests.harness.postgres import PostgresServer

    timings: dict = {}
    settings = {
        "shared_buffers": "4GB",
        "work_mem": "256MB",
        "maintenance_work_mem": "2GB",
        "max_parallel_workers_per_gather": "2",
        "max_wal_size": "8GB",
    }
    with PostgresServer(extra_settings=settings) as pg:
        pg.create_database("bench")
        conn = pg.connect("bench")
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION postgis")
        cur.execute("SELECT postgis_lib_version(), version()")
        version, server = cur.fetchone()
        timings["postgis_version"] = f"PostGIS {version} on {server.split(' on ')[0]}"
        cols = [
            "gbifID",
            *KEY_COLUMNS,
            "datasetKey",
            "basisOfRecord",
            "year",
            "decimalLongitude",
            "decimalLatitude",
        ]
        cur.execute(
            "CREATE UNLOGGED TABLE occ (gbifid bigint, taxonkey bigint, acceptedtaxonkey bigint, kingdomkey bigint,"
            " phylumkey bigint, classkey bigint, orderkey bigint, familykey bigint, genuskey bigint,"
            " specieskey bigint, datasetkey text, basisofrecord text, year int, lon float8, lat float8,"
            " geom geometry(Point, 4326) GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED)"
        )
        # Spatially clustered load order (Morton code of a 0.1-degree grid): what CLUSTER would give.
        lon = np.nan_to_num(occ.column("decimalLongitude").to_numpy(zero_copy_only=False), nan=0)
        lat = np.nan_to_num(occ.column("decimalLatitude").to_numpy(zero_copy_only=False), nan=0)
        gx = ((lon + 180) * 10).astype(np.uint64)
        gy = ((lat + 90) * 10).astype(np.uint64)
        code = np.zeros(len(gx), dtype=np.uint64)
        for bit in range(12):
            code |= ((gx >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit)
            code |= ((gy >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit + 1)
        ordered = occ.select(cols).take(pa.array(np.argsort(code, kind="stable")))
        t0 = time.perf_counter()
        batch = 1_000_000
        for start in range(0, ordered.num_rows, batch):
            buf = io.BytesIO()
            pacsv.write_csv(
                ordered.slice(start, batch),
                buf,
                pacsv.WriteOptions(include_header=False, quoting_style="needed"),
            )
            buf.seek(0)
            cur.copy_expert(
                "COPY occ (gbifid, taxonkey, acceptedtaxonkey, kingdomkey, phylumkey, classkey, orderkey,"
                " familykey, genuskey, specieskey, datasetkey, basisofrecord, year, lon, lat)"
                " FROM STDIN WITH (FORMAT csv)",
                buf,
            )
        timings["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cur.execute("CREATE INDEX occ_geom ON occ USING gist (geom)")
        cur.execute("VACUUM ANALYZE occ")
        timings["index_s"] = time.perf_counter() - t0
        cur.execute(
            "CREATE TABLE rules (idx int, part int, taxonkey bigint, geom geometry(Geometry, 4326),"
            " datasetkey text, bor text[], bor_negated bool, has_years bool, ylo int, yhi int)"
        )
        rows = []
        for idx, rule in enumerate(rules.to_pylist()):
            ylo, yhi, has = -(2**31), 2**31 - 1, False
            if rule["yearRange"]:
                a, b = rule["yearRange"].split(",")
                has = True
                ylo = ylo if a == "*" else int(a)
                yhi = yhi if b == "*" else int(b)
            rows.append(
                (
                    idx,
                    idx % 2,
                    rule["taxonKey"],
                    rule["geometry"],
                    rule["datasetKey"],
                    rule["basisOfRecord"],
                    rule["basisOfRecordNegated"],
                    has,
                    ylo,
                    yhi,
                )
            )
        cur.executemany(
            "INSERT INTO rules VALUES (%s, %s, %s, ST_GeomFromText(%s, 4326), %s, %s, %s, %s, %s, %s)", rows
        )
        cur.execute("ANALYZE rules")
        cur.execute("EXPLAIN " + _SQL_MATCH.format(part=0).split("COPY (", 1)[1].rsplit(") TO STDOUT", 1)[0])
        timings["plan"] = "\n".join(r[0] for r in cur.fetchall())
        conn.close()

        outputs: list[bytes] = [b"", b""]

        def run(part: int, sql: str) -> None:
            c = pg.connect("bench")
            try:
                buf = io.BytesIO()
                c.cursor().copy_expert(sql.format(part=part), buf)
                outputs[part] = buf.getvalue()
            finally:
                c.close()

        def run_all(sql: str) -> tuple[float, np.ndarray]:
            outputs[:] = [b"", b""]
            t0 = time.perf_counter()
            workers = [threading.Thread(target=run, args=(p, sql)) for p in (0, 1)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            seconds = time.perf_counter() - t0
            pairs = [np.loadtxt(io.BytesIO(o), delimiter=",", dtype=np.int64, ndmin=2) for o in outputs if o]
            return seconds, np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)

        timings["query_s"], timings["pairs"] = run_all(_SQL_MATCH)
        # The standard trick for big polygons: ST_Subdivide them into pieces of at most max_vertices
        # vertices, so the GiST index finds candidates per piece and each exact test runs on a small
        # polygon. A point on a cut lies in two pieces: DISTINCT keeps one pair. Swept over
        # SUBDIVIDE_VERTICES; the fastest query is the anchor.
        sweep: dict[int, dict] = {}
        for vertices in SUBDIVIDE_VERTICES:
            conn = pg.connect("bench")
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("DROP TABLE IF EXISTS rules_sub")
            t0 = time.perf_counter()
            cur.execute(
                "CREATE TABLE rules_sub AS SELECT idx, part, taxonkey, datasetkey, bor, bor_negated, has_years,"
                f" ylo, yhi, ST_Subdivide(geom, {vertices}) AS geom FROM rules"
            )
            cur.execute("CREATE INDEX rules_sub_geom ON rules_sub USING gist (geom)")
            cur.execute("ANALYZE rules_sub")
            entry: dict = {"subdivide_s": time.perf_counter() - t0}
            cur.execute("SELECT count(*) FROM rules_sub")
            entry["pieces"] = cur.fetchone()[0]
            sub_sql = _SQL_MATCH.replace("SELECT o.gbifid", "SELECT DISTINCT o.gbifid").replace(
                "FROM rules r", "FROM rules_sub r"
            )
            cur.execute("EXPLAIN " + sub_sql.format(part=0).split("COPY (", 1)[1].rsplit(") TO STDOUT", 1)[0])
            entry["plan"] = "\n".join(r[0] for r in cur.fetchall())
            conn.close()
            entry["query_s"], entry["pairs"] = run_all(sub_sql)
            print(
                f"PostGIS, ST_Subdivide({vertices}): {entry['pieces']:,} pieces, query {entry['query_s']:.1f} s"
            )
            sweep[vertices] = entry
        timings["subdivided_sweep"] = sweep
    return timings


# ------------------------------------------------------------------------------------------ bench
def _pair_codes(gids: np.ndarray, rule_idx: np.ndarray, n_rules: int) -> np.ndarray:
    """(gbifID, rule index) pairs as sorted int64 codes, for exact set comparison."""
    return np.sort(gids.astype(np.int64) * (n_rules + 1) + rule_idx.astype(np.int64))


def _time_engine(
    occ: pa.Table, rules: pa.Table, repeats: int, threads: int | None = None
) -> tuple[list, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = apply_rules(occ, rules, threads=threads)
        times.append(time.perf_counter() - t0)
    return times, result


@pytest.mark.slow
@pytest.mark.timeout(3600)  # PostGIS alone takes minutes (load, index, query)
def test_bench_annotations() -> None:
    loads = [os.getloadavg()[0]]  # other work on the machine skews every timing: recorded
    t0 = time.perf_counter()
    occ, paths, hotspots = make_occurrences(N_OCC)
    rules = make_rules(N_RULES, paths, hotspots)
    gen_s = time.perf_counter() - t0
    nverts = shapely.get_num_coordinates(
        shapely.from_wkt(rules.column("geometry").to_numpy(zero_copy_only=False))
    )
    print(
        f"\nworkload: {occ.num_rows:,} occurrences, {rules.num_rows:,} rules "
        f"(vertices max {nverts.max():,}, median {int(np.median(nverts)):,}), generated in {gen_s:.1f} s"
    )

    # The engine runs before and after the anchors, so that a busy spell of the machine does not
    # favour one side: the ratios use the median of all runs.
    engine_times, result = _time_engine(occ, rules, REPEATS)
    single_core, _ = _time_engine(occ, rules, 1, threads=1)
    rule_index = {rid: i for i, rid in enumerate(rules.column("id").to_pylist())}
    m_gid = result.matches.column("gbifID").to_numpy()
    m_rule = np.array([rule_index[r] for r in result.matches.column("rule_id").to_pylist()], dtype=np.int64)
    engine_codes = _pair_codes(m_gid, m_rule, rules.num_rows)
    print(
        f"engine: runs {', '.join(f'{t:.2f}' for t in engine_times)} s (1 thread: {single_core[0]:.2f} s), "
        f"{result.matches.num_rows:,} matches on {result.stats['matched']:,} occurrences"
    )

    # naive loops on samples, extrapolated linearly
    ids = rules.column("id").to_pylist()
    naive_report = {}
    for name, spatial_first, size in (("gbifrules_order", False, N_SAMPLE), ("ui_order", True, N_SAMPLE_UI)):
        rng = np.random.default_rng(3)
        sample_idx = np.sort(rng.choice(occ.num_rows, size=min(size, occ.num_rows), replace=False))
        sample = occ.take(pa.array(sample_idx))
        times, found = [], set()
        for _ in range(max(1, min(REPEATS, 2))):
            t0 = time.perf_counter()
            found = naive_matches(sample, rules, spatial_first=spatial_first)
            times.append(time.perf_counter() - t0)
        sample_s = statistics.median(times)
        in_sample = np.isin(m_gid, sample.column("gbifID").to_numpy())
        engine_sample = {
            (int(g), ids[int(r)]) for g, r in zip(m_gid[in_sample], m_rule[in_sample], strict=True)
        }
        naive_report[name] = {
            "sample": sample.num_rows,
            "sample_s": sample_s,
            "extrapolated_s": sample_s * occ.num_rows / sample.num_rows,
            "identical": engine_sample == found,
            "matches": len(found),
        }
        loads.append(os.getloadavg()[0])

    report: dict = {
        "workload": {
            "occurrences": occ.num_rows,
            "rules": rules.num_rows,
            "max_vertices": int(nverts.max()),
            "median_vertices": int(np.median(nverts)),
            "generator": f"v{GENERATOR_VERSION}-{source_fingerprint('gbifdl_assets.annotations.compiled')}",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "shapely": shapely.__version__,
        },
        "matches": result.matches.num_rows,
        "matched_occurrences": result.stats["matched"],
        "engine_single_thread_s": single_core[0],
    }

    postgis_ok = not SKIP_POSTGIS and _ensure_postgis()
    if postgis_ok:
        pg = postgis_matches(occ, rules)
        loads.append(os.getloadavg()[0])
        pg_codes = _pair_codes(pg["pairs"][:, 0], pg["pairs"][:, 1], rules.num_rows)
        pg_identical = bool(len(pg_codes) == len(engine_codes) and np.array_equal(pg_codes, engine_codes))
        report.update(
            postgis_version=pg["postgis_version"],
            postgis_query_s=pg["query_s"],
            postgis_load_s=pg["load_s"],
            postgis_index_s=pg["index_s"],
            postgis_identical=pg_identical,
            postgis_plan=pg["plan"],
        )
        sweep = pg["subdivided_sweep"]
        best = min(sweep, key=lambda v: sweep[v]["query_s"])
        identical = {}
        for vertices, entry in sweep.items():
            pairs = entry.pop("pairs")
            codes = _pair_codes(pairs[:, 0], pairs[:, 1], rules.num_rows)
            identical[vertices] = bool(
                len(codes) == len(engine_codes) and np.array_equal(codes, engine_codes)
            )
            entry["identical"] = identical[vertices]
        report.update(
            postgis_subdivided_query_s=sweep[best]["query_s"],
            postgis_subdivide_s=sweep[best]["subdivide_s"],
            postgis_subdivided_pieces=sweep[best]["pieces"],
            postgis_subdivide_max_vertices=best,
            postgis_subdivided_identical=all(identical.values()),
            postgis_subdivided_plan=sweep[best]["plan"],
            postgis_subdivide_sweep={
                str(v): {k: e[k] for k in ("pieces", "subdivide_s", "query_s", "identical")}
                for v, e in sweep.items()
            },
        )
        if not pg_identical:
            only_pg = np.setdiff1d(pg_codes, engine_codes)[:10]
            only_engine = np.setdiff1d(engine_codes, pg_codes)[:10]
            base = rules.num_rows + 1
            print("only in PostGIS:", [(int(c // base), int(c % base)) for c in only_pg])
            print("only in engine:", [(int(c // base), int(c % base)) for c in only_engine])
    else:
        report["postgis_skipped"] = True

    later, _ = _time_engine(occ, rules, REPEATS)
    engine_times += later
    engine_s = statistics.median(engine_times)
    loads.append(os.getloadavg()[0])
    report.update(engine_s=engine_s, engine_runs_s=engine_times, load_averages=loads)
    print(f"engine: median {engine_s:.2f} s of runs {', '.join(f'{t:.2f}' for t in engine_times)}")
    for name, v in naive_report.items():
        v["over_engine"] = v["extrapolated_s"] / engine_s
        print(
            f"naive ({name.replace('_', ' ')}): {v['sample_s']:.2f} s on {v['sample']:,} → "
            f"{v['extrapolated_s']:,.0f} s extrapolated = {v['over_engine']:,.0f}x the engine; "
            f"identical on the sample: {v['identical']} ({v['matches']:,} matches)"
        )
    report["naive"] = naive_report
    ratios = ", ".join(
        f"naive {k.replace('_', ' ')}/engine {v['over_engine']:,.0f}x" for k, v in naive_report.items()
    )
    if postgis_ok:
        report["postgis_over_engine"] = report["postgis_query_s"] / engine_s
        print(
            f"{report['postgis_version']}: query {report['postgis_query_s']:.1f} s (load "
            f"{report['postgis_load_s']:.1f} s, GiST index + analyze {report['postgis_index_s']:.1f} s), "
            f"identical: {report['postgis_identical']}"
        )
        ratios += f", postgis/engine {report['postgis_over_engine']:.1f}x"
        report["postgis_subdivided_over_engine"] = report["postgis_subdivided_query_s"] / engine_s
        report["postgis_subdivided_over_engine_single_thread"] = (
            report["postgis_subdivided_query_s"] / report["engine_single_thread_s"]
        )
        print(
            f"PostGIS with ST_Subdivide({report['postgis_subdivide_max_vertices']}), the fastest of "
            f"{SUBDIVIDE_VERTICES}: {report['postgis_subdivided_pieces']:,} pieces "
            f"in {report['postgis_subdivide_s']:.1f} s, query {report['postgis_subdivided_query_s']:.1f} s, "
            f"identical: {report['postgis_subdivided_identical']}"
        )
        ratios += (
            f", subdivided postgis/engine {report['postgis_subdivided_over_engine']:.1f}x "
            f"({report['postgis_subdivided_over_engine_single_thread']:.1f}x against the engine on 1 thread)"
        )
    else:
        why = "GBIFDL_BENCH_SKIP_POSTGIS=1" if SKIP_POSTGIS else "install postgresql-15-postgis-3"
        print(f"postgis: skipped ({why})")
    print(f"ratios: {ratios} (load averages during the run: {', '.join(f'{x:.1f}' for x in loads)})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    assert all(v["identical"] for v in naive_report.values()), (
        "engine and a naive loop disagree on the sample"
    )
    if postgis_ok:
        assert report["postgis_identical"], "engine and PostGIS disagree"
        assert report["postgis_subdivided_identical"], "engine and subdivided PostGIS disagree"
