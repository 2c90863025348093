"""The manifest table: its schema, what a build returns, and writing it as Parquet.

``content_key`` is the sha256 (hex) of the image URL's UTF-8 bytes: the key under which the
downloader stores the image (see :mod:`gbifdl_assets.sampling.manifest`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("content_key", pa.string(), nullable=False),  # sha256(url) hex: the image-store key
        pa.field("url", pa.string(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),  # accepted taxon key at the label rank
        pa.field("label_name", pa.string()),  # canonical name at the label rank, when the input has it
        pa.field("speciesKey", pa.int64()),
        pa.field("gbifID", pa.int64(), nullable=False),
        pa.field("media_index", pa.int32()),
        pa.field("datasetKey", pa.string()),
        pa.field("publisher", pa.string()),  # publishingOrgKey
        pa.field("license", pa.string(), nullable=False),  # normalised id (gbif.licenses)
        pa.field("license_raw", pa.string()),  # the media licence as GBIF carried it
        pa.field("creator", pa.string()),
        pa.field("rightsHolder", pa.string()),
        pa.field("references", pa.string()),
        pa.field("split", pa.string(), nullable=False),  # train | val | test
        pa.field("split_group", pa.string(), nullable=False),  # the group key the split was drawn for
        pa.field("stratum", pa.string(), nullable=False),  # values of balancing.by, joined by "|"
        pa.field("snapshot_id", pa.string(), nullable=False),
    ]
)
MANIFEST_COLUMNS = tuple(MANIFEST_SCHEMA.names)
#: Parquet schema-metadata key holding the build statistics as JSON
MANIFEST_METADATA_KEY = b"gbifdl.manifest.stats"

# manifest column <- input column (optional ones become nulls when absent)
COPIED_COLUMNS = {
    "speciesKey": "speciesKey",
    "media_index": "media_index",
    "datasetKey": "datasetKey",
    "publisher": "publishingOrgKey",
    "license_raw": "media_license_raw",
    "creator": "creator",
    "rightsHolder": "rightsHolder",
    "references": "references",
}


@dataclass
class ManifestResult:
    table: pa.Table  # MANIFEST_SCHEMA
    stats: dict[str, Any] = field(default_factory=dict)


def write_manifest(result: ManifestResult, path: str | os.PathLike[str]) -> int:
    """Write the manifest Parquet atomically (temp file + rename), stats in the schema metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(result.table.schema.metadata or {})
    meta[MANIFEST_METADATA_KEY] = json.dumps(result.stats, sort_keys=True, default=str).encode()
    table = result.table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size
