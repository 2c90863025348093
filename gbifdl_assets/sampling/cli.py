"""``gbifdl manifest build``: a snapshot (or annotated occurrences) to a balanced manifest.

Registered by the top-level CLI (gbifdl_assets/cli.py)::

    from gbifdl_assets.sampling.cli import add_manifest_parser
    add_manifest_parser(sub)   # sub = parser.add_subparsers(...)

Like every gbifdl command it ends with one JSON summary line on stdout; problems go to stderr as
one message naming the input and the fix, with exit code 2, and no output file is written (the
manifest is written to a temporary name and renamed only when complete).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

from gbifdl_assets.summary_line import emit, fail

__all__ = ["add_manifest_parser", "cmd_manifest_build"]


_emit = emit
_fail = functools.partial(fail, command="manifest build")


def add_manifest_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``manifest build`` to the top-level subparsers; returns the ``manifest`` parser."""
    manifest = subparsers.add_parser("manifest", help="balanced, licence-clean manifests")
    sub = manifest.add_subparsers(dest="sub", required=True)
    build = sub.add_parser(
        "build",
        help="filter, balance and split a snapshot into a manifest",
        description=(
            "Apply the spec's filters, licence allowlist and annotation policy, sample exactly "
            "max_per_class images per class (seeded, spread over the balancing.by strata) and "
            "assign train/val/test by a stable hash of the split group."
        ),
    )
    build.add_argument("input", type=Path, help="snapshot or annotated_occurrences Parquet (file or folder)")
    build.add_argument("--spec", type=Path, required=True, help="the training-set spec YAML")
    build.add_argument("--out", type=Path, required=True, help="the manifest Parquet to write")
    build.add_argument(
        "--snapshot-id", default=None, help="recorded in every row (default: the input's name)"
    )
    build.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="the previous manifest of this set: its images are kept wherever the quotas allow",
    )
    build.add_argument("--stats", type=Path, default=None, help="also write the full statistics as JSON")
    build.set_defaults(func=cmd_manifest_build)
    return manifest


def cmd_manifest_build(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gbifdl_assets.sampling.manifest import (
        SamplingError,
        build_manifest_from_parquet,
        class_counts_markdown,
        empty_column_fix,
        write_manifest,
    )
    from gbifdl_assets.specs import SpecError, load_spec

    t0 = time.perf_counter()
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        return _fail(str(exc))
    previous = None
    if args.previous is not None:
        try:
            previous = pq.read_table(args.previous, columns=["url"])
        except (FileNotFoundError, pa.ArrowInvalid, OSError, KeyError) as exc:
            return _fail(f"{args.previous}: cannot read the previous manifest's url column ({exc})")
    snapshot_id = args.snapshot_id or Path(args.input).stem
    try:
        result = build_manifest_from_parquet(args.input, spec, snapshot_id=snapshot_id, previous=previous)
        size = write_manifest(result, args.out)
    except SamplingError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.out}: cannot write the manifest ({exc})")
    stats = result.stats
    if args.stats is not None:
        tmp = args.stats.with_name(f".{args.stats.name}.tmp")
        tmp.write_text(json.dumps(stats, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(args.stats)
    print(class_counts_markdown(result.table, limit=20), file=sys.stderr)
    if stats["shortfall_classes"]:
        print(
            f"note: {stats['shortfall_classes']} classes have fewer than max_per_class="
            f"{spec.balancing.max_per_class} images ({stats['shortfall_images']} images short); "
            "see 'shortfall' in --stats",
            file=sys.stderr,
        )
    if stats["classes_below_min"]:
        print(
            f"note: {len(stats['classes_below_min'])} classes dropped below min_per_class="
            f"{spec.balancing.min_per_class}",
            file=sys.stderr,
        )
    for note in stats["notes"]:
        print(f"note: {note}", file=sys.stderr)
    for column in stats["empty_strata_columns"]:
        rows = stats["strata_columns"][column]["rows"]
        print(
            f"warning: balancing.by column {column!r} is empty in all {rows} candidate rows (one stratum per "
            f"class): {empty_column_fix(column)}",
            file=sys.stderr,
        )
    _emit(
        {
            "ok": True,
            "command": "manifest build",
            "out": str(args.out),
            "bytes": size,
            "snapshot_id": snapshot_id,
            "images": stats["images"],
            "classes": stats["classes"],
            "splits": stats["per_split"],
            "dropped": {k: v for k, v in stats["dropped"].items() if v},
            "classes_below_min": len(stats["classes_below_min"]),
            "shortfall_classes": stats["shortfall_classes"],
            "empty_strata_columns": stats["empty_strata_columns"],
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return 0
