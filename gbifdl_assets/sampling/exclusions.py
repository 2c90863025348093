"""Images the manifest leaves out by name: flagged images (issue 18), matched by URL, occurrence and label.

The annotation library decides which URLs a flag takes out (:mod:`gbifdl_assets.annotations.flag_matching`);
the pipeline hands them here as plain sets, and :func:`~gbifdl_assets.sampling.filters.apply_filters`
drops the matching rows before balancing, so a flagged image is replaced by another of its class
rather than leaving a hole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gbifdl_assets.sampling.arrays import combine_chunks, isin_mask

__all__ = ["ImageExclusions"]


@dataclass(frozen=True)
class ImageExclusions:
    """``urls``: out on every occurrence; ``scoped``: url -> (gbifID, label or None) pairs, out where
    the row's gbifID or its label matches one of them."""

    urls: frozenset[str] = frozenset()
    scoped: Mapping[str, frozenset[tuple[int, int | None]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.urls or self.scoped)

    def mask(self, table: pa.Table, label_col: str) -> np.ndarray:
        """True for the rows of ``table`` (``identifier``, ``gbifID``, ``label_col``) to leave out."""
        ident = table.column("identifier")
        if not self:
            return np.zeros(table.num_rows, dtype=bool)
        hit = isin_mask(ident, list(self.urls | set(self.scoped)))
        rows = np.flatnonzero(hit)
        if len(rows) == 0 or not self.scoped:
            return hit
        take = pa.array(rows)
        urls = combine_chunks(ident).take(take)
        if pa.types.is_dictionary(urls.type):
            urls = urls.dictionary_decode()
        gbif = combine_chunks(table.column("gbifID")).take(take).to_pylist()
        labels = combine_chunks(table.column(label_col)).take(take).to_pylist()
        for i, (url, gid, label) in enumerate(zip(urls.to_pylist(), gbif, labels, strict=True)):
            if url in self.urls:
                continue
            pairs = self.scoped.get(url, frozenset())
            hit[rows[i]] = any(
                (gid is not None and int(gid) == g)
                or (t is not None and label is not None and int(label) == t)
                for g, t in pairs
            )
        return hit
