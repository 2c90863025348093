"""The data card: ``datacard.md`` and ``datacard.html`` with a class chart and an occurrence map.

What it says, from :mod:`.facts` (the numbers croissant.json carries too): counts that add up (splits,
classes and licences each sum to the exported images; the map counts the exported images' distinct
occurrences), provenance (spec and fingerprint, snapshot and its source with the DOI, rules version,
manifest, dates), warnings for classes with fewer than ``min_class_images`` images in a split, the
licence mix, credits and who lacks one, identical files, measured biases, and how to load the export
(:mod:`.snippets`). Both renderings come from one list of blocks (:mod:`.render`), which escapes
every value from the data.

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
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont

from gbifdl_assets.export import render as r
from gbifdl_assets.export.credits import doi_url, query_text
from gbifdl_assets.export.datasets import search_page
from gbifdl_assets.export.escape import clean_value
from gbifdl_assets.export.facts import ExportFacts, bias_statements, collect_facts, license_mix, small_classes
from gbifdl_assets.export.snippets import loading_snippets
from gbifdl_assets.storage import Storage

__all__ = [
    "CHART_KEY",
    "MAP_KEY",
    "class_chart_png",
    "datacard_blocks",
    "occurrence_map_png",
    "write_datacard",
]

CHART_KEY = "datacard/classes.png"
MAP_KEY = "datacard/map.png"
MAX_CHART_CLASSES = 40
#: contributing datasets listed in the card (all of them are in CITATION.md)
MAX_CARD_DATASETS = 25
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


_PROVENANCE_LABELS = {
    "spec_name": "training-set spec",
    "spec_fingerprint": "spec fingerprint",
    "snapshot_id": "occurrence snapshot",
    "rules_version": "annotation rules version",
    "manifest_id": "manifest",
    "date": "data retrieved",
    "version": "export version",
    "url": "home page",
}
_SOURCE_NOTE = {
    "creator": "by the media creator",
    "rightsHolder": "by the media rights holder",
    "record_rightsHolder": "by the record's rights holder",
    "recordedBy": "by the recorder",
    "publisher": "by the dataset's publisher",
}


def _provenance_rows(
    provenance: dict[str, Any], sources: Sequence[dict[str, Any]], created: str
) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for key, label in _PROVENANCE_LABELS.items():
        if provenance.get(key) not in (None, ""):
            value = provenance[key]
            rows.append([label, r.Link(value, value) if key == "url" else value])
    for s in sources:
        if s.get("doi"):
            rows.append(
                [
                    "snapshot source",
                    r.Link(f"GBIF occurrence download {doi_url(s['doi'])}", doi_url(s["doi"])),
                ]
            )
        else:
            rows.append(
                ["snapshot source", f"GBIF search API, {s.get('date', 'date not recorded')}: {query_text(s)}"]
            )
            page = search_page(s.get("params", s.get("query")))
            if page:
                rows.append(["the same search on gbif.org", r.Link(page, page)])
    known = {*_PROVENANCE_LABELS, "snapshot_source"}
    rows += [
        [k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)]
        for k, v in provenance.items()
        if k not in known
    ]
    rows.append(["exported", created])
    return rows


def _dataset_blocks(datasets: Sequence[dict[str, Any]]) -> list[r.Block]:
    """The contributing datasets by title, publisher and DOI, linked to gbif.org (most images first)."""
    if not datasets:
        return []
    shown = datasets[:MAX_CARD_DATASETS]
    rows = [
        [
            r.Link(d["title"] or d["key"], d["url"]),
            r.Link(d["publisher"] or d["publisher_key"] or "unknown", d["publisher_url"]),
            r.Link(d["doi"], d["doi_url"]) if d["doi"] else "",
            d["images"],
        ]
        for d in shown
    ]
    rest = len(datasets) - len(shown)
    more = f" The {rest} others are listed in CITATION.md." if rest > 0 else ""
    return [
        r.Heading("Contributing datasets"),
        r.Para([f"The images come from {len(datasets)} GBIF datasets; cite them as CITATION.md says.{more}"]),
        r.Table(["dataset", "publisher", "DOI", "images"], rows),
    ]


def datacard_blocks(
    facts: ExportFacts,
    *,
    training_set: str,
    classes: Sequence[dict[str, Any]],
    missing: int = 0,
    provenance: dict[str, Any] | None = None,
    sources: Sequence[dict[str, Any]] = (),
    attribution_sources: dict[str, int] | None = None,
    unattributed: int = 0,
    dropped_unattributed: int = 0,
    min_class_images: int = 5,
    formats: Sequence[str] = ("imagefolder", "webdataset"),
    created: str = "",
    datasets: Sequence[dict[str, Any]] = (),
    duplicates: dict[str, Any] | None = None,
) -> list[r.Block]:
    """The data card as blocks (see :mod:`.render`); ``datasets`` is
    :func:`.datasets.contributing_datasets` of the export; ``duplicates`` the export's
    :meth:`.dedup.DuplicateReport.to_dict`."""
    provenance = dict(provenance or {})
    n = facts.images
    split_names = sorted(facts.splits, key=lambda s: (_SPLIT_ORDER.get(s, 9), s))
    dropped = (
        f"; {dropped_unattributed} were left out for lack of a name to credit" if dropped_unattributed else ""
    )
    blocks: list[r.Block] = [
        r.Heading(f"Data card: {training_set}", 1),
        r.Para(
            [
                f"{n} images of {facts.occurrences} occurrences in {len(classes)} classes "
                f"({', '.join(f'{s} {facts.splits[s]}' for s in split_names)}). {missing} manifest images "
                f"were not stored and are left out{dropped}."
            ]
        ),
        r.Heading("Provenance"),
    ]
    if provenance or sources:
        blocks.append(r.Table(["what", "value"], _provenance_rows(provenance, sources, created)))
    else:
        blocks.append(
            r.Para(
                [
                    "No provenance was given to this export: the spec, snapshot and rules it was built from are not recorded."
                ]
            )
        )
    blocks += [
        r.Heading("Splits"),
        r.Table(
            ["split", "images", "share"],
            [[s, facts.splits[s], f"{100 * facts.splits[s] / n:.1f}%"] for s in split_names]
            + [["total", n, "100%"]],
        ),
        r.Heading("Classes"),
        r.Image(CHART_KEY, "Images per class"),
        r.Table(
            ["index", "taxon key", "name", *split_names, "total"],
            [
                [
                    c["index"],
                    c["label"],
                    c.get("name") or "",
                    *(facts.class_split[(c["label"], s)] for s in split_names),
                    c["count"],
                ]
                for c in classes
            ],
        ),
    ]
    small = small_classes(facts, classes, min_class_images)
    if small:
        blocks += [
            r.Para(
                [
                    f"Warning: {len(small)} class/split pairs have fewer than {min_class_images} images; metrics on them are noisy:"
                ]
            ),
            r.Table(
                ["class", "taxon key", "split", "images"],
                [[c.get("name") or "", c["label"], s, k] for c, s, k in small],
            ),
        ]
    else:
        blocks.append(r.Para([f"Every class has at least {min_class_images} images in every split."]))
    blocks += [
        r.Heading("Licences"),
        r.Table(
            ["licence", "id", "images", "share"],
            [[label, lic, k, f"{pct:.1f}%"] for label, lic, k, pct in license_mix(facts)]
            + [["total", "", n, "100%"]],
        ),
        r.Para(
            [
                "Each image may be reused only under its own licence and with its credit (CREDITS.md, credits.csv)."
            ]
        ),
        *_dataset_blocks(datasets),
        r.Heading("Credits"),
    ]
    credit = [f"{k} {_SOURCE_NOTE.get(src, src)}" for src, k in (attribution_sources or {}).items()]
    blocks.append(r.Para([f"Images credited: {', '.join(credit) or 'none'}."]))
    if unattributed:
        fate = "left out" if dropped_unattributed else "kept and marked 'no name on record' in CREDITS.md"
        blocks.append(
            r.Para(
                [
                    f"Warning: {unattributed} images under an attribution licence have no name on record; they were {fate}."
                ]
            )
        )
    blocks += [r.Heading("Duplicates")]
    if duplicates is not None:
        blocks.append(r.Para([_dedup_sentence(duplicates)]))
    if facts.duplicate_groups:
        blocks.append(
            r.Para(
                [
                    f"{facts.duplicate_images} images are byte-identical copies in {facts.duplicate_groups} groups; "
                    f"{facts.cross_split_groups} groups span more than one split (a leak between splits)."
                ]
            )
        )
    else:
        blocks.append(r.Para(["No two exported images have identical bytes."]))
    located = len(facts.points)
    map_note = (
        f"{located} of the {facts.occurrences} exported occurrences ({n} images) have coordinates; one dot per occurrence."
        if located
        else "No occurrence coordinates were available for this export; the map shows outlines only."
    )
    blocks += [
        r.Heading("Where the occurrences are"),
        r.Image(MAP_KEY, "Occurrence map"),
        r.Para([map_note]),
        r.Heading("Biases and limitations"),
        r.Bullets([[b] for b in bias_statements(facts, classes)]),
        r.Heading("How to load it"),
    ]
    for tool, needs, code in loading_snippets(formats):
        blocks.append(r.Code(code, "python", caption=[f"{tool} (needs {needs}):"]))
    blocks += [
        r.Heading("Credits and citation"),
        r.Para(
            [
                "See CREDITS.md (per image), CITATION.md (how to cite the data) and croissant.json (machine-readable)."
            ]
        ),
    ]
    return blocks


def _dedup_sentence(d: dict[str, Any]) -> str:
    if not d.get("clusters"):
        return (
            "No two stored images are copies of each other (identical bytes, or perceptual hashes within "
            f"{d.get('max_distance', '?')} of 256 bits)."
        )
    return (
        f"{d['clusters']} clusters of copies ({d['images_in_clusters']} stored images: identical bytes, or "
        f"perceptual hashes within {d['max_distance']} of 256 bits) were found; every cluster is in one split "
        f"(its representative's): {d['moved']} images were moved to it and {d['dropped']} copies inside a "
        "split were left out."
    )


def write_datacard(
    table: pa.Table,
    out: Storage,
    *,
    training_set: str,
    classes: Sequence[dict[str, Any]],
    missing: int = 0,
    coordinates: pa.Table | None = None,
    world_outlines: str | os.PathLike[str] | None = None,
    facts: ExportFacts | None = None,
    **card: Any,
) -> ExportFacts:
    """Write the two PNGs, then ``datacard.md`` and ``datacard.html`` linking them relatively.

    ``coordinates`` is the records table (see :func:`.facts.collect_facts`); ``card`` takes the
    keyword arguments of :func:`datacard_blocks` (provenance, sources, min_class_images, ...).
    """
    if world_outlines is None:
        from gbifdl_assets.annotations.areas import world_outlines_path

        world_outlines = world_outlines_path()
    facts = facts if facts is not None else collect_facts(table, coordinates)
    out.write_bytes(CHART_KEY, class_chart_png(classes))
    out.write_bytes(MAP_KEY, occurrence_map_png(facts.points, world_outlines))
    if "provenance" in card:
        card["provenance"] = clean_value(dict(card["provenance"] or {}))
    blocks = datacard_blocks(facts, training_set=training_set, classes=classes, missing=missing, **card)
    out.write_bytes("datacard.md", r.to_markdown(blocks).encode("utf-8"))
    out.write_bytes("datacard.html", r.to_html(f"Data card: {training_set}", blocks).encode("utf-8"))
    return facts
