"""The code location: every asset, check, sensor and resource of gbifdl_assets."""

import dagster as dg

from gbifdl_assets.defs.resources import default_resources
from gbifdl_assets.defs.species import species_list
from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor

defs = dg.Definitions(
    assets=[species_list],
    sensors=[training_set_specs_sensor],
    resources=default_resources(),
)
