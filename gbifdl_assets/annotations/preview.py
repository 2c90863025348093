"""Rule preview: how many occurrences of the training sets' snapshots a rule *would* flag.

An extension GBIF's annotation API does not have (issue 21): while a person draws a rule, the map page
asks how many records of the snapshots it would catch, by dataset and basisOfRecord, with a few of
their images, before the rule exists. The answer must come in well under a second for a snapshot of
1,000,000 rows, and must agree exactly with what the ``annotated_occurrences`` stage will do, so:

* **the same engine.** The rule is parsed by the rule model (:func:`~.model.parse_rule`, so GBIF's
  geometry limits and every field check apply), compiled into a one-row rules table and applied with
  :func:`~.engine.apply_rules`: taxon through every rank key and accepted keys, boundary points inside,
  basisOfRecord (negatable), datasetKey and yearRange read exactly as when the rule is applied;
* **a bounding-box prefilter.** A :class:`LoadedSnapshot` keeps its rows' longitudes sorted once, so
  the rows inside the polygon's bounding box are one ``searchsorted`` slice plus a latitude test; only
  those rows (a country is a few percent of the world's records) go through the engine;
* **only the needed columns** of ``media.parquet`` are read (:data:`PREVIEW_COLUMNS`), once per
  snapshot id: :class:`SnapshotCache` keeps them in memory (bounded by bytes, least recently used
  first out), so repeated previews while drawing read nothing. Snapshots are immutable, so a cached
  snapshot never goes stale; a newer snapshot has a new id.

Counts: ``occurrences`` are distinct ``gbifID`` values, ``images`` are snapshot rows (one per media
item). Totals over several training sets add their counts up (a record in two sets counts twice: it
would be flagged in both).

Plain Python: no Starlette, no Dagster; the service (``service/preview.py``) adds HTTP, throttling and
thumbnails.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from gbifdl_assets.annotations.compiled import rules_table_from_records, validate_rules_table
from gbifdl_assets.annotations.engine import KEY_COLUMNS, apply_rules
from gbifdl_assets.annotations.model import Rule, RuleError, parse_rule
from gbifdl_assets.annotations.wkt import read_wkt
from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.occurrences.snapshots import SnapshotInfo, read_snapshot
from gbifdl_assets.storage import Storage, layout

__all__ = [
    "DEFAULT_SAMPLES",
    "ENGINE_COLUMNS",
    "MAX_SAMPLES",
    "MAX_TRAINING_SETS",
    "PREVIEW_COLUMNS",
    "LoadedSnapshot",
    "PreviewError",
    "PreviewRequest",
    "SnapshotCache",
    "load_snapshot",
    "parse_preview_request",
    "preview_rule",
]

#: the columns the engine reads (taxon keys, filters, coordinates)
ENGINE_COLUMNS: tuple[str, ...] = (
    "gbifID", "decimalLatitude", "decimalLongitude", *KEY_COLUMNS, "datasetKey", "basisOfRecord", "year",
)  # fmt: skip
#: the columns a preview reads: the engine's, and what the answer shows (titles, image URLs, names)
PREVIEW_COLUMNS: tuple[str, ...] = (*ENGINE_COLUMNS, "datasetTitle", "identifier", "species")
DEFAULT_SAMPLES = 12
MAX_SAMPLES = 48
MAX_TRAINING_SETS = 100
#: at most this many datasets are listed per training set (the rest are summed up in one row)
MAX_DATASETS = 50
#: rule fields the preview takes (GBIF's rule input; the server-managed ones are ignored, as on POST /rule)
RULE_FIELDS = ("taxonKey", "datasetKey", "geometry", "annotation", "basisOfRecord", "basisOfRecordNegated",
               "yearRange")  # fmt: skip
IGNORED_FIELDS = ("id", "rulesetId", "projectId", "supportedBy", "contestedBy", "created", "createdBy",
                  "deleted", "deletedBy")  # fmt: skip
OPTION_FIELDS = ("trainingSets", "samples")


class PreviewError(GbifdlError, ValueError):
    """A preview request that cannot be answered as asked; the message names the field and the fix."""


@dataclass(frozen=True)
class PreviewRequest:
    """A parsed preview body: the rule (as the model reads it), the training sets (None: all), samples."""

    rule: Rule
    training_sets: tuple[str, ...] | None = None
    samples: int = DEFAULT_SAMPLES


def parse_preview_request(body: Mapping[str, Any]) -> PreviewRequest:
    """Read a preview body: rule fields as ``POST /rule`` takes them, plus ``trainingSets`` and ``samples``.

    ``annotation`` may be left out (SUSPICIOUS): the label does not change what a rule matches. GBIF's
    geometry limits apply as when a rule is created (2,500 vertices, 125,000 characters), which also
    bounds the work of one preview.
    """
    known = set(RULE_FIELDS) | set(IGNORED_FIELDS) | set(OPTION_FIELDS)
    unknown = sorted(set(body) - known)
    if unknown:
        raise PreviewError(
            f"unknown field(s) {', '.join(unknown)} in the preview body; use the rule's fields "
            f"({', '.join(RULE_FIELDS)}) and optionally trainingSets and samples"
        )
    fields = {k: body[k] for k in RULE_FIELDS if k in body}
    if fields.get("annotation") in (None, ""):
        fields["annotation"] = "SUSPICIOUS"
    if "geometry" not in fields:
        raise PreviewError("geometry is missing: give the rule's area as a WKT POLYGON or MULTIPOLYGON")
    try:
        rule = parse_rule(fields, name="the previewed rule")
    except RuleError as exc:
        raise PreviewError(str(exc)) from None
    names = body.get("trainingSets")
    training_sets: tuple[str, ...] | None = None
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise PreviewError("trainingSets must be a list of training-set names (or left out for all)")
        if len(names) > MAX_TRAINING_SETS:
            raise PreviewError(
                f"trainingSets names {len(names)}; preview at most {MAX_TRAINING_SETS} at once"
            )
        for name in names:
            try:
                layout.check_training_set(name)
            except ValueError as exc:
                raise PreviewError(f"trainingSets: {exc}") from None
        training_sets = tuple(dict.fromkeys(names))
    samples = body.get("samples", DEFAULT_SAMPLES)
    if samples is None:
        samples = DEFAULT_SAMPLES
    if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= MAX_SAMPLES:
        raise PreviewError(f"samples must be a whole number from 0 to {MAX_SAMPLES}, not {samples!r}")
    return PreviewRequest(rule=rule, training_sets=training_sets, samples=samples)


# ---------------------------------------------------------------------------------------------------
# snapshots in memory
# ---------------------------------------------------------------------------------------------------
#: longitude bands of the point index: 0.1 degree each (an int16 radix sort orders 1,000,000 rows in
#: milliseconds, where sorting the longitudes themselves takes a few hundred)
_BAND_WIDTH = 0.1
_N_BANDS = 3600


def _band(lon: np.ndarray | float) -> np.ndarray:
    return np.clip(np.floor((np.asarray(lon) + 180.0) / _BAND_WIDTH), 0, _N_BANDS - 1).astype(np.int16)


@dataclass(frozen=True)
class LoadedSnapshot:
    """A snapshot's preview columns, with its located rows ordered by longitude band."""

    training_set: str
    snapshot_id: str
    table: pa.Table
    #: table rows of the located points, by longitude band; band ``b`` is ``by_band[band_start[b]:band_start[b + 1]]``
    by_band: np.ndarray
    band_start: np.ndarray
    lon: np.ndarray  # per table row (NaN when missing)
    lat: np.ndarray

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @property
    def nbytes(self) -> int:
        arrays = (self.by_band, self.band_start, self.lon, self.lat)
        return int(self.table.nbytes + sum(a.nbytes for a in arrays))

    def in_box(self, minx: float, miny: float, maxx: float, maxy: float) -> np.ndarray:
        """Table rows (ascending) whose point lies in the box, edges included."""
        b0, b1 = int(_band(minx)), int(_band(maxx))
        rows = self.by_band[self.band_start[b0] : self.band_start[b1 + 1]]
        lon, lat = self.lon[rows], self.lat[rows]
        return np.sort(rows[(lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)])

    def in_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Table rows (ascending, once each) in any of the boxes (one per polygon of a multipolygon)."""
        parts = [self.in_box(*(float(v) for v in box)) for box in boxes]
        if len(parts) == 1:
            return parts[0]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def _float(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return pc.fill_null(table.column(name).cast(pa.float64()), np.nan).to_numpy()


def load_snapshot(storage: Storage, info: SnapshotInfo) -> LoadedSnapshot:
    """Read a snapshot's :data:`PREVIEW_COLUMNS` (those it has) and index its points by longitude band."""
    present = info.metadata.get("columns")
    columns = [c for c in PREVIEW_COLUMNS if not isinstance(present, list) or c in present]
    table = read_snapshot(storage, info.training_set, info.snapshot_id, columns=columns)
    lon, lat = _float(table, "decimalLongitude"), _float(table, "decimalLatitude")
    located = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
    band = _band(lon[located])
    order = np.argsort(band, kind="stable")  # radix sort of int16
    return LoadedSnapshot(
        training_set=info.training_set,
        snapshot_id=info.snapshot_id,
        table=table,
        by_band=located[order].astype(np.int64),
        band_start=np.searchsorted(band[order], np.arange(_N_BANDS + 1)),
        lon=lon,
        lat=lat,
    )


class SnapshotCache:
    """Loaded snapshots by (storage, training set, snapshot id), least recently used out past ``max_bytes``.

    Thread-safe; two requests for the same snapshot load it once (the second waits for the first).
    A snapshot larger than the whole budget is loaded for the request and not kept.
    """

    def __init__(
        self,
        max_bytes: int = 2 << 30,
        loader: Callable[[Storage, SnapshotInfo], LoadedSnapshot] = load_snapshot,
    ):
        self.max_bytes = max_bytes
        self._loader = loader
        self._items: OrderedDict[tuple[str, str, str], LoadedSnapshot] = OrderedDict()
        self._loading: dict[tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(s.nbytes for s in self._items.values())

    def get(self, storage: Storage, info: SnapshotInfo) -> LoadedSnapshot:
        key = (storage.uri, info.training_set, info.snapshot_id)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            loaded = self._loader(storage, info)
            with self._lock:
                self.loads += 1
                self._loading.pop(key, None)
                if loaded.nbytes <= self.max_bytes:
                    self._items[key] = loaded
                    total = sum(s.nbytes for s in self._items.values())
                    while total > self.max_bytes and len(self._items) > 1:
                        _, dropped = self._items.popitem(last=False)
                        total -= dropped.nbytes
            return loaded


# ---------------------------------------------------------------------------------------------------
# the preview
# ---------------------------------------------------------------------------------------------------
def _rules_table(rule: Rule) -> pa.Table:
    record = {
        "id": "preview",
        "source": "local",
        "taxonKey": rule.taxonKey,
        "geometry": rule.geometry,
        "label": rule.annotation,
        "datasetKey": rule.datasetKey,
        "basisOfRecord": rule.basisOfRecord,
        "basisOfRecordNegated": rule.basisOfRecordNegated,
        "yearRange": rule.yearRange,
    }
    return validate_rules_table(rules_table_from_records([record]))


def _flagged_rows(snapshot: LoadedSnapshot, rules: pa.Table, boxes: np.ndarray) -> tuple[np.ndarray, int]:
    """Table rows the rule flags (ascending) and how many rows were in its polygons' bounding boxes."""
    rows = snapshot.in_boxes(boxes)
    if not len(rows):
        return rows, 0
    engine_columns = [c for c in ENGINE_COLUMNS if c in snapshot.table.column_names]
    candidates = snapshot.table.select(engine_columns).take(pa.array(rows))
    result = apply_rules(candidates, rules)
    flagged = pc.greater(pc.list_value_length(result.annotated.column("annotation_rule_ids")), 0)
    mask = pc.fill_null(flagged, False).to_numpy(zero_copy_only=False)
    return rows[mask], len(rows)


def _text(table: pa.Table, name: str, rows: pa.Array) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(len(rows), pa.string())
    return table.column(name).take(rows).cast(pa.string())


def _counts_by(keys: dict[str, pa.Array], gbif_ids: pa.Array, by: Sequence[str]) -> list[dict[str, Any]]:
    """Occurrences (distinct gbifIDs) and images (rows) per value of ``by`` (the first key), largest first."""
    table = pa.table({**keys, "gbifID": gbif_ids})
    grouped = table.group_by(list(by), use_threads=False).aggregate(
        [("gbifID", "count_distinct"), ("gbifID", "count")]
    )
    out = []
    for row in grouped.to_pylist():
        item = {name: row[name] for name in by}
        item["occurrences"] = int(row["gbifID_count_distinct"])
        item["images"] = int(row["gbifID_count"])
        out.append(item)
    out.sort(key=lambda r: (-r["occurrences"], -r["images"], str(r[by[0]])))
    return out


def _samples(
    snapshot: LoadedSnapshot, rows: np.ndarray, gbif_ids: np.ndarray, k: int
) -> list[dict[str, Any]]:
    """Up to ``k`` flagged occurrences spread evenly over the flagged rows (one image each)."""
    if k <= 0 or not len(rows):
        return []
    _, first = np.unique(gbif_ids, return_index=True)
    first.sort()
    picks = rows[
        first[np.unique(np.linspace(0, len(first) - 1, min(k, len(first))).round().astype(np.int64))]
    ]
    take = pa.array(picks)
    table = snapshot.table
    columns = {name: _text(table, name, take).to_pylist() for name in
               ("identifier", "datasetKey", "datasetTitle", "basisOfRecord", "species")}  # fmt: skip
    ids = table.column("gbifID").take(take).to_pylist()
    years = (
        table.column("year").take(take).to_pylist() if "year" in table.column_names else [None] * len(picks)
    )
    return [
        {
            "trainingSet": snapshot.training_set,
            "gbifID": ids[i],
            "identifier": columns["identifier"][i],
            "species": columns["species"][i],
            "datasetKey": columns["datasetKey"][i],
            "datasetTitle": columns["datasetTitle"][i],
            "basisOfRecord": columns["basisOfRecord"][i],
            "year": years[i],
            "decimalLatitude": _finite(snapshot.lat[picks[i]]),
            "decimalLongitude": _finite(snapshot.lon[picks[i]]),
        }
        for i in range(len(picks))
    ]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _datasets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The largest :data:`MAX_DATASETS` datasets; the rest summed up under ``datasetKey: null, other: N``."""
    if len(rows) <= MAX_DATASETS:
        return rows
    kept, rest = rows[:MAX_DATASETS], rows[MAX_DATASETS:]
    kept.append(
        {
            "datasetKey": None,
            "datasetTitle": f"{len(rest)} more datasets",
            "occurrences": sum(r["occurrences"] for r in rest),
            "images": sum(r["images"] for r in rest),
            "datasets": len(rest),
        }
    )
    return kept


def _merge(parts: list[list[dict[str, Any]]], key: str) -> list[dict[str, Any]]:
    merged: dict[Any, dict[str, Any]] = {}
    for part in parts:
        for row in part:
            if row.get("datasets"):  # an "n more datasets" row stays per training set
                continue
            into = merged.setdefault(row[key], {**row, "occurrences": 0, "images": 0})
            into["occurrences"] += row["occurrences"]
            into["images"] += row["images"]
            if key == "datasetKey" and not into.get("datasetTitle"):
                into["datasetTitle"] = row.get("datasetTitle")
    return sorted(merged.values(), key=lambda r: (-r["occurrences"], -r["images"], str(r[key])))


def preview_rule(
    request: PreviewRequest,
    snapshots: Sequence[LoadedSnapshot],
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """What ``request.rule`` flags in ``snapshots``: totals, per training set, by dataset and basisOfRecord,
    and up to ``request.samples`` sample images spread over the training sets."""
    started = clock()
    rule = request.rule
    rules = _rules_table(rule)
    boxes = shapely.bounds(shapely.get_parts(read_wkt(rule.geometry)))
    per_set, samples_per_set = [], []
    for snapshot in snapshots:
        t0 = clock()
        rows, in_box = _flagged_rows(snapshot, rules, boxes)
        take = pa.array(rows)
        gbif_ids = snapshot.table.column("gbifID").take(take)
        keys = {
            "datasetKey": _text(snapshot.table, "datasetKey", take),
            "datasetTitle": _text(snapshot.table, "datasetTitle", take),
        }
        by_dataset = _counts_by(keys, gbif_ids, ("datasetKey", "datasetTitle"))
        by_bor = _counts_by({"basisOfRecord": _text(snapshot.table, "basisOfRecord", take)}, gbif_ids,
                            ("basisOfRecord",))  # fmt: skip
        ids = gbif_ids.to_numpy(zero_copy_only=False)
        per_set.append(
            {
                "trainingSet": snapshot.training_set,
                "snapshotId": snapshot.snapshot_id,
                "rows": snapshot.rows,
                "rowsInBoundingBox": in_box,
                "flagged": {"occurrences": int(len(np.unique(ids))), "images": int(len(rows))},
                "byDataset": _datasets(by_dataset),
                "byBasisOfRecord": by_bor,
                "seconds": round(clock() - t0, 4),
            }
        )
        samples_per_set.append(_samples(snapshot, rows, ids, request.samples))
    samples: list[dict[str, Any]] = []
    for i in range(request.samples):  # round robin over the training sets
        for part in samples_per_set:
            if i < len(part) and len(samples) < request.samples:
                samples.append(part[i])
    return {
        "rule": {k: v for k, v in rule.to_gbif().items() if k in RULE_FIELDS},
        "flagged": {
            "occurrences": sum(s["flagged"]["occurrences"] for s in per_set),
            "images": sum(s["flagged"]["images"] for s in per_set),
        },
        "byDataset": _datasets(_merge([s["byDataset"] for s in per_set], "datasetKey")),
        "byBasisOfRecord": _merge([s["byBasisOfRecord"] for s in per_set], "basisOfRecord"),
        "trainingSets": per_set,
        "samples": samples,
        "seconds": round(clock() - started, 4),
    }
