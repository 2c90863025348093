"""The graph from species list to balanced manifest through Dagster against the sandbox, for the tests
that need a manifest to start from (the manifest asset, image flags, the gallery page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from gbifdl_assets.defs.annotations import annotated_occurrences, annotation_rulesets
from gbifdl_assets.defs.image_flags import image_flags
from gbifdl_assets.defs.manifest import balanced_manifest
from gbifdl_assets.defs.resources import GbifResource
from gbifdl_assets.defs.snapshots import gbif_download, occurrence_snapshot
from gbifdl_assets.defs.species import species_list
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

PARTITIONED = [species_list, gbif_download, occurrence_snapshot, annotated_occurrences, balanced_manifest]

BUTTERFLIES_SPEC = """name: butterflies
taxa: [Vanessa atalanta, Vanessa cardui, Aglais io, Pieris rapae]
source: search
balancing: {max_per_class: 12, min_per_class: 3, seed: 1}
licenses: [CC0, CC-BY, CC-BY-SA, CC-BY-NC]
"""


def materialize_to_manifest(
    sandbox: Any, tmp_path: Path, instance: dg.DagsterInstance, partition: str = "butterflies"
) -> dg.ExecuteInProcessResult:
    """Rules, then one training set from its species list to its manifest (errors in the result)."""
    resources = sandbox_resources(sandbox.api_url, tmp_path, seed_rules=True, images=False)
    # the sandbox's test account, for download-sourced specs
    resources["gbif"] = GbifResource(base_url=sandbox.api_url, username="sandbox", password="sandbox")
    assert dg.materialize([annotation_rulesets], instance=instance, resources=resources).success
    return dg.materialize(
        [*PARTITIONED, annotation_rulesets],
        selection=[a.key for a in PARTITIONED],
        partition_key=partition,
        instance=instance,
        resources=resources,
        run_config={"ops": {"occurrence_snapshot": {"config": {"poll_seconds": 0.2}}}},
        raise_on_error=False,
    )


def rebuild_manifest(
    instance: dg.DagsterInstance, resources: dict[str, Any], partition: str = "butterflies"
) -> dg.ExecuteInProcessResult:
    """Compile the image flags, then build the manifest again from the same annotated occurrences."""
    assert dg.materialize([image_flags], instance=instance, resources=resources).success
    result = dg.materialize(
        [balanced_manifest, image_flags],
        selection=[balanced_manifest.key],
        partition_key=partition,
        instance=instance,
        resources=resources,
    )
    assert result.success
    return result
