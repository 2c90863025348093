"""Scaling out with Celery: one training set's image shards run as tasks on two Celery workers.

Redis (Debian's redis-server) is the broker, the instance is PostgreSQL (what workers on other hosts
would share), and each worker is a separate `dagster-celery worker` process group with one slot, so
the 8 shard steps of the run must be spread over both. The steps call the same store_shard as
image_store and record image_store[<shard>|cats] materializations.
"""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest
import yaml

from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rulesets
from gbifdl_assets.defs.images import image_store, shard_partitions
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import AnnotationsResource as AnnotationSources
from gbifdl_assets.defs.resources import GbifResource, ImageFetchResource, StorageResource
from gbifdl_assets.defs.resources import SpecsResource as SpecCatalog
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.storage import open_storage
from gbifdl_assets_tests.harness.dagster_services import ServiceProcess, dagster_env, start_service
from gbifdl_assets_tests.harness.debian import ensure_command
from gbifdl_assets_tests.harness.ports import free_port, port_is_open

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    # dagster-celery 0.29.27 registers its execute_plan task once per launch; celery 5.7 warns about it
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]

UPSTREAM = [species_list, gbif_download, occurrence_snapshot, annotated_occurrences, balanced_manifest]
SPEC = """name: cats
taxa: [Panthera leo, Panthera tigris]
source: search
balancing: {max_per_class: 4, min_per_class: 1}
licenses: [CC0, CC-BY, CC-BY-SA, CC-BY-NC]
images: {max_side: 64, min_side: 16, completeness_threshold: 0.25}
"""


@contextmanager
def redis_server(log_dir: Path):
    redis = ensure_command("redis-server", "redis-server")
    port = free_port()
    cmd = [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    service = start_service("redis", cmd, {}, log_dir=log_dir, ready=lambda s: port_is_open(port), port=port)
    try:
        yield service
    finally:
        service.stop()


def _start_worker(name: str, config: Path, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    """`dagster-celery worker start` with one slot; ready when celery says so."""
    cmd = [
        str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
        "-y", str(config), "--name", name, "--", "--concurrency=1", "--pool=prefork",
    ]  # fmt: skip

    def ready(service: ServiceProcess) -> bool:
        return re.search(rf"{name}@\S+ ready\.", service.log_text()) is not None

    return start_service(f"celery-{name}", cmd, env, log_dir=log_dir, ready=ready, timeout=120)


@contextmanager
def celery_workers(names: list[str], config: Path, env: dict[str, str], log_dir: Path):
    """Several workers, started at the same time (each in its own process group), stopped at the end."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(_start_worker, name, config, env, log_dir) for name in names}
    workers, errors = {}, []
    for name, future in futures.items():
        try:
            workers[name] = future.result()
        except Exception as exc:  # the others are stopped below before this is raised
            errors.append(exc)
    try:
        if errors:
            raise errors[0]
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


def _succeeded_tasks(service: ServiceProcess) -> int:
    return len(re.findall(r"Task execute_plan\[[^\]]+\] succeeded", service.log_text()))


def test_two_celery_workers_store_the_shards_of_one_training_set(
    sandbox, pg_dagster_home, tmp_path, monkeypatch
):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "cats.yaml").write_text(SPEC)
    data, rules_db = tmp_path / "data", tmp_path / "annotations.sqlite"
    settings = {
        "GBIF_API_URL": sandbox.api_url,
        "GBIFDL_DATA_URI": str(data),
        "GBIFDL_SPECS_DIR": str(specs),
        "GBIFDL_ANNOTATIONS_DB": f"sqlite:///{rules_db}",
        "GBIFDL_SEED_RULES": "0",
    }
    for var, value in settings.items():
        monkeypatch.setenv(var, value)  # the job's resources are built from these, here and in the workers
    resources = {
        "gbif": GbifResource(base_url=sandbox.api_url),
        "storage": StorageResource(uri=str(data)),
        "specs": SpecCatalog(folder=str(specs)),
        "annotations": AnnotationSources(store_url=f"sqlite:///{rules_db}", seeds=False),
        "image_fetch": ImageFetchResource(allow_loopback=True),
    }
    logs = tmp_path / "logs"
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats"])
        everything = [*UPSTREAM, annotation_rulesets, image_store]
        assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
        assert dg.materialize(
            everything, selection=[a.key for a in UPSTREAM], partition_key="cats", instance=instance,
            resources=resources,
        ).success  # fmt: skip

        with redis_server(logs) as redis:
            broker = f"redis://127.0.0.1:{redis.port}"
            celery = {"broker": f"{broker}/0", "backend": f"{broker}/1"}
            config = tmp_path / "celery.yaml"
            config.write_text(yaml.safe_dump({"execution": {"config": celery}}))
            env = dagster_env(pg_dagster_home, **settings)
            with celery_workers(["w1", "w2"], config, env, logs) as workers:
                from gbifdl_assets.definitions.celery import image_shards_celery

                started = time.monotonic()
                with dg.execute_job(
                    dg.reconstructable(image_shards_celery),
                    instance=instance,
                    run_config={"execution": {"config": celery}},
                    tags={"dagster/partition": "cats"},
                ) as result:
                    assert result.success, [e.message for e in result.all_events if e.is_failure]
                    steps = {e.step_key for e in result.all_events if e.is_step_success}
                elapsed = time.monotonic() - started
                per_worker = {name: _succeeded_tasks(worker) for name, worker in workers.items()}

        shards = shard_partitions.get_partition_keys()
        assert steps == {f"image_shard_{s}" for s in shards}
        assert per_worker["w1"] >= 1 and per_worker["w2"] >= 1, per_worker  # both workers executed steps
        assert sum(per_worker.values()) == len(shards), per_worker

        # the catalogue sees image_store[<shard>|cats] materialized, as if image_store had run
        materialized = instance.get_materialized_partitions(image_store.key)
        assert {f"{s}|cats" for s in shards} <= set(materialized)
        ok_total = 0
        for s in shards:
            record = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=image_store.key, asset_partitions=[f"{s}|cats"]), limit=1
            ).records[0]
            ok_total += record.asset_materialization.metadata["ok"].value

    store = open_storage(str(data))
    manifest = read_latest_manifest(store, "cats")
    ledgers = [load_ledger(store, f"cats.shard{s}") for s in shards]
    stored = sum(t.filter(pc.equal(t.column("status"), "ok")).num_rows for t in ledgers)
    assert 0 < ok_total == stored <= manifest.num_rows
    print(f"\ncelery: {len(shards)} shard steps on 2 workers {per_worker} in {elapsed:.1f} s")
