"""The code location: every asset, check, sensor, schedule and resource of gbifdl_assets.

``dagster dev -m gbifdl_assets.definitions`` (or ``workspace.yaml``) loads ``defs``. The optional
Celery location is the module beside this one (``-m gbifdl_assets.definitions.celery``), so that
neither this location nor the ``defs`` folder needs the ``celery`` extra.
"""

from typing import Any

import dagster as dg

from gbifdl_assets.defs.annotations import annotation_rules_sensor
from gbifdl_assets.defs.assets import ALL_ASSETS
from gbifdl_assets.defs.image_flags import image_flags_sensor
from gbifdl_assets.defs.resources import default_resources, image_fetch_resource, keep_values_under_run_config
from gbifdl_assets.defs.schedules import training_set_refresh_schedule
from gbifdl_assets.defs.sensor_timing import every, sensor_seconds
from gbifdl_assets.defs.snapshots import gbif_download_sensor
from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor

__all__ = ["ALL_ASSETS", "defs", "location_resources"]


def location_resources() -> dict[str, Any]:
    """The resources of the code location, from the environment (also used by the Celery job).

    Run config that sets some fields of a resource keeps the environment's values of the others.
    """
    return keep_values_under_run_config(
        {
            **default_resources(),
            # Loopback/private media hosts are refused (SSRF guard), but for the offline sandbox's own address.
            "image_fetch": image_fetch_resource(),
        }
    )


# Declarative automation (eager re-annotation when rules or snapshots change) only runs when its
# sensor runs; on a fresh OSS instance it would start STOPPED.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "gbifdl_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_seconds(30),
    description=(
        f"{every(sensor_seconds(30))}: materializes annotated_occurrences, balanced_manifest, image_store "
        "and training_export when what they read changed (their eager automation conditions)."
    ),
    run_tags={"gbifdl/trigger": "automation"},
)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    sensors=[
        training_set_specs_sensor,
        gbif_download_sensor,
        annotation_rules_sensor,
        image_flags_sensor,
        automation_sensor,
    ],
    schedules=[training_set_refresh_schedule],
    resources=location_resources(),
)
