"""The Dagster layer: assets, checks, partitions, resources and sensors over the plain-Python core."""
