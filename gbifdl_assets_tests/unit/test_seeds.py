"""Seed rules: valid tables that hit the right synthetic points, and the Distribution mapping."""

from __future__ import annotations

import csv
import math

import numpy as np
import pyarrow as pa
import pytest
import shapely

from gbifdl_assets.annotations import areas, seeds
from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA, count_vertices
from gbifdl_assets.annotations.engine import apply_rules

INSECTA, MAMMALIA = 216, 359


def offset(lat: float, lon: float, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    """A point ``north_m``/``east_m`` metres from (lat, lon) (small distances, spherical)."""
    r = 6_371_008.8
    return lat + math.degrees(north_m / r), lon + math.degrees(east_m / (r * math.cos(math.radians(lat))))


def hits(rules: pa.Table, points: list[tuple[float, float]], class_key: int | None = None) -> list[list[str]]:
    """Rule ids matching each (lat, lon)."""
    occ = pa.table(
        {
            "gbifID": pa.array(range(1, len(points) + 1), pa.int64()),
            "decimalLatitude": [p[0] for p in points],
            "decimalLongitude": [p[1] for p in points],
            "classKey": pa.array([class_key] * len(points), pa.int64()),
        }
    )
    return apply_rules(occ, rules).annotated.column("annotation_rule_ids").to_pylist()


def capital(iso2: str) -> tuple[float, float]:
    with (areas.DATA_DIR / "ne_50m_capitals.csv").open() as handle:
        row = next(r for r in csv.DictReader(handle) if r["iso_a2"] == iso2)
    return float(row["latitude"]), float(row["longitude"])


def test_zero_and_equal_coordinates() -> None:
    rules = pa.concat_tables([seeds.zero_coordinate_rules(), seeds.equal_coordinate_rules()])
    got = hits(
        rules,
        [
            (0, 0),
            (0.3, 0.3),
            (0.4, -0.1),
            (45, 0),
            (0, 20),
            (12.5, 12.5),
            (-33.3, 33.3),
            (10.0, 10.1),
            (0.6, 0.1),
        ],
    )
    assert got[0] == ["seed:equal-coords", "seed:zero-coords", "seed:zero-latitude", "seed:zero-longitude"]
    assert got[1] == ["seed:equal-coords", "seed:zero-coords"]
    assert got[2] == ["seed:zero-coords"]
    assert got[3] == ["seed:zero-longitude"]
    assert got[4] == ["seed:zero-latitude"]
    assert got[5] == ["seed:equal-coords"]
    assert got[6] == ["seed:equal-coords"]  # |lat| == |lon|
    assert got[7] == []
    assert got[8] == []  # 0.608 degrees from (0, 0)


def test_capitals_within_ten_kilometres() -> None:
    rules = seeds.capital_rules()
    lat, lon = capital("FR")
    got = hits(rules, [(lat, lon), offset(lat, lon, north_m=9_500), offset(lat, lon, east_m=10_600)])
    assert got == [["seed:capital:FR"], ["seed:capital:FR"], []]
    assert rules.num_rows >= 200
    assert set(rules.column("label").to_pylist()) == {"SUSPICIOUS"}


def test_centroids_within_one_kilometre() -> None:
    rules = seeds.centroid_rules()
    c = areas.country_geometry("DE").centroid
    got = hits(rules, [(c.y, c.x), offset(c.y, c.x, east_m=900), offset(c.y, c.x, north_m=1_150)])
    assert got == [["seed:centroid:DE"], ["seed:centroid:DE"], []]
    ids = set(rules.column("id").to_pylist())
    assert "seed:centroid:US:main" in ids  # the contiguous USA, far from the all-parts centroid


def test_institutions_are_managed() -> None:
    rules = seeds.institution_rules()
    assert set(rules.column("label").to_pylist()) == {"MANAGED"}
    kew = (51.4787, -0.2956)
    got = hits(rules, [kew, offset(*kew, north_m=800), offset(*kew, north_m=3_000)])
    assert got == [["seed:institution:royal-botanic-gardens-kew"]] * 2 + [[]]
    narrow = seeds.institution_rules(radius_m=100)
    assert hits(narrow, [offset(*kew, north_m=150)]) == [[]]


def test_gbif_headquarters() -> None:
    rules = seeds.gbif_headquarters_rule()
    hq = seeds.GBIF_HEADQUARTERS
    got = hits(rules, [hq, offset(*hq, east_m=450), offset(*hq, east_m=700)])
    assert got == [["seed:gbif-hq"], ["seed:gbif-hq"], []]


def test_sea_for_terrestrial_taxa() -> None:
    rules = seeds.sea_rules([INSECTA])
    assert set(rules.column("taxonKey").to_pylist()) == {INSECTA}
    at_sea, on_land, lake_district = (25.0, -35.0), (50.0, 10.0), (54.45, -3.1)
    got = hits(rules, [at_sea, on_land, lake_district, (-75.0, 100.0), (30.0, -30.0)], class_key=INSECTA)
    assert len(got[0]) == 1 and got[0][0].startswith(f"seed:sea:{INSECTA}:")
    assert got[1:4] == [[], [], []]  # Germany, England, Antarctica
    assert len(got[4]) == 4  # a tile corner touches four tiles: same label, four rule ids
    assert hits(rules, [at_sea], class_key=MAMMALIA) == [[]]  # whales are fine


def test_ocean_tiles_fit_the_vertex_limit_and_cover_the_sea() -> None:
    tiles = [shapely.from_wkt(w) for w in seeds.ocean_tiles()]
    assert all(count_vertices(w) <= 2500 for w in seeds.ocean_tiles())
    assert all(t.is_valid for t in tiles)
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, 3000), rng.uniform(-90, 90, 3000)
    in_sea = np.zeros(len(lon), bool)
    for tile in tiles:
        in_sea |= shapely.intersects_xy(tile, lon, lat)
    on_land = shapely.intersects_xy(areas.land_geometry(), lon, lat)
    assert np.all(in_sea | on_land)  # every point is on land or at sea
    assert np.count_nonzero(in_sea & on_land) <= 3  # only on coastlines (boundaries count for both)
    assert 0.6 < in_sea.mean() < 0.8


def test_geodesic_circle() -> None:
    circle = seeds.geodesic_circle(60.0, 25.0, 10_000, segments=64)
    for x, y in list(circle.exterior.coords)[:-1]:
        d = seeds._distance_m(shapely.Point(25.0, 60.0), shapely.Point(x, y))
        assert d == pytest.approx(10_000, rel=1e-6)
    split = seeds.geodesic_circle(-18.1, 179.99, 5_000)  # crosses the antimeridian
    assert split.geom_type == "MultiPolygon" and split.is_valid
    assert split.bounds[0] >= -180 and split.bounds[2] <= 180


def test_all_coordinate_cleaner_seeds() -> None:
    rules = seeds.coordinate_cleaner_rules()
    assert rules.schema == RULES_TABLE_SCHEMA
    ids = rules.column("id").to_pylist()
    assert len(ids) == len(set(ids)) and all(i.startswith("seed:") for i in ids)
    assert set(rules.column("source").to_pylist()) == {"seed"}
    assert set(rules.column("createdBy").to_pylist()) == {seeds.SEED_CREATOR}
    assert all(shapely.from_wkt(w).is_valid for w in rules.column("geometry").to_pylist())


# ----------------------------------------------------------------------------- distributions
@pytest.mark.parametrize(
    ("record", "label"),
    [
        ({"establishmentMeans": "native"}, "NATIVE"),
        ({"establishmentMeans": "nativeReintroduced"}, "NATIVE"),
        ({"establishmentMeans": "introduced"}, "INTRODUCED"),
        ({"establishmentMeans": "introducedAssistedColonisation"}, "INTRODUCED"),
        ({"establishmentMeans": "NATURALISED"}, "INTRODUCED"),
        ({"establishmentMeans": "INVASIVE"}, "INTRODUCED"),
        ({"establishmentMeans": "MANAGED"}, "MANAGED"),
        ({"establishmentMeans": "vagrant"}, "VAGRANT"),
        ({"degreeOfEstablishment": "cultivated"}, "MANAGED"),
        ({"degreeOfEstablishment": "captive", "establishmentMeans": "introduced"}, "MANAGED"),
        ({"degreeOfEstablishment": "released"}, "MANAGED"),
        ({"degreeOfEstablishment": "casual"}, "INTRODUCED"),
        ({"degreeOfEstablishment": "widespreadInvasive"}, "INTRODUCED"),
        ({"degreeOfEstablishment": "native"}, "NATIVE"),
        ({"occurrenceStatus": "absent", "establishmentMeans": "native"}, "SUSPICIOUS"),
        ({"status": "EXCLUDED"}, "SUSPICIOUS"),
        ({"occurrenceStatus": "doubtful"}, "SUSPICIOUS"),
        ({"occurrenceStatus": "absent", "threatStatus": "EX"}, "FORMER"),
        ({"threatStatus": "REGIONALLY_EXTINCT", "establishmentMeans": "native"}, "FORMER"),
        ({"establishmentMeans": "uncertain"}, None),
        ({"occurrenceStatus": "present"}, None),
        ({"occurrenceStatus": "common"}, None),
    ],
)
def test_distribution_labels(record: dict, label: str | None) -> None:
    assert seeds.distribution_label(record)[0] == label


def test_distribution_to_rules_areas_and_skips() -> None:
    records = [
        {"taxonKey": 5219404, "countryCode": "FR", "establishmentMeans": "introduced", "source": "GRIIS"},
        {"taxonKey": 5219404, "country": "GREENLAND", "occurrenceStatus": "absent"},  # species API
        {
            "taxonKey": 5219404,
            "locationID": "TDWG:AGS-TF; ISO:AR; WOEID:564721",
            "establishmentMeans": "native",
        },
        {"taxonKey": 5219404, "locality": "Kenya", "establishmentMeans": "native"},
        {"taxonKey": 5219404, "locationID": "TDWG:AGS-TF", "establishmentMeans": "native"},
        {"taxonKey": 5219404, "countryCode": "FR", "occurrenceStatus": "present"},
        {"taxonKey": None, "countryCode": "FR", "establishmentMeans": "native"},
        {"taxonKey": 5219404, "countryCode": "FR", "establishmentMeans": "invasive"},  # same rule again
        {"taxonKey": 5219404, "countryCode": "Narnia", "establishmentMeans": "native"},
    ]
    skipped: list[tuple[int, str]] = []
    rules = seeds.distribution_to_rules(records, skipped=skipped)
    assert rules.column("id").to_pylist() == [
        "seed:distribution:5219404:FR:INTRODUCED",
        "seed:distribution:5219404:GL:SUSPICIOUS",
        "seed:distribution:5219404:AR:NATIVE",
        "seed:distribution:5219404:KE:NATIVE",
    ]
    assert "GRIIS" in rules.column("description")[0].as_py()
    reasons = dict(skipped)
    assert set(reasons) == {4, 5, 6, 8}
    assert "TDWG" in reasons[4]
    assert "says nothing about origin" in reasons[5]
    assert "taxonKey" in reasons[6]
    assert "unknown country" in reasons[8]
    # The rules work: a record of the species in Paris is INTRODUCED, one of another species is not.
    occ = pa.table(
        {
            "gbifID": pa.array([1, 2], pa.int64()),
            "decimalLatitude": [48.86, 48.86],
            "decimalLongitude": [2.35, 2.35],
            "speciesKey": pa.array([5219404, 1], pa.int64()),
        }
    )
    labels = apply_rules(occ, rules).annotated.column("annotation_labels").to_pylist()
    assert labels == [["INTRODUCED"], []]
