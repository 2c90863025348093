"""The manifest asset checks' logic: balance, licences, split leakage, unique URLs, filled strata
columns; a class table.

Each ``check_*`` returns (passed, details); the Dagster layer only wraps them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.gbif import licenses as lic
from gbifdl_assets.gbif.registry import REGISTRY_COLUMNS
from gbifdl_assets.sampling.arrays import decoded, take
from gbifdl_assets.sampling.filters import duplicate_candidates
from gbifdl_assets.sampling.hashing import hash_strings
from gbifdl_assets.sampling.splits import SPLIT_NAMES


def _class_counts(table: pa.Table, label: str = "label") -> dict[int, int]:
    vc = pc.value_counts(table.column(label)).to_pylist()
    return {int(d["values"]): int(d["counts"]) for d in vc if d["values"] is not None}


def check_balance(table: pa.Table, tolerance: float) -> tuple[bool, dict[str, Any]]:
    """Passes when the smallest class has at least (1 - tolerance) x the images of the largest."""
    counts = _class_counts(table)
    if not counts:
        return False, {"error": "the manifest is empty", "classes": 0}
    lo, hi = min(counts.values()), max(counts.values())
    ratio = lo / hi
    threshold = 1.0 - float(tolerance)
    ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    details = {
        "classes": len(counts),
        "min_class_images": lo,
        "max_class_images": hi,
        "min_max_ratio": round(ratio, 6),
        "threshold": round(threshold, 6),
        "smallest": [{"label": k, "images": v} for k, v in ranked[:5]],
        "largest": [{"label": k, "images": v} for k, v in ranked[-5:][::-1]],
    }
    return ratio >= threshold - 1e-12, details


def check_licenses(table: pa.Table, allowlist: Iterable[str]) -> tuple[bool, dict[str, Any]]:
    """Passes when every image's licence is in the allowlist (ids or families, as in a spec)."""
    allowed = set(lic.parse_license_allowlist(list(allowlist)))
    vc = pc.value_counts(table.column("license")).to_pylist()
    counts = {(d["values"] if d["values"] is not None else "null"): int(d["counts"]) for d in vc}
    bad = {k: v for k, v in counts.items() if k not in allowed}
    return not bad, {"licenses": counts, "disallowed": bad, "allowed": sorted(allowed)}


def check_split_leakage(table: pa.Table, group_column: str = "split_group") -> tuple[bool, dict[str, Any]]:
    """Passes when no value of ``group_column`` appears in more than one split."""
    if group_column not in table.column_names:
        return False, {"error": f"no column {group_column!r} in the manifest"}
    agg = (
        table.select([group_column, "split"]).group_by(group_column).aggregate([("split", "count_distinct")])
    )
    leaking = agg.filter(pc.greater(agg.column("split_count_distinct"), 1))
    examples = [str(v) for v in leaking.column(group_column).to_pylist()[:10]]
    return leaking.num_rows == 0, {
        "group_column": group_column,
        "groups": agg.num_rows,
        "leaking_groups": leaking.num_rows,
        "examples": examples,
    }


def check_unique_urls(table: pa.Table) -> tuple[bool, dict[str, Any]]:
    """Passes when no URL appears twice.

    Only URLs whose 64-bit hash repeats can repeat, so only those are counted, exactly (counting
    every URL held a second copy of them all in its hash table: 0.2 GB at 1 M images). The URLs
    counted keep their row order, so the examples are the first repeated ones, as before.
    """
    urls = table.column("url")
    kind = urls.type.value_type if pa.types.is_dictionary(urls.type) else urls.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        candidates = duplicate_candidates(hash_strings(urls))
        vc = pc.value_counts(take(table.select(["url"]), candidates).column(0))
    else:  # URLs of another type (a column of nulls): counted as they are
        vc = pc.value_counts(urls)
    counts = vc.field("counts").to_numpy(zero_copy_only=False) if len(vc) else np.zeros(0, np.int64)
    dup = counts > 1
    examples = (
        [str(v) for v in vc.field("values").filter(pa.array(dup)).to_pylist()[:10]] if dup.any() else []
    )
    return not dup.any(), {
        "rows": table.num_rows,
        "distinct_urls": table.num_rows - int((counts[dup] - 1).sum()),
        "duplicated_urls": int(dup.sum()),
        "examples": examples,
    }


def _empty_values(arr: pa.Array | pa.ChunkedArray) -> int:
    """Nulls, and empty or blank strings (a DWCA's empty field), in ``arr``."""
    values = decoded(arr)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return values.null_count
    blank = pc.equal(pc.utf8_trim_whitespace(values), "")
    return values.null_count + int(pc.sum(pc.fill_null(blank, False)).as_py() or 0)


def strata_column_fill(
    columns: Mapping[str, Sequence[pa.Array | pa.ChunkedArray]],
) -> dict[str, dict[str, int]]:
    """For each ``balancing.by`` column (given as parts of the candidate rows): rows and empty rows."""
    return {
        name: {"rows": sum(len(p) for p in parts), "empty": sum(_empty_values(p) for p in parts)}
        for name, parts in columns.items()
    }


def empty_column_fix(column: str) -> str:
    """What to do about a ``balancing.by`` column that is empty in every candidate row."""
    if column in REGISTRY_COLUMNS:
        return (
            f"{column} comes from GBIF's registry (a DWCA download does not carry it): the snapshot was "
            "written while the registry was unreachable or offline (see occurrence_snapshot's registry "
            f"metadata); re-materialize occurrence_snapshot with the registry reachable, or remove {column} "
            "from balancing.by"
        )
    return (
        f"the snapshot carries no {column} values for these records: balance by a column that has values "
        f"(publishingOrgKey, datasetKey, institutionCode, countryCode, recordedBy) or remove {column} from "
        "balancing.by"
    )


def check_strata_columns(fill: Mapping[str, Mapping[str, int]]) -> tuple[bool, dict[str, Any]]:
    """Passes unless a ``balancing.by`` column is empty in every candidate row (``fill`` from
    :func:`strata_column_fill`): balancing by it is then no balancing, one stratum per class."""
    empty = [name for name, f in fill.items() if f.get("rows", 0) and f.get("empty", 0) >= f["rows"]]
    details: dict[str, Any] = {
        "columns": {k: dict(v) for k, v in fill.items()},
        "empty_columns": empty,
        "fixes": {name: empty_column_fix(name) for name in empty},
    }
    if empty:
        details["message"] = "; ".join(
            f"balancing.by column {name!r} is empty in all {fill[name]['rows']} candidate rows, so every "
            f"class was sampled as one stratum: {empty_column_fix(name)}"
            for name in empty
        )
    return not empty, details


def class_counts_markdown(table: pa.Table, *, limit: int = 100) -> str:
    """A markdown table of images per class and split (the smallest classes first)."""
    import pandas as pd

    df = table.select(["label", "label_name", "split"]).to_pandas()
    if df.empty:
        return "_empty manifest_"
    pivot = pd.crosstab([df["label"], df["label_name"].fillna("")], df["split"])
    for name in SPLIT_NAMES:
        if name not in pivot.columns:
            pivot[name] = 0
    pivot = pivot[list(SPLIT_NAMES)]
    pivot["images"] = pivot.sum(axis=1)
    pivot = pivot.reset_index().sort_values(["images", "label"], kind="stable")
    lines = ["| label | name | images | train | val | test |", "|---:|---|---:|---:|---:|---:|"]
    for row in pivot.head(limit).itertuples(index=False):
        lines.append(
            f"| {row.label} | {row.label_name} | {row.images} | {row.train} | {row.val} | {row.test} |"
        )
    if len(pivot) > limit:
        lines.append(f"| … | {len(pivot) - limit} more classes | | | | |")
    return "\n".join(lines)
