"""A manifest build's picked rows, in output order, turned into manifest rows a part at a time.

The build (:mod:`.build`) ends with the picked rows' input columns in input order (``source``), their
positions in output order (``order``) and the few whole-manifest columns that need every row (content
keys, which set the order; label names, the most frequent name per class; splits, whose counts are
statistics; licences). :meth:`PickedRows.parts` assembles the other columns ``part_rows`` rows at a
time, so a manifest written with :meth:`PickedRows.write` is never whole in memory: at 1.16 M images
the whole table is 0.5 GB in Arrow, a part of 131,072 rows 60 MB. :meth:`PickedRows.table` is the
manifest in one piece (:func:`~gbifdl_assets.sampling.manifest.build_manifest`).

Every column is row-local but those four, so the parts joined are exactly the table built in one
piece.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gbifdl_assets.sampling.arrays import combine_chunks, take
from gbifdl_assets.sampling.assemble import as_text, column_or_null, stratum_column
from gbifdl_assets.sampling.manifest_table import COPIED_COLUMNS, MANIFEST_COLUMNS, MANIFEST_SCHEMA
from gbifdl_assets.sampling.splits import SplitResult

__all__ = ["CHECK_COLUMNS", "PART_ROWS", "PickedRows"]

#: manifest rows per part (and Parquet row group) of a written manifest
PART_ROWS = 1 << 17
#: the manifest columns the asset checks and the class names read (:meth:`PickedRows.write`)
CHECK_COLUMNS = ("label", "label_name", "license", "split", "split_group", "url")
# Parquet dictionaries for the columns whose values repeat (classes, licences, publishers, people):
# for content keys, URLs and split groups the writer built a dictionary only to drop it again; and
# min/max statistics for the numeric columns only (a reader can skip row groups by label). Writing the
# 670 k-row bench manifest took 0.57 s instead of 0.80 s, and 41 MB instead of 43 MB.
_DICTIONARY_COLUMNS = [
    "label",
    "label_name",
    "speciesKey",
    "media_index",
    "datasetKey",
    "publisher",
    "license",
    "license_raw",
    "creator",
    "rightsHolder",
    "split",
    "stratum",
    "snapshot_id",
]
_STATISTICS_COLUMNS = ["label", "speciesKey", "gbifID", "media_index"]


@dataclass
class PickedRows:
    """The picked rows of a build, ready to be assembled (see the module docstring)."""

    source: pa.Table  # the input's last-pass columns of the picked rows (and duplicate candidates)
    order: np.ndarray  # row of ``source`` for each manifest row, in output order
    keys: pa.Array  # content_key, in output order
    labels: pa.Array  # label (int64), in output order
    names: pa.Array  # label_name, in output order
    licenses: pa.Array  # normalised licence (dictionary), in output order
    splits: SplitResult  # split and split group, in output order
    by: list[str]  # balancing.by columns (the stratum)
    snapshot_id: str
    stats: dict[str, Any]  # the build statistics; assembling adds to its timings
    started: float = field(default_factory=time.perf_counter)  # when the build started (total_s)

    @property
    def rows(self) -> int:
        return len(self.order)

    def part(self, start: int, stop: int) -> pa.Table:
        """Manifest rows ``start`` to ``stop`` (:data:`MANIFEST_SCHEMA`)."""
        n = stop - start
        sel = take(self.source, self.order[start:stop])
        raw_col = "media_license_raw" if "media_license_raw" in sel.column_names else "media_license"
        columns: dict[str, pa.Array] = {
            "content_key": self.keys.slice(start, n),
            "url": as_text(sel.column("identifier")),
            "label": self.labels.slice(start, n),
            "label_name": self.names.slice(start, n),
            "gbifID": combine_chunks(sel.column("gbifID")).cast(pa.int64()),
            "license": as_text(self.licenses.slice(start, n)),
            "license_raw": column_or_null(sel, raw_col, pa.string()),
            "split": self.splits.split.slice(start, n),
            "split_group": self.splits.group.slice(start, n),
            "stratum": stratum_column(sel, self.by),
            "snapshot_id": pa.array([self.snapshot_id] * n, pa.string()),
        }
        for out_name, in_name in COPIED_COLUMNS.items():
            if out_name not in columns:
                columns[out_name] = column_or_null(sel, in_name, MANIFEST_SCHEMA.field(out_name).type)
        return pa.Table.from_arrays([columns[n] for n in MANIFEST_COLUMNS], schema=MANIFEST_SCHEMA)

    def parts(self, part_rows: int = PART_ROWS) -> Iterator[pa.Table]:
        """The manifest in parts of ``part_rows`` rows, in order; the timings count their assembly."""
        for start in range(0, self.rows, part_rows):
            t = time.perf_counter()
            part = self.part(start, min(start + part_rows, self.rows))
            self._timed("assemble_s", t)
            yield part

    def table(self) -> pa.Table:
        """The whole manifest in one table."""
        t = time.perf_counter()
        out = self.part(0, self.rows)
        self._timed("assemble_s", t)
        return out

    def write(self, sink: str | os.PathLike[str] | BinaryIO, *, part_rows: int = PART_ROWS) -> pa.Table:
        """Write the manifest as Parquet to ``sink`` one part (row group) at a time; returns its
        :data:`CHECK_COLUMNS`, what the asset checks and the class names need, never the whole table.

        A path is written as it is (callers wanting atomicity write a temporary name, or a storage
        handle); a file object is left open.
        """
        urls = []
        # a part is encoded and compressed in a helper thread (Arrow lets go of the GIL there) while
        # the next one is assembled: the write took 0.9 s of the 10 M-row bench when it did not overlap
        with (
            pq.ParquetWriter(
                sink,
                MANIFEST_SCHEMA,
                compression="zstd",
                use_dictionary=_DICTIONARY_COLUMNS,
                write_statistics=_STATISTICS_COLUMNS,
            ) as writer,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            pending = None
            for part in self.parts(part_rows):
                urls.append(part.column("url").chunk(0))
                self._wait(pending)
                pending = pool.submit(writer.write_table, part, row_group_size=part_rows)
                del part
            self._wait(pending)
        columns = {
            "label": self.labels,
            "label_name": self.names,
            "license": as_text(self.licenses),
            "split": self.splits.split,
            "split_group": self.splits.group,
            "url": pa.chunked_array(urls, pa.string()),
        }
        return pa.table({c: columns[c] for c in CHECK_COLUMNS})

    def _wait(self, pending: Future | None) -> None:
        """The previous part written (its error raised here); ``write_s`` counts the time waited."""
        if pending is not None:
            t = time.perf_counter()
            pending.result()
            self._timed("write_s", t)

    def _timed(self, name: str, since: float) -> None:
        timings = self.stats["timings"]
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - since, 4)
        timings["total_s"] = round(now - self.started, 4)
