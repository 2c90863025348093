"""The manifest build's last pass through polars gives exactly the rows the pyarrow pass gives."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gbifdl_assets.sampling.polars_read import take_parquet_rows
from gbifdl_assets.sampling.source import ParquetSource, RowSource


def _table(n: int, offset: int = 0) -> pa.Table:
    rng = np.random.default_rng(offset)
    return pa.table(
        {
            "gbifID": pa.array(np.arange(offset, offset + n, dtype=np.int64)),
            "media_index": pa.array(rng.integers(0, 4, n).astype(np.int32)),
            "identifier": pa.array(
                [f"https://img.example/{offset + i}.jpg" if i % 17 else None for i in range(n)]
            ),
            "creator": pa.array([None if i % 5 == 0 else f"Jane Doe {i % 7} é" for i in range(n)]),
            "lat": pa.array([None if i % 9 == 0 else float(i) / 3 for i in range(n)], pa.float64()),
            "issues": pa.array(
                [["A", "B"][: i % 3] if i % 4 else None for i in range(n)], pa.list_(pa.string())
            ),
            "flag": pa.array([bool(i % 2) if i % 6 else None for i in range(n)], pa.bool_()),
        }
    )


def _both(source: ParquetSource, rows: np.ndarray, columns: list[str]) -> tuple[pa.Table, pa.Table]:
    return source.take(rows, columns), RowSource.take(source, rows, columns)


def test_polars_pass_equals_the_pyarrow_pass(tmp_path: Path) -> None:
    path = tmp_path / "snap.parquet"
    pq.write_table(_table(5000), path, row_group_size=700)
    source = ParquetSource(path, 1000)
    columns = ["identifier", "gbifID", "creator", "lat", "issues", "flag", "media_index"]
    rows = np.sort(np.random.default_rng(1).choice(5000, 600, replace=False))
    assert take_parquet_rows(source.files, source.schema, rows, columns) is not None
    fast, slow = _both(source, rows, columns)
    assert fast.schema == slow.schema
    assert fast.equals(slow.combine_chunks())
    assert fast.column("gbifID").to_pylist() == rows.tolist()


def test_folder_of_part_files_keeps_the_global_row_positions(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(_table(1200, 0), folder / "part-0.parquet")
    pq.write_table(_table(800, 1200), folder / "part-1.parquet")
    source = ParquetSource(folder, 500)
    rows = np.array([0, 5, 1199, 1200, 1201, 1999])
    fast, slow = _both(source, rows, ["gbifID", "identifier"])
    assert fast.equals(slow.combine_chunks())
    assert fast.column("gbifID").to_pylist() == rows.tolist()


def test_inputs_polars_would_change_fall_back_to_pyarrow(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(_table(300, 0), folder / "part-0.parquet")
    pq.write_table(_table(300, 300).drop_columns(["creator"]), folder / "part-1.parquet")
    source = ParquetSource(folder, 100)
    rows = np.array([1, 299, 300, 599])
    assert take_parquet_rows(source.files, source.schema, rows, ["gbifID", "creator"]) is None
    got = source.take(rows, ["gbifID", "creator"])  # the pyarrow pass fills the missing column
    assert got.column("creator").to_pylist()[2:] == [None, None]

    stamped = tmp_path / "stamped.parquet"
    table = _table(50).append_column(
        "eventDate", pa.array([dt.datetime(2020, 1, 1)] * 50, pa.timestamp("us"))
    )
    pq.write_table(table, stamped)
    source = ParquetSource(stamped, 10)
    assert take_parquet_rows(source.files, source.schema, np.array([3]), ["eventDate"]) is None
    assert source.take(np.array([3]), ["eventDate"]).column(0).to_pylist() == [dt.datetime(2020, 1, 1)]


def test_slices_of_the_input_read_as_one_and_dictionaries_hold_the_same_values(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(_table(1200, 0), folder / "part-0.parquet", row_group_size=250)
    pq.write_table(_table(800, 1200), folder / "part-1.parquet", row_group_size=250)
    source = ParquetSource(folder, 500)
    columns = ["identifier", "gbifID", "creator", "issues"]
    # slices of 300 rows: some hold no wanted row, one crosses the two files
    rows = np.array([0, 1, 299, 300, 1150, 1199, 1200, 1201, 1799, 1999])
    one = take_parquet_rows(source.files, source.schema, rows, columns)
    sliced = take_parquet_rows(source.files, source.schema, rows, columns, chunk_rows=300)
    assert one is not None and sliced is not None
    assert sliced.equals(one) and sliced.column("gbifID").to_pylist() == rows.tolist()
    encoded = take_parquet_rows(
        source.files, source.schema, rows, columns, chunk_rows=300, dictionary=("creator",)
    )
    assert pa.types.is_dictionary(encoded.schema.field("creator").type)
    assert encoded.column("creator").to_pylist() == one.column("creator").to_pylist()
    assert encoded.drop_columns(["creator"]).equals(one.drop_columns(["creator"]))
