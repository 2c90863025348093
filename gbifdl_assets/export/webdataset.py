"""WebDataset shards: ``webdataset/<split>-%06d.tar``, readable by the ``webdataset`` package or tarfile.

Each sample is three members sharing the key ``<content_key>``: the image (``.jpg``/``.png``/…),
``.cls`` (the label index as decimal text) and ``.json`` (label, name, licence and attribution).
Within a split samples are ordered by ``content_key`` — a sha256, so effectively a fixed random
order — because the manifest's label order would give single-class shards, which streaming
training (shard-level shuffling) handles badly. Member times are fixed, so re-exporting the same
manifest gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pyarrow as pa

from gbifdl_assets.storage import Storage

__all__ = ["SHARD_PATTERN", "sample_json", "shard_key", "write_webdataset"]

SHARD_PATTERN = "webdataset/{split}-{index:06d}.tar"
_MTIME = 946684800  # 2000-01-01: fixed so shards are reproducible
_JSON_FIELDS = (
    "label",
    "label_name",
    "license",
    "attribution",
    "creator",
    "rightsHolder",
    "references",
    "gbifID",
    "url",
)


def shard_key(split: str, index: int) -> str:
    return SHARD_PATTERN.format(split=split, index=index)


def sample_json(row: dict[str, Any]) -> dict[str, Any]:
    doc = {k: row.get(k) for k in _JSON_FIELDS}
    doc["name"] = doc.pop("label_name")
    doc["label_index"] = row["label_index"]
    doc["content_key"] = row["content_key"]
    return doc


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _MTIME
    info.mode = 0o644
    info.uname = info.gname = "gbifdl"
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(
    table: pa.Table, image_storage: Storage, out: Storage, *, shard_size: int = 1000
) -> dict[str, int]:
    """Write the shards of every split; return the number of shards per split."""
    shards: dict[str, int] = {}
    cols = [
        c
        for c in ("content_key", "key", "ext", "split", "label_index", *_JSON_FIELDS)
        if c in table.column_names
    ]
    view = table.select(cols).sort_by([("split", "ascending"), ("content_key", "ascending")])
    rows = view.to_pylist()
    by_split: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(row)
    for split, items in sorted(by_split.items()):
        count = 0
        for start in range(0, len(items), shard_size):
            with (
                out.open_write(shard_key(split, count)) as fh,
                tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                for row in items[start : start + shard_size]:
                    ck = row["content_key"]
                    _add(tar, f"{ck}.{row['ext']}", image_storage.read_bytes(row["key"]))
                    _add(tar, f"{ck}.cls", str(row["label_index"]).encode())
                    _add(tar, f"{ck}.json", json.dumps(sample_json(row), ensure_ascii=False).encode())
            count += 1
        shards[split] = count
    return shards
