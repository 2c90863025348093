"""Read GBIF download archives (DwC-A and SIMPLE_CSV) and turn them into snapshot Parquet, streaming.

A GBIF ``DWCA`` download is a flat zip: ``meta.xml`` describes a core ``occurrence.txt`` and
extensions (``verbatim.txt``, ``multimedia.txt``), each tab-separated, **unquoted**, with one header
line (reference gbif-api.md §5). Columns change between years, so every column is found through
``meta.xml`` by its term URI, never by position. A ``SIMPLE_CSV`` download has no ``meta.xml``: one
``<key>.csv`` whose header names the columns, and no media URLs at all.

Why the reader looks the way it does:

* **Multi-GB archives in bounded memory.** Zip members are inflated as streams (ISA-L when the
  ``isal`` package is installed, about 4x zlib; zlib otherwise) in a background thread and parsed
  by pyarrow's streaming CSV reader in another, block by block. Nothing is extracted to disk by
  member name, so ``../evil`` or ``/abs`` names can never write anywhere; such members, folders
  and ``__MACOSX`` resource forks are ignored.
* **Join without holding the occurrences.** ``multimedia.txt`` is read first (usually far smaller,
  and the only rows the snapshot keeps are media rows) into a table sorted by gbifID; then
  ``occurrence.txt`` streams through, each chunk is matched with ``numpy.searchsorted`` against the
  sorted media ids, only occurrences that have media are converted, and the joined rows go straight
  into a ``ParquetWriter``. When ``multimedia.txt`` itself is larger than ``media_memory_budget``,
  both sides are hash-partitioned by gbifID into buckets spilled to temporary Arrow files and
  joined bucket by bucket (a Grace hash join), so memory stays flat whatever the archive size.
* **Bad input is counted or refused, never half-written.** Rows with the wrong number of fields
  are skipped and counted with their line numbers; bytes that are not UTF-8 are replaced by U+FFFD
  and counted (one bad byte in a locality should not cost the whole download); a line longer than
  the CSV block is retried with a larger block up to ``MAX_BLOCK_SIZE`` and then refused; a
  truncated or corrupt zip, a missing ``meta.xml``, a non-Occurrence core or a missing ``gbifID``
  or ``identifier`` column raise :class:`DwcaError` naming the archive and what to do. The Parquet
  output is written to ``<dest>.part`` and renamed only on success.

Media rows kept: type ``StillImage`` (or no type but an ``image/*`` format) with an ``http(s)`` URL.
Skips are counted by reason: ``no_url``, ``not_image``, ``orphan`` (no such occurrence), plus
``bad_row`` (ragged lines) and ``bad_id`` (a gbifID that is not an integer).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import io
import logging
import math
import queue
import re
import struct
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from gbifdl_assets.gbif.licenses import (
    GBIF_LICENSE_ENUMS,
    gbif_license_enum,
    normalize_license,
    normalize_licenses,
)
from gbifdl_assets.gbif.snapshot import SNAPSHOT_SCHEMA

try:  # ISA-L inflates deflate streams about four times faster than zlib (same format)
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - exercised only where isal is not installed
    _inflate_lib = zlib  # type: ignore[assignment]

log = logging.getLogger("gbifdl_assets.gbif.dwca")

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MEDIA_MEMORY_BUDGET",
    "MAX_BLOCK_SIZE",
    "MEDIA_SCHEMA",
    "OCCURRENCE_SCHEMA",
    "ArchiveMetadata",
    "DwcArchive",
    "DwcaError",
    "IngestReport",
    "MediaSide",
    "SnapshotParquetWriter",
    "TextFile",
    "TermField",
    "convert_to_snapshot",
    "join_indices",
    "join_media",
    "license_enum_names",
    "open_archive",
    "parse_meta_xml",
]

# ---------------------------------------------------------------------------------------------------
# vocabulary
# ---------------------------------------------------------------------------------------------------
DWC = "http://rs.tdwg.org/dwc/terms/"
GBIF = "http://rs.gbif.org/terms/1.0/"
OCCURRENCE_ROW_TYPE = DWC + "Occurrence"
MULTIMEDIA_ROW_TYPES = (GBIF + "Multimedia", "http://rs.tdwg.org/ac/terms/Multimedia")

#: CSV blocks: 1 MiB parses fastest (cache-friendly); a line longer than a block forces a retry
#: with a 16x larger block, up to MAX_BLOCK_SIZE.
DEFAULT_BLOCK_SIZE = 1 << 20
MAX_BLOCK_SIZE = 256 << 20
#: multimedia.txt up to this many (uncompressed) bytes is joined in memory; larger is partitioned
DEFAULT_MEDIA_MEMORY_BUDGET = 512 << 20
#: raw CSV batches are gathered into chunks of about this many rows before converting/joining
CHUNK_ROWS = 131_072
#: snapshot rows per Parquet row group: small enough that encoding overlaps parsing even for a
#: download of a few hundred thousand rows (the last row group is encoded after everything else)
ROW_GROUP_ROWS = 65_536
#: ragged-row line numbers kept per file for the report (the count is always complete)
MAX_REPORTED_ROWS = 100
_INFLATE_OUT = 1 << 20  # inflate at most this much per call (zip bombs stay bounded)
_READ_COMPRESSED = 256 << 10
_MAX_XML_BYTES = 32 << 20

#: the occurrence part of the snapshot schema (everything before the media fields)
_MEDIA_START = SNAPSHOT_SCHEMA.get_field_index("media_index")
OCCURRENCE_SCHEMA = pa.schema([SNAPSHOT_SCHEMA.field(i) for i in range(_MEDIA_START)])
#: the media part of the snapshot schema
MEDIA_SCHEMA = pa.schema([SNAPSHOT_SCHEMA.field(i) for i in range(_MEDIA_START, len(SNAPSHOT_SCHEMA))])

#: snapshot column -> archive column names to try, in order (short term names)
_OCCURRENCE_SOURCES: dict[str, tuple[str, ...]] = {
    **{f.name: (f.name,) for f in OCCURRENCE_SCHEMA},
    "issues": ("issue", "issues"),
}
#: 2013 portal archives carry the backbone keys under gbif:kingdomID ... gbif:speciesID
_GBIF_ALIASES = {
    f"{rank}Key": GBIF + f"{rank}ID"
    for rank in ("kingdom", "phylum", "class", "order", "family", "genus", "species")
}
#: media columns read from multimedia.txt (short term names)
MEDIA_SOURCE_COLUMNS = (
    "type",
    "format",
    "identifier",
    "references",
    "title",
    "creator",
    "publisher",
    "license",
    "rightsHolder",
)
_IMAGE_TYPES = [
    "stillimage",
    "image",
    "http://purl.org/dc/dcmitype/stillimage",
    "http://purl.org/dc/dcmitype/image",
]
SKIP_REASONS = ("no_url", "not_image", "orphan", "bad_row", "bad_id", "duplicate")
_REASON_CODES = {0: None, 1: "no_url", 2: "not_image"}

#: the in-between table of multimedia rows (strings), before the join
MEDIA_RAW_SCHEMA = pa.schema(
    [
        pa.field("gbifID", pa.int64()),
        pa.field("rownum", pa.int64()),
        pa.field("reason", pa.uint8()),
        *(pa.field(c, pa.string()) for c in MEDIA_SOURCE_COLUMNS if c != "type"),
    ]
)


class DwcaError(ValueError):
    """A problem with an archive that the user must fix (the message names the archive and the fix)."""


class _RowTooLong(DwcaError):
    """A line did not fit in one CSV block; retried with a larger block when allowed."""


# ---------------------------------------------------------------------------------------------------
# meta.xml
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TermField:
    """One ``<field>`` of meta.xml: a term at a column ``index`` and/or a constant ``default``."""

    term: str  # full URI
    index: int | None
    default: str | None = None

    @property
    def name(self) -> str:
        return short_term(self.term)


@dataclass(frozen=True)
class TextFile:
    """A core or extension data file as meta.xml describes it."""

    row_type: str
    locations: tuple[str, ...]
    is_core: bool
    fields: tuple[TermField, ...]
    id_index: int | None = None
    encoding: str = "UTF-8"
    delimiter: str = "\t"
    quote_char: str | None = None
    header_lines: int = 0

    @property
    def row_type_name(self) -> str:
        return short_term(self.row_type)

    @property
    def location(self) -> str:
        return self.locations[0]

    def field_by_term(self, term: str) -> TermField | None:
        for f in self.fields:
            if f.term == term:
                return f
        return None

    def field_by_name(self, name: str) -> TermField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


def short_term(uri: str) -> str:
    """``http://rs.tdwg.org/dwc/terms/scientificName`` -> ``scientificName``."""
    return re.split(r"[/#:]", uri.rstrip("/#"))[-1]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _unescape_attr(value: str | None, default: str) -> str:
    if value is None:
        return default
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")


def parse_meta_xml(data: bytes, archive: str) -> tuple[TextFile, list[TextFile], str | None]:
    """(core, extensions, metadata file name) of a meta.xml; DwcaError naming the problem."""
    if len(data) > _MAX_XML_BYTES:
        raise DwcaError(f"archive {archive}: meta.xml is {len(data)} bytes, too large to be a descriptor")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DwcaError(
            f"archive {archive}: meta.xml is not valid XML ({exc}); the archive is damaged"
        ) from None
    if _local(root.tag) != "archive":
        raise DwcaError(f"archive {archive}: meta.xml has root <{_local(root.tag)}>, not <archive>")
    core = None
    extensions = []
    for elem in root:
        kind = _local(elem.tag)
        if kind not in ("core", "extension"):
            continue
        tf = _parse_file_element(elem, kind == "core", archive)
        if kind == "core":
            if core is not None:
                raise DwcaError(f"archive {archive}: meta.xml declares more than one <core>")
            core = tf
        else:
            extensions.append(tf)
    if core is None:
        raise DwcaError(f"archive {archive}: meta.xml declares no <core> file")
    return core, extensions, root.get("metadata")


def _parse_file_element(elem: ET.Element, is_core: bool, archive: str) -> TextFile:
    what = "core" if is_core else "extension"
    row_type = (elem.get("rowType") or "").strip()
    locations = tuple(
        (loc.text or "").strip()
        for files in elem
        if _local(files.tag) == "files"
        for loc in files
        if _local(loc.tag) == "location" and (loc.text or "").strip()
    )
    if not locations:
        raise DwcaError(f"archive {archive}: the meta.xml {what} {short_term(row_type) or ''} names no file")
    id_index = None
    fields = []
    for child in elem:
        tag = _local(child.tag)
        if tag in ("id", "coreid") and child.get("index") is not None:
            id_index = _int_attr(child.get("index"), f"{what} <{tag}> index", archive)
        elif tag == "field":
            term = (child.get("term") or "").strip()
            if not term:
                continue
            index = child.get("index")
            fields.append(
                TermField(
                    term=term,
                    index=None if index is None else _int_attr(index, f"field {term} index", archive),
                    default=child.get("default"),
                )
            )
    delimiter = _unescape_attr(elem.get("fieldsTerminatedBy"), ",")
    if len(delimiter) != 1:
        raise DwcaError(
            f"archive {archive}: {locations[0]} uses the field separator {delimiter!r}; only "
            "single-character separators (GBIF uses a tab) are supported"
        )
    quote = _unescape_attr(elem.get("fieldsEnclosedBy"), '"')
    if len(quote) > 1:
        raise DwcaError(
            f"archive {archive}: {locations[0]} quotes fields with {quote!r}; expected one character"
        )
    return TextFile(
        row_type=row_type,
        locations=locations,
        is_core=is_core,
        fields=tuple(fields),
        id_index=id_index,
        encoding=(elem.get("encoding") or "UTF-8").strip(),
        delimiter=delimiter,
        quote_char=quote or None,
        header_lines=_int_attr(elem.get("ignoreHeaderLines") or "0", "ignoreHeaderLines", archive),
    )


def _int_attr(value: str | None, what: str, archive: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise DwcaError(f"archive {archive}: meta.xml {what} is {value!r}, not a number") from None
    if number < 0:
        raise DwcaError(f"archive {archive}: meta.xml {what} is negative ({number})")
    return number


# ---------------------------------------------------------------------------------------------------
# zip members: safe names, streaming inflate with CRC check, background read-ahead
# ---------------------------------------------------------------------------------------------------
def _unsafe_reason(name: str) -> str | None:
    """Why a member name must never be used (None when it is a plain relative path)."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        return "contains '..'"
    if "\x00" in name:
        return "contains NUL"
    return None


def _member_chunks(path: Path, info: zipfile.ZipInfo, label: str) -> Iterator[bytes]:
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


_DONE = object()


class _Prefetch:
    """Run an iterator in a daemon thread, ``depth`` items ahead; exceptions reach the consumer.

    Inflating (ISA-L/zlib release the GIL) and CSV parsing (pyarrow releases it) then overlap with
    the conversion and join in the main thread: on two cores this roughly halves the wall time.
    """

    def __init__(self, source: Iterable[Any], depth: int = 4, name: str = "dwca-prefetch"):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._source = source
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        iterator = iter(self._source)
        try:
            for item in iterator:
                if not self._put(item):
                    break
            else:
                self._put(_DONE)
        except BaseException as exc:  # forwarded to the consumer
            self._put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class _ChunkStream(io.RawIOBase):
    """A readable binary file over an iterator of byte chunks (what pyarrow's CSV reader wants).

    ``read(n)`` returns exactly ``n`` bytes until the end (pyarrow's CSV blocks are then exactly
    ``block_size``, which the long-line retry relies on) with at most one copy of each byte: a
    chunk that fits whole is passed on as is, parts are memoryviews joined once. (The earlier
    bytearray buffer copied every byte three to four times, ~1 s of CPU per 2 GB.)
    """

    def __init__(self, chunks: Iterable[bytes]):
        super().__init__()
        self._source = chunks
        self._chunks = iter(chunks)
        self._cur = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._cur[self._pos :], *self._chunks]
            self._cur, self._pos, self._eof = b"", 0, True
            return b"".join(parts)
        pieces: list[Any] = []
        size = 0
        while size < n:
            if self._pos >= len(self._cur):
                if self._eof:
                    break
                nxt = next(self._chunks, None)
                if nxt is None:
                    self._eof = True
                    break
                self._cur, self._pos = nxt, 0
                continue
            take = min(n - size, len(self._cur) - self._pos)
            if self._pos == 0 and take == len(self._cur):
                pieces.append(self._cur)
            else:
                pieces.append(memoryview(self._cur)[self._pos : self._pos + take])
            self._pos += take
            size += take
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        return b"".join(pieces)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        # close the source itself: closing a generator that never started runs no cleanup
        for obj in (self._chunks, self._source):
            close = getattr(obj, "close", None)
            if close is not None:
                close()
        super().close()


#: inflated text is cut at line ends into pieces of about this size, parsed on PARSE_THREADS threads
_PIECE_BYTES = 4 << 20
PARSE_THREADS = 2
#: pieces parsed ahead while the transform waits for ``ready`` (the media side being built): ~6 MB each
PARSE_AHEAD = 24


@dataclass
class _Deferred:
    """A parsed piece whose transform waits for ``ready`` (see :func:`_parse_in_parallel`)."""

    table: pa.Table


def _line_pieces(
    chunks: Iterable[bytes], header_lines: int, block_size: int, label: str
) -> Iterator[memoryview]:
    """Inflated chunks regrouped into pieces of whole lines (about _PIECE_BYTES), header lines dropped."""
    carry = b""
    pending: list[bytes] = []
    size = 0
    skip = header_lines
    source = iter(chunks)
    done = False
    while not done:
        chunk = next(source, None)
        if chunk is None:
            done = True
        else:
            pending.append(chunk)
            size += len(chunk)
            if size < _PIECE_BYTES:
                continue
        data = b"".join([carry, *pending]) if carry or len(pending) != 1 else pending[0]
        pending, size = [], 0
        cut = len(data) if done else data.rfind(b"\n") + 1
        start = 0
        while skip and start < cut:  # the header line(s) of the file
            end = data.find(b"\n", start, cut)
            start = cut if end < 0 else end + 1
            skip -= 1
        if cut > start:
            yield memoryview(data)[start:cut]
        carry = data[cut:]
        if len(carry) > block_size:  # no line end in sight: do not gather the line in memory
            raise _RowTooLong(f"{label} has a line longer than the CSV block of {block_size} bytes")


def _parse_in_parallel(
    pieces: Iterable[memoryview],
    names: list[str],
    block_size: int,
    header_lines: int,
    parse_options: Callable[[Callable[[Any], str]], pcsv.ParseOptions],
    convert_options: pcsv.ConvertOptions,
    problems: _RowProblems,
    location: str,
    transform: Callable[[pa.Table], Any] | None = None,
    ready: threading.Event | None = None,
) -> Iterator[Any]:
    """Parse line-aligned pieces on PARSE_THREADS threads (pyarrow releases the GIL); results in order.

    pyarrow's streaming CSV reader parses one block after the other on one core, and parsing was
    about half of the ingest's CPU. Cut at line ends (GBIF files are unquoted, so a newline always
    ends a row), the pieces parse independently. Ragged lines are collected per piece and recorded
    in file order with the line numbers pyarrow's one-stream reader gives (header lines and
    non-empty lines count: a piece numbers as many lines as it has rows, kept or skipped, so no
    byte needs scanning for them). ``block_size`` still bounds the longest line (pyarrow refuses a
    line straddling more than one block), so the long-line retry works as before.

    ``transform(table)`` runs on the parse thread right after the piece is parsed, and its results
    are yielded in file order (without it, the parsed batches are). Converting and joining a piece
    there, while it is hot in the cache, spreads that work over both cores instead of leaving it
    to the consumer's thread; a transform must only touch its own piece and thread-safe state.

    With ``ready``, the transform needs something still being made (the media side of the join):
    until the event is set, up to PARSE_AHEAD pieces are parsed ahead and kept, then all handed to
    the threads for their transform at once, so the parse overlaps with that work.
    """

    def parse(piece: memoryview) -> tuple[Any, int, list[tuple[int | None, int, int]]]:
        bad: list[tuple[int | None, int, int]] = []

        def on_invalid(row: Any) -> str:
            bad.append((row.number, row.actual_columns, row.expected_columns))
            return "skip"

        table = pcsv.read_csv(
            pa.py_buffer(piece),
            read_options=pcsv.ReadOptions(use_threads=False, block_size=block_size, column_names=names),
            parse_options=parse_options(on_invalid),
            convert_options=convert_options,
        )
        if transform is None:
            return table, table.num_rows, bad
        if ready is not None and not ready.is_set():
            return _Deferred(table), table.num_rows, bad
        return transform(table), table.num_rows, bad

    def finish(result: tuple[Any, int, list[tuple[int | None, int, int]]]) -> Any:
        out, rows, bad = result
        return transform(out.table), rows, bad  # type: ignore[misc]

    def hand_over_deferred() -> None:
        """``ready`` is set: queue the transform of every piece parsed ahead, in order."""
        assert ready is not None
        ready.wait()
        for i, future in enumerate(pending):
            result = future.result()
            if isinstance(result[0], _Deferred):
                pending[i] = pool.submit(finish, result)

    lines_before = header_lines  # numbered lines before the current piece

    def parsed(result: tuple[Any, int, list[tuple[int | None, int, int]]]) -> Iterator[Any]:
        nonlocal lines_before
        out, rows, bad = result
        if bad:
            problems.record(location, [(None if n is None else n + lines_before, a, e) for n, a, e in bad])
        lines_before += rows + len(bad)
        if transform is None:
            yield from out.to_batches()
        else:
            yield out

    pool = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="dwca-csv")
    pending: collections.deque[Future[tuple[Any, int, list[tuple[int | None, int, int]]]]] = (
        collections.deque()
    )
    try:
        for piece in pieces:
            pending.append(pool.submit(parse, piece))
            waiting = ready is not None and not ready.is_set()
            while len(pending) > (PARSE_AHEAD if waiting else PARSE_THREADS):
                if isinstance(pending[0].result()[0], _Deferred):
                    hand_over_deferred()
                yield from parsed(pending.popleft().result())
        while pending:
            if isinstance(pending[0].result()[0], _Deferred):
                hand_over_deferred()
            yield from parsed(pending.popleft().result())
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------
# the archive
# ---------------------------------------------------------------------------------------------------
@dataclass
class ArchiveMetadata:
    """What the archive says about itself (EML ``metadata.xml`` and ``citations.txt``)."""

    download_key: str | None = None
    doi: str | None = None
    title: str | None = None
    citation: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


_DOWNLOAD_KEY = re.compile(r"(?<!\d)(\d{7}-\d{15})(?!\d)")
_DOI = re.compile(r"(10\.\d{4,9}/[^\s\"<>]+)")


@dataclass
class _RowProblems:
    """Ragged lines and replaced bytes, per file (the handler runs inside pyarrow's parser)."""

    bad_rows: Counter = field(default_factory=Counter)
    bad_row_numbers: dict[str, list[int]] = field(default_factory=dict)
    replaced_utf8: Counter = field(default_factory=Counter)

    def handler(self, location: str) -> Callable[[Any], str]:
        numbers = self.bad_row_numbers.setdefault(location, [])

        def on_invalid(row: Any) -> str:
            self.bad_rows[location] += 1
            if len(numbers) < MAX_REPORTED_ROWS and row.number is not None:
                numbers.append(int(row.number))
            if self.bad_rows[location] <= 5:
                log.warning(
                    "%s line %s has %s fields, expected %s: skipped",
                    location,
                    row.number,
                    row.actual_columns,
                    row.expected_columns,
                )
            return "skip"

        return on_invalid

    def merge(self, other: _RowProblems) -> None:
        """Add what a parse thread counted in its own piece (replaced bytes; ragged rows are
        recorded in file order by the consumer)."""
        self.replaced_utf8.update(other.replaced_utf8)

    def record(self, location: str, rows: list[tuple[int | None, int, int]]) -> None:
        """Ragged lines found by a parallel parse: (line number, fields, expected), in file order."""
        numbers = self.bad_row_numbers.setdefault(location, [])
        for number, actual, expected in rows:
            self.bad_rows[location] += 1
            if len(numbers) < MAX_REPORTED_ROWS and number is not None:
                numbers.append(number)
            if self.bad_rows[location] <= 5:
                log.warning(
                    "%s line %s has %s fields, expected %s: skipped", location, number, actual, expected
                )


@dataclass
class _Piece:
    """What a parse thread made of one piece of a data file (see :func:`_parse_in_parallel`)."""

    rows: int = 0  # rows parsed (ragged lines are not rows)
    bad_ids: int = 0  # rows skipped for a gbifID that is not an integer
    with_media: int = 0  # occurrences with at least one kept media item
    table: pa.Table | None = None
    ids: np.ndarray | None = None  # gbifIDs of the rows of ``table`` (partitioned join, media)
    skipped: Counter = field(default_factory=Counter)
    problems: _RowProblems = field(default_factory=_RowProblems)

    def tables(self) -> list[pa.Table]:
        return [self.table] if self.table is not None and self.table.num_rows else []


class DwcArchive:
    """An opened download archive. Use :func:`open_archive`; close it (or use ``with``).

    ``kind`` is ``DWCA`` (a meta.xml describes the files) or ``SIMPLE_CSV`` (one tab-separated
    ``.csv`` with a header and no media URLs). Reading never extracts anything by member name.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name
        self.ignored_members: list[tuple[str, str]] = []
        self.problems = _RowProblems()
        self.bad_ids = 0  # rows skipped by iter_occurrences for a gbifID that is not an integer
        if not self.path.is_file():
            raise DwcaError(f"archive {self.path} does not exist (or is not a file)")
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = zf.infolist()
        except zipfile.BadZipFile as exc:
            raise DwcaError(
                f"archive {self.name} is not a complete zip file ({exc}); it is probably truncated: "
                "download it again"
            ) from None
        except OSError as exc:
            raise DwcaError(f"archive {self.name} cannot be read: {exc}") from None
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if info.is_dir():
                continue
            reason = _unsafe_reason(name)
            if reason is None and (name.startswith("__MACOSX/") or PurePosixPath(name).name.startswith("._")):
                reason = "macOS resource fork"
            if reason is not None:
                self.ignored_members.append((name, reason))
                if reason != "macOS resource fork":
                    log.warning("archive %s: ignoring member %r (%s)", self.name, name, reason)
                continue
            self._members[name] = info
        self.metadata = ArchiveMetadata()
        self._detect()

    # ------------------------------------------------------------------ layout
    def _detect(self) -> None:
        meta_name = self._find_meta()
        self.extensions: list[TextFile]
        if meta_name is not None:
            self.kind = "DWCA"
            self._base = str(PurePosixPath(meta_name).parent).lstrip(".")
            core, extensions, metadata_file = parse_meta_xml(self.read_member(meta_name), self.name)
            self.core = core
            self.extensions = extensions
            for tf in (core, *extensions):
                for loc in tf.locations:
                    self._resolve(loc, must_exist=tf.is_core or tf.row_type in MULTIMEDIA_ROW_TYPES)
            self._read_metadata(metadata_file)
            return
        data = [n for n in self._members if PurePosixPath(n).suffix.lower() in (".csv", ".txt", ".tsv")]
        if len(data) == 1 and PurePosixPath(data[0]).suffix.lower() == ".csv":
            self.kind = "SIMPLE_CSV"
            self._base = ""
            header = self._first_line(data[0], self._members[data[0]]).decode("utf-8", "replace")
            delimiter = "\t" if "\t" in header else ","
            names = [c.strip() for c in header.split(delimiter)]
            self.core = TextFile(
                row_type=OCCURRENCE_ROW_TYPE,
                locations=(data[0],),
                is_core=True,
                fields=tuple(TermField(term=n, index=i) for i, n in enumerate(names) if n),
                id_index=None,
                delimiter=delimiter,
                quote_char=None,
                header_lines=1,
            )
            self.extensions = []
            key = _DOWNLOAD_KEY.search(data[0])
            self.metadata = ArchiveMetadata(download_key=key.group(1) if key else None)
            return
        listed = ", ".join(sorted(self._members)[:8]) or "nothing"
        raise DwcaError(
            f"archive {self.name} has no meta.xml and is not a SIMPLE_CSV download (one <key>.csv); it "
            f"holds {listed}. It is not a Darwin Core Archive: request a GBIF download in DWCA format"
        )

    def _find_meta(self) -> str | None:
        if "meta.xml" in self._members:
            return "meta.xml"
        # zips made by compressing a folder put everything under one top folder
        nested = [n for n in self._members if PurePosixPath(n).name == "meta.xml" and n.count("/") == 1]
        return nested[0] if len(nested) == 1 else None

    def _resolve(self, location: str, *, must_exist: bool = True) -> str | None:
        reason = _unsafe_reason(location)
        if reason is not None:
            raise DwcaError(
                f"archive {self.name}: meta.xml points to the unsafe file name {location!r} ({reason})"
            )
        name = f"{self._base}/{location}" if self._base else location
        if name in self._members:
            return name
        if must_exist:
            ignored = [n for n, _ in self.ignored_members if n.endswith(location)]
            extra = f" (a member {ignored[0]!r} exists but was ignored as unsafe)" if ignored else ""
            raise DwcaError(
                f"archive {self.name}: meta.xml names {location!r}, but the zip has no such file{extra}; "
                "the archive is incomplete: download it again"
            )
        return None

    def _read_metadata(self, metadata_file: str | None) -> None:
        meta = ArchiveMetadata()
        for candidate in (metadata_file, "metadata.xml", "eml.xml"):
            try:  # the EML is optional: an odd name never fails the archive
                name = self._resolve(candidate, must_exist=False) if candidate else None
            except DwcaError:
                continue
            if name is None or self._members[name].file_size > _MAX_XML_BYTES:
                continue
            try:
                root = ET.fromstring(self.read_member(name))
            except (ET.ParseError, DwcaError):
                continue
            package = root.get("packageId") or ""
            if m := _DOI.search(package):
                meta.doi = m.group(1)
            for elem in root.iter():
                tag = _local(elem.tag)
                text = (elem.text or "").strip()
                if tag == "alternateIdentifier" and text:
                    if (k := _DOWNLOAD_KEY.fullmatch(text)) and not meta.download_key:
                        meta.download_key = k.group(1)
                    elif (d := _DOI.match(text)) and not meta.doi:
                        meta.doi = d.group(1)
                elif tag == "title" and text and not meta.title:
                    meta.title = text  # "GBIF Occurrence Download <key>"
                    if (k := _DOWNLOAD_KEY.search(text)) and not meta.download_key:
                        meta.download_key = k.group(1)
            break
        name = self._resolve("citations.txt", must_exist=False)
        if name is not None and self._members[name].file_size < (1 << 20):
            for line in self.read_member(name).decode("utf-8", "replace").splitlines():
                if "GBIF.org" in line:
                    meta.citation = line.strip()
                    break
        if not meta.download_key and (k := _DOWNLOAD_KEY.search(self.name)):
            meta.download_key = k.group(1)
        self.metadata = meta

    @property
    def multimedia(self) -> TextFile | None:
        for tf in self.extensions:
            if tf.row_type in MULTIMEDIA_ROW_TYPES:
                return tf
        return None

    def member_size(self, tf: TextFile) -> int:
        """Uncompressed bytes of a data file (all its locations)."""
        total = 0
        for loc in tf.locations:
            name = self._resolve(loc, must_exist=False)
            if name is not None:
                total += self._members[name].file_size
        return total

    def read_member(self, name: str) -> bytes:
        info = self._members[name]
        if info.file_size > _MAX_XML_BYTES:
            raise DwcaError(f"archive {self.name}: {name} is too large to read at once")
        return b"".join(_member_chunks(self.path, info, f"{name} in {self.name}"))

    def _first_line(self, name: str, info: zipfile.ZipInfo, limit: int = MAX_BLOCK_SIZE) -> bytes:
        buf = bytearray()
        chunks = _member_chunks(self.path, info, f"{name} in {self.name}")
        try:
            for chunk in chunks:
                cut = chunk.find(b"\n")
                if cut >= 0:
                    buf += chunk[:cut]
                    break
                buf += chunk
                if len(buf) > limit:
                    raise DwcaError(f"{name} in {self.name}: the first line is longer than {limit} bytes")
        finally:
            chunks.close()
        return bytes(buf).rstrip(b"\r")

    def require_occurrence_core(self) -> None:
        if self.core.row_type != OCCURRENCE_ROW_TYPE:
            raise DwcaError(
                f"archive {self.name}: core is {self.core.row_type_name}, not Occurrence "
                f"(rowType {self.core.row_type or 'missing'}); give a GBIF occurrence download"
            )

    # ------------------------------------------------------------------ columns
    def column_names(self, tf: TextFile, location: str) -> list[str]:
        """pyarrow column names for one data file: short term names by meta.xml index.

        Columns meta.xml does not describe are named ``_col<i>``; the id column without a term is
        ``_id``; a short name used twice gets ``#<i>`` appended (terms differ only in namespace).
        """
        name = self._resolve(location)
        assert name is not None
        if self._members[name].file_size == 0:
            return []
        first = self._first_line(name, self._members[name])
        encoding = _pyarrow_encoding(tf.encoding, self.name, location)
        if encoding == "utf8":
            n_fields = first.count(tf.delimiter.encode()) + 1 if first else 0
        else:
            n_fields = first.decode(encoding, "replace").count(tf.delimiter) + 1 if first else 0
        if self.kind == "SIMPLE_CSV":
            names: list[str | None] = [f.name for f in tf.fields]
            names += [None] * (n_fields - len(names))
        else:
            names = [None] * n_fields
            for f in tf.fields:
                if f.index is None:
                    continue
                if f.index >= n_fields:
                    raise DwcaError(
                        f"archive {self.name}: meta.xml maps {f.term} to column {f.index} of {location}, "
                        f"but its first line has only {n_fields} columns; meta.xml does not describe this file"
                    )
                if names[f.index] is None:
                    names[f.index] = f.name
            if tf.id_index is not None and tf.id_index < n_fields and names[tf.id_index] is None:
                names[tf.id_index] = "_id"
        out: list[str] = []
        seen: set[str] = set()
        for i, n in enumerate(names):
            n = n or f"_col{i}"
            if n in seen:
                n = f"{n}#{i}"
            seen.add(n)
            out.append(n)
        return out

    def gbif_id_column(self, tf: TextFile, names: Sequence[str]) -> str:
        """The column holding gbifID: the gbifID term, else the id/coreid column."""
        if "gbifID" in names:
            return "gbifID"
        if tf.id_index is not None and tf.id_index < len(names):
            return names[tf.id_index]
        what = "core file" if tf.is_core else "extension"
        raise DwcaError(
            f"archive {self.name}: the {what} {tf.location} has no gbifID column (no "
            f"{GBIF}gbifID term and no id column in meta.xml); the snapshot cannot key its rows"
        )

    def occurrence_sources(self, tf: TextFile, names: Sequence[str]) -> dict[str, str]:
        """snapshot occurrence column -> archive column name, for the columns the file has."""
        out = {"gbifID": self.gbif_id_column(tf, names)}
        present = set(names)
        for target, candidates in _OCCURRENCE_SOURCES.items():
            if target == "gbifID":
                continue
            for cand in candidates:
                constant = tf.field_by_name(cand)
                if cand in present or (constant is not None and constant.index is None and constant.default):
                    out[target] = cand  # a column, or a constant from a meta.xml default
                    break
            else:
                alias = _GBIF_ALIASES.get(target)
                f = tf.field_by_term(alias) if alias else None
                if f is not None and f.index is not None and f.index < len(names):
                    out[target] = names[f.index]
        return out

    # ------------------------------------------------------------------ reading
    def read_batches(
        self, tf: TextFile, columns: Sequence[str], *, block_size: int = DEFAULT_BLOCK_SIZE
    ) -> Iterator[pa.RecordBatch]:
        """Raw batches of ``columns`` (binary, null for empty) from every location of ``tf``.

        Ragged lines are skipped and counted in ``self.problems``; meta.xml ``default`` values fill
        empty cells (or make constant columns when the field has no index).
        """
        for location in tf.locations:
            names = self.column_names(tf, location)
            yield from self._read_location(tf, location, names, columns, block_size)

    def _read_location(
        self,
        tf: TextFile,
        location: str,
        names: list[str],
        columns: Sequence[str],
        block_size: int,
        transform: Callable[[pa.Table], Any] | None = None,
        ready: threading.Event | None = None,
    ) -> Iterator[Any]:
        """Raw batches of one data file or, with ``transform``, ``transform(table)`` per piece, in order.

        With ``transform`` the tables are line-aligned pieces of a few MiB transformed on the parse
        threads (see :func:`_parse_in_parallel`), or about CHUNK_ROWS rows on the one-stream path
        (quoted or non-UTF-8 files). meta.xml defaults are applied before either. ``transform``
        waits for ``ready`` when given (pieces are parsed ahead meanwhile).
        """
        name = self._resolve(location)
        assert name is not None
        label = f"{location} in {self.name}"
        wanted = list(dict.fromkeys(c for c in columns if c in names)) or names[:1]
        constants = {
            f.name: f.default
            for f in tf.fields
            if f.index is None and f.default is not None and f.name in columns and f.name not in names
        }
        fills = {
            f.name: f.default for f in tf.fields if f.index is not None and f.default and f.name in wanted
        }
        if not names:  # an empty file
            return

        def with_defaults(table: Any) -> Any:
            for col, value in fills.items():
                i = table.schema.get_field_index(col)
                filled = pc.fill_null(table.column(i), pa.scalar(value.encode(), pa.binary()))
                table = table.set_column(i, col, filled)
            for col, value in constants.items():
                table = table.append_column(
                    col, pa.array([value.encode() if value else None] * table.num_rows, pa.binary())
                )
            return table

        def prepared(table: pa.Table) -> Any:
            table = with_defaults(table)
            return table if transform is None else transform(table)

        chunks = _Prefetch(
            _member_chunks(self.path, self._members[name], label), depth=6, name="dwca-inflate"
        )
        encoding = _pyarrow_encoding(tf.encoding, self.name, location)

        def parse_options(handler: Callable[[Any], str]) -> pcsv.ParseOptions:
            return pcsv.ParseOptions(
                delimiter=tf.delimiter,
                quote_char=tf.quote_char or False,
                double_quote=bool(tf.quote_char),
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=True,
                invalid_row_handler=handler,
            )

        convert_options = pcsv.ConvertOptions(
            include_columns=wanted,
            column_types={c: pa.binary() for c in wanted},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        )
        stream = None
        reader: Iterable[Any] = ()
        try:
            if encoding == "utf8" and not tf.quote_char:
                reader = _parse_in_parallel(
                    _line_pieces(chunks, tf.header_lines, block_size, label),
                    names,
                    block_size,
                    tf.header_lines,
                    parse_options,
                    convert_options,
                    self.problems,
                    location,
                    prepared,
                    ready,
                )
                for out in reader:
                    if transform is None:
                        yield from out.to_batches()
                    else:
                        yield out
                return
            # quoted values may hold newlines; other encodings cannot be cut at b"\n"
            stream = _ChunkStream(chunks)
            reader = _Prefetch(
                pcsv.open_csv(
                    stream,
                    read_options=pcsv.ReadOptions(
                        use_threads=False,  # keeps row numbers for the ragged-row report
                        block_size=block_size,
                        skip_rows=tf.header_lines,
                        column_names=names,
                        encoding=encoding,
                    ),
                    parse_options=parse_options(self.problems.handler(location)),
                    convert_options=convert_options,
                ),
                depth=3,
                name="dwca-parse",
            )
            if transform is None:
                for batch in reader:
                    yield with_defaults(batch)
            else:
                for table in _coalesce(reader, CHUNK_ROWS):
                    if ready is not None:
                        ready.wait()
                    yield prepared(table)
        except pa.ArrowInvalid as exc:
            text = str(exc)
            if "straddl" in text or "block size" in text:
                raise _RowTooLong(
                    f"{label} has a line longer than the CSV block of {block_size} bytes"
                ) from None
            raise DwcaError(f"{label} cannot be parsed: {text}") from None
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()  # stops the parse threads
            if stream is not None:
                stream.close()
            chunks.close()

    def iter_occurrences(
        self, *, block_size: int = DEFAULT_BLOCK_SIZE, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pa.Table]:
        """Typed occurrence tables (:data:`OCCURRENCE_SCHEMA`) from the core, for any Occurrence core.

        Works for SIMPLE_CSV too (the snapshot needs DWCA only for the media URLs). Rows whose
        gbifID is not an integer are skipped and counted (``bad_id`` in :attr:`bad_ids`).
        """
        self.require_occurrence_core()
        self.bad_ids = 0
        for location in self.core.locations:
            names = self.column_names(self.core, location)
            sources = self.occurrence_sources(self.core, names)

            def convert(raw: pa.Table, sources: dict[str, str] = sources, where: str = location) -> _Piece:
                piece = _Piece(problems=_RowProblems())
                ids, valid = parse_ids(raw.column(sources["gbifID"]))
                piece.bad_ids = int((~valid).sum())
                if piece.bad_ids:
                    raw = raw.filter(pa.array(valid))
                    ids = ids[valid]
                piece.table = convert_occurrences(raw, sources, piece.problems, where, ids=ids)
                return piece

            wanted = list(dict.fromkeys(sources.values()))
            tables = []
            for piece in self._read_location(self.core, location, names, wanted, block_size, convert):
                self.bad_ids += piece.bad_ids
                self.problems.merge(piece.problems)
                tables.extend(piece.tables())
                if sum(t.num_rows for t in tables) >= chunk_rows:
                    yield pa.concat_tables(tables)
                    tables = []
            if tables:
                yield pa.concat_tables(tables)

    def close(self) -> None:
        pass  # members are opened per read; nothing stays open

    def __enter__(self) -> DwcArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DwcArchive({str(self.path)!r}, kind={self.kind})"


def open_archive(path: str | Path) -> DwcArchive:
    """Open a GBIF download zip (DWCA or SIMPLE_CSV); DwcaError with the fix when it cannot be used."""
    return DwcArchive(path)


@lru_cache(maxsize=64)
def _pyarrow_encoding(encoding: str, archive: str, location: str) -> str:
    norm = encoding.strip().lower().replace("_", "-")
    if norm in ("utf-8", "utf8", ""):
        return "utf8"
    try:
        codecs.lookup(norm)
    except LookupError:
        raise DwcaError(
            f"archive {archive}: meta.xml declares the unknown encoding {encoding!r} for {location}"
        ) from None
    return norm


def _coalesce(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Gather small CSV batches (one per 1 MiB block) into tables of about ``rows`` rows."""
    pending: list[pa.RecordBatch] = []
    count = 0
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            count += batch.num_rows
            if count >= rows:
                yield pa.Table.from_batches(pending).combine_chunks()
                pending, count = [], 0
        if pending:
            yield pa.Table.from_batches(pending).combine_chunks()
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------------------------------------------
# value conversion (vectorised; shared by the archive and the search-API paths)
# ---------------------------------------------------------------------------------------------------
Column = pa.Array | pa.ChunkedArray


def _replace_invalid_utf8(chunk: pa.Array) -> tuple[pa.Array, int]:
    replaced = 0
    values = []
    for value in chunk.to_pylist():
        if value is None:
            values.append(None)
            continue
        try:
            values.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(value.decode("utf-8", "replace"))
            replaced += 1
    return pa.array(values, pa.string()), replaced


def as_strings(arr: Column, problems: _RowProblems | None = None, where: str = "") -> Column:
    """binary -> string; invalid UTF-8 is replaced by U+FFFD and counted (per file) in ``problems``.

    Chunked columns stay chunked: combining chunks copies every byte, which costs more than the
    conversions themselves.
    """
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    fixed = []
    for chunk in chunks:
        try:
            fixed.append(chunk.cast(pa.string()))
        except pa.ArrowInvalid:
            good, replaced = _replace_invalid_utf8(chunk)
            fixed.append(good)
            if problems is not None:
                problems.replaced_utf8[where] += replaced
    return pa.chunked_array(fixed, pa.string()) if isinstance(arr, pa.ChunkedArray) else fixed[0]


_NULL_STR = pa.scalar(None, pa.string())


def to_int(arr: Column, typ: pa.DataType | None = None) -> Column:
    """Integers from text; '28417.0' -> 28417; anything else (or out of range) -> null."""
    typ = typ or pa.int64()
    arr = as_strings(arr)
    try:
        return pc.cast(arr, typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pc.replace_substring_regex(pc.utf8_trim_whitespace(arr), r"\.0*$", "")
    text = pc.if_else(pc.match_substring_regex(text, r"^[+-]?\d{1,18}$"), text, _NULL_STR)
    wide = pc.cast(text, pa.int64())
    if typ == pa.int64():
        return wide
    info = np.iinfo(typ.to_pandas_dtype())
    in_range = pc.and_(pc.greater_equal(wide, int(info.min)), pc.less_equal(wide, int(info.max)))
    return pc.cast(pc.if_else(in_range, wide, pa.scalar(None, pa.int64())), typ)


def to_float(arr: Column) -> Column:
    arr = as_strings(arr)
    try:
        return pc.cast(arr, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    trimmed = pc.utf8_trim_whitespace(arr)
    numeric = pc.match_substring_regex(trimmed, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    return pc.cast(pc.if_else(numeric, trimmed, _NULL_STR), pa.float64())


def _via_distinct(arr: Column, mapper: Callable[[pa.Array], pa.Array]) -> Column:
    """Apply ``mapper`` to the distinct values only and gather the results (columns such as the
    issue list or the licence repeat a few hundred values over millions of rows)."""
    encoded = pc.dictionary_encode(arr)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    if not chunks:
        return mapper(arr)
    mapped = mapper(chunks[0].dictionary)  # dictionary_encode unifies the dictionary over chunks
    out = [mapped.take(chunk.indices) for chunk in chunks]
    return pa.chunked_array(out, mapped.type) if isinstance(encoded, pa.ChunkedArray) else out[0]


def _split_issues(values: pa.Array) -> pa.Array:
    lists = pc.split_pattern(values, ";")
    # rebuilding from offsets turns null entries (no issue) into empty lists, as the API has them
    return pa.ListArray.from_arrays(lists.offsets, lists.values)


def to_issue_lists(arr: Column) -> Column:
    """';'-joined issue names -> list<string>, empty list for none (as the search API has it)."""
    arr = as_strings(arr)
    lists = _via_distinct(arr, _split_issues)
    return (
        pc.if_else(pc.is_null(lists), pa.scalar([], pa.list_(pa.string())), lists)
        if lists.null_count
        else lists
    )


@lru_cache(maxsize=4096)
def _license_enum(value: str) -> str:
    text = value.strip()
    upper = re.sub(r"[\s.-]", "_", text.upper())
    if upper in GBIF_LICENSE_ENUMS:
        return upper
    return gbif_license_enum(normalize_license(text)) or ("UNSPECIFIED" if not text else "UNSUPPORTED")


def _license_enum_array(values: pa.Array) -> pa.Array:
    return pa.array([None if v is None else _license_enum(v) for v in values.to_pylist()], pa.string())


def license_enum_names(values: Column | Sequence[str | None]) -> Column:
    """Record licences as GBIF enum names: archives already carry them (``CC_BY_4_0``); the search
    API gives legalcode URLs. Unreadable values become ``UNSUPPORTED``; missing ones stay null."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, pa.string())
    return _via_distinct(as_strings(values), _license_enum_array)


def parse_ids(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ids, valid mask) from a gbifID column, tolerating stray whitespace ('  123 ')."""
    if pa.types.is_integer(arr.type):
        ints = arr.cast(pa.int64())
    else:
        text = as_strings(arr)
        try:
            ints = pc.cast(text, pa.int64())
        except pa.ArrowInvalid:
            ints = to_int(text)
    valid = ~np.asarray(ints.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    ids = ints.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return ids, valid


def _converter(f: pa.Field) -> Callable[[pa.Array], pa.Array]:
    if f.name == "issues":
        return to_issue_lists
    if f.name == "license":
        return license_enum_names
    if pa.types.is_integer(f.type):
        return lambda a, t=f.type: to_int(a, t)
    if pa.types.is_floating(f.type):
        return to_float
    return as_strings


def convert_occurrences(
    raw: pa.Table | pa.RecordBatch,
    sources: dict[str, str],
    problems: _RowProblems | None = None,
    where: str = "",
    *,
    ids: np.ndarray | None = None,
) -> pa.Table:
    """Raw (binary) archive columns -> a typed :data:`OCCURRENCE_SCHEMA` table."""
    n = raw.num_rows
    columns = []
    for f in OCCURRENCE_SCHEMA:
        src = sources.get(f.name)
        if f.name == "gbifID" and ids is not None:
            columns.append(pa.array(ids, pa.int64()))
        elif src is None:
            columns.append(pa.array([[]] * n, f.type) if f.name == "issues" else pa.nulls(n, f.type))
        else:
            col = as_strings(raw.column(src), problems, where)
            columns.append(_converter(f)(col))
    return pa.Table.from_arrays(columns, schema=OCCURRENCE_SCHEMA)


# ---------------------------------------------------------------------------------------------------
# media rows and the join
# ---------------------------------------------------------------------------------------------------
def _distinct_flags(arr: Column, test: Callable[[pa.Array], pa.Array]) -> np.ndarray:
    """``test`` (string array -> bool array) on the distinct values only, as a numpy bool mask."""
    flags = _via_distinct(arr, test)
    return np.asarray(pc.fill_null(flags, False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_image_type(values: pa.Array) -> pa.Array:
    return pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)), value_set=pa.array(_IMAGE_TYPES))


def _is_blank(values: pa.Array) -> pa.Array:
    return pc.equal(pc.utf8_trim_whitespace(values), "")


def _is_image_format(values: pa.Array) -> pa.Array:
    return pc.starts_with(pc.utf8_trim_whitespace(values), "image/", ignore_case=True)


def classify_media(type_: Column, format_: Column, identifier: Column) -> np.ndarray:
    """Reason codes per media row: 0 keep, 1 no_url, 2 not_image (first failing check wins).

    Kept: an ``http(s)://`` identifier and type StillImage (or no type and an ``image/*`` format).
    ``type`` and ``format`` have a handful of distinct values, so they are tested once each.
    """
    url = pc.or_(
        pc.starts_with(identifier, "http://", ignore_case=True),
        pc.starts_with(identifier, "https://", ignore_case=True),
    )
    has_url = np.asarray(pc.fill_null(url, False).to_numpy(zero_copy_only=False), dtype=bool)
    image_type = _distinct_flags(type_, _is_image_type)
    no_type = np.asarray(type_.is_null().to_numpy(zero_copy_only=False), dtype=bool) | _distinct_flags(
        type_, _is_blank
    )
    image_format = _distinct_flags(format_, _is_image_format)
    is_image = image_type | (no_type & image_format)
    return np.where(~has_url, 1, np.where(is_image, 0, 2)).astype(np.uint8)


def raw_media_table(
    ids: np.ndarray,
    rownum: np.ndarray,
    columns: dict[str, pa.Array],
    problems: _RowProblems | None = None,
    where: str = "",
) -> tuple[pa.Table, Counter]:
    """The in-between media table (MEDIA_RAW_SCHEMA) plus skip counts, from string/binary columns."""
    n = len(ids)
    strings = {
        c: as_strings(columns[c], problems, where) if c in columns else pa.nulls(n, pa.string())
        for c in MEDIA_SOURCE_COLUMNS
    }
    strings["identifier"] = pc.utf8_trim_whitespace(strings["identifier"])
    reason = classify_media(strings["type"], strings["format"], strings["identifier"])
    counts = Counter({name: int((reason == code).sum()) for code, name in _REASON_CODES.items() if name})
    table = pa.Table.from_arrays(
        [pa.array(ids, pa.int64()), pa.array(rownum, pa.int64()), pa.array(reason, pa.uint8())]
        + [strings[c] for c in MEDIA_SOURCE_COLUMNS if c != "type"],
        schema=MEDIA_RAW_SCHEMA,
    )
    return table, counts


@dataclass
class MediaSide:
    """Kept media rows, ready to join: their gbifIDs sorted (``ids``) and where each sits in ``table``.

    ``table`` (:data:`MEDIA_SCHEMA`) keeps the rows in file order, one contiguous array per column;
    ``rows[i]`` is the table row of the i-th sorted id. Sorting only the ids and a permutation
    instead of every string column saves a gather of all the media strings: the join gathers the
    rows it needs from the table once anyway.
    """

    ids: np.ndarray
    table: pa.Table
    matched: np.ndarray
    rows: np.ndarray

    @classmethod
    def build(cls, raw: pa.Table | list[pa.Table]) -> MediaSide:
        """Sort by (gbifID, file order), number items within their occurrence, keep the images.

        ``media_index`` counts every media row of the occurrence (skipped ones too), so it is the
        item's position in GBIF's list for that record and does not shift when a filter changes.
        A list of tables is consumed (emptied): columns are then combined one at a time and each
        original is released right after, so peak memory is the media table plus one column.
        """
        tables = raw if isinstance(raw, list) else [raw]
        schema = tables[0].schema if tables else MEDIA_RAW_SCHEMA
        columns = {
            name: pa.chunked_array(
                [c for t in tables for c in t.column(name).chunks], schema.field(name).type
            )
            for name in schema.names
        }
        if isinstance(raw, list):
            raw.clear()
        del tables, raw
        n = len(columns["gbifID"])
        if n == 0:
            empty = np.empty(0, np.int64)
            return cls(empty, MEDIA_SCHEMA.empty_table(), np.empty(0, bool), empty)
        ids = columns.pop("gbifID").to_numpy()
        order = np.lexsort((columns.pop("rownum").to_numpy(), ids))
        sorted_ids = ids[order]
        del ids
        positions = np.arange(n)
        starts = np.ones(n, dtype=bool)
        starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
        media_index = np.empty(n, np.int32)
        media_index[order] = positions - np.maximum.accumulate(np.where(starts, positions, 0))
        keep = columns.pop("reason").to_numpy()[order] == 0
        del positions, starts
        # one contiguous array per column (a take from many chunks concatenates them on every
        # call); two columns at a time, as the copies are mostly first touches of fresh memory
        with ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="dwca-media") as pool:
            combined = pool.map(lambda name: (name, columns.pop(name).combine_chunks()), list(columns))
            whole: dict[str, pa.Array] = dict(combined)
            licenses = normalize_licenses(whole["license"])
        license_raw = whole["license"]
        table = pa.Table.from_arrays(
            [
                pa.array(media_index),
                whole["identifier"],
                whole["format"],
                licenses,
                license_raw,
                whole["rightsHolder"],
                whole["creator"],
                whole["publisher"],
                whole["references"],
                whole["title"],
            ],
            schema=MEDIA_SCHEMA,
        )
        return cls(sorted_ids[keep], table, np.zeros(int(keep.sum()), dtype=bool), order[keep])

    def match(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(left, counts): where each id's media start in ``self.ids`` and how many it has."""
        left = np.searchsorted(self.ids, ids, side="left")
        counts = np.searchsorted(self.ids, ids, side="right") - left
        return left, counts

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Which ``ids`` have at least one kept media item (one binary search per id)."""
        return _members_of(self.ids, ids)

    def gather(self, media_idx: np.ndarray) -> pa.Table:
        """The table rows of sorted positions ``media_idx`` (from :func:`join_indices`)."""
        return self.table.take(pa.array(self.rows[media_idx]))

    @property
    def orphans(self) -> int:
        return int((~self.matched).sum())


def join_indices(
    ids: np.ndarray, media: MediaSide, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(occurrence row, media position) pairs of the inner join, occurrence order then media order.

    Marks the matched media rows (for the orphan count). Parse threads call this concurrently:
    they only ever set marks to True, so interleaved writes cannot lose one."""
    left, counts = media.match(ids)
    if valid is not None:
        counts[~valid] = 0
    total = int(counts.sum())
    occ_idx = np.repeat(np.arange(len(ids)), counts)
    block_start = np.cumsum(counts) - counts
    media_idx = np.arange(total) + np.repeat(left - block_start, counts)
    media.matched[media_idx] = True
    return occ_idx, media_idx


def _combine(occurrences: pa.Table, media: MediaSide, media_idx: np.ndarray) -> pa.Table:
    med = media.gather(media_idx)
    return pa.Table.from_arrays(occurrences.columns + med.columns, schema=SNAPSHOT_SCHEMA)


def join_media(occurrences: pa.Table, media: MediaSide) -> pa.Table:
    """Inner join of typed occurrences with their media: one SNAPSHOT_SCHEMA row per media item."""
    occ_idx, media_idx = join_indices(occurrences.column("gbifID").to_numpy(), media)
    if len(occ_idx) == 0:
        return SNAPSHOT_SCHEMA.empty_table()
    return _combine(occurrences.take(pa.array(occ_idx)), media, media_idx)


# ---------------------------------------------------------------------------------------------------
# archive -> snapshot Parquet
# ---------------------------------------------------------------------------------------------------
@dataclass
class IngestReport:
    """What an archive ingest read, kept and skipped (feeds snapshot.json and the CLI summary)."""

    archive: str
    kind: str = "DWCA"
    occurrences: int = 0  # core rows with a valid gbifID
    occurrences_with_media: int = 0
    media_rows: int = 0  # multimedia rows read
    media: int = 0  # snapshot rows written
    species: int = 0
    skipped: Counter = field(default_factory=Counter)
    bad_row_numbers: dict[str, list[int]] = field(default_factory=dict)
    replaced_utf8: dict[str, int] = field(default_factory=dict)
    ignored_members: list[tuple[str, str]] = field(default_factory=list)
    metadata: ArchiveMetadata = field(default_factory=ArchiveMetadata)
    buckets: int = 1
    block_size: int = DEFAULT_BLOCK_SIZE
    seconds: float = 0.0

    @property
    def occurrences_without_media(self) -> int:
        return self.occurrences - self.occurrences_with_media

    def skipped_counts(self) -> dict[str, int]:
        return {reason: int(self.skipped.get(reason, 0)) for reason in SKIP_REASONS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "kind": self.kind,
            "occurrences": self.occurrences,
            "occurrences_with_media": self.occurrences_with_media,
            "occurrences_without_media": self.occurrences_without_media,
            "media_rows": self.media_rows,
            "media": self.media,
            "species": self.species,
            "skipped": self.skipped_counts(),
            "bad_rows": {k: v for k, v in self.bad_row_numbers.items() if v},
            "replaced_utf8": {k: v for k, v in self.replaced_utf8.items() if v},
            "ignored_members": [f"{name} ({why})" for name, why in self.ignored_members],
            "metadata": self.metadata.as_dict(),
            "buckets": self.buckets,
            "seconds": round(self.seconds, 3),
        }


#: columns whose values repeat (taxa, datasets, vocabularies, licences, people): dictionary-encoded.
#: The others (ids, URLs, coordinates, dates, titles) are nearly unique, so a dictionary only costs
#: CPU before Parquet falls back to plain encoding (~1/6 of the writer thread in a profile).
_DICTIONARY_COLUMNS = [
    f.name
    for f in SNAPSHOT_SCHEMA
    if f.name
    not in (
        "gbifID",
        "occurrenceID",
        "decimalLatitude",
        "decimalLongitude",
        "eventDate",
        "media_index",
        "identifier",
        "references",
        "title",
    )
]


#: columns with min/max statistics in the row groups (what readers filter on: keys, numbers and
#: short vocabularies); statistics over free text and URLs cost ~1/5 of the writer's CPU for nothing
_STATISTICS_COLUMNS = [
    f.name
    for f in SNAPSHOT_SCHEMA
    if not pa.types.is_string(f.type)
    or f.name
    in (
        "taxonRank",
        "datasetKey",
        "publishingOrgKey",
        "basisOfRecord",
        "occurrenceStatus",
        "countryCode",
        "license",
        "media_license",
    )
]


class SnapshotParquetWriter:
    """ParquetWriter in a background thread (encoding and zstd overlap with parsing)."""

    def __init__(self, path: Path):
        self._writer = pq.ParquetWriter(
            path,
            SNAPSHOT_SCHEMA,
            compression="zstd",
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=_STATISTICS_COLUMNS,
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)  # bounded: <= 2 chunks in flight
        self._error: BaseException | None = None
        self._species: set[int] = set()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self._thread = threading.Thread(target=self._run, name="dwca-parquet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            table = self._queue.get()
            if table is None:
                return
            if self._error is not None:
                continue
            try:
                self._writer.write_table(table)
            except BaseException as exc:
                self._error = exc

    def write(self, table: pa.Table) -> None:
        """Queue ``table``; small tables (one per parsed piece) are gathered to about
        ROW_GROUP_ROWS rows first, so row groups keep a useful size."""
        if self._error is not None:
            raise self._error
        if table.num_rows == 0:
            return
        species = table.column("speciesKey").drop_null().to_numpy()
        if len(species):
            self._species.update(np.unique(species).tolist())
        self.rows += table.num_rows
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._put_pending()

    def _put_pending(self) -> None:
        if self._pending:
            self._queue.put(pa.concat_tables(self._pending))  # zero-copy: the writer reads chunks
        self._pending, self._pending_rows = [], 0

    @property
    def species(self) -> int:
        return len(self._species)

    def close(self, raise_errors: bool = True) -> None:
        if raise_errors and self._error is None:
            self._put_pending()
        self._pending, self._pending_rows = [], 0
        self._queue.put(None)
        self._thread.join()
        try:
            self._writer.close()
        except BaseException:
            if raise_errors:
                raise
        if raise_errors and self._error is not None:
            raise self._error


class _Spill:
    """Per-bucket tables in temporary Arrow IPC files (used only when partitioning)."""

    def __init__(self, directory: Path, prefix: str, buckets: int, schema: pa.Schema):
        self.paths = [directory / f"{prefix}-{b:04d}.arrow" for b in range(buckets)]
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._schema = schema
        self._options = pa.ipc.IpcWriteOptions(compression="lz4")

    def append(self, table: pa.Table, buckets: np.ndarray) -> None:
        order = np.argsort(buckets, kind="stable")
        sorted_b = buckets[order]
        edges = np.flatnonzero(np.diff(sorted_b)) + 1
        for part in np.split(order, edges):
            if len(part) == 0:
                continue
            b = int(buckets[part[0]])
            writer = self._writers.get(b)
            if writer is None:
                writer = pa.ipc.new_stream(str(self.paths[b]), self._schema, options=self._options)
                self._writers[b] = writer
            writer.write_table(table.take(pa.array(part)))

    def finish(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def read(self, bucket: int) -> pa.Table:
        path = self.paths[bucket]
        if not path.exists():
            return self._schema.empty_table()
        with pa.ipc.open_stream(str(path)) as reader:
            table = reader.read_all()
        path.unlink()
        return table


def convert_to_snapshot(
    archive_path: str | Path,
    dest: str | Path,
    *,
    media_memory_budget: int = DEFAULT_MEDIA_MEMORY_BUDGET,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_block_size: int = MAX_BLOCK_SIZE,
    tmp_dir: str | Path | None = None,
) -> IngestReport:
    """Read a GBIF DWCA download and write its image media rows as snapshot Parquet to ``dest``.

    The file appears at ``dest`` only when the whole archive was read; any error leaves nothing.
    A line longer than ``block_size`` restarts the read with a 16x larger block, up to
    ``max_block_size``. Raises :class:`DwcaError` for archives that cannot give a snapshot.
    """
    dest = Path(dest)
    size = block_size
    while True:
        try:
            return _convert(Path(archive_path), dest, media_memory_budget, size, tmp_dir)
        except _RowTooLong as exc:
            if size >= max_block_size:
                raise DwcaError(
                    f"{exc} (even at {size} bytes); GBIF strips line breaks from values, so this file is "
                    "damaged or not a GBIF download"
                ) from None
            size = min(size * 16, max_block_size)
            log.info("%s; retrying with %d-byte blocks", exc, size)


def _convert(
    archive_path: Path, dest: Path, budget: int, block_size: int, tmp_dir: str | Path | None
) -> IngestReport:
    started = time.perf_counter()
    archive = open_archive(archive_path)
    report = IngestReport(archive=archive.name, kind=archive.kind, block_size=block_size)
    report.ignored_members = list(archive.ignored_members)
    report.metadata = archive.metadata
    if archive.kind == "SIMPLE_CSV":
        raise DwcaError(
            f"archive {archive.name} is SIMPLE_CSV and has no media URLs; request a DWCA download "
            "(source.format: DWCA)"
        )
    archive.require_occurrence_core()
    mm = archive.multimedia
    if mm is None:
        raise DwcaError(
            f"archive {archive.name} has no multimedia extension (multimedia.txt), so it carries no "
            "image URLs; request a DWCA download from GBIF (source.format: DWCA)"
        )
    mm_size = archive.member_size(mm)
    budget = max(1, budget)
    # One bucket: media in memory, occurrences streamed past it. Otherwise each bucket holds its
    # media and its converted occurrences in memory at join time, so the buckets are sized for
    # both (occurrences with media can be most of occurrence.txt).
    core_size = archive.member_size(archive.core)
    buckets = 1 if mm_size <= budget else math.ceil((mm_size + core_size) / budget)
    report.buckets = buckets
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer = SnapshotParquetWriter(part)
    try:
        try:
            with tempfile.TemporaryDirectory(prefix="gbifdl-dwca-", dir=tmp_dir) as tmp:
                if buckets == 1:
                    _join_in_memory(archive, mm, report, writer, block_size)
                else:
                    _join_partitioned(archive, mm, report, writer, block_size, buckets, Path(tmp))
        except BaseException:
            writer.close(raise_errors=False)
            raise
        writer.close(raise_errors=True)
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)
    report.media = writer.rows
    report.species = writer.species
    problems = archive.problems
    report.skipped["bad_row"] += sum(problems.bad_rows.values())
    report.bad_row_numbers = {k: list(v) for k, v in problems.bad_row_numbers.items() if v}
    report.replaced_utf8 = {k: int(v) for k, v in problems.replaced_utf8.items() if v}
    report.seconds = time.perf_counter() - started
    return report


def _read_media(
    archive: DwcArchive, mm: TextFile, report: IngestReport, block_size: int
) -> Iterator[tuple[np.ndarray, pa.Table]]:
    """(kept ids, raw media table) per piece of multimedia.txt, counting skips as it goes."""
    rownum = 0
    for location in mm.locations:
        names = archive.column_names(mm, location)
        if not names:  # an empty file: no media
            continue
        id_col = archive.gbif_id_column(mm, names)
        constant = mm.field_by_name("identifier")
        if "identifier" not in names and (constant is None or constant.default is None):
            raise DwcaError(
                f"archive {archive.name}: {location} has no identifier column "
                "(http://purl.org/dc/terms/identifier), so there are no image URLs to fetch"
            )

        def classify(raw: pa.Table, id_col: str = id_col, where: str = location) -> _Piece:
            piece = _Piece(rows=raw.num_rows)
            ids, valid = parse_ids(raw.column(id_col))
            rows = np.arange(raw.num_rows, dtype=np.int64)  # within the piece; made global in order
            piece.bad_ids = int((~valid).sum())
            if piece.bad_ids:
                raw = raw.filter(pa.array(valid))
                ids, rows = ids[valid], rows[valid]
            columns = {c: raw.column(c) for c in MEDIA_SOURCE_COLUMNS if c in raw.column_names}
            piece.table, piece.skipped = raw_media_table(ids, rows, columns, piece.problems, where)
            piece.ids = ids[piece.table.column("reason").to_numpy() == 0]
            return piece

        wanted = [id_col, *MEDIA_SOURCE_COLUMNS]
        for piece in archive._read_location(mm, location, names, wanted, block_size, classify):
            report.media_rows += piece.rows
            report.skipped["bad_id"] += piece.bad_ids
            report.skipped.update(piece.skipped)
            archive.problems.merge(piece.problems)
            table = piece.table
            assert table is not None and piece.ids is not None
            if rownum:
                table = table.set_column(1, "rownum", pc.add(table.column(1), pa.scalar(rownum, pa.int64())))
            rownum += piece.rows
            yield piece.ids, table


def _core_pieces(
    archive: DwcArchive,
    report: IngestReport,
    block_size: int,
    transform: Callable[[pa.Table, np.ndarray, np.ndarray, dict[str, str], _Piece], None],
    ready: threading.Event | None = None,
) -> Iterator[_Piece]:
    """Every piece of the core after ``transform(raw, ids, valid, sources, piece)`` ran on a parse
    thread; counts occurrences and bad ids in order."""
    for location in archive.core.locations:
        names = archive.column_names(archive.core, location)
        sources = archive.occurrence_sources(archive.core, names)

        def run(raw: pa.Table, sources: dict[str, str] = sources) -> _Piece:
            piece = _Piece(rows=raw.num_rows)
            ids, valid = parse_ids(raw.column(sources["gbifID"]))
            piece.bad_ids = int((~valid).sum())
            transform(raw, ids, valid, sources, piece)
            return piece

        wanted = list(dict.fromkeys(sources.values()))
        pieces = archive._read_location(archive.core, location, names, wanted, block_size, run, ready)
        for piece in pieces:
            report.skipped["bad_id"] += piece.bad_ids
            report.occurrences += piece.rows - piece.bad_ids
            report.occurrences_with_media += piece.with_media
            archive.problems.merge(piece.problems)
            yield piece


def _join_in_memory(
    archive: DwcArchive, mm: TextFile, report: IngestReport, writer: SnapshotParquetWriter, block_size: int
) -> None:
    tables = [table for _, table in _read_media(archive, mm, report, block_size)]
    # The media side is built in the background while the first pieces of the core are parsed
    # (building it alone kept one core idle for about a tenth of the ingest).
    ready = threading.Event()
    builder = ThreadPoolExecutor(1, thread_name_prefix="dwca-media-build")
    built = builder.submit(MediaSide.build, tables)  # consumes the list
    built.add_done_callback(lambda _: ready.set())
    builder.shutdown(wait=False)
    where = archive.core.location

    def join(
        raw: pa.Table, ids: np.ndarray, valid: np.ndarray, sources: dict[str, str], piece: _Piece
    ) -> None:
        media = built.result()  # raises what the build raised
        occ_idx, media_idx = join_indices(ids, media, valid)
        if len(occ_idx) == 0:
            return
        piece.with_media = int(np.count_nonzero(np.diff(occ_idx, prepend=-1)))
        # gather the raw rows once (an occurrence repeats per image) and convert those: cheaper
        # than filtering, converting, then gathering the converted rows again
        rows = raw.take(pa.array(occ_idx))
        occ = convert_occurrences(rows, sources, piece.problems, where, ids=ids[occ_idx])
        piece.table = _combine(occ, media, media_idx)

    for piece in _core_pieces(archive, report, block_size, join, ready):
        for table in piece.tables():
            writer.write(table)
    report.skipped["orphan"] += built.result().orphans
    _check_core_ids(archive, report)


def _join_partitioned(
    archive: DwcArchive,
    mm: TextFile,
    report: IngestReport,
    writer: SnapshotParquetWriter,
    block_size: int,
    buckets: int,
    tmp: Path,
) -> None:
    media_spill = _Spill(tmp, "media", buckets, MEDIA_RAW_SCHEMA)
    kept_ids = []
    pending = _Pending(media_spill, buckets)
    for kept, table in _read_media(archive, mm, report, block_size):
        kept_ids.append(kept)
        pending.add(table, table.column("gbifID").to_numpy())
    pending.flush()
    media_spill.finish()
    all_ids = np.unique(np.concatenate(kept_ids)) if kept_ids else np.empty(0, np.int64)
    del kept_ids
    occ_spill = _Spill(tmp, "occ", buckets, OCCURRENCE_SCHEMA)
    where = archive.core.location

    def convert(
        raw: pa.Table, ids: np.ndarray, valid: np.ndarray, sources: dict[str, str], piece: _Piece
    ) -> None:
        has = _members_of(all_ids, ids) & valid
        piece.with_media = int(has.sum())
        if piece.with_media:
            piece.ids = ids[has]
            occ = convert_occurrences(
                raw.filter(pa.array(has)), sources, piece.problems, where, ids=piece.ids
            )
            piece.table = occ

    pending = _Pending(occ_spill, buckets)
    for piece in _core_pieces(archive, report, block_size, convert):
        if piece.table is not None and piece.ids is not None:
            pending.add(piece.table, piece.ids)
    pending.flush()
    occ_spill.finish()
    all_ids = all_ids[:0]  # release it (the closure above still refers to the name)
    for b in range(buckets):
        media = MediaSide.build([media_spill.read(b)])  # consumed: the raw bucket is freed early
        occ = occ_spill.read(b)
        for start in range(0, occ.num_rows, ROW_GROUP_ROWS):
            writer.write(join_media(occ.slice(start, ROW_GROUP_ROWS), media))
        report.skipped["orphan"] += media.orphans
        del media, occ
        pa.default_memory_pool().release_unused()
    _check_core_ids(archive, report)


class _Pending:
    """Per-piece tables gathered to about CHUNK_ROWS rows before they are spilled by gbifID bucket
    (a spill write per piece and bucket would make thousands of tiny IPC batches)."""

    def __init__(self, spill: _Spill, buckets: int):
        self._spill = spill
        self._buckets = buckets
        self._tables: list[pa.Table] = []
        self._ids: list[np.ndarray] = []
        self._rows = 0

    def add(self, table: pa.Table, ids: np.ndarray) -> None:
        self._tables.append(table)
        self._ids.append(ids)
        self._rows += table.num_rows
        if self._rows >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            ids = np.concatenate(self._ids)
            self._spill.append(pa.concat_tables(self._tables).combine_chunks(), ids % self._buckets)
        self._tables, self._ids, self._rows = [], [], 0


def _members_of(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``ids`` occur in the sorted array ``sorted_ids``."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids


def _check_core_ids(archive: DwcArchive, report: IngestReport) -> None:
    if report.occurrences == 0 and report.skipped.get("bad_id", 0) > 0:
        raise DwcaError(
            f"archive {archive.name}: no row of {archive.core.location} has an integer gbifID "
            f"({report.skipped['bad_id']} rows skipped); it is not a GBIF occurrence download"
        )
