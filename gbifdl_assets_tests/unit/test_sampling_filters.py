"""Filters from the spec: record filters, exclusions, licences, annotation policy, duplicates."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gbifdl_assets.gbif.media_schema import conform
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.filters import apply_filters, media_licenses
from gbifdl_assets.specs import parse_spec

PUB_A = "11111111-1111-4111-8111-111111111111"
PUB_B = "22222222-2222-4222-8222-222222222222"
DS_A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
DS_B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


def row(gbif_id: int, **fields: Any) -> dict[str, Any]:
    base = {
        "gbifID": gbif_id,
        "speciesKey": 100,
        "species": "Vanessa atalanta",
        "identifier": f"https://img.example/{gbif_id}/0.jpg",
        "media_index": 0,
        "media_license": "CC-BY-4.0",
        "media_license_raw": "http://creativecommons.org/licenses/by/4.0/",
        "publishingOrgKey": PUB_A,
        "datasetKey": DS_A,
        "basisOfRecord": "HUMAN_OBSERVATION",
        "occurrenceStatus": "PRESENT",
        "countryCode": "DE",
        "year": 2020,
        "eventDate": "2020-06-01",
        "decimalLatitude": 52.5,
        "decimalLongitude": 13.4,
        "coordinateUncertaintyInMeters": 10.0,
        "issues": [],
        "recordedBy": "Jane Doe",
    }
    base.update(fields)
    return base


def snapshot(rows: list[dict[str, Any]], annotations: list[list[str]] | None = None) -> pa.Table:
    table = conform(pa.Table.from_pylist(rows))
    if annotations is not None:
        labels = pa.array(annotations, pa.list_(pa.string()))
        table = table.append_column("annotation_labels", labels)
        table = table.append_column("annotation_conflict", pc.greater(pc.list_value_length(labels), 1))
    return table


def spec(**fields: Any):
    return parse_spec({"name": "t", "taxa": ["Vanessa"], **fields})


def kept_ids(result) -> list[int]:
    return sorted(result.table.column("gbifID").to_pylist())


def test_record_filters_each_drop_their_rows() -> None:
    rows = [
        row(1),
        row(2, basisOfRecord="PRESERVED_SPECIMEN"),
        row(3, occurrenceStatus="ABSENT"),
        row(4, coordinateUncertaintyInMeters=5000.0),
        row(5, coordinateUncertaintyInMeters=None),  # a range never matches a missing value
        row(6, year=1999),
        row(7, countryCode="FR"),
        row(8, publishingOrgKey=PUB_B),
        row(9, datasetKey=DS_B),
    ]
    s = spec(
        occurrence_filters={
            "basisOfRecord": "HUMAN_OBSERVATION",
            "occurrenceStatus": "PRESENT",
            "coordinateUncertaintyInMeters": "0,1000",
            "year": "2000,*",
            "country": ["DE", "NL"],
            "publishingOrg": PUB_A,
            "datasetKey": DS_A,
        }
    )
    result = apply_filters(snapshot(rows), s)
    assert kept_ids(result) == [1]
    d = result.dropped
    assert d["filter:basisOfRecord"] == 1
    assert d["filter:occurrenceStatus"] == 1
    assert d["filter:coordinateUncertaintyInMeters"] == 2
    assert d["filter:year"] == 1
    assert d["filter:country"] == 1
    assert d["filter:publishingOrg"] == 1
    assert d["filter:datasetKey"] == 1
    assert "filter:mediaType" in result.not_applied  # applied at the source
    assert sum(d.values()) + result.table.num_rows == len(rows)


def test_each_row_is_counted_once_under_the_first_reason() -> None:
    rows = [row(1, basisOfRecord="PRESERVED_SPECIMEN", media_license="ALL-RIGHTS-RESERVED", speciesKey=None)]
    result = apply_filters(snapshot(rows), spec(occurrence_filters={"basisOfRecord": "HUMAN_OBSERVATION"}))
    assert result.dropped["label_missing"] == 1
    assert result.dropped["filter:basisOfRecord"] == 0
    assert result.dropped["license"] == 0
    rows = [row(1, basisOfRecord="PRESERVED_SPECIMEN", media_license="ALL-RIGHTS-RESERVED")]
    result = apply_filters(snapshot(rows), spec(occurrence_filters={"basisOfRecord": "HUMAN_OBSERVATION"}))
    assert result.dropped["filter:basisOfRecord"] == 1
    assert result.dropped["license"] == 0


def test_exclude_filters_and_issue_flags() -> None:
    rows = [
        row(1),
        row(2, issues=["ZERO_COORDINATE"]),
        row(3, issues=["COORDINATE_ROUNDED"]),
        row(4, issues=["COORDINATE_ROUNDED", "COUNTRY_COORDINATE_MISMATCH"]),
        row(5, publishingOrgKey=PUB_B),
        row(6, publishingOrgKey=None),  # null never matches an exclusion: kept
        row(7, datasetKey=DS_B),
    ]
    s = spec(
        exclude_filters={
            "issue": ["ZERO_COORDINATE", "COUNTRY_COORDINATE_MISMATCH"],
            "publishingOrg": PUB_B,
            "datasetKey": DS_B,
        }
    )
    result = apply_filters(snapshot(rows), s)
    assert kept_ids(result) == [1, 3, 6]
    assert result.dropped["exclude:issue"] == 2
    assert result.dropped["exclude:publishingOrg"] == 1
    assert result.dropped["exclude:datasetKey"] == 1


def test_geospatial_coordinate_date_and_geometry_filters() -> None:
    rows = [
        row(1),
        row(2, issues=["COORDINATE_INVALID"]),
        row(3, decimalLatitude=None, decimalLongitude=None),
        row(4, eventDate="2019-12-31"),
        row(5, eventDate="2021-03-01/2021-03-05"),  # an interval counts by its start
        row(6, decimalLatitude=10.0, decimalLongitude=10.0),  # outside the polygon
    ]
    s = spec(
        occurrence_filters={
            "hasGeospatialIssue": False,
            "hasCoordinate": True,
            "eventDate": "2020,2021-06",
            "geometry": "POLYGON((0 40, 30 40, 30 60, 0 60, 0 40))",
        }
    )
    result = apply_filters(snapshot(rows), s)
    assert kept_ids(result) == [1, 5]
    # parameters apply in the spec's sorted order: eventDate, geometry, hasCoordinate, ...; the row
    # without coordinates fails geometry first and is counted there only
    assert list(result.dropped)[2:6] == [
        "filter:eventDate",
        "filter:geometry",
        "filter:hasCoordinate",
        "filter:hasGeospatialIssue",
    ]
    assert result.dropped["filter:eventDate"] == 1
    assert result.dropped["filter:geometry"] == 2
    assert result.dropped["filter:hasCoordinate"] == 0
    assert result.dropped["filter:hasGeospatialIssue"] == 1
    only_coordinates = apply_filters(snapshot(rows), spec(occurrence_filters={"hasCoordinate": True}))
    assert only_coordinates.dropped["filter:hasCoordinate"] == 1


def test_free_text_filters_ignore_case_and_unknown_columns_are_reported() -> None:
    rows = [row(1, recordedBy="jane DOE"), row(2, recordedBy="John Roe")]
    s = spec(occurrence_filters={"recordedBy": "Jane Doe", "gadmGid": "DEU"})
    result = apply_filters(snapshot(rows), s)
    assert kept_ids(result) == [1]
    assert "filter:gadmGid" in result.not_applied
    assert any("gadmGid" in note for note in result.notes)


@pytest.mark.parametrize(
    ("licences", "expected"),
    [
        (None, [1, 2, 3]),  # default: CC0, PDM, CC-BY, CC-BY-SA
        (["CC0"], [1]),
        (["CC-BY", "CC-BY-NC", "UNKNOWN"], [2, 4, 6]),
        (["CC0", "ALL-RIGHTS-RESERVED"], [1, 5]),
    ],
)
def test_licence_allowlist(licences: list[str] | None, expected: list[int]) -> None:
    rows = [
        row(1, media_license=None, media_license_raw="http://creativecommons.org/publicdomain/zero/1.0/"),
        row(2, media_license="CC-BY-4.0"),
        row(3, media_license="CC-BY-SA-3.0"),
        row(4, media_license="CC-BY-NC-4.0"),
        row(5, media_license="ALL-RIGHTS-RESERVED"),
        row(6, media_license=None, media_license_raw=None),  # no licence at all: UNKNOWN
    ]
    # row 1 arrives un-normalised: normalise media_license from the raw value as the snapshot does
    table = snapshot(rows)
    table = table.set_column(
        table.column_names.index("media_license"),
        "media_license",
        pc.coalesce(table.column("media_license"), table.column("media_license_raw")),
    )
    result = apply_filters(table, spec(**({"licenses": licences} if licences else {})))
    assert kept_ids(result) == expected
    assert result.dropped["license"] == 6 - len(expected)
    # the filtered table carries the normalised id; the raw value stays next to it
    ids = dict(
        zip(
            result.table.column("gbifID").to_pylist(),
            result.table.column("media_license").to_pylist(),
            strict=True,
        )
    )
    if 1 in ids:
        assert ids[1] == "CC0-1.0"


def test_media_license_normalised_from_raw_when_missing() -> None:
    table = snapshot([row(1)]).drop_columns(["media_license"])
    assert media_licenses(table).to_pylist() == ["CC-BY-4.0"]
    with pytest.raises(SamplingError, match="media_license"):
        media_licenses(table.drop_columns(["media_license_raw"]))


ANNOTATIONS = [
    [],  # 1
    ["NATIVE"],  # 2
    ["SUSPICIOUS"],  # 3
    ["NATIVE", "SUSPICIOUS"],  # 4: conflict, one drop label
    ["INTRODUCED", "NATIVE"],  # 5: conflict, no drop label
    ["MANAGED", "SUSPICIOUS"],  # 6: conflict, all drop labels
]


@pytest.mark.parametrize(
    ("mode", "kept", "by_label", "by_conflict"),
    [
        ("exclude_any", [1, 2, 5], 3, 0),
        ("keep_conflicting", [1, 2, 4, 5], 2, 0),
        ("exclude_all", [1, 2], 3, 1),
    ],
)
def test_annotation_conflict_modes(mode: str, kept: list[int], by_label: int, by_conflict: int) -> None:
    rows = [row(i + 1) for i in range(len(ANNOTATIONS))]
    s = spec(annotations={"drop_labels": ["SUSPICIOUS", "MANAGED", "FORMER"], "conflicts": mode})
    result = apply_filters(snapshot(rows, ANNOTATIONS), s)
    assert kept_ids(result) == kept
    assert result.dropped["annotation_drop_label"] == by_label
    assert result.dropped.get("annotation_conflict", 0) == by_conflict


def test_annotation_filter_skipped_without_columns_or_when_ignored() -> None:
    rows = [row(1), row(2)]
    result = apply_filters(snapshot(rows), spec())
    assert kept_ids(result) == [1, 2]
    assert "annotation_drop_label" not in result.dropped
    assert any("annotation filter skipped" in n for n in result.notes)
    result = apply_filters(snapshot(rows, [["SUSPICIOUS"], []]), spec(annotations={"rulesets": []}))
    assert kept_ids(result) == [1, 2]
    assert any("ignored" in n for n in result.notes)


def test_drop_labels_are_configurable() -> None:
    rows = [row(1), row(2)]
    s = spec(annotations={"drop_labels": ["INTRODUCED"]})
    result = apply_filters(snapshot(rows, [["SUSPICIOUS"], ["INTRODUCED"]]), s)
    assert kept_ids(result) == [1]


def test_duplicate_urls_keep_the_first_surviving_copy() -> None:
    url = "https://img.example/shared.jpg"
    rows = [
        row(5, identifier=url),
        row(3, identifier=url, media_index=1),
        row(4, identifier=url, media_index=0, media_license="ALL-RIGHTS-RESERVED"),  # dropped earlier
        row(3, identifier=url, media_index=2),
        row(9),
    ]
    result = apply_filters(snapshot(rows), spec())
    table = result.table
    assert sorted(
        zip(table.column("gbifID").to_pylist(), table.column("media_index").to_pylist(), strict=True)
    ) == [
        (3, 1),
        (9, 0),
    ]
    assert result.dropped["duplicate_url"] == 2
    assert result.dropped["license"] == 1
    # row order does not matter
    result = apply_filters(snapshot(rows[::-1]), spec())
    assert sorted(result.table.column("gbifID").to_pylist()) == [3, 9]


def test_missing_label_and_url() -> None:
    rows = [row(1, speciesKey=None), row(2, identifier=""), row(3)]
    result = apply_filters(snapshot(rows), spec())
    assert kept_ids(result) == [3]
    assert result.dropped["label_missing"] == 1
    assert result.dropped["url_missing"] == 1


def test_label_rank_selects_the_key_column() -> None:
    rows = [row(1, genusKey=7, speciesKey=None), row(2, genusKey=None)]
    result = apply_filters(snapshot(rows), spec(balancing={"label_rank": "GENUS"}))
    assert kept_ids(result) == [1]


def test_missing_required_columns_name_the_column() -> None:
    table = snapshot([row(1)]).drop_columns(["speciesKey"])
    with pytest.raises(SamplingError, match="speciesKey"):
        apply_filters(table, spec())


def test_dictionary_columns_filter_like_plain_ones() -> None:
    rows = [row(1), row(2, basisOfRecord="PRESERVED_SPECIMEN"), row(3, publishingOrgKey=PUB_B)]
    table = snapshot(rows)
    for name in ("basisOfRecord", "publishingOrgKey", "media_license", "identifier"):
        i = table.column_names.index(name)
        table = table.set_column(i, name, pc.dictionary_encode(table.column(name)))
    s = spec(
        occurrence_filters={"basisOfRecord": "HUMAN_OBSERVATION"}, exclude_filters={"publishingOrg": PUB_B}
    )
    assert kept_ids(apply_filters(table, s)) == [1]
