"""The data card: ``datacard.md`` and ``datacard.html`` with a class chart and an occurrence map.

The PNGs are drawn with Pillow (already a dependency) rather than matplotlib: two simple figures do
not justify a plotting stack in the core. The map is an equirectangular projection of the
Natural Earth 1:110m country outlines (``annotations.areas.world_outlines_path()``) with one dot
per exported image's occurrence, when coordinates are known (manifest columns
``decimalLatitude``/``decimalLongitude`` or a ``coordinates`` table keyed by ``gbifID``).
"""

from __future__ import annotations

import io
import json
import os
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont

from gbifdl_assets.export.escape import html_text, md_text
from gbifdl_assets.export.license_display import license_label_or_code
from gbifdl_assets.storage import Storage

__all__ = ["CHART_KEY", "MAP_KEY", "class_chart_png", "occurrence_map_png", "write_datacard"]

CHART_KEY = "datacard/classes.png"
MAP_KEY = "datacard/map.png"
MAX_CHART_CLASSES = 40
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def class_chart_png(classes: Sequence[dict[str, Any]], *, top: int = MAX_CHART_CLASSES) -> bytes:
    """A horizontal bar chart of images per class (the ``top`` largest classes)."""
    items = sorted(classes, key=lambda c: (-c["count"], c["label"]))[:top]
    font = ImageFont.load_default()
    row, left, width = 16, 260, 760
    height = 40 + row * max(1, len(items))
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    title = f"Images per class ({len(items)} of {len(classes)} classes)" if items else "No classes"
    draw.text((8, 8), title, fill="black", font=font)
    peak = max((c["count"] for c in items), default=1) or 1
    for i, c in enumerate(items):
        y = 30 + i * row
        # Pillow's built-in font has ASCII glyphs only: fold accents so names stay readable
        raw = str(c.get("name") or c["label"])
        name = (
            unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().strip() or str(c["label"])
        )[:40]
        draw.text((8, y + 2), name, fill="black", font=font)
        bar = int((width - left - 60) * c["count"] / peak)
        draw.rectangle([left, y + 2, left + max(bar, 1), y + row - 3], fill=(66, 120, 180))
        draw.text((left + bar + 6, y + 2), str(c["count"]), fill="black", font=font)
    return _png(img)


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    kind, coords = geometry.get("type"), geometry.get("coordinates") or []
    if kind == "Polygon":
        return list(coords)
    if kind == "MultiPolygon":
        return [ring for poly in coords for ring in poly]
    return []


def occurrence_map_png(
    points: Sequence[tuple[float, float]],
    outlines_path: str | os.PathLike[str] | None,
    *,
    size: tuple[int, int] = (1000, 500),
) -> bytes:
    """Country outlines (GeoJSON) with one dot per (lon, lat) point, equirectangular."""
    w, h = size
    img = Image.new("RGB", (w, h), (235, 243, 250))
    draw = ImageDraw.Draw(img)

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return (lon + 180.0) / 360.0 * (w - 1), (90.0 - lat) / 180.0 * (h - 1)

    if outlines_path is not None:
        with open(outlines_path, encoding="utf-8") as fh:
            features = json.load(fh).get("features", [])
        for feature in features:
            for ring in _rings(feature.get("geometry") or {}):
                if len(ring) >= 3:
                    draw.polygon(
                        [xy(x, y) for x, y, *_ in ring], fill=(250, 250, 245), outline=(150, 150, 150)
                    )
    for lon, lat in points:
        x, y = xy(lon, lat)
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(200, 40, 40))
    draw.text((8, h - 16), f"{len(points)} occurrences", fill="black", font=ImageFont.load_default())
    return _png(img)


def _points(table: pa.Table, coordinates: pa.Table | None) -> list[tuple[float, float]]:
    cols = ("decimalLatitude", "decimalLongitude")
    if all(c in table.column_names for c in cols):
        source = table.select(["gbifID", *cols])
    elif coordinates is not None and all(c in coordinates.column_names for c in ("gbifID", *cols)):
        wanted = pa.table({"gbifID": table.column("gbifID")})
        source = wanted.join(
            coordinates.select(["gbifID", *cols]), "gbifID", join_type="inner", use_threads=False
        )
    else:
        return []
    pts = []
    for lat, lon in zip(source.column(cols[0]).to_pylist(), source.column(cols[1]).to_pylist(), strict=True):
        if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
            pts.append((float(lon), float(lat)))
    return pts


def _table_md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(md_text(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(md_text(v) for v in r) + " |" for r in rows]
    return out + [""]


def _table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html_text(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_datacard(
    table: pa.Table,
    out: Storage,
    *,
    training_set: str,
    classes: Sequence[dict[str, Any]],
    missing: int = 0,
    coordinates: pa.Table | None = None,
    world_outlines: str | os.PathLike[str] | None = None,
) -> None:
    """Write the two PNGs, then ``datacard.md`` and ``datacard.html`` linking them relatively."""
    if world_outlines is None:
        from gbifdl_assets.annotations.areas import world_outlines_path

        world_outlines = world_outlines_path()
    points = _points(table, coordinates)
    out.write_bytes(CHART_KEY, class_chart_png(classes))
    out.write_bytes(MAP_KEY, occurrence_map_png(points, world_outlines))

    splits = Counter(table.column("split").to_pylist())
    by_class_split = Counter(
        zip(table.column("label").to_pylist(), table.column("split").to_pylist(), strict=True)
    )
    split_names = sorted(splits, key=lambda s: (_SPLIT_ORDER.get(s, 9), s))
    licenses = Counter(table.column("license").to_pylist())
    n = table.num_rows

    class_rows = [
        [
            c["index"],
            c["label"],
            c.get("name") or "",
            *(by_class_split[(c["label"], s)] for s in split_names),
            c["count"],
        ]
        for c in classes
    ]
    class_head = ["index", "taxon key", "name", *split_names, "total"]
    split_rows = [[s, splits[s], f"{100 * splits[s] / n:.1f}%"] for s in split_names]
    lic_rows = [
        [license_label_or_code(k), k, v, f"{100 * v / n:.1f}%"]
        for k, v in sorted(licenses.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    map_note = (
        f"{len(points)} of {n} images have occurrence coordinates."
        if points
        else "No occurrence coordinates were available for this export; the map shows outlines only."
    )
    facts = (
        f"{n} images in {len(classes)} classes; {missing} manifest images were not stored and are left out."
    )

    md = [f"# Data card: {md_text(training_set)}", "", md_text(facts), ""]
    md += ["## Splits", "", *_table_md(["split", "images", "share"], split_rows)]
    md += ["## Classes", "", f"![Images per class]({CHART_KEY})", "", *_table_md(class_head, class_rows)]
    md += ["## Licences", "", *_table_md(["licence", "id", "images", "share"], lic_rows)]
    md += ["## Where the occurrences are", "", f"![Occurrence map]({MAP_KEY})", "", map_note, ""]
    md += [
        "## Credits and citation",
        "",
        "See `CREDITS.md` (per image) and `CITATION.md` (how to cite the data).",
        "",
    ]
    out.write_bytes("datacard.md", "\n".join(md).encode("utf-8"))

    title = html_text(f"Data card: {training_set}")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>{title}</h1><p>{html_text(facts)}</p>
<h2>Splits</h2>{_table_html(["split", "images", "share"], split_rows)}
<h2>Classes</h2><img src="{CHART_KEY}" alt="Images per class">{_table_html(class_head, class_rows)}
<h2>Licences</h2>{_table_html(["licence", "id", "images", "share"], lic_rows)}
<h2>Where the occurrences are</h2><img src="{MAP_KEY}" alt="Occurrence map"><p>{html_text(map_note)}</p>
<h2>Credits and citation</h2><p>See <a href="CREDITS.md">CREDITS.md</a> and <a href="CITATION.md">CITATION.md</a>.</p>
</body></html>
"""
    out.write_bytes("datacard.html", page.encode("utf-8"))
