"""training_set_specs_sensor: the spec folder drives the ``training_set`` partitions.

A new spec adds a partition and requests its first materialization; a changed spec (its fingerprint
moved) requests a re-materialization; a deleted spec removes the partition. A spec file that stops
validating keeps its partition (the last good version stays usable) and its problems are logged,
so a typo cannot silently delete a training set (:func:`gbifdl_assets.pipeline.spec_folder.partition_changes`).

"Changed" is decided from what the instance knows, not only from the cursor: a sensor starts with an
empty cursor (a fresh ``make dev`` after ``make demo``, a new deployment on an existing instance), and
a training set whose latest ``species_list`` was built from the same spec fingerprint is unchanged.
"""

import json

import dagster as dg

from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION, training_set_partitions
from gbifdl_assets.defs.resources import SpecsResource
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.pipeline.spec_folder import partition_changes

#: species_list's metadata: the fingerprint of the spec it was built from
SPEC_FINGERPRINT = "spec_fingerprint"


@dg.sensor(
    target=[species_list],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Adds, refreshes and removes training_set partitions from the spec folder.",
)
def training_set_specs_sensor(context: dg.SensorEvaluationContext, specs: SpecsResource):
    # cursor: {"specs": {name: {"fingerprint": str, "file": str}}}
    previous: dict[str, dict[str, str]] = json.loads(context.cursor or "{}").get("specs", {})
    folder = specs.load()
    for path, problem in folder.problems.items():
        context.log.warning(f"spec file {path} is not valid and is ignored: {problem}")
    existing = context.instance.get_dynamic_partitions(TRAINING_SET_PARTITION)
    for name in existing:
        if name not in previous and (built := built_fingerprint(context.instance, name)):
            previous[name] = {"fingerprint": built}  # the file is not known: see partition_changes
    changes = partition_changes(folder, previous, existing)
    run_requests = [
        dg.RunRequest(
            partition_key=name,
            run_key=f"{name}:{fingerprint[:16]}",
            tags={
                "gbifdl/trigger": "spec_added" if name in changes.added else "spec_changed",
                "gbifdl/target": f"species_list[{name}]",
            },
        )
        for name, fingerprint in changes.to_run.items()
    ]
    partition_requests = []
    if changes.added:
        partition_requests.append(training_set_partitions.build_add_request(changes.added))
    if changes.removed:
        partition_requests.append(training_set_partitions.build_delete_request(changes.removed))
    new_cursor = json.dumps({"specs": changes.remembered}, sort_keys=True)
    if not run_requests and not partition_requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"{len(changes.remembered)} specs, no change"), cursor=new_cursor
        )
    context.log.info(f"specs: added {changes.added}, changed {changes.changed}, removed {changes.removed}")
    return dg.SensorResult(
        run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=new_cursor
    )


def built_fingerprint(instance: dg.DagsterInstance, training_set: str) -> str | None:
    """The spec fingerprint the latest ``species_list`` of ``training_set`` was built from, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=species_list.key, asset_partitions=[training_set]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(SPEC_FINGERPRINT)
    return str(value.value) if value is not None else None
