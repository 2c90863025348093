"""Partitions shared by the stages: one dynamic partition per training-set spec."""

import warnings

import dagster as dg

# image_store (training_set x shard) maps to and from the training-set stages through
# MultiToSingleDimensionPartitionMapping on purpose (DESIGN: it materializes on dagster 1.13.27). The
# class is marked beta and warns once per use at import; every Dagster-layer module imports this one
# first, so the filter is set here, where the definitions load, for that one warning only.
warnings.filterwarnings(
    "ignore",
    message=r"Class `MultiToSingleDimensionPartitionMapping` is currently in beta",
    category=dg.BetaWarning,
)

TRAINING_SET_PARTITION = "training_set"

#: Filled and pruned by ``training_set_specs_sensor`` from the spec folder.
training_set_partitions = dg.DynamicPartitionsDefinition(name=TRAINING_SET_PARTITION)
