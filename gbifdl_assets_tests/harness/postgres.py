"""A throw-away PostgreSQL server for integration tests.

The CI machines have the PostgreSQL 15 server binaries (``initdb``, ``pg_ctl``, ``postgres``) but
no running server, and the tests run as root, which the server refuses. So this harness:

* creates (once) an unprivileged system user ``gbifdl_pg`` when running as root and runs every
  server command as that user; as a normal user it simply runs them as itself;
* ``initdb --auth=trust`` into a fresh, short temporary directory (unix socket paths are limited to
  about 100 bytes, so the socket lives directly in that directory under /tmp);
* starts the server on a free loopback port with durability switched off (``fsync``,
  ``full_page_writes``, ``synchronous_commit``): tests want speed, and the data is discarded anyway;
* stops it with ``pg_ctl -m fast stop`` and deletes the directory on exit (also at interpreter exit
  if the context manager was never closed, so an interrupted test run does not leak a server).

Usage::

    with PostgresServer() as pg:
        dsn = pg.create_database("runs")   # postgresql+psycopg2://postgres@127.0.0.1:PORT/runs
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gbifdl_assets_tests.harness.ports import LOOPBACK, free_port

#: Unprivileged OS account that owns and runs the server when the harness itself runs as root.
DEFAULT_OS_USER = "gbifdl_pg"
#: Database superuser created by initdb. Authentication is ``trust`` on loopback, so no password.
DEFAULT_DB_USER = "postgres"

_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
# A unix socket path (sun_path) holds at most 107 bytes on Linux; keep a margin for ".s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 80
_DB_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")


class PostgresStartError(RuntimeError):
    """The server could not be initialised or started; the message carries the server log tail."""


def find_pg_bindir() -> Path:
    """Folder holding initdb/pg_ctl/postgres: from PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    found = [shutil.which(name) for name in _SERVER_BINARIES]
    if all(found):
        # Resolve symlinks (Debian links /usr/local/bin/initdb into /usr/lib/postgresql/15/bin) so that
        # pg_ctl finds the matching `postgres` next to itself.
        return Path(os.path.realpath(found[1])).parent  # type: ignore[arg-type]
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name.split(".")[0])
    )
    for bindir in reversed(candidates):
        if all((Path(bindir) / name).exists() for name in _SERVER_BINARIES):
            return Path(bindir)
    raise PostgresStartError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under "
        "/usr/lib/postgresql/*/bin. Install PostgreSQL 15 (Debian: apt-get install postgresql-15) "
        "or put its bin folder on PATH."
    )


def ensure_os_user(name: str = DEFAULT_OS_USER) -> pwd.struct_passwd:
    """Return the passwd entry of ``name``, creating it as a no-login system user if missing.

    Only called when running as root. Two harnesses may race here (parallel test sessions), so a
    failing ``useradd`` is fine as long as the user exists afterwards.
    """
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresStartError(
            f"could not create the unprivileged user {name!r} that runs PostgreSQL "
            f"(PostgreSQL refuses to run as root): useradd exited {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        ) from None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log was written)"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


class PostgresServer:
    """A PostgreSQL server in a temporary directory, listening on 127.0.0.1 only.

    Attributes: ``host``, ``port``, ``user`` (database superuser), ``data_dir``, ``socket_dir``,
    ``log_path``. Methods: ``dsn(db)``, ``create_database(name)``, ``drop_database(name)``,
    ``connect(db)``, ``dagster_postgres_db(db)``.
    """

    def __init__(
        self,
        *,
        os_user: str = DEFAULT_OS_USER,
        user: str = DEFAULT_DB_USER,
        port: int | None = None,
        startup_timeout: float = 60.0,
        extra_settings: Mapping[str, str] | None = None,
    ) -> None:
        self.host = LOOPBACK
        self.user = user
        self.port: int = port or 0
        self._fixed_port = port is not None
        self._os_user_name = os_user
        self._startup_timeout = startup_timeout
        self._settings: dict[str, str] = {
            # Test data is disposable: trade durability for speed.
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            # Dagster's webserver, daemon and run workers each keep connection pools.
            "max_connections": "200",
        }
        self._settings.update(extra_settings or {})
        self._root: Path | None = None
        self._running = False
        self._run_as: pwd.struct_passwd | None = None
        self._bindir: Path | None = None

    # ------------------------------------------------------------------ paths
    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("PostgresServer is not started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> PostgresServer:
        """initdb + start; raise :class:`PostgresStartError` with the server log tail on failure."""
        if self._running:
            return self
        self._bindir = find_pg_bindir()
        self._run_as = ensure_os_user(self._os_user_name) if os.geteuid() == 0 else None
        self._root = self._make_root()
        atexit.register(self.stop)
        try:
            self._initdb()
            self._start_with_port_retry()
            self._running = True
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown (active connections are terminated) and removal of the directory. Idempotent."""
        root = self._root
        if root is None:
            return
        if self.data_dir.joinpath("postmaster.pid").exists():
            proc = self._run(
                [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                check=False,
                timeout=60,
            )
            if proc.returncode != 0:
                self._kill_postmaster()
        self._running = False
        self._root = None
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def restart(self) -> None:
        """Stop and start the same cluster on the same port (for fault-injection tests)."""
        self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], check=False)
        self._running = False
        self._pg_ctl_start()
        self._running = True
        self._wait_until_accepting()

    # ---------------------------------------------------------- connection
    def dsn(self, db: str = "postgres") -> str:
        """SQLAlchemy URL with the psycopg2 driver (SQLAlchemy 2.1 defaults to psycopg 3, not installed)."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{db}"

    def libpq_dsn(self, db: str = "postgres") -> str:
        """Plain libpq URL, for psycopg2.connect / psql."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{db}"

    def dagster_postgres_db(self, db: str = "postgres") -> dict[str, Any]:
        """The ``storage.postgres.postgres_db`` block of a dagster.yaml pointing at ``db``."""
        return {
            "username": self.user,
            "password": "",
            "hostname": self.host,
            "port": self.port,
            "db_name": db,
            "scheme": "postgresql+psycopg2",
        }

    def connect(self, db: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg2 connection to ``db`` (caller closes it)."""
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, dbname=db, connect_timeout=10, **kwargs
        )

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy DSN."""
        from psycopg2 import sql

        self._check_db_name(name)
        conn = self.connect()
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, terminating connections that pools still hold."""
        from psycopg2 import sql

        self._check_db_name(name)
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            conn.close()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"PostgresServer({self.host}:{self.port}, {state})"

    # ------------------------------------------------------------ internals
    @staticmethod
    def _check_db_name(name: str) -> None:
        if not _DB_NAME_RE.match(name):
            raise ValueError(
                f"invalid database name {name!r}: use 1-63 letters, digits, '_' or '-' "
                "(starting with a letter, digit or '_')"
            )

    def _bin(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    def _make_root(self) -> Path:
        # As root, the server user must be able to traverse the parent, and TMPDIR might point into
        # /root; /tmp is world-traversable and short (the socket lives here too).
        base = "/tmp" if self._run_as is not None else tempfile.gettempdir()
        if len(base) > _MAX_SOCKET_DIR_LEN - 20:
            base = "/tmp"
        root = Path(tempfile.mkdtemp(prefix="gbpg-", dir=base))
        if self._run_as is not None:
            os.chown(root, self._run_as.pw_uid, self._run_as.pw_gid)
        root.chmod(0o700)
        return root

    def _env(self) -> dict[str, str]:
        # PG* variables from the caller's shell (PGDATA, PGPORT, PGHOST…) must not redirect the server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"LC_ALL": "C", "LANG": "C", "HOME": str(self.root), "TZ": "UTC"})
        return env

    def _run(
        self, args: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        proc = subprocess.run(
            list(args),
            cwd=self.root,  # the server user may not be able to read the caller's cwd
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise PostgresStartError(
                f"{Path(args[0]).name} failed (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr).strip()}\n--- server log (last lines) ---\n"
                f"{_tail(self.log_path)}"
            )
        return proc

    def _initdb(self) -> None:
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",  # C collation: same results on every machine, no locale packages needed
                "--no-sync",  # disposable cluster: skip the fsync of every file initdb writes
                "--no-instructions",
            ]
        )

    def _server_options(self) -> str:
        opts = [f"-h {self.host}", f"-p {self.port}", f"-k {self.socket_dir}"]
        opts += [f"-c {k}={v}" for k, v in self._settings.items()]
        return " ".join(opts)

    def _pg_ctl_start(self) -> None:
        self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(self._startup_timeout)),
                "-o",
                self._server_options(),
                "start",
            ],
            timeout=self._startup_timeout + 30,
        )

    def _start_with_port_retry(self) -> None:
        # free_port() can lose a race with another process binding the same port before the server
        # does; pick a new one and retry unless the caller asked for a specific port.
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host)
            try:
                self._pg_ctl_start()
                return
            except PostgresStartError as exc:
                if attempt + 1 < attempts and "already in use" in str(exc):
                    continue
                raise

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.connect().close()
                return
            except Exception as exc:  # psycopg2.OperationalError while the server finishes recovery
                last = exc
                time.sleep(0.05)
        raise PostgresStartError(
            f"PostgreSQL on {self.host}:{self.port} did not accept connections within "
            f"{self._startup_timeout:.0f} s ({last}).\n--- server log ---\n{_tail(self.log_path)}"
        )

    def _kill_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
