"""A storage in a folder of the local filesystem.

Writes go to a staging file in the target's folder (see :mod:`gbifdl_assets.storage.staging`), are
fsynced and renamed over the target, so a reader sees the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gbifdl_assets.storage.base import Storage
from gbifdl_assets.storage.keys import join_key, validate_key
from gbifdl_assets.storage.staging import (
    STALE_AFTER_SECONDS,
    TMP_PREFIX,
    remove_stale_staging,
    staging_name,
    sweep_on_write,
)


class LocalStorage(Storage):
    """A folder on the local filesystem. The folder is created on the first write."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def uri_of(self, key: str) -> str:
        return self._path(key).as_uri()

    def child(self, prefix: str) -> LocalStorage:
        return LocalStorage(self._path(prefix.rstrip("/")))

    @contextlib.contextmanager
    def _open_write(self, key: str) -> Iterator[BinaryIO]:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_on_write(self.root, target.parent)
        tmp = target.parent / staging_name()
        # os.open with 0o666 lets the umask decide permissions, like a plain open() would;
        # NamedTemporaryFile would leave every stored file at 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        fh = os.fdopen(fd, "wb")
        try:
            yield fh  # type: ignore[misc]
            if fh.closed:  # the caller closed it early; reopen just to make the data durable
                with open(tmp, "rb+") as again:
                    os.fsync(again.fileno())
            else:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            os.replace(tmp, target)
        except BaseException:
            fh.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(target.parent)

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._not_found(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(key)
        return path.stat().st_size

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _walk(self, prefix: str) -> Iterator[tuple[str, str, list[str]]]:
        """(folder path, folder key, file names) of the folders that can hold keys under ``prefix``.

        Only the folder the prefix points into is walked, not the whole tree; folders that cannot
        contain a matching key and staging folders are pruned.
        """
        validate_key(prefix, allow_empty=True, what="prefix")
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / base_rel if base_rel else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            dirnames[:] = [
                d
                for d in dirnames
                if _could_match(join_key(rel_dir, d) + "/", prefix) and not d.startswith(TMP_PREFIX)
            ]
            yield dirpath, rel_dir, filenames

    def list(self, prefix: str = "") -> Iterator[str]:
        found: list[str] = []
        for _, rel_dir, filenames in self._walk(prefix):
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                key = join_key(rel_dir, name)
                if key.startswith(prefix):
                    found.append(key)
        return iter(sorted(found))

    def cleanup(self, prefix: str = "", *, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
        """Remove abandoned staging files (``.gbifdl-tmp-*``) in the folders under ``prefix``.

        A staging file is abandoned when its writer is known to be dead (its name records host and
        pid, see :func:`staging_name`, and that process is gone on this host) or when nobody has
        modified it for ``stale_after`` seconds. A live write, by this process or by a concurrent run,
        is never removed: its pid is alive and it keeps touching its file. Staging *folders* (export
        trees) are left alone. Returns the removed files as paths relative to the root.
        """
        removed: list[str] = []
        for dirpath, rel_dir, _ in self._walk(prefix):
            keys = remove_stale_staging(
                Path(dirpath),
                stale_after,
                wanted=lambda name, d=rel_dir: join_key(d, name).startswith(prefix),
            )
            removed += [join_key(rel_dir, name) for name in keys]
        return sorted(removed)


def _could_match(folder_prefix: str, prefix: str) -> bool:
    """True if keys under ``folder_prefix`` ('a/b/') can start with ``prefix``."""
    return folder_prefix.startswith(prefix) or prefix.startswith(folder_prefix)


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not supported on every platform/filesystem, which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
