"""The code location: every asset, check, sensor, schedule and resource of gbifdl_assets."""

import os
from typing import Any

import dagster as dg

from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rules_sensor, annotation_rulesets
from gbifdl_assets.defs.images import ImageFetchResource, image_store, training_export
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.resources import default_resources, keep_values_under_run_config
from gbifdl_assets.defs.schedules import training_set_refresh_schedule
from gbifdl_assets.defs.snapshots import gbif_download, gbif_download_sensor, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor


def location_resources() -> dict[str, Any]:
    """The resources of the code location, from the environment (also used by the Celery job).

    Run config that sets some fields of a resource keeps the environment's values of the others.
    """
    return keep_values_under_run_config(
        {
            **default_resources(),
            # Loopback/private media hosts are refused (SSRF guard) unless set for the offline sandbox.
            "image_fetch": ImageFetchResource(
                allow_loopback=os.environ.get("GBIFDL_ALLOW_LOOPBACK", "") == "1"
            ),
        }
    )


# Declarative automation (eager re-annotation when rules or snapshots change) only runs when its
# sensor runs; on a fresh OSS instance it would start STOPPED.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "gbifdl_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

#: The asset graph in stage order (tests materialize it with their own resources).
ALL_ASSETS = [
    species_list,
    gbif_download,
    occurrence_snapshot,
    annotation_rulesets,
    annotated_occurrences,
    balanced_manifest,
    image_store,
    training_export,
]

defs = dg.Definitions(
    assets=ALL_ASSETS,
    sensors=[training_set_specs_sensor, gbif_download_sensor, annotation_rules_sensor, automation_sensor],
    schedules=[training_set_refresh_schedule],
    resources=location_resources(),
)
