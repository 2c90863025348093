"""Committed occurrence snapshots written straight into a storage, for tests and benchmarks.

The pipeline writes snapshots from GBIF (``occurrences.snapshots``); tests of what reads them (the rule
preview) need exact rows, so this writes a snapshot-schema table in the storage layout: the media file,
then the commit file, then the ``latest`` pointer (the commit rule of ``storage.layout``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gbifdl_assets.gbif.media_schema import SNAPSHOT_SCHEMA, conform
from gbifdl_assets.storage import Storage, layout


def write_committed_snapshot(
    storage: Storage, training_set: str, table: pa.Table, *, now: dt.datetime | None = None
) -> str:
    """Write ``table`` (conformed to the snapshot schema) as a committed snapshot; return its id."""
    table = conform(table)
    folder = layout.snapshots(training_set)
    digest = hashlib.sha256(
        f"{training_set}{table.num_rows}{dt.datetime.now().isoformat()}".encode()
    ).hexdigest()
    snapshot_id = layout.new_snapshot_id(digest, now)
    with storage.open_write(folder.key(snapshot_id, layout.SNAPSHOT_MEDIA_FILE)) as fh:
        pq.write_table(table, fh, compression="zstd", row_group_size=128 * 1024)
    meta = {
        "training_set": training_set,
        "snapshot_id": snapshot_id,
        "columns": SNAPSHOT_SCHEMA.names,
        "counts": {"media": table.num_rows},
        "created": (now or dt.datetime.now(dt.UTC)).isoformat(),
    }
    storage.write_bytes(folder.commit_key(snapshot_id), json.dumps(meta).encode())
    layout.publish(storage, folder, snapshot_id)
    return snapshot_id


def rows_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A snapshot table from dicts with snapshot field names (``identifier`` defaults to a made-up URL)."""
    names = sorted({k for r in rows for k in r} | {"gbifID", "identifier"})
    data: dict[str, list[Any]] = {n: [] for n in names}
    for i, row in enumerate(rows):
        for n in names:
            default = f"https://images.example.org/{row.get('gbifID', i)}.jpg" if n == "identifier" else None
            data[n].append(row.get(n, default))
    fields = [SNAPSHOT_SCHEMA.field(n) for n in names]
    return conform(pa.table({n: pa.array(data[n], f.type) for n, f in zip(names, fields, strict=True)}))
