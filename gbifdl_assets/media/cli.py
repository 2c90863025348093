"""``gbifdl images fetch|retry-failed MANIFEST.parquet --store PATH_OR_S3_URI`` and
``gbifdl images verify --store PATH_OR_S3_URI [--ledger NAME] [--deep]``.

Both commands read the manifest's ``url`` (and ``content_key``, computed when absent) column by
column batch, download into the store, keep the ledger ``--ledger`` (default: the manifest's file
name without extension) next to the images, log progress on stderr every few seconds, and end with
one JSON line on stdout: ``ok``, ``failed``, ``skipped``, ``images_per_s``, ``failed_by_reason``…

``verify`` checks the ledgers against the store's objects (see :func:`.ledger.verify_store`): it
prints every stored entry whose object is missing, with ``--deep`` every object whose sha256 differs
from its entry, and every object no ledger describes (orphans: legitimate after an interrupted run,
so they fail the check only with ``--strict``), one per line on stderr, then the JSON line. Exit
status 0: consistent; 1: not (a re-run of ``gbifdl images fetch`` for the affected manifests fetches
missing objects again; damaged ones must be deleted first); 2: the store or ledger does not exist or
cannot be read.

S3 stores: ``s3://bucket/prefix``; the endpoint comes from ``GBIFDL_S3_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL``), credentials from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or the
usual AWS configuration.

Register in the main parser with ``add_images_parser(subparsers)``; standalone:
``python -m gbifdl_assets.media.cli fetch …``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gbifdl_assets.summary_line import emit as _emit
from gbifdl_assets.summary_line import fail as _fail

__all__ = ["add_images_parser", "cmd_images_fetch", "cmd_images_retry_failed", "cmd_images_verify", "main"]

#: problems of each kind named in the JSON line (all of them go to stderr)
_EXAMPLES = 20


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive number")
    return value


def _max_side(text: str) -> int | None:
    if text.lower() in ("none", "null", "0", "original"):
        return None
    return _positive_int(text)


def add_images_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``images fetch``, ``images retry-failed`` and ``images verify`` to a ``gbifdl`` subparsers object."""
    images = subparsers.add_parser("images", help="download a manifest's images into an image store")
    sub = images.add_subparsers(dest="sub", required=True)
    fetch = sub.add_parser(
        "fetch",
        help="fetch the manifest's images that the ledger does not have yet (and retry failures)",
    )
    _common(fetch)
    fetch.add_argument(
        "--no-retry-failed",
        dest="retry_failed",
        action="store_false",
        help="leave images the ledger records as failed alone (default: retry them)",
    )
    fetch.set_defaults(func=cmd_images_fetch)
    retry = sub.add_parser("retry-failed", help="retry only the images the ledger records as failed")
    _common(retry)
    retry.set_defaults(func=cmd_images_retry_failed, retry_failed=True)
    verify = sub.add_parser(
        "verify",
        help="check that every image the ledgers record as stored is in the store (exit 1 if not)",
    )
    verify.add_argument("--store", required=True, help="image store: a folder or s3://bucket/prefix")
    verify.add_argument("--ledger", help="check only this ledger (default: every ledger of the store)")
    verify.add_argument(
        "--deep", action="store_true", help="also read every object and compare its sha256 with the ledger"
    )
    verify.add_argument(
        "--strict", action="store_true", help="also fail on objects no ledger describes (orphans)"
    )
    verify.add_argument("--threads", type=_positive_int, default=16, help="parallel reads for --deep (16)")
    verify.add_argument(
        "--progress-seconds", type=float, default=5.0, help="seconds between progress lines (%(default)s)"
    )
    verify.set_defaults(func=cmd_images_verify)
    dups = sub.add_parser(
        "duplicates",
        help="clusters of copies of one photo (same bytes or close perceptual hashes) across the store's ledgers",
    )
    dups.add_argument("--store", required=True, help="image store: a folder or s3://bucket/prefix")
    dups.add_argument("--ledger", action="append", help="only these ledgers (repeatable; default: all)")
    dups.add_argument(
        "--max-distance", type=int, default=31, help="Hamming distance (of 256 bits) of near copies (31)"
    )
    dups.add_argument(
        "--hash-missing",
        action="store_true",
        help="read and hash stored images whose ledger entry has no perceptual hash (older ledgers)",
    )
    dups.add_argument(
        "--out", type=Path, help="write every stored entry with its cluster to this Parquet file"
    )
    dups.set_defaults(func=cmd_images_duplicates)
    return images


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", type=Path, help="manifest Parquet with a url (and content_key) column")
    p.add_argument("--store", required=True, help="image store: a folder or s3://bucket/prefix")
    p.add_argument("--ledger", help="ledger name (default: the manifest file name without extension)")
    p.add_argument("--allow-loopback", action="store_true", help="allow media URLs on 127.0.0.0/8 and ::1")
    p.add_argument("--allow-private", action="store_true", help="allow media URLs on private networks")
    p.add_argument("--concurrency", type=_positive_int, default=64, help="requests in flight (default 64)")
    p.add_argument("--per-host", type=_positive_int, default=16, help="most requests in flight per host (16)")
    polite = p.add_argument_group(
        "politeness",
        "each host's rate and window adapt to its answers (429/503/timeouts slow it to what it bears); "
        "these are ceilings and starting points",
    )
    polite.add_argument(
        "--max-rate-per-host",
        type=_positive_float,
        help="requests/s no host is sent more than (default: adaptive only)",
    )
    polite.add_argument(
        "--host-limit",
        action="append",
        default=[],
        metavar="HOST=RATE",
        help="requests/s ceiling for one host or .domain (repeatable), e.g. static.inaturalist.org=20",
    )
    polite.add_argument(
        "--start-concurrency", type=_positive_int, default=2, help="requests in flight to a new host (2)"
    )
    polite.add_argument(
        "--skip-host-after",
        type=int,
        default=20,
        help="consecutive failures after which a host is skipped for the run (20; 0: never)",
    )
    polite.add_argument(
        "--host-rates-key",
        default="hosts/rates.json",
        help="storage key in the store where learned host rates are kept and read (hosts/rates.json)",
    )
    polite.add_argument(
        "--no-host-rates", action="store_true", help="neither read nor keep learned host rates"
    )
    optout = p.add_argument_group(
        "opt-out", "hosts that opt out of our use are honoured before any image body is downloaded"
    )
    optout.add_argument(
        "--no-robots-txt",
        dest="robots_txt",
        action="store_false",
        help="do not read robots.txt (default: fetched once per host; disallowed paths never requested)",
    )
    optout.add_argument(
        "--no-opt-out-headers",
        dest="opt_out_headers",
        action="store_false",
        help="ignore X-Robots-Tag noai/noimageai/noindex/noimageindex and tdm-reservation: 1 (default: honoured)",
    )
    optout.add_argument(
        "--recheck-opted-out",
        action="store_true",
        help="ask again for images the ledger records as opted out",
    )
    cache = p.add_argument_group("dead links", "404/410, DNS failures and refused connections")
    cache.add_argument(
        "--no-image-cache",
        dest="image_cache",
        action="store_false",
        help="do not fetch dead links from GBIF's image cache (default: fetched when the row has its gbifID)",
    )
    cache.add_argument(
        "--gbif-api-url",
        default=os.environ.get("GBIF_API_URL") or "https://api.gbif.org/v1",
        help="the GBIF API whose image cache is asked (default $GBIF_API_URL or https://api.gbif.org/v1)",
    )
    polite.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="NAME=ADDRESS",
        help="resolve a host name to this address, like curl --resolve (NAME= : does not resolve)",
    )
    p.add_argument("--max-side", type=_max_side, default=512, help="resize to this longer side; none keeps")
    p.add_argument("--min-side", type=_positive_int, default=64, help="reject smaller images (64)")
    p.add_argument(
        "--format",
        default="jpeg",
        choices=["jpeg", "png", "webp", "original"],
        help="stored image format; original keeps the bytes as fetched (default: %(default)s)",
    )
    p.add_argument(
        "--quality", type=_positive_int, default=90, help="JPEG/WebP quality, 1-100 (default: %(default)s)"
    )
    p.add_argument("--max-bytes", type=_positive_int, default=20_000_000, help="largest download (20 MB)")
    p.add_argument("--timeout", type=float, default=120.0, help="network seconds per image, retries included")
    p.add_argument("--attempts", type=_positive_int, default=4, help="tries per image for transient errors")
    p.add_argument("--user-agent", help="User-Agent with a contact address (recommended)")
    p.add_argument(
        "--processes", type=_positive_int, help="downloader processes (default: one per core, max 4)"
    )
    p.add_argument(
        "--progress-seconds", type=float, default=5.0, help="seconds between progress lines (%(default)s)"
    )


def _run(args: argparse.Namespace, *, only_failed: bool) -> int:
    import pyarrow.parquet as pq

    from gbifdl_assets.media.download import DownloadConfig, download_images
    from gbifdl_assets.media.fetch import DEFAULT_USER_AGENT, FetchConfig
    from gbifdl_assets.media.validate import ValidationOptions
    from gbifdl_assets.storage import StorageError, open_storage

    command = "images retry-failed" if only_failed else "images fetch"
    path: Path = args.manifest
    if not path.is_file():
        return _fail(
            f"manifest {path} not found: give the Parquet file written by 'gbifdl manifest build'",
            command=command,
        )
    try:
        manifest = pq.ParquetFile(path)
    except Exception as exc:
        return _fail(f"manifest {path} is not a readable Parquet file ({exc}); rebuild it", command=command)
    names = manifest.schema_arrow.names
    if "url" not in names:
        return _fail(
            f"manifest {path} has no 'url' column (columns: {', '.join(names)}); pass a manifest Parquet",
            command=command,
        )
    columns = [c for c in ("content_key", "url", "gbifID") if c in names]  # gbifID: the image cache
    ledger = args.ledger or path.stem
    try:
        options = ValidationOptions(
            max_side=None if args.format == "original" else args.max_side,
            min_side=args.min_side,
            format=args.format,
            quality=args.quality,
        )
        fetch = FetchConfig(
            concurrency=args.concurrency,
            per_host=min(args.per_host, args.concurrency),
            deadline=args.timeout,
            max_attempts=args.attempts,
            max_bytes=args.max_bytes,
            allow_loopback=args.allow_loopback,
            allow_private=args.allow_private,
            user_agent=args.user_agent or DEFAULT_USER_AGENT,
            max_rate=args.max_rate_per_host,
            host_limits=args.host_limit,
            start_concurrency=args.start_concurrency,
            skip_host_after=args.skip_host_after,
            resolve=args.resolve,
            robots_txt=args.robots_txt,
            opt_out_headers=args.opt_out_headers,
        )
        config = DownloadConfig(
            fetch=fetch,
            retry_failed=args.retry_failed,
            only_failed=only_failed,
            progress_interval=args.progress_seconds,
            processes=args.processes,
            host_rates_key=None if args.no_host_rates else args.host_rates_key,
            recheck_opted_out=args.recheck_opted_out,
            image_cache=args.image_cache,
            gbif_api_url=args.gbif_api_url,
        )
        storage = open_storage(args.store, endpoint_url=os.environ.get("GBIFDL_S3_ENDPOINT_URL") or None)
    except (ValueError, StorageError) as exc:
        return _fail(str(exc), command=command)

    def batches():
        yield from manifest.iter_batches(batch_size=8192, columns=columns)

    class _Rows:  # an iterable with a length, so progress lines show "of N"
        def __iter__(self):
            return batches()

        def __len__(self) -> int:
            return manifest.metadata.num_rows

    def progress(p: Any) -> None:
        print(p.message(), file=sys.stderr, flush=True)

    try:
        summary = download_images(
            _Rows(), storage, ledger=ledger, options=options, config=config, progress=progress
        )
    except (StorageError, ValueError) as exc:
        return _fail(str(exc), command=command, ledger=ledger)
    result = {"command": command, **summary.to_dict()}
    result["ok"] = summary.ok  # the count, as the summary contract names it
    _emit(result)
    return 0


def cmd_images_fetch(args: argparse.Namespace) -> int:
    return _run(args, only_failed=False)


def cmd_images_retry_failed(args: argparse.Namespace) -> int:
    return _run(args, only_failed=True)


def cmd_images_duplicates(args: argparse.Namespace) -> int:
    from gbifdl_assets.media.duplicates import DuplicateError
    from gbifdl_assets.media.ledger import list_ledgers
    from gbifdl_assets.media.store_duplicates import store_duplicates
    from gbifdl_assets.storage import StorageError, open_storage

    command = "images duplicates"
    try:
        storage = open_storage(args.store, endpoint_url=os.environ.get("GBIFDL_S3_ENDPOINT_URL") or None)
        known = list_ledgers(storage)
        unknown = [n for n in args.ledger or [] if n not in known]
        if unknown or not known:
            return _fail(
                f"{storage.uri} has no ledger {unknown[0]!r} (it has {', '.join(known) or 'none'}): "
                "give one of those names, or the store that 'gbifdl images fetch --store' wrote to"
                if unknown
                else f"{storage.uri} has no ledgers: give the store that 'gbifdl images fetch --store' wrote to",
                command=command,
            )
        found = store_duplicates(
            storage, ledgers=args.ledger, max_distance=args.max_distance, hash_missing=args.hash_missing
        )
        if args.out is not None:
            import pyarrow.parquet as pq

            pq.write_table(found.table, args.out)
    except (StorageError, DuplicateError, OSError) as exc:
        return _fail(str(exc), command=command, store=args.store)
    _emit({"ok": True, "command": command, **found.to_dict()})
    return 0


def cmd_images_verify(args: argparse.Namespace) -> int:
    from gbifdl_assets.media.ledger import list_ledgers, verify_store
    from gbifdl_assets.media.store import IMAGES_PREFIX, ImageStore
    from gbifdl_assets.storage import LocalStorage, S3Storage, StorageError, open_storage

    command = "images verify"
    try:
        storage = open_storage(args.store, endpoint_url=os.environ.get("GBIFDL_S3_ENDPOINT_URL") or None)
        if isinstance(storage, LocalStorage) and not storage.root.is_dir():
            return _fail(
                f"image store {storage.root} does not exist: give the folder that 'gbifdl images fetch "
                "--store' (or GBIFDL_DATA_URI) wrote to",
                command=command,
            )
        if isinstance(storage, S3Storage):
            storage.check()  # a wrong bucket, endpoint or credentials: one clear message, not "all missing"
        store = ImageStore(storage, retry_seconds=30.0)
        if not list_ledgers(storage) and next(iter(storage.list(f"{IMAGES_PREFIX}/")), None) is None:
            return _fail(
                f"{storage.uri} is not an image store: it has neither ledgers/ nor images/; give the "
                "folder or s3://bucket/prefix that 'gbifdl images fetch --store' (or GBIFDL_DATA_URI) wrote to",
                command=command,
            )

        def progress(message: str) -> None:
            print(message, file=sys.stderr, flush=True)

        report = verify_store(
            store,
            ledger=args.ledger,
            deep=args.deep,
            threads=args.threads,
            progress=progress,
            progress_interval=args.progress_seconds,
        )
    except (StorageError, ValueError) as exc:  # UnknownLedgerError is a ValueError
        return _fail(str(exc), command=command, store=args.store)
    for item in report.unreadable:
        print(f"unreadable ledger {item['ledger']}: {item['error']}", file=sys.stderr)
    for item in report.missing:
        print(f"missing   {item['ledger']}  {item['key']}", file=sys.stderr)
    for item in report.mismatched:
        print(
            f"mismatch  {item['ledger']}  {item['key']}  ledger sha256 {item['expected_sha256']} "
            f"({item['expected_bytes']} bytes), object {item['actual_sha256']} ({item['actual_bytes']} bytes)",
            file=sys.stderr,
        )
    for key in report.orphans:
        print(f"orphan    {key}", file=sys.stderr)
    if report.orphans and not args.strict:
        print(
            f"{len(report.orphans)} objects no ledger describes: expected after an interrupted run (the "
            "next run of its manifest records or replaces them); they do not fail the check without --strict",
            file=sys.stderr,
        )
    consistent = report.consistent and not (args.strict and report.orphans)
    if report.missing:
        print(
            "re-run 'gbifdl images fetch' (or materialize image_store) for the affected manifests: it fetches "
            "the missing objects again",
            file=sys.stderr,
        )
    if report.mismatched:
        print(
            "delete the damaged objects listed above, then re-run 'gbifdl images fetch' (or materialize "
            "image_store): runs check that objects exist, not their bytes",
            file=sys.stderr,
        )
    _emit(
        {
            "command": command,
            "ok": consistent,
            "consistent": consistent,
            "store": report.store,
            "ledgers": len(report.ledgers),
            "deep": report.deep,
            "entries": report.entries,
            "objects": report.objects,
            "missing": len(report.missing),
            "mismatched": len(report.mismatched) if report.deep else None,
            "orphans": len(report.orphans),
            "unreadable_ledgers": [u["ledger"] for u in report.unreadable],
            "missing_keys": [m["key"] for m in report.missing[:_EXAMPLES]],
            "mismatched_keys": [m["key"] for m in report.mismatched[:_EXAMPLES]],
            "orphan_keys": report.orphans[:_EXAMPLES],
            "seconds": report.seconds,
        }
    )
    return 0 if consistent else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m gbifdl_assets.media.cli fetch …``)."""
    import logging

    parser = argparse.ArgumentParser(prog="gbifdl")
    sub = parser.add_subparsers(dest="command", required=True)
    add_images_parser(sub)
    args = parser.parse_args(["images", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _emit({"ok": False, "error": "interrupted"})
        return 130


if __name__ == "__main__":
    sys.exit(main())
