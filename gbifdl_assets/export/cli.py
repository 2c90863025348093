"""``gbifdl export``: a manifest plus its image-store ledgers to a training export.

Registered by the top-level CLI (gbifdl_assets/cli.py)::

    from gbifdl_assets.export.cli import add_export_parser
    add_export_parser(sub)   # sub = parser.add_subparsers(...)

Which ledgers: ``--ledger NAME`` (repeat it for several), or ``--training-set NAME`` alone, which
reads every ledger of that training set in the store: the platform's shard ledgers
``NAME.shardNN`` (one per image_store partition) and ``NAME`` itself (what ``gbifdl images
download`` writes by default). Reading one shard ledger of a Dagster-built set would export an
eighth of it, so the export refuses (``ok: false``, exit 1, nothing written) when more than
``--max-missing`` (a share, default 0.05) of the manifest's images have no stored image.

Ends with one JSON summary line on stdout; a user error goes to stderr as one message naming the
input and the fix, exit code 2, and leaves no partial export (see export.layout).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

from gbifdl_assets.storage.layout import training_set_ledgers
from gbifdl_assets.summary_line import emit, fail

__all__ = ["add_export_parser", "cmd_export", "training_set_ledgers"]


_emit = emit
_fail = functools.partial(fail, command="export")


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``export`` to the top-level subparsers; returns its parser."""
    p = subparsers.add_parser(
        "export",
        help="write a training export (ImageFolder, WebDataset, credits, citation, data card, croissant.json)",
        description=(
            "Join a manifest with the image store's ledgers and write the stored images as an "
            "ImageFolder tree (with Hugging Face metadata.jsonl) and/or WebDataset shards, with "
            "credits.csv/CREDITS.md, CITATION.md, classes.json, a data card and croissant.json. "
            "export.json is written last."
        ),
    )
    p.add_argument("manifest", type=Path, help="the manifest Parquet (gbifdl manifest build)")
    p.add_argument("--images", required=True, help="the image store: a folder or s3://bucket/prefix")
    p.add_argument(
        "--ledger",
        action="append",
        help="a ledger name in the image store (ledgers/<name>/); repeat for several (e.g. every shard)",
    )
    p.add_argument("--out", required=True, help="the export folder or s3://bucket/prefix")
    p.add_argument(
        "--format",
        action="append",
        choices=["imagefolder", "webdataset"],
        help="repeat for several (default: both)",
    )
    p.add_argument(
        "--training-set",
        default=None,
        help="the training set: without --ledger, read every ledger NAME and NAME.shardNN of the store; "
        "also the name in the data card (default: the manifest's file name)",
    )
    p.add_argument(
        "--max-missing",
        type=float,
        default=0.05,
        help="the largest share of manifest images that may lack a stored image (default 0.05); "
        "beyond it nothing is written and the command answers ok: false",
    )
    p.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="the snapshot.json of the manifest's snapshot, for CITATION.md and the provenance (DOI or query)",
    )
    p.add_argument(
        "--records",
        "--coordinates",
        dest="records",
        type=Path,
        default=None,
        help="a Parquet keyed by gbifID, e.g. the snapshot's media table: coordinates, countryCode and year "
        "for the data card, recordedBy and publisher names for credits",
    )
    p.add_argument("--provenance", type=Path, default=None, help="a JSON object merged into the provenance")
    p.add_argument(
        "--drop-unattributed",
        action="store_true",
        help="leave out images under a BY licence that have no creator, rights holder, recorder or publisher",
    )
    p.add_argument(
        "--min-class-images", type=int, default=5, help="warn about classes with fewer images in a split"
    )
    p.add_argument(
        "--duplicates-max-distance",
        type=int,
        default=31,
        help="largest Hamming distance (of 256 bits) between perceptual hashes of near copies (31); "
        "0: identical hashes only",
    )
    p.add_argument(
        "--keep-copies-within-split",
        action="store_true",
        help="keep every copy of a photo in its split (default: once per class)",
    )
    p.add_argument(
        "--no-dedup",
        action="store_true",
        help="export the manifest's splits as they are, even when one photo sits in two of them",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="samples per WebDataset shard")
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint for S3-compatible servers")
    p.set_defaults(func=cmd_export)
    return p


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {what} {path} ({exc})") from exc


def _provenance(args: argparse.Namespace, manifest: Any, snapshot: Any) -> dict[str, Any]:
    prov: dict[str, Any] = {"manifest_id": args.manifest.name}
    if args.training_set:
        prov["spec_name"] = args.training_set
    if "snapshot_id" in manifest.column_names:
        ids = sorted({v for v in manifest.column("snapshot_id").to_pylist() if v})
        if len(ids) == 1:
            prov["snapshot_id"] = ids[0]
    if isinstance(snapshot, dict):
        for key, target in (("snapshot_id", "snapshot_id"), ("created", "date")):
            if snapshot.get(key):
                prov[target] = snapshot[key]
    return prov


def cmd_export(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gbifdl_assets.export.dedup import DuplicatePolicy
    from gbifdl_assets.export.facts import RECORD_COLUMNS
    from gbifdl_assets.export.layout import ExportError, IncompleteExportError, export_training_set
    from gbifdl_assets.media.duplicates import DuplicateError
    from gbifdl_assets.media.ledger import list_ledgers, load_ledger
    from gbifdl_assets.storage import StorageError, open_storage

    t0 = time.perf_counter()
    if not args.ledger and not args.training_set:
        return _fail(
            "say which ledgers to read: --ledger NAME (repeatable) or --training-set NAME (all its shards)"
        )
    if not args.manifest.is_file():
        return _fail(
            f"manifest {args.manifest} does not exist: give the Parquet written by `gbifdl manifest build`"
        )
    try:
        manifest = pq.read_table(args.manifest)
    except Exception as exc:
        return _fail(f"cannot read manifest {args.manifest} as Parquet ({exc}): give a manifest Parquet file")
    citation: Any = None
    snapshot: Any = None
    extra: Any = {}
    try:
        if args.snapshot is not None:
            snapshot = _read_json(args.snapshot, "snapshot metadata")
            citation = snapshot.get("source", snapshot) if isinstance(snapshot, dict) else snapshot
        if args.provenance is not None:
            extra = _read_json(args.provenance, "provenance")
            if not isinstance(extra, dict):
                raise ValueError(f"the provenance file {args.provenance} must hold a JSON object")
    except ValueError as exc:
        return _fail(f"{exc}: give the snapshot's snapshot.json / a JSON object of provenance fields")
    records = None
    if args.records is not None:
        try:
            names = pq.read_schema(args.records).names
            records = pq.read_table(args.records, columns=[c for c in RECORD_COLUMNS if c in names])
            if "gbifID" not in records.column_names:
                raise ValueError("it has no gbifID column")
        except Exception as exc:
            return _fail(
                f"cannot read gbifID and occurrence columns from {args.records} ({exc}): "
                "give the snapshot's media Parquet or leave --records out"
            )
    training_set = args.training_set or args.manifest.stem
    try:
        image_storage = open_storage(args.images, endpoint_url=args.endpoint_url)
        out = open_storage(args.out, endpoint_url=args.endpoint_url)
        known = list_ledgers(image_storage)
        names = list(dict.fromkeys(args.ledger or training_set_ledgers(known, training_set)))
        absent = [n for n in names if n not in known]
        if absent or not names:
            wanted = (
                f"no ledger {absent[0]!r}" if absent else f"no ledger of the training set {training_set!r}"
            )
            return _fail(
                f"the image store {image_storage.uri} has {wanted} (it has {known or 'none'}): "
                "pass --ledger with those names or --training-set with the set's name, or download the images first"
            )
        ledger = pa.concat_tables([load_ledger(image_storage, n) for n in names])
        summary = export_training_set(
            manifest,
            ledger,
            image_storage,
            out,
            training_set=training_set,
            formats=args.format or ("imagefolder", "webdataset"),
            citation=citation,
            shard_size=args.shard_size,
            records=records,
            provenance={**_provenance(args, manifest, snapshot), **extra},
            unattributed="drop" if args.drop_unattributed else "keep",
            min_class_images=args.min_class_images,
            max_missing=args.max_missing,
            duplicates=DuplicatePolicy(
                max_distance=args.duplicates_max_distance,
                keep_copies_within_split=args.keep_copies_within_split,
                enabled=not args.no_dedup,
            ),
        )
    except IncompleteExportError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        _emit(
            {
                "ok": False,
                "command": "export",
                "error": str(exc),
                "ledgers": names,
                "missing": exc.missing,
                "manifest_images": exc.manifest_images,
                "max_missing": args.max_missing,
            }
        )
        return 1
    except (ExportError, DuplicateError, StorageError, FileNotFoundError) as exc:
        return _fail(str(exc))
    result = {
        "ok": True,
        "command": "export",
        "seconds": round(time.perf_counter() - t0, 3),
        "ledgers": names,
        **summary.to_dict(),
    }
    result.pop("files", None)
    _emit(result)
    return 0
