"""A 256-bit perceptual hash (a DCT hash in the manner of PDQ) of an image that is already decoded.

The hash is computed in the fetch path on the pixels :mod:`.validate` has just decoded (the scaled
JPEG decode of a kept image, or the resized image that is about to be encoded), so no image is decoded
twice. The steps: grey levels, area-averaged down to 64x64, a 2-D DCT-II, the 16x16 lowest
frequencies, one bit per coefficient above their median (row by row, lowest frequency first). That is
PDQ's construction (Facebook's 256-bit hash; TreeOfLife-200M de-duplicated with it) with a box filter
instead of PDQ's Jarosz filters and without its quality score. The image is turned upright by its
EXIF orientation first (on the 64x64 array), so a copy whose orientation was applied when it was
re-encoded hashes like the original.

Why this one (measured by ``bench_duplicates.py``, README "Duplicate images"): on the sandbox's
ground truth a 64-bit pHash (``imagehash.phash``, or ours on an 8x8 block) puts some distinct photos
of one species as close as copies (2 bits), while 256 bits keep every copy within ~24 bits and every
distinct photo beyond ~48, as PDQ does; ours costs a fraction of a millisecond on the decoded image
(``pdqhash`` needs a full-size RGB array and ~5x the time) and adds no dependency.

Hashes travel as 64 lowercase hex characters (the ledger's ``phash`` column); an image without
features (a flat colour) gets none, so it is matched by its bytes only. The first two hex
characters of each 16-bit row are the 8x8 lowest frequencies: :mod:`.duplicates` indexes those 64
bits and compares all 256 of the candidates it finds. No pyarrow here: a spawned downloader process
imports this module (see .work)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

__all__ = ["HASH_BITS", "HEX_CHARS", "MIN_CONTRAST", "phash_bits", "phash_hex", "phash_of_bytes"]

HASH_BITS = 256
HEX_CHARS = HASH_BITS // 4
_SIDE = 64
_LOW = 16
#: below this standard deviation of grey levels (0-255) an image has no features to hash
MIN_CONTRAST = 2.0
_ORIENTATION = 0x0112  # the EXIF tag


def _dct_rows(n: int, k: int) -> np.ndarray:
    """The first ``k`` rows of the orthonormal DCT-II matrix of size ``n`` (float32)."""
    i = np.arange(n)
    rows = np.cos(math.pi / n * (i[None, :] + 0.5) * np.arange(k)[:, None]) * math.sqrt(2 / n)
    rows[0] /= math.sqrt(2)
    return rows.astype(np.float32)


_DCT = _dct_rows(_SIDE, _LOW)


def _upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """The array as the EXIF ``orientation`` (1-8) says it is displayed."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1, :]
    if orientation == 5:
        return a.T
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].T
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def phash_bits(im: Image.Image, orientation: int = 1) -> np.ndarray | None:
    """The 16x16 hash bits of a decoded image (bool; see the module docstring), or None for an image
    without features (grey levels of the 64x64 reduction with a standard deviation below
    :data:`MIN_CONTRAST`: a flat colour, a black frame), whose bits would be noise that matches other
    featureless images (PDQ's quality score serves the same purpose)."""
    if im.mode not in ("L", "RGB"):
        transparent = "A" in im.mode or "transparency" in im.info
        im = im.convert("RGBA").convert("RGB") if transparent else im.convert("RGB")
    small = im.resize((_SIDE, _SIDE), Image.Resampling.BOX)
    if small.mode != "L":
        small = small.convert("L")
    a = _upright(np.asarray(small, dtype=np.float32), orientation)
    if float(a.std()) < MIN_CONTRAST:
        return None
    low = _DCT @ a @ _DCT.T
    return low > np.median(low)


def phash_hex(im: Image.Image, orientation: int = 1) -> str | None:
    """The hash as 64 lowercase hex characters (the ledger's ``phash``); None without features."""
    bits = phash_bits(im, orientation)
    return None if bits is None else np.packbits(bits.ravel()).tobytes().hex()


def phash_of_bytes(body: bytes) -> str | None:
    """The hash of an encoded image, e.g. one already in the store (standalone hashing, outside the
    fetch path): a JPEG is decoded at the smallest DCT scale that still covers 64x64."""
    im = Image.open(io.BytesIO(body))
    orientation = im.getexif().get(_ORIENTATION, 1)
    if im.format in ("JPEG", "MPO"):
        im.draft(None, (min(im.width, max(_SIDE, im.width // 8)), min(im.height, max(_SIDE, im.height // 8))))
    im.load()
    return phash_hex(im, orientation if 2 <= orientation <= 8 else 1)
