"""What a user sees of the code location, frozen: every asset, check, sensor and schedule.

The snapshot (``snapshots/definitions.json``) records each asset's key, partitions, deps and their
partition mappings, pool, retry policy, automation condition, group, kinds and checks; each sensor's
and schedule's target, default status, interval or cron. A refactor of the Dagster layer must leave
it unchanged; a deliberate change regenerates it with ``GBIFDL_UPDATE_SNAPSHOT=1 pytest <this file>``
and shows up as a diff in review.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from gbifdl_assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> Any:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return {d.name: _partitions(d.partitions_def) for d in partitions_def.partitions_defs}
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return {"dynamic": partitions_def.name}
    if isinstance(partitions_def, dg.StaticPartitionsDefinition):
        return {"static": partitions_def.get_partition_keys()}
    return str(partitions_def)


def _retry(policy: dg.RetryPolicy | None) -> Any:
    if policy is None:
        return None
    return {
        "max_retries": policy.max_retries,
        "delay": policy.delay,
        "backoff": policy.backoff.value if policy.backoff else None,
        "jitter": policy.jitter.value if policy.jitter else None,
    }


def _condition(condition: dg.AutomationCondition | None) -> Any:
    # The label names the built-in condition (eager, on_cron, ...); the full tree would pin
    # Dagster's internals rather than our choice.
    if condition is None:
        return None
    return condition.get_label() or type(condition).__name__


def _mapping(mapping: dg.PartitionMapping | None) -> Any:
    if mapping is None:
        return None
    if isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping):
        return {type(mapping).__name__: mapping.partition_dimension_name}
    return type(mapping).__name__


def _asset(assets_def: dg.AssetsDefinition, key: dg.AssetKey) -> dict[str, Any]:
    spec = next(s for s in assets_def.specs if s.key == key)
    return {
        "partitions": _partitions(spec.partitions_def),
        "deps": {dep.asset_key.to_user_string(): _mapping(dep.partition_mapping) for dep in spec.deps},
        "group": spec.group_name,
        "kinds": sorted(spec.kinds),
        "pool": assets_def.op.pool,
        "retry_policy": _retry(assets_def.op.retry_policy),
        "automation_condition": _condition(spec.automation_condition),
        "checks": {
            check.name: {"blocking": check.blocking}
            for check in assets_def.check_specs
            if check.asset_key == key
        },
        "has_description": bool(spec.description),
    }


def _keys(keys: Any) -> list[str]:
    return sorted(key.to_user_string() for key in keys)


def _sensor_targets(repo: dg.RepositoryDefinition, sensor: dg.SensorDefinition) -> list[str]:
    if sensor.asset_selection is not None:
        return _keys(sensor.asset_selection.resolve(repo.asset_graph))
    jobs = [repo.get_job(target.job_name) for target in sensor.targets]
    return _keys(key for job in jobs for key in job.asset_layer.executable_asset_keys)


def describe_definitions(definitions: dg.Definitions) -> dict[str, Any]:
    repo = definitions.get_repository_def()
    assets: dict[str, Any] = {}
    for assets_def in repo.assets_defs_by_key.values():
        for key in assets_def.keys:
            assets[key.to_user_string()] = _asset(assets_def, key)
    sensors = {
        sensor.name: {
            "targets": _sensor_targets(repo, sensor),
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "has_description": bool(sensor.description),
        }
        for sensor in repo.sensor_defs
    }
    schedules = {
        schedule.name: {
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "targets": _keys(key for a in schedule.target.assets_defs or [] for key in a.keys),
            "default_status": schedule.default_status.value,
            "has_description": bool(schedule.description),
        }
        for schedule in repo.schedule_defs
    }
    return {
        "assets": dict(sorted(assets.items())),
        "sensors": dict(sorted(sensors.items())),
        "schedules": dict(sorted(schedules.items())),
        "resources": sorted(repo.get_top_level_resources()),
    }


def test_definitions_match_the_snapshot():
    current = describe_definitions(defs)
    if os.environ.get("GBIFDL_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())
