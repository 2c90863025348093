"""The perceptual hash (media/phash.py) and the duplicate clusters (media/duplicates.py), no Dagster."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from gbifdl_assets.media.duplicates import (
    DEFAULT_MAX_DISTANCE,
    DuplicateError,
    find_clusters,
    hashes_of,
    index_keys,
    near_pairs,
    union_components,
)
from gbifdl_assets.media.phash import HEX_CHARS, phash_hex, phash_of_bytes
from gbifdl_assets.media.validate import ValidationOptions, validate_image


def _photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # a coarse scene, smoothly enlarged
    im = Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC)
    noise = rng.normal(0, 4, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(im, np.float32) + noise, 0, 255).astype(np.uint8), "RGB")


def _jpeg(im: Image.Image, quality: int = 90, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, **kw)
    return out.getvalue()


def _distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_hash_is_64_hex_and_survives_resizing_and_reencoding() -> None:
    im = _photo(1)
    original = phash_hex(im)
    assert len(original) == HEX_CHARS == 64 and int(original, 16) >= 0
    copy = Image.open(io.BytesIO(_jpeg(im.resize((320, 240), Image.Resampling.LANCZOS), quality=60)))
    assert _distance(original, phash_hex(copy)) <= DEFAULT_MAX_DISTANCE
    others = [phash_hex(_photo(s)) for s in range(2, 12)]
    assert min(_distance(original, o) for o in others) > 2 * DEFAULT_MAX_DISTANCE


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fetch_path_hashes_the_upright_picture(orientation: int) -> None:
    """validate_image hashes what it decodes: a kept JPEG with an EXIF orientation and its upright,
    re-encoded copy agree."""
    im = _photo(3, (400, 300))
    transposed = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    # stored so that applying the orientation gives ``im`` back
    stored = im.transpose(transposed[orientation]) if orientation in transposed else im
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = _jpeg(stored, exif=exif.tobytes())
    kept = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    assert not kept.reencoded and kept.phash is not None
    upright = validate_image(_jpeg(im), "image/jpeg", ValidationOptions(max_side=512))
    assert _distance(kept.phash, upright.phash) <= DEFAULT_MAX_DISTANCE
    resized = validate_image(body, "image/jpeg", ValidationOptions(max_side=200))
    assert resized.reencoded and _distance(resized.phash, upright.phash) <= DEFAULT_MAX_DISTANCE


def test_a_featureless_image_gets_no_hash() -> None:
    assert phash_hex(Image.new("RGB", (300, 200), (10, 10, 10))) is None
    flat = validate_image(
        _jpeg(Image.new("RGB", (300, 200), (200, 30, 30))), "image/jpeg", ValidationOptions()
    )
    assert flat.phash is None and flat.sha256


def test_not_an_image_has_no_hash_and_bad_values_are_invalid() -> None:
    good = "ab" * 32
    values, ok = hashes_of(pa.array([good, None, "xyz", good.upper(), "ab" * 8]))
    assert ok.tolist() == [True, False, False, True, False]
    assert values[0].tobytes().hex() == good and values[3].tobytes().hex() == good
    assert index_keys(values[:1])[0] == int("ab" * 8, 16)  # the first byte of each of 8 rows


def _brute(keys: np.ndarray, d: int) -> set[tuple[int, int]]:
    dist = np.bitwise_count(keys[:, None] ^ keys[None, :])
    i, j = np.nonzero(np.triu(dist <= d, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("d", [0, 3, 4, 7, 9])
def test_multi_index_finds_exactly_the_pairs_brute_force_finds(d: int) -> None:
    rng = np.random.default_rng(d)
    keys = rng.integers(0, 2**63, 600, dtype=np.int64).astype(np.uint64)
    for i in range(0, 200, 2):  # plant pairs up to d bits apart
        bits = rng.choice(64, size=int(rng.integers(0, d + 1)), replace=False)
        keys[i + 1] = keys[i] ^ np.uint64(sum(1 << int(b) for b in bits))
    keys[300] = keys[301]  # a repeat
    a, b = near_pairs(keys, d)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == _brute(keys, d)
    assert len(a) == len(set(zip(a.tolist(), b.tolist(), strict=True)))  # each pair once


def test_union_find_labels_each_component_by_its_smallest_row() -> None:
    labels = union_components(8, np.array([5, 1, 7, 6]), np.array([3, 5, 6, 2]))
    assert labels.tolist() == [0, 1, 2, 1, 4, 1, 2, 2]


def _hex(rows: np.ndarray) -> list[str]:
    return [r.tobytes().hex() for r in rows]


def test_clusters_join_exact_and_near_copies_transitively() -> None:
    rng = np.random.default_rng(7)
    h = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    near = h[0].copy()
    near[1] ^= 0b1011  # 3 bits outside the index key's bytes
    near[0] ^= 0b1  # 1 inside
    far = h[0].copy()
    far[1::2] ^= 0xFF  # 128 bits apart
    phash = [*_hex(h), near.tobytes().hex(), far.tobytes().hex(), None]
    sha = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s2"]  # row 8 (no hash) copies row 1's bytes
    clusters = find_clusters(pa.array(phash), pa.array(sha))
    assert clusters.label.tolist() == [0, 1, 2, 3, 4, 5, 0, 7, 1]
    assert clusters.clusters == 2 and clusters.members == 4
    assert clusters.exact_links == 1 and clusters.near_links == 1
    exact_only = find_clusters(pa.array(phash), pa.array(sha), near=False)
    assert exact_only.label.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 1]


def test_bad_arguments_name_the_fix() -> None:
    with pytest.raises(DuplicateError, match="max_distance=300: give a Hamming distance between 0 and 64"):
        find_clusters(["ab" * 32], max_distance=300)
    with pytest.raises(DuplicateError, match="differ in length"):
        find_clusters(["ab" * 32], ["a", "b"])


def test_standalone_hash_of_stored_bytes_agrees_with_the_fetch_path() -> None:
    body = _jpeg(_photo(5, (1200, 900)))
    fetched = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    stored = phash_of_bytes(fetched.data)
    assert stored is not None and _distance(stored, fetched.phash) <= DEFAULT_MAX_DISTANCE
