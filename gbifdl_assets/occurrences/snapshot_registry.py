"""Registry data for a snapshot being written: publisher, dataset title, DOI and licence per row.

Why here: a real GBIF DWCA download has no ``publishingOrgKey`` column and neither source carries
the dataset's title, DOI or the publisher's name (reference real-world.md), so every snapshot, from
the search API or a download, gets them from GBIF's registry before it is committed
(:mod:`gbifdl_assets.gbif.registry`: one request per distinct dataset and organization, cached in
the storage). The snapshot then holds the same publisher values whatever its source, and balancing
``by: [publishingOrgKey]`` works on the download path.

How: the staged ``media.parquet`` is written completely first (both sources stream it); then its
``datasetKey`` column is read (dictionary-encoded, cheap), the registry is looked up once for the
distinct keys, and the file is rewritten row group by row group with the columns filled
(:func:`~gbifdl_assets.gbif.registry.enrich_with_registry`, existing values win). When the registry
gave nothing (offline, unreachable, nothing cached) the file is left as it is.

Nothing here fails a snapshot: a registry that is unreachable or answers 404/429/5xx leaves the
affected rows' columns null, and the outcome is counted by reason (:class:`RegistrySummary`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gbifdl_assets.gbif.dwca import SnapshotParquetWriter
from gbifdl_assets.gbif.media_schema import conform
from gbifdl_assets.gbif.registry import (
    DEFAULT_MAX_AGE,
    REGISTRY_COLUMNS,
    RegistryClient,
    RegistryReport,
    enrich_with_registry,
    lookup_registry,
)
from gbifdl_assets.storage import Storage, staging_name

__all__ = ["RegistrySummary", "add_registry_data"]

log = logging.getLogger(__name__)

#: rows per batch of the rewrite (the writer gathers them into its own row groups)
REWRITE_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class RegistrySummary:
    """What the registry gave a snapshot: outcomes per distinct key, and the columns left empty."""

    report: RegistryReport
    #: registry column -> "N of M rows empty (registry: 3 unreachable)"; filled columns are left out
    gaps: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    rows_without_publisher: int = 0
    api_url: str | None = None

    @property
    def offline(self) -> bool:
        return self.api_url is None

    def counts(self) -> dict[str, Any]:
        """For the snapshot's ``counts``: outcomes by reason, and the rows without a publisher."""
        return {
            "datasets": dict(self.report.datasets),
            "organizations": dict(self.report.organizations),
            "rows_without_publisher": self.rows_without_publisher,
        }

    def metadata(self) -> dict[str, Any]:
        """For snapshot.json: the whole report, the registry used and the empty columns with why."""
        return {"api": self.api_url, **self.report.to_dict(), "gaps": dict(self.gaps)}

    def summary(self) -> str:
        """One line for logs and CLI summaries."""
        where = f"registry {self.api_url}" if self.api_url else "no registry (offline)"
        text = f"{where}: {self.report.summary()}"
        if self.gaps:
            text += "; empty: " + "; ".join(f"{k} {v}" for k, v in self.gaps.items())
        return text


def _null_counts(path: Path) -> tuple[int, dict[str, int]]:
    """Rows of the file and the empty rows of each registry column."""
    table = pq.read_table(path, columns=list(REGISTRY_COLUMNS), read_dictionary=list(REGISTRY_COLUMNS))
    return table.num_rows, {name: table.column(name).null_count for name in REGISTRY_COLUMNS}


def _rewrite(path: Path, datasets: pa.Table, organizations: pa.Table) -> None:
    """``path`` with the registry columns filled, written beside it first, then moved over it."""
    tmp = path.with_name(staging_name(".parquet"))
    try:
        writer = SnapshotParquetWriter(tmp)
        try:
            source = pq.ParquetFile(path)
            for batch in source.iter_batches(batch_size=REWRITE_BATCH_ROWS):
                table = pa.Table.from_batches([batch])
                writer.write(conform(enrich_with_registry(table, datasets, organizations)))
        except BaseException:
            writer.close(raise_errors=False)
            raise
        writer.close()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def add_registry_data(
    path: str | os.PathLike[str],
    *,
    client: RegistryClient | None,
    storage: Storage | None,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> RegistrySummary:
    """Fill the registry columns of the staged snapshot file ``path`` in place (module docstring).

    ``client=None`` is an offline run: only entries cached in ``storage`` (``registry/``) are used.
    Never raises for the registry's sake; storage errors of the rewrite itself do raise (the snapshot
    is then not committed).
    """
    path = Path(path)
    keys = pq.read_table(path, columns=["datasetKey"], read_dictionary=["datasetKey"]).column("datasetKey")
    data = lookup_registry(keys, client=client, storage=storage, max_age=max_age)
    found = pc.sum(pc.equal(data.datasets.column("outcome"), "ok")).as_py() or 0
    if found:
        _rewrite(path, data.datasets, data.organizations)
    rows, nulls = _null_counts(path)
    summary = RegistrySummary(
        report=data.report,
        gaps=data.report.gaps_of(rows, nulls),
        rows=rows,
        rows_without_publisher=nulls["publishingOrgKey"],
        api_url=client.api_url if client is not None else None,
    )
    log.info("snapshot %s", summary.summary())
    return summary
