"""Temporary per-bucket Arrow files for the partitioned (Grace hash) join of a large multimedia.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from gbifdl_assets.gbif.dwca.parse import CHUNK_ROWS


class Spill:
    """Per-bucket tables in temporary Arrow IPC files (used only when partitioning)."""

    def __init__(self, directory: Path, prefix: str, buckets: int, schema: pa.Schema):
        self.paths = [directory / f"{prefix}-{b:04d}.arrow" for b in range(buckets)]
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._schema = schema
        self._options = pa.ipc.IpcWriteOptions(compression="lz4")

    def append(self, table: pa.Table, buckets: np.ndarray) -> None:
        order = np.argsort(buckets, kind="stable")
        sorted_b = buckets[order]
        edges = np.flatnonzero(np.diff(sorted_b)) + 1
        for part in np.split(order, edges):
            if len(part) == 0:
                continue
            b = int(buckets[part[0]])
            writer = self._writers.get(b)
            if writer is None:
                writer = pa.ipc.new_stream(str(self.paths[b]), self._schema, options=self._options)
                self._writers[b] = writer
            writer.write_table(table.take(pa.array(part)))

    def finish(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def read(self, bucket: int) -> pa.Table:
        path = self.paths[bucket]
        if not path.exists():
            return self._schema.empty_table()
        with pa.ipc.open_stream(str(path)) as reader:
            table = reader.read_all()
        path.unlink()
        return table


class SpillBuffer:
    """Per-piece tables gathered to about CHUNK_ROWS rows before they are spilled by gbifID bucket
    (a spill write per piece and bucket would make thousands of tiny IPC batches)."""

    def __init__(self, spill: Spill, buckets: int):
        self._spill = spill
        self._buckets = buckets
        self._tables: list[pa.Table] = []
        self._ids: list[np.ndarray] = []
        self._rows = 0

    def add(self, table: pa.Table, ids: np.ndarray) -> None:
        self._tables.append(table)
        self._ids.append(ids)
        self._rows += table.num_rows
        if self._rows >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            ids = np.concatenate(self._ids)
            self._spill.append(pa.concat_tables(self._tables).combine_chunks(), ids % self._buckets)
        self._tables, self._ids, self._rows = [], [], 0
