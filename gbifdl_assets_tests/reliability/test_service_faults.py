"""Service faults under real Dagster runs: each ends in success after retries or in one clear failure,
with nothing half-written.

The GBIF client's retry rules, the media fetcher's fault statuses and the core S3 outage are tested
in unit/ and integration/ (test_gbif_http, test_media_faults, test_media_s3); here the same faults hit
whole materializations: 429 storms, 503 bursts and slow answers from the API, downloads that GBIF ends
FILE_ERASED, the S3 endpoint stopped and restarted under image_store, PostgreSQL restarted under a
running dagster-daemon.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
import requests

from gbifdl_assets.defs.resources import ImageFetchResource
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.occurrences.snapshots import list_snapshots
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.pipeline.image_shards import shard_of
from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.storage import open_storage
from gbifdl_assets.storage.layout import ledger_name
from gbifdl_assets_tests.reliability.project import image_partition

CATS = "taxa: [Panthera leo, Panthera tigris]\nsource: search\nbalancing: {max_per_class: 20, min_per_class: 1}\n"
UP_TO_MANIFEST = [
    "species_list",
    "gbif_download",
    "occurrence_snapshot",
    "annotated_occurrences",
    "balanced_manifest",
]


@pytest.fixture(scope="module")
def faulty_sandbox():
    """A sandbox of this module's own: its fault switches must not disturb other tests."""
    with start_sandbox(SandboxConfig(occurrences=20_000, seed=42, download_seconds=(0.2, 0.2))) as running:
        yield running


def _faults(sandbox, **settings) -> dict:
    url = f"{sandbox.url}/sandbox/faults"
    if settings:
        requests.post(url, json={**settings, "reset": True}, timeout=10).raise_for_status()
    return requests.get(url, timeout=10).json()


@pytest.fixture
def faulty_project(project_factory, faulty_sandbox):
    requests.delete(f"{faulty_sandbox.url}/sandbox/faults", timeout=10).raise_for_status()
    try:
        yield project_factory(faulty_sandbox.api_url)
    finally:
        requests.delete(f"{faulty_sandbox.url}/sandbox/faults", timeout=10).raise_for_status()


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"api_429_every": 3, "retry_after": 1}, id="429-storm"),
        pytest.param({"api_503_every": 2, "retry_after": 1}, id="503-burst"),
        pytest.param({"api_latency": 0.4}, id="slow-answers"),
    ],
)
def test_api_faults_end_in_success_after_retries(faulty_project, faulty_sandbox, faults) -> None:
    faulty_project.write_spec("cats", CATS)
    faulty_project.add_partition("cats")
    assert faulty_project.materialize(["annotation_rulesets"], None).success
    _faults(faulty_sandbox, **faults)
    started = time.monotonic()
    result = faulty_project.materialize(UP_TO_MANIFEST, "cats")
    elapsed = time.monotonic() - started
    state = _faults(faulty_sandbox)
    assert result.success
    if "api_latency" in faults:
        assert elapsed > faults["api_latency"] * 5, "the answers were not slow"
    else:
        assert sum(state["injected"].values()) >= 3, state  # the faults really happened
    (snapshot,) = list_snapshots(faulty_project.storage(), "cats")  # one snapshot, none half-written
    assert snapshot.counts["species"] == 2
    assert read_latest_manifest(faulty_project.storage(), "cats").num_rows > 0


@pytest.mark.soak  # species_list's RetryPolicy waits ~10 s, then ~20 s, before it gives up
@pytest.mark.timeout(300)
def test_endless_429_is_one_clear_failure_and_writes_nothing(faulty_project, faulty_sandbox) -> None:
    faulty_project.write_spec("cats", CATS)
    faulty_project.add_partition("cats")
    _faults(faulty_sandbox, api_429_every=1, retry_after=1)
    result = faulty_project.materialize(UP_TO_MANIFEST, "cats", raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    error = failure.event_specific_data.error
    # Dagster reports "Exceeded max_retries of 2"; the asset's own one-line message is its cause.
    causes = []
    while error is not None:
        causes.append(error.message)
        error = error.cause
    assert failure.step_key == "species_list"
    assert any("species_list[cats]" in c and "429" in c for c in causes), causes
    assert list(faulty_project.storage().list("")) == []  # nothing written at all


@pytest.mark.timeout(180)
def test_download_ending_file_erased_is_a_clear_failure(project_factory) -> None:
    config = SandboxConfig(
        occurrences=5_000, seed=1, download_seconds=(0.2, 0.2), download_final_status="FILE_ERASED"
    )
    with start_sandbox(config) as erased:
        project = project_factory(erased.api_url, GBIF_USERNAME="sandbox", GBIF_PASSWORD="sandbox")
        project.write_spec("erased", "taxa: [Animalia]\nsource: download\n")
        project.add_partition("erased")
        result = project.materialize(
            ["species_list", "gbif_download", "occurrence_snapshot"],
            "erased",
            raise_on_error=False,
            run_config={"ops": {"occurrence_snapshot": {"config": {"poll_seconds": 0.2}}}},
        )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "ended FILE_ERASED" in message and "Re-materialize gbif_download" in message, message
    assert list(project.storage().list("snapshots/")) == []


@pytest.mark.timeout(300)
def test_s3_stopped_mid_image_store_then_restarted(project_factory, sandbox, s3_server, s3_bucket) -> None:
    """The endpoint's process is stopped (connections refused) and started again after 3 s. moto keeps
    buckets in memory, so the restarted endpoint is empty and the bucket is created again: the run
    rides the outage out (storage retries) or fails clearly; either way nothing is half-written.
    Objects recorded before the stop went down with moto's memory: materializing the partition again
    heals the store, fetching exactly those (and whatever the first run did not get to)."""
    import pyarrow.compute as pc

    from gbifdl_assets.media.ledger import load_ledger_history
    from gbifdl_assets.storage.layout import manifest_prefix

    project = project_factory(
        sandbox.api_url,
        GBIFDL_DATA_URI=f"s3://{s3_bucket.name}/data",
        GBIFDL_S3_ENDPOINT_URL=s3_bucket.endpoint_url,
        AWS_REGION=s3_bucket.region_name,
    )
    project.write_spec(
        "s3-outage",
        "taxa: [Pieris rapae]\nsource: search\nbalancing: {max_per_class: 400, min_per_class: 1}\n"
        "licenses: [CC0, PDM, CC-BY, CC-BY-SA, CC-BY-NC, CC-BY-NC-SA]\nimages: {max_side: 64}\n",
    )
    project.add_partition("s3-outage")
    project.upstream("s3-outage")
    store = open_storage(f"s3://{s3_bucket.name}/data", **s3_bucket.storage_options())
    manifest = read_latest_manifest(store, "s3-outage")
    (shard,) = set(shard_of(manifest.column("label")).to_pylist())
    # The manifest goes down with moto's memory too; kept here to put it back for the second run,
    # as an operator would restore it, so that both runs see the same rows.
    manifest_files = {k: store.read_bytes(k) for k in store.list(f"{manifest_prefix('s3-outage')}/")}
    name = ledger_name("s3-outage", shard)
    slow = ImageFetchResource(concurrency=1, per_host=1, allow_loopback=True)
    outage: dict = {}

    def stop_when_busy() -> None:
        # The first stored object, not the first ledger segment: segments are flushed every 5 s, and
        # on an idle machine the whole shard can finish before that, leaving nothing after the outage.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not outage.get("done"):
            try:
                if next(iter(store.list("images/")), None) is not None:
                    break
            except Exception:
                pass
            time.sleep(0.05)
        else:
            return
        s3_server.stop()
        outage["stopped"] = time.monotonic()
        time.sleep(3)
        s3_server.start()
        s3_server.make_bucket(s3_bucket.name)
        outage["restarted"] = time.monotonic()
        outage["restarted_wall"] = time.time()

    watcher = threading.Thread(target=stop_when_busy, daemon=True)
    watcher.start()
    try:
        with project.instance() as instance:
            import dagster as dg

            from gbifdl_assets_tests.reliability.project import all_assets

            first = dg.materialize(
                all_assets(),
                selection=["image_store"],
                partition_key=image_partition("s3-outage", shard),
                instance=instance,
                resources={**project.resources(), "image_fetch": slow},
                raise_on_error=False,
            )
    finally:
        outage["done"] = True
        watcher.join(60)
    assert "restarted" in outage, "the outage never happened: the shard finished too soon"
    if not first.success:  # a clear failure names the storage problem ...
        message = first.get_step_failure_events()[0].event_specific_data.error.message
        # ... or, when a retry of the step starts after the restart, the manifest that went down with
        # the endpoint's memory
        lost_manifest = "has no manifest yet; materialize balanced_manifest first" in message
        assert lost_manifest or "s3://" in message or "S3" in message or "storage" in message.lower(), message
    ledger = load_ledger(store, name)
    objects = set(store.list("images/"))
    stored = ledger.filter(ledger.column("stored")).to_pylist()
    # Nothing half-written: every object is complete and recorded ...
    recorded = {row["key"]: row for row in stored}
    assert objects <= set(recorded), "objects that no ledger row describes"
    for key in objects:
        data = store.read_bytes(key)
        assert hashlib.sha256(data).hexdigest() == recorded[key]["sha256"], key
    # ... and every image finished after the restart is there. Rows for objects missing now finished
    # before the stop: their bytes went down with moto's in-memory state.
    restarted_at = outage["restarted_wall"]
    for row in stored:
        # a same-bytes row (duplicate_of) wrote nothing: it points at the first row's object, which
        # may have been written, and lost, before the stop
        if row["key"] not in objects and row.get("duplicate_of") is None:
            assert row["finished_at"].timestamp() < restarted_at, row
    lost = {row["content_key"] for row in stored if row["key"] not in objects}
    assert any(row["finished_at"].timestamp() > restarted_at for row in stored), "nothing after the restart"
    # The stop comes after the first object, and entries are flushed every 5 s, so the entries of the
    # objects written before the stop reach the ledger after the restart, when their bytes are gone.
    assert lost, "no recorded object was lost: nothing to heal"
    print(f"first run success={first.success}; {len(lost)} objects lost with the endpoint's memory")

    # Materialize the same partition again: the ledger is checked against the bucket, so exactly the
    # lost objects are fetched again (besides the failures it retries and, if the first run failed,
    # what it never recorded); no object that is there is fetched again.
    for key, data in manifest_files.items():
        if not store.exists(key):
            store.write_bytes(key, data)
    present_before = {row["content_key"] for row in stored if row["key"] in objects}
    with project.instance() as instance:
        import dagster as dg

        from gbifdl_assets_tests.reliability.project import all_assets

        second = dg.materialize(
            all_assets(),
            selection=["image_store"],
            partition_key=image_partition("s3-outage", shard),
            instance=instance,
            resources=project.resources(),
        )
    assert second.success
    (materialization,) = second.asset_materializations_for_node("image_store")
    meta = materialization.metadata
    assert meta["missing_refetched"].value == len(lost)
    assert meta["this_run_already_done"].value == len(present_before)
    history = load_ledger_history(store, name)
    fresh = history.filter(pc.equal(history.column("run_id"), meta["this_run_id"].value)).to_pylist()
    refetched = {row["content_key"] for row in fresh}
    assert refetched & present_before == set(), "an object that was there was fetched again"
    assert lost <= refetched and all(row["status"] == "ok" for row in fresh if row["content_key"] in lost)
    # the rest of this run's entries are retries of failures (and rows a failed first run never got to)
    assert refetched - lost <= set(manifest.column("content_key").to_pylist()) - present_before - lost
    failed_before = {
        row["content_key"] for row in ledger.filter(pc.invert(ledger.column("stored"))).to_pylist()
    }
    if first.success:
        assert refetched - lost <= failed_before
    # Now every stored ledger row's object exists with its sha256, and nothing else is stored.
    final = load_ledger(store, name)
    final_stored = final.filter(final.column("stored")).to_pylist()
    assert set(manifest.column("content_key").to_pylist()) <= set(final.column("content_key").to_pylist())
    assert {row["key"] for row in final_stored} == set(store.list("images/"))
    for row in final_stored:
        assert hashlib.sha256(store.read_bytes(row["key"])).hexdigest() == row["sha256"], row["key"]


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_postgres_restart_under_the_daemon(pg_dagster_home, postgres_server, sandbox, tmp_path) -> None:
    """A real dagster-daemon on PostgreSQL storage: the spec sensor turns a spec into a partition and a
    run; PostgreSQL restarts; the daemon carries on (a second spec becomes a second successful run)."""
    import dagster as dg

    from gbifdl_assets_tests.harness.dagster_services import (
        dagster_daemon,
        dagster_env,
        initialize_instance,
        write_workspace,
    )

    specs = tmp_path / "specs"
    specs.mkdir()
    env = dagster_env(
        pg_dagster_home,
        GBIF_API_URL=sandbox.api_url,
        GBIFDL_DATA_URI=str(tmp_path / "data"),
        GBIFDL_SPECS_DIR=str(specs),
        GBIFDL_ANNOTATIONS_DB=f"sqlite:///{tmp_path / 'annotations.sqlite'}",
    )
    initialize_instance(env)
    workspace = write_workspace(tmp_path / "workspace.yaml")
    (specs / "first.yaml").write_text("name: first\ntaxa: [Panthera leo]\nsource: search\n")

    def wait_for_success(instance: dg.DagsterInstance, partition: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": partition}))
            if any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs):
                return
            failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            assert not failed, f"run for {partition} failed: {failed[0].run_id}"
            time.sleep(1)
        pytest.fail(f"no successful run for {partition} within {timeout} s:\n{daemon.service.log_tail()}")

    with dagster_daemon(env, workspace, log_dir=tmp_path) as daemon:
        instance = dg.DagsterInstance.from_config(str(pg_dagster_home))
        try:
            wait_for_success(instance, "first", 180)
            postgres_server.restart()
            time.sleep(2)
            (specs / "second.yaml").write_text("name: second\ntaxa: [Panthera tigris]\nsource: search\n")
            wait_for_success(instance, "second", 240)  # the sensor ticks every 30 s
            assert daemon.service.alive(), daemon.service.log_tail()
            assert set(instance.get_dynamic_partitions("training_set")) == {"first", "second"}
        finally:
            instance.dispose()
    log = Path(daemon.service.log_path).read_text(errors="replace")
    print(f"daemon log after the restart: {log.count('OperationalError')} OperationalError lines")


@pytest.mark.soak  # species_list's RetryPolicy waits ~10 s, then ~20 s, before it gives up
@pytest.mark.timeout(300)
def test_endless_429_failure_message_is_the_assets_own(faulty_project, faulty_sandbox) -> None:
    """The step's failure message (what the UI shows first) says what failed, not only the cause chain."""
    faulty_project.write_spec("cats", CATS)
    faulty_project.add_partition("cats")
    _faults(faulty_sandbox, api_429_every=1, retry_after=1)
    result = faulty_project.materialize(["species_list"], "cats", raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "Failure: species_list[cats]: " in message, message
    assert "429" in message and "after 2 retries" in message, message
    assert "Exceeded max_retries" not in message, message
    retries = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert len(retries) == 2  # the retry policy still ran before giving up
