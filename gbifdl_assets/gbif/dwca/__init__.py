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

Modules (each imports only modules above it in this list, so there are no cycles):

* ``errors``: :class:`DwcaError` and the long-line retry signal (:class:`~.errors.RowTooLong`).
* ``meta``: meta.xml (:class:`TextFile`, :class:`TermField`, :func:`parse_meta_xml`), the
  vocabulary, and :class:`ArchiveMetadata`.
* ``zipmembers``: safe member names, streaming inflate with CRC/size checks.
* ``streams``: a read-ahead thread over an iterator, a readable file over byte chunks.
* ``problems``: ragged lines and replaced bytes, per file (:class:`~.problems.RowProblems`).
* ``parse``: line-aligned pieces parsed in parallel, block sizes.
* ``schema``: the occurrence and media halves of the snapshot schema and their archive columns.
* ``convert``: raw text to typed columns (also used by the search-API path).
* ``join``: which media rows are kept, :class:`MediaSide` and the join.
* ``archive``: :class:`DwcArchive` / :func:`open_archive`.
* ``writer``: :class:`SnapshotParquetWriter`.
* ``spill``: per-bucket temporary files of the partitioned join.
* ``ingest``: :func:`convert_to_snapshot` and :class:`IngestReport`.

Names without a leading underscore in these modules are the package's internal API (modules use
each other's); this ``__init__`` exports what callers outside the reader use. Tuning constants
(``PARSE_THREADS``, ``_PIECE_BYTES``, ...) are read from the module that defines them: patch them
there, not on this package.
"""

from __future__ import annotations

from gbifdl_assets.gbif.dwca.archive import DwcArchive, open_archive
from gbifdl_assets.gbif.dwca.convert import license_enum_names, to_float, to_int, to_issue_lists
from gbifdl_assets.gbif.dwca.errors import DwcaError
from gbifdl_assets.gbif.dwca.ingest import DEFAULT_MEDIA_MEMORY_BUDGET, IngestReport, convert_to_snapshot
from gbifdl_assets.gbif.dwca.join import MediaSide, join_indices, join_media, raw_media_table
from gbifdl_assets.gbif.dwca.meta import ArchiveMetadata, TermField, TextFile, parse_meta_xml
from gbifdl_assets.gbif.dwca.parse import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE
from gbifdl_assets.gbif.dwca.schema import MEDIA_SCHEMA, MEDIA_SOURCE_COLUMNS, OCCURRENCE_SCHEMA
from gbifdl_assets.gbif.dwca.writer import SnapshotParquetWriter

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MEDIA_MEMORY_BUDGET",
    "MAX_BLOCK_SIZE",
    "MEDIA_SCHEMA",
    "MEDIA_SOURCE_COLUMNS",
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
    "raw_media_table",
    "to_float",
    "to_int",
    "to_issue_lists",
]
