"""species_list[training_set]: the spec's taxa resolved to accepted GBIF taxa."""

import time

import dagster as dg

from gbifdl_assets.defs.metadata import markdown_table
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import GbifResource, SpecCatalog, StorageResource
from gbifdl_assets.defs.retries import step_failure
from gbifdl_assets.gbif.errors import GbifError, GbifRateLimited, GbifUnavailable
from gbifdl_assets.gbif.species import resolve_taxa

ALL_TAXA_MATCHED = "all_taxa_matched"
PREVIEW_COLUMNS = ("input", "match_type", "scientific_name", "rank", "taxon_key", "family", "note")


def species_list_key(training_set: str) -> str:
    return f"species_lists/{training_set}/species_list.parquet"


@dg.asset(
    partitions_def=training_set_partitions,
    group_name="gbif",
    kinds={"python", "parquet"},
    pool="gbif_api",
    retry_policy=dg.RetryPolicy(
        max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
    check_specs=[
        dg.AssetCheckSpec(
            ALL_TAXA_MATCHED,
            asset="species_list",
            blocking=True,
            description="Every name and key in the spec resolved to a GBIF taxon (nothing dropped silently).",
        )
    ],
    description=(
        "The spec's taxa as accepted GBIF taxa: names matched, keys looked up, synonyms replaced by their "
        "accepted usage, higher taxa expanded to the rank the spec asks for. Unmatched inputs are kept "
        "and reported; the check fails on them."
    ),
)
def species_list(
    context: dg.AssetExecutionContext, gbif: GbifResource, storage: StorageResource, specs: SpecCatalog
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    started = time.monotonic()
    context.log.info(f"resolving {len(spec.taxa)} taxa of '{training_set}' against {gbif.base_url}")
    try:
        resolution = resolve_taxa(gbif.client(), spec.taxa)
    except GbifError as exc:
        # One clear line for the user; only failures that waiting can fix go back to the retry policy.
        transient = isinstance(exc, GbifUnavailable | GbifRateLimited)
        raise step_failure(context, f"species_list[{training_set}]: {exc}", transient=transient) from exc
    table = resolution.to_table()
    key = species_list_key(training_set)
    nbytes = storage.open().write_parquet(key, table)
    counts = resolution.counts()
    elapsed = time.monotonic() - started
    context.log.info(f"species_list[{training_set}]: {counts} in {elapsed:.1f}s -> {key}")

    rows = table.to_pylist()
    unmatched = [r for r in rows if r["match_type"] == "NONE"]
    check = dg.AssetCheckResult(
        check_name=ALL_TAXA_MATCHED,
        passed=not unmatched and counts["taxa"] > 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "unmatched": dg.MetadataValue.int(len(unmatched)),
            "matched": dg.MetadataValue.int(counts["taxa"]),
            "problems": dg.MetadataValue.md(
                markdown_table(unmatched, ("input", "note")) if unmatched else "none"
            ),
        },
        description=(
            f"{len(unmatched)} of {len(spec.taxa)} inputs did not resolve: fix them in the spec"
            if unmatched
            else "every input resolved"
        ),
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(storage.uri.rstrip("/") + "/" + key),
            "taxa": dg.MetadataValue.int(counts["taxa"]),
            "labels": dg.MetadataValue.int(len(resolution.taxon_keys())),
            "exact": dg.MetadataValue.int(counts["exact"]),
            "fuzzy": dg.MetadataValue.int(counts["fuzzy"]),
            "synonym": dg.MetadataValue.int(counts["synonym"]),
            "by_key": dg.MetadataValue.int(counts["key"]),
            "expanded": dg.MetadataValue.int(counts["expanded"]),
            "unmatched": dg.MetadataValue.int(counts["unmatched"]),
            "duplicates": dg.MetadataValue.int(counts["duplicates"]),
            "bytes": dg.MetadataValue.int(nbytes),
            "seconds": dg.MetadataValue.float(round(elapsed, 3)),
            "spec_fingerprint": dg.MetadataValue.text(spec.fingerprint()),
            "gbif_api": dg.MetadataValue.url(gbif.base_url),
            "preview": dg.MetadataValue.md(markdown_table(rows, PREVIEW_COLUMNS)),
        },
        check_results=[check],
    )
