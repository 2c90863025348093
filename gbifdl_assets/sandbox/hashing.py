"""Stateless deterministic hashing (splitmix64), scalar and vectorised.

Per-record details that are only needed when a record is rendered (who recorded it, the media
licence text, whether a media URL misbehaves …) are derived from ``hash(seed, key, salt)`` instead of
being stored, which keeps the occurrence table at a few dozen bytes per record. The scalar and the
numpy version give identical results, so a column computed at generation time (e.g. "this record has
a media item without identifier") always agrees with what the renderer later writes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

M64 = 0xFFFFFFFFFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_SALT = 0xD1B54A32D192ED03


def mix64(x: int) -> int:
    x = (x + _GOLDEN) & M64
    x = ((x ^ (x >> 30)) * _C1) & M64
    x = ((x ^ (x >> 27)) * _C2) & M64
    return x ^ (x >> 31)


@lru_cache(maxsize=4096)
def _base(seed: int, salt: int) -> int:
    return mix64((seed & M64) ^ ((salt * _SALT) & M64))


def h64(seed: int, key: int, salt: int) -> int:
    return mix64(_base(seed, salt) ^ (key & M64))


def unit(seed: int, key: int, salt: int) -> float:
    """A deterministic float in [0, 1)."""
    return (h64(seed, key, salt) >> 11) / 9007199254740992.0


def pick(seed: int, key: int, salt: int, n: int) -> int:
    return int(unit(seed, key, salt) * n)


def _mix64_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(_GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_C1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_C2)
        return x ^ (x >> np.uint64(31))


def unit_np(seed: int, keys: np.ndarray, salt: int) -> np.ndarray:
    """Vectorised :func:`unit` over an array of keys."""
    base = np.uint64(_base(seed, salt))
    h = _mix64_np(keys.astype(np.uint64) ^ base)
    return (h >> np.uint64(11)).astype(np.float64) / 9007199254740992.0
