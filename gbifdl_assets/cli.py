"""The ``gbifdl`` command. Every command ends with a one-line JSON summary on stdout."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.summary_line import emit, fail

_emit, _fail = emit, fail


# --- sandbox -------------------------------------------------------------------------------------
def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from gbifdl_assets.sandbox import SandboxConfig, parse_media_hosts, serve

    try:
        media_hosts = parse_media_hosts(args.media_hosts) if args.media_hosts else ()
    except (ValueError, OSError) as exc:
        return _fail(
            f"--media-hosts: {exc} ('default', a JSON list of host objects, or @path/to/hosts.json)",
            command="sandbox serve",
        )
    config = SandboxConfig(
        occurrences=args.occurrences,
        seed=args.seed,
        max_offset=args.max_offset,
        download_seconds=(args.download_seconds, args.download_seconds),
        media_hosts=media_hosts,
        archive_cache_dir=args.archive_cache or None,
    )
    print(
        f"GBIF sandbox on http://{args.host}:{args.port}/v1 ({args.occurrences} occurrences, seed {args.seed});"
        " Ctrl-C stops it",
        file=sys.stderr,
    )
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; turn that into a normal return
    # so the summary line is still printed.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.port, config)
    _emit(
        {
            "ok": True,
            "command": "sandbox serve",
            "url": f"http://{args.host}:{args.port}",
            "served_seconds": round(time.monotonic() - started, 1),
        }
    )
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --- specs and species ---------------------------------------------------------------------------
def cmd_spec_validate(args: argparse.Namespace) -> int:
    from gbifdl_assets.specs import SpecError, load_spec

    problems: dict[str, str] = {}
    names: list[str] = []
    for path in args.paths:
        try:
            names.append(load_spec(path).name)
        except SpecError as exc:
            problems[str(path)] = str(exc)
            print(str(exc), file=sys.stderr)
        except FileNotFoundError:
            problems[str(path)] = "file not found"
            print(f"{path}: file not found", file=sys.stderr)
    _emit({"ok": not problems, "valid": names, "invalid": sorted(problems)})
    return 0 if not problems else 1


def cmd_species_resolve(args: argparse.Namespace) -> int:
    from gbifdl_assets.gbif.client import GbifClient
    from gbifdl_assets.gbif.endpoint import gbif_endpoint
    from gbifdl_assets.gbif.species import resolve_taxa
    from gbifdl_assets.specs import load_spec

    try:
        spec = load_spec(args.spec)
        with gbif_endpoint(api_url=args.api_url, offline=True if args.offline else None) as gbif:
            resolution = resolve_taxa(GbifClient(gbif.api_url), spec.taxa)
    except GbifdlError as exc:
        return _fail(str(exc), command="species resolve")
    if args.out:
        import pyarrow.parquet as pq

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        pq.write_table(resolution.to_table(), tmp)
        tmp.replace(out)
    for row in resolution.rows:
        print(
            f"{row.match_type:8} {row.input:35} -> {row.scientific_name or '-'} ({row.taxon_key}) {row.note}",
            file=sys.stderr,
        )
    _emit({"ok": not resolution.unmatched, **resolution.counts(), "out": args.out})
    return 0 if not resolution.unmatched else 1


# --- demo ----------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from gbifdl_assets.demo import run_demo

    try:
        summary = run_demo(
            spec_path=args.spec, data_dir=args.data_dir, offline=args.offline, verbosity=args.verbose
        )
    except (GbifdlError, OSError) as exc:  # a bad spec, no GBIF and no sandbox, an unwritable folder
        return _fail(str(exc), command="demo")
    _emit({"command": "demo", **summary})
    return 0 if summary.get("ok") else 1


# --- the GBIF endpoint ---------------------------------------------------------------------------
def cmd_endpoint(args: argparse.Namespace) -> int:
    """The offline rule for a process that outlives this command (``make dev``): GBIF, or a sandbox
    started in the background (reused when one runs), handed over as shell variables in a file."""
    import shlex

    from gbifdl_assets.gbif.endpoint import gbif_endpoint

    try:
        with gbif_endpoint(
            offline=True if args.offline else None, background=True, log_file=args.sandbox_log
        ) as gbif:
            env = gbif.environment()
    except GbifdlError as exc:
        return _fail(str(exc), command="endpoint")
    if args.env_file:
        lines = [f"{name}={shlex.quote(value)}\n" for name, value in env.items()]
        Path(args.env_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.env_file).write_text("".join(lines))
    _emit(
        {
            "ok": True,
            "command": "endpoint",
            "api_url": gbif.api_url,
            "gbif": gbif.source,
            "sandbox_pid": gbif.pid,
            "env_file": args.env_file,
        }
    )
    return 0


def _version() -> str:
    """The installed distribution's version (the package's own when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    from gbifdl_assets import __version__

    try:
        return version("gbifdl_assets")
    except PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gbifdl", description="GBIF image training sets as Dagster assets")
    parser.add_argument("--version", action="version", version=f"gbifdl {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output: -v INFO, -vv DEBUG"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="the offline GBIF stand-in").add_subparsers(
        dest="sub", required=True
    )
    serve = sandbox.add_parser("serve", help="serve the GBIF API, downloads and media on loopback")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--occurrences", type=int, default=100_000, help="generated occurrences (default: %(default)s)"
    )
    serve.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seed of the generated data; same seed, same data (default: %(default)s)",
    )
    serve.add_argument("--max-offset", type=int, default=100_000, help="GBIF's paging depth cap")
    serve.add_argument("--download-seconds", type=float, default=5.0, help="time in PREPARING and in RUNNING")
    serve.add_argument(
        "--media-hosts",
        default=os.environ.get("GBIFDL_SANDBOX_MEDIA_HOSTS", ""),
        help="spread the media over simulated hosts with their own manners (rate limits, robots.txt, "
        "opt-out headers, dead links): 'default', a JSON list of host objects or @hosts.json "
        "(default: $GBIFDL_SANDBOX_MEDIA_HOSTS, else one host)",
    )
    serve.add_argument(
        "--archive-cache",
        default=os.environ.get("GBIFDL_SANDBOX_ARCHIVE_CACHE", ""),
        help="keep the data entries of DWCA downloads in this folder between runs, named by what they "
        "hold (same records, same media URLs: not rendered again) (default: $GBIFDL_SANDBOX_ARCHIVE_CACHE, "
        "else none)",
    )
    serve.set_defaults(func=cmd_sandbox_serve)

    endpoint = sub.add_parser(
        "endpoint",
        help="choose the GBIF API by the offline rule (GBIF, else a background sandbox) for make dev",
        description="GBIF when it answers (GBIF_API_URL); otherwise, or with GBIFDL_OFFLINE=1, the offline "
        "sandbox on 127.0.0.1:$GBIFDL_SANDBOX_PORT (8765): reused when it runs, else started in the "
        "background. The choice is written as shell variables for the processes that follow.",
    )
    endpoint.add_argument("--offline", action="store_true", help="use the sandbox without trying GBIF")
    endpoint.add_argument(
        "--env-file", help="write GBIF_API_URL (and the sandbox's account) here as NAME=value lines"
    )
    endpoint.add_argument("--sandbox-log", help="append a started sandbox's output to this file")
    endpoint.set_defaults(func=cmd_endpoint)

    spec = sub.add_parser("spec", help="training-set specs").add_subparsers(dest="sub", required=True)
    validate = spec.add_parser("validate", help="validate spec YAML files")
    validate.add_argument("paths", nargs="+", type=Path, help="spec files (.yaml) to check")
    validate.set_defaults(func=cmd_spec_validate)

    species = sub.add_parser("species", help="species lists").add_subparsers(dest="sub", required=True)
    resolve = species.add_parser(
        "resolve", help="resolve a spec's taxa against GBIF (or the offline sandbox)"
    )
    resolve.add_argument("spec", type=Path, help="the spec YAML whose taxa to resolve")
    resolve.add_argument(
        "--api-url", default=None, help="GBIF API root (default: $GBIF_API_URL, else https://api.gbif.org/v1)"
    )
    resolve.add_argument("--offline", action="store_true", help="use the offline sandbox without trying GBIF")
    resolve.add_argument("--out", help="write the species list as Parquet")
    resolve.set_defaults(func=cmd_species_resolve)

    # Stage commands live next to their core modules.
    from gbifdl_assets.annotations.cli import add_rules_parser
    from gbifdl_assets.annotations.service.cli import add_annotations_parser
    from gbifdl_assets.export.cli import add_export_parser
    from gbifdl_assets.media.cli import add_images_parser
    from gbifdl_assets.occurrences.ingest_cli import add_dwca_parser
    from gbifdl_assets.sampling.cli import add_manifest_parser

    add_dwca_parser(sub)
    add_rules_parser(sub)
    add_annotations_parser(sub)
    add_manifest_parser(sub)
    add_images_parser(sub)
    add_export_parser(sub)

    demo = sub.add_parser("demo", help="materialize the example training set end to end")
    demo.add_argument("--spec", type=Path, default=None, help="a spec YAML (default: the bundled example)")
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="where tables and images go (default: %(default)s)",
    )
    demo.add_argument("--offline", action="store_true", help="use the sandbox without trying GBIF")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _emit({"ok": False, "error": "interrupted"})
        return 130


if __name__ == "__main__":
    sys.exit(main())
