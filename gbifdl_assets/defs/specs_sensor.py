"""training_set_specs_sensor: the spec folder drives the ``training_set`` partitions.

A new spec adds a partition and requests its first materialization; a changed spec (its fingerprint
moved) requests a re-materialization; a deleted spec removes the partition. The run covers the stages
:func:`~gbifdl_assets.pipeline.spec_folder.first_run_stages` names for the spec's source: to the
balanced manifest for a search, to ``gbif_download`` for a download (``gbif_download_sensor`` launches
the snapshot when it ends); annotations, manifest, images and export follow through their eager
automation conditions, so a new spec reaches its training export without anyone clicking. A spec file that stops
validating keeps its partition (the last good version stays usable) and its problems are logged,
so a typo cannot silently delete a training set (:func:`gbifdl_assets.pipeline.spec_folder.partition_changes`).

"Changed" is decided from what the instance knows, not only from the cursor: a sensor starts with an
empty cursor (a fresh ``make dev`` after ``make demo``, a new deployment on an existing instance), and
a training set whose latest ``species_list`` was built from the same spec fingerprint is unchanged.
"""

import json

import dagster as dg

from gbifdl_assets.defs.assets import TRAINING_SET_STAGES
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION, training_set_partitions
from gbifdl_assets.defs.resources import SpecsResource
from gbifdl_assets.defs.sensor_timing import every, sensor_seconds
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.pipeline.spec_folder import first_run_stages, partition_changes

#: species_list's metadata: the fingerprint of the spec it was built from
SPEC_FINGERPRINT = "spec_fingerprint"


@dg.sensor(
    target=TRAINING_SET_STAGES,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_seconds(30),
    description=(
        f"{every(sensor_seconds(30))}: adds, refreshes and removes training_set partitions from the spec "
        "folder; a new or changed spec "
        "runs species_list to balanced_manifest (a download-sourced one to gbif_download, then "
        "gbif_download_sensor takes over); the rest follows through automation."
    ),
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
    run_requests = []
    for name, fingerprint in changes.to_run.items():
        stages = first_run_stages(folder.specs[name])
        run_requests.append(
            dg.RunRequest(
                partition_key=name,
                run_key=f"{name}:{fingerprint[:16]}",
                asset_selection=[dg.AssetKey(stage) for stage in stages],
                tags={
                    "gbifdl/trigger": "spec_added" if name in changes.added else "spec_changed",
                    "gbifdl/target": f"{stages[0]}..{stages[-1]}[{name}]",
                },
            )
        )
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
