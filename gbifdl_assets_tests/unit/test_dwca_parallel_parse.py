"""The DwC-A reader's parallel parse (parse.line_pieces + parse.parse_in_parallel) gives the same rows
and the same ragged-line numbers as pyarrow's one-stream reader, across many pieces; < 1 s."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from gbifdl_assets.gbif.dwca import DwcaError, parse
from gbifdl_assets.gbif.dwca.problems import MAX_REPORTED_ROWS, RowProblems


def _text(rows: int) -> bytes:
    lines = [b"gbifID\ttitle\tlicense"]
    for i in range(rows):
        if i % 997 == 13:
            lines.append(b"%d\tragged" % i)  # two fields instead of three
        elif i % 1009 == 7 or i % 4001 == 8:
            lines.append(b"")  # skipped (and left unnumbered by pyarrow), sometimes two in a row
        else:
            lines.append(b"%d\tt%s\tCC_BY_4_0" % (i, b"x" * (i % 50)))
    return b"\n".join(lines) + b"\n"


def _options(handler):
    return pcsv.ParseOptions(
        delimiter="\t", quote_char=False, double_quote=False, escape_char=False, ignore_empty_lines=True,
        invalid_row_handler=handler,
    )  # fmt: skip


@pytest.mark.parametrize("piece_bytes", [1 << 12, 1 << 16, 1 << 22])
def test_same_rows_and_ragged_line_numbers_as_one_stream(monkeypatch, piece_bytes) -> None:
    data = _text(40_000)
    names = ["gbifID", "title", "license"]
    convert = pcsv.ConvertOptions(column_types={c: pa.binary() for c in names}, strings_can_be_null=True)
    bad: list[int] = []  # the line numbers pyarrow's one-stream reader reports (the reader's old path)
    expected = pcsv.open_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(use_threads=False, skip_rows=1, column_names=names, block_size=1 << 14),
        parse_options=_options(lambda row: bad.append(row.number) or "skip"),
        convert_options=convert,
    ).read_all()
    monkeypatch.setattr(parse, "_PIECE_BYTES", piece_bytes)
    chunks = [data[i : i + 3001] for i in range(0, len(data), 3001)]  # chunk edges fall mid-line
    problems = RowProblems()
    batches = list(
        parse.parse_in_parallel(
            parse.line_pieces(chunks, 1, 1 << 20, "occurrence.txt"),
            names, 1 << 20, 1, _options, convert, problems, "occurrence.txt",
        )
    )  # fmt: skip
    got = pa.Table.from_batches(batches, expected.schema)
    assert got.equals(expected)
    # 41 ragged rows; the first (row 13) is line 13: the header, then rows 0-12 less the empty rows 7, 8
    assert len(bad) == 41 and bad[0] == 13
    assert problems.bad_rows["occurrence.txt"] == len(bad)
    assert problems.bad_row_numbers["occurrence.txt"] == bad[:MAX_REPORTED_ROWS]


def test_no_trailing_newline_and_header_only() -> None:
    assert list(parse.line_pieces([b"a\tb\n1\t2\n3\t4"], 1, 1 << 20, "x")) == [memoryview(b"1\t2\n3\t4")]
    assert list(parse.line_pieces([b"a\tb\n"], 1, 1 << 20, "x")) == []


def test_a_line_longer_than_the_block_is_refused_without_gathering_it() -> None:
    endless = (b"y" * 65536 for _ in range(100))  # 6.5 MB without a line end
    with pytest.raises(DwcaError, match="line longer than the CSV block of 1048576 bytes"):
        list(parse.line_pieces(endless, 1, 1 << 20, "multimedia.txt in a.zip"))


@pytest.mark.timeout(60)
def test_transform_waits_for_ready_then_every_piece_is_transformed_in_file_order(monkeypatch) -> None:
    """The join's transform needs the media side, built while the first pieces parse: pieces parsed
    before ``ready`` are kept, then transformed (never before ``ready``), and the output is unchanged."""
    import threading

    data = _text(40_000)
    names = ["gbifID", "title", "license"]
    convert = pcsv.ConvertOptions(column_types={c: pa.binary() for c in names}, strings_can_be_null=True)
    expected = pcsv.open_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(use_threads=False, skip_rows=1, column_names=names, block_size=1 << 14),
        parse_options=_options(lambda row: "skip"),
        convert_options=convert,
    ).read_all()
    monkeypatch.setattr(parse, "_PIECE_BYTES", 1 << 12)  # ~200 pieces
    ready = threading.Event()
    transformed: list[int] = []

    def transform(table: pa.Table) -> pa.Table:
        assert ready.is_set(), "transformed before the media side was ready"
        transformed.append(table.num_rows)
        return table

    def pieces():
        chunks = [data[i : i + 3001] for i in range(0, len(data), 3001)]
        for i, piece in enumerate(parse.line_pieces(chunks, 1, 1 << 20, "occurrence.txt")):
            if i == parse.PARSE_AHEAD // 2:  # the build finishes while pieces are parsed ahead
                ready.set()
            yield piece

    problems = RowProblems()
    tables = list(
        parse.parse_in_parallel(
            pieces(), names, 1 << 20, 1, _options, convert, problems, "occurrence.txt", transform, ready,
        )
    )  # fmt: skip
    assert len(tables) == len(transformed) > 100
    assert pa.concat_tables(tables).equals(expected)
    assert problems.bad_rows["occurrence.txt"] == 41 and problems.bad_row_numbers["occurrence.txt"][0] == 13


def test_piece_buffers_are_reused_once_parsed(monkeypatch) -> None:
    """Pieces are gathered into buffers handed back after the parse, so a long file reuses a few
    buffers instead of touching fresh memory for every piece."""
    monkeypatch.setattr(parse, "_PIECE_BYTES", 64)
    buffers = parse.PieceBuffers(keep=2)
    chunks = [b"a\tb\n", *(b"%d\tx\n" % i for i in range(500))]
    seen, pieces = set(), []
    for piece in parse.line_pieces(chunks, 1, 1 << 20, "x", buffers):
        seen.add(id(piece.obj))
        pieces.append(bytes(piece))
        buffers.give(piece)
    assert len(pieces) > 20 and b"".join(pieces) == b"".join(chunks[1:])
    assert len(seen) == 1  # each piece went back before the next was gathered
    outsized = buffers.take(3 * parse._PIECE_BYTES)
    buffers.give(outsized)  # a buffer for an unusually long line is not kept
    assert all(b.size <= 2 * parse._PIECE_BYTES for b in buffers._free)
    buffers.give(memoryview(b"1\tx\n"))  # a piece that is a chunk itself is left alone
    assert len(buffers._free) == 1


def test_importing_the_package_configures_arrows_allocator() -> None:
    """mimalloc reads its options when pyarrow loads: importing gbifdl_assets first must set them
    (a stale editable install once skipped the package's __init__ and with it these settings)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    env["MIMALLOC_VERBOSE"] = "1"
    code = "import gbifdl_assets, pyarrow as pa; pa.allocate_buffer(64)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "option 'allow_thp': 0" in out.stderr
    assert "option 'purge_delay': 10000" in out.stderr
