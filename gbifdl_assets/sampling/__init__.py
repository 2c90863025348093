"""Sampling: from a snapshot (or annotated occurrences) to a balanced, licence-clean manifest.

* :mod:`.filters`: the spec's record filters, the licence allowlist, the annotation policy and
  duplicate URLs, each dropped row counted under one reason;
* :mod:`.balance`: exact, seeded stratified sampling by label and, within a label, by strata
  (publisher by default), stable under refresh;
* :mod:`.splits`: train/val/test by a stable hash of a group key, leakage-free by construction;
* :mod:`.manifest`: the pipeline's overview and the names callers import, gathered from
  :mod:`.source` (the input: columns read, Parquet streamed batch by batch), :mod:`.build` (the
  passes), :mod:`.assemble` (the output columns), :mod:`.manifest_table` (the schema, the result
  and writing it) and :mod:`.checks` (the asset checks' logic);
* :mod:`.errors`: :class:`SamplingError`;
* :mod:`.arrays`: column helpers shared by the modules above;
* :mod:`.hashing`: the stable 64-bit hash everything above relies on;
* :mod:`.cli`: ``gbifdl manifest build``.

Plain Python (pyarrow/numpy): no dagster import.
"""
