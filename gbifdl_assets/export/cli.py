"""``gbifdl export``: a manifest plus its image-store ledger to a training export.

Registered by the top-level CLI (gbifdl_assets/cli.py)::

    from gbifdl_assets.export.cli import add_export_parser
    add_export_parser(sub)   # sub = parser.add_subparsers(...)

Ends with one JSON summary line on stdout; a user error goes to stderr as one message naming the
input and the fix, exit code 2, and leaves no partial export (see export.layout).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

from gbifdl_assets.summary_line import emit, fail

__all__ = ["add_export_parser", "cmd_export"]


_emit = emit
_fail = functools.partial(fail, command="export")


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``export`` to the top-level subparsers; returns its parser."""
    p = subparsers.add_parser(
        "export",
        help="write a training export (ImageFolder, WebDataset, credits, citation, data card)",
        description=(
            "Join a manifest with the image store's ledger and write the stored images as an "
            "ImageFolder tree and/or WebDataset shards, with credits.csv/CREDITS.md, CITATION.md, "
            "classes.json and a data card. export.json is written last."
        ),
    )
    p.add_argument("manifest", type=Path, help="the manifest Parquet (gbifdl manifest build)")
    p.add_argument("--images", required=True, help="the image store: a folder or s3://bucket/prefix")
    p.add_argument("--ledger", required=True, help="the ledger name in the image store (ledgers/<name>/)")
    p.add_argument("--out", required=True, help="the export folder or s3://bucket/prefix")
    p.add_argument(
        "--format",
        action="append",
        choices=["imagefolder", "webdataset"],
        help="repeat for several (default: both)",
    )
    p.add_argument(
        "--training-set", default=None, help="name shown in the data card (default: the manifest's name)"
    )
    p.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="the snapshot.json of the manifest's snapshot, for CITATION.md (its source: DOI or query and date)",
    )
    p.add_argument(
        "--coordinates",
        type=Path,
        default=None,
        help="a Parquet with gbifID, decimalLatitude, decimalLongitude (e.g. the snapshot) for the data card map",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="samples per WebDataset shard")
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint for S3-compatible servers")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from gbifdl_assets.export.layout import ExportError, export_training_set
    from gbifdl_assets.media.ledger import list_ledgers, load_ledger
    from gbifdl_assets.storage import StorageError, open_storage

    t0 = time.perf_counter()
    if not args.manifest.is_file():
        return _fail(
            f"manifest {args.manifest} does not exist: give the Parquet written by `gbifdl manifest build`"
        )
    try:
        manifest = pq.read_table(args.manifest)
    except Exception as exc:
        return _fail(f"cannot read manifest {args.manifest} as Parquet ({exc}): give a manifest Parquet file")
    citation: Any = None
    if args.snapshot is not None:
        try:
            meta = json.loads(args.snapshot.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return _fail(
                f"cannot read snapshot metadata {args.snapshot} ({exc}): give the snapshot's snapshot.json"
            )
        citation = meta.get("source", meta) if isinstance(meta, dict) else meta
    coordinates = None
    if args.coordinates is not None:
        try:
            coordinates = pq.read_table(
                args.coordinates, columns=["gbifID", "decimalLatitude", "decimalLongitude"]
            )
        except Exception as exc:
            return _fail(
                f"cannot read gbifID/decimalLatitude/decimalLongitude from {args.coordinates} ({exc}): "
                "give the snapshot's media Parquet or leave --coordinates out"
            )
    try:
        image_storage = open_storage(args.images, endpoint_url=args.endpoint_url)
        out = open_storage(args.out, endpoint_url=args.endpoint_url)
        ledger = load_ledger(image_storage, args.ledger)
        if ledger.num_rows == 0:
            known = list_ledgers(image_storage)
            return _fail(
                f"the image store {image_storage.uri} has no ledger {args.ledger!r} (it has {known or 'none'}): "
                "pass --ledger with one of those, or download the images first"
            )
        summary = export_training_set(
            manifest,
            ledger,
            image_storage,
            out,
            training_set=args.training_set or args.manifest.stem,
            formats=args.format or ("imagefolder", "webdataset"),
            citation=citation,
            shard_size=args.shard_size,
            coordinates=coordinates,
        )
    except (ExportError, StorageError) as exc:
        return _fail(str(exc))
    except FileNotFoundError as exc:
        return _fail(str(exc))
    result = {
        "ok": True,
        "command": "export",
        "seconds": round(time.perf_counter() - t0, 3),
        **summary.to_dict(),
    }
    result.pop("files", None)
    _emit(result)
    return 0
