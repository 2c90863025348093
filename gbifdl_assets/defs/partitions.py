"""Partitions shared by the stages: one dynamic partition per training-set spec."""

import dagster as dg

TRAINING_SET_PARTITION = "training_set"

#: Filled and pruned by ``training_set_specs_sensor`` from the spec folder.
training_set_partitions = dg.DynamicPartitionsDefinition(name=TRAINING_SET_PARTITION)
