"""How a training set's images are spread over shards, so that a backfill spreads the downloads.

The shard count is a per-deployment constant (``GBIFDL_IMAGE_SHARDS``, default 8, read once when the
code loads): it names image_store's partitions, so set it before the first image_store run and keep it
(a spec's ``images.shards`` is advisory; partition keys must not change under a running backfill).
Small installations want few shards (fewer runs), clusters more. A species always falls in one shard
(the shard is a hash of its label), so per-class completeness is decided within one run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DEFAULT_SHARDS = 8
SHARDS_VARIABLE = "GBIFDL_IMAGE_SHARDS"


def shard_count_from_env() -> int:
    """Shards per training set: GBIFDL_IMAGE_SHARDS (default 8); a ValueError naming the fix otherwise."""
    raw = os.environ.get(SHARDS_VARIABLE, str(DEFAULT_SHARDS)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ValueError(
            f"{SHARDS_VARIABLE}={raw!r} is not a shard count; give a whole number from 1 to 100 "
            f"(default {DEFAULT_SHARDS}), and keep it once image_store has run"
        )
    return int(raw)


#: This deployment's shard count, read once when the code loads.
SHARDS = shard_count_from_env()


def shard_keys(shards: int = SHARDS) -> list[str]:
    """The shards' names: ``00``, ``01``, ... (image_store's shard partition keys)."""
    return [f"{i:02d}" for i in range(shards)]


def shard_of(labels: pa.Array | pa.ChunkedArray, shards: int = SHARDS) -> pa.Array:
    """The shard of each label: a stable hash, so a species never moves between shards."""
    hashed = [int(hashlib.sha256(str(v).encode()).hexdigest()[:8], 16) % shards for v in labels.to_pylist()]
    return pa.array([f"{s:02d}" for s in hashed])


def shard_column(labels: pa.Array | pa.ChunkedArray, shards: int = SHARDS) -> pa.Array:
    """Each row's shard (as :func:`shard_of`), hashing every distinct label once."""
    distinct = pc.unique(labels)
    return pc.take(shard_of(distinct, shards), pc.index_in(labels, value_set=distinct))


#: manifest rows decoded at a time when a shard's rows are picked out
BATCH_ROWS = 1 << 16


class ShardedManifest:
    """A manifest read one shard at a time: batch by batch, keeping the shard's rows only.

    A shard process needs its own rows (an eighth of the manifest with 8 shards) and the training-set
    summary two columns of each shard in turn; reading the whole manifest for them held all of it in
    every shard process (1.8 GB for a re-run of one shard of a 1.16 M-image manifest).
    """

    def __init__(self, file: pq.ParquetFile, shards: int = SHARDS):
        self.file = file
        self.shards = shards

    @property
    def num_rows(self) -> int:
        return self.file.metadata.num_rows

    def rows_of(self, shard: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of ``shard`` (in manifest order), all columns or ``columns``."""
        whole = self.file.schema_arrow
        names = list(columns) if columns is not None else whole.names
        schema = pa.schema([whole.field(c) for c in names], metadata=whole.metadata)
        parts = []
        for batch in self.file.iter_batches(batch_size=BATCH_ROWS, columns=sorted({*names, "label"})):
            mine = batch.filter(pc.equal(shard_column(batch.column("label"), self.shards), shard))
            parts.append(pa.RecordBatch.from_arrays([mine.column(c) for c in names], schema=schema))
        return pa.Table.from_batches(parts, schema=schema)
