"""The graph from species list to balanced manifest, through Dagster, against the sandbox."""

from __future__ import annotations

import dagster as dg
import pyarrow.compute as pc
import pytest

from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.gbif.licenses import parse_license_allowlist
from gbifdl_assets.pipeline.balanced_manifest import CHECKS, read_latest_manifest
from gbifdl_assets.storage import open_storage
from gbifdl_assets_tests.harness.manifest_graph import BUTTERFLIES_SPEC, materialize_to_manifest
from gbifdl_assets_tests.harness.markdown_tables import as_int, markdown_column, markdown_rows

pytestmark = pytest.mark.integration


def _checks(result) -> dict:
    return {
        c.check_name: c
        for c in result.get_asset_check_evaluations()
        if c.asset_key.path == ["balanced_manifest"]
    }


def test_manifest_is_exact_checked_and_reproducible(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "b.yaml").write_text(BUTTERFLIES_SPEC)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["butterflies"])
        result = materialize_to_manifest(sandbox, tmp_path, instance)
        assert result.success
        checks = {name: c.passed for name, c in _checks(result).items()}
        assert checks == dict.fromkeys(CHECKS, True)
        meta = result.asset_materializations_for_node("balanced_manifest")[0].metadata
        store = open_storage(str(tmp_path / "data"))
        first = read_latest_manifest(store, "butterflies")
        counts = first.group_by("label").aggregate([("url", "count")]).column("url_count").to_pylist()
        assert counts == [12] * meta["classes"].value  # exactly the cap for each species
        assert set(first.column("split").to_pylist()) <= {"train", "val", "test"}
        allowed = set(parse_license_allowlist(["CC0", "CC-BY", "CC-BY-SA", "CC-BY-NC"]))
        assert set(first.column("license").to_pylist()) <= allowed
        assert "ALL-RIGHTS-RESERVED" not in first.column("license").to_pylist()

        # same inputs, same seed: the same manifest (a second full run is a refresh of the same data)
        again = materialize_to_manifest(sandbox, tmp_path, instance)
        assert again.success
        second = read_latest_manifest(store, "butterflies")
        assert sorted(second.column("url").to_pylist()) == sorted(first.column("url").to_pylist())
        by_url = dict(zip(first.column("url").to_pylist(), first.column("split").to_pylist(), strict=True))
        assert all(
            by_url[u] == s
            for u, s in zip(second.column("url").to_pylist(), second.column("split").to_pylist(), strict=True)
        )
        assert pc.count_distinct(second.column("snapshot_id")).as_py() == 1


def test_a_download_sourced_manifest_balances_by_the_publisher_the_registry_gave(sandbox, tmp_path):
    """The sandbox's DWCA has no publishingOrgKey, like GBIF's: the default balancing by publisher
    works on the download path because the snapshot took the publisher from the registry, and the
    manifest equals the search-sourced one of the same query, publishers included."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "b.yaml").write_text(BUTTERFLIES_SPEC)
    (tmp_path / "specs" / "d.yaml").write_text(
        BUTTERFLIES_SPEC.replace("name: butterflies", "name: butterflies-dl").replace(
            "source: search", "source: download"
        )
    )
    store = open_storage(str(tmp_path / "data"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["butterflies", "butterflies-dl"])
        by_search = materialize_to_manifest(sandbox, tmp_path, instance)
        by_download = materialize_to_manifest(sandbox, tmp_path, instance, "butterflies-dl")
        assert by_search.success and by_download.success
        snapshot_meta = by_download.asset_materializations_for_node("occurrence_snapshot")[0].metadata
        assert snapshot_meta["source"].value == "download"
        assert snapshot_meta["rows_without_publisher"].value == 0
        checks = {name: c.passed for name, c in _checks(by_download).items()}
        assert checks == dict.fromkeys(CHECKS, True)
        meta = by_download.asset_materializations_for_node("balanced_manifest")[0].metadata
        (fill,) = markdown_rows(meta["strata_columns"].value)
        assert fill["column"] == "publishingOrgKey"
        assert fill["empty"] == "0" and as_int(fill["candidate rows"]) > 0
        assert meta["empty_strata_columns"].value == "none"
    search_manifest = read_latest_manifest(store, "butterflies")
    download_manifest = read_latest_manifest(store, "butterflies-dl")
    assert download_manifest.column("publisher").null_count == 0
    assert pc.count_distinct(download_manifest.column("stratum")).as_py() > 1

    def rows(m):
        return sorted(
            zip(*(m.column(c).to_pylist() for c in ("url", "publisher", "stratum", "split")), strict=True)
        )

    assert rows(download_manifest) == rows(search_manifest)


def test_balancing_by_an_empty_column_warns_with_the_column_and_the_fix(sandbox, tmp_path):
    """establishmentMeans is null in every sandbox record: balancing by it is no balancing."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "b.yaml").write_text(
        BUTTERFLIES_SPEC.replace("seed: 1}", "seed: 1, by: [establishmentMeans]}")
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["butterflies"])
        result = materialize_to_manifest(sandbox, tmp_path, instance)
        assert result.success  # a warning, not a blocking failure
        checks = _checks(result)
        check = checks["strata_columns_filled"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert "balancing.by column 'establishmentMeans' is empty in all" in check.description
        assert "remove establishmentMeans from balancing.by" in check.description
        assert all(c.passed for name, c in checks.items() if name != "strata_columns_filled")
        meta = result.asset_materializations_for_node("balanced_manifest")[0].metadata
        fixes = markdown_column(meta["empty_strata_columns"].value, "column", "what to do")
        assert list(fixes) == ["establishmentMeans"]
        assert "the snapshot carries no establishmentMeans values" in fixes["establishmentMeans"]
