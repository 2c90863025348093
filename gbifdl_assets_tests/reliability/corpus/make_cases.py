"""Generate the corpus cases that are binary or too big to check in, small and deterministic.

    python -m gbifdl_assets_tests.reliability.corpus.make_cases OUT_DIR

writes (file names are the ``generated:`` names in cases.yaml):

* ``wkt-too-many-vertices.yaml``: a valid polygon with 3,000 vertices (GBIF's limit: 2,500)
* ``wkt-too-long.yaml``: a valid 5-vertex polygon padded with decimals past 125,000 WKT characters
* ``dwca-zip-bomb.zip``: a DWCA whose occurrence.txt honestly declares 256 MiB of zeros (~260 KB)
* ``dwca-lying-size.zip``: a DWCA whose occurrence.txt inflates to more than its declared size
* ``dwca-meta-traversal.zip``: meta.xml points the core at ``../occurrence.txt``
* ``dwca-only-traversal-members.zip``: the data files are stored as ``../../occurrence.txt``
* ``png-bomb.png``: a 12,000 × 12,000 PNG (144 Mpixel) in about 20 KB

Every zip entry has a fixed timestamp and compression level, so two runs write identical bytes.
"""

from __future__ import annotations

import math
import struct
import sys
import zipfile
import zlib
from pathlib import Path

from gbifdl_assets_tests.unit.test_dwca_builder import (
    MM_COLUMNS,
    OCC_COLUMNS,
    image,
    meta_xml,
    occurrence,
    tsv,
)

FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def _meta_xml(core_location: str = "occurrence.txt") -> str:
    return meta_xml(OCC_COLUMNS, MM_COLUMNS, core_location=core_location)


def _occurrences() -> bytes:
    return tsv([occurrence(1)], OCC_COLUMNS)


def _multimedia() -> bytes:
    return tsv([image(1)], MM_COLUMNS)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members:
            zf.writestr(_entry(name), data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def _circle_wkt(vertices: int, decimals: int) -> str:
    points = [
        (10 + math.cos(2 * math.pi * i / vertices), 50 + math.sin(2 * math.pi * i / vertices))
        for i in range(vertices)
    ]
    points.append(points[0])
    return "POLYGON((" + ", ".join(f"{x:.{decimals}f} {y:.{decimals}f}" for x, y in points) + "))"


def _spec_with_geometry(name: str, wkt: str) -> bytes:
    return f"name: {name}\ntaxa: [Panthera leo]\noccurrence_filters:\n  geometry: '{wkt}'\n".encode()


def _png_bomb(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG: tiny on disk, ``width * height`` pixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(row) for _ in range(height)]
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )


def _lying_size_zip(path: Path) -> None:
    """occurrence.txt declares 100 bytes but inflates to 4 MiB: patch both size fields and the CRC."""
    body = _occurrences() + b"x" * (4 << 20)
    _write_zip(
        path,
        [("occurrence.txt", body), ("multimedia.txt", _multimedia()), ("meta.xml", _meta_xml().encode())],
    )
    data = bytearray(path.read_bytes())
    declared = 100
    crc = zlib.crc32(body[:declared]) & 0xFFFFFFFF
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("occurrence.txt")
    # local header: CRC at +14, uncompressed size at +22
    struct.pack_into("<I", data, info.header_offset + 14, crc)
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    # central directory entry: find its signature followed by the same name
    name = b"occurrence.txt"
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + name_len]) == name:
            struct.pack_into("<I", data, pos + 16, crc)
            struct.pack_into("<I", data, pos + 24, declared)
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(data))


def generate(out: Path) -> list[Path]:
    """Write every generated case into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)
        written.append(out / name)

    put("wkt-too-many-vertices.yaml", _spec_with_geometry("wkt-too-many-vertices", _circle_wkt(3000, 5)))
    put("wkt-too-long.yaml", _spec_with_geometry("wkt-too-long", _circle_wkt(2000, 28)))
    bomb = _occurrences() + b"\0" * (256 << 20)
    _write_zip(
        out / "dwca-zip-bomb.zip",
        [("occurrence.txt", bomb), ("multimedia.txt", _multimedia()), ("meta.xml", _meta_xml().encode())],
    )
    written.append(out / "dwca-zip-bomb.zip")
    _lying_size_zip(out / "dwca-lying-size.zip")
    written.append(out / "dwca-lying-size.zip")
    _write_zip(
        out / "dwca-meta-traversal.zip",
        [
            ("occurrence.txt", _occurrences()),
            ("multimedia.txt", _multimedia()),
            ("meta.xml", _meta_xml(core_location="../occurrence.txt").encode()),
        ],
    )
    written.append(out / "dwca-meta-traversal.zip")
    _write_zip(
        out / "dwca-only-traversal-members.zip",
        [
            ("../../occurrence.txt", _occurrences()),
            ("../../multimedia.txt", _multimedia()),
            ("meta.xml", _meta_xml().encode()),
        ],
    )
    written.append(out / "dwca-only-traversal-members.zip")
    put("png-bomb.png", _png_bomb(12_000, 12_000))
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gbifdl_assets_tests.reliability.corpus.make_cases OUT_DIR")
    for path in generate(Path(sys.argv[1])):
        print(f"{path} {path.stat().st_size:,} bytes")
