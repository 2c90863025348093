"""balanced_manifest: filters, licence policy, exact balancing and stable splits, one row per image.

Each row holds the label, split, licence, attribution and the content key the image store uses.
Four checks guard what a model would train on (:data:`CHECKS`): balance within the spec's tolerance,
every licence allowed, no split group in two splits, no duplicate URL; a fifth warns (does not block)
when a ``balancing.by`` column is empty in every candidate row, since balancing by it is then no
balancing (a download snapshot written without GBIF's registry has no publisher). The manifest is
named after the annotated table it was built from (plus the version of the image flags, when flags
took images out: :mod:`.image_flags`), and keeps the images of the previous manifest where it can.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gbifdl_assets.pipeline.annotated_occurrences import newest_annotated
from gbifdl_assets.pipeline.checks import CheckOutcome
from gbifdl_assets.pipeline.errors import StageError
from gbifdl_assets.pipeline.image_flags import flag_exclusions
from gbifdl_assets.pipeline.species_list import taxon_names_of
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.manifest import (
    ImageExclusions,
    PickedRows,
    check_balance,
    check_licenses,
    check_split_leakage,
    check_strata_columns,
    check_unique_urls,
    pick_manifest,
    pick_manifest_from_parquet,
)
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout

_log = logging.getLogger(__name__)

#: The manifest's checks: name -> what passing means.
CHECKS = {
    "balanced": "Smallest class has at least (1 - balancing.tolerance) x the images of the largest.",
    "licenses_allowed": "Every image's licence is in the spec's allowlist.",
    "no_split_leakage": "No split group (occurrence, observer, location cell or dataset) is in two splits.",
    "unique_urls": "No image URL appears twice.",
    "strata_columns_filled": "Every balancing.by column has values in some candidate row (else one stratum per class).",
}
#: checks that warn instead of blocking: the manifest is usable, but not balanced as the spec asked
WARNING_CHECKS = frozenset({"strata_columns_filled"})


@dataclass(frozen=True)
class BalancedManifest:
    """A written manifest, what it holds, and its checks."""

    output_id: str  # the annotated table's id (<snapshot_id>-<rules version>), + .f<flags> when flags apply
    snapshot_id: str
    key: str
    uri: str
    images: int
    per_class: list[dict[str, Any]]  # label, name, images
    shortfall: list[dict[str, Any]]  # label, name, missing: classes below max_per_class
    stats: dict[str, Any]  # per_split, licenses, dropped, classes_below_min, shortfall_classes, previous
    checks: list[CheckOutcome]
    bytes: int
    seconds: float
    #: label (as text) -> taxon name: the manifest's classes and the species list's taxa
    names: dict[str, str] = field(default_factory=dict)

    @property
    def below_min(self) -> list[dict[str, Any]]:
        """Classes dropped for having fewer than min_per_class images: label, name, images."""
        below = self.stats.get("classes_below_min", {})
        return [{"label": k, "name": self.names.get(str(k), ""), "images": v} for k, v in below.items()]


def build_balanced_manifest(
    training_set: str, spec: TrainingSetSpec, storage: Storage, *, log: logging.Logger = _log
) -> BalancedManifest:
    """Build the manifest of the newest annotated table and write ``manifests/<training_set>/<id>/``."""
    source = newest_annotated(storage, training_set)
    previous_key = latest_manifest_key(storage, training_set)
    previous = storage.read_parquet(previous_key, columns=["url"]).column("url") if previous_key else None
    started = time.monotonic()
    flags = flag_exclusions(storage, spec)
    output_id = layout.manifest_id(source.output_id, flags.version)
    try:
        picked = _pick(storage, source.key, spec, source.snapshot_id, previous, flags.exclude)
    except SamplingError as exc:
        raise StageError(f"balanced_manifest[{training_set}]: {exc}") from exc
    del previous  # the previous manifest's URLs (0.1 GB at 1 M images) served the filter pass only
    folder = layout.manifests(training_set)
    key = folder.commit_key(output_id)
    # written a part at a time, the manifest is never whole in memory: what stays are the columns
    # the checks and the class names read (about a third of it)
    with storage.open_write(key) as fh:
        table = picked.write(fh)
        nbytes = fh.tell()
    images, stats = picked.rows, picked.stats
    del picked
    elapsed = time.monotonic() - started
    stats["image_flags"] = flags.stats
    layout.publish(storage, folder, output_id)

    names = _class_names(table)
    known = {**taxon_names_of(storage, training_set), **{str(k): v for k, v in names.items() if v}}
    per_class = [
        {"label": label, "name": names.get(label), "images": n}
        for label, n in stats.get("per_class", {}).items()
    ]
    log.info(
        f"manifest[{training_set}]: {images} images, {len(per_class)} classes in {elapsed:.1f}s; "
        f"dropped {stats.get('dropped')}"
    )
    return BalancedManifest(
        output_id=output_id,
        snapshot_id=source.snapshot_id,
        key=key,
        uri=storage.uri_of(key),
        images=images,
        per_class=per_class,
        shortfall=[
            {"label": k, "name": names.get(k), "missing": v} for k, v in stats.get("shortfall", {}).items()
        ],
        stats=stats,
        checks=manifest_checks(table, spec, stats),
        bytes=nbytes,
        seconds=elapsed,
        names=known,
    )


def _class_names(table: pa.Table) -> dict[int, str | None]:
    """label -> label_name of each class, in order of first appearance (the name a class's last row has).

    From one row per class: the whole columns as Python objects were 0.1 GB at 1 M images.
    """
    labels = table.column("label").to_numpy()
    if len(labels) == 0:
        return {}
    _, first = np.unique(labels, return_index=True)
    _, last_reversed = np.unique(labels[::-1], return_index=True)
    appearance = np.argsort(first, kind="stable")
    last = len(labels) - 1 - last_reversed[appearance]
    names = table.column("label_name").take(pa.array(last)).to_pylist()
    return dict(zip(labels[first[appearance]].tolist(), names, strict=True))


def _pick(
    storage: Storage,
    source_key: str,
    spec: TrainingSetSpec,
    snapshot_id: str,
    previous: Any,
    exclude: ImageExclusions | None,
) -> PickedRows:
    local = storage.local_path(source_key)
    if local is not None:  # stream the Parquet file (bounded memory)
        return pick_manifest_from_parquet(
            local, spec, snapshot_id=snapshot_id, previous=previous, exclude=exclude
        )
    return pick_manifest(
        storage.read_parquet(source_key),
        spec,
        snapshot_id=snapshot_id,
        previous=previous,
        source=storage.uri_of(source_key),
        exclude=exclude,
    )


def manifest_checks(
    table: pa.Table, spec: TrainingSetSpec, stats: dict[str, Any] | None = None
) -> list[CheckOutcome]:
    """The outcomes of :data:`CHECKS` on a manifest (``stats``: its build statistics)."""
    if spec.balancing.mode == "weighted":  # natural proportions are unbalanced on purpose
        balance = (True, {"skipped": "weighted mode keeps natural proportions; tolerance does not apply"})
    else:
        balance = check_balance(table, spec.balancing.tolerance)
    outcomes = {
        "balanced": balance,
        "licenses_allowed": check_licenses(table, spec.licenses),
        "no_split_leakage": check_split_leakage(table, "split_group"),
        "unique_urls": check_unique_urls(table),
        "strata_columns_filled": check_strata_columns((stats or {}).get("strata_columns", {})),
    }
    return [
        CheckOutcome(name, bool(passed), details, CHECKS[name], warning=name in WARNING_CHECKS)
        for name, (passed, details) in outcomes.items()
    ]


def latest_manifest_key(storage: Storage, training_set: str) -> str | None:
    """The key of the newest complete manifest (the storage layout's commit rule), or None."""
    folder = layout.manifests(training_set)
    output_id = layout.newest_complete(storage, folder)
    return folder.commit_key(output_id) if output_id else None


def _required_manifest_key(storage: Storage, training_set: str) -> str:
    key = latest_manifest_key(storage, training_set)
    if key is None:
        raise StageError(f"'{training_set}' has no manifest yet; materialize balanced_manifest first")
    return key


def read_latest_manifest(storage: Storage, training_set: str) -> pa.Table:
    """The newest complete manifest; StageError when there is none yet."""
    return storage.read_parquet(_required_manifest_key(storage, training_set))


def open_latest_manifest(storage: Storage, training_set: str) -> pq.ParquetFile:
    """The newest complete manifest opened for reading in batches; StageError when there is none yet."""
    return storage.parquet_file(_required_manifest_key(storage, training_set))
