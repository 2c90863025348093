"""Archive -> snapshot Parquet: :func:`convert_to_snapshot` and the two joins behind it.

One bucket when multimedia.txt fits the memory budget (media in memory, occurrences streamed past
it); otherwise both sides are partitioned by gbifID into spilled buckets and joined bucket by bucket.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.gbif.dwca.archive import DwcArchive, open_archive
from gbifdl_assets.gbif.dwca.convert import convert_occurrences, parse_ids
from gbifdl_assets.gbif.dwca.errors import DwcaError, RowTooLong
from gbifdl_assets.gbif.dwca.join import (
    MediaSide,
    isin_sorted,
    join_indices,
    join_media,
    raw_media_table,
    snapshot_rows,
)
from gbifdl_assets.gbif.dwca.meta import ArchiveMetadata, TextFile
from gbifdl_assets.gbif.dwca.parse import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, Piece
from gbifdl_assets.gbif.dwca.schema import MEDIA_RAW_SCHEMA, MEDIA_SOURCE_COLUMNS, OCCURRENCE_SCHEMA
from gbifdl_assets.gbif.dwca.spill import Spill, SpillBuffer
from gbifdl_assets.gbif.dwca.writer import ROW_GROUP_ROWS, SnapshotParquetWriter

log = logging.getLogger("gbifdl_assets.gbif.dwca")  # one logger name for the whole reader

#: multimedia.txt up to this many (uncompressed) bytes is joined in memory; larger is partitioned
DEFAULT_MEDIA_MEMORY_BUDGET = 512 << 20
SKIP_REASONS = ("no_url", "not_image", "orphan", "bad_row", "bad_id", "duplicate")


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
        except RowTooLong as exc:
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

        def classify(raw: pa.Table, id_col: str = id_col, where: str = location) -> Piece:
            piece = Piece(rows=raw.num_rows)
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
        for piece in archive.read_location(mm, location, names, wanted, block_size, classify):
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
    transform: Callable[[pa.Table, np.ndarray, np.ndarray, dict[str, str], str, Piece], None],
    ready: threading.Event | None = None,
) -> Iterator[Piece]:
    """:meth:`DwcArchive.core_pieces`, counting occurrences and bad ids in the report as they come."""
    for piece in archive.core_pieces(block_size, transform, ready):
        report.skipped["bad_id"] += piece.bad_ids
        report.occurrences += piece.rows - piece.bad_ids
        report.occurrences_with_media += piece.with_media
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

    def join(
        raw: pa.Table, ids: np.ndarray, valid: np.ndarray, sources: dict[str, str], where: str, piece: Piece
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
        piece.table = snapshot_rows(occ, media, media_idx)

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
    media_spill = Spill(tmp, "media", buckets, MEDIA_RAW_SCHEMA)
    kept_ids = []
    pending = SpillBuffer(media_spill, buckets)
    for kept, table in _read_media(archive, mm, report, block_size):
        kept_ids.append(kept)
        pending.add(table, table.column("gbifID").to_numpy())
    pending.flush()
    media_spill.finish()
    all_ids = np.unique(np.concatenate(kept_ids)) if kept_ids else np.empty(0, np.int64)
    del kept_ids
    occ_spill = Spill(tmp, "occ", buckets, OCCURRENCE_SCHEMA)

    def convert(
        raw: pa.Table, ids: np.ndarray, valid: np.ndarray, sources: dict[str, str], where: str, piece: Piece
    ) -> None:
        has = isin_sorted(all_ids, ids) & valid
        piece.with_media = int(has.sum())
        if piece.with_media:
            piece.ids = ids[has]
            occ = convert_occurrences(
                raw.filter(pa.array(has)), sources, piece.problems, where, ids=piece.ids
            )
            piece.table = occ

    pending = SpillBuffer(occ_spill, buckets)
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


def _check_core_ids(archive: DwcArchive, report: IngestReport) -> None:
    if report.occurrences == 0 and report.skipped.get("bad_id", 0) > 0:
        raise DwcaError(
            f"archive {archive.name}: no row of {archive.core.location} has an integer gbifID "
            f"({report.skipped['bad_id']} rows skipped); it is not a GBIF occurrence download"
        )
