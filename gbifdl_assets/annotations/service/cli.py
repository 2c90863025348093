"""``gbifdl annotations …``: run the annotation service and manage its local accounts.

* ``gbifdl annotations serve [--host H] [--port P] [--store URL] [--data URI] [--api-url URL]
  [--trusted-proxy ADDR] [--allow-origin ORIGIN] [--max-failed-logins N] [--preview-cache-mb N]``
* ``gbifdl annotations user add NAME [--admin] [--password-stdin]``, ``user set-password NAME``, ``user list``
* ``gbifdl annotations flags add|list|delete|support|contest``: flags on single images (:mod:`..flags_cli`)

The store is ``--store``, else ``GBIFDL_ANNOTATIONS_DB``, else ``sqlite:///data/annotations.sqlite``; the
GBIF API for the page's taxon search is ``--api-url`` as given, else the platform's one offline rule
(``GBIF_API_URL`` or GBIF's public API when it answers; else, or with ``--offline``/``GBIFDL_OFFLINE=1``,
the bundled sandbox, reused when one runs). Passwords are never command-line arguments (other users can read those with
``ps``): they come from ``GBIFDL_ANNOTATIONS_PASSWORD``, from stdin (``--password-stdin``) or from a
prompt, and only their scrypt hash is stored. The rule preview reads the training sets' snapshots from
``--data``, else ``GBIFDL_DATA_URI``, else ``data`` (the pipeline's own default; S3 with
``GBIFDL_S3_ENDPOINT_URL`` and the AWS variables). Every command ends with a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from gbifdl_assets.summary_line import emit, fail

__all__ = ["add_annotations_parser"]

PASSWORD_ENV = "GBIFDL_ANNOTATIONS_PASSWORD"
TRUSTED_PROXIES_ENV = "GBIFDL_ANNOTATIONS_TRUSTED_PROXIES"


def _store(args: argparse.Namespace) -> Any:
    """Open the store; a bad URL or an unreachable database is one line (the password never shown)."""
    import sqlalchemy as sa

    from gbifdl_assets.annotations.store import AnnotationStore, default_store_url

    url = args.store or default_store_url()
    try:
        return AnnotationStore(url)
    except sa.exc.ArgumentError:
        raise ValueError(
            "the annotation store URL (--store or GBIFDL_ANNOTATIONS_DB) is not a database URL: give "
            "sqlite:///path/annotations.sqlite or postgresql+psycopg2://user:password@host:5432/db"
        ) from None
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise OSError(f"cannot open the annotation store {shown}: {reason}") from None


def _gbif_api(args: argparse.Namespace) -> contextlib.AbstractContextManager[str]:
    """The GBIF API of the page's taxon search: ``--api-url`` as given, else the platform's one
    offline rule (GBIF_API_URL when it answers, else the bundled sandbox; gbif.endpoint)."""
    if args.api_url:
        return contextlib.nullcontext(args.api_url)
    return _endpoint_url(offline=True if args.offline else None)


@contextlib.contextmanager
def _endpoint_url(*, offline: bool | None) -> Iterator[str]:
    from gbifdl_assets.gbif.endpoint import gbif_endpoint

    with gbif_endpoint(offline=offline) as gbif:
        yield gbif.api_url


def _data_storage(args: argparse.Namespace) -> Any:
    """The pipeline's data storage, as the Dagster storage resource finds it: ``--data``, else
    ``GBIFDL_DATA_URI``, else ``data`` when that folder exists here (the platform's default), else none
    (the preview and the gallery then say how to give one)."""
    from gbifdl_assets.storage import open_storage

    uri = args.data or os.environ.get("GBIFDL_DATA_URI") or ("data" if os.path.isdir("data") else None)
    if not uri:
        return None
    return open_storage(
        uri,
        endpoint_url=os.environ.get("GBIFDL_S3_ENDPOINT_URL") or None,
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
        region_name=os.environ.get("AWS_REGION") or None,
    )


def _user_errors() -> tuple[type[BaseException], ...]:
    from gbifdl_assets.annotations.model import RuleError
    from gbifdl_assets.annotations.store import StoreError
    from gbifdl_assets.storage import StorageError

    return (RuleError, StoreError, StorageError, OSError, ValueError)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    from gbifdl_assets.annotations.service.app import serve
    from gbifdl_assets.annotations.service.csrf import normalize_origin
    from gbifdl_assets.annotations.service.proxies import parse_networks
    from gbifdl_assets.gbif.endpoint import loopback_origin
    from gbifdl_assets.storage import StorageError

    bad = [o for o in args.allow_origin if normalize_origin(o) is None]
    if bad:
        return fail(
            f"--allow-origin {bad[0]!r} is not an origin: give scheme://host[:port], e.g. https://example.org",
            command="annotations serve",
        )
    proxies = tuple(args.trusted_proxy) or tuple(os.environ.get(TRUSTED_PROXIES_ENV, "").split(","))
    try:
        parse_networks(proxies)
    except ValueError as exc:
        return fail(f"{exc} (--trusted-proxy or {TRUSTED_PROXIES_ENV})", command="annotations serve")
    if args.preview_cache_mb < 0:
        return fail(
            "--preview-cache-mb must be >= 0 (megabytes of snapshot columns kept)",
            command="annotations serve",
        )
    try:
        data = _data_storage(args)
    except StorageError as exc:
        return fail(f"{exc} (--data or GBIFDL_DATA_URI)", command="annotations serve")
    try:
        store = _store(args)
    except _user_errors() as exc:
        return fail(str(exc), command="annotations serve")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    try:
        with contextlib.suppress(KeyboardInterrupt), _gbif_api(args) as api_url:
            print(
                f"annotation service on http://{args.host}:{args.port}/ui/ (API under "
                f"/occurrence/experimental/annotation/, store {store!r}, taxa from {api_url}, previews on "
                f"{data.uri if data is not None else 'no data storage: give --data'}); Ctrl-C stops it",
                file=sys.stderr,
            )
            serve(
                store,
                host=args.host,
                port=args.port,
                api_url=api_url,
                max_body_bytes=args.max_body_bytes,
                access_log=not args.no_access_log,
                max_failed_logins=args.max_failed_logins,
                allowed_origins=tuple(args.allow_origin),
                trusted_proxies=proxies,
                max_account_failures=args.max_failed_logins_per_account,
                password_workers=args.password_workers,
                data_storage=data,
                preview_cache_bytes=args.preview_cache_mb << 20,
                # the sandbox's sample images are on loopback: admitted from its own origin only
                media_loopback_origins=tuple(o for o in (loopback_origin(api_url),) if o),
            )
    finally:
        store.close()
    emit(
        {
            "ok": True,
            "command": "annotations serve",
            "url": f"http://{args.host}:{args.port}",
            "served_seconds": round(time.monotonic() - started, 1),
        }
    )
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise ValueError("no password on stdin: pipe one line with the password")
        return password
    if not sys.stdin.isatty():
        raise ValueError(
            f"no password given: set {PASSWORD_ENV}, pass --password-stdin, or run in a terminal"
        )
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ; try again")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    command = "annotations user add"
    try:
        password = _read_password(args)
        store = _store(args)
        try:
            info = store.add_user(args.username, password, admin=args.admin)
        finally:
            store.close()
    except _user_errors() as exc:
        return fail(str(exc), command=command)
    emit({"ok": True, "command": command, "username": info.username, "admin": info.admin})
    return 0


def cmd_user_set_password(args: argparse.Namespace) -> int:
    command = "annotations user set-password"
    try:
        password = _read_password(args)
        store = _store(args)
        try:
            store.set_password(args.username, password)
        finally:
            store.close()
    except _user_errors() as exc:
        return fail(str(exc), command=command)
    emit({"ok": True, "command": command, "username": args.username})
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    command = "annotations user list"
    try:
        store = _store(args)
        try:
            users = store.list_users()
        finally:
            store.close()
    except _user_errors() as exc:
        return fail(str(exc), command=command)
    for u in users:
        print(f"{u.username:30} {'admin' if u.admin else 'user':6} {u.created:%Y-%m-%d}", file=sys.stderr)
    emit(
        {"ok": True, "command": command, "users": [{"username": u.username, "admin": u.admin} for u in users]}
    )
    return 0


def add_annotations_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "annotations", help="the annotation service (REST API + map page) and its users"
    )
    sub = parser.add_subparsers(dest="sub", required=True)
    store_help = "annotation store URL (default: $GBIFDL_ANNOTATIONS_DB or sqlite:///data/annotations.sqlite)"

    serve = sub.add_parser("serve", help="serve the GBIF-compatible annotation API and the map page")
    serve.add_argument("--host", default="127.0.0.1", help="interface (0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=8090, help="port to listen on (default: %(default)s)")
    serve.add_argument("--store", help=store_help)
    serve.add_argument(
        "--api-url",
        help="GBIF API for taxon search, used as given (default: $GBIF_API_URL or GBIF's when it answers, "
        "else the offline sandbox)",
    )
    serve.add_argument(
        "--data",
        metavar="URI",
        help="the pipeline's data storage, where rule previews find the snapshots and the gallery page "
        "(/ui/gallery) the training sets' images: a folder or s3://bucket/prefix "
        "(default: $GBIFDL_DATA_URI, else ./data)",
    )
    serve.add_argument(
        "--preview-cache-mb",
        type=int,
        default=2048,
        help="snapshot columns kept in memory for rule previews, in MiB (default 2048)",
    )
    serve.add_argument(
        "--offline", action="store_true", help="use the bundled offline sandbox for taxon search (no GBIF)"
    )
    serve.add_argument("--max-body-bytes", type=int, default=1024 * 1024, help="largest request body")
    serve.add_argument("--no-access-log", action="store_true", help="do not log requests")
    serve.add_argument(
        "--max-failed-logins",
        type=int,
        default=20,
        help="failed logins per client address in 10 minutes before it gets 429 (0: never throttle)",
    )
    serve.add_argument(
        "--max-failed-logins-per-account",
        type=int,
        default=None,
        help="failed logins per account in 10 minutes, from all addresses, before 429 "
        "(default: 5 times --max-failed-logins; 0: never throttle)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="a reverse proxy (address or network, repeatable) whose X-Forwarded-For/-Proto/-Host are "
        f"believed (default: ${TRUSTED_PROXIES_ENV}, comma-separated, else none)",
    )
    serve.add_argument(
        "--password-workers",
        type=int,
        default=None,
        help="threads that check passwords (scrypt); default: half the CPUs, at least 1",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a page on another origin (scheme://host[:port]) that may write through users' browsers "
        "(repeatable; by default only the service's own pages may)",
    )
    serve.set_defaults(func=cmd_serve)

    user = sub.add_parser("user", help="local accounts (HTTP Basic logins of the service)").add_subparsers(
        dest="user_command", required=True
    )
    add = user.add_parser("add", help=f"add an account (password from ${PASSWORD_ENV}, stdin or a prompt)")
    add.add_argument("username", help="the new account's login name")
    add.add_argument("--admin", action="store_true", help="may change and delete anyone's objects")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--store", help=store_help)
    add.set_defaults(func=cmd_user_add)

    passwd = user.add_parser("set-password", help="set a new password")
    passwd.add_argument("username", help="the account whose password changes")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd.add_argument("--store", help=store_help)
    passwd.set_defaults(func=cmd_user_set_password)

    ls = user.add_parser("list", help="list accounts")
    ls.add_argument("--store", help=store_help)
    ls.set_defaults(func=cmd_user_list)

    from gbifdl_assets.annotations.flags_cli import add_flags_parser

    add_flags_parser(sub, store_help)
    return parser
