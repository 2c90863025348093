"""The same bytes under two URLs are stored once.

GBIF carries the same photo more than once: an iNaturalist observation and its copy in a localised
dataset, the http and https forms of one identifier, multi-species photos attached to several
occurrences. Images are stored by URL (``content_key`` = sha256 of the URL), so each of those
would be downloaded *and* stored again. The ledger therefore records the sha256 of every downloaded
body (``content_sha256``), and :class:`SameBytes` knows, for the run, which body hash is already
stored under which key: a second URL whose body has the same hash gets an ``ok`` entry pointing at
the first object (``key`` of the first image, ``duplicate_of`` its content key) instead of a second
object, and the run summary counts it (``same_bytes``).

What it knows: the run's own ledger before the run (its stored entries, minus those whose object
is gone) and everything stored during the run. Another training set's ledger is not searched (a
store can hold millions of entries); the same photo in two training sets is stored twice.

In one process, :meth:`SameBytes.claim` lets the first body of a hash go ahead (validate, store)
and makes a second one that arrives meanwhile wait for it (never longer than ``wait`` seconds), so
the second is never written. With worker processes (:mod:`.pool`), the caller keeps the one
registry (:meth:`SameBytes.remember`) and, when a worker stored bytes another image already has,
points the entry at the first object and deletes the second copy. An entry only ever points at an
object whose write has returned.

Memory: about 160 bytes per stored image (hash prefixes and the content key as raw bytes), so
16 MB for 100,000 images.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from gbifdl_assets.media.store import ImageStore

__all__ = ["SameBytes", "Stored"]

_PREFIX = 16  # bytes of a body hash kept (128 bits: collisions are not a concern)


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a body is stored: the object's key, its image's content key, its bytes' sha256 (prefix)."""

    key: str
    content_key: str
    sha256_prefix: str  # the first 16 hex digits of the stored bytes' sha256

    def same_object_bytes(self, sha256: str) -> bool:
        return sha256.startswith(self.sha256_prefix)


class SameBytes:
    """Body hash -> the object it is stored as, for one run and one variant (thread-safe)."""

    def __init__(
        self, variant: str, seed: Iterable[tuple[str, str, str, str]] = (), *, wait: float = 30.0
    ) -> None:
        """``seed``: (body sha256, key, content key, stored sha256) of images stored before the run."""
        self.variant = variant
        self._done: dict[bytes, bytes] = {}
        self._pending: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()
        self._wait = wait
        for body_sha, key, content_key, sha256 in seed:
            self._done.setdefault(_h(body_sha), _pack(key, content_key, sha256))

    def __len__(self) -> int:
        return len(self._done)

    def _view(self, packed: bytes) -> Stored:
        content_key = packed[:32].hex()
        sha_prefix = packed[32:40].hex()
        ext = packed[40:].decode("ascii")
        return Stored(ImageStore.image_key(content_key, self.variant, ext), content_key, sha_prefix)

    def get(self, body_sha256: str) -> Stored | None:
        packed = self._done.get(_h(body_sha256))
        return None if packed is None else self._view(packed)

    def claim(self, body_sha256: str) -> Stored | None:
        """The object this body is already stored as; else None, and the caller must :meth:`publish`."""
        h = _h(body_sha256)
        while True:
            with self._lock:
                packed = self._done.get(h)
                if packed is not None:
                    return self._view(packed)
                event = self._pending.get(h)
                if event is None:
                    self._pending[h] = threading.Event()
                    return None
            if not event.wait(self._wait):
                return None  # the first one is stuck (storage trouble): go ahead on our own
            # published (or given up): look again

    def publish(self, body_sha256: str, key: str | None, content_key: str = "", sha256: str = "") -> None:
        """After :meth:`claim` returned None: where the body was stored (``key`` None: it was not)."""
        h = _h(body_sha256)
        with self._lock:
            if key is not None:
                self._done.setdefault(h, _pack(key, content_key, sha256))
            event = self._pending.pop(h, None)
        if event is not None:
            event.set()

    def remember(self, body_sha256: str, key: str, content_key: str, sha256: str) -> Stored:
        """Record where the body is stored unless it is known; returns what is on record (the first)."""
        h = _h(body_sha256)
        with self._lock:
            packed = self._done.setdefault(h, _pack(key, content_key, sha256))
        return self._view(packed)


def _h(body_sha256: str) -> bytes:
    return bytes.fromhex(body_sha256[: 2 * _PREFIX])


def _pack(key: str, content_key: str, sha256: str) -> bytes:
    ext = key.rsplit(".", 1)[1] if "." in key.rsplit("/", 1)[-1] else ""
    return bytes.fromhex(content_key) + bytes.fromhex(sha256[:16]) + ext.encode("ascii")
