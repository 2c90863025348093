"""The snapshot Parquet writer: encoding and zstd in a background thread, row groups of a useful size."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA

#: snapshot rows per Parquet row group: small enough that encoding overlaps parsing even for a
#: download of a few hundred thousand rows (the last row group is encoded after everything else)
ROW_GROUP_ROWS = 65_536


#: columns whose values repeat (taxa, datasets, vocabularies, licences, people): dictionary-encoded.
#: The others (ids, URLs, coordinates, dates, titles) are nearly unique, so a dictionary only costs
#: CPU before Parquet falls back to plain encoding (~1/6 of the writer thread in a profile).
_DICTIONARY_COLUMNS = [
    f.name
    for f in SNAPSHOT_SCHEMA
    if f.name
    not in (
        "gbifID",
        "occurrenceID",
        "decimalLatitude",
        "decimalLongitude",
        "eventDate",
        "media_index",
        "identifier",
        "references",
        "title",
    )
]


#: columns with min/max statistics in the row groups (what readers filter on: keys, numbers and
#: short vocabularies); statistics over free text and URLs cost ~1/5 of the writer's CPU for nothing
_STATISTICS_COLUMNS = [
    f.name
    for f in SNAPSHOT_SCHEMA
    if not pa.types.is_string(f.type)
    or f.name
    in (
        "taxonRank",
        "datasetKey",
        "publishingOrgKey",
        "basisOfRecord",
        "occurrenceStatus",
        "countryCode",
        "license",
        "media_license",
    )
]


class SnapshotParquetWriter:
    """ParquetWriter in a background thread (encoding and zstd overlap with parsing)."""

    def __init__(self, path: Path):
        self._writer = pq.ParquetWriter(
            path,
            SNAPSHOT_SCHEMA,
            compression="zstd",
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=_STATISTICS_COLUMNS,
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)  # bounded: <= 2 chunks in flight
        self._error: BaseException | None = None
        self._species: set[int] = set()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self._thread = threading.Thread(target=self._run, name="dwca-parquet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            table = self._queue.get()
            if table is None:
                return
            if self._error is not None:
                continue
            try:
                self._writer.write_table(table)
            except BaseException as exc:
                self._error = exc

    def write(self, table: pa.Table) -> None:
        """Queue ``table``; small tables (one per parsed piece) are gathered to about
        ROW_GROUP_ROWS rows first, so row groups keep a useful size."""
        if self._error is not None:
            raise self._error
        if table.num_rows == 0:
            return
        species = table.column("speciesKey").drop_null().to_numpy()
        if len(species):
            self._species.update(np.unique(species).tolist())
        self.rows += table.num_rows
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._put_pending()

    def _put_pending(self) -> None:
        if self._pending:
            self._queue.put(pa.concat_tables(self._pending))  # zero-copy: the writer reads chunks
        self._pending, self._pending_rows = [], 0

    @property
    def species(self) -> int:
        return len(self._species)

    def close(self, raise_errors: bool = True) -> None:
        if raise_errors and self._error is None:
            self._put_pending()
        self._pending, self._pending_rows = [], 0
        self._queue.put(None)
        self._thread.join()
        try:
            self._writer.close()
        except BaseException:
            if raise_errors:
                raise
        if raise_errors and self._error is not None:
            raise self._error
