"""The ImageFolder layout: ``imagefolder/<split>/<class folder>/<content_key>.<ext>``.

torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory`` read
``imagefolder/<split>`` as it is (they take sub-folders as classes and ignore files beside them).
Hugging Face ``datasets`` reads ``imagefolder/`` with ``load_dataset("imagefolder", data_dir=...)``:
each split folder holds a ``metadata.jsonl`` (:func:`write_hf_metadata`) with ``file_name`` relative
to that folder, the label and the attribution of every image. With a metadata file ``datasets`` takes
the label from it, not from the folder names: ``label`` is the index of ``classes.json``. Images are copied from the image store; when both the store and
the export are on the same local filesystem they are hardlinked instead (no extra disk, instant),
which is safe because stored images are written once under their content key and never modified
in place. Consequence worth knowing: editing an exported file in place edits the stored image too.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from gbifdl_assets.export.credits import credit_rows
from gbifdl_assets.storage import TMP_PREFIX, Storage

__all__ = [
    "HF_METADATA",
    "HF_METADATA_FIELDS",
    "copy_object",
    "hf_metadata_rows",
    "write_hf_metadata",
    "write_imagefolder",
]

HF_METADATA = "metadata.jsonl"
#: the fields of every metadata.jsonl line, in this order; the same types in every split (text is
#: "" rather than null: ``datasets`` refuses splits whose metadata files infer different features)
HF_METADATA_FIELDS = (
    "file_name",
    "label",
    "label_name",
    "taxon_key",
    "gbifID",
    "content_key",
    "license",
    "license_url",
    "attribution",
    "creator",
    "rightsHolder",
    "source_url",
    "image_url",
    "datasetKey",
)

_CROSS_DEVICE = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP}


def copy_object(src: Storage, src_key: str, dst: Storage, dst_key: str) -> int:
    """Copy one object; hardlink local→local on one filesystem, a server-side copy S3→S3 on one
    endpoint. Returns the byte size."""
    src_path = src.local_path(src_key)
    dst_path = dst.local_path(dst_key)
    if src_path is not None and dst_path is not None:
        if not src_path.is_file():
            raise FileNotFoundError(
                f"image {src.uri_of(src_key)} is in the ledger but not in the store: "
                "re-run the image download for this training set (it re-fetches missing images)"
            )
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src_path, dst_path)
        except FileExistsError:
            dst_path.unlink()
            os.link(src_path, dst_path)
        except OSError as exc:
            if exc.errno not in _CROSS_DEVICE:
                raise
            _copy_local(src_path, dst_path)
        return dst_path.stat().st_size
    copied = dst.copy_within(src, src_key, dst_key)
    if copied is not None:
        return copied
    data = src.read_bytes(src_key)
    dst.write_bytes(dst_key, data)
    return len(data)


def _copy_local(src: Path, dst: Path) -> None:
    tmp = dst.parent / f"{TMP_PREFIX}{dst.name}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_imagefolder(table: pa.Table, image_storage: Storage, out: Storage) -> int:
    """Place every image of ``table`` (with ``key`` and ``imagefolder_path``); return bytes placed."""
    total = 0
    keys = table.column("key").to_pylist()
    paths = table.column("imagefolder_path").to_pylist()
    for key, path in zip(keys, paths, strict=True):
        total += copy_object(image_storage, key, out, path)
    return total


def hf_metadata_rows(table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """The ``metadata.jsonl`` lines per split, ``file_name`` relative to the split folder."""
    credits = credit_rows(table)
    index = table.column("label_index").to_pylist()
    out: dict[str, list[dict[str, Any]]] = {}
    for c, label_index in zip(credits, index, strict=True):
        split, _, rel = c["file"].removeprefix("imagefolder/").partition("/")
        out.setdefault(split, []).append(
            {
                "file_name": rel,
                "label": int(label_index),
                "label_name": c["label_name"] or "",
                "taxon_key": int(c["label"]),
                "gbifID": int(c["gbifID"]),
                "content_key": c["content_key"],
                "license": c["license"] or "",
                "license_url": c["license_url"] or "",
                "attribution": c["attribution"] or "",
                "creator": c["creator"] or "",
                "rightsHolder": c["rightsHolder"] or "",
                "source_url": c["source_url"] or "",
                "image_url": c["image_url"] or "",
                "datasetKey": c["datasetKey"] or "",
            }
        )
    return out


def write_hf_metadata(table: pa.Table, out: Storage) -> list[str]:
    """Write ``imagefolder/<split>/metadata.jsonl`` for every split; return their keys."""
    keys = []
    for split, rows in sorted(hf_metadata_rows(table).items()):
        key = f"imagefolder/{split}/{HF_METADATA}"
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        out.write_bytes(key, text.encode("utf-8"))
        keys.append(key)
    return keys
