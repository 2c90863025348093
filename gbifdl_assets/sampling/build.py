"""Building the manifest: filter pass, duplicate URLs, balance, last pass, splits, statistics.

See :mod:`gbifdl_assets.sampling.manifest` for the pipeline, the memory bounds and the row order.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.sampling.arrays import codes_of, combine_chunks, decoded, int32_array, isin_mask, take
from gbifdl_assets.sampling.assemble import as_text, content_keys_and_prefixes, label_names, manifest_order
from gbifdl_assets.sampling.balance import balance, require_by_columns
from gbifdl_assets.sampling.checks import check_strata_columns, strata_column_fill
from gbifdl_assets.sampling.errors import SamplingError
from gbifdl_assets.sampling.exclusions import ImageExclusions
from gbifdl_assets.sampling.filters import (
    apply_filters,
    duplicate_candidates,
    label_column,
    label_name_column,
    require_columns,
    resolve_duplicates,
)
from gbifdl_assets.sampling.manifest_table import ManifestResult
from gbifdl_assets.sampling.picked import PickedRows
from gbifdl_assets.sampling.source import (
    ParquetSource,
    RowSource,
    TableSource,
    first_pass_columns,
    last_pass_columns,
)
from gbifdl_assets.sampling.splits import GROUP_COLUMNS, assign_splits, require_group_columns
from gbifdl_assets.specs import TrainingSetSpec

log = logging.getLogger("gbifdl_assets.sampling.manifest")  # the name it had before the split

#: Input rows per batch of the filter pass. 256 K rows held the pass at 0.5 GB where 1 M-row batches
#: (two in flight, one decoding ahead) took 1.2 GB, for the same CPU time (3.7-4.0 s on 10 M rows).
BATCH_ROWS = 1 << 18


def _return_freed_memory() -> None:
    """Give the memory Arrow's allocator keeps after frees back to the system.

    Arrow (mimalloc), polars (its own jemalloc) and numpy (malloc) each keep freed memory for their
    own next allocations, so the batches freed after the filter pass could not serve the polars read
    that follows: at 10 M rows the process held 1.15 GB with 87 MB of live Arrow data, 0.52 GB after
    this call (which takes milliseconds).
    """
    pa.default_memory_pool().release_unused()


def _previous_urls(previous: pa.Table | pa.Array | pa.ChunkedArray | Iterable[str] | None) -> pa.Array | None:
    if previous is None:
        return None
    if isinstance(previous, pa.Table):
        if "url" not in previous.column_names:
            raise SamplingError("the previous manifest has no url column; give a manifest built by this tool")
        return as_text(previous.column("url"))
    if isinstance(previous, pa.Array | pa.ChunkedArray):
        return as_text(previous)
    return pa.array(list(previous), pa.string())


def _ordered(d: dict[int, int]) -> dict[int, int]:
    return {k: d[k] for k in sorted(d)}


def _ints(col: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> np.ndarray:
    arr = decoded(col)
    if arr.null_count:  # filling a whole batch costs: only when there is something to fill
        arr = pc.fill_null(arr, 0)
    return arr.to_numpy(zero_copy_only=False)[rows]


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted distinct values of two sorted arrays (np.union1d hashes: 1.2 s for 670 k values)."""
    if len(b) == 0:
        return a
    both = np.concatenate([a, b])
    both.sort(kind="stable")
    first = np.ones(len(both), dtype=bool)
    first[1:] = both[1:] != both[:-1]
    return both[first]


@dataclass
class _Kept:
    """Phase-1 survivors, compact: one entry per kept row, batches appended."""

    rows: list[np.ndarray] = field(default_factory=list)
    url_hash: list[np.ndarray] = field(default_factory=list)
    label: list[np.ndarray] = field(default_factory=list)
    gbif: list[np.ndarray] = field(default_factory=list)
    media_index: list[np.ndarray] = field(default_factory=list)
    licenses: list[pa.Array] = field(default_factory=list)
    sticky: list[np.ndarray] = field(default_factory=list)
    by: dict[str, list[pa.Array]] = field(default_factory=dict)


def _encoded(parts: list[pa.Array], keep: np.ndarray) -> pa.DictionaryArray:
    """Batches of one column as one dictionary array, rows where ``keep``.

    Filtering the codes in numpy: ``ChunkedArray.filter`` on 8 M dictionary rows took 1.5 s.
    """
    # the chunks themselves: pa.chunked_array() of ChunkedArrays converts them value by value (2.9 s)
    chunks = [c for p in parts for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p])]
    if len({c.type for c in chunks}) > 1:  # a part file without the column, or not dictionary-encoded
        chunks = [decoded(c) for c in chunks]
    column = pa.chunked_array(chunks) if len({c.type for c in chunks}) == 1 else pa.chunked_array(parts)
    codes, dictionary = codes_of(column)
    codes = codes[keep]
    indices = int32_array(codes, codes < 0)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _provisional_duplicates(
    cand: np.ndarray, url_hash: np.ndarray, gbif: np.ndarray, media_index: np.ndarray
) -> np.ndarray:
    """Candidates that repeat an earlier one by (gbifID, media_index), equal hashes taken as equal URLs."""
    if len(cand) == 0:
        return cand
    order = np.lexsort((cand, media_index[cand], gbif[cand], url_hash[cand]))
    h = url_hash[cand][order]
    repeat = np.zeros(len(cand), dtype=bool)
    repeat[1:] = h[1:] == h[:-1]
    return np.sort(cand[order][repeat])


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _require_columns(source: RowSource, spec: TrainingSetSpec, label_col: str) -> None:
    """The columns a build cannot do without: checked up front so a bad input fails before a long read."""
    rank = spec.balancing.label_rank
    why = f"gbifID and identifier are in every snapshot; labels are taken at rank {rank}"
    require_columns(source.names, ["gbifID", "identifier", label_col], why)
    label_type = source.schema_of(label_col)
    if not pa.types.is_integer(label_type):
        raise SamplingError(
            f"label column {label_col} holds {label_type}, not integer taxon keys; give a snapshot whose "
            f"{label_col} is GBIF's accepted key"
        )
    require_by_columns(source.names, spec.balancing.by)
    require_group_columns(source.names, spec.splits)


def _pick(
    source: RowSource,
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None,
    exclude: ImageExclusions | None = None,
) -> PickedRows:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bal = spec.balancing
    rank = bal.label_rank
    label_col = label_column(rank)
    prev_urls = _previous_urls(previous)
    _require_columns(source, spec, label_col)

    # pass 1: filters, batch by batch, keeping compact per-row data
    kept = _Kept(by={b: [] for b in bal.by})
    dropped: dict[str, int] = {}
    not_applied: dict[str, str] = {}
    notes: list[str] = []
    input_rows = 0
    cols1 = first_pass_columns(spec, source.names)
    for offset, batch in source.batches(cols1):
        fr = apply_filters(batch, spec, label_col=label_col, dedup=False, exclude=exclude)
        input_rows += fr.input_rows
        for reason, count in fr.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        not_applied, notes = fr.not_applied, fr.notes
        r = fr.rows
        if len(r) == 0:
            continue
        kept.rows.append(r + offset)
        kept.url_hash.append(fr.url_hash)
        kept.label.append(_ints(batch.column(label_col), r))
        kept.gbif.append(_ints(batch.column("gbifID"), r))
        kept.media_index.append(
            _ints(batch.column("media_index"), r) if "media_index" in batch.column_names else np.zeros(len(r))
        )
        kept.licenses.append(fr.licenses.take(pa.array(r)))
        for b in bal.by:
            kept.by[b].append(take(batch.select([b]), r).column(0))
        if prev_urls is not None:
            kept.sticky.append(isin_mask(batch.column("identifier"), prev_urls)[r])
    timings["filters_s"] = time.perf_counter() - t0
    log.info("filtered %d rows in %.1f s", input_rows, timings["filters_s"])

    rows = _concat(kept.rows, np.int64)
    url_hash = _concat(kept.url_hash, np.uint64)
    media_index = _concat(kept.media_index, np.int64)
    gbif = _concat(kept.gbif, np.int64)
    labels_all = _concat(kept.label, np.int64)
    sticky_all = _concat(kept.sticky, bool) if prev_urls is not None else None
    by_parts, lic_parts = kept.by, kept.licenses
    del kept
    _return_freed_memory()
    # a balancing.by column empty in every candidate row is no balancing: said in stats and a check
    strata_columns = strata_column_fill(by_parts)
    filled, strata_details = check_strata_columns(strata_columns)
    if not filled:
        log.warning("%s", strata_details["message"])

    # Duplicate URLs across the whole input. Rows with equal 64-bit hashes are candidates; they
    # are resolved as if equal hashes meant equal URLs (first by gbifID, media_index kept), and
    # the candidates' strings are read with the picked rows in the last pass and compared: only
    # a true hash collision between different URLs (~n²/2⁶⁵) redoes the selection.
    cand = duplicate_candidates(url_hash)
    dup = _provisional_duplicates(cand, url_hash, gbif, media_index)
    pass2 = last_pass_columns(spec, source.names)
    if "media_index" in source.names and "media_index" not in pass2:
        pass2.append("media_index")
    for _attempt in range(2):  # the second round only after a hash collision
        keep = np.ones(len(rows), dtype=bool)
        keep[dup] = False
        kept_pos = np.flatnonzero(keep)
        br = None
        if len(kept_pos):
            compact = pa.table(
                {
                    label_col: labels_all[keep],
                    "gbifID": gbif[keep],
                    **{b: _encoded(by_parts[b], keep) for b in bal.by},
                }
            )
            t1 = time.perf_counter()
            br = balance(
                compact,
                bal,
                label_col=label_col,
                url_hash=url_hash[keep],
                sticky=sticky_all[keep] if sticky_all is not None else None,
            )
            timings["balance_s"] = time.perf_counter() - t1
        # last pass: the output columns of the picked rows, and the candidates' URLs
        t2 = time.perf_counter()
        picked_pos = kept_pos[br.indices] if br is not None else np.zeros(0, np.int64)
        wanted = _sorted_union(picked_pos, cand)
        got = source.take(rows[wanted], pass2)
        timings["read_picked_s"] = time.perf_counter() - t2
        if len(cand):
            at = np.searchsorted(wanted, cand)
            cols = [c for c in ("identifier", "gbifID", "media_index") if c in got.column_names]
            exact = resolve_duplicates(take(got.select(cols), at), cand)
            if not np.array_equal(exact, dup):
                log.warning("URL hash collision between different URLs: redoing the selection")
                dup = exact
                continue
        break
    if br is None:
        reasons = ", ".join(f"{k}: {v}" for k, v in {**dropped, "duplicate_url": len(dup)}.items() if v)
        raise SamplingError(
            f"no images left after filtering {input_rows} rows ({reasons or 'the input is empty'}); "
            "loosen occurrence_filters/exclude_filters, the licence allowlist or the annotation policy"
        )
    if len(br.indices) == 0:
        raise SamplingError(
            f"no class keeps min_per_class={bal.min_per_class} images: all {len(br.below_min)} classes "
            f"are below it (largest: {max(br.below_min.values(), default=0)} images); lower "
            "balancing.min_per_class or widen the taxa and filters"
        )
    dropped["duplicate_url"] = len(dup)
    # the output order (label, content_key) first, from the URLs and labels alone, so the picked
    # rows are taken once, already in order (taking the finished table again cost ~1 s at 10 M rows)
    t4 = time.perf_counter()
    at = np.searchsorted(wanted, picked_pos)
    keys, key_prefix = content_keys_and_prefixes(take(got.select(["identifier"]), at).column(0))
    label_np = _ints(got.column(label_col), at)
    order = manifest_order(label_np, key_prefix, keys)
    keys = keys.take(pa.array(order))
    at = at[order]
    lic_picked = combine_chunks(_encoded(lic_parts, keep).take(pa.array(br.indices[order])))
    labels = combine_chunks(take(got.select([label_col]), at).column(0)).cast(pa.int64())
    name_col = label_name_column(rank)
    names = as_text(take(got.select([name_col]), at).column(0)) if name_col in got.column_names else None
    names = label_names(labels.to_numpy(zero_copy_only=False), names)
    timings["assemble_s"] = time.perf_counter() - t4
    t3 = time.perf_counter()
    # the split of a row depends on its own group columns only: they alone are taken in output order
    group_columns = [c for c in GROUP_COLUMNS[spec.splits.group_by] if c in got.column_names]
    sp = assign_splits(take(got.select(group_columns), at), spec.splits)
    timings["splits_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0

    licence_counts = pc.value_counts(as_text(lic_picked)).to_pylist()
    licence_mix = {d["values"]: int(d["counts"]) for d in sorted(licence_counts, key=lambda d: -d["counts"])}
    per_class = _ordered(br.per_class)
    counts = list(per_class.values())
    stats: dict[str, Any] = {
        "snapshot_id": snapshot_id,
        "source": source.label,
        "training_set": spec.name,
        "spec_fingerprint": spec.fingerprint(
            "balancing", "splits", "annotations", "licenses", "occurrence_filters", "exclude_filters"
        ),
        "label_rank": rank,
        "label_column": label_col,
        "mode": bal.mode,
        "seed": bal.seed,
        "input_rows": input_rows,
        "images": len(at),
        "classes": len(per_class),
        "min_class_images": min(counts),
        "max_class_images": max(counts),
        "per_class": per_class,
        "per_split": sp.counts,
        "split_fractions": {k: round(v, 6) for k, v in sp.fractions.items()},
        "split_groups": sp.group_counts,
        "split_group_by": spec.splits.group_by,
        "split_fallback_rows": sp.fallback,
        "licenses": licence_mix,
        "dropped": {**dropped, **br.dropped},
        "classes_below_min": _ordered(br.below_min),
        "shortfall": _ordered(br.shortfall),
        "shortfall_classes": len(br.shortfall),
        "shortfall_images": int(sum(br.shortfall.values())),
        "strata_sampled": br.stratum_count,
        "strata_columns": strata_columns,
        "empty_strata_columns": strata_details["empty_columns"],
        "filters_not_applied": not_applied,
        "notes": notes,
        "previous": br.previous,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    log.info(
        "manifest: %d images in %d classes from %d rows in %.1f s (before writing)",
        len(at),
        len(per_class),
        input_rows,
        timings["total_s"],
    )
    return PickedRows(
        source=got,
        order=at,
        keys=keys,
        labels=labels,
        names=names,
        licenses=lic_picked,
        splits=sp,
        by=list(bal.by),
        snapshot_id=snapshot_id,
        stats=stats,
        started=t0,
    )


def pick_manifest(
    table: pa.Table,
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None = None,
    source: str = "input table",
    batch_rows: int = BATCH_ROWS,
    exclude: ImageExclusions | None = None,
) -> PickedRows:
    """The manifest rows of ``table``, picked and ordered, to be assembled or written in parts
    (:meth:`PickedRows.write`); the arguments and errors are :func:`build_manifest`'s."""
    try:
        return _pick(
            TableSource(table, batch_rows, source),
            spec,
            snapshot_id=snapshot_id,
            previous=previous,
            exclude=exclude,
        )
    except SamplingError as exc:
        raise SamplingError(f"{source}: {exc}") from None


def pick_manifest_from_parquet(
    path: str | os.PathLike[str],
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    exclude: ImageExclusions | None = None,
) -> PickedRows:
    """:func:`pick_manifest` streaming a Parquet file or folder (bounded memory)."""
    path = Path(path)
    source = ParquetSource(path, batch_rows)
    try:
        return _pick(source, spec, snapshot_id=snapshot_id, previous=previous, exclude=exclude)
    except SamplingError as exc:
        text = str(exc)
        raise SamplingError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def build_manifest(
    table: pa.Table,
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None = None,
    source: str = "input table",
    batch_rows: int = BATCH_ROWS,
    exclude: ImageExclusions | None = None,
) -> ManifestResult:
    """Filter, balance and split ``table`` into a manifest; SamplingError (naming ``source``) on bad input.

    ``previous``: the previous manifest of this training set (or its URLs); its images are kept
    wherever the quotas allow (see balance.py, "Refresh guarantee"). ``exclude``: flagged images to
    leave out before balancing (:class:`ImageExclusions`).
    """
    picked = pick_manifest(
        table,
        spec,
        snapshot_id=snapshot_id,
        previous=previous,
        source=source,
        batch_rows=batch_rows,
        exclude=exclude,
    )
    return ManifestResult(table=picked.table(), stats=picked.stats)


def build_manifest_from_parquet(
    path: str | os.PathLike[str],
    spec: TrainingSetSpec,
    *,
    snapshot_id: str,
    previous: pa.Table | pa.Array | Iterable[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    exclude: ImageExclusions | None = None,
) -> ManifestResult:
    """:func:`build_manifest` streaming a Parquet file or folder (bounded memory while reading; the
    manifest is one table: :func:`pick_manifest_from_parquet` writes it in parts instead)."""
    picked = pick_manifest_from_parquet(
        path, spec, snapshot_id=snapshot_id, previous=previous, batch_rows=batch_rows, exclude=exclude
    )
    return ManifestResult(table=picked.table(), stats=picked.stats)
