"""A manifest written a part (row group) at a time is the manifest built in one table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.sampling.assemble import label_names
from gbifdl_assets.sampling.manifest import (
    MANIFEST_SCHEMA,
    build_manifest,
    pick_manifest,
    pick_manifest_from_parquet,
)
from gbifdl_assets.sampling.picked import CHECK_COLUMNS
from gbifdl_assets_tests.unit.test_sampling_manifest import snapshot, spec


def _without_timings(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k != "timings"}


@pytest.mark.parametrize("group_by", ["occurrence", "observer", "location", "dataset"])
def test_parts_written_are_the_table_built_in_one(tmp_path: Path, group_by: str) -> None:
    table = snapshot()
    s = spec(
        splits={"group_by": group_by},
        balancing={"max_per_class": 40, "min_per_class": 10, "by": ["publishingOrgKey"]},
    )
    whole = build_manifest(table, s, snapshot_id="x")
    picked = pick_manifest(table, s, snapshot_id="x")
    out = tmp_path / "manifest.parquet"
    checks = picked.write(out, part_rows=7)
    back = pq.read_table(out)
    assert back.schema.equals(MANIFEST_SCHEMA)
    assert back.equals(whole.table)
    assert pq.ParquetFile(out).metadata.num_row_groups == math.ceil(whole.table.num_rows / 7)
    assert checks.column_names == list(CHECK_COLUMNS)
    for column in CHECK_COLUMNS:
        assert checks.column(column).equals(whole.table.column(column)), column
    assert _without_timings(picked.stats) == _without_timings(whole.stats)
    assert {"assemble_s", "write_s", "total_s"} <= set(picked.stats["timings"])


def test_parts_from_parquet_and_into_an_open_file(tmp_path: Path) -> None:
    table = snapshot(seed=4)
    src = tmp_path / "snapshot.parquet"
    pq.write_table(table, src, row_group_size=500)
    s = spec()
    whole = build_manifest(table, s, snapshot_id="x")
    picked = pick_manifest_from_parquet(src, s, snapshot_id="x", batch_rows=333)
    assert picked.rows == whole.table.num_rows
    out = tmp_path / "manifest.parquet"
    with out.open("wb") as fh:
        picked.write(fh, part_rows=50)
        assert not fh.closed  # the caller's handle (a storage's atomic write) is left to the caller
    assert pq.read_table(out).equals(whole.table)


def test_a_class_without_any_name_gets_no_name() -> None:
    """The pandas version raised ArrowTypeError here (a NaN where a name was expected)."""
    labels = np.array([1, 1, 2, 2, 2, 3], np.int64)
    names = pa.array(["b", "a", None, None, None, "c"])
    assert label_names(labels, names).to_pylist() == ["a", "a", None, None, None, "c"]
    ties_and_counts = pa.array(["z", "y", "y", "x", "x", "c"]).dictionary_encode()
    assert label_names(labels, ties_and_counts).to_pylist() == ["y", "y", "x", "x", "x", "c"]
