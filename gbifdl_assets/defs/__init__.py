"""The Dagster layer: assets, checks, partitions, resources, sensors and the schedule.

Each asset reads its resources, calls its stage in :mod:`gbifdl_assets.pipeline` and turns the result
into a materialization; the asset list is :mod:`.assets`, the code location ``gbifdl_assets.definitions``.
"""
