"""PyTorch datasets over an export: a map-style one from the manifest, an iterable one over shards.

Needs only ``torch`` and Pillow (install the ``[torch]`` extra); torchvision is not required — the
default transform turns a PIL image into a float CHW tensor in [0, 1] with numpy, and
:func:`resize_to_tensor` does the usual "resize to a fixed size" step so batches stack. Any
callable (e.g. torchvision transforms, where installed) can be passed as ``transform``.

:class:`ManifestImageDataset` reads each image from the first place that has it: the export's
ImageFolder copy, the image store's local path, or the image store itself through a
:class:`~gbifdl_assets.storage.Storage` (S3). :class:`WebDatasetIterable` streams the tar shards
with :mod:`tarfile` (no ``webdataset`` package needed) and gives each DataLoader worker its own
subset of shards.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from gbifdl_assets.storage import Storage

try:  # the extra is optional: the module imports without torch and fails clearly on use
    import torch
    from torch.utils.data import Dataset, IterableDataset, get_worker_info
except ImportError:  # pragma: no cover - exercised only where torch is absent
    torch = None  # type: ignore[assignment]
    Dataset = IterableDataset = object  # type: ignore[assignment,misc]

__all__ = ["ManifestImageDataset", "WebDatasetIterable", "load_classes", "resize_to_tensor", "to_tensor"]

_IMAGE_EXTS = {"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"}


def _require_torch() -> None:
    if torch is None:
        raise ImportError(
            "the PyTorch loaders need torch: install the extra with `pip install 'gbifdl-assets[torch]'` "
            "(or `pip install torch`)"
        )


def to_tensor(img: Image.Image) -> Any:
    """PIL image → float32 tensor (C, H, W) in [0, 1], RGB."""
    import numpy as np

    _require_torch()
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_to_tensor(size: tuple[int, int]) -> Callable[[Image.Image], Any]:
    """A transform: resize to ``size`` (height, width) with bilinear filtering, then :func:`to_tensor`."""
    h, w = size

    def transform(img: Image.Image) -> Any:
        return to_tensor(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR))

    return transform


def load_classes(export_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``classes.json`` of an export: index, label (taxon key), name, dirname, count."""
    with open(Path(export_dir) / "classes.json", encoding="utf-8") as fh:
        return json.load(fh)


def _open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


class ManifestImageDataset(Dataset):  # type: ignore[misc,valid-type]
    """``(image, label_index)`` for every image of one split of an export's manifest.

    ``export_dir_or_manifest``: an export folder, its ``manifest.parquet``, or the table itself.
    ``storage``: the image store, used for rows whose image is not on a local disk (S3 stores).
    ``classes`` (index → dict) and ``targets`` (label indices) are there for samplers and metrics.
    """

    def __init__(
        self,
        export_dir_or_manifest: str | os.PathLike[str] | pa.Table,
        split: str | None = "train",
        storage: Storage | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        _require_torch()
        self.export_dir: Path | None = None
        if isinstance(export_dir_or_manifest, pa.Table):
            table = export_dir_or_manifest
        else:
            path = Path(export_dir_or_manifest)
            if path.is_dir():
                self.export_dir = path
                path = path / "manifest.parquet"
            else:
                self.export_dir = path.parent
            if not path.is_file():
                raise FileNotFoundError(
                    f"no export manifest at {path}: pass an export folder written by export_training_set "
                    "(it holds manifest.parquet) or the manifest file itself"
                )
            table = pq.read_table(path)
        if "label_index" not in table.column_names:
            raise ValueError(
                "the manifest has no 'label_index' column: pass the manifest of an export, not the sampling one"
            )
        if split is not None:
            splits = set(table.column("split").to_pylist())
            if split not in splits:
                raise ValueError(f"split {split!r} is not in this export (it has {sorted(splits)})")
            table = table.filter(pc.equal(table.column("split"), split))
        cols = [c for c in ("imagefolder_path", "local_path", "key") if c in table.column_names]
        self._rows = table.select([*cols, "label_index"]).to_pylist()
        self.targets = [r["label_index"] for r in self._rows]
        self.storage = storage
        self.transform = transform
        self.target_transform = target_transform
        self.classes: list[dict[str, Any]] = []
        if self.export_dir is not None and (self.export_dir / "classes.json").is_file():
            self.classes = load_classes(self.export_dir)

    def __len__(self) -> int:
        return len(self._rows)

    def _read(self, row: dict[str, Any]) -> bytes:
        rel = row.get("imagefolder_path")
        if rel and self.export_dir is not None:
            path = self.export_dir / rel
            if path.is_file():
                return path.read_bytes()
        local = row.get("local_path")
        if local and os.path.isfile(local):
            return Path(local).read_bytes()
        if self.storage is not None and row.get("key"):
            return self.storage.read_bytes(row["key"])
        raise FileNotFoundError(
            f"image {row.get('key')!r} is neither in the export nor at a local path: pass the image store as "
            "storage= (e.g. open_storage('s3://bucket/prefix'))"
        )

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        row = self._rows[index]
        img = _open_image(self._read(row))
        x = self.transform(img) if self.transform is not None else to_tensor(img)
        y = row["label_index"]
        return x, (self.target_transform(y) if self.target_transform is not None else y)


def _expand(shard_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(shard_paths, (str, os.PathLike)):
        text = os.fspath(shard_paths)
        if os.path.isdir(text):
            paths = sorted(glob.glob(os.path.join(text, "*.tar")))
        else:
            paths = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
    else:
        paths = [os.fspath(p) for p in shard_paths]
    if not paths:
        raise FileNotFoundError(
            f"no WebDataset shards match {shard_paths!r}: pass e.g. 'EXPORT/webdataset/train-*.tar'"
        )
    return paths


def iter_shard(path: str) -> Iterator[dict[str, bytes]]:
    """Samples of one tar shard: dicts of extension → bytes plus ``__key__``, in file order."""
    current: dict[str, Any] = {}
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            key, _, ext = base.partition(".")
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            fh = tar.extractfile(member)
            current[ext.lower()] = fh.read() if fh else b""
    if current:
        yield current


class WebDatasetIterable(IterableDataset):  # type: ignore[misc,valid-type]
    """``(image, label_index)`` streamed from WebDataset shards (a list, a glob or a folder).

    With a DataLoader of N workers, worker i reads shards i, i+N, …: every sample is read exactly
    once per epoch. Use at least as many shards as workers. ``shuffle_shards`` with a ``seed``
    permutes the shard order per epoch (call :meth:`set_epoch`).
    """

    def __init__(
        self,
        shard_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        shuffle_shards: bool = False,
        seed: int = 0,
    ) -> None:
        _require_torch()
        self.shards = _expand(shard_paths)
        self.transform = transform
        self.target_transform = target_transform
        self.shuffle_shards = shuffle_shards
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_shards(self) -> list[str]:
        shards = list(self.shards)
        if self.shuffle_shards:
            import random

            random.Random(self.seed + self.epoch).shuffle(shards)
        info = get_worker_info()
        if info is None:
            return shards
        return shards[info.id :: info.num_workers]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for path in self._my_shards():
            for sample in iter_shard(path):
                ext = next((e for e in sample if e in _IMAGE_EXTS), None)
                if ext is None or "cls" not in sample:
                    raise ValueError(
                        f"sample {sample['__key__']!r} in {path} lacks an image or a .cls member"
                    )
                img = _open_image(sample[ext])
                x = self.transform(img) if self.transform is not None else to_tensor(img)
                y = int(sample["cls"])
                yield x, (self.target_transform(y) if self.target_transform is not None else y)
