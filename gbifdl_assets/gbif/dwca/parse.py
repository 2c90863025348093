"""CSV parsing of inflated data files: line-aligned pieces parsed in parallel, block sizes, ragged rows.

GBIF data files are unquoted, so a newline always ends a row: the text is cut at line ends into
pieces that pyarrow parses on PARSE_THREADS threads, each piece optionally transformed (converted,
joined) on the thread that parsed it. Ragged lines are counted in :class:`RowProblems` with the
line numbers a one-stream parse would give.
"""

from __future__ import annotations

import collections
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from gbifdl_assets.gbif.dwca.errors import RowTooLong
from gbifdl_assets.gbif.dwca.problems import RowProblems

#: CSV blocks: 1 MiB parses fastest (cache-friendly); a line longer than a block forces a retry
#: with a 16x larger block, up to MAX_BLOCK_SIZE.
DEFAULT_BLOCK_SIZE = 1 << 20
MAX_BLOCK_SIZE = 256 << 20
#: raw CSV batches are gathered into chunks of about this many rows before converting/joining
CHUNK_ROWS = 131_072

#: inflated text is cut at line ends into pieces of about this size, parsed on PARSE_THREADS threads.
#: Each piece is then converted and joined by a few dozen Arrow calls whose fixed cost is paid per
#: piece: 16 MiB pieces took ~10 % less CPU than 4 MiB ones on the 2M-row archive.
_PIECE_BYTES = 16 << 20
PARSE_THREADS = 2
#: pieces parsed ahead while the transform waits for ``ready`` (the media side being built), ~100 MB
PARSE_AHEAD = 6


@dataclass
class _Deferred:
    """A parsed piece whose transform waits for ``ready`` (see :func:`parse_in_parallel`)."""

    table: pa.Table


class PieceBuffers:
    """Memory for the pieces, reused once a piece is parsed (pyarrow copies what it keeps).

    On these VMs first touches of fresh memory are expensive: gathering each piece into a new bytes
    object touched ~1.5 GB of fresh pages per 2 M occurrences and caused ~40 % of the ingest's page
    faults (perf, minor-faults). At most ``keep`` buffers are kept. They
    come from Arrow's allocator, which keeps freed memory a while (see gbifdl_assets/__init__.py).
    """

    def __init__(self, keep: int):
        self._free: list[pa.Buffer] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, size: int) -> memoryview:
        """A writable byte view of at least ``size`` bytes."""
        with self._lock:
            found = next((i for i, buf in enumerate(self._free) if buf.size >= size), None)
            if found is not None:
                return memoryview(self._free.pop(found)).cast("B")
        # a quarter more than a piece: a piece is _PIECE_BYTES plus the end of a line
        return memoryview(pa.allocate_buffer(max(size, _PIECE_BYTES + (_PIECE_BYTES >> 2)))).cast("B")

    def give(self, piece: memoryview) -> None:
        """Hand back the buffer under ``piece`` (a piece that is a chunk itself is left alone)."""
        buf = piece.obj
        if not isinstance(buf, pa.Buffer) or buf.size > 2 * _PIECE_BYTES:
            return  # an outsized buffer (a very long line) is not worth keeping
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)


def _drop_lines(chunks: Iterable[bytes], lines: int, block_size: int, label: str) -> Iterator[bytes]:
    """The chunks without their first ``lines`` lines (the header of a data file)."""
    line_bytes = 0  # of the line being dropped, so far
    for chunk in chunks:
        while lines and chunk:
            end = chunk.find(b"\n")
            line_bytes += len(chunk) if end < 0 else end
            if line_bytes > block_size:
                raise RowTooLong.of(label, block_size)
            chunk = chunk[end + 1 :] if end >= 0 else b""
            if end >= 0:
                lines, line_bytes = lines - 1, 0
        if chunk:
            yield chunk


def line_pieces(
    chunks: Iterable[bytes],
    header_lines: int,
    block_size: int,
    label: str,
    buffers: PieceBuffers | None = None,
) -> Iterator[memoryview]:
    """Inflated chunks regrouped into pieces of whole lines (about _PIECE_BYTES), header lines dropped.

    Pieces are gathered into ``buffers`` (hand each back with ``buffers.give(piece)`` once parsed);
    a chunk that is a whole piece by itself is passed on without a copy.
    """
    buffers = buffers or PieceBuffers(keep=0)
    carry = b""
    pending: list[bytes] = []
    size = 0
    source = _drop_lines(chunks, header_lines, block_size, label)
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
        total = len(carry) + size
        if total == 0:
            break
        cut = total if done else _after_last_line_end(pending, total)
        if not carry and len(pending) == 1:
            data: memoryview = memoryview(pending[0])
        else:
            data = buffers.take(total)
            pos = 0
            for part in (carry, *pending):
                data[pos : pos + len(part)] = part
                pos += len(part)
        pending, size = [], 0
        carry = bytes(data[cut:total])
        if cut:
            yield data[:cut]
        if len(carry) > block_size:  # no line end in sight: do not gather the line in memory
            raise RowTooLong.of(label, block_size)


def _after_last_line_end(parts: list[bytes], total: int) -> int:
    """Offset just past the last line end in ``parts`` (which end at ``total``); 0 when there is none."""
    end = total
    for part in reversed(parts):
        end -= len(part)
        found = part.rfind(b"\n")
        if found >= 0:
            return end + found + 1
    return 0


def parse_in_parallel(
    pieces: Iterable[memoryview],
    names: list[str],
    block_size: int,
    header_lines: int,
    parse_options: Callable[[Callable[[Any], str]], pcsv.ParseOptions],
    convert_options: pcsv.ConvertOptions,
    problems: RowProblems,
    location: str,
    transform: Callable[[pa.Table], Any] | None = None,
    ready: threading.Event | None = None,
    buffers: PieceBuffers | None = None,
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

    Each piece is handed back to ``buffers`` as soon as it is parsed.
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
        if buffers is not None:
            buffers.give(piece)
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


@dataclass
class Piece:
    """What a parse thread made of one piece of a data file (see :func:`parse_in_parallel`)."""

    rows: int = 0  # rows parsed (ragged lines are not rows)
    bad_ids: int = 0  # rows skipped for a gbifID that is not an integer
    with_media: int = 0  # occurrences with at least one kept media item
    table: pa.Table | None = None
    ids: np.ndarray | None = None  # gbifIDs of the rows of ``table`` (partitioned join, media)
    skipped: Counter = field(default_factory=Counter)
    problems: RowProblems = field(default_factory=RowProblems)

    def tables(self) -> list[pa.Table]:
        return [self.table] if self.table is not None and self.table.num_rows else []


def coalesce_batches(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
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
