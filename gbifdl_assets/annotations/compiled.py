"""The compiled rules table: every rule source (store, files, GBIF, seeds) becomes rows of one schema.

The engine, the ``annotation_rulesets`` asset and the CLI all consume this table, so it is the one
place where a rule is checked before it is applied. Field names follow GBIF's annotation API
(``taxonKey``, ``datasetKey``, ``basisOfRecord``, ``yearRange``; the label is GBIF's ``annotation``),
plus provenance (``id``, ``source``, ``ruleset``, ``project``) and the vote counts.

Validation (:func:`validate_rules_table`), with the policy for each problem:

* **invalid or curved WKT, Z or M coordinates, NaN or infinite coordinates (:mod:`.wkt`), a
  non-polygon, an empty polygon, coordinates outside lon -180..180 / lat -90..90,
  an unknown label, a bad ``yearRange``, an unknown ``basisOfRecord``, negative votes, a missing or
  duplicate id**: refused.
* **more than 2,500 vertices** (GBIF's ``MAX_POLYGON_VERTICES``, counted as shapely counts: every
  coordinate of every ring and part, closures included; GBIF's regex over the text misses numbers
  written ``.5``): refused for rules people wrote (sources ``local`` and
  ``file``). Rules pulled from GBIF are exempt (GBIF exempts its admins, so such rules exist) and so
  are seeds (generated, tested here; most are split to fit anyway, see ``seeds``).
* **invalid polygons** (self-intersections, bow-ties, ring crossings): **refused** for ``local`` and
  ``file`` rules, with the place GEOS reports: a guess at what the author meant is worse than asking.
  For ``gbif`` and ``seed`` rules they are **repaired** with ``shapely.make_valid`` (what gbifrules
  does with GBIF's rules, which GBIF never validates), keeping the polygonal part; the repaired WKT
  replaces the original and the description records it (``[geometry repaired: <reason>]``).

Errors name the rule id and say what to do; all problems are reported at once
(:class:`RulesTableError`), or, with ``errors="skip"``, the bad rules are dropped and reported.

The field checks (:func:`check_polygon`, :func:`parse_year_range`, :func:`basis_of_record_name`) are
also the rule model's (``model.py``), so a rule is read the same way when it is saved and when it is
applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import shapely

from gbifdl_assets import vocabulary
from gbifdl_assets.annotations.vocabulary import normalize_label
from gbifdl_assets.annotations.wkt import count_coordinates, read_wkt
from gbifdl_assets.errors import GbifdlError

__all__ = [
    "BASIS_OF_RECORD",
    "MAX_POLYGON_VERTICES",
    "REPAIR_SOURCES",
    "RULES_TABLE_SCHEMA",
    "RULE_SOURCES",
    "VERTEX_LIMIT_SOURCES",
    "RulesTableError",
    "basis_of_record_name",
    "check_polygon",
    "count_vertices",
    "empty_rules_table",
    "format_year_range",
    "parse_year_range",
    "rules_table_from_records",
    "validate_rules_table",
]

RULES_TABLE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # "local:12", "gbif:60", "seed:zero-coords"
        pa.field("source", pa.string(), nullable=False),  # local | file | gbif | seed
        pa.field("ruleset", pa.string()),
        pa.field("project", pa.string()),
        pa.field("taxonKey", pa.int64()),  # null: any taxon
        pa.field("geometry", pa.string(), nullable=False),  # WKT, WGS84 lon/lat
        pa.field("label", pa.string(), nullable=False),  # a vocabulary.LABELS term
        pa.field("datasetKey", pa.string()),
        pa.field("basisOfRecord", pa.list_(pa.string())),
        pa.field("basisOfRecordNegated", pa.bool_(), nullable=False),
        pa.field("yearRange", pa.string()),  # "a,b" | "*,b" | "a,*" | "a"
        pa.field("supportCount", pa.int32(), nullable=False),
        pa.field("contestCount", pa.int32(), nullable=False),
        pa.field("createdBy", pa.string()),
        pa.field("description", pa.string()),
    ]
)

RULE_SOURCES: tuple[str, ...] = ("local", "file", "gbif", "seed")
#: Sources whose rules must respect GBIF's vertex limit (people wrote them).
VERTEX_LIMIT_SOURCES: tuple[str, ...] = ("local", "file")
#: Sources whose invalid polygons are repaired instead of refused.
REPAIR_SOURCES: tuple[str, ...] = ("gbif", "seed")

MAX_POLYGON_VERTICES = vocabulary.MAX_GEOMETRY_VERTICES
#: GBIF counts vertices with this regex over the WKT (dev ``GeometryValidationService.java``).
_VERTEX_RE = re.compile(r"-?\d+(?:\.\d+)?\s+-?\d+(?:\.\d+)?")
_YEAR_RE = re.compile(r"^\s*(\*|-?\d{1,4})\s*(?:,\s*(\*|-?\d{1,4})\s*)?$")

#: GBIF BasisOfRecord names (LITERATURE and UNKNOWN are deprecated but occur in old rules).
BASIS_OF_RECORD: tuple[str, ...] = vocabulary.RULE_BASIS_OF_RECORD

_DEFAULTS: dict[str, Any] = {
    "source": "local",
    "basisOfRecordNegated": False,
    "supportCount": 0,
    "contestCount": 0,
}


class RulesTableError(GbifdlError, ValueError):
    """One or more rules cannot be applied; ``problems`` lists ``(rule_id, message)`` pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = [f"rule {rid}: {msg}" for rid, msg in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"... and {len(self.problems) - 50} more")
        head = "1 invalid rule" if len(self.problems) == 1 else f"{len(self.problems)} invalid rules"
        super().__init__(f"{head}:\n" + "\n".join(lines))


def count_vertices(wkt: str) -> int:
    """Vertices as shapely counts them (ring closures too, as in GBIF's count); for text that does not
    parse, GBIF's own count (its regex over the text, which misses numbers written ``.5`` or ``1e1``)."""
    try:
        return count_coordinates(read_wkt(wkt))
    except ValueError:
        return len(_VERTEX_RE.findall(str(wkt)))


def parse_year_range(text: str | None) -> tuple[int | None, int | None] | None:
    """``"1900,1950"`` → (1900, 1950); ``"*,1950"`` → (None, 1950); ``"1950"`` → (1950, 1950).

    ``None``/empty means no year filter. ``ValueError`` says what is wrong (the caller names the field).
    The one reading of GBIF's ``yearRange``: the rule model, this table and the engine all use it.
    """
    if text is None or not str(text).strip():
        return None
    m = _YEAR_RE.match(str(text))
    if not m:
        raise ValueError(
            f"{text!r} is not a year range: use 'a,b', '*,b', 'a,*' or a single year (e.g. '1900,1950')"
        )
    lo_s, hi_s = m.group(1), m.group(2)
    if hi_s is None:  # a single year (gbifrules accepts it): that year only
        hi_s = lo_s
    lo = None if lo_s == "*" else int(lo_s)
    hi = None if hi_s == "*" else int(hi_s)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{text!r} starts after it ends: write the earlier year first ('{hi},{lo}')")
    return lo, hi


def format_year_range(years: tuple[int | None, int | None] | None) -> str | None:
    """The canonical ``"a,b"`` text (``*`` for an open end); None when nothing is filtered (``*,*``)."""
    if years is None or years == (None, None):
        return None
    lo, hi = years
    return f"{'*' if lo is None else lo},{'*' if hi is None else hi}"


def basis_of_record_name(raw: str) -> str:
    """GBIF's upper-snake spelling: ``PreservedSpecimen``, ``preserved specimen`` → ``PRESERVED_SPECIMEN``."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", raw.strip()).upper().replace("-", "_").replace(" ", "_")


def check_polygon(
    wkt: Any, *, max_vertices: int | None = None, max_wkt_length: int | None = None, repair: bool = False
) -> tuple[str, str | None]:
    """Check a rule's polygon; return (the WKT to keep, why it was repaired or None).

    One check for a rule being saved (the model: with GBIF's limits, refusing invalid polygons unless
    told to repair) and a rule being applied (this table: limits and repair depend on the source).
    ``ValueError`` says what is wrong and what to do; its message starts with what the polygon "is",
    "has" or "reaches", so the caller puts the field name in front.
    """
    if not isinstance(wkt, str) or not wkt.strip():
        raise ValueError("is empty: give a WKT POLYGON or MULTIPOLYGON in lon/lat degrees")
    text = wkt.strip()
    _check_length(text, max_wkt_length)  # before parsing: the length bounds the parser's work
    geom = read_wkt(text)
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ValueError(
            f"is a {geom.geom_type.upper()}; a rule needs a POLYGON or MULTIPOLYGON (lon/lat degrees)"
        )
    if geom.is_empty:
        raise ValueError("is an empty polygon; give the area's outline")
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise ValueError(
            f"reaches outside lon -180..180 / lat -90..90 (bounds {minx:g} {miny:g} {maxx:g} {maxy:g}): "
            "give WGS84 longitude/latitude, longitude first"
        )
    _check_vertices(geom, max_vertices)
    if geom.is_valid:
        return text, None
    reason = shapely.is_valid_reason(geom)
    if not repair:
        raise ValueError(
            f"is not a valid polygon ({reason}); refused rather than guessed: fix the outline "
            "(or repair it with shapely.make_valid and check the result)"
        )
    polys = _polygonal_part(shapely.make_valid(geom))
    if polys is None:
        raise ValueError(f"is not a valid polygon ({reason}) and repairing it leaves no area")
    repaired = shapely.to_wkt(polys, rounding_precision=-1)
    # the limits hold for what is kept: a repair may add vertices and text
    _check_length(repaired, max_wkt_length, " after repair")
    _check_vertices(polys, max_vertices, " after repair")
    return repaired, reason


def _check_length(text: str, limit: int | None, when: str = "") -> None:
    if limit is not None and len(text) > limit:
        raise ValueError(
            f"has {len(text):,} WKT characters{when}; GBIF allows at most {limit:,}: "
            "simplify it (e.g. shapely's simplify(0.01))"
        )


def _check_vertices(geom: shapely.Geometry, limit: int | None, when: str = "") -> None:
    """The vertex limit, counted as shapely counts (every ring and part, closures included): GBIF's
    regex misses coordinates written ``.95 .5`` or ``1e1``, so a count of the text is not enough."""
    if limit is not None and (n := count_coordinates(geom)) > limit:
        raise ValueError(
            f"has {n:,} vertices{when}; GBIF allows at most {limit:,}: "
            "simplify it (e.g. shapely's simplify(0.01)) or split the rule"
        )


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry | None:
    """The Polygon/MultiPolygon part of a make_valid result (which may add stray lines or points)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return None if geom.is_empty else geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return None
    union = shapely.union_all(parts)
    return None if union.is_empty else union


def empty_rules_table() -> pa.Table:
    return RULES_TABLE_SCHEMA.empty_table()


def rules_table_from_records(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build a rules table from dicts with the schema's field names (missing optional fields: null).

    No validation: call :func:`validate_rules_table` on the result.
    """
    rows = list(records)
    unknown = sorted({k for row in rows for k in row} - set(RULES_TABLE_SCHEMA.names))
    if unknown:
        raise ValueError(
            f"unknown rules-table field(s) {', '.join(unknown)}: the fields are "
            f"{', '.join(RULES_TABLE_SCHEMA.names)}"
        )
    columns = {}
    for field in RULES_TABLE_SCHEMA:
        default = _DEFAULTS.get(field.name)
        values = [row.get(field.name, default) for row in rows]
        if default is not None:
            values = [default if v is None else v for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.Table.from_pydict(columns, schema=RULES_TABLE_SCHEMA)


def _conform(table: pa.Table) -> pa.Table:
    """Cast/reorder to the schema; optional columns may be missing, extra columns are dropped."""
    missing = [n for n in ("id", "geometry", "label") if n not in table.column_names]
    if missing:
        raise RulesTableError([("(table)", f"lacks the required column(s) {', '.join(missing)}")])
    columns = []
    for field in RULES_TABLE_SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if field.name in _DEFAULTS:
                col = col.fill_null(pa.scalar(_DEFAULTS[field.name], type=field.type).cast(col.type))
            try:
                columns.append(col.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise RulesTableError(
                    [("(table)", f"column {field.name!r} cannot be {field.type}: {exc}")]
                ) from None
        elif field.name in _DEFAULTS:
            columns.append(pa.array([_DEFAULTS[field.name]] * table.num_rows, field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    # Build with a nullable copy of the schema first: nulls in required columns are reported per rule.
    loose = pa.schema([f.with_nullable(True) for f in RULES_TABLE_SCHEMA])
    return pa.Table.from_arrays(columns, schema=loose)


def _check_geometry(wkt: Any, source: str, max_vertices: int | None) -> tuple[str, str | None]:
    """Return (WKT to keep, repair note or None); the policy for ``source`` is in the module docstring."""
    if not isinstance(wkt, str) or not wkt.strip():  # a null or blank cell of the geometry column
        raise ValueError("has no geometry: give a WKT POLYGON or MULTIPOLYGON in lon/lat degrees")
    try:
        text, repaired = check_polygon(
            wkt,
            max_vertices=max_vertices if source in VERTEX_LIMIT_SOURCES else None,
            repair=source in REPAIR_SOURCES,
        )
    except ValueError as exc:
        raise ValueError(f"geometry {exc}") from None
    return text, None if repaired is None else f"[geometry repaired: {repaired}]"


def validate_rules_table(
    table: pa.Table,
    *,
    max_vertices: int | None = MAX_POLYGON_VERTICES,
    errors: str = "raise",
    problems: list[tuple[str, str]] | None = None,
) -> pa.Table:
    """Check every rule and return the table in :data:`RULES_TABLE_SCHEMA`, normalised.

    Normalisation: labels upper-case, ``basisOfRecord`` upper-snake (``PreservedSpecimen`` →
    ``PRESERVED_SPECIMEN``; an empty list becomes null), ``datasetKey`` lower-case (GBIF's UUIDs),
    ``yearRange`` canonical (``"1950"`` → ``"1950,1950"``, ``"*,*"`` → null), invalid ``gbif``/``seed``
    polygons repaired (see the module docstring for what is refused and what repaired). Missing
    optional columns are filled (``source`` defaults to ``local``); extra columns are dropped.

    ``errors="raise"`` (default) raises :class:`RulesTableError` listing every problem with its
    rule id; ``errors="skip"`` drops the bad rules and appends ``(rule_id, message)`` to
    ``problems`` when given.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
    table = _conform(table)
    data = table.to_pydict()
    n = table.num_rows
    found: list[tuple[str, str]] = []
    keep: list[bool] = []
    seen: dict[str, int] = {}
    for i in range(n):
        rid = data["id"][i]
        name = rid if isinstance(rid, str) and rid.strip() else f"(row {i})"
        msgs: list[str] = []
        if not isinstance(rid, str) or not rid.strip():
            msgs.append("has no id: give every rule a unique id such as 'local:12'")
        elif rid in seen:
            msgs.append(f"id is used twice (rows {seen[rid]} and {i}): ids must be unique")
        else:
            seen[rid] = i
        source = data["source"][i]
        if source not in RULE_SOURCES:
            msgs.append(f"unknown source {source!r}: use one of {', '.join(RULE_SOURCES)}")
            source = "local"
        try:
            data["label"][i] = normalize_label(data["label"][i])
        except ValueError as exc:
            msgs.append(str(exc))
        key = data["taxonKey"][i]
        if key is not None and key <= 0:
            msgs.append(f"taxonKey {key} is not a GBIF taxon key (a positive integer; null for any taxon)")
        try:
            wkt, note = _check_geometry(data["geometry"][i], source, max_vertices)
            data["geometry"][i] = wkt
            if note:
                desc = data["description"][i]
                data["description"][i] = f"{desc} {note}" if desc else note
        except ValueError as exc:
            msgs.append(str(exc))
        try:
            data["yearRange"][i] = format_year_range(parse_year_range(data["yearRange"][i]))
        except ValueError as exc:
            msgs.append(f"yearRange {exc}")
        bor = data["basisOfRecord"][i]
        if bor is not None:
            names = []
            for raw in bor:
                norm = basis_of_record_name(raw or "")
                if norm not in BASIS_OF_RECORD:
                    msgs.append(
                        f"unknown basisOfRecord {raw!r}: use GBIF names ({', '.join(BASIS_OF_RECORD)})"
                    )
                elif norm not in names:
                    names.append(norm)
            data["basisOfRecord"][i] = names or None
        ds = data["datasetKey"][i]
        if ds is not None:
            data["datasetKey"][i] = ds.strip().lower() or None
        for vote in ("supportCount", "contestCount"):
            if data[vote][i] is None or data[vote][i] < 0:
                msgs.append(f"{vote} must be a count >= 0, not {data[vote][i]!r}")
        found.extend((name, msg) for msg in msgs)
        keep.append(not msgs)
    if found and errors == "raise":
        raise RulesTableError(found)
    if problems is not None:
        problems.extend(found)
    out = pa.Table.from_pydict(data, schema=table.schema)
    if not all(keep):
        out = out.filter(pa.array(keep))
    return out.cast(RULES_TABLE_SCHEMA)
