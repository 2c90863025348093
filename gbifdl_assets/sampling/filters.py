"""Filters from the spec, applied to a snapshot or an annotated-occurrences table.

Everything is vectorised (pyarrow.compute / numpy over whole columns; dictionary columns are
filtered on their dictionary). Each row is counted once, under the FIRST reason that removes
it, in this order (the keys of ``FilterResult.dropped``):

1. ``label_missing``: no accepted key at the label rank (a record identified only to genus
   cannot be a species example), and ``url_missing``: no image URL.
2. ``filter:<parameter>``: ``spec.occurrence_filters`` re-applied to the records, one reason per
   parameter in the spec's (sorted) order. The snapshot was fetched with these filters, so this
   is a safety net for reused snapshots, DOIs/download keys fetched with other filters, and
   hand-made tables. A list of values means "any of" (GBIF's repeated parameter); ranges are
   ``low,high`` with ``*`` for an open end; nulls never match.
3. ``exclude:<parameter>``: ``spec.exclude_filters``: records matching any value are dropped
   (e.g. ``issue: [ZERO_COORDINATE, COUNTRY_COORDINATE_MISMATCH]`` drops records carrying
   either flag; nulls never match, so they are kept).
4. ``license``: the normalised media licence is not in ``spec.licenses``; ``UNKNOWN`` and
   ``ALL-RIGHTS-RESERVED`` are out unless the allowlist names them.
5. ``annotation_drop_label`` and ``annotation_conflict``: the annotation policy (below).
6. ``duplicate_url``: the same image URL on several surviving rows; the first by
   (gbifID, media_index) is kept. Duplicates are removed last so that a copy dropped for another
   reason (say, an unusable licence on a second record) cannot knock out a usable one.

Search parameters are mapped to record columns with :func:`gbifdl_assets.specs.record_field`
(``publishingOrg`` → ``publishingOrgKey``, ``country`` → ``countryCode``, ``issue`` →
``issues``). Parameters that have no column here (``mediaType``: the snapshot holds media items
of that type by construction; ``q``, ``gadmGid``, ...) were applied by GBIF when the snapshot
was fetched and are listed in ``FilterResult.not_applied`` with the reason.

Annotation policy (``spec.annotations``) on ``annotation_labels`` / ``annotation_conflict``:

* ``exclude_any``: drop a record if ANY of its labels is a drop label;
* ``keep_conflicting``: drop a record only if ALL its labels are drop labels (a record that some
  rules call NATIVE and others SUSPICIOUS stays);
* ``exclude_all``: drop records with a drop label, and every conflicting record (more than one
  distinct label) even when none of its labels is a drop label.

``min_support`` and ``exclude_contested`` are applied by the annotation engine that produced the
labels (a label is only listed if its rule passed the votes policy), not here. A table without
annotation columns (a plain snapshot) skips this filter and says so in ``FilterResult.notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets import specs
from gbifdl_assets.gbif import licenses as lic
from gbifdl_assets.sampling.arrays import (
    codes_of,
    combine_chunks,
    decoded,
    isin_mask,
    numeric,
    take,
    valid_mask,
)
from gbifdl_assets.sampling.errors import SamplingError  # also importable from here, as before
from gbifdl_assets.sampling.exclusions import ImageExclusions
from gbifdl_assets.sampling.hashing import hash_strings

__all__ = [
    "GEOSPATIAL_ISSUES",
    "FilterResult",
    "SamplingError",
    "apply_filters",
    "duplicate_candidates",
    "require_columns",
    "resolve_duplicates",
    "label_column",
    "label_name_column",
    "media_licenses",
    "take_rows",
]

#: GBIF's OccurrenceIssue.GEOSPATIAL_RULES: what ``hasGeospatialIssue`` tests.
GEOSPATIAL_ISSUES: tuple[str, ...] = (
    "ZERO_COORDINATE",
    "COORDINATE_INVALID",
    "COORDINATE_OUT_OF_RANGE",
    "COUNTRY_COORDINATE_MISMATCH",
)
_AT_SOURCE = {
    "mediaType": "applied at the source: snapshot rows are media items of the requested type",
}
# kinds (specs.parameter_kind) whose text values are compared case-insensitively: GBIF matches
# free-text parameters such as recordedBy or institutionCode without regard to case.
_CASEFOLD_KINDS = ("str", "uuid")


def label_column(rank: str) -> str:
    """The accepted-key column of a label rank: SPECIES -> speciesKey, FAMILY -> familyKey."""
    return f"{rank.strip().lower()}Key"


def label_name_column(rank: str) -> str:
    """The canonical-name column of a label rank in GBIF's interpreted records (species, genus...)."""
    return rank.strip().lower()


@dataclass
class FilterResult:
    """The rows that passed, why the others did not, and what could not be checked.

    ``rows`` are positions in the input table; :attr:`table` materialises them (once, on first
    use) with ``media_license`` holding the normalised id and ``media_license_raw`` the value as
    given. The manifest builder works on ``rows`` directly and only ever copies the picked rows.
    """

    source: pa.Table
    rows: np.ndarray
    dropped: dict[str, int]
    input_rows: int
    licenses: pa.Array  # normalised media licence of every input row (dictionary-encoded)
    not_applied: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: gbifdl-hash64 (seed 0) of each kept row's image URL, aligned with ``rows``
    url_hash: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    _table: pa.Table | None = field(default=None, repr=False)

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            self._table = take_rows(self.source, self.rows, self.licenses)
        return self._table


def take_rows(source: pa.Table, rows: np.ndarray, licenses: pa.Array | None = None) -> pa.Table:
    """``source`` rows at ``rows``, with media_license normalised (raw value kept in media_license_raw)."""
    out = take(source, rows)
    if licenses is None:
        return out
    if "media_license_raw" not in out.column_names and "media_license" in out.column_names:
        out = out.append_column("media_license_raw", out.column("media_license"))
    return _with_column(out, "media_license", licenses.take(pa.array(rows, pa.int64())))


# ---------------------------------------------------------------------------------------------------
# parameter matching
# ---------------------------------------------------------------------------------------------------
def _param_kind(param: str) -> object:
    return specs.parameter_kind(param)


def _find_column(table: pa.Table, name: str) -> str | None:
    if name in table.column_names:
        return name
    by_lower = {c.lower(): c for c in table.column_names}
    return by_lower.get(name.lower())


def _list_any(col: pa.ChunkedArray | pa.Array, values: list[str]) -> np.ndarray:
    """True where a list<string> row contains any of ``values``."""
    arr = combine_chunks(col)
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=bool)
    flat = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    hit = isin_mask(flat, values)
    out = np.zeros(n, dtype=bool)
    out[parents[hit]] = True
    return out


def _bounds(text: str, integer: bool) -> tuple[float | None, float | None]:
    parts = [p.strip() for p in text.split(",")]
    conv = (lambda s: float(int(s))) if integer else float
    if len(parts) == 1:
        x = conv(parts[0])
        return x, x
    lo = None if parts[0] in ("*", "") else conv(parts[0])
    hi = None if parts[1] in ("*", "") else conv(parts[1])
    return lo, hi


def _numeric_match(col: pa.ChunkedArray, values: list[str], integer: bool) -> np.ndarray:
    x = numeric(col)
    out = np.zeros(len(x), dtype=bool)
    with np.errstate(invalid="ignore"):
        for text in values:
            lo, hi = _bounds(text, integer)
            m = ~np.isnan(x)
            if lo is not None:
                m &= x >= lo
            if hi is not None:
                m &= x <= hi
            out |= m
    return out


def _date_match(col: pa.ChunkedArray, values: list[str]) -> np.ndarray:
    """ISO dates compared as text prefixes: '2020-05' matches every day of May 2020.

    An interval ``start/end`` (allowed in dwc:eventDate) is judged by its start.
    """
    arr = decoded(col)
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    start = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"/.*$", ""))
    out = np.zeros(len(arr), dtype=bool)
    for text in values:
        parts = [p.strip() for p in text.split(",")]
        lo, hi = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        m = valid_mask(start)
        if lo != "*":
            m &= pc.fill_null(
                pc.greater_equal(pc.utf8_slice_codeunits(start, 0, len(lo)), lo), False
            ).to_numpy(zero_copy_only=False)
        if hi != "*":
            m &= pc.fill_null(pc.less_equal(pc.utf8_slice_codeunits(start, 0, len(hi)), hi), False).to_numpy(
                zero_copy_only=False
            )
        out |= m
    return out


def _geometry_match(table: pa.Table, values: list[str]) -> np.ndarray | str:
    lat_name, lon_name = _find_column(table, "decimalLatitude"), _find_column(table, "decimalLongitude")
    if lat_name is None or lon_name is None:
        return "no decimalLatitude/decimalLongitude columns in the input"
    import shapely

    lat, lon = numeric(table.column(lat_name)), numeric(table.column(lon_name))
    ok = ~(np.isnan(lat) | np.isnan(lon))
    out = np.zeros(len(lat), dtype=bool)
    for wkt in values:
        geom = shapely.from_wkt(wkt)
        shapely.prepare(geom)
        hit = np.zeros(len(lat), dtype=bool)
        hit[ok] = shapely.intersects_xy(geom, lon[ok], lat[ok])
        out |= hit
    return out


def _bool_values(values: list[str]) -> set[bool]:
    return {v.strip().lower() == "true" for v in values}


def _param_match(table: pa.Table, param: str, values: list[str]) -> np.ndarray | str:
    """Rows matching one search parameter, or the reason it cannot be checked on this table."""
    if param in _AT_SOURCE:
        return _AT_SOURCE[param]
    if param == "geometry":
        return _geometry_match(table, values)
    if param == "hasCoordinate":
        lat, lon = _find_column(table, "decimalLatitude"), _find_column(table, "decimalLongitude")
        if lat is None or lon is None:
            return "no decimalLatitude/decimalLongitude columns in the input"
        has = ~(np.isnan(numeric(table.column(lat))) | np.isnan(numeric(table.column(lon))))
        wanted = _bool_values(values)
        return np.ones_like(has) if wanted == {True, False} else (has if True in wanted else ~has)
    if param == "hasGeospatialIssue":
        issues = _find_column(table, "issues")
        if issues is None:
            return "no issues column in the input"
        has = _list_any(table.column(issues), list(GEOSPATIAL_ISSUES))
        wanted = _bool_values(values)
        return np.ones_like(has) if wanted == {True, False} else (has if True in wanted else ~has)
    name = _find_column(table, specs.record_field(param))
    if name is None:
        return f"no {specs.record_field(param)} column in the input (applied by GBIF when the snapshot was fetched)"
    col = table.column(name)
    typ = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _list_any(col, values)
    kind = _param_kind(param)
    try:
        if isinstance(kind, tuple) and kind[0] == "num_range":
            return _numeric_match(col, values, bool(kind[3]))
        if kind == "date_range":
            return _date_match(col, values)
        if kind == "geometry":
            return _geometry_match(table, values)
        return isin_mask(col, values, casefold=kind in _CASEFOLD_KINDS)
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SamplingError(
            f"cannot compare column {name!r} ({col.type}) with filter {param}={values}: {exc}; "
            "check the column's type or remove the filter"
        ) from None


# ---------------------------------------------------------------------------------------------------
# licences, annotations, duplicates
# ---------------------------------------------------------------------------------------------------
def media_licenses(table: pa.Table) -> pa.Array:
    """Normalised media licence ids (from media_license, else media_license_raw); nulls -> UNKNOWN."""
    if "media_license" in table.column_names:
        col = combine_chunks(table.column("media_license"))
    elif "media_license_raw" in table.column_names:
        col = combine_chunks(table.column("media_license_raw"))
    else:
        raise SamplingError(
            "the input has neither media_license nor media_license_raw, so the licence allowlist "
            "cannot be enforced; give a snapshot with the media licence columns"
        )
    # normalise the dictionary only (a few hundred distinct values; idempotent on ids) and keep
    # the indices: materialising 10 M id strings would cost more than the whole filter chain
    codes, dictionary = codes_of(col)
    ids = pa.concat_arrays([lic.normalize_licenses(dictionary), pa.array([lic.UNKNOWN], pa.string())])
    indices = pa.array(np.where(codes < 0, len(ids) - 1, codes).astype(np.int32))
    return pa.DictionaryArray.from_arrays(indices, ids)


def _annotation_masks(table: pa.Table, policy: specs.AnnotationPolicy) -> tuple[np.ndarray, np.ndarray]:
    """(has a drop label under the policy, dropped as a conflict) for every row."""
    labels = combine_chunks(table.column("annotation_labels"))
    n = len(labels)
    n_labels = pc.fill_null(pc.list_value_length(labels), 0).to_numpy(zero_copy_only=False)
    drop = list(policy.drop_labels)
    if drop and n:
        flat = pc.list_flatten(labels)
        parents = pc.list_parent_indices(labels).to_numpy(zero_copy_only=False)
        hits = isin_mask(flat, drop)
        n_drop = np.bincount(parents[hits], minlength=n)
    else:
        n_drop = np.zeros(n, dtype=np.int64)
    if "annotation_conflict" in table.column_names:
        conflict = pc.fill_null(table.column("annotation_conflict"), False).to_numpy(zero_copy_only=False)
    else:
        conflict = n_labels > 1
    conflict = np.asarray(conflict, dtype=bool)
    if policy.conflicts == "keep_conflicting":
        return (n_labels > 0) & (n_drop == n_labels), np.zeros(n, dtype=bool)
    if policy.conflicts == "exclude_all":
        return n_drop > 0, conflict
    return n_drop > 0, np.zeros(n, dtype=bool)  # exclude_any


def duplicate_candidates(url_hash: np.ndarray) -> np.ndarray:
    """Sorted positions whose 64-bit URL hash is shared with another position (one argsort)."""
    n = len(url_hash)
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(url_hash)
    hs = url_hash[order]
    same = hs[1:] == hs[:-1]
    if not same.any():
        return np.zeros(0, dtype=np.int64)
    in_run = np.zeros(n, dtype=bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    return np.sort(order[in_run])


def resolve_duplicates(candidates: pa.Table, positions: np.ndarray) -> np.ndarray:
    """The ``positions`` whose URL (exactly compared) repeats one earlier by (gbifID, media_index).

    ``candidates`` holds identifier, gbifID and (optionally) media_index of the candidate rows,
    aligned with ``positions``; rows tied on all three keep their input order.
    """
    sub = candidates.to_pandas()
    if "media_index" not in sub:
        sub["media_index"] = 0
    sub["pos"] = positions
    sub = sub.sort_values(["identifier", "gbifID", "media_index", "pos"], kind="stable", na_position="last")
    dup = sub["identifier"].duplicated(keep="first").to_numpy()
    return np.sort(sub["pos"].to_numpy()[dup])


def _duplicate_rows(table: pa.Table, rows: np.ndarray, url_hash: np.ndarray) -> np.ndarray:
    """Indices into ``rows`` of rows whose URL already appears on an earlier row by (gbifID, media_index).

    Candidates come from equal 64-bit hashes (cheap: one sort); the strings of the candidates
    are then compared exactly, so a hash collision never drops a distinct URL.
    """
    cand = duplicate_candidates(url_hash)
    if len(cand) == 0:
        return cand
    cols = [c for c in ("identifier", "gbifID", "media_index") if c in table.column_names]
    return resolve_duplicates(take(table.select(cols), rows[cand]), cand)


# ---------------------------------------------------------------------------------------------------
# the whole chain
# ---------------------------------------------------------------------------------------------------
def require_columns(available: Sequence[str], columns: list[str], why: str) -> None:
    """SamplingError naming the ``columns`` missing from ``available``, ``why`` they are needed, and
    the columns present."""
    missing = [c for c in columns if c not in available]
    if missing:
        raise SamplingError(
            f"the input lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} ({why}); "
            f"columns present: {', '.join(available[:40])}" + (" ..." if len(available) > 40 else "")
        )


def apply_filters(
    table: pa.Table,
    spec: specs.TrainingSetSpec,
    *,
    label_col: str | None = None,
    dedup: bool = True,
    exclude: ImageExclusions | None = None,
) -> FilterResult:
    """Apply the spec's record, licence and annotation filters and drop duplicate URLs.

    ``dedup=False`` leaves duplicates in (a caller filtering a large input batch by batch
    removes them once over all batches, with :func:`duplicate_candidates`). ``exclude``: flagged
    images to leave out (reason ``image_flag``).
    """
    label_col = label_col or label_column(spec.balancing.label_rank)
    require_columns(table.column_names, ["gbifID", "identifier"], "every snapshot row has them")
    require_columns(table.column_names, [label_col], f"labels are taken at rank {spec.balancing.label_rank}")
    n = table.num_rows
    alive = np.ones(n, dtype=bool)
    dropped: dict[str, int] = {}
    not_applied: dict[str, str] = {}
    notes: list[str] = []

    def drop(reason: str, fail: np.ndarray) -> None:
        newly = alive & fail
        dropped[reason] = dropped.get(reason, 0) + int(np.count_nonzero(newly))
        np.logical_xor(alive, newly, out=alive)  # newly is a subset of alive (a masked assignment is slower)

    drop("label_missing", ~valid_mask(table.column(label_col)))
    ident = table.column("identifier")
    if pa.types.is_dictionary(ident.type):
        ident = combine_chunks(ident).dictionary_decode()
    # binary_length reads the offsets only; a URL of blanks is as unusable as none but too rare
    # to pay a trim of 10 M strings for
    empty = pc.fill_null(pc.equal(pc.binary_length(ident), 0), True)
    drop("url_missing", np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool))

    for param, values in spec.occurrence_filters.items():
        match = _param_match(table, param, values)
        if isinstance(match, str):
            not_applied[f"filter:{param}"] = match
        else:
            drop(f"filter:{param}", ~match)
    for param, values in spec.exclude_filters.items():
        match = _param_match(table, param, values)
        if isinstance(match, str):
            not_applied[f"exclude:{param}"] = match
        else:
            drop(f"exclude:{param}", match)

    licence_ids = media_licenses(table)
    drop("license", ~isin_mask(licence_ids, spec.licenses))

    policy = spec.annotations
    if policy.rulesets == []:
        notes.append("annotations ignored: annotations.rulesets is an empty list")
    elif "annotation_labels" not in table.column_names:
        notes.append(
            "annotation filter skipped: the input has no annotation_labels column "
            "(an un-annotated snapshot); drop_labels and conflicts were not applied"
        )
    else:
        has_drop, conflict = _annotation_masks(table, policy)
        drop("annotation_drop_label", has_drop)
        if policy.conflicts == "exclude_all":
            drop("annotation_conflict", conflict)
    if exclude:
        drop("image_flag", exclude.mask(table, label_col))

    rows = np.flatnonzero(alive)
    url_hash = hash_strings(table.column("identifier"), 0, rows=rows)
    dup = _duplicate_rows(table, rows, url_hash) if dedup else np.zeros(0, np.int64)
    dropped["duplicate_url"] = len(dup)
    if len(dup):
        keep = np.ones(len(rows), dtype=bool)
        keep[dup] = False
        rows, url_hash = rows[keep], url_hash[keep]
    unchecked = sorted(k for k, why in not_applied.items() if why not in _AT_SOURCE.values())
    if unchecked:
        notes.append(
            "not re-applied (no matching column; GBIF applied them at fetch time): " + ", ".join(unchecked)
        )
    return FilterResult(
        source=table,
        rows=rows,
        dropped=dropped,
        input_rows=n,
        licenses=licence_ids,
        not_applied=not_applied,
        notes=notes,
        url_hash=url_hash,
    )


def _with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
