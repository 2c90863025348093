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

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.media.download import DownloadConfig, DownloadSummary, download_images
from gbifdl_assets.media.ledger import attribution_table, completeness_table, load_ledger, summarize_ledger
from gbifdl_assets.media.settings import apply_image_options
from gbifdl_assets.media.validate import ValidationOptions
from gbifdl_assets.pipeline.balanced_manifest import open_latest_manifest
from gbifdl_assets.pipeline.image_shards import ShardedManifest, shard_keys
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSetImages:
    """The whole training set's images so far: every shard's ledger against the newest manifest.

    One shard's run says little about the training set (the last shard to run may hold no image at
    all); this is what the image_store page shows first, whichever shard ran last.
    """

    shards: list[dict[str, Any]]  # shard, state, images, stored, failed, skipped, pending
    classes: int
    classes_below: int  # classes whose stored share is below the completeness threshold, all shards

    def total(self, column: str) -> int:
        return sum(int(row[column]) for row in self.shards)

    @property
    def completeness(self) -> float:
        """Stored share of the manifest's images (1.0 for an empty manifest)."""
        images = self.total("images")
        return self.total("stored") / images if images else 1.0

    @property
    def shards_done(self) -> int:
        """Shards with every image looked at (stored, failed or skipped), empty ones included."""
        return sum(1 for row in self.shards if row["pending"] == 0)


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
    training_set: TrainingSetImages | None = None  # every shard so far (None: not computed)
    shard: str = ""

    @property
    def complete(self) -> bool:
        """Every class stored at least the spec's completeness threshold."""
        return not self.below


def store_shard(
    training_set: str,
    shard: str,
    spec: TrainingSetSpec,
    storage: Storage,
    download: DownloadConfig,
    *,
    log: logging.Logger = _log,
) -> StoredShard:
    """Fetch, validate and store the images of one (training set, shard) of the newest manifest.

    ``download`` is the network behaviour of the platform (the image-fetch resource); the spec's
    image options apply on top: its ``max_bytes`` and politeness options (per-host ceilings,
    robots.txt, opt-out headers, image-cache fallback) only ever make it stricter.
    """
    manifest = ShardedManifest(open_latest_manifest(storage, training_set))
    rows = manifest.rows_of(shard)
    name = layout.ledger_name(training_set, shard)
    log.info(f"{training_set} shard {shard}: {rows.num_rows} images of {manifest.num_rows}")
    summary = download_images(
        rows,
        storage,
        ledger=name,
        options=ValidationOptions.from_image_options(spec.images),
        config=apply_image_options(_with_spec_max_bytes(download, spec.images.max_bytes), spec.images),
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
        training_set=training_set_images(
            storage, training_set, manifest, threshold=threshold, known={shard: (rows, ledger)}
        ),
        shard=shard,
    )


def _with_spec_max_bytes(download: DownloadConfig, max_bytes: int) -> DownloadConfig:
    """The spec's ``images.max_bytes`` is the size limit, above the fetcher's default or below it."""
    return dataclasses.replace(download, fetch=dataclasses.replace(download.fetch, max_bytes=max_bytes))


#: the ledger columns the summary reads (content_key comes with them)
_SUMMARY_COLUMNS = ["status", "stored"]
_STATES = {"empty": "empty", "not_run": "to do", "partial": "partly done", "done": "done"}


def _shard_row(shard: str, rows: pa.Table, ledger: pa.Table) -> dict[str, Any]:
    mine = ledger.filter(pc.is_in(ledger.column("content_key"), value_set=rows.column("content_key")))
    status = mine.column("status").to_pylist()
    images, seen = rows.num_rows, mine.num_rows
    state = "empty" if not images else "not_run" if not seen else "partial" if seen < images else "done"
    return {
        "shard": shard,
        "state": _STATES[state],
        "images": images,
        "stored": int(pc.sum(pc.fill_null(mine.column("stored"), False)).as_py() or 0),
        "failed": status.count("failed"),
        "skipped": status.count("skipped"),
        "pending": images - seen,
    }


def training_set_images(
    storage: Storage,
    training_set: str,
    manifest: ShardedManifest,
    *,
    threshold: float,
    known: dict[str, tuple[pa.Table, pa.Table]] | None = None,
) -> TrainingSetImages:
    """Every shard's ledger against the manifest; ``known``: (rows, ledger) of shards already loaded.

    One shard at a time, and of the others only their content keys, labels and ledger statuses: a
    species is in one shard only, so the classes' completeness is decided within each shard's ledger.
    """
    rows_per_shard, classes, below = [], 0, 0
    for shard in shard_keys(manifest.shards):
        rows, ledger = (known or {}).get(shard) or (None, None)
        if rows is None:
            rows = manifest.rows_of(shard, ["content_key", "label"])
            ledger = load_ledger(storage, layout.ledger_name(training_set, shard), columns=_SUMMARY_COLUMNS)
        rows_per_shard.append(_shard_row(shard, rows, ledger))
        complete = completeness_table(rows, ledger, by="label", threshold=threshold)
        classes += complete.num_rows
        below += int(pc.sum(complete.column("below_threshold")).as_py() or 0) if complete.num_rows else 0
    return TrainingSetImages(rows_per_shard, classes=classes, classes_below=below)
