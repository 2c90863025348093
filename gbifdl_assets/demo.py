"""``make demo`` / ``gbifdl demo``: materialize the example training set on embedded defaults.

It talks to GBIF when GBIF answers, and otherwise says so in one line and uses the bundled offline
sandbox (the rule of :mod:`gbifdl_assets.gbif.endpoint`, shared by every entry point), so the demo
works on a machine without network. It prints one progress line per step and the summary; Dagster's
own event log only with ``-v`` (INFO) or ``-vv`` (DEBUG).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

DEMO_SPEC = "european-butterflies.yaml"
#: Dagster's console log level by ``-v`` count: quiet by default.
LOG_LEVELS = ("WARNING", "INFO", "DEBUG")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _instance_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    repo_config = Path(__file__).resolve().parents[1] / "dagster.yaml"
    if not config.exists() and repo_config.exists():
        shutil.copy(repo_config, config)
    return home


def run_demo(
    *,
    spec_path: Path | None = None,
    data_dir: Path = Path("data"),
    offline: bool = False,
    verbosity: int = 0,
) -> dict[str, Any]:
    """Materialize a training set end to end; raises GbifdlError (a bad spec, no GBIF) before any run."""
    from gbifdl_assets.gbif.endpoint import gbif_endpoint
    from gbifdl_assets.specs import example_specs_dir, load_spec

    spec_path = spec_path or example_specs_dir() / DEMO_SPEC
    spec = load_spec(spec_path)
    with ExitStack() as stack:
        endpoint = stack.enter_context(gbif_endpoint(offline=True if offline else None))
        return _materialize(spec, spec_path, data_dir.resolve(), endpoint, verbosity)


def _resources(endpoint, spec_path: Path, data_dir: Path) -> dict[str, Any]:
    import dagster as dg

    from gbifdl_assets.defs.resources import (
        AnnotationsResource,
        GbifResource,
        ImageFetchResource,
        SpecsResource,
        StorageResource,
    )

    if endpoint.credentials:  # the sandbox's own test account
        username, password = endpoint.credentials
    else:  # GBIF's: variable names only, read when the run starts
        username = dg.EnvVar("GBIF_USERNAME") if os.environ.get("GBIF_USERNAME") else None
        password = dg.EnvVar("GBIF_PASSWORD") if os.environ.get("GBIF_PASSWORD") else None
    return {
        "gbif": GbifResource(base_url=endpoint.api_url, username=username, password=password),
        "storage": StorageResource(uri=str(data_dir)),
        "specs": SpecsResource(folder=str(spec_path.resolve().parent)),
        "annotations": AnnotationsResource(store_url=f"sqlite:///{data_dir / 'annotations.sqlite'}"),
        # loopback media only from the sandbox's own address (the SSRF guard refuses the rest)
        "image_fetch": ImageFetchResource(loopback_origins=list(endpoint.media_loopback_origins)),
    }


def _materialize(spec, spec_path: Path, data_dir: Path, endpoint, verbosity: int) -> dict[str, Any]:
    import dagster as dg

    from gbifdl_assets.defs.annotations import annotation_rulesets
    from gbifdl_assets.defs.assets import ALL_ASSETS, TRAINING_SET_STAGES
    from gbifdl_assets.defs.image_flags import image_flags
    from gbifdl_assets.defs.images import image_store, shard_partitions, training_export
    from gbifdl_assets.defs.manifest import balanced_manifest
    from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
    from gbifdl_assets.defs.snapshots import occurrence_snapshot
    from gbifdl_assets.storage import layout, open_storage

    started = time.monotonic()
    source = endpoint.source
    home = _instance_home()
    with dg.DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition(TRAINING_SET_PARTITION, spec.name):
            instance.add_dynamic_partitions(TRAINING_SET_PARTITION, [spec.name])
        resources = _resources(endpoint, spec_path, data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        level = LOG_LEVELS[min(max(verbosity, 0), len(LOG_LEVELS) - 1)]
        common = {
            "instance": instance,
            "resources": resources,
            "raise_on_error": False,
            "tags": {"gbifdl/trigger": "demo"},
            "run_config": {"loggers": {"console": {"config": {"log_level": level}}}},
        }
        shards = shard_partitions.get_partition_keys()
        steps = 3 + len(shards)
        step = 0

        def run(label: str, assets: list = ALL_ASSETS, **kwargs: Any) -> dg.ExecuteInProcessResult:
            nonlocal step
            step += 1
            t0 = time.monotonic()
            result = dg.materialize(assets, **common, **kwargs)
            outcome = "done" if result.success else "FAILED"
            _progress(f"[{step}/{steps}] {label}: {outcome} in {time.monotonic() - t0:.1f} s")
            return result

        _progress(f"demo: training set '{spec.name}' from {spec_path} against {source} ({endpoint.api_url})")
        result = run("annotation_rulesets, image_flags", [annotation_rulesets, image_flags])
        if result.success:
            stages = " -> ".join(a.key.to_user_string() for a in TRAINING_SET_STAGES)
            result = run(stages, selection=[a.key for a in TRAINING_SET_STAGES], partition_key=spec.name)
        if result.success:
            # one run per shard, as a backfill would launch them; then the export
            for shard in shards:
                key = dg.MultiPartitionKey({TRAINING_SET_PARTITION: spec.name, "shard": shard})
                result = run(f"image_store shard {shard}", selection=[image_store.key], partition_key=key)
                if not result.success:
                    break
        if result.success:
            result = run("training_export", selection=[training_export.key], partition_key=spec.name)
        summary: dict[str, Any] = {
            "ok": result.success,
            "training_set": spec.name,
            "gbif": source,
            "dagster_home": str(home),
            "run_id": result.run_id,
            "seconds": round(time.monotonic() - started, 1),
        }
        if not result.success:
            summary["error"] = "the run failed; see the log above or the run in the Dagster UI (make dev)"
            return summary
        export = result.asset_materializations_for_node("training_export")[0].metadata
        failed_checks = _failed_checks(instance, spec.name)
        manifest = _latest_metadata(instance, balanced_manifest.key)
        snapshot = _latest_metadata(instance, occurrence_snapshot.key)
        store = open_storage(str(data_dir))
        summary.update(
            species_list=str(data_dir / layout.species_list_key(spec.name)),
            snapshot=snapshot["path"].value,
            occurrences=snapshot["occurrences"].value,
            manifest=manifest["path"].value,
            images=manifest["images"].value,
            classes=manifest["classes"].value,
            per_split={
                k.removeprefix("images_"): v.value for k, v in manifest.items() if k.startswith("images_")
            },
            export=export["path"].value,
            exported_images=export["images"].value,
            data_card=export["data_card"].value,
            failed_checks=failed_checks,
            rules_version=layout.newest_complete(store, layout.rulesets()),
        )
        summary["ok"] = not failed_checks
        print(
            f"'{spec.name}': {summary['images']} images in {summary['classes']} classes; "
            f"export {summary['export']}; data card {summary['data_card']}",
            file=sys.stderr,
        )
        return summary


def _latest_metadata(instance, asset_key) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(asset_key)
    return event.asset_materialization.metadata if event else {}


def _failed_checks(instance, training_set: str) -> list[str]:
    """Checks whose latest evaluation for this training set failed (across all the demo's runs)."""
    import dagster as dg

    failed = []
    for record in instance.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=100).records:
        for event in instance.all_logs(record.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = event.dagster_event.event_specific_data
            if not evaluation.passed:
                failed.append(f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}")
    return sorted(set(failed))
