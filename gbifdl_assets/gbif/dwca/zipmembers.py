"""Zip members: safe names, streaming inflate with CRC and size checks.

Members are read from the zip by offset and inflated in bounded steps (ISA-L when installed, zlib
otherwise); nothing is ever extracted by member name.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from gbifdl_assets.gbif.dwca.errors import DwcaError

try:  # ISA-L inflates deflate streams about four times faster than zlib (same format)
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - exercised only where isal is not installed
    _inflate_lib = zlib  # type: ignore[assignment]

_INFLATE_OUT = 1 << 20  # inflate at most this much per call (zip bombs stay bounded)
_READ_COMPRESSED = 256 << 10


def unsafe_reason(name: str) -> str | None:
    """Why a member name must never be used (None when it is a plain relative path)."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        return "contains '..'"
    if "\x00" in name:
        return "contains NUL"
    return None


def member_chunks(path: Path, info: zipfile.ZipInfo, label: str) -> Iterator[bytes]:
    """Decompressed bytes of one member, read from the zip by offset, CRC- and size-checked."""
    if info.flag_bits & 0x1:
        raise DwcaError(f"{label} is encrypted; GBIF archives never are: download the archive again")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        yield from _zipfile_chunks(path, info, label)  # bzip2/lzma: rare, let zipfile handle them
        return
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise DwcaError(f"{label}: the zip is damaged (no local header at offset {info.header_offset})")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        inflater = _inflate_lib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        remaining = info.compress_size
        crc = 0
        size = 0
        try:
            while remaining > 0:
                raw = fh.read(min(_READ_COMPRESSED, remaining))
                if not raw:
                    raise DwcaError(f"{label}: the zip is truncated; download the archive again")
                remaining -= len(raw)
                while raw:
                    if inflater is None:
                        out, raw = raw, b""
                    else:
                        out = inflater.decompress(raw, _INFLATE_OUT)
                        raw = inflater.unconsumed_tail
                    if out:
                        crc = _inflate_lib.crc32(out, crc)
                        size += len(out)
                        if size > info.file_size:
                            raise DwcaError(
                                f"{label} inflates to more than its declared size; the zip is damaged"
                            )
                        yield out
            if inflater is not None:
                tail = inflater.flush()
                if tail:
                    crc = _inflate_lib.crc32(tail, crc)
                    size += len(tail)
                    yield tail
        except (zlib.error, getattr(_inflate_lib, "error", zlib.error)) as exc:
            raise DwcaError(
                f"{label}: the compressed data is corrupt ({exc}); download the archive again"
            ) from None
    if size != info.file_size or (crc & 0xFFFFFFFF) != info.CRC:
        raise DwcaError(
            f"{label}: checksum mismatch (got {size} bytes, expected {info.file_size}); the archive is "
            "damaged or truncated: download it again"
        )


def _zipfile_chunks(path: Path, info: zipfile.ZipInfo, label: str) -> Iterator[bytes]:
    try:
        with zipfile.ZipFile(path) as zf, zf.open(info) as fh:
            while chunk := fh.read(_INFLATE_OUT):
                yield chunk
    except (zipfile.BadZipFile, NotImplementedError, EOFError, zlib.error) as exc:
        raise DwcaError(f"{label}: cannot decompress ({exc}); download the archive again") from None
