"""The rule preview's core: the same matches as the engine, counts by dataset and basisOfRecord, samples,
the bounding-box prefilter, the column cache, and one clear message per bad input."""

from __future__ import annotations

import pytest
import shapely

from gbifdl_assets.annotations.preview import (
    PreviewError,
    SnapshotCache,
    load_snapshot,
    parse_preview_request,
    preview_rule,
)
from gbifdl_assets.occurrences.snapshots import latest_snapshots
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.harness.snapshots import rows_table, write_committed_snapshot

DS_A, DS_B = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
BOX = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"


def _row(gid, lon, lat, *, family=500, bor="HUMAN_OBSERVATION", ds=DS_A, year=2000, **extra):
    return {"gbifID": gid, "decimalLongitude": lon, "decimalLatitude": lat, "familyKey": family,
            "speciesKey": family * 10, "basisOfRecord": bor, "datasetKey": ds, "year": year,
            "datasetTitle": {DS_A: "Alpha", DS_B: "Beta"}[ds], "species": f"species {family}", **extra}  # fmt: skip


@pytest.fixture
def storage(tmp_path):
    storage = LocalStorage(tmp_path)
    rows = [
        _row(1, 5, 5), _row(1, 5, 5, media_index=1),  # one occurrence, two images
        _row(2, 10, 10),  # on the corner: inside (boundary points count)
        _row(3, 2, 8, bor="PRESERVED_SPECIMEN", ds=DS_B),
        _row(4, 3, 3, family=600, year=None),
        _row(5, 50, 5),  # outside
        _row(6, None, None),  # no coordinates: never flagged
        _row(7, 5, 50),  # in the longitude band, not the latitude one
    ]  # fmt: skip
    write_committed_snapshot(storage, "cats", rows_table(rows))
    write_committed_snapshot(storage, "dogs", rows_table([_row(10, 1, 1, ds=DS_B)]))
    return storage


def preview(storage, **body):
    request = parse_preview_request({"geometry": BOX, **body})
    cache = SnapshotCache()
    return preview_rule(
        request, [cache.get(storage, i) for i in latest_snapshots(storage, request.training_sets)]
    )


def test_counts_by_dataset_and_basis_of_record_per_training_set(storage):
    answer = preview(storage)
    assert answer["flagged"] == {"occurrences": 5, "images": 6}
    cats, dogs = answer["trainingSets"]
    assert (cats["trainingSet"], cats["flagged"], cats["rows"]) == (
        "cats",
        {"occurrences": 4, "images": 5},
        8,
    )
    assert cats["rowsInBoundingBox"] == 5  # the prefilter dropped the rows outside the box
    assert cats["byDataset"] == [
        {"datasetKey": DS_A, "datasetTitle": "Alpha", "occurrences": 3, "images": 4},
        {"datasetKey": DS_B, "datasetTitle": "Beta", "occurrences": 1, "images": 1},
    ]
    assert answer["byDataset"][0] == {
        "datasetKey": DS_A,
        "datasetTitle": "Alpha",
        "occurrences": 3,
        "images": 4,
    }
    assert answer["byDataset"][1]["occurrences"] == 2  # Beta in both training sets
    assert cats["byBasisOfRecord"] == [
        {"basisOfRecord": "HUMAN_OBSERVATION", "occurrences": 3, "images": 4},
        {"basisOfRecord": "PRESERVED_SPECIMEN", "occurrences": 1, "images": 1},
    ]
    assert dogs["flagged"] == {"occurrences": 1, "images": 1}


def test_filters_read_as_the_engine_reads_them(storage):
    def flagged(**body):
        return preview(storage, trainingSets=["cats"], **body)["flagged"]["occurrences"]

    assert flagged(taxonKey=500) == 3  # a family key matches its species' records
    assert flagged(taxonKey=6000) == 1  # a species key
    assert flagged(basisOfRecord=["PRESERVED_SPECIMEN"]) == 1
    assert flagged(basisOfRecord=["PreservedSpecimen"], basisOfRecordNegated=True) == 3
    assert flagged(yearRange="1990,2010") == 3  # the record without a year does not match
    assert flagged(datasetKey=DS_B.upper()) == 1
    assert (
        flagged(geometry="MULTIPOLYGON (((4 4, 6 4, 6 6, 4 6, 4 4)), ((9 9, 11 9, 11 11, 9 11, 9 9)))") == 2
    )


def test_samples_are_spread_over_flagged_occurrences_with_their_image_urls(storage):
    answer = preview(storage, samples=3)
    assert len(answer["samples"]) == 3
    assert {s["trainingSet"] for s in answer["samples"]} == {"cats", "dogs"}  # round robin
    first = next(s for s in answer["samples"] if s["gbifID"] == 1)
    assert first["identifier"] == "https://images.example.org/1.jpg" and first["datasetTitle"] == "Alpha"
    assert preview(storage, samples=0)["samples"] == []


def test_the_cache_loads_a_snapshot_once_and_drops_the_least_recently_used(storage):
    infos = latest_snapshots(storage)
    cache = SnapshotCache()
    assert cache.get(storage, infos[0]) is cache.get(storage, infos[0]) and cache.loads == 1
    one = load_snapshot(storage, infos[0]).nbytes
    small = SnapshotCache(max_bytes=one + 10)
    small.get(storage, infos[0])
    small.get(storage, infos[1])
    small.get(storage, infos[0])
    assert small.loads == 3  # the first was dropped for the second


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "geometry is missing"),
        ({"geometry": "POINT (1 2)"}, "geometry is a POINT"),
        ({"geometry": "CURVEPOLYGON (CIRCULARSTRING (0 0, 1 1, 2 0, 1 -1, 0 0))"}, "curved geometry"),
        ({"geometry": shapely.to_wkt(shapely.Point(5, 5).buffer(4, quad_segs=800))}, "vertices"),
        ({"geometry": BOX, "taxonKey": 0}, "taxonKey"),
        ({"geometry": BOX, "yearRange": "2000,1900"}, "starts after it ends"),
        ({"geometry": BOX, "basisOfRecord": ["ZOO"]}, "unknown basisOfRecord"),
        ({"geometry": BOX, "trainingSets": "cats"}, "trainingSets must be a list"),
        ({"geometry": BOX, "trainingSets": ["../etc"]}, "training set name"),
        ({"geometry": BOX, "samples": 1000}, "samples must be"),
        ({"geometry": BOX, "colour": "red"}, "unknown field(s) colour"),
    ],
)
def test_bad_input_gets_one_message_naming_the_field(body, message):
    with pytest.raises(PreviewError) as caught:
        parse_preview_request(body)
    assert message in str(caught.value)
