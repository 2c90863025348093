"""The ImageFolder layout: ``imagefolder/<split>/<class folder>/<content_key>.<ext>``.

torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory`` read
``imagefolder/<split>`` as it is. Images are copied from the image store; when both the store and
the export are on the same local filesystem they are hardlinked instead (no extra disk, instant),
which is safe because stored images are written once under their content key and never modified
in place. Consequence worth knowing: editing an exported file in place edits the stored image too.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pyarrow as pa

from gbifdl_assets.storage import TMP_PREFIX, Storage

__all__ = ["copy_object", "write_imagefolder"]

_CROSS_DEVICE = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP}


def copy_object(src: Storage, src_key: str, dst: Storage, dst_key: str) -> int:
    """Copy one object; hardlink local→local on one filesystem. Returns the byte size."""
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
