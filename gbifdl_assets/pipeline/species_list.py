"""species_list: the spec's taxa resolved to accepted GBIF taxa, as one table per training set.

Names are matched, keys looked up, synonyms replaced by their accepted usage and higher taxa expanded
to the rank the spec asks for. Unmatched inputs are kept in the table and reported, never dropped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.errors import GbifError
from gbifdl_assets.gbif.species import resolve_taxa
from gbifdl_assets.pipeline.errors import service_failure
from gbifdl_assets.specs import TrainingSetSpec
from gbifdl_assets.storage import Storage, layout

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeciesList:
    """A written species list: where, what it holds, and how it went."""

    key: str
    rows: list[dict[str, Any]]
    counts: dict[str, int]  # taxa, exact, fuzzy, synonym, key, expanded, unmatched, duplicates
    labels: int  # distinct accepted taxa that become labels
    inputs: int  # taxa entries of the spec
    bytes: int
    seconds: float
    spec_fingerprint: str

    @property
    def unmatched(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["match_type"] == "NONE"]

    @property
    def all_matched(self) -> bool:
        """Every input resolved (and there was something to resolve)."""
        return not self.unmatched and self.counts["taxa"] > 0


def build_species_list(
    training_set: str,
    spec: TrainingSetSpec,
    client: GbifClient,
    storage: Storage,
    *,
    log: logging.Logger = _log,
) -> SpeciesList:
    """Resolve the spec's taxa against GBIF and write ``species_lists/<training_set>/``."""
    started = time.monotonic()
    log.info(f"resolving {len(spec.taxa)} taxa of '{training_set}' against {client.base_url}")
    try:
        resolution = resolve_taxa(client, spec.taxa)
    except GbifError as exc:
        raise service_failure(f"species_list[{training_set}]", exc) from exc
    table = resolution.to_table()
    key = layout.species_list_key(training_set)
    nbytes = storage.write_parquet(key, table)
    counts = resolution.counts()
    elapsed = time.monotonic() - started
    log.info(f"species_list[{training_set}]: {counts} in {elapsed:.1f}s -> {key}")
    return SpeciesList(
        key=key,
        rows=table.to_pylist(),
        counts=counts,
        labels=len(resolution.taxon_keys()),
        inputs=len(spec.taxa),
        bytes=nbytes,
        seconds=elapsed,
        spec_fingerprint=spec.fingerprint(),
    )


def taxon_keys_of(storage: Storage, training_set: str) -> list[int]:
    """The accepted keys labelled in the species list (expanded groups are covered by their members)."""
    table = storage.read_parquet(layout.species_list_key(training_set))
    return [
        int(row["taxon_key"])
        for row in table.select(["taxon_key", "role", "match_type"]).to_pylist()
        if row["taxon_key"] is not None and row["role"] == "label" and row["match_type"] != "NONE"
    ]


def taxon_names_of(storage: Storage, training_set: str) -> dict[str, str]:
    """Taxon key (as text) -> canonical name, for every resolved row of the species list (the spec's
    taxa as accepted taxa, and the species a higher taxon expanded to); empty without a list.

    Metadata shows names beside the keys it reports (classes dropped, rules, the search query)."""
    key = layout.species_list_key(training_set)
    if not storage.exists(key):
        return {}
    table = storage.read_parquet(key, columns=["taxon_key", "canonical_name", "scientific_name"])
    return {
        str(row["taxon_key"]): row["canonical_name"] or row["scientific_name"]
        for row in table.to_pylist()
        if row["taxon_key"] is not None and (row["canonical_name"] or row["scientific_name"])
    }
