"""Resizing JPEGs through libjpeg's DCT scaling: same sizes, close pixels, upright, only where legal.

The reference for "as before" is Pillow's general path, which the code used for every format until
the scaled decode: full decode, EXIF orientation, ``thumbnail`` with Lanczos, one JPEG encode.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from gbifdl_assets.media.validate import InvalidImage, ValidationOptions, fit_within, validate_image


def _photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """Smooth colour gradients plus noise and a few edges: compresses and resamples like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [
            120 + 80 * np.sin(xx / (width / 5.0)),
            120 + 80 * np.cos(yy / (height / 4.0)),
            100 + 60 * np.sin((xx + yy) / (width / 7.0)),
        ],
        axis=2,
    )
    img[(xx // (width / 8) + yy // (height / 6)) % 2 == 0] += 25  # edges
    img += rng.normal(0, 4, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _jpeg(im: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=save.pop("quality", 90), **save)
    return buf.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)


def _reference(body: bytes, side: int = 512) -> Image.Image:
    """The general path: full decode, EXIF orientation, Lanczos thumbnail."""
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(body)))
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return im


class _DraftSpy:
    """Records each JPEG draft: requested size, scale chosen by the decoder, decoded size."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict] = []
        original = JpegImagePlugin.JpegImageFile.draft

        def draft(im, mode, size):  # type: ignore[no-untyped-def]
            before = im.size
            result = original(im, mode, size)
            scale = im.decoderconfig[0] if im.decoderconfig else 1
            self.calls.append({"from": before, "requested": size, "scale": scale, "size": im.size})
            return result

        monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _DraftSpy:
    return _DraftSpy(monkeypatch)


def test_4000x3000_to_512_same_size_and_close_to_the_full_decode(spy: _DraftSpy) -> None:
    body = _jpeg(_photo(4000, 3000))
    out = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    ref = _reference(body)
    assert (out.width, out.height) == ref.size == (512, 384)
    assert Image.open(io.BytesIO(out.data)).size == (512, 384)
    diff = np.abs(_pixels(out.data) - np.asarray(ref.convert("RGB"), np.float32))
    assert diff.mean() < 3.0, diff.mean()  # 0-255 scale: JPEG q90 re-encoding alone is ~1-2
    # decoded at 1/4 (1000x750); 1/8 (500x375) would not cover 512x384
    assert spy.calls == [{"from": (4000, 3000), "requested": (512, 384), "scale": 4, "size": (1000, 750)}]


@pytest.mark.parametrize(
    ("size", "scale"),
    [
        ((2048, 1536), 4),  # exactly 4x the target: decoded straight to 512x384, no resize at all
        ((1600, 1200), 2),
        ((1001, 777), 1),  # 1/2 would give 501 px < 512: a full decode is the only legal one
        ((600, 450), 1),
        ((4096, 3072), 8),
        ((5000, 1000), 8),  # target 512x102: 625x125 covers it
    ],
)
def test_draft_picks_the_smallest_scale_that_covers_the_target(
    spy: _DraftSpy, size: tuple[int, int], scale: int
) -> None:
    body = _jpeg(Image.new("RGB", size, (90, 140, 60)))
    out = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    target = fit_within(*size, 512)
    assert (out.width, out.height) == target == _reference(body).size
    (call,) = spy.calls
    assert call["scale"] == scale
    assert call["size"][0] >= target[0] and call["size"][1] >= target[1]
    if scale < 8:  # the next scale down would not cover the target on at least one side
        smaller = (-(-size[0] // (scale * 2)), -(-size[1] // (scale * 2)))
        assert smaller[0] < target[0] or smaller[1] < target[1]


def test_draft_covers_the_target_for_any_size(spy: _DraftSpy) -> None:
    rng = random.Random(7)
    for _ in range(40):
        size = (rng.randint(70, 2600), rng.randint(70, 2600))
        side = rng.choice([64, 100, 256, 300])
        body = _jpeg(Image.new("L", size, 128), quality=50)
        spy.calls.clear()
        out = validate_image(body, "image/jpeg", ValidationOptions(max_side=side, min_side=1))
        target = fit_within(*size, side)
        assert (out.width, out.height) == target, (size, side)
        if max(size) > side:
            (call,) = spy.calls
            assert call["size"][0] >= target[0] and call["size"][1] >= target[1], (size, side, call)


def test_fit_within_matches_pillow_thumbnail() -> None:
    rng = random.Random(3)
    for _ in range(300):
        size = (rng.randint(1, 700), rng.randint(1, 700))
        side = rng.randint(1, 120)
        im = Image.new("1", size)
        im.thumbnail((side, side))
        assert fit_within(*size, side) == im.size, (size, side)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_rotated_inputs_come_out_upright(spy: _DraftSpy, orientation: int) -> None:
    upright = _photo(2400, 1600)  # as the camera saw it: a red block top left, blue bottom right
    upright.paste((255, 0, 0), (0, 0, 600, 400))
    upright.paste((0, 0, 255), (1800, 1200, 2400, 1600))
    # store the pixels so that applying ``orientation`` gives the upright picture back
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(inverse[orientation]) if orientation in inverse else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = _jpeg(stored, exif=exif.tobytes())
    out = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    assert (out.width, out.height) == (512, 341) == _reference(body).size
    px = _pixels(out.data)
    assert px[20, 20].tolist() == pytest.approx([255, 0, 0], abs=40)  # red top left
    assert px[-20, -20].tolist() == pytest.approx([0, 0, 255], abs=40)  # blue bottom right
    diff = np.abs(px - np.asarray(_reference(body).convert("RGB"), np.float32)).mean()
    assert diff < 3.0
    (call,) = spy.calls  # chosen on the stored orientation: 600x400 (or 400x600) covers 512x341
    assert call["scale"] == 4 and call["from"] == stored.size


def test_png_path_is_unchanged(spy: _DraftSpy) -> None:
    """PNG (and every non-JPEG) keeps the general path: same pixels as full decode + Lanczos."""
    rgba = _photo(1800, 1200).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((1800, 1200)))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    body = buf.getvalue()
    out = validate_image(body, "image/png", ValidationOptions(max_side=512))
    ref = _reference(body)
    flat = Image.new("RGB", ref.size, (255, 255, 255))
    flat.paste(ref, mask=ref.getchannel("A"))
    assert out.data == _jpeg(flat)  # byte for byte what the general path encodes
    assert spy.calls == []
    # PNG to PNG keeps the ICC profile, as before
    srgb = b"fake-icc-profile-bytes"
    buf = io.BytesIO()
    _photo(900, 600).save(buf, "PNG", icc_profile=srgb)
    out = validate_image(buf.getvalue(), "image/png", ValidationOptions(max_side=300, format="png"))
    assert Image.open(io.BytesIO(out.data)).info.get("icc_profile") == srgb


def test_jpeg_icc_is_kept_for_png_output_and_dropped_for_jpeg_as_before() -> None:
    body = _jpeg(_photo(1600, 1200), icc_profile=b"some-icc")
    as_png = validate_image(body, "image/jpeg", ValidationOptions(max_side=512, format="png"))
    assert Image.open(io.BytesIO(as_png.data)).info.get("icc_profile") == b"some-icc"
    as_jpeg = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    assert Image.open(io.BytesIO(as_jpeg.data)).info.get("icc_profile") is None


@pytest.mark.parametrize(("mode", "out_mode"), [("L", "L"), ("CMYK", "RGB")])
def test_grayscale_and_cmyk_jpegs(mode: str, out_mode: str) -> None:
    body = _jpeg(_photo(2000, 1500).convert(mode))
    out = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    im = Image.open(io.BytesIO(out.data))
    assert (im.size, im.mode) == ((512, 384), out_mode)
    ref = _reference(body).convert("RGB")
    assert np.abs(_pixels(out.data) - np.asarray(ref, np.float32)).mean() < 3.0


def test_progressive_and_mpo_jpegs_are_scaled_too(spy: _DraftSpy) -> None:
    progressive = _jpeg(_photo(1600, 1200), progressive=True)
    out = validate_image(progressive, "image/jpeg", ValidationOptions(max_side=512))
    assert (out.width, out.height) == (512, 384) and spy.calls[-1]["scale"] == 2
    buf = io.BytesIO()
    first, second = _photo(1600, 1200, seed=1), _photo(1600, 1200, seed=2)
    first.save(buf, "MPO", save_all=True, append_images=[second], quality=90)
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    out = validate_image(buf.getvalue(), "image/jpeg", ValidationOptions(max_side=512))
    assert (out.width, out.height, out.format) == (512, 384, "JPEG") and spy.calls[-1]["scale"] == 2
    assert np.abs(_pixels(out.data) - np.asarray(_reference(_jpeg(first)), np.float32)).mean() < 4.0


def test_truncated_and_corrupt_jpegs_still_fail_when_scaled() -> None:
    body = _jpeg(_photo(2400, 1800))
    with pytest.raises(InvalidImage) as err:
        validate_image(body[: len(body) * 2 // 3], "image/jpeg", ValidationOptions(max_side=512))
    assert err.value.reason == "truncated"
    start = len(body) // 3  # garbage in the entropy-coded data: libjpeg's error, as in a full decode
    broken = body[:start] + bytes((i * 37) & 0xFF for i in range(3000)) + body[start + 3000 :]
    with pytest.raises(InvalidImage) as err:
        validate_image(broken, "image/jpeg", ValidationOptions(max_side=512))
    assert err.value.reason == "corrupt_image"


def test_bomb_limit_applies_before_any_scaled_decode(spy: _DraftSpy) -> None:
    body = _jpeg(Image.new("RGB", (3000, 2000), (1, 2, 3)))
    with pytest.raises(InvalidImage) as err:
        validate_image(body, "image/jpeg", ValidationOptions(max_pixels=5_000_000))
    assert err.value.reason == "decompression_bomb"
    assert spy.calls == []
