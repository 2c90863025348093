"""Occurrence snapshots and where they come from: the layer between the GBIF client and the stages.

``sources`` decides, from a training-set spec, between the search API and a GBIF download and records
the download a training set waits for; ``snapshots`` writes and finds the immutable snapshots;
``search_records`` turns search-API records into snapshot rows; ``ingest_cli`` is
``gbifdl dwca ingest`` (an archive -> a snapshot, without Dagster). It needs both the spec model and
``gbif/``, so it sits above them: ``gbif/`` never imports the spec model.
"""
