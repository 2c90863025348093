"""training_export: what a training loop reads, from the newest manifest and the stored images.

The final manifest with storage keys, an ImageFolder tree (with Hugging Face ``metadata.jsonl``),
WebDataset shards, credits for every image, the citation, a data card and ``croissant.json``, under
``exports/<training_set>/`` (see :mod:`gbifdl_assets.export`). What the export is given:

* every shard ledger of the training set (the image_store partitions), so nothing stored is left out;
* ``records``: the manifest's snapshot's media table (coordinates, country, year, recorder and the
  registry columns): the data card's map and biases, and the attribution fallbacks;
* ``datasets``: the registry's title, publisher and DOI per ``datasetKey`` (contributing datasets in
  CITATION.md and the data card; the last attribution fallback);
* ``provenance``: the spec's name and fingerprint, the snapshot and its source, the rules version,
  the manifest id and when the data was retrieved;
* from the spec: ``images.duplicates`` (exact and near copies of a photo go to one split, copies
  inside a split kept once: :mod:`gbifdl_assets.export.dedup`),
  ``images.unattributed`` (keep or drop BY images nobody can be credited for),
  ``images.min_class_images`` (data card warnings), and ``1 - images.completeness_threshold`` as the
  largest share of the manifest allowed to be missing.

Three checks follow (:data:`CHECKS`): every manifest image exported or explained, credits covering
every exported image, and no duplicate cluster across splits (blocking).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from gbifdl_assets.export.checks import check_credits_cover, check_manifest_covered, read_credits
from gbifdl_assets.export.datasets import datasets_from_records
from gbifdl_assets.export.dedup import DuplicatePolicy, check_no_duplicates_across_splits
from gbifdl_assets.export.facts import BASE_RECORD_COLUMNS, RECORD_COLUMNS
from gbifdl_assets.export.layout import (
    MANIFEST_FILE,
    ExportError,
    ExportSummary,
    IncompleteExportError,
    export_training_set,
)
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.occurrences.snapshots import SnapshotInfo, SnapshotNotFound, get_snapshot
from gbifdl_assets.pipeline.checks import CheckOutcome
from gbifdl_assets.pipeline.errors import StageError
from gbifdl_assets.pipeline.image_shards import shard_keys
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout

_log = logging.getLogger(__name__)

#: The export's checks: name -> what passing means.
CHECKS = {
    "manifest_images_accounted_for": (
        "Every manifest image is exported or explained (a ledger's failure reason, or dropped for lack of "
        "a name to credit)."
    ),
    "credits_cover_every_image": "credits.csv has a row for every exported image and a name for every BY-licensed one.",
    "no_duplicates_across_splits": (
        "No photo sits in two splits: exact copies (sha256) and near copies (perceptual hashes within "
        "images.duplicates.max_distance bits) of the exported images are all in one split."
    ),
}
#: checks that block what runs after the export when they fail
BLOCKING_CHECKS = frozenset({"no_duplicates_across_splits"})


@dataclass(frozen=True)
class TrainingExport:
    """A written export: where, its data card, what it holds, what it was built from, and its checks."""

    uri: str
    data_card_uri: str
    summary: ExportSummary
    seconds: float
    provenance: dict[str, Any] = field(default_factory=dict)
    datasets: int = 0  # contributing datasets with registry names
    croissant_uri: str = ""
    checks: list[CheckOutcome] = field(default_factory=list)
    #: per class, in label order: label, name, images (exported), one count per split, missing
    per_class: list[dict[str, Any]] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)  # the split names, largest first


def _manifest(storage: Storage, training_set: str) -> tuple[str, pa.Table]:
    folder = layout.manifests(training_set)
    manifest_id = layout.newest_complete(storage, folder)
    if manifest_id is None:
        raise StageError(f"'{training_set}' has no manifest yet; materialize balanced_manifest first")
    return manifest_id, storage.read_parquet(folder.commit_key(manifest_id))


def _snapshot(storage: Storage, training_set: str, snapshot_id: str) -> SnapshotInfo | None:
    try:
        return get_snapshot(storage, training_set, snapshot_id)
    except SnapshotNotFound:
        return None


def _records(storage: Storage, snapshot: SnapshotInfo | None) -> pa.Table | None:
    if snapshot is None:
        return None
    # snapshot.json lists the file's columns: a snapshot written before the registry columns has fewer
    names = set(snapshot.metadata.get("columns") or BASE_RECORD_COLUMNS)
    return storage.read_parquet(snapshot.media_key, columns=[c for c in RECORD_COLUMNS if c in names])


def _provenance(
    spec: TrainingSetSpec | None, training_set: str, manifest_id: str, snapshot: SnapshotInfo | None
) -> dict[str, Any]:
    snapshot_id, rules_version = layout.split_annotated_id(manifest_id)
    return {
        "spec_name": spec.name if spec is not None else training_set,
        "spec_fingerprint": spec.fingerprint() if spec is not None else "",
        "snapshot_id": snapshot_id,
        "snapshot_source": snapshot.source if snapshot is not None else {},
        "rules_version": rules_version,
        "manifest_id": manifest_id,
        "date": snapshot.created if snapshot is not None else "",
    }


def _checks(
    out: Storage, manifest: pa.Table, ledger: pa.Table, summary: ExportSummary, policy: DuplicatePolicy
) -> list[CheckOutcome]:
    exported = out.read_parquet(MANIFEST_FILE)
    dropped_copies = int(summary.duplicates.get("dropped", 0))
    covered = check_manifest_covered(
        manifest,
        ledger,
        exported.column("content_key"),
        dropped_unattributed=summary.dropped_unattributed,
        dropped_duplicates=dropped_copies,
    )
    credited = check_credits_cover(exported.select(["content_key", "license"]), read_credits(out))
    columns = [
        c for c in ("content_key", "split", "sha256", "content_sha256", "phash") if c in exported.column_names
    ]
    apart = check_no_duplicates_across_splits(
        exported.select(columns), max_distance=policy.max_distance, summary=summary.duplicates
    )
    outcomes = {
        "manifest_images_accounted_for": covered,
        "credits_cover_every_image": credited,
        "no_duplicates_across_splits": apart,
    }
    # names missing under a BY licence warn (the export is usable); anything else is an error
    warn = {"credits_cover_every_image": credited[1]["missing_rows"] == 0}
    return [
        CheckOutcome(name, passed, details, CHECKS[name], warning=warn.get(name, False))
        for name, (passed, details) in outcomes.items()
    ]


def _per_class(out: Storage, manifest: pa.Table) -> tuple[list[dict[str, Any]], list[str]]:
    """Exported images per class and split, and the manifest images each class is missing."""
    exported = out.read_parquet(MANIFEST_FILE, columns=["label", "label_name", "split"])
    sizes = Counter(manifest.column("split").to_pylist())
    splits = sorted(sizes, key=lambda split: (-sizes[split], str(split)))  # train first
    expected = Counter(manifest.column("label").to_pylist())
    names = dict(
        zip(manifest.column("label").to_pylist(), manifest.column("label_name").to_pylist(), strict=True)
    )
    per_split: dict[Any, Counter] = {label: Counter() for label in expected}
    for label, split in zip(
        exported.column("label").to_pylist(), exported.column("split").to_pylist(), strict=True
    ):
        per_split.setdefault(label, Counter())[split] += 1
    rows = []
    for label in sorted(per_split, key=lambda k: (str(type(k)), k)):
        counts = per_split[label]
        images = sum(counts.values())
        rows.append(
            {
                "label": label,
                "name": names.get(label) or "",
                "images": images,
                **{split: counts.get(split, 0) for split in splits},
                "missing": max(0, expected.get(label, 0) - images),
            }
        )
    return rows, splits


def duplicate_policy(spec: TrainingSetSpec | None) -> DuplicatePolicy:
    """The spec's ``images.duplicates`` (the defaults without a spec)."""
    if spec is None:
        return DuplicatePolicy()
    options = spec.images.duplicates
    return DuplicatePolicy(
        max_distance=options.max_distance,
        keep_copies_within_split=options.keep_copies_within_split,
        enabled=options.enabled,
    )


def build_training_export(
    training_set: str,
    storage: Storage,
    *,
    spec: TrainingSetSpec | None = None,
    log: logging.Logger = _log,
) -> TrainingExport:
    """Export the newest manifest's stored images (every shard's ledger) to ``exports/<training_set>/``
    (module docstring). Without ``spec`` the export keeps unattributed images and has no missing limit."""
    manifest_id, manifest = _manifest(storage, training_set)
    ledgers = [load_ledger(storage, layout.ledger_name(training_set, s)) for s in shard_keys()]
    ledger = pa.concat_tables([t for t in ledgers if t.num_rows] or [ledgers[0]])
    snapshot = _snapshot(storage, training_set, layout.split_annotated_id(manifest_id)[0])
    records = _records(storage, snapshot)
    datasets = datasets_from_records(records)
    provenance = _provenance(spec, training_set, manifest_id, snapshot)
    started = time.monotonic()
    out = storage.child(layout.export_prefix(training_set))
    policy = duplicate_policy(spec)
    try:
        summary = export_training_set(
            manifest,
            ledger,
            storage,
            out,
            training_set=training_set,
            records=records,
            datasets=datasets,
            provenance=provenance,
            unattributed=spec.images.unattributed if spec is not None else "keep",
            min_class_images=spec.images.min_class_images if spec is not None else 5,
            max_missing=1 - spec.images.completeness_threshold if spec is not None else None,
            duplicates=policy,
        )
    except ExportError as exc:  # the limit of missing images, an empty ledger ...: the message says what
        facts = (
            {"missing": exc.missing, "manifest_images": exc.manifest_images}
            if isinstance(exc, IncompleteExportError)
            else None
        )
        raise StageError(f"training_export[{training_set}]: {exc}", metadata=facts) from exc
    elapsed = time.monotonic() - started
    per_class, splits = _per_class(out, manifest)
    log.info(
        f"exported {training_set}: {summary.images} images, {summary.classes} classes, {summary.missing} missing, "
        f"{summary.unattributed} without a name to credit ({summary.dropped_unattributed} left out)"
    )
    return TrainingExport(
        out.uri,
        out.uri_of("datacard.html"),
        summary,
        elapsed,
        provenance=provenance,
        datasets=sum(1 for d in datasets.values() if d.get("title")),
        croissant_uri=out.uri_of("croissant.json"),
        checks=_checks(out, manifest, ledger, summary, policy),
        per_class=per_class,
        splits=splits,
    )
