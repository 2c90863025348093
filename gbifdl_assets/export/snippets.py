"""How to load an export, in a few lines per tool: the data card prints these.

Each snippet runs as it is from inside the export folder (``EXPORT = "."``) and only uses files the
export wrote in the formats it has; the tests execute every one of them against a real export. The
label of every loader is the index of ``classes.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["loading_snippets"]

_PYTORCH = """\
import torch
from gbifdl_assets.export.torch_data import ManifestImageDataset, resize_to_tensor

EXPORT = "."  # this folder
train = ManifestImageDataset(EXPORT, split="train", transform=resize_to_tensor((224, 224)))
loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
images, labels = next(iter(loader))  # float [B, 3, 224, 224] in [0, 1], classes.json indices
"""

_KERAS = """\
from gbifdl_assets.export.tf_data import make_tf_dataset

EXPORT = "."  # this folder
train = make_tf_dataset(EXPORT, split="train", image_size=(224, 224), batch_size=32)
images, labels = next(iter(train))  # float [B, 224, 224, 3] in [0, 1], classes.json indices
# plain Keras reads the tree too (the same indices while every class has images in the split):
# tf.keras.utils.image_dataset_from_directory(f"{EXPORT}/imagefolder/train", image_size=(224, 224))
"""

_HUGGING_FACE = """\
import json
from datasets import ClassLabel, load_dataset

EXPORT = "."  # this folder
ds = load_dataset("imagefolder", data_dir=f"{EXPORT}/imagefolder")  # train, validation, test
with open(f"{EXPORT}/classes.json", encoding="utf-8") as fh:
    names = [c["dirname"] for c in json.load(fh)]
ds = ds.cast_column("label", ClassLabel(names=names))
example = ds["train"][0]  # image, label, label_name, gbifID, license, attribution, ...
"""

_WEBDATASET = """\
import torch
from gbifdl_assets.export.torch_data import WebDatasetIterable, resize_to_tensor

EXPORT = "."  # this folder
train = WebDatasetIterable(f"{EXPORT}/webdataset/train-*.tar", transform=resize_to_tensor((224, 224)),
                           shuffle_shards=True)
loader = torch.utils.data.DataLoader(train, batch_size=32)  # num_workers=N spreads the shards
images, labels = next(iter(loader))
# or: datasets.load_dataset("webdataset", data_files={"train": f"{EXPORT}/webdataset/train-*.tar"})
"""

_CROISSANT = """\
import mlcroissant as mlc

EXPORT = "."  # this folder
ds = mlc.Dataset(jsonld=f"{EXPORT}/croissant.json")
record = next(iter(ds.records("images")))  # images/image, images/label, images/split, images/license, ...
"""


def loading_snippets(formats: Sequence[str]) -> list[tuple[str, str, str]]:
    """(tool, the packages it needs, code) for the tools that can read an export of ``formats``."""
    out = [("PyTorch", "torch and gbifdl_assets", _PYTORCH)]
    if "imagefolder" in formats:
        out.append(("TensorFlow / Keras", "tensorflow and gbifdl_assets", _KERAS))
        out.append(("Hugging Face datasets", "datasets", _HUGGING_FACE))
    if "webdataset" in formats:
        out.append(("WebDataset", "torch and gbifdl_assets", _WEBDATASET))
    out.append(("Croissant", "mlcroissant", _CROISSANT))
    return out
