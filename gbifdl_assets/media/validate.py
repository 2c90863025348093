"""Is a downloaded body a usable image, and which bytes do we store?

:func:`validate_image` decodes the body with Pillow and either returns what to store
(:class:`ValidImage`) or raises :class:`InvalidImage` with a ledger reason:

* ``not_an_image``: HTML/text/JSON (an error or sign-in page served with status 200 is common on
  media hosts), an empty body, or bytes no allowed decoder recognises;
* ``decompression_bomb``: declared width × height above ``max_pixels``, refused from the header
  alone, before any pixel is decoded (a 100 KB PNG can declare 10 gigapixels);
* ``truncated`` / ``corrupt_image``: the decoder stops early or fails;
* ``too_small``: the shorter side is below ``min_side``.

Decoding is complete (``verify()`` for the container checks, then ``load()``), so a truncated
JPEG is caught. libjpeg's DCT scaling ("draft" mode) makes JPEGs cheap without skipping any of
that: every entropy-coded byte is still decoded (truncation and bad Huffman data are still
detected), only the inverse DCT, colour conversion and everything after run on fewer pixels. A JPEG
kept as is is decoded at 1/8 scale (~3x cheaper); one that is resized at the smallest scale (1/8,
1/4, 1/2) that still covers the target size on both sides, then resized once (what is left is a
factor below 2, so a short filter is enough; the exact source box of the scaled decode is used),
turned upright by its EXIF orientation (on the small image) and encoded once. On the benchmark's
photos (0.3-12 MP, see ``bench_images.py``) that is ~16 ms per photo where the scaled decode alone
takes ~13 ms (and the previous path took ~24 ms, OpenCV's full decode + resize ~50 ms). Other
formats take the general path (full decode, EXIF orientation, Lanczos thumbnail).

What is stored: the downloaded bytes unchanged when they already are in the target format and
within ``max_side`` (no generation loss, no CPU spent), else the image resized so that its longer
side is ``max_side`` (EXIF orientation applied first) and re-encoded as JPEG/PNG/WebP with
``quality`` (JPEG without Huffman optimisation: it saved 1.6 % of the bytes of 512 px photos for
125 % more encoding time). ``format="original"`` always keeps the downloaded bytes (and cannot
resize). ICC profiles are kept where Pillow keeps them by default (PNG), transparency is flattened
onto white for JPEG.

Thread-safe and free of global state (Pillow's ``Image.MAX_IMAGE_PIXELS`` is left alone; its own
limit still applies on top of ``max_pixels``): the downloader runs it in a thread pool, and Pillow
releases the GIL while decoding.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.media.phash import phash_hex

if TYPE_CHECKING:
    from gbifdl_assets.specs import ImageOptions

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "InvalidImage",
    "ValidImage",
    "ValidationOptions",
    "fit_within",
    "sniff_format",
    "validate_image",
]

#: Pillow's own default limit (~9459 × 9459); far above any useful training image.
DEFAULT_MAX_PIXELS = 89_478_485
#: Decoders we let run on untrusted bytes. Pillow knows ~40 formats; exotic ones are a larger attack
#: surface and never serve as biodiversity media. MPO is the multi-picture JPEG some phones write.
ALLOWED_DECODERS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "MPO")
_TARGETS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "TIFF": "tif", "BMP": "bmp"}
_MIME = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
#: The filter of the one resize after a scaled JPEG decode. What is left by then is a factor below 2,
#: and the choice hardly shows once the result is encoded: on the benchmark's photos, against a full
#: decode resized with Lanczos, the resized pixels are at 43.5 dB PSNR with Hamming (46.3 bicubic,
#: 49.6 Lanczos) and the stored JPEG q90 at 35.7 dB (35.9, 36.0); Hamming costs 2.2 ms per photo,
#: bicubic 3.4, Lanczos 4.6 (on top of a ~13 ms scaled decode).
RESAMPLE = Image.Resampling.HAMMING
#: EXIF orientations that flip or rotate (1 is upright; other values are invalid and ignored)
_TRANSPOSED = frozenset(range(2, 9))
#: Only when libjpeg could not scale (e.g. a multi-tile JPEG): reduce() by an integer factor first.
_REDUCING_GAP = 3.0
#: the perceptual hash reads a 64x64 reduction: a scaled JPEG decode stays at least this large
_HASH_SIDE = 64
_TEXT_TYPES = ("text/", "application/json", "application/ld+json", "application/xhtml", "application/xml")


class InvalidImage(GbifdlError):
    """The body is not a usable image; ``reason`` goes to the ledger, ``str()`` to its error column."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ValidationOptions:
    """How bodies are checked and what is stored (the image part of a training-set spec)."""

    max_side: int | None = 512
    min_side: int = 64
    format: str = "jpeg"  # jpeg | png | webp | original
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        problems = []
        if self.format not in (*_TARGETS, "original"):
            problems.append(f"format={self.format!r}: use jpeg, png, webp or original")
        if self.format == "original" and self.max_side is not None:
            problems.append(
                "format 'original' keeps the downloaded bytes and cannot resize: set max_side=None"
            )
        if self.max_side is not None and self.max_side < 1:
            problems.append(f"max_side={self.max_side}: must be positive or None")
        if self.min_side < 1:
            problems.append(f"min_side={self.min_side}: must be >= 1")
        if not 1 <= self.quality <= 100:
            problems.append(f"quality={self.quality}: must be between 1 and 100")
        if self.max_pixels < 1:
            problems.append(f"max_pixels={self.max_pixels}: must be positive")
        if problems:
            raise ValueError("invalid image options: " + "; ".join(problems))

    @classmethod
    def from_image_options(cls, options: ImageOptions, **overrides: Any) -> ValidationOptions:
        """From a spec's ``images`` section (specs.ImageOptions)."""
        values = {
            "max_side": options.max_side,
            "min_side": options.min_side,
            "format": options.format,
            "quality": options.quality,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def variant(self) -> str:
        """Names the stored bytes' derivation, e.g. ``jpeg-512-q90`` or ``original``.

        Part of the store key, so two training sets share an image only when it was derived the same
        way (a set asking for 256 px must not pick up another set's 1024 px copy).
        """
        if self.format == "original":
            return "original"
        return f"{self.format}-{self.max_side or 'full'}-q{self.quality}"


@dataclass(frozen=True)
class ValidImage:
    """What to store for one image, and what the ledger records about it."""

    data: bytes
    width: int
    height: int
    format: str  # Pillow's name of the stored format: JPEG, PNG, WEBP, GIF…
    content_type: str
    ext: str
    sha256: str
    reencoded: bool
    #: 256-bit perceptual hash of the decoded pixels, upright (64 hex characters; see .phash)
    phash: str | None = None


def sniff_format(head: bytes) -> str | None:
    """The image format the first bytes announce, or None (cheap pre-check before Pillow)."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM":
        return "BMP"
    return None


def _looks_like_text(body: bytes, content_type: str | None) -> bool:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype.startswith(_TEXT_TYPES):
        return True
    start = body[:256].lstrip().lower()
    return start.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"["))


def validate_image(body: bytes, content_type: str | None, options: ValidationOptions) -> ValidImage:
    """Decode ``body`` and return what to store; raise :class:`InvalidImage` otherwise."""
    if not body:
        raise InvalidImage("not_an_image", "empty body")
    sniffed = sniff_format(body[:16])
    if sniffed is None:
        what = (content_type or "no content type").split(";", 1)[0]
        kind = "an HTML/text page" if _looks_like_text(body, content_type) else "no known image format"
        raise InvalidImage("not_an_image", f"body is {kind} ({what}, {len(body)} bytes)")
    try:
        return _decode(body, options)
    except InvalidImage:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidImage("decompression_bomb", str(exc)) from None
    except UnidentifiedImageError as exc:
        raise InvalidImage("not_an_image", f"Pillow cannot identify the image: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        # Pillow signals broken data with any of these, depending on the plugin.
        text = str(exc) or type(exc).__name__
        reason = "truncated" if "truncated" in text.lower() or isinstance(exc, EOFError) else "corrupt_image"
        raise InvalidImage(reason, f"{type(exc).__name__}: {text}") from None


def _open(body: bytes) -> Image.Image:
    return Image.open(io.BytesIO(body), formats=ALLOWED_DECODERS)


def _decode(body: bytes, options: ValidationOptions) -> ValidImage:
    im = _open(body)
    width, height = im.size
    if width * height > options.max_pixels:
        raise InvalidImage(
            "decompression_bomb",
            f"declared size {width}x{height} = {width * height:,} pixels is above the limit of "
            f"{options.max_pixels:,} (max_pixels)",
        )
    if width <= 0 or height <= 0:
        raise InvalidImage("corrupt_image", f"declared size {width}x{height}")
    source_format = im.format or "?"
    if source_format not in ("JPEG", "MPO"):
        # verify() checks the container (PNG chunk CRCs…) without decoding; it invalidates the
        # object, so the pixels are loaded from a fresh one. Pillow's JPEG plugin has no verify()
        # of its own (load() below decodes every byte), so JPEGs skip the second parse.
        im.verify()
        im = _open(body)
    target = _TARGETS.get(options.format)
    too_big = options.max_side is not None and max(width, height) > options.max_side
    keep = options.format == "original" or (not too_big and _same_format(source_format, target))

    if min(width, height) < options.min_side:
        # Checked after verify() so a broken file says "corrupt", not "too small".
        raise InvalidImage(
            "too_small", f"{width}x{height}: the shorter side is below min_side={options.min_side}"
        )
    if keep:
        if source_format == "JPEG":
            # 1/8 scale, but never below the 64 px the perceptual hash reads
            im.draft(
                None, (min(width, max(_HASH_SIDE, width // 8)), min(height, max(_HASH_SIDE, height // 8)))
            )
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        im.load()
        stored_format = "JPEG" if source_format == "MPO" else source_format
        return ValidImage(
            data=body,
            width=width,
            height=height,
            format=stored_format,
            content_type=_MIME.get(source_format, "application/octet-stream"),
            ext=_EXT.get(source_format, "bin"),
            sha256=hashlib.sha256(body).hexdigest(),
            reencoded=False,
            phash=phash_hex(im, orientation if orientation in _TRANSPOSED else 1),
        )

    assert target is not None
    if source_format in ("JPEG", "MPO"):
        im = _load_jpeg(body, im, options.max_side if too_big else None)
    else:
        im.load()
        im = ImageOps.exif_transpose(im)
        if too_big:
            im.thumbnail((options.max_side, options.max_side), Image.Resampling.LANCZOS)  # type: ignore[arg-type]
    im = _convert_for(im, target)
    phash = phash_hex(im)  # upright already; on the pixels about to be encoded
    out = io.BytesIO()
    save_args: dict[str, Any] = {}
    if target == "JPEG":
        save_args = {"quality": options.quality}
    elif target == "WEBP":
        save_args = {"quality": options.quality, "method": 4}
    elif target == "PNG":
        save_args = {"optimize": False, "compress_level": 6}
    im.save(out, target, **save_args)
    data = out.getvalue()
    return ValidImage(
        data=data,
        width=im.width,
        height=im.height,
        format=target,
        content_type=_MIME[target],
        ext=_EXT[target],
        sha256=hashlib.sha256(data).hexdigest(),
        reencoded=True,
        phash=phash,
    )


def fit_within(width: int, height: int, side: int) -> tuple[int, int]:
    """The size ``Image.thumbnail((side, side))`` gives a ``width`` x ``height`` image.

    The longer side becomes ``side``; the other is rounded down or up, to whichever keeps the aspect
    ratio closest to the original's (at least 1). Unchanged when both sides are within ``side``.
    """
    if width <= side and height <= side:
        return width, height
    aspect = width / height
    if aspect <= 1:  # portrait or square: the height becomes ``side``
        x = min(math.floor(side * aspect), math.ceil(side * aspect), key=lambda n: abs(aspect - n / side))
        return max(x, 1), side
    y = min(
        math.floor(side / aspect),
        math.ceil(side / aspect),
        key=lambda n: 0 if n == 0 else abs(aspect - side / n),
    )
    return side, max(y, 1)


def _load_jpeg(body: bytes, im: Image.Image, max_side: int | None) -> Image.Image:
    """Decode a JPEG at the smallest DCT scale that covers the target, resize once, turn upright.

    The target is the size the displayed (EXIF-oriented) image gets with ``max_side``, mapped back to
    the stored orientation: libjpeg then decodes at 1/2, 1/4 or 1/8 scale (``draft``) whenever the
    scaled image is still at least as large as the target on both sides. It still reads every
    entropy-coded byte, so truncated and corrupt files fail as in a full decode, but the inverse DCT,
    colour conversion and the resize work on up to 64x fewer pixels. What is left (a factor below 2)
    is one resize with :data:`RESAMPLE`, using the exact source box the scaled decode covers; the
    rotation/flip from the EXIF (or XMP) orientation comes last, on the small image.
    """
    orientation = im.getexif().get(ExifTags.Base.Orientation, 1)  # EXIF, else XMP (Pillow reads both)
    target = None
    box = None
    if max_side is not None:
        swap = orientation in (5, 6, 7, 8)  # displayed with width and height exchanged
        shown = (im.height, im.width) if swap else im.size
        fitted = fit_within(*shown, max_side)
        target = (fitted[1], fitted[0]) if swap else fitted
        drafted = im.draft(None, target)
        if drafted is not None:
            box = drafted[1]
            if im.width < target[0] or im.height < target[1]:
                # Pillow picks the scale so that this cannot happen; should it ever, decode in full
                # rather than upscale a smaller decode.
                im, box = _open(body), None
    # The body is in memory: hand it to libjpeg in one piece rather than 64 KB ones, so it never
    # suspends mid-scan and resumes (~0.5 ms less per photo of the benchmark's mix, ~4 % of decoding).
    im.decodermaxblock = max(im.decodermaxblock, len(body))
    im.load()
    if target is not None and im.size != target:
        im = im.resize(target, RESAMPLE, box=box, reducing_gap=_REDUCING_GAP)
    if orientation in _TRANSPOSED:
        ImageOps.exif_transpose(im, in_place=True)
    return im


def _same_format(source: str, target: str | None) -> bool:
    return target is not None and (source == target or (source == "MPO" and target == "JPEG"))


def _convert_for(im: Image.Image, target: str) -> Image.Image:
    """A mode the target encoder accepts; transparency is flattened onto white for JPEG."""
    if target == "JPEG":
        if im.mode in ("RGB", "L"):
            return im
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return im.convert("RGB")
    if im.mode in ("RGB", "RGBA", "L", "LA") or (target == "PNG" and im.mode in ("P", "1", "I;16")):
        return im
    return im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
