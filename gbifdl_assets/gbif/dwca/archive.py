"""An opened download archive (DWCA or SIMPLE_CSV): its layout, its columns, and reading its data files."""

from __future__ import annotations

import codecs
import logging
import re
import threading
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from gbifdl_assets.gbif.dwca.convert import convert_occurrences, parse_ids
from gbifdl_assets.gbif.dwca.errors import DwcaError, RowTooLong
from gbifdl_assets.gbif.dwca.meta import (
    DOWNLOAD_KEY,
    GBIF,
    MAX_XML_BYTES,
    MULTIMEDIA_ROW_TYPES,
    OCCURRENCE_ROW_TYPE,
    ArchiveMetadata,
    TermField,
    TextFile,
    local_name,
    parse_meta_xml,
)
from gbifdl_assets.gbif.dwca.parse import (
    CHUNK_ROWS,
    DEFAULT_BLOCK_SIZE,
    MAX_BLOCK_SIZE,
    PARSE_THREADS,
    Piece,
    PieceBuffers,
    coalesce_batches,
    line_pieces,
    parse_in_parallel,
)
from gbifdl_assets.gbif.dwca.problems import RowProblems
from gbifdl_assets.gbif.dwca.schema import GBIF_ALIASES, OCCURRENCE_SOURCES
from gbifdl_assets.gbif.dwca.streams import ChunkStream, Prefetch
from gbifdl_assets.gbif.dwca.zipmembers import member_chunks, unsafe_reason

log = logging.getLogger("gbifdl_assets.gbif.dwca")  # one logger name for the whole reader

_DOI = re.compile(r"(10\.\d{4,9}/[^\s\"<>]+)")


#: how a zip file starts: a local file header, or the end record of an empty zip
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
#: what else a "download" sometimes is: first bytes -> what to call it
_LOOKS_LIKE = (
    (
        (b"<!doctype html", b"<html", b"<head", b"<body"),
        "an HTML page (an error or login page saved as the archive?)",
    ),
    ((b"<?xml", b"<"), "XML or HTML text"),
    ((b"{", b"["), "JSON (an API answer saved as the archive?)"),
    ((b"\x1f\x8b",), "a gzip file, not a zip"),
    ((b"gbifid\t", b"gbifid,"), "a bare table (an unzipped occurrence file?)"),
)


def not_a_zip(path: Path) -> str | None:
    """What the file at ``path`` is when it is not a zip at all (None: it starts like a zip)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    if not head:
        return "the file is empty (0 bytes)"
    if head.startswith(_ZIP_MAGIC):
        return None
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for starts, what in _LOOKS_LIKE:
        if lowered.startswith(starts):
            return f"it holds {what}"
    return f"it starts with {head[:8]!r}, not with a zip header"


class DwcArchive:
    """An opened download archive. Use :func:`open_archive`; close it (or use ``with``).

    ``kind`` is ``DWCA`` (a meta.xml describes the files) or ``SIMPLE_CSV`` (one tab-separated
    ``.csv`` with a header and no media URLs). Reading never extracts anything by member name.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name
        self.ignored_members: list[tuple[str, str]] = []
        self.problems = RowProblems()
        self.bad_ids = 0  # rows skipped by iter_occurrences for a gbifID that is not an integer
        if not self.path.is_file():
            raise DwcaError(f"archive {self.path} does not exist (or is not a file)")
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = zf.infolist()
        except zipfile.BadZipFile as exc:
            what = not_a_zip(self.path)
            if what is not None:
                raise DwcaError(
                    f"archive {self.name} is not a zip file: {what}; give the .zip of a GBIF DWCA "
                    "download (GET /occurrence/download/request/<key>.zip)"
                ) from None
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
            reason = unsafe_reason(name)
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
            key = DOWNLOAD_KEY.search(data[0])
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
        reason = unsafe_reason(location)
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
            if name is None or self._members[name].file_size > MAX_XML_BYTES:
                continue
            try:
                root = ET.fromstring(self.read_member(name))
            except (ET.ParseError, DwcaError):
                continue
            package = root.get("packageId") or ""
            if m := _DOI.search(package):
                meta.doi = m.group(1)
            for elem in root.iter():
                tag = local_name(elem.tag)
                text = (elem.text or "").strip()
                if tag == "alternateIdentifier" and text:
                    if (k := DOWNLOAD_KEY.fullmatch(text)) and not meta.download_key:
                        meta.download_key = k.group(1)
                    elif (d := _DOI.match(text)) and not meta.doi:
                        meta.doi = d.group(1)
                elif tag == "title" and text and not meta.title:
                    meta.title = text  # "GBIF Occurrence Download <key>"
                    if (k := DOWNLOAD_KEY.search(text)) and not meta.download_key:
                        meta.download_key = k.group(1)
            break
        name = self._resolve("citations.txt", must_exist=False)
        if name is not None and self._members[name].file_size < (1 << 20):
            for line in self.read_member(name).decode("utf-8", "replace").splitlines():
                if "GBIF.org" in line:
                    meta.citation = line.strip()
                    break
        if not meta.download_key and (k := DOWNLOAD_KEY.search(self.name)):
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
        if info.file_size > MAX_XML_BYTES:
            raise DwcaError(f"archive {self.name}: {name} is too large to read at once")
        return b"".join(member_chunks(self.path, info, f"{name} in {self.name}"))

    def _first_line(self, name: str, info: zipfile.ZipInfo, limit: int = MAX_BLOCK_SIZE) -> bytes:
        buf = bytearray()
        chunks = member_chunks(self.path, info, f"{name} in {self.name}")
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
        for target, candidates in OCCURRENCE_SOURCES.items():
            if target == "gbifID":
                continue
            for cand in candidates:
                constant = tf.field_by_name(cand)
                if cand in present or (constant is not None and constant.index is None and constant.default):
                    out[target] = cand  # a column, or a constant from a meta.xml default
                    break
            else:
                alias = GBIF_ALIASES.get(target)
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
            yield from self.read_location(tf, location, names, columns, block_size)

    def read_location(
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
        threads (see :func:`parse_in_parallel`), or about CHUNK_ROWS rows on the one-stream path
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

        chunks = Prefetch(member_chunks(self.path, self._members[name], label), depth=6, name="dwca-inflate")
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
                buffers = PieceBuffers(keep=PARSE_THREADS + 2)
                reader = parse_in_parallel(
                    line_pieces(chunks, tf.header_lines, block_size, label, buffers),
                    names,
                    block_size,
                    tf.header_lines,
                    parse_options,
                    convert_options,
                    self.problems,
                    location,
                    prepared,
                    ready,
                    buffers,
                )
                for out in reader:
                    if transform is None:
                        yield from out.to_batches()
                    else:
                        yield out
                return
            # quoted values may hold newlines; other encodings cannot be cut at b"\n"
            stream = ChunkStream(chunks)
            reader = Prefetch(
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
                for table in coalesce_batches(reader, CHUNK_ROWS):
                    if ready is not None:
                        ready.wait()
                    yield prepared(table)
        except pa.ArrowInvalid as exc:
            text = str(exc)
            if "straddl" in text or "block size" in text:
                raise RowTooLong.of(label, block_size) from None
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

        def convert(
            raw: pa.Table, ids: Any, valid: Any, sources: dict[str, str], where: str, piece: Piece
        ) -> None:
            if piece.bad_ids:
                raw = raw.filter(pa.array(valid))
                ids = ids[valid]
            piece.table = convert_occurrences(raw, sources, piece.problems, where, ids=ids)

        tables: list[pa.Table] = []
        rows = 0
        for piece in self.core_pieces(block_size, convert):
            self.bad_ids += piece.bad_ids
            for table in piece.tables():
                tables.append(table)
                rows += table.num_rows
            if rows >= chunk_rows:
                yield pa.concat_tables(tables)
                tables, rows = [], 0
        if tables:
            yield pa.concat_tables(tables)

    def core_pieces(
        self,
        block_size: int,
        transform: Callable[[pa.Table, Any, Any, dict[str, str], str, Piece], None],
        ready: threading.Event | None = None,
    ) -> Iterator[Piece]:
        """Every piece of the core, in file order, after ``transform(raw, ids, valid, sources,
        location, piece)`` ran on its parse thread: the gbifIDs are parsed and ``piece.rows`` and
        ``piece.bad_ids`` counted before it; what the transform counts in ``piece.problems`` is
        merged into :attr:`problems` here. ``ready``: see :func:`parse_in_parallel`."""
        for location in self.core.locations:
            names = self.column_names(self.core, location)
            sources = self.occurrence_sources(self.core, names)

            def run(raw: pa.Table, sources: dict[str, str] = sources, where: str = location) -> Piece:
                piece = Piece(rows=raw.num_rows)
                ids, valid = parse_ids(raw.column(sources["gbifID"]))
                piece.bad_ids = int((~valid).sum())
                transform(raw, ids, valid, sources, where, piece)
                return piece

            wanted = list(dict.fromkeys(sources.values()))
            for piece in self.read_location(self.core, location, names, wanted, block_size, run, ready):
                self.problems.merge(piece.problems)
                yield piece

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
