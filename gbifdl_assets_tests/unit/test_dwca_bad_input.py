"""Bad archives: each is a clear DwcaError or a counted skip, and a failed ingest leaves no snapshot."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gbifdl_assets.gbif.dwca import DwcaError, convert_to_snapshot, open_archive
from gbifdl_assets.occurrences.snapshots import latest_snapshot, write_snapshot_from_dwca
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.unit.test_dwca_builder import (
    MM_COLUMNS,
    OCC_COLUMNS,
    build_dwca,
    image,
    meta_xml,
    occurrence,
    tsv,
)

RGBIF_DWCA = "rgbif_0000066-140928181241064_DWCA.zip"


def assert_no_snapshot(root: Path) -> None:
    """Nothing committed, nothing half-written, no temporary files left behind."""
    storage = LocalStorage(root)
    assert latest_snapshot(storage, "t") is None
    assert list(storage.list("")) == []
    leftovers = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert leftovers == []


def ingest_fails(archive: Path, tmp_path: Path, match: str, **kwargs) -> DwcaError:
    out = tmp_path / "store"
    with pytest.raises(DwcaError, match=match) as err:
        write_snapshot_from_dwca(archive, LocalStorage(out), "t", **kwargs)
    assert archive.name in str(err.value)  # every message names the archive
    assert_no_snapshot(out)
    return err.value


# -------------------------------------------------------------------------------- the zip itself
def test_truncated_zip(fixtures_dir: Path, tmp_path: Path) -> None:
    data = (fixtures_dir / "archives" / RGBIF_DWCA).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    err = ingest_fails(cut, tmp_path, r"not a complete zip file .*download it again")
    assert "truncated" in str(err)


def test_corrupt_member_data_is_caught_by_inflate_or_crc(tmp_path: Path) -> None:
    path = build_dwca(tmp_path / "bad.zip", [occurrence(i) for i in range(1, 400)], [image(1)])
    info = zipfile.ZipFile(path).getinfo("occurrence.txt")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + info.compress_size // 3, start + info.compress_size // 3 + 40):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    ingest_fails(
        path, tmp_path, r"occurrence.txt in bad.zip: (the compressed data is corrupt|checksum mismatch)"
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"<html>502 Bad Gateway</html>", "it holds an HTML page"),
        (b"\n<!DOCTYPE html><title>Login</title>", "it holds an HTML page"),
        (b'{"status": "RUNNING"}', "it holds JSON"),
        (b"\x1f\x8b\x08\x00 compressed", "it holds a gzip file, not a zip"),
        (b"gbifID\tdatasetKey\n1\tx\n", "it holds a bare table"),
        (b"", "the file is empty (0 bytes)"),
        (b"\x00\x01\x02garbage", r"it starts with b'\x00\x01\x02garba', not with a zip header"),
    ],
)
def test_not_a_zip_says_so(tmp_path: Path, body: bytes, said: str) -> None:
    # it used to say "not a complete zip file ... probably truncated", which sent users to download
    # the same error page again (issue 16, part 7)
    path = tmp_path / "page.zip"
    path.write_bytes(body)
    err = ingest_fails(path, tmp_path, re.escape(f"archive page.zip is not a zip file: {said}"))
    assert "truncated" not in str(err) and "give the .zip of a GBIF DWCA download" in str(err)


def test_unsafe_member_names_are_never_used(tmp_path: Path) -> None:
    evil = {"../evil.txt": b"x", "/abs/evil.txt": b"x", "__MACOSX/._occurrence.txt": b"junk"}
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)], extra=evil)
    workdir = tmp_path / "work"
    workdir.mkdir()
    cwd = os.getcwd()
    os.chdir(workdir)  # if anything were extracted by name it would land around here
    try:
        archive = open_archive(path)
        report = convert_to_snapshot(path, workdir / "s.parquet")
    finally:
        os.chdir(cwd)
    ignored = dict(archive.ignored_members)
    assert ignored["../evil.txt"] == "contains '..'" and ignored["/abs/evil.txt"] == "absolute path"
    assert "__MACOSX/._occurrence.txt" in ignored
    assert report.media == 1
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs/evil.txt").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["s.parquet"]


def test_meta_xml_pointing_outside_the_archive(tmp_path: Path) -> None:
    meta = meta_xml(OCC_COLUMNS, MM_COLUMNS, core_location="../occurrence.txt")
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)], meta=meta)
    ingest_fails(path, tmp_path, r"unsafe file name '../occurrence.txt'")


def test_missing_meta_xml(tmp_path: Path) -> None:
    path = build_dwca(tmp_path / "nometa.zip", [occurrence(1)], [image(1)], include_meta=False)
    err = ingest_fails(path, tmp_path, "has no meta.xml and is not a SIMPLE_CSV download")
    assert "occurrence.txt" in str(err)  # says what the zip holds instead


def test_meta_xml_names_a_missing_file(tmp_path: Path) -> None:
    meta = meta_xml(OCC_COLUMNS, MM_COLUMNS, mm_location="media.txt")
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)], meta=meta)
    ingest_fails(path, tmp_path, r"meta.xml names 'media.txt', but the zip has no such file")


# ------------------------------------------------------------------------------------- columns
def test_core_without_gbif_id(tmp_path: Path) -> None:
    columns = tuple(c for c in OCC_COLUMNS if c[0] != "gbifID")
    meta = meta_xml(columns, MM_COLUMNS, core_id=False)
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)], occ_columns=columns, meta=meta)
    ingest_fails(path, tmp_path, r"core file occurrence.txt has no gbifID column")


def test_multimedia_without_identifier(tmp_path: Path) -> None:
    columns = tuple(c for c in MM_COLUMNS if c[0] != "identifier")
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)], mm_columns=columns)
    ingest_fails(path, tmp_path, r"multimedia.txt has no identifier column .*no image URLs")


def test_meta_xml_column_beyond_the_file(tmp_path: Path) -> None:
    meta = meta_xml(OCC_COLUMNS, MM_COLUMNS).replace(
        "</core>", '<field index="40" term="http://rs.tdwg.org/dwc/terms/locality"/></core>'
    )
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1)], meta=meta)
    ingest_fails(path, tmp_path, r"maps http://rs.tdwg.org/dwc/terms/locality to column 40 of occurrence.txt")


def test_all_ids_bad(tmp_path: Path) -> None:
    path = build_dwca(tmp_path / "a.zip", [occurrence("abc"), occurrence("")], [image(1)])
    ingest_fails(path, tmp_path, r"no row of occurrence.txt has an integer gbifID")


# ------------------------------------------------------------------------------------ rows/bytes
def test_ragged_rows_are_skipped_with_their_line_numbers(tmp_path: Path) -> None:
    lines = tsv([occurrence(i) for i in range(1, 9)], OCC_COLUMNS).decode().splitlines()
    lines[3] = "3\tCC_BY_4_0\ttoo few fields"  # line 4 of the file (line 1 is the header)
    lines[7] = lines[7] + "\tone\ttoo many"  # line 8
    media = tsv([image(i) for i in range(1, 9)], MM_COLUMNS).decode().splitlines()
    media[2] = media[2] + "\textra"  # line 3 of multimedia.txt
    path = build_dwca(
        tmp_path / "a.zip",
        occurrence_bytes=("\n".join(lines) + "\n").encode(),
        multimedia_bytes=("\n".join(media) + "\n").encode(),
    )
    out = tmp_path / "store"
    info = write_snapshot_from_dwca(path, LocalStorage(out), "t")
    counts = info.counts
    assert counts["skipped"]["bad_row"] == 3
    assert info.metadata["archive"]["bad_rows"] == {"occurrence.txt": [4, 8], "multimedia.txt": [3]}
    assert counts["occurrences"] == 6
    # image 2 was a ragged line; occurrences 3 and 7 were, so their images are orphans
    assert counts["media"] == 5 and counts["skipped"]["orphan"] == 2


def test_invalid_utf8_is_replaced_and_counted(tmp_path: Path) -> None:
    data = tsv([occurrence(1), occurrence(2)], OCC_COLUMNS).replace(b"Panthera leo", b"Panth\xe9ra leo", 1)
    media = tsv([image(1), image(2, title="caf\xe9")], MM_COLUMNS)
    media = media.replace("café".encode(), b"caf\xff")
    path = build_dwca(tmp_path / "a.zip", occurrence_bytes=data, multimedia_bytes=media)
    report = convert_to_snapshot(path, tmp_path / "s.parquet")
    assert report.replaced_utf8 == {"occurrence.txt": 1, "multimedia.txt": 1}
    rows = {r["gbifID"]: r for r in pq.read_table(tmp_path / "s.parquet").to_pylist()}
    assert rows[1]["scientificName"].startswith("Panth\ufffdra leo")
    assert rows[2]["scientificName"].startswith("Panthera leo")
    assert rows[2]["title"] == "caf\ufffd"


def test_declared_latin1_encoding_is_decoded(tmp_path: Path) -> None:
    data = tsv([occurrence(1, scientificName="Pouteria caimito (Ruiz & Pav.) Radlk. é")], OCC_COLUMNS)
    meta = meta_xml(OCC_COLUMNS, MM_COLUMNS, encoding="ISO-8859-1")
    path = build_dwca(
        tmp_path / "a.zip",
        occurrence_bytes=data.decode().encode("latin-1"),
        multimedia_bytes=tsv([image(1, creator="Zoë")], MM_COLUMNS).decode().encode("latin-1"),
        meta=meta,
    )
    report = convert_to_snapshot(path, tmp_path / "s.parquet")
    row = pq.read_table(tmp_path / "s.parquet").to_pylist()[0]
    assert row["scientificName"].endswith("é") and row["creator"] == "Zoë"
    assert report.replaced_utf8 == {}


def test_very_long_field_is_read_with_a_larger_block(tmp_path: Path) -> None:
    long_title = "x" * (3 << 20)  # 3 MiB in one value: longer than the 1 MiB default block
    path = build_dwca(tmp_path / "a.zip", [occurrence(1)], [image(1, title=long_title)])
    report = convert_to_snapshot(path, tmp_path / "s.parquet")
    assert report.block_size == 16 << 20
    assert pq.read_table(tmp_path / "s.parquet").column("title").to_pylist() == [long_title]


def test_too_long_field_is_a_clear_error(tmp_path: Path) -> None:
    path = build_dwca(tmp_path / "long.zip", [occurrence(1)], [image(1, title="x" * (3 << 20))])
    err = ingest_fails(
        path, tmp_path, r"multimedia.txt in long.zip has a line longer than", max_block_size=1 << 20
    )
    assert "not a GBIF download" in str(err)


def test_failed_reads_leave_no_reader_threads(tmp_path: Path) -> None:
    import threading
    import time

    path = build_dwca(
        tmp_path / "a.zip", [occurrence(i) for i in range(1, 50)], [image(1, title="x" * (2 << 20))]
    )
    for _ in range(3):
        with pytest.raises(DwcaError):
            convert_to_snapshot(path, tmp_path / "s.parquet", max_block_size=1 << 20)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t.name.startswith("dwca-") for t in threading.enumerate()):
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.name.startswith("dwca-")] == []
