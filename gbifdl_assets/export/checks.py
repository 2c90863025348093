"""What a written export is checked for: every manifest image accounted for, every image credited.

Two checks, each ``(passed, details)`` (the Dagster layer only wraps them):

* :func:`check_manifest_covered`: every image of the manifest is in the export or has a reason not to
  be: the image store's ledger says why it is not stored (``http_404``, ``not_an_image``, a duplicate
  ...), or the export left it out for lack of a name to credit (``unattributed: drop``) or as a copy of
  an image it exported in the same split (see .dedup). An image no
  ledger mentions was never fetched (a shard that did not run) and is *unexplained*.
* :func:`check_credits_cover`: ``credits.csv`` has one row per exported image, and every image under
  a BY-family licence has a name in it. A BY image kept without a name (``unattributed: keep``) fails
  the check as a warning: the export is usable, but redistributing that image is not licence-clean.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.export.attribution import requires_attribution
from gbifdl_assets.storage import Storage

__all__ = ["EXAMPLES", "check_credits_cover", "check_manifest_covered", "read_credits"]

#: how many example content keys a check's details carry
EXAMPLES = 10


def _latest_entries(ledger: pa.Table) -> dict[str, dict[str, Any]]:
    """content_key -> the last ledger entry (status, reason, stored) of several ledgers together."""
    cols = [c for c in ("content_key", "status", "reason", "stored") if c in ledger.column_names]
    return {row["content_key"]: row for row in ledger.select(cols).to_pylist()}


def check_manifest_covered(
    manifest: pa.Table,
    ledger: pa.Table,
    exported_keys: pa.Array | pa.ChunkedArray,
    *,
    dropped_unattributed: int = 0,
    dropped_duplicates: int = 0,
) -> tuple[bool, dict[str, Any]]:
    """Passes when every manifest image is exported or its absence is explained (module docstring)."""
    exported = pc.is_in(manifest.column("content_key"), value_set=pa.array(exported_keys).cast(pa.string()))
    absent = manifest.filter(pc.invert(exported)).column("content_key").to_pylist()
    entries = _latest_entries(ledger)
    reasons: Counter[str] = Counter()
    unexplained: list[str] = []
    stored_left_out: list[str] = []
    for key in absent:
        entry = entries.get(key)
        if entry is None:
            unexplained.append(key)
        elif entry.get("stored"):
            stored_left_out.append(key)
        else:
            reasons[f"{entry.get('status') or 'unknown'}: {entry.get('reason') or 'no reason recorded'}"] += 1
    # stored but not exported: what the export dropped for lack of a name, as many as it says it dropped
    dropped = min(len(stored_left_out), max(0, int(dropped_unattributed)))
    if dropped:
        reasons["dropped: no name to credit under a BY licence"] = dropped
    copies = min(len(stored_left_out) - dropped, max(0, int(dropped_duplicates)))
    if copies:
        reasons["dropped: a copy of another exported image in the same split"] = copies
    unexplained += stored_left_out[dropped + copies :]
    details: dict[str, Any] = {
        "manifest_images": manifest.num_rows,
        "exported": manifest.num_rows - len(absent),
        "not_exported": len(absent),
        "not_exported_by_reason": dict(reasons.most_common()),
        "unexplained": len(unexplained),
        "unexplained_examples": unexplained[:EXAMPLES],
    }
    if unexplained:
        details["message"] = (
            f"{len(unexplained)} manifest images are neither exported nor explained by a ledger (never "
            "fetched: a shard of image_store did not run, or its ledger is gone); materialize every "
            "image_store shard of the training set, then the export again"
        )
    return not unexplained, details


def read_credits(out: Storage) -> list[dict[str, str]]:
    """The rows of ``credits.csv`` in an export."""
    text = out.read_bytes("credits.csv").decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def check_credits_cover(exported: pa.Table, credits: list[dict[str, str]]) -> tuple[bool, dict[str, Any]]:
    """Passes when ``credits`` (rows of credits.csv) has a row for every exported image
    (``exported``: ``content_key`` and ``license``) and a name for every BY-family one."""
    by_key = {row.get("content_key", ""): row for row in credits}
    keys = exported.column("content_key").to_pylist()
    licenses = exported.column("license").to_pylist()
    missing = [k for k in keys if k not in by_key]
    nameless = [
        k
        for k, lic in zip(keys, licenses, strict=True)
        if k in by_key and requires_attribution(lic) and not (by_key[k].get("attribution") or "").strip()
    ]
    details: dict[str, Any] = {
        "exported": len(keys),
        "credited": len(keys) - len(missing),
        "missing_rows": len(missing),
        "missing_examples": missing[:EXAMPLES],
        "by_without_name": len(nameless),
        "by_without_name_examples": nameless[:EXAMPLES],
    }
    problems = []
    if missing:
        problems.append(f"{len(missing)} exported images have no row in credits.csv (export again)")
    if nameless:
        problems.append(
            f"{len(nameless)} images under a BY licence have no name to credit; set images.unattributed: drop "
            "in the spec to leave them out, or credit them by hand before redistributing"
        )
    if problems:
        details["message"] = "; ".join(problems)
    return not problems, details
