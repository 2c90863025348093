"""``gbifdl rules …``: write, list, vote on, import, export, push and apply annotation rules.

Register with ``add_rules_parser(subparsers)`` in the main CLI. Every command prints one JSON summary
line last on stdout (``{"ok": …, "command": "rules …", …}``) and returns 0, or 2 for an error the user
can fix (the message, also on stderr, names the input and the fix).

The store is ``--store URL``, else ``GBIFDL_ANNOTATIONS_DB``, else ``sqlite:///data/annotations.sqlite``;
the acting user is ``--user``, else ``GBIFDL_USER``, else the login name; names are resolved against
``--api-url`` (else ``GBIF_API_URL``, else GBIF's public API).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gbifdl_assets.summary_line import emit, fail

DEFAULT_API_URL = "https://api.gbif.org/v1"
_RULE_FILE_SUFFIXES = (".yaml", ".yml", ".geojson", ".json")


_emit = emit


def _fail(command: str, message: str) -> int:
    return fail(message, command=command)


def acting_user(args: argparse.Namespace) -> str:
    """Who a command acts as: ``--user``, else ``GBIFDL_USER``, else the login name (else "local")."""
    if getattr(args, "user", None):
        return args.user
    if os.environ.get("GBIFDL_USER"):
        return os.environ["GBIFDL_USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def _api_url(args: argparse.Namespace) -> str:
    from gbifdl_assets.gbif.endpoint import api_url_from_env  # GBIF_API_URL: the one name of the API

    return getattr(args, "api_url", None) or api_url_from_env()


def _store(args: argparse.Namespace) -> Any:
    from gbifdl_assets.annotations.store import AnnotationStore, default_store_url

    return AnnotationStore(getattr(args, "store", None) or default_store_url())


def _client(args: argparse.Namespace) -> Any:
    from gbifdl_assets.gbif.client import GbifClient

    return GbifClient(_api_url(args), max_retries=2)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause and fix: reported as one line, never as a traceback."""
    from gbifdl_assets.annotations.compiled import RulesTableError
    from gbifdl_assets.annotations.model import RuleError
    from gbifdl_assets.annotations.permissions import PermissionDenied
    from gbifdl_assets.annotations.store import StoreError
    from gbifdl_assets.gbif.errors import GbifError

    return (RuleError, RulesTableError, PermissionDenied, StoreError, GbifError, OSError)


def _guarded(command: str, fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except _user_errors() as exc:
            return _fail(command, str(exc))

    run.__name__ = fn.__name__
    return run


# ---------------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------------
def cmd_rules_add(args: argparse.Namespace) -> int:
    from gbifdl_assets.annotations.rule_text import parse_rule_text

    user = acting_user(args)
    store = _store(args)
    try:
        client = None if args.offline_names else _client(args)
        parsed = parse_rule_text(args.text, client=client)
        project_id = store.ensure_project(args.project, user=user).id if args.project else None
        # without --ruleset: a one-off rule (GBIF's guide and UI make those), in the project if one is given
        ruleset = (
            store.ensure_ruleset(args.ruleset, user=user, project_id=project_id) if args.ruleset else None
        )
        data = parsed.rule.model_dump()
        data["rulesetId"] = ruleset.id if ruleset else None
        data["projectId"] = project_id if ruleset is None else None
        rule = store.create_rule(data, user=user, description=parsed.text)
    finally:
        store.close()
    for note in parsed.notes:
        print(f"note: {note}", file=sys.stderr)
    _emit(
        {
            "ok": True,
            "command": "rules add",
            "id": rule.id,
            "taxonKey": rule.taxonKey,
            "taxon": parsed.taxon,
            "area": parsed.area,
            "annotation": rule.annotation,
            "yearRange": rule.yearRange,
            "basisOfRecord": rule.basisOfRecord,
            "ruleset": ruleset.name if ruleset else None,
            "rulesetId": rule.rulesetId,
            "projectId": rule.projectId,
            "createdBy": rule.createdBy,
            "notes": parsed.notes,
        }
    )
    return 0


def cmd_rules_list(args: argparse.Namespace) -> int:
    from gbifdl_assets.annotations.rule_text import resolve_taxon

    store = _store(args)
    try:
        filters: dict[str, Any] = {
            "annotation": args.label,
            "createdBy": args.created_by,
            "source": args.source,
            "datasetKey": args.dataset_key,
        }
        if args.taxon:
            text = args.taxon.strip()
            key, _ = resolve_taxon(text, None if text.isdigit() else _client(args), f"--taxon {text!r}")
            filters["taxonKey"] = key if key is not None else "null"
        if args.ruleset:
            filters["rulesetId"] = store.find_ruleset(args.ruleset).id
        rules = store.list_rules(
            geometry=args.intersects,
            include_deleted=args.include_deleted,
            limit=args.limit,
            offset=args.offset,
            **filters,
        )
        infos = store.rule_infos([r.id for r in rules])
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps([r.to_gbif() for r in rules], ensure_ascii=False))
    else:
        _print_table(rules, infos)
    _emit(
        {"ok": True, "command": "rules list", "rules": len(rules), "offset": args.offset, "limit": args.limit}
    )
    return 0


def _print_table(rules: list[Any], infos: dict[int, Any]) -> None:
    header = ("id", "taxonKey", "annotation", "ruleset", "+", "-", "createdBy", "created", "what")
    rows = []
    for r in rules:
        info = infos.get(r.id)
        what = (info.description if info and info.description else r.geometry) or ""
        extras = [x for x in (r.yearRange, ",".join(r.basisOfRecord or []) or None) if x]
        if r.deleted is not None:
            extras.append("deleted")
        rows.append(
            (
                str(r.id),
                "-" if r.taxonKey is None else str(r.taxonKey),
                r.annotation,
                (info.ruleset if info else None) or "-",
                str(len(r.supportedBy)),
                str(len(r.contestedBy)),
                r.createdBy or "-",
                r.created.strftime("%Y-%m-%d %H:%M") if r.created else "-",
                (what[:60] + ("…" if len(what) > 60 else "")) + (f" [{'; '.join(extras)}]" if extras else ""),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def cmd_rules_vote(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rule = store.vote(args.rule_id, args.vote, user=acting_user(args))
    finally:
        store.close()
    _emit(
        {
            "ok": True,
            "command": "rules vote",
            "id": rule.id,
            "vote": args.vote,
            "supportedBy": rule.supportedBy,
            "contestedBy": rule.contestedBy,
        }
    )
    return 0


def cmd_rules_import(args: argparse.Namespace) -> int:
    from gbifdl_assets.annotations.files import import_rule_file
    from gbifdl_assets.annotations.gbif_api import pull_from_gbif

    if bool(args.file) == bool(args.from_gbif):
        return _fail("rules import", "give a rule FILE or --from-gbif URL (one of them)")
    store = _store(args)
    try:
        if args.from_gbif:
            summary = pull_from_gbif(
                store, args.from_gbif, project_id=args.project_id, sync=not args.no_sync
            ).to_dict()
        else:
            needs_names = _file_needs_names(Path(args.file))
            summary = import_rule_file(
                store,
                args.file,
                user=acting_user(args),
                client=_client(args) if needs_names else None,
                ruleset=args.ruleset,
                sync=not args.no_sync,
            )
        version = store.version()
    finally:
        store.close()
    _emit({"ok": True, "command": "rules import", **summary, "version": version})
    return 0


def _file_needs_names(path: Path) -> bool:
    """Only files that name taxa (``taxon:`` or sentences) need the GBIF name matcher."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    return '"taxon"' in text or "taxon:" in text or "text:" in text or '"text"' in text


def cmd_rules_export(args: argparse.Namespace) -> int:
    from gbifdl_assets.annotations.files import export_store

    store = _store(args)
    try:
        n = export_store(store, args.file, rulesets=args.ruleset or None)
    finally:
        store.close()
    _emit({"ok": True, "command": "rules export", "file": str(args.file), "rules": n})
    return 0


def cmd_rules_push(args: argparse.Namespace) -> int:
    from gbifdl_assets.annotations.gbif_api import GbifAnnotationApi, push_to_gbif

    username = os.environ.get("GBIF_USERNAME")
    password = os.environ.get("GBIF_PASSWORD")
    if not args.dry_run and not (username and password):
        return _fail("rules push", "set GBIF_USERNAME and GBIF_PASSWORD to push rules (your gbif.org login)")
    store = _store(args)
    try:
        with GbifAnnotationApi(args.url, username=username, password=password) as api:
            summary = push_to_gbif(
                store, api, rulesets=args.ruleset or None, created_by=args.created_by, dry_run=args.dry_run
            )
    finally:
        store.close()
    _emit({"ok": True, "command": "rules push", "dry_run": args.dry_run, **summary})
    return 0


def load_rules_table(source: str, *, store_url: str | None = None, client: Any = None) -> Any:
    """A compiled rules table from a rule file (YAML/GeoJSON/Parquet) or ruleset names in the store.

    ``source`` that is not an existing file is a comma-separated list of ruleset names or ids; ``all``
    takes every rule of the store.
    """
    from gbifdl_assets.annotations.compiled import validate_rules_table
    from gbifdl_assets.annotations.files import rules_table_from_file
    from gbifdl_assets.annotations.store import AnnotationStore, default_store_url

    path = Path(source)
    if path.is_file():
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return validate_rules_table(pq.read_table(path))
        if path.suffix.lower() in _RULE_FILE_SUFFIXES:
            return rules_table_from_file(path, client=client)
    if path.suffix.lower() in (*_RULE_FILE_SUFFIXES, ".parquet"):
        raise FileNotFoundError(f"{source}: no such rules file")
    names = [n.strip() for n in source.split(",") if n.strip()]
    with AnnotationStore(store_url or default_store_url()) as store:
        return store.compile(None if names == ["all"] else names)


def cmd_rules_apply(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from gbifdl_assets.annotations.engine import apply_rules

    occ_path = Path(args.occurrences)
    if not occ_path.is_file():
        return _fail("rules apply", f"{occ_path}: no such occurrences file (a Parquet snapshot)")
    needs_names = Path(args.rules).is_file() and _file_needs_names(Path(args.rules))
    rules = load_rules_table(args.rules, store_url=args.store, client=_client(args) if needs_names else None)
    try:
        occurrences = pq.read_table(occ_path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        return _fail("rules apply", f"{occ_path}: cannot be read as Parquet ({exc})")
    try:
        result = apply_rules(
            occurrences, rules, min_support=args.min_support, exclude_contested=args.exclude_contested
        )
    except ValueError as exc:
        return _fail("rules apply", f"{occ_path}: {exc}")
    _write_parquet(result.annotated, Path(args.out))
    if args.matches:
        _write_parquet(result.matches, Path(args.matches))
    annotated = result.annotated
    gids = annotated.column("gbifID")
    matched_mask = pc.greater(pc.list_value_length(annotated.column("annotation_labels")), 0)
    matched = pc.count_distinct(pc.filter(gids, matched_mask)).as_py() if annotated.num_rows else 0
    conflicts_mask = annotated.column("annotation_conflict").fill_null(False)
    conflicts = pc.count_distinct(pc.filter(gids, conflicts_mask)).as_py() if annotated.num_rows else 0
    print(
        f"{matched} of {pc.count_distinct(gids).as_py() if annotated.num_rows else 0} occurrences matched "
        f"{result.rules_applied} rules; wrote {args.out}",
        file=sys.stderr,
    )
    _emit(
        {
            "ok": True,
            "command": "rules apply",
            "occurrences": int(pc.count_distinct(gids).as_py()) if annotated.num_rows else 0,
            "rows": annotated.num_rows,
            "matched": int(matched),
            "conflicts": int(conflicts),
            "labels": {k: v for k, v in result.label_counts().items() if v},
            "rules": rules.num_rows,
            "rules_applied": result.rules_applied,
            "rules_skipped_by_votes": result.rules_skipped_by_votes,
            "matches": result.matches.num_rows,
            "out": str(args.out),
        }
    )
    return 0


def _write_parquet(table: Any, path: Path) -> None:
    """Write to a temporary name next to ``path`` and rename: never a half-written file."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        pq.write_table(table, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, *, user: bool = False, api: bool = False) -> None:
    p.add_argument(
        "--store",
        help="annotation store URL (default: $GBIFDL_ANNOTATIONS_DB or sqlite:///data/annotations.sqlite)",
    )
    if user:
        p.add_argument("--user", help="acting user (default: $GBIFDL_USER or your login name)")
    if api:
        p.add_argument("--api-url", help=f"GBIF API for names (default: $GBIF_API_URL or {DEFAULT_API_URL})")


def add_rules_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``rules`` and its subcommands to the main parser's subparsers."""
    rules = subparsers.add_parser(
        "rules", help="annotation rules: add, list, vote, import, export, push, apply"
    )
    sub = rules.add_subparsers(dest="sub", required=True)

    add = sub.add_parser("add", help='add a rule written as a sentence: "Panthera leo in GL are suspicious"')
    add.add_argument("text", help='"TAXON in AREA are LABEL [from A to B] [(basisOfRecord X)]"')
    add.add_argument(
        "--ruleset",
        help="ruleset name (created when missing); without it the rule stands alone (a one-off rule)",
    )
    add.add_argument("--project", help="project name (created when missing)")
    add.add_argument(
        "--offline-names", action="store_true", help="do not resolve names: the taxon must be a key"
    )
    _common(add, user=True, api=True)
    add.set_defaults(func=_guarded("rules add", cmd_rules_add))

    ls = sub.add_parser("list", help="list rules, newest first")
    ls.add_argument("--taxon", help="taxon name or key (exact key, as GBIF's filter)")
    ls.add_argument("--ruleset", help="ruleset name or id")
    ls.add_argument("--label", help="annotation label")
    ls.add_argument("--created-by", metavar="USER", help="only rules this user created")
    ls.add_argument(
        "--source",
        choices=("local", "file", "gbif"),
        help="only rules from this source: the local store, rule files, or GBIF's annotation API",
    )
    ls.add_argument("--dataset-key", help="datasetKey, or 'null' for rules without one")
    ls.add_argument("--intersects", metavar="WKT", help="rules whose polygon intersects this geometry")
    ls.add_argument("--include-deleted", action="store_true", help="also list deleted rules")
    ls.add_argument("--limit", type=int, default=100, help="rules per page (default: %(default)s)")
    ls.add_argument(
        "--offset", type=int, default=0, help="rules to skip, for the next page (default: %(default)s)"
    )
    ls.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: %(default)s)"
    )
    _common(ls, api=True)
    ls.set_defaults(func=_guarded("rules list", cmd_rules_list))

    vote = sub.add_parser("vote", help="support or contest a rule, or remove your vote")
    vote.add_argument("rule_id", type=int, help="the rule's id (see `gbifdl rules list`)")
    vote.add_argument(
        "vote",
        choices=("support", "contest", "remove"),
        help="support or contest the rule, or remove your vote",
    )
    _common(vote, user=True)
    vote.set_defaults(func=_guarded("rules vote", cmd_rules_vote))

    imp = sub.add_parser("import", help="import a YAML/GeoJSON rule file, or pull GBIF's annotation API")
    imp.add_argument("file", nargs="?", help="rule file (.yaml/.yml/.geojson)")
    imp.add_argument("--from-gbif", metavar="URL", help="GBIF API root or annotation base URL to pull from")
    imp.add_argument(
        "--ruleset", help="default ruleset for a file's rules (else the file's own, or its name)"
    )
    imp.add_argument("--project-id", type=int, help="pull only this GBIF project's rules")
    imp.add_argument("--no-sync", action="store_true", help="keep rules that disappeared from the source")
    _common(imp, user=True, api=True)
    imp.set_defaults(func=_guarded("rules import", cmd_rules_import))

    exp = sub.add_parser("export", help="export rules to .yaml or .geojson")
    exp.add_argument("file", help="output file (.yaml/.yml/.geojson)")
    exp.add_argument("--ruleset", action="append", help="only this ruleset (repeatable)")
    _common(exp)
    exp.set_defaults(func=_guarded("rules export", cmd_rules_export))

    push = sub.add_parser(
        "push", help="POST local rules to a GBIF annotation API ($GBIF_USERNAME/$GBIF_PASSWORD)"
    )
    push.add_argument("url", help="GBIF API root or annotation base URL")
    push.add_argument("--ruleset", action="append", help="only this ruleset (repeatable)")
    push.add_argument("--created-by", help="only rules of this user")
    push.add_argument("--dry-run", action="store_true", help="list what would be pushed")
    _common(push)
    push.set_defaults(func=_guarded("rules push", cmd_rules_push))

    apply = sub.add_parser("apply", help="annotate an occurrences Parquet with rules")
    apply.add_argument(
        "rules", help="rule file (.yaml/.geojson/.parquet), or ruleset names (comma-separated; 'all')"
    )
    apply.add_argument("occurrences", help="occurrences Parquet (snapshot schema)")
    apply.add_argument("out", help="annotated occurrences Parquet to write")
    apply.add_argument("--matches", help="also write the (occurrence, rule) match table here")
    apply.add_argument("--min-support", type=int, default=0, help="ignore rules with fewer supporting votes")
    apply.add_argument("--exclude-contested", action="store_true", help="ignore rules anyone contested")
    _common(apply, api=True)
    apply.set_defaults(func=_guarded("rules apply", cmd_rules_apply))
    return rules


def main(argv: list[str] | None = None) -> int:
    """Run ``rules …`` on its own (tests; the ``gbifdl`` command registers the same parser)."""
    parser = argparse.ArgumentParser(prog="gbifdl")
    add_rules_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
