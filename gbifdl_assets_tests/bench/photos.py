"""Camera-like test photos for the image benchmark, generated deterministically and cached.

GBIF media are mostly originals of 0.3 to 12 megapixels (iNaturalist serves up to 2048 px on the long
side; cameras and phones 8 to 12 MP; some hosts PNG). A flat or purely random image would compress
nothing like a photo, so each one is a small scene: an out-of-focus background, sharp-edged foliage,
a textured subject in focus, uneven light and vignetting, luma and chroma sensor noise, and a slight
lens blur. At quality 92 a 1600x1200 one is ~390 KB (~0.2 bytes per pixel), like the photos the
issue measured; bigger ones compress a little better, as real ones do (more smooth area per pixel).

The set is cached under a key made of :data:`GENERATOR_VERSION`, a hash of this file's source and the
versions of numpy and Pillow, so a changed generator (or encoder) never reuses a stale set.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["GENERATOR_VERSION", "MIX", "cache_key", "photo", "photo_set"]

#: Bump when the pictures change on purpose (the source hash catches the rest).
GENERATOR_VERSION = 1

#: (format, width, height, weight): the size mix, weights in percent.
MIX: tuple[tuple[str, int, int, int], ...] = (
    ("jpeg", 640, 480, 8),
    ("jpeg", 800, 600, 6),
    ("jpeg", 1024, 768, 8),
    ("jpeg", 1280, 960, 6),
    ("jpeg", 1600, 1200, 14),
    ("jpeg", 2048, 1536, 14),  # iNaturalist's "original" size
    ("jpeg", 2048, 1365, 8),
    ("jpeg", 2400, 1600, 6),
    ("jpeg", 3000, 2000, 8),
    ("jpeg", 3264, 2448, 6),  # 8 MP
    ("jpeg", 4000, 3000, 11),  # 12 MP
    ("png", 800, 600, 3),
    ("png", 1200, 900, 2),
)

_PALETTES = (  # background, foliage dark, foliage light, subject a, subject b
    ((92, 120, 60), (35, 55, 25), (120, 160, 70), (200, 150, 40), (120, 60, 20)),
    ((150, 180, 210), (70, 90, 50), (140, 150, 90), (230, 230, 220), (60, 50, 45)),
    ((110, 95, 80), (60, 50, 40), (160, 140, 110), (180, 60, 90), (250, 200, 210)),
    ((60, 70, 90), (20, 30, 35), (90, 110, 100), (240, 180, 30), (30, 30, 30)),
    ((170, 160, 130), (90, 80, 60), (200, 190, 160), (40, 40, 40), (200, 80, 30)),
)


def cache_key() -> str:
    """Names a generated set: version, source hash and the numpy/Pillow versions."""
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return f"v{GENERATOR_VERSION}-{source}-np{np.__version__}-pil{Image.__version__}"


def _field(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Smooth noise with about ``cells`` features across: bicubic upsampling of a small grid."""
    gw, gh = max(2, cells), max(2, round(cells * h / w))
    small = rng.standard_normal((gh, gw), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BICUBIC))


def photo(seed: int, width: int, height: int) -> Image.Image:
    """One camera-like RGB picture (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    w, h = width, height
    pal = np.asarray(_PALETTES[seed % len(_PALETTES)], np.float32)
    pal = np.clip(pal + rng.normal(0, 15, pal.shape), 0, 255).astype(np.float32)
    # background: a blurred (out of focus) blend of two colours
    t = (0.5 + 0.35 * _field(rng, w, h, 4) + 0.15 * _field(rng, w, h, 16))[..., None]
    img = pal[0] * (1 - t) + pal[2] * t
    # foliage: sharp-edged patches (leaves, grass) from thresholded mid-frequency noise
    leaf = (_field(rng, w, h, 40) + 0.5 * _field(rng, w, h, 120) > 0.6)[..., None]
    shade = (0.5 + 0.5 * np.tanh(_field(rng, w, h, 80)))[..., None]
    img = np.where(leaf, pal[1] * (1 - shade) + pal[2] * shade, img)
    # subject: in focus, striped and textured, roughly elliptical
    yy, xx = (a.astype(np.float32) for a in np.ogrid[:h, :w])  # float32 all along: 2x faster
    cx, cy = np.float32(w * rng.uniform(0.35, 0.65)), np.float32(h * rng.uniform(0.35, 0.65))
    rx, ry = np.float32(w * rng.uniform(0.15, 0.3)), np.float32(h * rng.uniform(0.15, 0.3))
    r = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 + np.float32(0.3) * _field(rng, w, h, 10)
    detail = _field(rng, w, h, max(8, w // 6)) + 0.6 * _field(rng, w, h, max(8, w // 2))
    stripes = 0.5 + 0.5 * np.sin(xx * np.float32(6.0 / rx) + 3 * _field(rng, w, h, 6))
    s = np.clip(stripes + 0.25 * detail, 0, 1)[..., None]
    img = np.where((r < 1.0)[..., None], pal[3] * (1 - s) + pal[4] * s, img)
    # uneven light and vignetting
    half_w, half_h = np.float32(w / 2), np.float32(h / 2)
    vignette = 1 - np.float32(0.25) * (((xx - half_w) / half_w) ** 2 + ((yy - half_h) / half_h) ** 2)
    img *= ((1 + np.float32(0.15) * _field(rng, w, h, 3)) * vignette)[..., None]
    # sensor noise: luma, and a little chroma
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(3.0)
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(1.2)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.6))  # lens and demosaicing softness


def _spec(index: int) -> dict:
    """What picture ``index`` of a set is: size, format and encoder settings (deterministic)."""
    rng = np.random.default_rng([20260, index])
    weights = np.asarray([m[3] for m in MIX], float)
    fmt, w, h, _ = MIX[int(rng.choice(len(MIX), p=weights / weights.sum()))]
    spec = {"index": index, "format": fmt, "width": w, "height": h, "orientation": 1}
    if fmt == "jpeg":
        portrait = rng.random() < 0.25
        if portrait and rng.random() < 0.5:
            spec["orientation"] = 6  # a phone held upright: landscape pixels, EXIF says rotate
        elif portrait:
            spec["width"], spec["height"] = h, w
        spec["quality"] = int(rng.choice([85, 88, 90, 92, 95]))
        spec["progressive"] = bool(rng.random() < 0.15)
        spec["subsampling"] = int(rng.choice([2, 1, 0], p=[0.75, 0.15, 0.10]))  # 4:2:0, 4:2:2, 4:4:4
    return spec


def _render(spec: dict) -> bytes:
    im = photo(1000 + spec["index"], spec["width"], spec["height"])
    buf = io.BytesIO()
    if spec["format"] == "png":
        im.save(buf, "PNG", compress_level=6)
    else:
        exif = Image.Exif()
        exif[0x010F] = "Bench Camera"  # Make
        exif[0x0110] = "Model 1"  # Model
        exif[0x0112] = spec["orientation"]
        im.save(
            buf,
            "JPEG",
            quality=spec["quality"],
            progressive=spec["progressive"],
            subsampling=spec["subsampling"],
            exif=exif.tobytes(),
        )
    return buf.getvalue()


def _write(args: tuple[dict, str]) -> dict:
    spec, folder = args
    data = _render(spec)
    name = f"{spec['index']:05d}.{'png' if spec['format'] == 'png' else 'jpg'}"
    Path(folder, name).write_bytes(data)
    return {**spec, "file": name, "bytes": len(data)}


def photo_set(cache: Path, count: int, workers: int | None = None) -> tuple[Path, list[dict]]:
    """``count`` pictures under ``cache``/photos-<key>-<count>/ (generated once), and their specs."""
    folder = cache / f"photos-{cache_key()}-{count}"
    index = folder / "index.json"
    if index.is_file():
        return folder, json.loads(index.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    specs = [_spec(i) for i in range(count)]
    # largest first, so the pool's last task is a small one
    specs.sort(key=lambda s: -s["width"] * s["height"])
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        done = list(pool.map(_write, [(s, str(folder)) for s in specs]))
    done.sort(key=lambda s: s["index"])
    tmp = index.with_suffix(".part")
    tmp.write_text(json.dumps(done))
    tmp.replace(index)
    return folder, done
