"""What an export holds, counted once: the data card and ``croissant.json`` say the same numbers.

Everything is counted over the *exported* images (not the manifest, not the snapshot). Occurrence
facts (coordinates, country, year) are counted per distinct exported occurrence (``gbifID``): an
occurrence with three exported images is one dot on the map, and one occurrence from a country.
They come from the export table itself when it has the columns, else from ``records`` (a table keyed
by ``gbifID``, e.g. the snapshot's media table, whose several rows per occurrence count once).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.export.license_display import license_label_or_code

__all__ = [
    "BASE_RECORD_COLUMNS",
    "RECORD_COLUMNS",
    "ExportFacts",
    "bias_statements",
    "collect_facts",
    "license_mix",
    "small_classes",
]

_LAT, _LON = "decimalLatitude", "decimalLongitude"
#: columns of ``records`` (the snapshot's media table, or ``gbifdl export --records``) the export uses:
#: the map, the biases, attribution fallbacks, and the snapshot's registry columns (contributing
#: datasets by title, publisher and DOI); a table that lacks some is read without them
RECORD_COLUMNS: tuple[str, ...] = (
    "gbifID",
    "decimalLatitude",
    "decimalLongitude",
    "countryCode",
    "year",
    "recordedBy",
    "record_rightsHolder",
    "datasetKey",
    "datasetTitle",
    "datasetName",
    "datasetDOI",
    "datasetLicense",
    "publishingOrgKey",
    "publishingOrganizationTitle",
    "publisher",
    "publisherTitle",
)
#: what every snapshot has had, for one whose snapshot.json does not list its columns
BASE_RECORD_COLUMNS: tuple[str, ...] = (
    "gbifID",
    "decimalLatitude",
    "decimalLongitude",
    "countryCode",
    "year",
    "recordedBy",
    "datasetKey",
)


@dataclass
class ExportFacts:
    images: int
    #: distinct occurrences (gbifID) of the exported images
    occurrences: int
    #: (lon, lat) of each distinct exported occurrence with valid coordinates
    points: list[tuple[float, float]] = field(default_factory=list)
    #: exported occurrences per ISO country code (when known)
    countries: Counter[str] = field(default_factory=Counter)
    #: images per datasetKey / per publisher (publishingOrgKey)
    datasets: Counter[str] = field(default_factory=Counter)
    publishers: Counter[str] = field(default_factory=Counter)
    licenses: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    #: images per (label, split)
    class_split: Counter[tuple[Any, str]] = field(default_factory=Counter)
    #: first and last year of the exported occurrences (when known)
    years: tuple[int, int] | None = None
    #: identical files (same sha256 of the stored bytes): groups of 2+ images, the images in them,
    #: and the groups whose images sit in more than one split (a leak between train and test)
    duplicate_groups: int = 0
    duplicate_images: int = 0
    cross_split_groups: int = 0
    #: datasetKey -> title (from the registry), so statements name datasets rather than UUIDs
    dataset_titles: dict[str, str] = field(default_factory=dict)


def _occurrence_columns(table: pa.Table, records: pa.Table | None, names: Sequence[str]) -> dict[str, dict]:
    """gbifID → value for each of ``names``, over the exported occurrences only, first value wins."""
    ids = set(table.column("gbifID").to_pylist())
    if records is not None and "gbifID" in records.column_names:
        # a snapshot can hold millions of rows: keep the exported occurrences' rows before going to Python
        try:
            wanted = table.column("gbifID").cast(records.schema.field("gbifID").type).unique()
            records = records.filter(pc.is_in(records.column("gbifID"), value_set=wanted))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            records = None  # gbifIDs of another type match nothing
    out: dict[str, dict] = {}
    for name in names:
        source = table if name in table.column_names else records
        if source is None or name not in source.column_names or "gbifID" not in source.column_names:
            continue
        values: dict = {}
        for gid, v in zip(source.column("gbifID").to_pylist(), source.column(name).to_pylist(), strict=True):
            if gid in ids and v is not None and gid not in values:
                values[gid] = v
        out[name] = values
    return out


def collect_facts(table: pa.Table, records: pa.Table | None = None) -> ExportFacts:
    """The counts of the export table ``table`` (one row per exported image)."""
    gbif_ids = table.column("gbifID").to_pylist()
    occ = _occurrence_columns(table, records, (_LAT, _LON, "countryCode", "year"))
    points = []
    lats, lons = occ.get(_LAT, {}), occ.get(_LON, {})
    for gid in sorted(set(lats) & set(lons), key=str):
        lat, lon = lats[gid], lons[gid]
        try:
            lat, lon = float(lat), float(lon)
        except (TypeError, ValueError):
            continue
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            points.append((lon, lat))
    years = [int(y) for y in occ.get("year", {}).values() if isinstance(y, (int, float))]

    def counts(col: str) -> Counter[str]:
        if col not in table.column_names:
            return Counter()
        return Counter(str(v) for v in table.column(col).to_pylist() if v)

    labels = table.column("label").to_pylist()
    splits = table.column("split").to_pylist()
    groups: dict[str, set[str]] = {}
    sizes: Counter[str] = Counter()
    if "sha256" in table.column_names:
        for digest, split in zip(table.column("sha256").to_pylist(), splits, strict=True):
            if digest:
                sizes[digest] += 1
                groups.setdefault(digest, set()).add(split)
    dups = [d for d, n in sizes.items() if n > 1]
    return ExportFacts(
        images=table.num_rows,
        occurrences=len(set(gbif_ids)),
        points=points,
        countries=Counter(str(v).upper() for v in occ.get("countryCode", {}).values() if v),
        datasets=counts("datasetKey"),
        publishers=counts("publisher"),
        licenses=Counter(str(v) for v in table.column("license").to_pylist()),
        splits=Counter(splits),
        class_split=Counter(zip(labels, splits, strict=True)),
        years=(min(years), max(years)) if years else None,
        duplicate_groups=len(dups),
        duplicate_images=sum(sizes[d] for d in dups),
        cross_split_groups=sum(1 for d in dups if len(groups[d]) > 1),
    )


def small_classes(
    facts: ExportFacts, classes: Sequence[dict[str, Any]], min_images: int
) -> list[tuple[dict[str, Any], str, int]]:
    """(class, split, images) for every class with fewer than ``min_images`` in a split (0 included)."""
    out = []
    for c in classes:
        for split in sorted(facts.splits):
            n = facts.class_split.get((c["label"], split), 0)
            if n < min_images:
                out.append((c, split, n))
    return out


def _share(counter: Counter[str], top: int) -> tuple[list[tuple[str, int]], float]:
    total = sum(counter.values())
    items = counter.most_common(top)
    return items, (100.0 * sum(n for _, n in items) / total if total else 0.0)


def bias_statements(facts: ExportFacts, classes: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-text statements of the skews measurable in this export (for the data card and RAI)."""
    out = []
    if facts.countries:
        items, share = _share(facts.countries, 3)
        named = ", ".join(f"{c} {n}" for c, n in items)
        out.append(
            f"Geographic skew: the {len(items)} most frequent of {len(facts.countries)} countries hold "
            f"{share:.0f}% of the {sum(facts.countries.values())} exported occurrences with a country ({named})."
        )
    if facts.points:
        north = sum(1 for _, lat in facts.points if lat >= 0)
        cells = Counter((int((lon + 180) // 10), int((lat + 90) // 10)) for lon, lat in facts.points)
        _, dense = _share(Counter({str(k): v for k, v in cells.items()}), 3)
        out.append(
            f"Geographic skew: {100 * north / len(facts.points):.0f}% of the {len(facts.points)} located "
            f"occurrences are in the northern hemisphere; the 3 densest 10-degree cells hold {dense:.0f}%."
        )
    if facts.datasets:
        n = len(facts.datasets)
        ((top, top_n),) = facts.datasets.most_common(1)
        first = (
            f"the largest ({facts.dataset_titles.get(top) or top}) provides {100 * top_n / facts.images:.0f}%"
        )
        if n > 3:
            _, share = _share(facts.datasets, 3)
            out.append(
                f"Publisher skew: {n} datasets contribute images; the largest 3 provide {share:.0f}% ({first})."
            )
        else:
            out.append(
                f"Publisher skew: only {n} dataset{'s' if n > 1 else ''} contribute{'' if n > 1 else 's'} images; {first}."
            )
    if facts.publishers:
        n = len(facts.publishers)
        _, share = _share(facts.publishers, 1)
        out.append(
            "Publisher skew: every image comes from one publishing organisation."
            if n == 1
            else f"Publisher skew: {n} publishing organisations; the largest provides {share:.0f}% of the images."
        )
    if classes:
        counts = [c["count"] for c in classes]
        out.append(
            f"Class balance: {len(classes)} classes with {min(counts)} to {max(counts)} images each "
            f"(ratio {max(counts) / max(min(counts), 1):.1f})."
        )
    out.append(
        "GBIF occurrence media over-represent conspicuous, easily photographed species, adult stages, "
        "populated and well-surveyed regions (Europe, North America) and citizen-science platforms."
    )
    return out


def license_mix(facts: ExportFacts) -> list[tuple[str, str, int, float]]:
    """(label, id, images, percent) per licence, most frequent first."""
    n = facts.images or 1
    return [
        (license_label_or_code(k), k, v, 100.0 * v / n)
        for k, v in sorted(facts.licenses.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
