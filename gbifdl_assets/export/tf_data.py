"""A ``tf.data.Dataset`` of ``(image, label_index)`` over an export (install the ``[tensorflow]`` extra).

Reads the export's ``manifest.parquet`` for file paths and label indices (the indices of
``classes.json``), so it works for exports with or without the ImageFolder tree (it then reads the
image store's local paths). Images are decoded with ``tf.io.decode_image``, resized to
``image_size`` and scaled to [0, 1]. Keras' ``image_dataset_from_directory`` on
``EXPORT/imagefolder/<split>`` works too and gives the same label indices (class folders sort in
taxon-key order).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["make_tf_dataset", "split_paths"]


def _tf() -> Any:
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - exercised only where tensorflow is absent
        raise ImportError(
            "make_tf_dataset needs TensorFlow: install the extra with `pip install 'gbifdl-assets[tensorflow]'` "
            "(or `pip install tensorflow-cpu`)"
        ) from exc
    return tf


def split_paths(export_dir: str | os.PathLike[str], split: str) -> tuple[list[str], list[int]]:
    """Local image paths and label indices of one split, in manifest order."""
    root = Path(export_dir)
    manifest = root / "manifest.parquet"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"no export manifest at {manifest}: pass a folder written by export_training_set"
        )
    table = pq.read_table(manifest)
    splits = set(table.column("split").to_pylist())
    if split not in splits:
        raise ValueError(f"split {split!r} is not in the export {root} (it has {sorted(splits)})")
    table = table.filter(pc.equal(table.column("split"), split))
    cols = [c for c in ("imagefolder_path", "local_path") if c in table.column_names]
    paths: list[str] = []
    for row in table.select(cols).to_pylist():
        rel = row.get("imagefolder_path")
        if rel and (root / rel).is_file():
            paths.append(str(root / rel))
        elif row.get("local_path") and os.path.isfile(row["local_path"]):
            paths.append(row["local_path"])
        else:
            raise FileNotFoundError(
                f"an image of split {split!r} is not on a local disk ({row}): export with the imagefolder format "
                "so the images are copied next to the manifest"
            )
    return paths, table.column("label_index").to_pylist()


def make_tf_dataset(
    export_dir: str | os.PathLike[str],
    split: str = "train",
    image_size: tuple[int, int] = (64, 64),
    batch_size: int = 32,
    shuffle: bool = True,
    *,
    seed: int | None = None,
) -> Any:
    """Batched ``(float32 images [B, H, W, 3] in [0, 1], int32 labels [B])`` of one split."""
    tf = _tf()
    paths, labels = split_paths(export_dir, split)
    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, dtype=tf.int32)))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        img = tf.image.resize(tf.cast(img, tf.float32) / 255.0, image_size)
        img.set_shape((*image_size, 3))
        return img, label

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)
