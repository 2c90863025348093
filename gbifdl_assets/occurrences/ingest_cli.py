"""``gbifdl dwca ingest ARCHIVE.zip OUT_DIR``: a GBIF download archive -> a snapshot on disk.

Register in ``gbifdl_assets/cli.py``::

    from gbifdl_assets.occurrences.ingest_cli import add_dwca_parser
    add_dwca_parser(sub)   # sub = parser.add_subparsers(dest="command", required=True)

Writes ``OUT_DIR/snapshots/<training set>/<snapshot id>/{media.parquet,snapshot.json}`` (the same
files the ``occurrence_snapshot`` asset writes) and ends with one JSON line on stdout:
``occurrences``, ``media``, ``skipped`` by reason, ``snapshot_id`` and ``path``.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from pathlib import Path
from typing import Any

from gbifdl_assets.summary_line import emit, fail

__all__ = ["add_dwca_parser", "cmd_dwca_ingest", "default_training_set"]


_emit = emit
_fail = functools.partial(fail, command="dwca ingest")


def default_training_set(archive: Path) -> str:
    """A folder-safe training-set name from the archive (its download key when it has one)."""
    from gbifdl_assets.gbif.dwca.meta import DOWNLOAD_KEY  # here: the reader loads pyarrow

    key = DOWNLOAD_KEY.search(archive.name)
    if key:
        return key.group(1)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", archive.stem).strip("-._")
    return name[:128] or "archive"


def cmd_dwca_ingest(args: argparse.Namespace) -> int:
    from gbifdl_assets.gbif.dwca import DwcaError
    from gbifdl_assets.occurrences.snapshots import write_snapshot_from_dwca
    from gbifdl_assets.storage import LocalStorage, StorageError

    archive = Path(args.archive)
    if not archive.is_file():
        return _fail(f"archive {archive} does not exist; give the path of a GBIF download zip")
    training_set = args.training_set or default_training_set(archive)
    started = time.monotonic()
    try:
        storage = LocalStorage(args.out_dir)
        info = write_snapshot_from_dwca(
            archive,
            storage,
            training_set,
            media_memory_budget=int(args.memory_budget_mb * (1 << 20)),
        )
    except (DwcaError, StorageError, ValueError, OSError) as exc:
        return _fail(str(exc), archive=str(archive))
    counts = info.counts
    path = storage.local_path(info.prefix)
    print(
        f"{archive.name}: {counts['occurrences']} occurrences, {counts['media']} images "
        f"({counts['occurrences_without_media']} occurrences without media) -> {path}",
        file=sys.stderr,
    )
    _emit(
        {
            "ok": True,
            "command": "dwca ingest",
            "archive": str(archive),
            "training_set": training_set,
            "snapshot_id": info.snapshot_id,
            "path": str(path),
            "occurrences": counts["occurrences"],
            "occurrences_without_media": counts["occurrences_without_media"],
            "media": counts["media"],
            "species": counts["species"],
            "skipped": counts["skipped"],
            "bytes": info.bytes,
            "seconds": round(time.monotonic() - started, 3),
        }
    )
    return 0


def add_dwca_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dwca ingest`` to the ``gbifdl`` sub-command parsers; returns the ``dwca`` parser."""
    dwca = subparsers.add_parser("dwca", help="GBIF Darwin Core Archive downloads")
    sub = dwca.add_subparsers(dest="sub", required=True)
    ingest = sub.add_parser(
        "ingest",
        help="read a GBIF DWCA download zip into an occurrence snapshot (media.parquet + snapshot.json)",
    )
    ingest.add_argument("archive", type=Path, help="the download zip (format DWCA)")
    ingest.add_argument("out_dir", type=Path, help="storage folder; the snapshot goes under snapshots/")
    ingest.add_argument(
        "--training-set",
        default=None,
        help="snapshot folder name (default: the archive's download key, else its file name)",
    )
    ingest.add_argument(
        "--memory-budget-mb",
        type=float,
        default=512,
        help="multimedia.txt larger than this is joined in partitions on disk (default 512)",
    )
    ingest.set_defaults(func=cmd_dwca_ingest)
    return dwca
