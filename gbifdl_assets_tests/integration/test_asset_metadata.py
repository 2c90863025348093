"""The metadata a person reads in the Dagster UI (issue 20, item 3), for the demo training set on the sandbox.

Markdown tables instead of JSON blobs, numbers as numbers (the UI plots them), taxon names beside keys;
image_store's metadata describes the whole training set so far, whichever shard ran last; the export
has a per-class table; check metadata is numbers and lines of text (the check page shows Markdown only
behind a button). One materialization of the whole graph serves every test of the module.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from gbifdl_assets.defs.annotations import annotation_rulesets
from gbifdl_assets.defs.assets import ALL_ASSETS, TRAINING_SET_STAGES
from gbifdl_assets.defs.images import image_store, shard_partitions, training_export
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.pipeline.balanced_manifest import read_latest_manifest
from gbifdl_assets.pipeline.image_shards import shard_of
from gbifdl_assets.specs import example_specs_dir
from gbifdl_assets.storage import layout, open_storage
from gbifdl_assets_tests.harness.markdown_tables import as_int, markdown_column, markdown_rows
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::dagster.BetaWarning")]

SET = "european-butterflies"


@dataclass
class Built:
    """What the module's one materialization left: metadata by asset, check evaluations, the storage."""

    meta: dict[str, dict[str, dg.MetadataValue]] = field(default_factory=dict)
    checks: dict[str, dg.AssetCheckEvaluation] = field(default_factory=dict)
    first_shards: dict[str, dict[str, dg.MetadataValue]] = field(default_factory=dict)
    last_shard: str = ""
    root: Path = Path()


def _materialize(instance, resources, selection, partition_key=None) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        ALL_ASSETS, selection=selection, partition_key=partition_key, instance=instance, resources=resources
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def built(sandbox, tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("metadata")
    (root / "specs").mkdir()
    shutil.copy(example_specs_dir() / f"{SET}.yaml", root / "specs")
    resources = sandbox_resources(sandbox.api_url, root, seed_rules=True)
    out = Built(root=root)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, [SET])
        results = [
            _materialize(instance, resources, [annotation_rulesets.key]),
            _materialize(instance, resources, [a.key for a in TRAINING_SET_STAGES], SET),
        ]
        # the shards holding images first, an empty one last (if any): its page must still say how the
        # training set stands, not show one empty shard's zeros
        manifest = read_latest_manifest(open_storage(str(root / "data")), SET)
        busy = sorted(set(shard_of(manifest.column("label")).to_pylist()))
        shards = busy + [s for s in shard_partitions.get_partition_keys() if s not in busy]
        for shard in shards:
            key = dg.MultiPartitionKey({TRAINING_SET_PARTITION: SET, "shard": shard})
            run = _materialize(instance, resources, [image_store.key], key)
            if shard == busy[0]:  # the first shard, while the others are still to do
                out.first_shards = {"first": run.asset_materializations_for_node("image_store")[0].metadata}
            results.append(run)
        out.last_shard = shards[-1]
        results.append(_materialize(instance, resources, [training_export.key], SET))
    for result in results:
        for node in {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}:
            out.meta[node] = result.asset_materializations_for_node(node)[-1].metadata
        for evaluation in result.get_asset_check_evaluations():
            out.checks[f"{evaluation.asset_key.path[-1]}.{evaluation.check_name}"] = evaluation
    return out


def test_no_json_blobs_anywhere(built):
    for node, meta in built.meta.items():
        blobs = [k for k, v in meta.items() if isinstance(v, dg.JsonMetadataValue)]
        assert not blobs, f"{node}: {blobs}"
    for name, evaluation in built.checks.items():
        kinds = {type(v).__name__ for v in evaluation.metadata.values()}
        # a check's page shows numbers and text inline, Markdown only behind a button
        assert kinds <= {
            "IntMetadataValue",
            "FloatMetadataValue",
            "TextMetadataValue",
            "BoolMetadataValue",
        }, (
            name,
            kinds,
        )


def test_snapshot_query_names_the_taxa_and_counts_are_numbers(built):
    meta = built.meta["occurrence_snapshot"]
    query = markdown_column(meta["query"].value, "parameter", "values")
    assert "Vanessa atalanta (1898286)" in query["taxonKey"] and query["mediaType"] == "StillImage"
    skipped = markdown_column(meta["skipped"].value, "reason", "rows")
    assert meta["skipped_rows"].value == sum(as_int(n) for n in skipped.values()) > 0
    assert isinstance(meta["rows_without_publisher"], dg.IntMetadataValue)
    assert {r["lookup"] for r in markdown_rows(meta["registry"].value)} == {"datasets", "organizations"}


def test_rules_tables(built):
    rules = built.meta["annotation_rulesets"]
    assert markdown_column(rules["by_source"].value, "source", "rules")["seed"] == str(rules["rules"].value)
    top = markdown_rows(built.meta["annotated_occurrences"]["top_rules"].value)
    assert top and all(row["taxon"] for row in top)  # seed rules apply to any taxon: "any"


def test_manifest_tables_have_names_and_numbers(built):
    meta = built.meta["balanced_manifest"]
    splits = markdown_column(meta["per_split"].value, "split", "images")
    assert set(splits) == {"train", "val", "test"}
    for split, n in splits.items():
        assert meta[f"images_{split}"].value == as_int(n)
    assert sum(as_int(n) for n in splits.values()) == meta["images"].value
    licences = markdown_rows(meta["license_mix"].value)
    assert sum(as_int(r["images"]) for r in licences) == meta["images"].value and licences[0][
        "share"
    ].endswith("%")
    dropped = markdown_column(meta["dropped"].value, "reason", "rows")
    assert dropped and all(as_int(n) > 0 for n in dropped.values())  # the zero reasons are left out
    below = markdown_rows(meta["classes_below_min"].value)
    assert below and len(below) == meta["dropped_classes"].value
    assert all(row["name"] for row in below), below  # names from the species list beside the keys
    per_class = markdown_rows(meta["per_class"].value)
    assert len(per_class) == meta["classes"].value and all(r["label"].isdigit() for r in per_class)


def test_manifest_checks_name_the_taxa(built):
    balanced = built.checks["balanced_manifest.balanced"].metadata
    assert isinstance(balanced["min_max_ratio"], dg.FloatMetadataValue)
    # "Vanessa cardui (4299368): images 20; Aglais io (4535827): images 31; …"
    smallest = balanced["smallest"].value.split("; ")
    assert smallest and all(
        re.fullmatch(r"[A-Z][a-z]+ [a-z]+ \(\d+\): images \d+", part) for part in smallest
    )
    licences = built.checks["balanced_manifest.licenses_allowed"].metadata
    assert licences["disallowed"].value == "none" and "CC-BY-4.0: " in licences["licenses"].value


def test_image_store_shows_the_whole_training_set_whichever_shard_ran_last(built):
    storage = open_storage(str(built.root / "data"))
    manifest = read_latest_manifest(storage, SET)
    stored = 0
    for shard in shard_partitions.get_partition_keys():
        ledger = load_ledger(storage, layout.ledger_name(SET, shard))
        mine = ledger.filter(pc.is_in(ledger.column("content_key"), manifest.column("content_key")))
        stored += int(pc.sum(mine.column("stored")).as_py() or 0)
    last = built.meta["image_store"]  # the last shard to run (an empty one when there is one)
    assert last["shard"].value.startswith(built.last_shard)
    assert last["training_set_images"].value == manifest.num_rows
    assert last["training_set_stored"].value == stored > 0
    assert last["training_set_to_fetch"].value == 0
    assert last["training_set_shards_done"].value == len(shard_partitions.get_partition_keys())
    assert 0 < last["training_set_complete"].value <= 1
    rows = markdown_rows(last["training_set"].value)
    assert rows[-1]["shard"] == "**all**" and as_int(rows[-1]["stored"]) == stored
    # the first shard's page, while the other shards had not run: they are to do
    first = built.first_shards["first"]
    assert first["training_set_to_fetch"].value > 0
    states = {row["state"] for row in markdown_rows(first["training_set"].value)}
    assert "to do" in states and "done" in states
    this_run = markdown_column(first["this_run"].value, "this run", "value")
    assert as_int(this_run["fetched and stored"]) == first["this_run_fetched"].value > 0


def test_export_has_a_per_class_table_and_readable_checks(built):
    meta = built.meta["training_export"]
    per_class = markdown_rows(meta["per_class"].value)
    assert len(per_class) == meta["classes"].value
    for row in per_class:
        assert row["name"] and as_int(row["images"]) == sum(as_int(row[s]) for s in ("train", "val", "test"))
    assert sum(as_int(r["images"]) for r in per_class) == meta["images"].value
    assert sum(as_int(r["missing"]) for r in per_class) == meta["missing"].value
    assert sum(meta[f"images_{s}"].value for s in ("train", "val", "test")) == meta["images"].value
    provenance = markdown_column(meta["provenance"].value, "field", "value")
    assert provenance["spec"] == SET and provenance["source"].startswith("search API")
    covered = built.checks["training_export.manifest_images_accounted_for"].metadata
    assert covered["manifest_images"].value == covered["exported"].value + covered["not_exported"].value
    assert covered["exported"].value == meta["images"].value
