"""Splits by a stable hash of the group key: no group in two splits, stable under refresh."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.splits import assign_splits, group_keys
from gbifdl_assets.specs import SplitSpec


def make(n: int, seed: int = 0, *, images_per_occ: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    occ = np.arange(n) // images_per_occ
    observers = np.array([f"Observer {i}" for i in range(max(1, n // 40))])
    obs_of_occ = rng.integers(0, len(observers), occ.max() + 1)
    lat = rng.uniform(40, 60, occ.max() + 1)
    lon = rng.uniform(-10, 30, occ.max() + 1)
    datasets = np.array([f"ds-{i}" for i in range(50)])
    ds_of_occ = rng.integers(0, 50, occ.max() + 1)
    return pa.table(
        {
            "gbifID": pa.array(1000 + occ, pa.int64()),
            "recordedBy": pa.array(observers[obs_of_occ[occ]]),
            "decimalLatitude": pa.array(lat[occ]),
            "decimalLongitude": pa.array(lon[occ]),
            "datasetKey": pa.array(datasets[ds_of_occ[occ]]),
        }
    )


def splits(**fields: Any) -> SplitSpec:
    return SplitSpec.model_validate(fields)


def _leaks(groups: list[str], split: list[str]) -> int:
    seen: dict[str, set[str]] = {}
    for g, s in zip(groups, split, strict=True):
        seen.setdefault(g, set()).add(s)
    return sum(len(v) > 1 for v in seen.values())


@pytest.mark.parametrize("group_by", ["occurrence", "observer", "location", "dataset"])
def test_no_group_in_two_splits(group_by: str) -> None:
    table = make(30_000)
    result = assign_splits(table, splits(group_by=group_by, location_cell_degrees=0.5))
    split = result.split.to_pylist()
    assert _leaks(result.group.to_pylist(), split) == 0
    # the group column really is the group_by column
    raw = {
        "occurrence": table.column("gbifID").to_pylist(),
        "observer": [s.lower() for s in table.column("recordedBy").to_pylist()],
        "location": [
            (int((la + 90) // 0.5), int((lo + 180) // 0.5))
            for la, lo in zip(
                table.column("decimalLatitude").to_pylist(),
                table.column("decimalLongitude").to_pylist(),
                strict=True,
            )
        ],
        "dataset": table.column("datasetKey").to_pylist(),
    }[group_by]
    assert _leaks([str(x) for x in raw], split) == 0
    assert len(set(result.group.to_pylist())) == len(set(map(str, raw)))
    assert sum(result.counts.values()) == table.num_rows


def test_fractions_hold_on_many_groups() -> None:
    table = make(300_000, images_per_occ=1)
    result = assign_splits(table, splits(train=0.7, val=0.2, test=0.1))
    assert abs(result.fractions["train"] - 0.7) < 0.005
    assert abs(result.fractions["val"] - 0.2) < 0.005
    assert abs(result.fractions["test"] - 0.1) < 0.005
    assert result.group_counts == result.counts  # one image per occurrence
    none = assign_splits(table, splits(train=0.9, val=0.1, test=0.0))
    assert none.counts["test"] == 0


def test_refresh_keeps_every_image_in_its_split_and_seed_redraws() -> None:
    table = make(20_000)
    before = assign_splits(table, splits(group_by="observer"))
    bigger = pa.concat_tables([table, make(5_000, seed=9)])
    after = assign_splits(bigger, splits(group_by="observer"))
    assert after.split.to_pylist()[: table.num_rows] == before.split.to_pylist()
    shuffled = assign_splits(
        table.take(pa.array(np.arange(table.num_rows)[::-1])), splits(group_by="observer")
    )
    assert shuffled.split.to_pylist()[::-1] == before.split.to_pylist()
    reseeded = assign_splits(table, splits(group_by="observer", seed=1))
    assert reseeded.split.to_pylist() != before.split.to_pylist()


def test_observer_names_are_normalised_and_missing_values_fall_back_to_the_occurrence() -> None:
    table = pa.table(
        {
            "gbifID": pa.array([1, 2, 3, 4], pa.int64()),
            "recordedBy": pa.array(["Jane  Doe", " jane doe", None, ""]),
        }
    )
    h, text, fallback = group_keys(table, splits(group_by="observer"))
    assert h[0] == h[1]
    assert text.to_pylist() == ["recordedBy:jane doe", "recordedBy:jane doe", "gbifID:3", "gbifID:4"]
    assert fallback == 2


def test_missing_group_column_is_a_clear_error() -> None:
    with pytest.raises(
        SamplingError, match="group_by: location needs columns decimalLatitude, decimalLongitude"
    ):
        assign_splits(pa.table({"gbifID": pa.array([1], pa.int64())}), splits(group_by="location"))
