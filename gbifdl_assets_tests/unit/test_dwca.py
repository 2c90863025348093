"""The DwC-A reader on every real archive in the shared fixtures, and on small built ones."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.gbif.dwca import (
    OCCURRENCE_SCHEMA,
    DwcaError,
    convert_to_snapshot,
    license_enum_names,
    open_archive,
    parse_meta_xml,
    to_float,
    to_int,
    to_issue_lists,
)
from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA
from gbifdl_assets_tests.unit.test_dwca_builder import build_dwca, image, occurrence

RGBIF_DWCA = "rgbif_0000066-140928181241064_DWCA.zip"
FINCH = "finch_0000154-150116162929234_DWCA.zip"
SIMPLE_2020 = "gbif-occurrence_0011066-200127171203522_SIMPLE_CSV.zip"
SIMPLE_2025 = "rgbif_0009886-250127130748423_SIMPLE_CSV.zip"
PORTAL_2013 = "dwca-reader_gbif-results.zip"
GENERIC_SIMPLE = "dwca-reader_dwca-simple-test-archive.zip"
GENERIC_STAR = "dwca-reader_dwca-star-test-archive.zip"


@pytest.fixture(scope="module")
def archives(fixtures_dir: Path) -> Path:
    return fixtures_dir / "archives"


def test_every_fixture_archive_is_covered(archives: Path) -> None:
    known = {RGBIF_DWCA, FINCH, SIMPLE_2020, SIMPLE_2025, PORTAL_2013, GENERIC_SIMPLE, GENERIC_STAR}
    assert {p.name for p in archives.glob("*.zip")} == known


# ---------------------------------------------------------------------------------------- real
def test_rgbif_2014_dwca_exact_counts(archives: Path, tmp_path: Path) -> None:
    report = convert_to_snapshot(archives / RGBIF_DWCA, tmp_path / "s.parquet")
    assert report.kind == "DWCA"
    assert report.occurrences == 470
    assert report.media_rows == 215
    assert report.media == 210
    assert report.skipped_counts() == {
        "no_url": 5,
        "not_image": 0,
        "orphan": 0,
        "bad_row": 0,
        "bad_id": 0,
        "duplicate": 0,
    }
    assert report.occurrences_with_media + report.occurrences_without_media == 470
    assert report.metadata.download_key == "0000066-140928181241064"
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.schema.equals(SNAPSHOT_SCHEMA)
    assert table.num_rows == 210
    assert table.column("identifier").null_count == 0
    assert all(u.startswith("http") for u in table.column("identifier").to_pylist())
    assert len(set(table.column("gbifID").to_pylist())) == report.occurrences_with_media
    assert report.species == len(set(table.column("speciesKey").drop_null().to_pylist()))


def test_rgbif_2014_values_are_typed_and_joined_by_term(archives: Path, tmp_path: Path) -> None:
    convert_to_snapshot(archives / RGBIF_DWCA, tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    rows = {(r["gbifID"], r["media_index"]): r for r in table.to_pylist()}
    row = rows[(657590544, 0)]
    # multimedia.txt of 2014 has "created creator contributor publisher" before "audience source":
    # values must come from meta.xml's terms, not positions
    assert row["identifier"] == (
        "http://biimages.biodiversity.ku.edu/static/Entomology/originals/sp65796921642024007584.att.JPG"
    )
    assert row["format"] == "image/jpeg"
    assert isinstance(row["kingdomKey"], int) and isinstance(row["taxonKey"], int)
    assert isinstance(row["issues"], list)
    # media licences here are empty, "All Rights Reserved" or "(c) The Board of Trustees ...":
    # normalised to UNKNOWN / ALL-RIGHTS-RESERVED, the raw text kept next to it
    pairs = set(
        zip(
            table.column("media_license_raw").to_pylist(),
            table.column("media_license").to_pylist(),
            strict=True,
        )
    )
    assert {lic for _, lic in pairs} == {"UNKNOWN", "ALL-RIGHTS-RESERVED"}
    assert (None, "UNKNOWN") in pairs and ("All Rights Reserved", "ALL-RIGHTS-RESERVED") in pairs
    assert table.column("media_license").null_count == 0


def test_finch_2015_dwca(archives: Path, tmp_path: Path) -> None:
    report = convert_to_snapshot(archives / FINCH, tmp_path / "s.parquet")
    assert (report.occurrences, report.media_rows, report.media) == (443, 1, 1)
    row = pq.read_table(tmp_path / "s.parquet").to_pylist()[0]
    assert row["gbifID"] == 1019692255
    assert row["identifier"] == "http://mediaphoto.mnhn.fr/media/14032589661434cmJmKscFTnTeiqv"
    assert row["creator"] == "Caballer M." and row["media_index"] == 0


@pytest.mark.parametrize(("name", "rows"), [(SIMPLE_2020, 4463), (SIMPLE_2025, 91)])
def test_simple_csv_reads_as_occurrences_but_cannot_give_images(
    archives: Path, tmp_path: Path, name: str, rows: int
) -> None:
    archive = open_archive(archives / name)
    assert archive.kind == "SIMPLE_CSV" and archive.multimedia is None
    tables = list(archive.iter_occurrences())
    assert sum(t.num_rows for t in tables) == rows
    assert all(t.schema.equals(OCCURRENCE_SCHEMA) for t in tables)
    table = pa.concat_tables(tables)
    assert table.column("gbifID").null_count == 0
    assert pc.count_distinct(table.column("gbifID")).as_py() == rows
    assert table.column("speciesKey").null_count < rows  # typed from the header names
    assert archive.metadata.download_key in name
    with pytest.raises(DwcaError) as err:
        convert_to_snapshot(archives / name, tmp_path / "s.parquet")
    assert str(err.value) == (
        f"archive {name} is SIMPLE_CSV and has no media URLs; request a DWCA download (source.format: DWCA)"
    )
    assert not (tmp_path / "s.parquet").exists() and not list(tmp_path.iterdir())


def test_simple_csv_2025_still_image_rows_have_no_urls(archives: Path) -> None:
    """14 rows say StillImage (mediaType) but a SIMPLE_CSV never carries the URLs."""
    archive = open_archive(archives / SIMPLE_2025)
    names = archive.column_names(archive.core, archive.core.location)
    assert "mediaType" in names and "identifier" not in names


def test_headerless_2013_portal_archive(archives: Path, tmp_path: Path) -> None:
    archive = open_archive(archives / PORTAL_2013)
    assert archive.core.header_lines == 0
    assert {name for name, _ in archive.ignored_members} >= {"__MACOSX/._citations.txt"}
    table = pa.concat_tables(archive.iter_occurrences())
    assert table.num_rows == 158  # no header line: the first line is a record
    first = table.slice(0, 1).to_pylist()[0]
    assert first["gbifID"] == 607759330  # the <id> column (no gbifID term in 2013)
    assert first["kingdomKey"] == 1 and first["speciesKey"] == 5213564  # gbif:kingdomID ... speciesID
    assert first["year"] == 1930 and first["month"] == 4 and first["countryCode"] is None
    assert (first["basisOfRecord"], first["institutionCode"]) == ("PRESERVED_SPECIMEN", "CAS")
    with pytest.raises(DwcaError, match=r"dwca-reader_gbif-results.zip has no multimedia extension"):
        convert_to_snapshot(archives / PORTAL_2013, tmp_path / "s.parquet")


def test_generic_occurrence_archive_without_gbif_ids(archives: Path, tmp_path: Path) -> None:
    archive = open_archive(archives / GENERIC_SIMPLE)
    assert sum(t.num_rows for t in archive.iter_occurrences()) == 0
    assert archive.bad_ids == 2  # the id column is empty: not GBIF keys
    with pytest.raises(DwcaError, match="has no multimedia extension"):
        convert_to_snapshot(archives / GENERIC_SIMPLE, tmp_path / "s.parquet")


def test_taxon_core_is_refused(archives: Path, tmp_path: Path) -> None:
    archive = open_archive(archives / GENERIC_STAR)
    assert archive.core.row_type_name == "Taxon"
    with pytest.raises(DwcaError, match="core is Taxon, not Occurrence"):
        list(archive.iter_occurrences())
    with pytest.raises(DwcaError, match=re.escape(f"archive {GENERIC_STAR}: core is Taxon, not Occurrence")):
        convert_to_snapshot(archives / GENERIC_STAR, tmp_path / "s.parquet")


def test_partitioned_join_gives_the_same_rows(archives: Path, tmp_path: Path) -> None:
    """A tiny memory budget forces the hash-partitioned (spill to disk) join."""
    one = convert_to_snapshot(archives / RGBIF_DWCA, tmp_path / "a.parquet")
    many = convert_to_snapshot(archives / RGBIF_DWCA, tmp_path / "b.parquet", media_memory_budget=2_000)
    assert one.buckets == 1 and many.buckets > 10
    assert one.skipped_counts() == many.skipped_counts() and one.species == many.species
    keys = [("gbifID", "ascending"), ("media_index", "ascending")]
    a = pq.read_table(tmp_path / "a.parquet").sort_by(keys)
    b = pq.read_table(tmp_path / "b.parquet").sort_by(keys)
    assert a.equals(b)


# ---------------------------------------------------------------------------------------- built
def test_media_join_numbering_whitespace_and_orphans(tmp_path: Path) -> None:
    occurrences = [occurrence(10), occurrence(11), occurrence(12)]
    media = [
        image(10, 0),
        image(10, 1, type="Sound", format="audio/mpeg"),  # skipped, but keeps its position
        image(10, 2),
        image(" 11 ", 0),  # stray whitespace around the id (seen in real archives)
        image(11, 1, identifier=""),  # no URL
        image(11, 2, type="", format="image/png"),  # no type, image format: kept
        image(11, 3, type="", format="text/html"),  # no type, not an image
        image(99, 0),  # no such occurrence
    ]
    path = build_dwca(tmp_path / "a.zip", occurrences, media)
    report = convert_to_snapshot(path, tmp_path / "s.parquet")
    assert report.skipped_counts() == {
        "no_url": 1,
        "not_image": 2,
        "orphan": 1,
        "bad_row": 0,
        "bad_id": 0,
        "duplicate": 0,
    }
    assert (report.occurrences, report.occurrences_with_media, report.media) == (3, 2, 4)
    table = pq.read_table(tmp_path / "s.parquet").sort_by(
        [("gbifID", "ascending"), ("media_index", "ascending")]
    )
    assert list(
        zip(table.column("gbifID").to_pylist(), table.column("media_index").to_pylist(), strict=True)
    ) == [
        (10, 0),
        (10, 2),
        (11, 0),
        (11, 2),
    ]
    row = table.to_pylist()[0]
    assert row["coordinateUncertaintyInMeters"] == 28417.0 and row["year"] == 2020 and row["month"] == 7
    assert row["issues"] == ["COORDINATE_ROUNDED", "CONTINENT_DERIVED_FROM_COORDINATES"]
    assert row["license"] == "CC_BY_4_0"
    assert row["media_license"] == "CC-BY-NC-4.0"
    assert row["media_license_raw"] == "http://creativecommons.org/licenses/by-nc/4.0/"


def test_columns_are_found_by_term_not_position(tmp_path: Path) -> None:
    from gbifdl_assets_tests.unit.test_dwca_builder import MM_COLUMNS, OCC_COLUMNS

    path = build_dwca(
        tmp_path / "a.zip",
        [occurrence(5)],
        [image(5, 0)],
        occ_columns=tuple(reversed(OCC_COLUMNS)),
        mm_columns=(MM_COLUMNS[0], *reversed(MM_COLUMNS[1:])),
    )
    convert_to_snapshot(path, tmp_path / "s.parquet")
    row = pq.read_table(tmp_path / "s.parquet").to_pylist()[0]
    assert row["gbifID"] == 5 and row["identifier"] == "https://images.example.org/5/0.jpg"
    assert row["scientificName"] == "Panthera leo (Linnaeus, 1758)" and row["countryCode"] == "KE"


def test_occurrence_without_media_and_empty_multimedia(tmp_path: Path) -> None:
    path = build_dwca(tmp_path / "a.zip", [occurrence(1), occurrence(2)], [])
    report = convert_to_snapshot(path, tmp_path / "s.parquet")
    assert (report.occurrences, report.occurrences_without_media, report.media) == (2, 2, 0)
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.num_rows == 0 and table.schema.equals(SNAPSHOT_SCHEMA)


def test_meta_xml_defaults_and_constant_fields(tmp_path: Path) -> None:
    from gbifdl_assets_tests.unit.test_dwca_builder import MM_COLUMNS, OCC_COLUMNS, meta_xml

    meta = meta_xml(OCC_COLUMNS, MM_COLUMNS).replace(
        "</core>",
        '    <field term="http://rs.gbif.org/terms/1.0/publishingOrgKey" default="org-1"/>\n  </core>',
    )
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)], meta=meta)
    convert_to_snapshot(path, tmp_path / "s.parquet")
    assert pq.read_table(tmp_path / "s.parquet").column("publishingOrgKey").to_pylist() == ["org-1"]


def test_parse_meta_xml_reads_attributes() -> None:
    core, extensions, metadata = parse_meta_xml(
        b'<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml"><core encoding="ISO-8859-1" '
        b'fieldsTerminatedBy="," fieldsEnclosedBy="&quot;" ignoreHeaderLines="2" '
        b'rowType="http://rs.tdwg.org/dwc/terms/Occurrence"><files><location>a.csv</location></files>'
        b'<id index="3"/><field index="0" term="http://rs.tdwg.org/dwc/terms/year"/></core></archive>',
        "x.zip",
    )
    assert (core.delimiter, core.quote_char, core.header_lines, core.id_index) == (",", '"', 2, 3)
    assert core.encoding == "ISO-8859-1" and core.fields[0].name == "year"
    assert extensions == [] and metadata == "eml.xml"
    with pytest.raises(DwcaError, match="x.zip: meta.xml is not valid XML"):
        parse_meta_xml(b"<archive><core", "x.zip")
    with pytest.raises(DwcaError, match="declares no <core>"):
        parse_meta_xml(b'<archive xmlns="http://rs.tdwg.org/dwc/text/"></archive>', "x.zip")


def test_value_conversions() -> None:
    assert to_int(pa.array(["1", " 2 ", "28417.0", "x", None, ""])).to_pylist() == [
        1,
        2,
        28417,
        None,
        None,
        None,
    ]
    assert to_int(pa.array(["2020", "99999999999"]), pa.int32()).to_pylist() == [2020, None]
    assert to_float(pa.array(["1.5", "abc", None, "-3"])).to_pylist() == [1.5, None, None, -3.0]
    assert to_issue_lists(pa.array(["A;B", None, "C"])).to_pylist() == [["A", "B"], [], ["C"]]
    chunked = pa.chunked_array([["A;B"], [None, "A;B"]])
    assert to_issue_lists(chunked).to_pylist() == [["A", "B"], [], ["A", "B"]]
    assert license_enum_names(
        [
            "CC_BY_4_0",
            "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
            "http://creativecommons.org/publicdomain/zero/1.0/legalcode",
            "All rights reserved",
            None,
        ]
    ).to_pylist() == ["CC_BY_4_0", "CC_BY_NC_4_0", "CC0_1_0", "UNSUPPORTED", None]
