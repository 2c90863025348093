"""balanced_manifest[training_set]: filters, licence policy, exact balancing and stable splits.

One row per image (label, split, licence, attribution, the content key the image store uses).
Four blocking checks guard what a model would train on: balance within the spec's tolerance,
every licence allowed, no split group in two splits, no duplicate URL.
"""

import time

import dagster as dg
import pyarrow as pa

from gbifdl_assets.defs.annotations import annotated_occurrences, latest_annotated_key
from gbifdl_assets.defs.metadata import markdown_table
from gbifdl_assets.defs.partitions import training_set_partitions
from gbifdl_assets.defs.resources import SpecCatalog, StorageResource
from gbifdl_assets.sampling.filters import SamplingError
from gbifdl_assets.sampling.manifest import (
    build_manifest,
    build_manifest_from_parquet,
    check_balance,
    check_licenses,
    check_split_leakage,
    check_unique_urls,
)
from gbifdl_assets.storage import Storage

CHECKS = {
    "balanced": "Smallest class has at least (1 - balancing.tolerance) x the images of the largest.",
    "licenses_allowed": "Every image's licence is in the spec's allowlist.",
    "no_split_leakage": "No split group (occurrence, observer, location cell or dataset) is in two splits.",
    "unique_urls": "No image URL appears twice.",
}


def manifest_prefix(training_set: str) -> str:
    return f"manifests/{training_set}"


def latest_manifest_key(storage: Storage, training_set: str) -> str | None:
    pointer = f"{manifest_prefix(training_set)}/latest"
    if not storage.exists(pointer):
        return None
    return storage.read_bytes(pointer).decode().strip()


def read_latest_manifest(storage: Storage, training_set: str) -> pa.Table:
    key = latest_manifest_key(storage, training_set)
    if key is None:
        raise dg.Failure(
            description=f"'{training_set}' has no manifest yet; materialize balanced_manifest first",
            allow_retries=False,
        )
    return storage.read_parquet(key)


@dg.asset(
    partitions_def=training_set_partitions,
    deps=[annotated_occurrences],
    group_name="manifest",
    kinds={"python", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(name, asset="balanced_manifest", blocking=True, description=text)
        for name, text in CHECKS.items()
    ],
    description=(
        "One row per image: label, split, licence and attribution. Exact, seeded balancing by label and "
        "publisher; splits by a stable hash of the group key, so a refresh keeps every image in its split."
    ),
)
def balanced_manifest(
    context: dg.AssetExecutionContext, storage: StorageResource, specs: SpecCatalog
) -> dg.MaterializeResult:
    training_set = context.partition_key
    spec = specs.get(training_set)
    store = storage.open()
    source_key = latest_annotated_key(store, training_set)
    snapshot_id = source_key.split("/")[2].rsplit("-", 1)[0]
    previous_key = latest_manifest_key(store, training_set)
    previous = store.read_parquet(previous_key, columns=["url"]).column("url") if previous_key else None
    started = time.monotonic()
    try:
        local = store.local_path(source_key)
        if local is not None:  # stream the Parquet file (bounded memory)
            result = build_manifest_from_parquet(local, spec, snapshot_id=snapshot_id, previous=previous)
        else:
            result = build_manifest(
                store.read_parquet(source_key),
                spec,
                snapshot_id=snapshot_id,
                previous=previous,
                source=store.uri_of(source_key),
            )
    except SamplingError as exc:
        raise dg.Failure(
            description=f"balanced_manifest[{training_set}]: {exc}", allow_retries=False
        ) from exc
    elapsed = time.monotonic() - started
    table, stats = result.table, result.stats
    key = f"{manifest_prefix(training_set)}/{source_key.split('/')[2]}/manifest.parquet"
    nbytes = store.write_parquet(key, table)
    store.write_bytes(f"{manifest_prefix(training_set)}/latest", key.encode())

    if spec.balancing.mode == "weighted":  # natural proportions are unbalanced on purpose
        balance = (True, {"skipped": "weighted mode keeps natural proportions; tolerance does not apply"})
    else:
        balance = check_balance(table, spec.balancing.tolerance)
    checks = [
        _check("balanced", *balance),
        _check("licenses_allowed", *check_licenses(table, spec.licenses)),
        _check("no_split_leakage", *check_split_leakage(table, "split_group")),
        _check("unique_urls", *check_unique_urls(table)),
    ]
    names = dict(zip(table.column("label").to_pylist(), table.column("label_name").to_pylist(), strict=True))
    per_class = [
        {"label": label, "name": names.get(label), "images": n}
        for label, n in stats.get("per_class", {}).items()
    ]
    context.log.info(
        f"manifest[{training_set}]: {table.num_rows} images, {len(per_class)} classes in {elapsed:.1f}s; "
        f"dropped {stats.get('dropped')}"
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(store.uri_of(key)),
            "snapshot_id": snapshot_id,
            "images": dg.MetadataValue.int(table.num_rows),
            "classes": dg.MetadataValue.int(len(per_class)),
            "per_class": dg.MetadataValue.md(
                markdown_table(per_class, ("label", "name", "images"), limit=50)
            ),
            "per_split": dg.MetadataValue.json(stats.get("per_split", {})),
            "license_mix": dg.MetadataValue.json(stats.get("licenses", {})),
            "dropped": dg.MetadataValue.json(stats.get("dropped", {})),
            "classes_below_min": dg.MetadataValue.json(stats.get("classes_below_min", {})),
            "shortfall_classes": dg.MetadataValue.int(int(stats.get("shortfall_classes", 0))),
            # classes with fewer images than max_per_class asks for: how many are missing
            "shortfall": dg.MetadataValue.md(
                markdown_table(
                    [
                        {"label": k, "name": names.get(k), "missing": v}
                        for k, v in stats.get("shortfall", {}).items()
                    ],
                    ("label", "name", "missing"),
                )
            ),
            "kept_from_previous": dg.MetadataValue.json(stats.get("previous") or {}),
            "bytes": dg.MetadataValue.int(nbytes),
            "seconds": dg.MetadataValue.float(round(elapsed, 3)),
        },
        check_results=checks,
        data_version=dg.DataVersion(key.split("/")[2]),
    )


def _check(name: str, passed: bool, details: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"details": dg.MetadataValue.json(details)},
        description=CHECKS[name] if passed else f"{CHECKS[name]} Failed: {_brief(details)}",
    )


def _brief(details: dict) -> str:
    """The scalar facts of a check's details, for the one-line description."""
    return ", ".join(f"{k}={v}" for k, v in details.items() if isinstance(v, int | float | str))[:300]
