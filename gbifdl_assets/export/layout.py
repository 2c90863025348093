"""The export entry point: join manifest and ledger, then write every format, atomically.

Layout of an export (all keys relative to the ``out`` storage)::

    manifest.parquet                 final manifest + label_index, storage key, local path, width…
    classes.json                     label index <-> taxon key <-> name <-> folder name
    imagefolder/<split>/<dir>/<content_key>.<ext>
    webdataset/<split>-000000.tar    members <content_key>.jpg|png, .cls, .json
    credits.csv, CREDITS.md          per-image attribution
    CITATION.md                      how to cite the data (GBIF download DOIs or the search query)
    datacard.md, datacard.html, datacard/classes.png, datacard/map.png
    croissant.json                   Croissant 1.1 + RAI: every file with its sha256, record sets
    imagefolder/<split>/metadata.jsonl   Hugging Face ImageFolder metadata (file_name, label, credit)
    export.json                      written last: its presence means the export is complete

Atomicity: ``export.json`` of a previous export is removed first. On local storage everything is
staged in a hidden temporary folder (``.gbifdl-tmp-…``, which ``Storage.list`` ignores) and moved
into place only after every writer succeeded, so a failure leaves neither a partial tree nor a
marker. On S3 each object is written atomically and the marker last; readers must check for
``export.json``.

Class folders are named ``<taxon key, zero-padded to 10 digits>_<name>``: torchvision's
ImageFolder and Keras sort folder names as *strings*, and zero-padding makes that order equal to
the numeric taxon-key order of ``classes.json``, so the index either library infers is ours.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.export.dedup import DuplicatePolicy, resolve_duplicates
from gbifdl_assets.export.escape import clean_table, clean_text
from gbifdl_assets.storage import TMP_PREFIX, LocalStorage, Storage

__all__ = [
    "EXPORT_MARKER",
    "FORMATS",
    "ExportError",
    "ExportSummary",
    "IncompleteExportError",
    "class_table",
    "export_training_set",
    "image_ext",
    "label_dirname",
    "prepare_export_table",
]

log = logging.getLogger(__name__)

EXPORT_MARKER = "export.json"
MANIFEST_FILE = "manifest.parquet"
CLASSES_FILE = "classes.json"
FORMATS = ("imagefolder", "webdataset")
LABEL_WIDTH = 10  # GBIF taxon keys have at most 10 digits today; wider keys widen the pad
#: Top-level entries an export owns: replaced (or removed when no longer produced) on re-export;
#: anything else in the folder is left alone.
EXPORT_ENTRIES = (
    MANIFEST_FILE,
    CLASSES_FILE,
    "imagefolder",
    "webdataset",
    "credits.csv",
    "CREDITS.md",
    "CITATION.md",
    "datacard.md",
    "datacard.html",
    "datacard",
    "croissant.json",
)
_SAFE = re.compile(r"[^A-Za-z0-9.-]+")
# content keys and split names become file names and shard names
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_EXTS = {"JPEG": "jpg", "JPG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class ExportError(GbifdlError, ValueError):
    """A user-caused problem with the export's inputs (message says which input and the fix)."""


class IncompleteExportError(ExportError):
    """More of the manifest's images are missing from the ledgers than ``max_missing`` allows."""

    def __init__(self, message: str, *, missing: int, manifest_images: int) -> None:
        super().__init__(message)
        self.missing = missing
        self.manifest_images = manifest_images


@dataclass
class ExportSummary:
    training_set: str
    out: str
    formats: list[str]
    images: int  # exported
    missing: int  # manifest rows without a stored image in the ledger (left out)
    classes: int
    splits: dict[str, int]
    shards: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    licenses: dict[str, int] = field(default_factory=dict)
    #: BY-family images without any name to credit (kept, or dropped when ``unattributed="drop"``)
    unattributed: int = 0
    dropped_unattributed: int = 0
    #: images credited per link of the attribution chain (creator, rightsHolder, …, publisher)
    attribution_sources: dict[str, int] = field(default_factory=dict)
    #: duplicate clusters found, images moved to their representative's split, copies dropped, examples
    #: (see .dedup)
    duplicates: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_dirname(label: int, name: str | None, width: int = LABEL_WIDTH) -> str:
    """A stable, filesystem-safe folder name: ``0005219404_Panthera_leo`` (ASCII, ≤ 90 chars)."""
    key = str(int(label)).zfill(width)
    if not name:
        return key
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    safe = _SAFE.sub("_", ascii_name).strip("._-")[:79]
    return f"{key}_{safe}" if safe else key


def image_ext(fmt: str | None) -> str:
    """File extension for a ledger ``format`` (JPEG → jpg); unknown formats keep their lower name."""
    if not fmt:
        return "jpg"
    return _EXTS.get(fmt.upper(), re.sub(r"[^a-z0-9]", "", fmt.lower()) or "bin")


def class_table(table: pa.Table) -> list[dict[str, Any]]:
    """The classes of an export table, ordered by taxon key: index, label, name, dirname, count."""
    if table.num_rows == 0:
        return []
    agg = table.group_by(["label"], use_threads=False).aggregate([("label_name", "max"), ("label", "count")])
    agg = agg.sort_by([("label", "ascending")])
    labels = agg.column("label").to_pylist()
    width = max(LABEL_WIDTH, *(len(str(v)) for v in labels))
    out = []
    for i, (label, name, count) in enumerate(
        zip(
            labels,
            agg.column("label_name_max").to_pylist(),
            agg.column("label_count").to_pylist(),
            strict=True,
        )
    ):
        out.append(
            {
                "index": i,
                "label": label,
                "name": name,
                "dirname": label_dirname(label, name, width),
                "count": count,
            }
        )
    return out


def prepare_export_table(manifest: pa.Table, ledger: pa.Table) -> tuple[pa.Table, int]:
    """Manifest rows whose image is stored (ledger ``stored``), with the ledger's image facts.

    Returns the joined table (sorted by split, label, content_key; with ``key``, ``width``,
    ``height``, ``sha256``, ``format``, ``bytes``, ``ext``, ``label_index``, ``dirname``) and how many
    manifest rows were left out for lack of a stored image.
    """
    joined, missing = _join_ledger(manifest, ledger)
    return _index_classes(joined), missing


def _join_ledger(manifest: pa.Table, ledger: pa.Table) -> tuple[pa.Table, int]:
    """The stored images of the manifest with the ledger's facts (checked and cleaned), and the rest's count."""
    for col in ("content_key", "label", "split", "gbifID", "license"):
        if col not in manifest.column_names:
            raise ExportError(f"the manifest has no {col!r} column: pass the training set's manifest table")
    for col in ("content_key", "stored", "key"):
        if col not in ledger.column_names:
            raise ExportError(f"the ledger has no {col!r} column: pass load_ledger(storage, name)")
    if "label_name" not in manifest.column_names:
        manifest = manifest.append_column("label_name", pa.nulls(manifest.num_rows, pa.string()))
    facts = [
        c
        for c in ("key", "width", "height", "sha256", "format", "bytes", "content_sha256", "phash")
        if c in ledger.column_names
    ]
    keep = pc.and_(pc.fill_null(ledger.column("stored"), False), pc.is_valid(ledger.column("key")))
    stored = ledger.filter(keep)
    stored = stored.select(["content_key", *facts])
    # load_ledger gives one entry per image; a hand-made ledger may repeat one, which would
    # duplicate the image in the export: keep the last entry per content_key, as load_ledger does.
    if pc.count_distinct(stored.column("content_key")).as_py() != stored.num_rows:
        idx = pa.table({"content_key": stored.column("content_key"), "__i": pa.array(range(stored.num_rows))})
        last = idx.group_by("content_key", use_threads=False).aggregate([("__i", "max")]).column("__i_max")
        stored = stored.take(last)
    joined = manifest.join(stored, "content_key", join_type="inner", use_threads=False)
    missing = manifest.num_rows - joined.num_rows
    for col in ("content_key", "split"):
        bad = [v for v in pc.unique(joined.column(col)).to_pylist() if not _KEY_RE.fullmatch(str(v or ""))]
        if bad:
            raise ExportError(
                f"the manifest's {col!r} holds {bad[0]!r}, which cannot name a file: "
                "content keys are sha256 hex digests and splits train/val/test (rebuild the manifest)"
            )
    # text from archives reaches CSV, JSON, Markdown and HTML: no control characters past here
    joined = clean_table(joined)
    return joined, missing


def _index_classes(joined: pa.Table) -> pa.Table:
    """Sorted by split, label, content key, with ``label_index``, ``dirname`` and ``ext``."""
    joined = joined.sort_by([("split", "ascending"), ("label", "ascending"), ("content_key", "ascending")])
    classes = class_table(joined)
    index = {c["label"]: c["index"] for c in classes}
    dirname = {c["label"]: c["dirname"] for c in classes}
    labels = joined.column("label").to_pylist()
    fmt = joined.column("format").to_pylist() if "format" in joined.column_names else [None] * joined.num_rows
    joined = joined.append_column("label_index", pa.array([index[v] for v in labels], pa.int32()))
    joined = joined.append_column("dirname", pa.array([dirname[v] for v in labels], pa.string()))
    joined = joined.append_column("ext", pa.array([image_ext(f) for f in fmt], pa.string()))
    return joined


def imagefolder_path(row: Mapping[str, Any]) -> str:
    return f"imagefolder/{row['split']}/{row['dirname']}/{row['content_key']}.{row['ext']}"


def _final_manifest(table: pa.Table, image_storage: Storage, formats: Sequence[str]) -> pa.Table:
    keys = table.column("key").to_pylist()
    local = [image_storage.local_path(k) for k in keys]
    out = table.append_column("local_path", pa.array([str(p) if p else None for p in local], pa.string()))
    uris = [image_storage.uri_of(k) for k in keys]
    out = out.append_column("storage_uri", pa.array(uris, pa.string()))
    if "imagefolder" in formats:
        rows = out.select(["split", "dirname", "content_key", "ext"]).to_pylist()
        out = out.append_column(
            "imagefolder_path", pa.array([imagefolder_path(r) for r in rows], pa.string())
        )
    return out


class _Staging:
    """Where writers put files: a hidden temp folder on local storage, the target itself on S3."""

    def __init__(self, out: Storage) -> None:
        self.out = out
        self.local_root = out.local_path(EXPORT_MARKER)
        self.tmp_dir = None
        if self.local_root is not None:
            root = self.local_root.parent
            root.mkdir(parents=True, exist_ok=True)
            self.tmp_dir = root / f"{TMP_PREFIX}export-{uuid.uuid4().hex[:12]}"
            self.tmp_dir.mkdir()
            self.storage: Storage = LocalStorage(self.tmp_dir)
        else:
            # S3 has no rename: clear the previous export's objects (its marker is already gone),
            # so stale shards or class folders of an earlier export cannot mix into this one.
            for entry in EXPORT_ENTRIES:
                for key in list(out.list(entry)):
                    if key == entry or key.startswith(entry + "/"):
                        out.delete(key)
            self.storage = out

    def commit(self) -> None:
        if self.tmp_dir is None:
            return
        root = self.tmp_dir.parent
        for entry in EXPORT_ENTRIES:  # also drop what an earlier export made and this one does not
            target = root / entry
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        for entry in sorted(os.listdir(self.tmp_dir)):
            os.replace(self.tmp_dir / entry, root / entry)
        self.tmp_dir.rmdir()
        self.tmp_dir = None

    def abort(self) -> None:
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None


def export_training_set(
    manifest: pa.Table,
    ledger: pa.Table,
    image_storage: Storage,
    out: Storage,
    *,
    training_set: str,
    formats: Iterable[str] = FORMATS,
    citation: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    shard_size: int = 1000,
    coordinates: pa.Table | None = None,
    world_outlines: str | os.PathLike[str] | None = None,
    records: pa.Table | None = None,
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
    unattributed: str = "keep",
    provenance: Mapping[str, Any] | None = None,
    min_class_images: int = 5,
    max_missing: float | None = None,
    duplicates: DuplicatePolicy | None = None,
) -> ExportSummary:
    """Write a complete training export of ``manifest`` (images from ``image_storage``) to ``out``.

    ``citation`` is the snapshot's ``source`` (snapshot.json), or a list of them, or
    ``{"sources": [...]}``. ``records`` is a table keyed by ``gbifID`` with occurrence facts the
    manifest lacks, e.g. the snapshot's media table: ``decimalLatitude``/``decimalLongitude`` (the data
    card's map), ``recordedBy``, ``record_rightsHolder``, ``datasetTitle``/``datasetName``, a publisher
    name (attribution, see :mod:`.attribution`); ``coordinates`` is the older name of the same argument.
    ``datasets`` maps ``datasetKey`` to ``{"title", "publisher"}`` (the last attribution fallback;
    also ``"doi"`` and ``"publisher_key"``, for the contributing datasets of CITATION.md and the data
    card); when None it is read from the registry columns of ``records`` (:mod:`.datasets`).
    ``unattributed``: ``"keep"`` (default) or ``"drop"`` BY-family images nobody can be credited for.
    ``provenance``: what the export was built from, shown in the data card and croissant.json:
    ``spec_name``, ``spec_fingerprint``, ``snapshot_id``, ``snapshot_source`` (the snapshot's source
    mapping: type, doi or params, dates; used as ``citation`` when that is not given),
    ``rules_version``, ``manifest_id``, ``date`` (when the data was retrieved), and optionally
    ``version`` (semver of the export) and ``url``; other keys are shown as they are.
    ``min_class_images``: the data card warns about every class with fewer images in a split.
    ``max_missing``: the largest share (0..1) of manifest images allowed to lack a stored image;
    beyond it :class:`IncompleteExportError` is raised before anything is written (None: no limit).
    ``duplicates``: how exact and near-duplicate photos are kept out of two splits (:mod:`.dedup`;
    None: the defaults, every cluster in its representative's split and copies kept once per split).
    """
    from gbifdl_assets.export import (
        attribution,
        credits,
        croissant,
        datacard,
        facts,
        imagefolder,
        webdataset,
    )
    from gbifdl_assets.export.datasets import contributing_datasets, datasets_from_records
    from gbifdl_assets.export.digests import DigestingStorage

    training_set = clean_text(training_set)
    formats = [f.strip().lower() for f in formats]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown export format(s) {bad or formats}: choose from {', '.join(FORMATS)}")
    if shard_size < 1:
        raise ExportError(f"shard_size must be at least 1, got {shard_size}")
    if max_missing is not None and not 0 <= max_missing <= 1:
        raise ExportError(f"max_missing is a share of the manifest between 0 and 1, got {max_missing}")
    if min_class_images < 0:
        raise ExportError(f"min_class_images must be 0 or more, got {min_class_images}")
    if unattributed not in ("keep", "drop"):
        raise ExportError(f"unattributed must be 'keep' or 'drop', got {unattributed!r}")
    records = records if records is not None else coordinates
    if datasets is None:
        datasets = datasets_from_records(records)
    provenance = dict(provenance or {})
    if citation is None and provenance.get("snapshot_source"):
        citation = provenance["snapshot_source"]
    joined, missing = _join_ledger(manifest, ledger)
    if joined.num_rows == 0:
        raise ExportError(
            f"none of the {manifest.num_rows} manifest images of {training_set!r} is stored in the ledger: "
            "download the images (image_store) before exporting"
        )
    if max_missing is not None and missing > max_missing * manifest.num_rows:
        raise IncompleteExportError(
            f"{missing} of the {manifest.num_rows} manifest images of {training_set!r} "
            f"({100 * missing / manifest.num_rows:.1f}%) have no stored image in the ledgers, more than the "
            f"{100 * max_missing:g}% allowed: give every ledger of the training set (its shards), download "
            "the missing images, or raise the limit",
            missing=missing,
            manifest_images=manifest.num_rows,
        )
    joined, deduplicated = resolve_duplicates(joined, duplicates)
    joined, credited = attribution.attribute(
        joined, records=records, datasets=datasets, unattributed=unattributed
    )
    if joined.num_rows == 0:
        raise ExportError(
            f"every stored image of {training_set!r} lacks a name to credit under its BY licence: "
            "export with unattributed='keep' or give records/datasets with recorders or publishers"
        )
    table = _index_classes(joined)
    classes = class_table(table)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out.delete(EXPORT_MARKER)  # an export being rewritten is not complete
    staging = _Staging(out)
    summary = ExportSummary(
        training_set=training_set,
        out=out.uri,
        formats=formats,
        images=table.num_rows,
        missing=missing,
        classes=len(classes),
        splits=_counts(table.column("split")),
        licenses=_counts(table.column("license")),
        unattributed=credited.unattributed,
        dropped_unattributed=credited.dropped,
        attribution_sources=credited.sources,
        duplicates=deduplicated.to_dict(),
    )
    try:
        target = DigestingStorage(staging.storage)
        final = _final_manifest(table, image_storage, formats)
        target.write_parquet(MANIFEST_FILE, final)
        target.write_bytes(CLASSES_FILE, (json.dumps(classes, indent=1, ensure_ascii=False) + "\n").encode())
        if "imagefolder" in formats:
            summary.bytes += imagefolder.write_imagefolder(final, image_storage, target)
            imagefolder.write_hf_metadata(final, target)
        if "webdataset" in formats:
            summary.shards = webdataset.write_webdataset(final, image_storage, target, shard_size=shard_size)
        credits.write_credits(final, target)
        credits.write_citation(final, target, citation, training_set=training_set, datasets=datasets)
        sources = credits.citation_sources(citation)
        counted = facts.collect_facts(final, records)
        counted.dataset_titles = {
            str(k): clean_text(v["title"]) for k, v in datasets.items() if v.get("title")
        }
        stamp = created.isoformat(timespec="seconds").replace("+00:00", "Z")
        datacard.write_datacard(
            final,
            target,
            training_set=training_set,
            classes=classes,
            missing=missing,
            world_outlines=world_outlines,
            facts=counted,
            provenance=provenance,
            sources=sources,
            attribution_sources=credited.sources,
            unattributed=credited.unattributed,
            dropped_unattributed=credited.dropped,
            min_class_images=min_class_images,
            formats=formats,
            created=stamp,
            datasets=contributing_datasets(final, datasets),
            duplicates=summary.duplicates,
        )
        croissant.write_croissant(
            target,
            final,
            training_set=training_set,
            classes=classes,
            facts=counted,
            sources=sources,
            provenance=provenance,
            missing=missing,
            unattributed=credited.unattributed,
            dropped_unattributed=credited.dropped,
            owned=EXPORT_ENTRIES,
            created=created,
        )
        summary.files = sorted(k for k in target.list("") if "/" not in k or k.startswith("datacard/"))
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    summary.created = stamp
    out.write_bytes(EXPORT_MARKER, (json.dumps(summary.to_dict(), indent=1) + "\n").encode())
    log.info("exported %d images of %s to %s (%d missing)", summary.images, training_set, out.uri, missing)
    return summary


def _counts(col: pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(col)
    pairs = sorted((str(v["values"]), int(v["counts"])) for v in vc.to_pylist())
    return dict(pairs)
