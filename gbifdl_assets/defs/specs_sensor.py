"""training_set_specs_sensor: the spec folder drives the ``training_set`` partitions.

A new spec adds a partition and requests its first materialization; a changed spec (its fingerprint
moved) requests a re-materialization; a deleted spec removes the partition. A spec file that stops
validating keeps its partition (the last good version stays usable) and its problems are logged,
so a typo cannot silently delete a training set.
"""

import json

import dagster as dg

from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION, training_set_partitions
from gbifdl_assets.defs.resources import SpecCatalog
from gbifdl_assets.defs.species import species_list


@dg.sensor(
    target=[species_list],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Adds, refreshes and removes training_set partitions from the spec folder.",
)
def training_set_specs_sensor(context: dg.SensorEvaluationContext, specs: SpecCatalog):
    # cursor: {"specs": {name: {"fingerprint": str, "file": str}}}
    previous: dict[str, dict[str, str]] = json.loads(context.cursor or "{}").get("specs", {})
    valid, errors = specs.load_all()
    for path, problem in errors.items():
        context.log.warning(f"spec file {path} is not valid and is ignored: {problem}")

    existing = set(context.instance.get_dynamic_partitions(TRAINING_SET_PARTITION))
    broken_files = {str(p) for p in errors}
    current = {
        name: {"fingerprint": spec.fingerprint(), "file": str(path)} for name, (path, spec) in valid.items()
    }
    # Keep entries whose file still exists but no longer validates.
    for name, entry in previous.items():
        if name not in current and entry.get("file") in broken_files:
            current[name] = entry

    added = sorted(name for name in current if name not in existing)
    removed = sorted(name for name in existing if name not in current)
    changed = sorted(
        name
        for name in current
        if name in existing and previous.get(name, {}).get("fingerprint") != current[name]["fingerprint"]
    )
    run_requests = [
        dg.RunRequest(
            partition_key=name,
            run_key=f"{name}:{current[name]['fingerprint'][:16]}",
            tags={"gbifdl/trigger": "spec_added" if name in added else "spec_changed"},
        )
        for name in added + changed
        if name in valid  # a broken spec is not re-run
    ]
    partition_requests = []
    if added:
        partition_requests.append(training_set_partitions.build_add_request(added))
    if removed:
        partition_requests.append(training_set_partitions.build_delete_request(removed))
    new_cursor = json.dumps({"specs": current}, sort_keys=True)
    if not run_requests and not partition_requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"{len(current)} specs, no change"), cursor=new_cursor
        )
    context.log.info(f"specs: added {added}, changed {changed}, removed {removed}")
    return dg.SensorResult(
        run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=new_cursor
    )
