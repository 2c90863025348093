"""Image validation: decode, bombs, minimum side, HTML, resize and re-encode."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image

from gbifdl_assets.media.validate import InvalidImage, ValidationOptions, sniff_format, validate_image
from gbifdl_assets.specs import ImageOptions


def _image(size=(320, 240), fmt="JPEG", mode="RGB", **save) -> bytes:
    im = Image.new(mode, size, (200, 30, 40) if mode == "RGB" else None)
    if mode == "RGBA":
        im = Image.new("RGBA", size, (0, 0, 255, 0))
        im.paste((255, 0, 0, 255), (0, 0, size[0] // 2, size[1]))
    for x in range(0, size[0], 7):  # some detail so JPEG has real entropy-coded data
        im.putpixel((x, (x * 3) % size[1]), (0, 0, 0) if mode == "RGB" else (0, 0, 0, 255))
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def _reason(body: bytes, options: ValidationOptions | None = None, ctype: str | None = "image/jpeg") -> str:
    with pytest.raises(InvalidImage) as err:
        validate_image(body, ctype, options or ValidationOptions())
    return err.value.reason


def test_jpeg_within_max_side_is_kept_byte_for_byte() -> None:
    body = _image()
    out = validate_image(body, "image/jpeg", ValidationOptions(max_side=512))
    assert out.data is body and not out.reencoded
    assert (out.width, out.height, out.format, out.ext, out.content_type) == (
        320,
        240,
        "JPEG",
        "jpg",
        "image/jpeg",
    )
    assert out.sha256 == hashlib.sha256(body).hexdigest()


def test_large_jpeg_is_resized_to_max_side() -> None:
    body = _image((2000, 1000))
    out = validate_image(body, "image/jpeg", ValidationOptions(max_side=256, quality=80))
    assert out.reencoded and (out.width, out.height) == (256, 128)
    assert Image.open(io.BytesIO(out.data)).size == (256, 128)
    assert out.sha256 == hashlib.sha256(out.data).hexdigest()  # of the stored bytes


def test_png_with_alpha_to_jpeg_is_flattened_on_white() -> None:
    out = validate_image(_image((100, 100), "PNG", "RGBA"), "image/png", ValidationOptions(max_side=None))
    assert out.format == "JPEG" and out.reencoded
    im = Image.open(io.BytesIO(out.data))
    assert im.mode == "RGB"
    r, g, b = im.getpixel((90, 50))  # the transparent half
    assert min(r, g, b) > 240


@pytest.mark.parametrize(
    ("fmt", "ext", "mime"), [("png", "png", "image/png"), ("webp", "webp", "image/webp")]
)
def test_reencode_to_other_formats(fmt: str, ext: str, mime: str) -> None:
    out = validate_image(_image(), "image/jpeg", ValidationOptions(max_side=None, format=fmt))
    assert (out.ext, out.content_type) == (ext, mime)
    assert Image.open(io.BytesIO(out.data)).format == fmt.upper()


def test_original_keeps_any_allowed_format() -> None:
    gif = _image((80, 80), "GIF")
    out = validate_image(gif, "image/gif", ValidationOptions(max_side=None, format="original"))
    assert out.data is gif and (out.format, out.ext) == ("GIF", "gif")


def test_html_empty_and_garbage_are_not_images() -> None:
    html = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
    assert _reason(html, ctype="text/html; charset=utf-8") == "not_an_image"
    assert _reason(html, ctype="image/jpeg") == "not_an_image"  # lying content type
    assert _reason(b"") == "not_an_image"
    assert _reason(b'{"error": "not found"}', ctype="application/json") == "not_an_image"
    assert _reason(b"\x00\x00\x00\x18ftypmp42" + bytes(64), ctype="video/mp4") == "not_an_image"
    with pytest.raises(InvalidImage, match="HTML/text"):
        validate_image(html, "text/html", ValidationOptions())


def test_truncated_and_corrupt_images_fail() -> None:
    body = _image()
    assert _reason(body[: len(body) // 2]) == "truncated"
    assert _reason(body[:40]) in ("truncated", "corrupt_image")
    png = _image((64, 64), "PNG")
    broken = bytearray(png)
    broken[60:70] = b"\xff" * 10  # inside IDAT: CRC / zlib failure
    assert _reason(bytes(broken), ctype="image/png") in ("corrupt_image", "truncated")


def test_min_side() -> None:
    assert _reason(_image((100, 40)), ValidationOptions(min_side=64)) == "too_small"
    assert validate_image(_image((100, 64)), "image/jpeg", ValidationOptions(min_side=64)).height == 64


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size: IHDR plus a few bytes of IDAT (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_the_header() -> None:
    bomb = _png_header_only(100_000, 100_000)  # 10 gigapixels declared
    assert len(bomb) < 200
    with pytest.raises(InvalidImage) as err:
        validate_image(bomb, "image/png", ValidationOptions())
    assert err.value.reason == "decompression_bomb"
    # our own, lower limit applies too (Pillow's global setting is not touched)
    moderate = _png_header_only(5000, 5000)
    assert (
        _reason(moderate, ValidationOptions(max_pixels=1_000_000), ctype="image/png") == "decompression_bomb"
    )
    assert Image.MAX_IMAGE_PIXELS == 89_478_485 or Image.MAX_IMAGE_PIXELS is None


def test_sniff_format() -> None:
    assert sniff_format(_image()[:16]) == "JPEG"
    assert sniff_format(_image((8, 8), "PNG")[:16]) == "PNG"
    assert sniff_format(_image((8, 8), "WEBP")[:16]) == "WEBP"
    assert sniff_format(b"<html>") is None


def test_options_and_variant() -> None:
    assert ValidationOptions().variant == "jpeg-512-q90"
    assert ValidationOptions(max_side=None, format="webp", quality=70).variant == "webp-full-q70"
    assert ValidationOptions(max_side=None, format="original").variant == "original"
    with pytest.raises(ValueError, match="cannot resize"):
        ValidationOptions(format="original", max_side=256)
    with pytest.raises(ValueError, match="format"):
        ValidationOptions(format="tiff")
    spec = ImageOptions(max_side=256, min_side=32, format="webp", quality=75)
    opts = ValidationOptions.from_image_options(spec)
    assert (opts.max_side, opts.min_side, opts.format, opts.quality) == (256, 32, "webp", 75)
