"""species_list[training_set]: the spec's taxa resolved to accepted GBIF taxa (pipeline.species_list)."""

import dagster as dg

from gbifdl_assets.defs.metadata import STORAGE_KIND, markdown_table, taxon
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import GbifResource, SpecsResource, StorageResource
from gbifdl_assets.defs.retries import stage_failures
from gbifdl_assets.pipeline.species_list import SpeciesList, build_species_list

ALL_TAXA_MATCHED = "all_taxa_matched"


@dg.asset(
    partitions_def=training_set_partitions,
    group_name="gbif",
    kinds={"python", "parquet", STORAGE_KIND},
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
    context: dg.AssetExecutionContext, gbif: GbifResource, storage: StorageResource, specs: SpecsResource
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    with stage_failures(context):
        result = build_species_list(training_set, spec, gbif.client(), storage.open(), log=context.log)
    return dg.MaterializeResult(
        metadata={
            **_metadata(result),
            "path": dg.MetadataValue.path(storage.uri.rstrip("/") + "/" + result.key),
            "gbif_api": dg.MetadataValue.url(gbif.base_url),
        },
        check_results=[_all_taxa_matched(result)],
    )


def _metadata(result: SpeciesList) -> dict[str, dg.MetadataValue]:
    counts = result.counts
    return {
        "taxa": dg.MetadataValue.int(counts["taxa"]),
        "labels": dg.MetadataValue.int(result.labels),
        "exact": dg.MetadataValue.int(counts["exact"]),
        "fuzzy": dg.MetadataValue.int(counts["fuzzy"]),
        "synonym": dg.MetadataValue.int(counts["synonym"]),
        "by_key": dg.MetadataValue.int(counts["key"]),
        "expanded": dg.MetadataValue.int(counts["expanded"]),
        "unmatched": dg.MetadataValue.int(counts["unmatched"]),
        "duplicates": dg.MetadataValue.int(counts["duplicates"]),
        "bytes": dg.MetadataValue.int(result.bytes),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "spec_fingerprint": dg.MetadataValue.text(result.spec_fingerprint),
        "preview": dg.MetadataValue.md(preview_table(result.rows)),
    }


def preview_table(rows: list[dict]) -> str:
    """The list's first rows, narrow enough to read on the page: what the spec said, the taxon it
    resolved to (name and key), how, and the note (synonym, expansion, no match)."""
    shown = [
        {
            "input": row["input"],
            "taxon": taxon(
                row["taxon_key"], {str(row["taxon_key"]): row["canonical_name"] or row["scientific_name"]}
            )
            if row["taxon_key"] is not None
            else "",
            "rank": (row["rank"] or "").lower(),
            "match": (row["match_type"] or "").lower(),
            "note": row["note"],
        }
        for row in rows
    ]
    return markdown_table(shown, ("input", "taxon", "rank", "match", "note"), limit=len(shown), inline=True)


def _all_taxa_matched(result: SpeciesList) -> dg.AssetCheckResult:
    unmatched = result.unmatched
    return dg.AssetCheckResult(
        check_name=ALL_TAXA_MATCHED,
        passed=result.all_matched,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "unmatched": dg.MetadataValue.int(len(unmatched)),
            "matched": dg.MetadataValue.int(result.counts["taxa"]),
            # one line (a check's page shows Markdown only behind a button)
            "problems": dg.MetadataValue.text(
                "; ".join(f"{row['input']}: {row['note']}" for row in unmatched) or "none"
            ),
        },
        description=(
            f"{len(unmatched)} of {result.inputs} inputs did not resolve: fix them in the spec"
            if unmatched
            else "every input resolved"
        ),
    )
