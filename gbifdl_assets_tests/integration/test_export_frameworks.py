"""A few training steps of tiny models on a synthetic export, with PyTorch and with TensorFlow/Keras.

Needs the extras: `.venv/bin/pip install -e '.[torch,tensorflow]'` (torch CPU 2.13.0 and
tensorflow-cpu); without them these tests are skipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gbifdl_assets_tests.unit.test_export_writers import run_export

N_CLASSES = 3


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    _, out, _ = run_export(tmp_path_factory.mktemp("fw"))
    return out


# ------------------------------------------------------------------------------------ PyTorch
def _torch_train(loader, steps: int = 12) -> list[float]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, N_CLASSES),
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses: list[float] = []
    while len(losses) < steps:
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) >= steps:
                break
    return losses


def _check(losses: list[float], steps: int = 12) -> None:
    assert len(losses) == steps
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_torch_manifest_dataset_trains(export_dir):
    torch = pytest.importorskip("torch")
    from gbifdl_assets.export.torch_data import ManifestImageDataset, resize_to_tensor

    ds = ManifestImageDataset(export_dir, split="train", transform=resize_to_tensor((32, 32)))
    assert len(ds) == 18 and [c["index"] for c in ds.classes] == [0, 1, 2]
    x, y = ds[0]
    assert tuple(x.shape) == (3, 32, 32) and 0 <= y < N_CLASSES and float(x.max()) <= 1.0
    loader = torch.utils.data.DataLoader(ds, batch_size=6, shuffle=True)
    _check(_torch_train(loader))


def test_torch_manifest_dataset_reads_from_storage(export_dir, tmp_path):
    pytest.importorskip("torch")
    import pyarrow.parquet as pq

    from gbifdl_assets.export.torch_data import ManifestImageDataset
    from gbifdl_assets.storage import LocalStorage

    table = pq.read_table(export_dir / "manifest.parquet")
    # no export folder and no usable local paths: every read must go through the Storage
    table = table.drop(["imagefolder_path", "local_path"])
    store_root = Path(pq.read_table(export_dir / "manifest.parquet").column("local_path")[0].as_py())
    root = store_root.parents[3]  # <root>/images/original/ab/<key>.jpg
    ds = ManifestImageDataset(table, split="val", storage=LocalStorage(root))
    x, y = ds[0]
    assert x.ndim == 3 and x.shape[0] == 3
    with pytest.raises(FileNotFoundError, match="storage="):
        ManifestImageDataset(table, split="val")[0]
    with pytest.raises(ValueError, match="not in this export"):
        ManifestImageDataset(table, split="holdout")


def test_torch_webdataset_iterable_trains_and_splits_shards(export_dir):
    torch = pytest.importorskip("torch")
    from gbifdl_assets.export.torch_data import WebDatasetIterable, resize_to_tensor

    shards = sorted((export_dir / "webdataset").glob("train-*.tar"))
    ds = WebDatasetIterable(shards, transform=resize_to_tensor((32, 32)))
    assert len(list(ds)) == 18
    # two workers: every sample exactly once
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    labels = sorted(int(y) for _, y in loader)
    assert len(labels) == 18 and labels == sorted(int(y) for _, y in ds)
    loader = torch.utils.data.DataLoader(
        WebDatasetIterable(
            str(export_dir / "webdataset" / "train-*.tar"),
            transform=resize_to_tensor((32, 32)),
            shuffle_shards=True,
        ),
        batch_size=6,
    )
    _check(_torch_train(loader))


# --------------------------------------------------------------------------------- TensorFlow
def _keras_model(tf):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((32, 32, 3)),
            tf.keras.layers.Conv2D(8, 3, activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(N_CLASSES),
        ]
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(0.05),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def test_tf_dataset_trains(export_dir):
    tf = pytest.importorskip("tensorflow")
    from gbifdl_assets.export.tf_data import make_tf_dataset

    ds = make_tf_dataset(export_dir, split="train", image_size=(32, 32), batch_size=6, seed=0)
    x, y = next(iter(ds))
    assert tuple(x.shape) == (6, 32, 32, 3) and y.dtype == tf.int32
    history = _keras_model(tf).fit(ds, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


def test_keras_reads_imagefolder_as_is(export_dir):
    tf = pytest.importorskip("tensorflow")
    import json

    ds = tf.keras.utils.image_dataset_from_directory(
        export_dir / "imagefolder" / "train", image_size=(32, 32), batch_size=6, seed=0
    )
    classes = json.loads((export_dir / "classes.json").read_text())
    assert ds.class_names == [c["dirname"] for c in classes]  # Keras' indices are ours
    ds = ds.map(lambda x, y: (x / 255.0, y))
    history = _keras_model(tf).fit(ds, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


# ---------------------------------------------------------------------------------------- S3
def test_export_from_and_to_s3(s3_bucket, tmp_path):
    """Images in an S3 store: exported to a local folder (copied) and to S3 (marker last)."""
    import json

    from gbifdl_assets.export.layout import export_training_set
    from gbifdl_assets_tests.unit.test_export_writers import CITATION, build_inputs

    inputs = build_inputs(tmp_path)
    s3 = s3_bucket.storage()
    images = s3.child("store")
    for key in inputs["store"].list("images/"):
        images.write_bytes(key, inputs["store"].read_bytes(key))
    local_out = tmp_path / "out"
    from gbifdl_assets.storage import LocalStorage

    summary = export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        images,
        LocalStorage(local_out),
        training_set="t",
        citation=CITATION,
    )
    assert summary.images == 30
    files = [p for p in (local_out / "imagefolder").rglob("*") if p.is_file() and p.name != "metadata.jsonl"]
    assert len(files) == 30 and all(p.stat().st_nlink == 1 for p in files)

    out = s3.child("exports/t")
    summary = export_training_set(
        inputs["manifest"], inputs["ledger"], images, out, training_set="t", citation=CITATION, shard_size=10
    )
    keys = set(out.list(""))
    assert "export.json" in keys and "credits.csv" in keys and "datacard/map.png" in keys
    pictures = [k for k in keys if k.startswith("imagefolder/") and not k.endswith("/metadata.jsonl")]
    assert len(pictures) == 30 and len([k for k in keys if k.endswith("/metadata.jsonl")]) == 3
    assert {k for k in keys if k.startswith("webdataset/")} == {
        "webdataset/test-000000.tar",
        "webdataset/train-000000.tar",
        "webdataset/train-000001.tar",
        "webdataset/val-000000.tar",
    }
    assert json.loads(out.read_bytes("export.json"))["images"] == 30
    # croissant.json's checksums were taken while writing to S3: they match the objects
    import hashlib

    doc = json.loads(out.read_bytes("croissant.json"))
    objects = [d for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
    assert {d["contentUrl"] for d in objects} >= {
        "manifest.parquet",
        "credits.csv",
        "webdataset/train-000001.tar",
    }
    for d in objects:
        assert hashlib.sha256(out.read_bytes(d["contentUrl"])).hexdigest() == d["sha256"], d["contentUrl"]
    # a re-export with fewer shards and no ImageFolder leaves none of the old objects behind
    export_training_set(
        inputs["manifest"],
        inputs["ledger"],
        images,
        out,
        training_set="t",
        citation=CITATION,
        formats=["webdataset"],
        shard_size=100,
    )
    keys = set(out.list(""))
    assert not [k for k in keys if k.startswith("imagefolder/")]
    assert {k for k in keys if k.startswith("webdataset/")} == {
        "webdataset/test-000000.tar",
        "webdataset/train-000000.tar",
        "webdataset/val-000000.tar",
    }

    torch = pytest.importorskip("torch")
    import pyarrow as pa

    from gbifdl_assets.export.torch_data import ManifestImageDataset, resize_to_tensor

    manifest = out.read_parquet("manifest.parquet")
    assert manifest.column("local_path").null_count == manifest.num_rows
    assert manifest.column("storage_uri")[0].as_py().startswith("s3://")
    ds = ManifestImageDataset(manifest, split="test", storage=images, transform=resize_to_tensor((16, 16)))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=6)))
    assert tuple(batch[0].shape) == (6, 3, 16, 16)
    assert isinstance(manifest, pa.Table)
