"""The engine against a naive per-rule shapely loop on random data: identical match sets.

The naive loop is the plain reading of the semantics (engine module docstring): per rule, numpy masks
for taxon (any of the key columns), dataset, basisOfRecord (negation lets nulls through) and year
(nulls never match a year rule), then unprepared ``shapely.intersects`` on point geometries
(boundary inclusive). Points are placed on polygon vertices and edges too, and gbifIDs repeat (one
row per media item), so the boundary rule and the join back are exercised.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

from gbifdl_assets.annotations import engine as engine_module
from gbifdl_assets.annotations.compiled import rules_table_from_records, validate_rules_table
from gbifdl_assets.annotations.engine import KEY_COLUMNS, apply_rules

BOR = ["HUMAN_OBSERVATION", "PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"]
DATASETS = ["d-1", "d-2", "d-3"]


def _polygon(rng: np.random.Generator) -> shapely.Geometry:
    cx, cy = rng.uniform(-170, 170), rng.uniform(-80, 80)
    r = rng.uniform(0.5, 15)
    kind = rng.integers(0, 4)
    if kind == 0:  # axis-aligned box: many points exactly on its edges below
        return shapely.box(cx - r, cy - r / 2, cx + r, cy + r / 2)
    if kind == 1:  # with a hole
        return shapely.Point(cx, cy).buffer(r, quad_segs=6).difference(shapely.Point(cx, cy).buffer(r / 3, 3))
    if kind == 2:  # two parts
        return shapely.MultiPolygon(
            [shapely.box(cx, cy, cx + r / 2, cy + r / 2), shapely.box(cx - r, cy - r, cx - r / 2, cy - r / 2)]
        )
    n = int(rng.integers(5, 300))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.4, 1, n)
    ring = np.column_stack([cx + radii * np.cos(angles), np.clip(cy + radii * np.sin(angles), -90, 90)])
    return shapely.Polygon(ring)


def make_case(seed: int, n_occ: int = 30_000, n_rules: int = 120) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    geoms = [_polygon(rng) for _ in range(n_rules)]
    geoms = [g if g.is_valid else shapely.make_valid(g) for g in geoms]
    # Occurrences: uniform, near polygons, and exactly on vertices/edge midpoints.
    lon = rng.uniform(-180, 180, n_occ)
    lat = rng.uniform(-90, 90, n_occ)
    near = rng.random(n_occ) < 0.5
    centres = np.array([g.centroid.coords[0] for g in geoms])
    pick = rng.integers(0, n_rules, n_occ)
    lon[near] = np.clip(centres[pick[near], 0] + rng.normal(0, 6, near.sum()), -180, 180)
    lat[near] = np.clip(centres[pick[near], 1] + rng.normal(0, 4, near.sum()), -90, 90)
    on_boundary = np.flatnonzero(rng.random(n_occ) < 0.05)
    for i in on_boundary:
        ring = np.asarray(shapely.get_coordinates(geoms[pick[i]]))
        j = int(rng.integers(0, len(ring) - 1))
        t = 0.0 if rng.random() < 0.5 else 0.5
        lon[i], lat[i] = ring[j] + t * (ring[j + 1] - ring[j]) if t else ring[j]
    missing = rng.random(n_occ) < 0.02
    # Taxonomy: small key spaces so that rules hit; every column drawn independently (the engine
    # must not assume a consistent classification).
    keys = {name: rng.integers(1, 15, n_occ) + 100 * i for i, name in enumerate(KEY_COLUMNS)}
    gbif_ids = rng.permutation(n_occ).astype(np.int64) + 1
    gbif_ids[rng.random(n_occ) < 0.1] = gbif_ids[0]  # a few repeated ids (several media rows)
    # Repeated ids must share the occurrence fields: copy from the first row of each id.
    _, first = np.unique(gbif_ids, return_index=True)
    first_of = dict(zip(gbif_ids[first].tolist(), first.tolist(), strict=True))
    src = np.array([first_of[g] for g in gbif_ids.tolist()])
    year = rng.integers(1890, 2030, n_occ).astype(np.int32)
    no_year = rng.random(n_occ) < 0.1
    bor = np.array(BOR + [None], dtype=object)[rng.integers(0, 4, n_occ)]
    ds = np.array(DATASETS + [None], dtype=object)[rng.integers(0, 4, n_occ)]
    occ = pa.table(
        {
            "gbifID": gbif_ids,
            "decimalLatitude": pa.array(lat[src], mask=missing[src]),
            "decimalLongitude": pa.array(lon[src], mask=missing[src]),
            **{name: pa.array(col[src]) for name, col in keys.items()},
            "datasetKey": pa.array(ds[src], pa.string()),
            "basisOfRecord": pa.array(bor[src], pa.string()),
            "year": pa.array(year[src], mask=no_year[src]),
        }
    )
    records = []
    for i, geom in enumerate(geoms):
        rec = {
            "id": f"local:{i}",
            "geometry": shapely.to_wkt(geom, rounding_precision=-1),
            "label": ["NATIVE", "SUSPICIOUS", "MANAGED", "FORMER"][i % 4],
            "supportCount": int(rng.integers(0, 3)),
            "contestCount": int(rng.integers(0, 2)),
        }
        if rng.random() < 0.85:
            col = int(rng.integers(0, len(KEY_COLUMNS)))
            rec["taxonKey"] = int(rng.integers(1, 15) + 100 * col)
        if rng.random() < 0.2:
            rec["datasetKey"] = DATASETS[int(rng.integers(0, 3))]
        if rng.random() < 0.25:
            rec["basisOfRecord"] = list(rng.choice(BOR, size=int(rng.integers(1, 3)), replace=False))
            rec["basisOfRecordNegated"] = bool(rng.random() < 0.5)
        if rng.random() < 0.25:
            a = int(rng.integers(1900, 2000))
            rec["yearRange"] = str(rng.choice([f"{a},{a + 30}", f"*,{a}", f"{a},*", str(a)]))
        records.append(rec)
    rules = validate_rules_table(rules_table_from_records(records), errors="skip")
    return occ, rules


def naive(occ: pa.Table, rules: pa.Table) -> set[tuple[int, str]]:
    gid = occ.column("gbifID").to_numpy()
    points = shapely.points(
        occ.column("decimalLongitude").to_numpy(zero_copy_only=False),
        occ.column("decimalLatitude").to_numpy(zero_copy_only=False),
    )
    keys = np.stack([occ.column(c).to_numpy() for c in KEY_COLUMNS])
    year = occ.column("year").to_pandas().to_numpy(dtype=float, na_value=np.nan)
    ds = np.array(occ.column("datasetKey").to_pylist(), dtype=object)
    bor = np.array(occ.column("basisOfRecord").to_pylist(), dtype=object)
    out = set()
    for rule in rules.to_pylist():
        mask = np.ones(len(gid), bool) if rule["taxonKey"] is None else (keys == rule["taxonKey"]).any(0)
        if rule["datasetKey"] is not None:
            mask &= ds == rule["datasetKey"]
        if rule["basisOfRecord"] is not None:
            inside = np.isin(bor, rule["basisOfRecord"])
            mask &= ~inside if rule["basisOfRecordNegated"] else inside
        if rule["yearRange"] is not None:
            a, b = rule["yearRange"].split(",")
            mask &= ~np.isnan(year)
            mask &= (year >= (-np.inf if a == "*" else int(a))) & (year <= (np.inf if b == "*" else int(b)))
        idx = np.flatnonzero(mask)
        hit = shapely.intersects(shapely.from_wkt(rule["geometry"]), points[idx])  # NaN → empty point
        out.update((int(g), rule["id"]) for g in gid[idx[hit]])
    return out


@pytest.mark.parametrize(
    ("seed", "dense_factor"),
    [(1, None), (2, None), (3, None), (5, 0), (6, 10**9)],  # 0: every key listed; 1e9: every key scanned
)
def test_engine_equals_naive_loop(
    seed: int, dense_factor: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dense_factor is not None:
        monkeypatch.setattr(engine_module, "_DENSE_FACTOR", dense_factor)
    occ, rules = make_case(seed)
    result = apply_rules(occ, rules)
    engine = set(
        zip(
            result.matches.column("gbifID").to_pylist(),
            result.matches.column("rule_id").to_pylist(),
            strict=True,
        )
    )
    expected = naive(occ, rules)
    assert len(expected) > 500  # the case is not trivially empty
    assert engine == expected
    assert result.matches.num_rows == len(engine)  # no duplicate pairs

    # Per-row columns agree with the match table, for every media row of an occurrence.
    by_id: dict[int, set[str]] = {}
    for g, r in expected:
        by_id.setdefault(g, set()).add(r)
    label_of = dict(zip(rules.column("id").to_pylist(), rules.column("label").to_pylist(), strict=True))
    for g, ids, labels, conflict in zip(
        occ.column("gbifID").to_pylist(),
        result.annotated.column("annotation_rule_ids").to_pylist(),
        result.annotated.column("annotation_labels").to_pylist(),
        result.annotated.column("annotation_conflict").to_pylist(),
        strict=True,
    ):
        want = by_id.get(g, set())
        assert ids == sorted(want)
        assert labels == sorted({label_of[r] for r in want})
        assert conflict == (len(labels) > 1)


def test_engine_equals_naive_loop_with_votes() -> None:
    occ, rules = make_case(4, n_occ=10_000, n_rules=80)
    result = apply_rules(occ, rules, min_support=1, exclude_contested=True)
    passing = rules.filter(
        pa.compute.and_(
            pa.compute.greater_equal(rules.column("supportCount"), 1),
            pa.compute.equal(rules.column("contestCount"), 0),
        )
    )
    engine = set(
        zip(
            result.matches.column("gbifID").to_pylist(),
            result.matches.column("rule_id").to_pylist(),
            strict=True,
        )
    )
    assert engine == naive(occ, passing)
    assert result.rules_applied == passing.num_rows
