"""occurrence_snapshot through Dagster: the search source, and a sandbox download driven by the sensor
through PREPARING -> RUNNING -> SUCCEEDED into a materialized snapshot."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import GbifResource, StorageResource
from gbifdl_assets.defs.resources import SpecsResource as SpecCatalog
from gbifdl_assets.defs.snapshots import gbif_download, gbif_download_sensor, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.occurrences.sources import DownloadRecord
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.storage import open_storage
from gbifdl_assets_tests.harness.markdown_tables import markdown_rows

pytestmark = pytest.mark.integration

ASSETS = [species_list, gbif_download, occurrence_snapshot]


def _resources(sandbox, spec_dir: Path, data_dir: Path, *, credentials: bool = True):
    return {
        "gbif": GbifResource(
            base_url=sandbox.api_url,
            username="sandbox" if credentials else None,
            password="sandbox" if credentials else None,
        ),
        "storage": StorageResource(uri=str(data_dir)),
        "specs": SpecCatalog(folder=str(spec_dir)),
    }


def _spec(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(f"name: {name}\n{body}")
    return folder


def test_search_source_snapshot(sandbox, tmp_path):
    specs = _spec(tmp_path, "cats", "taxa: [Panthera leo, Panthera tigris]\nsource: search\n")
    resources = _resources(sandbox, specs, tmp_path / "data", credentials=False)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        result = dg.materialize(ASSETS, partition_key="cats", instance=instance, resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("occurrence_snapshot")[0].metadata
    assert meta["source"].value == "search"
    assert meta["media"].value > 0 and meta["species"].value == 2
    registry = markdown_rows(meta["registry"].value)
    assert {(r["lookup"], r["outcome"]) for r in registry if r["lookup"] == "datasets"} == {
        ("datasets", "ok")
    }
    assert meta["registry_gaps"].value == "none"
    download_meta = result.asset_materializations_for_node("gbif_download")[0].metadata
    assert download_meta["source"].value == "search"


@pytest.fixture(scope="module")
def slow_download_sandbox():
    """A sandbox of its own whose downloads stay PREPARING and RUNNING for 3 s each: the session
    sandbox finishes a download in ~1 s, which a loaded machine can spend before the first tick."""
    running = start_sandbox(SandboxConfig(occurrences=20_000, seed=42, download_seconds=(3.0, 3.0)))
    try:
        yield running
    finally:
        running.stop()


def test_download_source_through_the_sensor(slow_download_sandbox, tmp_path):
    sandbox = slow_download_sandbox
    specs = _spec(tmp_path, "butterflies", "taxa: [Vanessa atalanta, Aglais io]\nsource: download\n")
    resources = _resources(sandbox, specs, tmp_path / "data")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["butterflies"])
        first = dg.materialize(
            [species_list, gbif_download], partition_key="butterflies", instance=instance, resources=resources
        )
        assert first.success
        key = first.asset_materializations_for_node("gbif_download")[0].metadata["download_key"].value
        store = open_storage(str(tmp_path / "data"))
        assert DownloadRecord.load(store, "butterflies").key == key

        # tick the sensor until GBIF (the sandbox) says SUCCEEDED; record the states it saw
        seen, cursor, requests = [], None, []
        deadline = time.monotonic() + 60
        while not requests:
            assert time.monotonic() < deadline, f"download never finished; saw {seen}"
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            result = gbif_download_sensor(ctx)
            cursor = result.cursor if isinstance(result, dg.SensorResult) else cursor
            if isinstance(result, dg.SensorResult) and result.cursor:
                seen.append(result.cursor)
            requests = list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []
            time.sleep(0.2)
        (request,) = requests
        assert request.partition_key == "butterflies"
        assert request.tags["gbifdl/download_status"] == "SUCCEEDED"
        assert request.tags["gbifdl/target"] == "occurrence_snapshot[butterflies]"  # the Runs page says what
        assert any("PREPARING" in s or "RUNNING" in s for s in seen), seen

        snap = dg.materialize(
            ASSETS,
            selection=[occurrence_snapshot.key],
            partition_key="butterflies",
            instance=instance,
            resources=resources,
            tags=request.tags,
        )
        assert snap.success
        meta = snap.asset_materializations_for_node("occurrence_snapshot")[0].metadata
        assert meta["source"].value == "download" and meta["download_key"].value == key
        assert meta["doi"].value.startswith("10.") and "GBIF Occurrence Download" in meta["citation"].value
        assert meta["media"].value > 0
        # the sandbox's DWCA has no publishingOrgKey, as GBIF's has none: the registry gave it back
        registry = markdown_rows(meta["registry"].value)
        assert {r["outcome"] for r in registry if r["lookup"] == "datasets"} == {"ok"}
        assert meta["rows_without_publisher"].value == 0
        assert meta["registry_gaps"].value == "none"

        # the record is done: the sensor stops polling it
        again = gbif_download_sensor(
            dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        )
        assert not getattr(again, "run_requests", None)


def test_killed_download_ends_in_a_clear_failure(sandbox, tmp_path):
    specs = _spec(tmp_path, "doomed", "taxa: [Pieris rapae]\nsource: download\n")
    resources = _resources(sandbox, specs, tmp_path / "data")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["doomed"])
        assert dg.materialize(
            [species_list], partition_key="doomed", instance=instance, resources=resources
        ).success
        # a download that GBIF kills (the sandbox ends requests whose description says so)
        client = resources["gbif"].client()
        key = client.request_download(
            {"type": "equals", "key": "TAXON_KEY", "value": "1"}, description="sandbox:KILLED"
        )
        store = open_storage(str(tmp_path / "data"))
        DownloadRecord(training_set="doomed", key=key, origin="requested", requested_at="now").save(store)
        deadline = time.monotonic() + 60
        while True:
            result = gbif_download_sensor(dg.build_sensor_context(instance=instance, resources=resources))
            if isinstance(result, dg.SensorResult) and result.run_requests:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert result.run_requests[0].tags["gbifdl/download_status"] == "KILLED"
        snap = dg.materialize(
            ASSETS,
            selection=[occurrence_snapshot.key],
            partition_key="doomed",
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        assert not snap.success
        message = snap.get_step_failure_events()[0].event_specific_data.error.message
        assert f"GBIF download {key} ended KILLED" in message
        assert not list(store.list("snapshots/doomed/"))  # nothing half-written


def test_the_ingest_rate_leaves_out_the_wait_for_gbifs_archive(slow_download_sandbox, tmp_path):
    """occurrence_snapshot materialized right after the request waits ~6 s for the archive: that wait
    is reported on its own and is not in rows_per_second (a load run read 3,540 rows/s, 99 % wait)."""
    specs = _spec(tmp_path, "lions", "taxa: [Panthera leo]\nsource: download\n")  # a new download
    resources = _resources(slow_download_sandbox, specs, tmp_path / "data")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["lions"])
        result = dg.materialize(
            [species_list, gbif_download, occurrence_snapshot],
            partition_key="lions",
            instance=instance,
            resources=resources,
            run_config={"ops": {"occurrence_snapshot": {"config": {"poll_seconds": 0.5}}}},
        )
        assert result.success
        meta = result.asset_materializations_for_node("occurrence_snapshot")[0].metadata
    waited, seconds = meta["waited_for_gbif_seconds"].value, meta["seconds"].value
    assert 3.0 <= waited < seconds, (waited, seconds)
    expected = meta["occurrences"].value / (seconds - waited)
    assert meta["rows_per_second"].value == pytest.approx(expected, rel=0.05)
