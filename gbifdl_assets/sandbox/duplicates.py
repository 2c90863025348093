"""Duplicate photos with ground truth: the same image under several occurrences and URLs.

GBIF carries one photo many times (an iNaturalist record and its copy in another dataset, http and
https forms of a link, one image in several formats). The sandbox imitates it, deterministically by
seed: a share (``media_duplicate_rate``) of the records whose first media item is a still image
serve, under their own URL, a copy of the first image of an earlier record of the same taxon:

* ``identical``: the very same bytes (the same file republished);
* ``resized``: the same picture resized (50-90 %) and re-encoded as JPEG at another quality.

A copy's source is never itself a copy, so every group is one original and its copies.
:func:`duplicate_groups` lists them (the ground truth of ``bench_duplicates.py`` and the tests;
``GET /sandbox/duplicates`` serves it), :func:`copy_of` says what one media item is a copy of.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import hashing
from .records import renders_image_np
from .world import MF_NO_IDENTIFIER, P_NO_IDENTIFIER, World, media_salt

__all__ = ["DEFAULT_DUPLICATE_RATE", "Copy", "copy_of", "duplicate_groups", "resized_copy"]

#: share of the records with a still image as first media item whose image is a copy of another's
DEFAULT_DUPLICATE_RATE = 0.03
#: salts of hashing.unit() (media fields 7-9 of item 0; see world.media_salt)
_MF_DUPLICATE, _MF_DUPLICATE_KIND, _MF_DUPLICATE_LOOK = 7, 8, 9
_SCALES = (0.5, 0.6, 0.75, 0.9)
_QUALITIES = (60, 70, 85, 95)


@dataclass(frozen=True)
class Copy:
    """Item 0 of ``row`` is a copy of item 0 of ``source_row`` (rows of the world's occurrence table)."""

    row: int
    source_row: int
    kind: str  # identical | resized
    scale: float = 1.0
    quality: int = 0


_CACHE: dict[tuple[int, float], tuple[World, dict[int, Copy]]] = {}
_LOCK = threading.Lock()


def _copies(world: World, rate: float) -> dict[int, Copy]:
    """row -> Copy for every copied item of the world (computed once per world and rate)."""
    with _LOCK:
        hit = _CACHE.get((id(world), rate))
        if hit is not None and hit[0] is world:
            return hit[1]
    occ = world.occ
    keys = np.asarray(occ.key, dtype=np.int64)
    n_items = occ.media.astype(np.int64) & 3
    first_type = (occ.media.astype(np.int64) >> 2) & 3
    named = hashing.unit_np(world.seed, keys, media_salt(0, MF_NO_IDENTIFIER)) >= P_NO_IDENTIFIER
    image = (n_items > 0) & (first_type == 0) & named & renders_image_np(world, keys, 0)
    chosen = image & (hashing.unit_np(world.seed, keys, media_salt(0, _MF_DUPLICATE)) < rate)
    original = image & ~chosen
    taxon = np.asarray(occ.taxon)
    order = np.lexsort((np.arange(len(keys)), taxon))  # by taxon, then row
    t_sorted = taxon[order]
    pos = np.arange(len(order))
    group_start = np.maximum.accumulate(np.where(np.r_[True, t_sorted[1:] != t_sorted[:-1]], pos, 0))
    # the latest original at or before each position (within its taxon): the source of a copy
    last = np.maximum.accumulate(np.where(original[order], pos, -1))
    prev = np.r_[-1, last[:-1]]
    copies: dict[int, Copy] = {}
    for p in np.flatnonzero(chosen[order] & (prev >= group_start)):
        row, source = int(order[p]), int(order[prev[p]])
        key = int(keys[row])
        if hashing.unit(world.seed, key, media_salt(0, _MF_DUPLICATE_KIND)) < 0.5:
            copies[row] = Copy(row, source, "identical")
        else:
            look = hashing.pick(
                world.seed, key, media_salt(0, _MF_DUPLICATE_LOOK), len(_SCALES) * len(_QUALITIES)
            )
            scale, quality = _SCALES[look % len(_SCALES)], _QUALITIES[look // len(_SCALES)]
            copies[row] = Copy(row, source, "resized", scale, quality)
    with _LOCK:
        _CACHE[(id(world), rate)] = (world, copies)
        while len(_CACHE) > 8:
            _CACHE.pop(next(iter(_CACHE)))
    return copies


def copy_of(world: World, row: int, item: int, rate: float = DEFAULT_DUPLICATE_RATE) -> Copy | None:
    """What media item ``item`` of record ``row`` copies, or None for an image of its own."""
    if item != 0 or rate <= 0:
        return None
    return _copies(world, rate).get(row)


def resized_copy(body: bytes, scale: float, quality: int) -> bytes:
    """``body`` (an image) resized by ``scale`` and re-encoded as JPEG at ``quality``."""
    im = Image.open(io.BytesIO(body)).convert("RGB")
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    out = io.BytesIO()
    im.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=quality)
    return out.getvalue()


def duplicate_groups(world: World, rate: float = DEFAULT_DUPLICATE_RATE) -> list[dict]:
    """The ground truth: one group per copied original, ``{"original": {"gbifID", "item"}, "copies":
    [{"gbifID", "item", "kind"}, ...]}`` (item 0 each), ordered by the original's gbifID."""
    if rate <= 0:
        return []
    groups: dict[int, list[dict]] = {}
    keys = world.occ.key
    for copy in _copies(world, rate).values():
        groups.setdefault(copy.source_row, []).append(
            {"gbifID": int(keys[copy.row]), "item": 0, "kind": copy.kind}
        )
    return [
        {
            "original": {"gbifID": int(keys[source]), "item": 0},
            "copies": sorted(members, key=lambda c: c["gbifID"]),
        }
        for source, members in sorted(groups.items(), key=lambda kv: int(keys[kv[0]]))
    ]
