"""A partition backfill through the real daemon: PostgreSQL instance, gRPC code server, webserver, daemon.

What a user does in production, end to end: the spec folder holds two tiny training sets; the live
daemon's sensors register them as partitions (and rebuild the rule set); then a backfill of the whole graph
(species list to export, across both training sets and all image shards) is launched through GraphQL
``launchPartitionBackfill`` and the daemon carries it to completion, with every run queued first and
the steps held to their concurrency pools (``gbif_download`` limited to 3 as in production).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pytest
import yaml

from gbifdl_assets.defs.annotations import annotation_rulesets
from gbifdl_assets.defs.resources import AnnotationsResource as AnnotationSources
from gbifdl_assets.defs.resources import StorageResource
from gbifdl_assets_tests.harness.dagster_services import (
    dagster_daemon,
    dagster_env,
    dagster_webserver,
    grpc_code_server,
    initialize_instance,
    launch_asset_backfill,
    wait_for_backfill,
    write_workspace,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
TRAINING_SETS = {
    "cats": "taxa: [Panthera leo, Panthera tigris]\nsource: search\n",
    # a download-sourced set: gbif_download requests a DWCA from the sandbox (pool gbif_download)
    "butterflies": "taxa: [Vanessa atalanta, Aglais io]\nsource: download\n",
}
COMMON = (
    "balancing: {max_per_class: 4, min_per_class: 1}\n"
    "licenses: [CC0, CC-BY, CC-BY-SA, CC-BY-NC]\n"
    "images: {max_side: 64, min_side: 16, completeness_threshold: 0.25}\n"
)
GRAPH = [
    "species_list",
    "gbif_download",
    "occurrence_snapshot",
    "annotated_occurrences",
    "balanced_manifest",
    "image_store",
    "training_export",
]
#: op-level pools (granularity op in deploy/dagster.yaml): gbif_download as in production
POOL_LIMITS = {"gbif_download": 3, "image_download": 2}
#: image_store shards per training set in this deployment (GBIFDL_IMAGE_SHARDS): 2 instead of the
#: default 8 keeps the backfill at 8 runs on a 2-core test machine; the shape is the same.
SHARDS = 2

SENSORS_AND_SCHEDULES = """
query {
  sensorsOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "gbifdl_assets"}) {
    ... on Sensors { results { name sensorState { status ticks(limit: 20) { status runIds } } } }
  }
  schedulesOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "gbifdl_assets"}) {
    ... on Schedules { results { name scheduleState { status } } }
  }
}
"""


def _deploy_instance_home(home: Path) -> None:
    """deploy/dagster.yaml as it ships, with fewer concurrent runs for a 2-core test machine."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = 4
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _wait(what: str, condition, timeout: float, service_logs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{service_logs()}")


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in edges:
        current += delta
        best = max(best, current)
    return best


def test_backfill_across_training_sets_and_shards_through_the_daemon(
    sandbox, pg_database, tmp_path, monkeypatch
):
    specs = tmp_path / "specs"
    specs.mkdir()
    for name, body in TRAINING_SETS.items():
        (specs / f"{name}.yaml").write_text(f"name: {name}\n{body}{COMMON}")
    home = tmp_path / "dagster_home"
    _deploy_instance_home(home)
    pg = {
        "DAGSTER_PG_USERNAME": pg_database.user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_HOST": pg_database.host,
        "DAGSTER_PG_PORT": str(pg_database.port),
        "DAGSTER_PG_DB": pg_database.name,
    }
    for var, value in pg.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = dagster_env(
        home,
        **pg,
        GBIF_API_URL=sandbox.api_url,
        GBIF_USERNAME=sandbox.config.username,
        GBIF_PASSWORD=sandbox.config.password,
        GBIFDL_DATA_URI=str(tmp_path / "data"),
        GBIFDL_SPECS_DIR=str(specs),
        GBIFDL_ANNOTATIONS_DB=f"sqlite:///{tmp_path / 'annotations.sqlite'}",
        GBIFDL_SEED_RULES="1",
        GBIFDL_IMAGE_SHARDS=str(SHARDS),
        GBIFDL_SENSOR_SECONDS="5",  # the spec sensor registers the partitions within seconds, not 30
    )
    logs = tmp_path / "logs"
    initialize_instance(env)
    # the production set-up step (README "Deploy"): GBIF allows about 3 concurrent downloads per user;
    # image_download gets 2 slots here so that 4 concurrent shard runs must queue their steps
    for pool, limit in POOL_LIMITS.items():
        subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "instance", "concurrency", "set", pool, str(limit)],
            env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    started = time.monotonic()
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        grpc_code_server(env, log_dir=logs) as code,
    ):
        # The rule set exists before the daemon starts (as on any running deployment), so the backfill
        # need not wait for annotation_rules_sensor's first run, which the live daemon still launches.
        rules = dg.materialize(
            [annotation_rulesets],
            instance=instance,
            resources={
                "storage": StorageResource(uri=env["GBIFDL_DATA_URI"]),
                "annotations": AnnotationSources(store_url=env["GBIFDL_ANNOTATIONS_DB"]),
            },
        )
        assert rules.success
        workspace = write_workspace(tmp_path / "workspace.yaml", grpc_port=code.port)
        with ExitStack() as services:
            # start the webserver and the daemon side by side (each waits for its own readiness)
            with ThreadPoolExecutor(2) as pool:
                web_cm = dagster_webserver(env, workspace, log_dir=logs)
                daemon_cm = dagster_daemon(env, workspace, log_dir=logs)
                web_future, daemon_future = pool.submit(web_cm.__enter__), pool.submit(daemon_cm.__enter__)
            for cm, future in ((web_cm, web_future), (daemon_cm, daemon_future)):
                if future.exception() is None:
                    services.push(cm.__exit__)
            web, daemon = web_future.result(), daemon_future.result()

            def service_logs() -> str:
                return (
                    f"--- daemon\n{daemon.service.log_tail(40)}\n--- code server\n{code.service.log_tail(40)}"
                )

            # 1. the live sensors: the spec folder becomes partitions
            _wait(
                "training_set_specs_sensor to register both specs",
                lambda: set(instance.get_dynamic_partitions("training_set")) == set(TRAINING_SETS),
                90,
                service_logs,
            )
            ready = time.monotonic()

            # 2. the backfill, as the UI launches it
            backfill_id = launch_asset_backfill(
                web,
                [[key] for key in GRAPH],
                sorted(TRAINING_SETS),
                title="e2e: all stages, all shards",
                # One partition per run: its steps run one after another anyway, and in-process spares a
                # process start per step on the 2-core test machine (the launchpad offers the same).
                run_config={"execution": {"config": {"in_process": {}}}},
            )
            backfill = wait_for_backfill(web, backfill_id, timeout=300)
            done = time.monotonic()
            print(f"\nsensors ready after {ready - started:.1f} s; backfill done after {done - ready:.1f} s")
            state = web.graphql(SENSORS_AND_SCHEDULES)

        assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, service_logs())
        runs = backfill["runs"]
        assert runs and all(r["status"] == "SUCCESS" for r in runs), runs

        # every (training set, shard) of image_store and both exports were materialized by the backfill
        assert instance.get_materialized_partitions(dg.AssetKey("training_export")) == set(TRAINING_SETS)
        stored = instance.get_materialized_partitions(dg.AssetKey("image_store"))
        expected = {f"{shard:02d}|{name}" for name in TRAINING_SETS for shard in range(SHARDS)}
        assert expected <= set(stored), sorted(expected - set(stored))
        exported = tmp_path / "data" / "exports"
        for name in TRAINING_SETS:
            assert (exported / name / "manifest.parquet").exists()
            assert list((exported / name / "imagefolder").rglob("*.jpg")), f"{name}: no exported images"

        # the run queue and the pools: every backfill run was queued first; steps kept to their pools
        intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for run in runs:
            events = instance.all_logs(run["runId"])
            kinds = [e.dagster_event.event_type for e in events if e.dagster_event]
            assert dg.DagsterEventType.RUN_ENQUEUED in kinds, run
            starts = {}
            for event in events:
                de = event.dagster_event
                if de is None or de.step_key is None:
                    continue
                if de.event_type == dg.DagsterEventType.STEP_START:
                    starts[de.step_key] = event.timestamp
                elif de.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                    intervals[de.step_key].append((starts[de.step_key], event.timestamp))
        assert len(intervals["gbif_download"]) == len(TRAINING_SETS)
        assert len(intervals["image_store"]) == SHARDS * len(TRAINING_SETS)
        assert _max_overlap(intervals["gbif_download"]) <= POOL_LIMITS["gbif_download"]
        assert _max_overlap(intervals["image_store"]) <= POOL_LIMITS["image_download"]
        for pool, limit in POOL_LIMITS.items():
            assert instance.event_log_storage.get_concurrency_info(pool).slot_count == limit

    # the sensors ran in the live daemon, and the schedule is on
    sensors = {s["name"]: s["sensorState"] for s in state["sensorsOrError"]["results"]}
    for name in (
        "training_set_specs_sensor",
        "annotation_rules_sensor",
        "gbif_download_sensor",
        "gbifdl_automation",
    ):
        assert sensors[name]["status"] == "RUNNING", name
        assert sensors[name]["ticks"], f"{name} never ticked"
    spec_runs = [run for tick in sensors["training_set_specs_sensor"]["ticks"] for run in tick["runIds"]]
    assert len(spec_runs) == len(TRAINING_SETS)  # one species_list run per new spec
    schedules = {s["name"]: s["scheduleState"]["status"] for s in state["schedulesOrError"]["results"]}
    assert schedules == {"training_set_refresh_schedule": "RUNNING"}
    print(
        f"\nsensors ready in {ready - started:.1f} s; backfill of {len(runs)} runs "
        f"({len(expected)} image shards) completed in {done - ready:.1f} s"
    )
