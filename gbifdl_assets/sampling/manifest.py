"""The balanced manifest: filters → balance → splits, one row per image.

``build_manifest(table, spec, snapshot_id=...)`` turns a snapshot (or annotated_occurrences)
table into :data:`MANIFEST_SCHEMA` rows plus statistics, and the ``check_*`` functions are the
asset checks' logic (the Dagster layer only wraps them). Nothing here imports dagster.

``content_key`` is the sha256 (hex) of the image URL's UTF-8 bytes: the key under which the
downloader stores the image. It addresses the *source URL*, so it is known before anything is
downloaded and two training sets that list the same URL share one stored image; the downloader
records the sha256 of the downloaded *content* separately (two URLs serving identical bytes are
found there, not here).

Rows are sorted by (label, content_key): the order does not depend on the input's row order or
the seed, so two manifests of the same set diff cleanly.

Memory: the input is processed in batches of ``batch_rows`` rows (Parquet is read batch by
batch, with the next batch decoded in a background thread; a table is sliced), keeping only
~50 bytes per surviving row between the passes (row position, URL hash, label, gbifID, media
index, stratum and licence codes). A last pass reads the output columns of the picked rows only,
plus the URLs of duplicate candidates (equal hashes), which are compared there; from Parquet, polars
reads it a slice of the input at a time (:mod:`.polars_read`: only the selected rows are
materialised, where pyarrow decodes whole columns). :func:`pick_manifest_from_parquet` stops there
(:class:`PickedRows`); :meth:`PickedRows.write` assembles and writes the manifest a part (row group)
at a time, so the output is never whole in memory, and :func:`build_manifest_from_parquet` assembles
it in one table. Measured on the benchmark's 10 M-row input with 1.16 M images picked (the whole
manifest 0.5 GB in Arrow): the balanced_manifest stage peaked at 1.2 GB as a plain call (3.2 GB when
the picked rows were read in one polars query and the manifest was one table), and the filter pass
at 0.5 GB. On the 2-core VM this was built on, touching fresh memory costs ~2.5 s per GB in page
faults, which made a read-everything version 2-3x slower in a fresh process.

The build is split by topic: :mod:`.source` (the input), :mod:`.build` (the passes),
:mod:`.assemble` (the output columns), :mod:`.picked` (the picked rows assembled and written in
parts), :mod:`.manifest_table` (schema, result, writing), :mod:`.polars_read` (the last pass from
Parquet) and :mod:`.checks`. This module gathers their public names, the import path callers use.
"""

from __future__ import annotations

from gbifdl_assets.sampling.assemble import content_keys
from gbifdl_assets.sampling.build import (
    build_manifest,
    build_manifest_from_parquet,
    pick_manifest,
    pick_manifest_from_parquet,
)
from gbifdl_assets.sampling.checks import (
    check_balance,
    check_licenses,
    check_split_leakage,
    check_strata_columns,
    check_unique_urls,
    class_counts_markdown,
    empty_column_fix,
)
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.exclusions import ImageExclusions
from gbifdl_assets.sampling.manifest_table import (
    MANIFEST_COLUMNS,
    MANIFEST_METADATA_KEY,
    MANIFEST_SCHEMA,
    ManifestResult,
    write_manifest,
)
from gbifdl_assets.sampling.picked import PART_ROWS, PickedRows
from gbifdl_assets.sampling.source import input_columns, read_input

__all__ = [
    "MANIFEST_COLUMNS",
    "MANIFEST_METADATA_KEY",
    "MANIFEST_SCHEMA",
    "ImageExclusions",
    "ManifestResult",
    "PART_ROWS",
    "PickedRows",
    "SamplingError",
    "build_manifest",
    "build_manifest_from_parquet",
    "check_balance",
    "check_licenses",
    "check_split_leakage",
    "check_strata_columns",
    "check_unique_urls",
    "class_counts_markdown",
    "empty_column_fix",
    "pick_manifest",
    "pick_manifest_from_parquet",
    "content_keys",
    "input_columns",
    "read_input",
    "write_manifest",
]
