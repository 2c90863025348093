"""``gbifdl annotations flags …``: flag single images, list, delete, support and contest flags.

* ``flags add GBIFID URL FLAG [--sha256 HEX] [--phash HEX] [--taxon-key KEY] [--comment TEXT]``
* ``flags list [--gbif-id N] [--url URL] [--flag TERM] [--created-by NAME] [--include-deleted]``
* ``flags delete ID``, ``flags support ID``, ``flags contest ID`` (``--remove`` withdraws the vote)

The store and the acting user are found as for ``gbifdl rules`` (``--store``, else
``GBIFDL_ANNOTATIONS_DB``; ``--user``, else ``GBIFDL_USER``, else the login name). Every command prints
one JSON summary line last on stdout, and 2 with one message for a mistake the user can fix.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from gbifdl_assets.annotations.cli import acting_user
from gbifdl_assets.annotations.vocabulary import FLAGS
from gbifdl_assets.summary_line import emit, fail

__all__ = ["add_flags_parser"]


def _guarded(command: str, fn: Callable[[argparse.Namespace, Any], dict[str, Any]]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        import sqlalchemy as sa

        from gbifdl_assets.annotations.model import RuleError
        from gbifdl_assets.annotations.permissions import PermissionDenied
        from gbifdl_assets.annotations.store import AnnotationStore, StoreError, default_store_url

        try:
            store = AnnotationStore(args.store or default_store_url())
        except sa.exc.ArgumentError:
            return fail(
                "the annotation store URL (--store or GBIFDL_ANNOTATIONS_DB) is not a database URL: give "
                "sqlite:///path/annotations.sqlite or postgresql+psycopg2://user:password@host:5432/db",
                command=command,
            )
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            return fail(f"cannot open the annotation store: {reason}", command=command)
        try:
            summary = fn(args, store)
        except (RuleError, PermissionDenied, StoreError) as exc:
            return fail(str(exc), command=command)
        finally:
            store.close()
        emit({"ok": True, "command": command, **summary})
        return 0

    return run


def cmd_add(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    data = {
        "gbifID": args.gbif_id,
        "mediaIdentifier": args.url,
        "flag": args.flag,
        "contentSha256": args.sha256,
        "phash": args.phash,
        "taxonKey": args.taxon_key,
        "comment": args.comment,
    }
    flag = store.create_flag(data, user=acting_user(args))
    return {"id": flag.id, "flag": flag.flag, "gbifID": flag.gbifID, "createdBy": flag.createdBy}


def cmd_list(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    filters = {
        "gbifID": args.gbif_id,
        "mediaIdentifier": args.url,
        "flag": args.flag,
        "createdBy": args.created_by,
        "taxonKey": args.taxon_key,
    }
    flags = store.list_flags(
        include_deleted=args.include_deleted, limit=args.limit, offset=args.offset, **filters
    )
    if args.format == "json":
        print(json.dumps([f.to_json() for f in flags], ensure_ascii=False))
    else:
        for f in flags:
            state = " [deleted]" if f.deleted else ""
            print(
                f"{f.id:>6}  {f.flag:13} {f.gbifID:>12}  +{len(f.supportedBy)} -{len(f.contestedBy)}  "
                f"{f.createdBy or '-':12} {f.mediaIdentifier[:70]}{state}"
            )
    return {"flags": len(flags), "offset": args.offset, "limit": args.limit}


def cmd_delete(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    flag = store.delete_flag(args.flag_id, user=acting_user(args))
    return {"id": flag.id, "deletedBy": flag.deletedBy}


def _vote(kind: str) -> Callable[[argparse.Namespace, Any], dict[str, Any]]:
    def run(args: argparse.Namespace, store: Any) -> dict[str, Any]:
        vote = ("remove" + kind.capitalize()) if args.remove else kind
        flag = store.vote_flag(args.flag_id, vote, user=acting_user(args))
        return {"id": flag.id, "supportedBy": flag.supportedBy, "contestedBy": flag.contestedBy}

    return run


def add_flags_parser(sub: Any, store_help: str) -> argparse.ArgumentParser:
    """``flags`` and its subcommands under ``gbifdl annotations``."""
    parser = sub.add_parser(
        "flags", help="flags on single images (NOT_ORGANISM, WRONG_TAXON, DUPLICATE, POOR_QUALITY)"
    )
    cmds = parser.add_subparsers(dest="flags_command", required=True)
    user_help = "acting user (default: $GBIFDL_USER, else your login name)"

    def common(p: argparse.ArgumentParser, user: bool = True) -> None:
        p.add_argument("--store", help=store_help)
        if user:
            p.add_argument("--user", help=user_help)

    add = cmds.add_parser("add", help="flag one image of an occurrence")
    add.add_argument("gbif_id", type=int, metavar="GBIFID", help="the occurrence's GBIF id")
    add.add_argument("url", metavar="URL", help="the image's URL, as the occurrence's media item has it")
    add.add_argument("flag", metavar="FLAG", help=f"one of {', '.join(FLAGS)} (any case)")
    add.add_argument("--sha256", help="sha256 of the image's bytes (the ledger's content_sha256), if known")
    add.add_argument("--phash", help="perceptual hash of the photo (hex), if known")
    add.add_argument(
        "--taxon-key", type=int, help="the taxon (training class) it was seen under; WRONG_TAXON uses it"
    )
    add.add_argument("--comment", help="why (free text)")
    common(add)
    add.set_defaults(func=_guarded("annotations flags add", cmd_add))

    ls = cmds.add_parser("list", help="list flags, newest first")
    ls.add_argument("--gbif-id", type=int, help="flags on this occurrence")
    ls.add_argument("--url", help="flags on this image URL")
    ls.add_argument("--flag", help="flags with this term")
    ls.add_argument("--taxon-key", type=int, help="flags made under this taxon")
    ls.add_argument("--created-by", help="flags this user made")
    ls.add_argument("--include-deleted", action="store_true", help="show deleted flags too")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--offset", type=int, default=0, help="skip this many first")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or JSON")
    common(ls, user=False)
    ls.set_defaults(func=_guarded("annotations flags list", cmd_list))

    delete = cmds.add_parser("delete", help="delete a flag (its creator or an admin)")
    delete.add_argument("flag_id", type=int, metavar="ID", help="the flag's id")
    common(delete)
    delete.set_defaults(func=_guarded("annotations flags delete", cmd_delete))

    for kind in ("support", "contest"):
        vote = cmds.add_parser(kind, help=f"{kind} a flag (replaces your other vote)")
        vote.add_argument("flag_id", type=int, metavar="ID", help="the flag's id")
        vote.add_argument("--remove", action="store_true", help=f"withdraw your {kind} instead")
        common(vote)
        vote.set_defaults(func=_guarded(f"annotations flags {kind}", _vote(kind)))
    return parser
