"""``make demo`` / ``gbifdl demo``: materialize the example training set on embedded defaults.

It talks to GBIF when GBIF answers, and otherwise says so in one line and starts the bundled
offline sandbox in-process, so the demo works on a machine without network.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from gbifdl_assets.gbif.client import DEFAULT_BASE_URL

DEMO_SPEC = "european-butterflies.yaml"
SANDBOX_OCCURRENCES = 50_000


def gbif_reachable(base_url: str = DEFAULT_BASE_URL, timeout: float = 4.0) -> bool:
    try:
        response = requests.get(f"{base_url}/occurrence/search", params={"limit": 0}, timeout=timeout)
    except requests.RequestException:
        return False
    return response.ok


def _instance_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    repo_config = Path(__file__).resolve().parents[1] / "dagster.yaml"
    if not config.exists() and repo_config.exists():
        shutil.copy(repo_config, config)
    return home


def run_demo(
    *, spec_path: Path | None = None, data_dir: Path = Path("data"), offline: bool = False
) -> dict[str, Any]:
    import dagster as dg

    from gbifdl_assets.defs.annotations import annotation_rulesets
    from gbifdl_assets.defs.assets import ALL_ASSETS, TRAINING_SET_STAGES
    from gbifdl_assets.defs.images import image_store, shard_partitions, training_export
    from gbifdl_assets.defs.manifest import balanced_manifest
    from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
    from gbifdl_assets.defs.resources import (
        AnnotationsResource,
        GbifResource,
        ImageFetchResource,
        SpecsResource,
        StorageResource,
    )
    from gbifdl_assets.defs.snapshots import occurrence_snapshot
    from gbifdl_assets.specs import example_specs_dir, load_spec
    from gbifdl_assets.storage import layout, open_storage

    spec_path = spec_path or example_specs_dir() / DEMO_SPEC
    spec = load_spec(spec_path)
    data_dir = data_dir.resolve()
    started = time.monotonic()
    with ExitStack() as stack:
        api_url = os.environ.get("GBIF_API_URL", DEFAULT_BASE_URL)
        source = "gbif"
        if offline or not gbif_reachable(api_url):
            if not offline:
                print(
                    f"GBIF ({api_url}) cannot be reached from here: running against the bundled offline sandbox.",
                    file=sys.stderr,
                )
            from gbifdl_assets.sandbox import SandboxConfig, start_sandbox

            sandbox = stack.enter_context(
                start_sandbox(SandboxConfig(occurrences=SANDBOX_OCCURRENCES, seed=42))
            )
            api_url, source = sandbox.api_url, "sandbox"

        home = _instance_home()
        instance = stack.enter_context(dg.DagsterInstance.get())
        if not instance.has_dynamic_partition(TRAINING_SET_PARTITION, spec.name):
            instance.add_dynamic_partitions(TRAINING_SET_PARTITION, [spec.name])
        resources = {
            "gbif": GbifResource(base_url=api_url),
            "storage": StorageResource(uri=str(data_dir)),
            "specs": SpecsResource(folder=str(spec_path.resolve().parent)),
            "annotations": AnnotationsResource(store_url=f"sqlite:///{data_dir / 'annotations.sqlite'}"),
            # the sandbox's media server is on loopback, which the SSRF guard refuses otherwise
            "image_fetch": ImageFetchResource(allow_loopback=source == "sandbox"),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        tags = {"gbifdl/trigger": "demo"}
        rules = dg.materialize(
            [annotation_rulesets], instance=instance, resources=resources, tags=tags, raise_on_error=False
        )
        result = rules
        if rules.success:
            result = dg.materialize(
                ALL_ASSETS,
                selection=[a.key for a in TRAINING_SET_STAGES],
                partition_key=spec.name,
                instance=instance,
                resources=resources,
                raise_on_error=False,
                tags=tags,
            )
        if result.success:
            # one run per shard, as a backfill would launch them; then the export
            for shard in shard_partitions.get_partition_keys():
                key = dg.MultiPartitionKey({TRAINING_SET_PARTITION: spec.name, "shard": shard})
                result = dg.materialize(
                    ALL_ASSETS,
                    selection=[image_store.key],
                    partition_key=key,
                    instance=instance,
                    resources=resources,
                    raise_on_error=False,
                    tags=tags,
                )
                if not result.success:
                    break
        if result.success:
            result = dg.materialize(
                ALL_ASSETS,
                selection=[training_export.key],
                partition_key=spec.name,
                instance=instance,
                resources=resources,
                raise_on_error=False,
                tags=tags,
            )
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
            per_split=manifest["per_split"].value,
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
