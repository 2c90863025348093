"""``gbifdl dwca ingest ARCHIVE.zip OUT_DIR``: a GBIF download archive -> a snapshot on disk.

Register in ``gbifdl_assets/cli.py``::

    from gbifdl_assets.occurrences.ingest_cli import add_dwca_parser
    add_dwca_parser(sub)   # sub = parser.add_subparsers(dest="command", required=True)

Writes ``OUT_DIR/snapshots/<training set>/<snapshot id>/{media.parquet,snapshot.json}`` (the same
files the ``occurrence_snapshot`` asset writes) and ends with one JSON line on stdout:
``occurrences``, ``media``, ``skipped`` by reason, ``snapshot_id``, ``path`` and ``registry``.

A real GBIF DWCA has no ``publishingOrgKey`` column, nor the datasets' titles: like the asset, the
ingest asks GBIF's registry for them (``--api-url``, default ``$GBIF_API_URL``, else GBIF's API; one
request per distinct dataset and publisher, cached in ``OUT_DIR/registry/``). Without network (or with
``--offline``) it still ingests; the summary's ``registry.empty`` names each column left empty and why.
"""

from __future__ import annotations

import argparse
import functools
import os
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


def _api_url(args: argparse.Namespace) -> str:
    from gbifdl_assets.gbif.client import DEFAULT_BASE_URL

    return args.api_url or os.environ.get("GBIF_API_URL") or DEFAULT_BASE_URL


def _registry_summary(
    registry: dict[str, Any], counts: dict[str, Any], api_url: str | None
) -> dict[str, Any]:
    """The summary's ``registry``: outcomes by reason and, per column left empty, how many rows and why."""
    empty = dict(registry.get("gaps", {}))
    missing = {
        o: n
        for part in ("datasets", "organizations")
        for o, n in counts.get("registry", {}).get(part, {}).items()
        if o != "ok"
    }
    out: dict[str, Any] = {
        "api_url": api_url,
        "datasets": counts.get("registry", {}).get("datasets", {}),
        "organizations": counts.get("registry", {}).get("organizations", {}),
        "from_cache": registry.get("from_cache", 0),
        "rows_without_publisher": counts.get("registry", {}).get("rows_without_publisher", 0),
        "empty": empty,
    }
    if empty and api_url is None:
        out["fix"] = (
            "ingested with --offline: run again without it to fill these columns from GBIF's registry"
        )
    elif empty and set(missing) & {"unreachable", "unavailable", "rate_limited"}:
        out["fix"] = (
            f"GBIF's registry at {api_url} did not answer: run again with network (or --api-url pointing "
            "at a reachable GBIF API); answers are cached, so only the missing keys are asked"
        )
    return out


def cmd_dwca_ingest(args: argparse.Namespace) -> int:
    from gbifdl_assets.gbif.dwca import DwcaError
    from gbifdl_assets.gbif.registry import RegistryClient
    from gbifdl_assets.occurrences.snapshots import write_snapshot_from_dwca
    from gbifdl_assets.storage import LocalStorage, StorageError

    archive = Path(args.archive)
    if not archive.is_file():
        return _fail(f"archive {archive} does not exist; give the path of a GBIF download zip")
    training_set = args.training_set or default_training_set(archive)
    api_url = None if args.offline else _api_url(args)
    started = time.monotonic()
    registry = RegistryClient(api_url) if api_url else None
    try:
        storage = LocalStorage(args.out_dir)
        info = write_snapshot_from_dwca(
            archive,
            storage,
            training_set,
            media_memory_budget=int(args.memory_budget_mb * (1 << 20)),
            registry=registry,
        )
    except (DwcaError, StorageError, ValueError, OSError) as exc:
        return _fail(str(exc), archive=str(archive))
    finally:
        if registry is not None:
            registry.close()
    counts = info.counts
    path = storage.local_path(info.prefix)
    registry_summary = _registry_summary(info.registry, counts, api_url)
    print(
        f"{archive.name}: {counts['occurrences']} occurrences, {counts['media']} images "
        f"({counts['occurrences_without_media']} occurrences without media) -> {path}",
        file=sys.stderr,
    )
    for column, why in registry_summary["empty"].items():
        print(f"  registry column {column} left empty: {why}", file=sys.stderr)
    if "fix" in registry_summary:
        print(f"  {registry_summary['fix']}", file=sys.stderr)
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
            "registry": registry_summary,
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
    ingest.add_argument(
        "--api-url",
        default=None,
        help="GBIF API for the registry data a DWCA lacks (publisher, dataset title, DOI, licence; "
        "default: $GBIF_API_URL, else https://api.gbif.org/v1; the sandbox's /v1 works too)",
    )
    ingest.add_argument(
        "--offline",
        action="store_true",
        help="do not ask GBIF's registry: only entries cached in OUT_DIR/registry/ fill those columns",
    )
    ingest.set_defaults(func=cmd_dwca_ingest)
    return dwca
