"""The data entries of DWCA downloads kept between sandbox runs, so a load run measures the product.

Rendering ``occurrence.txt``, ``verbatim.txt`` and ``multimedia.txt`` is nearly all of an archive's
cost (10 M occurrences: 874 CPU-s of the sandbox, a quarter of a 1,000,000-image load run's wall
time, every run, for the same bytes). What differs between two downloads of the same records is only
the small metadata entries (the key, DOI, date, citations). So the data entries are written once into
a zip of their own under ``archive_cache_dir``, named by everything their bytes depend on, and each
download copies that zip and appends its own metadata entries (:func:`.dwca.write_archive`).

The name (:func:`cache_key`) covers the sandbox's source code (a generator change can never serve
stale bytes), the configuration fields that shape the generated records and their media URLs, the
URL media are served under (the port of the run: a harness that wants hits keeps it), the columns
and the exact rows. Entries appear whole or not at all (written to ``.part``, then renamed); only
the newest :data:`KEEP` are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from .config import SandboxConfig

__all__ = ["KEEP", "ArchiveCache", "cache_key"]

#: cached data zips kept (a 10 M-occurrence one is about 1.5 GB)
KEEP = 4
#: configuration fields whose values shape the rendered records and their media URLs
_CONTENT_FIELDS = (
    "occurrences",
    "seed",
    "species",
    "media_base_url",
    "media_fault_rate",
    "media_duplicate_rate",
    "media_size",
    "media_jpeg_quality",
    "media_hosts",
)


@cache
def _source_digest() -> str:
    """A digest of the sandbox package's code (and the one module it imports): what made the bytes."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for path in [*sorted(here.glob("*.py")), here.parent / "vocabulary.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(config: SandboxConfig, rows: np.ndarray, *, media_base: str, real_columns: bool) -> str:
    """The name of the data entries of a DWCA holding ``rows`` of the world ``config`` generates."""
    h = hashlib.sha256(_source_digest().encode())
    content = {f: repr(getattr(config, f)) for f in _CONTENT_FIELDS}
    h.update(json.dumps([content, media_base, real_columns], sort_keys=True).encode())
    h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


class ArchiveCache:
    """A folder of data-entry zips (``<key>.zip``) and their per-dataset record counts (``<key>.json``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}  # one writer per key (two downloads, same rows)

    def data_entries(
        self, key: str, write: Callable[[zipfile.ZipFile], np.ndarray]
    ) -> tuple[Path, np.ndarray]:
        """The zip of ``key``'s data entries and its counts, written by ``write(zf) -> counts`` first
        when it is not here yet (an exception from ``write``, e.g. a cancelled download, leaves nothing)."""
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:
            return self._data_entries(key, write)

    def _data_entries(
        self, key: str, write: Callable[[zipfile.ZipFile], np.ndarray]
    ) -> tuple[Path, np.ndarray]:
        data, meta = self.folder / f"{key}.zip", self.folder / f"{key}.json"
        if data.is_file() and meta.is_file():
            counts = np.asarray(json.loads(meta.read_text())["dataset_counts"], dtype=np.int64)
            os.utime(data)  # recently used: kept by the eviction below
            return data, counts
        self.folder.mkdir(parents=True, exist_ok=True)
        part = data.with_name(f"{data.name}.{os.getpid()}.part")  # another sandbox may build it too
        try:
            with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as zf:
                counts = write(zf)
            meta.write_text(json.dumps({"dataset_counts": counts.tolist()}))
            part.replace(data)
        finally:
            part.unlink(missing_ok=True)
        self._evict(keep=data)
        return data, counts

    def _evict(self, keep: Path) -> None:
        zips = sorted(self.folder.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in [p for p in zips if p != keep][KEEP - 1 :]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
