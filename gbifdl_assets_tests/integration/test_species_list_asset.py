"""species_list materialized through Dagster against the offline sandbox (real HTTP, real client)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import GbifResource, StorageResource
from gbifdl_assets.defs.resources import SpecsResource as SpecCatalog
from gbifdl_assets.defs.species import ALL_TAXA_MATCHED, species_list
from gbifdl_assets.storage.layout import species_list_key

pytestmark = pytest.mark.integration


def _materialize(sandbox, spec_dir: Path, data_dir: str, name: str, storage=None):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, [name])
        result = dg.materialize(
            [species_list],
            partition_key=name,
            instance=instance,
            resources={
                "gbif": GbifResource(base_url=sandbox.api_url),
                "storage": storage or StorageResource(uri=data_dir),
                "specs": SpecCatalog(folder=str(spec_dir)),
            },
            raise_on_error=False,
        )
        return result


def test_species_list_resolves_names_synonyms_and_expansion(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.yaml").write_text(
        "name: butterflies\ntaxa:\n  - Vanessa atalanta\n  - Inachis io\n  - {name: Pieridae, expand_to: SPECIES}\n"
    )
    result = _materialize(sandbox, tmp_path / "specs", str(tmp_path / "data"), "butterflies")
    assert result.success
    meta = result.asset_materializations_for_node("species_list")[0].metadata
    assert meta["unmatched"].value == 0 and meta["synonym"].value == 1
    assert meta["expanded"].value >= 2  # Pieris rapae and Pieris brassicae at least
    assert "Vanessa atalanta" in meta["preview"].value
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == ALL_TAXA_MATCHED and check.passed

    table = pq.read_table(tmp_path / "data" / species_list_key("butterflies")).to_pylist()
    synonym = next(r for r in table if r["input"] == "Inachis io")
    assert synonym["canonical_name"] == "Aglais io" and synonym["match_type"] == "SYNONYM"
    expanded = {r["canonical_name"] for r in table if r["match_type"] == "EXPANDED"}
    assert {"Pieris rapae", "Pieris brassicae"} <= expanded


def test_unmatched_name_fails_the_blocking_check(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.yaml").write_text("name: typo\ntaxa:\n  - Vanessa atalanta\n  - Zzyzx qqqq\n")
    result = _materialize(sandbox, tmp_path / "specs", str(tmp_path / "data"), "typo")
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert "Zzyzx qqqq" in check.metadata["problems"].value
    table = pq.read_table(tmp_path / "data" / species_list_key("typo"))
    assert table.num_rows == 2  # the unmatched name is kept and reported, not dropped


def test_species_list_writes_to_s3(sandbox, tmp_path, s3_server, s3_bucket):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.yaml").write_text("name: cats\ntaxa:\n  - Panthera leo\n  - Panthera tigris\n")
    storage = StorageResource(
        uri=f"s3://{s3_bucket.name}/data",
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
        region_name="us-east-1",
    )
    result = _materialize(sandbox, tmp_path / "specs", "", "cats", storage=storage)
    assert result.success
    table = storage.open().read_parquet(species_list_key("cats"))
    assert sorted(table.column("canonical_name").to_pylist()) == ["Panthera leo", "Panthera tigris"]


def test_missing_spec_fails_with_a_clear_message(sandbox, tmp_path):
    (tmp_path / "specs").mkdir()
    result = _materialize(sandbox, tmp_path / "specs", str(tmp_path / "data"), "ghost")
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "No valid spec named 'ghost'" in str(failure.event_specific_data.error.message)
