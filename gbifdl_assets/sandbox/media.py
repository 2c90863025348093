"""Media server: a deterministic image per media URL, plus switchable faults.

Images encode the species, so a model trained on sandbox data has something real to learn: the
genus fixes the background palette and the body outline (ellipse, star, polygon, wings…), the
species fixes body colours and the pattern (spots, stripes, rings), and each image varies position,
size, rotation, lighting and sensor noise. Output is a ~12 KB 320×240 JPEG by default.

Faults (``?fault=`` on any media URL, or hidden on a deterministic ``media_fault_rate`` share of the
generated URLs): ``404 410 500 503 429 flaky slow timeout truncated cut html empty redirect3 png``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import hashing
from .duplicates import DEFAULT_DUPLICATE_RATE, copy_of, resized_copy
from .records import media_format, media_url
from .world import MF_FAULT, MF_FAULT_KIND, World, media_items, media_salt

FAULTS = (
    "404",
    "410",
    "500",
    "503",
    "429",
    "flaky",
    "slow",
    "timeout",
    "truncated",
    "cut",
    "html",
    "empty",
    "redirect1",
    "redirect2",
    "redirect3",
    "png",
)
#: faults hidden behind ordinary-looking URLs: all quick to observe (no slow/timeout/cut), so that
#: pipelines over thousands of images stay fast while still meeting every failure class
HIDDEN_FAULTS = ("404", "410", "500", "429", "flaky", "truncated", "html", "empty", "redirect3")


def hidden_fault(world: World, rate: float, key: int, item: int) -> str | None:
    """The fault a generated media URL carries without saying so (None for most URLs)."""
    if rate <= 0 or hashing.unit(world.seed, key, media_salt(item, MF_FAULT)) >= rate:
        return None
    return HIDDEN_FAULTS[hashing.pick(world.seed, key, media_salt(item, MF_FAULT_KIND), len(HIDDEN_FAULTS))]


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def _outline(shape: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-size outline points of a body shape (genus-level trait)."""
    t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    if shape == 0:  # ellipse
        pts = np.stack([np.cos(t), 0.55 * np.sin(t)], 1)
    elif shape == 1:  # five-point star
        r = np.where(np.arange(72) % 14 < 7, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif shape == 2:  # wings (butterfly-like)
        r = 0.35 + 0.65 * np.abs(np.sin(2 * t)) ** 0.6
        pts = np.stack([r * np.cos(t), 0.8 * r * np.sin(t)], 1)
    elif shape == 3:  # hexagon
        a = np.linspace(0, 2 * math.pi, 6, endpoint=False)
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif shape == 4:  # leaf
        pts = np.stack([np.cos(t), 0.35 * np.sin(t) * (1 + 0.6 * np.cos(t))], 1)
    else:  # cross / flower
        r = 0.55 + 0.45 * np.cos(4 * t) ** 2
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    return pts


def render_image(
    seed: int,
    species_key: int,
    genus_key: int,
    key: int,
    item: int,
    size: tuple[int, int] = (320, 240),
    quality: int = 80,
    fmt: str = "JPEG",
) -> bytes:
    return _render_cached(seed, species_key, genus_key, key, item, size, quality, fmt)


#: clutter masks (out-of-focus blobs, blurred) and a sensor-noise tile are rendered once per (seed,
#: size), the costly part of a picture; an image takes a window of one mask at its own offset and
#: orientation, its own gradient (computed on a small grid, scaled up) and noise window, and draws its
#: organism (position, size, rotation, species colours and pattern) itself, so every image stays its
#: own photo for a perceptual hash (precision and recall of the 256-bit hash on the sandbox's
#: duplicate ground truth stay 1.0 at distance 31). A 320x240 image took 11.4 ms, now 2.7 ms.
FIELDS = 64
_ORIENTATIONS = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_180,
)


@lru_cache(maxsize=4)
def _fields(seed: int, size: tuple[int, int]) -> tuple[Image.Image, ...]:
    """Masks of clutter (out-of-focus blobs on black), half as wide and high again as the image: an
    image takes the window at its own offset, in its own orientation."""
    w, h = (size[0] * 3 // 2, size[1] * 3 // 2)
    fields = []
    for index in range(FIELDS):
        r = np.random.default_rng([seed, index, 21])
        field = Image.new("L", (w, h), 0)
        clutter = ImageDraw.Draw(field)
        for _ in range(int(r.integers(6, 16))):
            cx, cy, rad = r.random() * w, r.random() * h, (10 + r.random() * 40) * max(size) / 320
            clutter.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=255)
        fields.append(field.filter(ImageFilter.GaussianBlur(3)))
    return tuple(fields)


def _gradient(size: tuple[int, int], angle: float) -> Image.Image:
    """A linear gradient (0 to 255) across the image in direction ``angle``, computed on a 16x12 grid
    and scaled up bilinearly (a fraction of a millisecond, where every pixel took milliseconds)."""
    y, x = np.mgrid[0:12, 0:16].astype(np.float32)
    grad = ((x / 15) * math.cos(angle) + (y / 11) * math.sin(angle) + 1) / 2
    small = Image.fromarray(np.clip(grad * 255, 0, 255).astype(np.uint8), "L")
    return small.resize(size, Image.Resampling.BILINEAR)


@lru_cache(maxsize=4)
def _noise(seed: int, size: tuple[int, int]) -> np.ndarray:
    """Sensor noise twice the image's size; an image adds the window at its own offset."""
    w, h = size
    r = np.random.default_rng([seed, w, h, 22])
    return np.clip(r.normal(0, 8, (2 * h, 2 * w, 3)), -40, 40).astype(np.int16)


@lru_cache(maxsize=512)
def _render_cached(seed, species_key, genus_key, key, item, size, quality, fmt) -> bytes:
    w, h = size
    g = np.random.default_rng([seed, genus_key, 11])
    s = np.random.default_rng([seed, species_key, 12])
    v = np.random.default_rng([seed, key, item, 13])

    # background: a genus palette over a gradient and pre-rendered clutter, lit differently per image
    hue = g.random()
    c1 = np.array(_hsv(hue, 0.35 + 0.2 * g.random(), 0.55 + 0.3 * g.random()), dtype=np.float32)
    c2 = np.array(_hsv((hue + 0.15 * g.random()) % 1, 0.3, 0.3 + 0.3 * g.random()), dtype=np.float32)
    gain = 0.8 + 0.4 * v.random()
    field = _fields(seed, size)[int(v.integers(FIELDS))]
    left, top = int(v.integers(field.width - w + 1)), int(v.integers(field.height - h + 1))
    field = field.crop((left, top, left + w, top + h))
    orientation = _ORIENTATIONS[int(v.integers(len(_ORIENTATIONS)))]
    if orientation is not None:
        field = field.transpose(orientation)
    first, second = (tuple(int(x) for x in np.clip(c * gain, 0, 255)) for c in (c1, c2))
    img = Image.composite(
        Image.new("RGB", size, second),
        Image.new("RGB", size, first),
        _gradient(size, v.random() * 2 * math.pi),
    )
    blobs = tuple(int(x) for x in np.clip(c2 * gain * (0.6 + 0.8 * v.random()), 0, 255))
    img = Image.composite(Image.new("RGB", size, blobs), img, field)

    # the organism: genus outline, species colours and pattern
    shape = int(g.integers(6))
    body = _hsv(s.random(), 0.6 + 0.4 * s.random(), 0.5 + 0.5 * s.random())
    accent = _hsv(s.random(), 0.5 + 0.5 * s.random(), 0.3 + 0.7 * s.random())
    pattern = int(s.integers(4))
    scale = min(w, h) * (0.28 + 0.14 * v.random())
    rot = v.random() * 2 * math.pi
    cx = w * (0.3 + 0.4 * v.random())
    cy = h * (0.3 + 0.4 * v.random())
    pts = _outline(shape, g) * scale
    rmat = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    pts = pts @ rmat.T + np.array([cx, cy])
    poly = [tuple(p) for p in pts]
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon(poly, fill=255)
    layer = Image.new("RGB", (w, h), body)
    draw = ImageDraw.Draw(layer)
    if pattern == 0:  # spots
        n = int(s.integers(3, 9))
        spots = s.random((n, 3))
        for sx, sy, sr in spots:
            px = cx + (sx - 0.5) * scale * 1.4
            py = cy + (sy - 0.5) * scale * 1.0
            r = scale * (0.06 + 0.1 * sr)
            draw.ellipse([px - r, py - r, px + r, py + r], fill=accent)
    elif pattern == 1:  # stripes
        n = int(s.integers(3, 7))
        for k in range(n):
            off = (k / n - 0.5) * 2 * scale
            a = np.array([-2 * scale, off]) @ rmat.T + [cx, cy]
            b = np.array([2 * scale, off]) @ rmat.T + [cx, cy]
            draw.line([tuple(a), tuple(b)], fill=accent, width=max(2, int(scale * 0.08)))
    elif pattern == 2:  # rings
        for k in range(int(s.integers(2, 4)), 0, -1):
            r = scale * 0.25 * k
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=accent, width=max(2, int(scale * 0.06)))
    else:  # eye spots on each side
        for side in (-1, 1):
            p = np.array([side * scale * 0.5, 0]) @ rmat.T + [cx, cy]
            r = scale * 0.18
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=accent)
            r2 = r * 0.45
            draw.ellipse([p[0] - r2, p[1] - r2, p[0] + r2, p[1] + r2], fill=body)
    img.paste(layer, (0, 0), mask)
    ImageDraw.Draw(img).line(poly + [poly[0]], fill=tuple(int(c * 0.5) for c in body), width=2)

    # sensor noise: realistic JPEG sizes and no pixel-perfect shortcuts
    ox, oy = int(v.integers(w)), int(v.integers(h))
    arr = np.asarray(img, dtype=np.int16) + _noise(seed, size)[oy : oy + h, ox : ox + w]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG", optimize=False)
    else:
        img.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def image_keys(world: World, row: int) -> tuple[int, int]:
    """(species-ish key, genus-ish key) that drive the look of a record's images."""
    tax = world.taxonomy
    t = int(world.occ.taxon[row])
    cls = tax.cls_keys[t]
    acc_key = int(tax.keys[tax.accepted[t]])
    species_key = int(cls[6]) or acc_key
    genus_key = int(cls[5]) or int(cls[4]) or acc_key
    return species_key, genus_key


def media_body(
    world: World,
    row: int,
    item: int,
    ext: str,
    *,
    size: tuple[int, int],
    quality: int,
    duplicate_rate: float = DEFAULT_DUPLICATE_RATE,
) -> tuple[bytes, str]:
    """Bytes and content type for an existing media item (no faults); a copy of another record's
    image where .duplicates says so."""
    key = int(world.occ.key[row])
    types = media_items(world.occ, row)
    mtype = types[item]
    if ext == "html" or mtype == 3:
        html = (
            f"<!DOCTYPE html><html><head><title>Media {key}/{item}</title></head>"
            f"<body><h1>Interactive resource</h1><p>Occurrence {key}</p></body></html>"
        )
        return html.encode(), "text/html; charset=utf-8"
    if ext == "json":
        doc = {
            "@context": "http://schema.org",
            "@type": "ImageObject",
            "identifier": f"{key}/{item}",
            "name": f"Media {item} of occurrence {key}",
        }
        return json.dumps(doc).encode(), "application/ld+json"
    if mtype == 1:
        return b"\x00\x00\x00\x18ftypmp42" + bytes(64), "video/mp4"
    if mtype == 2:
        return b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(64), "audio/mpeg"
    copy = copy_of(world, row, item, duplicate_rate)
    if copy is not None:
        source_key = int(world.occ.key[copy.source_row])
        source_ext = media_format(world, source_key, 0, 0)[1]
        body, ctype = media_body(
            world, copy.source_row, 0, source_ext, size=size, quality=quality, duplicate_rate=0
        )
        if copy.kind == "resized":
            body, ctype = resized_copy(body, copy.scale, copy.quality), "image/jpeg"
        if ext == "png" and ctype != "image/png":  # the ``png`` fault: the same picture as PNG
            out = io.BytesIO()
            Image.open(io.BytesIO(body)).save(out, "PNG")
            body, ctype = out.getvalue(), "image/png"
        return body, ctype
    sk, gk = image_keys(world, row)
    if ext == "png":
        return render_image(world.seed, sk, gk, key, item, size, quality, "PNG"), "image/png"
    return render_image(world.seed, sk, gk, key, item, size, quality), "image/jpeg"


ERROR_HTML = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>"
    b"<p>Please sign in to view this image.</p></body></html>"
)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def cached_item(world: World, row: int, digest: str, bases: list[str]) -> int | None:
    """The media item of record ``row`` whose identifier has md5 ``digest``, as GBIF's image cache
    finds it (``/v1/image/cache/occurrence/{gbifID}/media/{md5(identifier)}``).

    The identifier is the one records carry (under each of ``bases``); the same with a ``?fault=``
    query (test URLs that ask the media server to misbehave) counts too: GBIF cached the image while
    its link still worked.
    """
    key = int(world.occ.key[row])
    for item, mtype in enumerate(media_items(world.occ, row)):
        if mtype != 0:
            continue  # the cache holds images only
        ext = media_format(world, key, item, mtype)[1]
        for base in bases:
            identifier = media_url(base, key, item, ext)
            if _md5(identifier) == digest:
                return item
            plain = identifier.split("?", 1)[0]
            if any(_md5(f"{plain}?fault={f}") == digest for f in (*FAULTS, "none")):
                return item
    return None


def cache_copy(world: World, row: int, item: int, *, quality: int, size: tuple[int, int]) -> bytes:
    """GBIF's cached copy of an image: a JPEG of at most 1200x1200, quality at most 85 (Thumbor)."""
    sk, gk = image_keys(world, row)
    key = int(world.occ.key[row])
    w, h = size
    scale = min(1.0, 1200 / max(w, h))
    return render_image(world.seed, sk, gk, key, item, (int(w * scale), int(h * scale)), min(quality, 85))
