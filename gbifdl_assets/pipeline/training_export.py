"""training_export: what a training loop reads, from the newest manifest and the stored images.

The final manifest with storage keys, an ImageFolder tree, WebDataset shards, credits for every image,
the citation and a data card, under ``exports/<training_set>/`` (see :mod:`gbifdl_assets.export`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyarrow as pa

from gbifdl_assets.export.layout import ExportSummary, export_training_set
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.occurrences.snapshots import latest_snapshot
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.pipeline.image_shards import shard_keys
from gbifdl_assets.storage import Storage, layout

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingExport:
    """A written export: where, its data card, and what it holds."""

    uri: str
    data_card_uri: str
    summary: ExportSummary
    seconds: float


def build_training_export(
    training_set: str, storage: Storage, *, log: logging.Logger = _log
) -> TrainingExport:
    """Export the newest manifest's stored images (every shard's ledger) to ``exports/<training_set>/``."""
    manifest = read_latest_manifest(storage, training_set)
    ledgers = [load_ledger(storage, layout.ledger_name(training_set, s)) for s in shard_keys()]
    ledger = pa.concat_tables([t for t in ledgers if t.num_rows] or [ledgers[0]])
    snapshot = latest_snapshot(storage, training_set)
    coordinates = None
    if snapshot is not None:
        coordinates = storage.read_parquet(
            snapshot.media_key, columns=["gbifID", "decimalLatitude", "decimalLongitude"]
        )
    started = time.monotonic()
    out = storage.child(layout.export_prefix(training_set))
    summary = export_training_set(
        manifest,
        ledger,
        storage,
        out,
        training_set=training_set,
        citation=snapshot.source if snapshot else {},
        coordinates=coordinates,
    )
    elapsed = time.monotonic() - started
    log.info(
        f"exported {training_set}: {summary.images} images, {summary.classes} classes, {summary.missing} missing"
    )
    return TrainingExport(out.uri, out.uri_of("datacard.html"), summary, elapsed)
