"""image_store: one shard of a training set's manifest fetched, validated, resized and stored.

Images are content-addressed in the shared store, so two training sets never download the same image
twice; a ledger per shard records every image's status, so a re-run fetches only what is missing or
failed. The one implementation behind the ``image_store`` asset and the Celery job's shard steps.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from gbifdl_assets.media.download import DownloadConfig, DownloadSummary, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import attribution_table, completeness_table, load_ledger, summarize_ledger
from gbifdl_assets.media.validate import ValidationOptions
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.pipeline.image_shards import shard_of
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredShard:
    """What storing one shard did: the ledger's counts for its images, this run, and completeness."""

    images: int  # the shard's images in the manifest
    counts: dict[str, Any]  # ok, failed, skipped, failed_by_reason (the ledger, for these images)
    this_run: DownloadSummary
    completeness: list[dict[str, Any]]  # per class: stored share and whether it is below the threshold
    completeness_columns: list[str]
    below: list[dict[str, Any]]  # the classes below the threshold
    threshold: float
    attribution_uri: str

    @property
    def complete(self) -> bool:
        """Every class stored at least the spec's completeness threshold."""
        return not self.below


def store_shard(
    training_set: str,
    shard: str,
    spec: TrainingSetSpec,
    storage: Storage,
    fetch: FetchConfig,
    *,
    log: logging.Logger = _log,
) -> StoredShard:
    """Fetch, validate and store the images of one (training set, shard) of the newest manifest.

    ``fetch`` is the network behaviour; its ``max_bytes`` is replaced by the spec's.
    """
    manifest = read_latest_manifest(storage, training_set)
    rows = manifest.filter(pc.equal(shard_of(manifest.column("label")), shard))
    name = layout.ledger_name(training_set, shard)
    log.info(f"{training_set} shard {shard}: {rows.num_rows} images of {manifest.num_rows}")
    summary = download_images(
        rows,
        storage,
        ledger=name,
        options=ValidationOptions.from_image_options(spec.images),
        config=DownloadConfig(fetch=dataclasses.replace(fetch, max_bytes=spec.images.max_bytes)),
        progress=lambda p: log.info(p.message()),
    )
    ledger = load_ledger(storage, name)
    counts = summarize_ledger(
        ledger.filter(pc.is_in(ledger.column("content_key"), rows.column("content_key")))
    )
    threshold = spec.images.completeness_threshold
    complete = completeness_table(rows, ledger, by=["label", "label_name"], threshold=threshold)
    below = complete.filter(pc.field("below_threshold")) if complete.num_rows else complete
    attribution_key = layout.attribution_key(training_set, shard)
    storage.write_parquet(attribution_key, attribution_table(rows, ledger))
    return StoredShard(
        images=rows.num_rows,
        counts=counts,
        this_run=summary,
        completeness=complete.to_pylist(),
        completeness_columns=complete.column_names,
        below=below.to_pylist(),
        threshold=float(threshold),
        attribution_uri=storage.uri_of(attribution_key),
    )
