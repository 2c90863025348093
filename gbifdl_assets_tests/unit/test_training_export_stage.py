"""The training_export stage wired to issue 19: spec options, provenance, datasets, the checks.

The stage is run on a storage laid out as the assets leave it (a committed manifest, two shard
ledgers, a snapshot with registry columns); the checks' logic is also tested on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gbifdl_assets.export.checks import check_credits_cover, check_manifest_covered
from gbifdl_assets.occurrences.snapshots import write_snapshot_from_search
from gbifdl_assets.pipeline.errors import StageError
from gbifdl_assets.pipeline.training_export import CHECKS, build_training_export
from gbifdl_assets.specs import parse_spec
from gbifdl_assets.storage import LocalStorage, layout
from gbifdl_assets_tests.unit.test_export_writers import build_inputs

TS = "cats"
RULES = "r" * 16


def spec(**images):
    return parse_spec({"name": TS, "taxa": ["Panthera leo"], "images": images})


def search_record(gbif_id: int, dataset: str) -> dict:
    return {
        "key": gbif_id,
        "gbifID": str(gbif_id),
        "datasetKey": dataset,
        "publishingOrgKey": "28eb1a3f-1c15-4a95-931a-4af90ecb574d",
        "speciesKey": 11,
        "decimalLatitude": 45.0,
        "decimalLongitude": 5.0,
        "countryCode": "FR",
        "year": 2020,
        "recordedBy": f"Recorder {gbif_id}",
        "media": [{"type": "StillImage", "identifier": f"https://img.example.org/{gbif_id}.jpg"}],
    }


def project(root: Path, *, nameless: int = 0, shards: tuple[str, ...] = ("00", "01")) -> LocalStorage:
    """A storage as the assets leave it: images, a snapshot, a manifest of it, ledgers per shard."""
    inputs = build_inputs(root)
    storage = inputs["store"]
    manifest = inputs["manifest"]
    # a snapshot whose registry columns come from the storage's registry cache (offline)
    records = [search_record(g, f"ds-{(g - 1000) % 2}") for g in manifest.column("gbifID").to_pylist()]
    _write_registry_cache(storage)
    info = write_snapshot_from_search(iter(records), storage, TS, {"query": {"taxonKey": ["5219404"]}})
    manifest_id = layout.annotated_id(info.snapshot_id, RULES)
    sid = manifest.schema.get_field_index("snapshot_id")
    manifest = manifest.set_column(sid, "snapshot_id", pa.array([info.snapshot_id] * manifest.num_rows))
    if nameless:  # BY images nobody can be credited for (no creator, holder, recorder or publisher)
        by = [i for i, lic in enumerate(manifest.column("license").to_pylist()) if lic == "CC-BY-4.0"][
            :nameless
        ]
        for col in ("creator", "rightsHolder"):
            i = manifest.schema.get_field_index(col)
            values = manifest.column(col).to_pylist()
            for k in by:
                values[k] = None
            manifest = manifest.set_column(i, col, pa.array(values, pa.string()))
        gid = manifest.schema.get_field_index("gbifID")
        ids = manifest.column("gbifID").to_pylist()
        for k in by:
            ids[k] = 9_000_000 + k  # an occurrence the snapshot does not have: no recorder, no dataset
        manifest = manifest.set_column(gid, "gbifID", pa.array(ids, pa.int64()))
        did = manifest.schema.get_field_index("datasetKey")
        keys = manifest.column("datasetKey").to_pylist()
        for k in by:
            keys[k] = None
        manifest = manifest.set_column(did, "datasetKey", pa.array(keys, pa.string()))
    folder = layout.manifests(TS)
    storage.write_parquet(folder.commit_key(manifest_id), manifest)
    layout.publish(storage, folder, manifest_id)
    ledger = inputs["ledger"]
    for n, shard in enumerate(shards):  # split the ledger over the shard ledgers
        part = ledger.filter(pc.equal(pc.bit_wise_and(pa.array(range(ledger.num_rows)), 1), n % 2))
        name = layout.ledger_name(TS, shard)
        storage.write_parquet(f"ledgers/{name}/seg-000000000000-test.parquet", part)
    return storage


def _write_registry_cache(storage: LocalStorage) -> None:
    from datetime import UTC, datetime

    from gbifdl_assets.gbif.registry import (
        DATASET_SCHEMA,
        DATASETS_KEY,
        ORGANIZATION_SCHEMA,
        ORGANIZATIONS_KEY,
    )

    now = datetime.now(UTC)
    org = "28eb1a3f-1c15-4a95-931a-4af90ecb574d"
    datasets = [
        {
            "datasetKey": f"ds-{i}",
            "publishingOrgKey": org,
            "datasetTitle": f"Cats dataset {i}",
            "datasetDOI": f"10.15468/cat{i}",
            "datasetLicense": None,
            "outcome": "ok",
            "message": None,
            "fetched_at": now,
        }
        for i in (0, 1)
    ]
    storage.write_parquet(DATASETS_KEY, pa.Table.from_pylist(datasets, schema=DATASET_SCHEMA))
    orgs = [
        {
            "publishingOrgKey": org,
            "publishingOrganizationTitle": "Cat Publisher",
            "publishingCountry": "DK",
            "outcome": "ok",
            "message": None,
            "fetched_at": now,
        }
    ]
    storage.write_parquet(ORGANIZATIONS_KEY, pa.Table.from_pylist(orgs, schema=ORGANIZATION_SCHEMA))


def test_the_stage_gives_the_export_provenance_records_datasets_and_its_checks(tmp_path):
    storage = project(tmp_path)
    s = spec(completeness_threshold=0.9)
    result = build_training_export(TS, storage, spec=s)
    out = tmp_path / "store" / "exports" / TS
    summary = result.summary
    assert summary.images == 30 and summary.missing == 2
    prov = result.provenance
    manifest_id = layout.newest_complete(storage, layout.manifests(TS))
    assert prov["spec_name"] == TS and prov["spec_fingerprint"] == s.fingerprint()
    assert prov["manifest_id"] == manifest_id and prov["rules_version"] == RULES
    assert manifest_id == f"{prov['snapshot_id']}-{RULES}"
    assert prov["snapshot_source"]["type"] == "search" and prov["date"]
    assert result.datasets == 2
    card = (out / "datacard.md").read_text()
    for value in (prov["snapshot_id"], RULES, manifest_id, prov["spec_fingerprint"], "Cats dataset 0"):
        assert value in card, value
    croissant = json.loads((out / "croissant.json").read_text())
    assert prov["snapshot_id"] in json.dumps(croissant)
    citation = (out / "CITATION.md").read_text()
    assert "[Cats dataset 1](https://www.gbif.org/dataset/ds-1)" in citation and "Cat Publisher" in citation
    assert {c.name: c.passed for c in result.checks} == dict.fromkeys(CHECKS, True)
    covered = next(c for c in result.checks if c.name == "manifest_images_accounted_for").details
    assert covered["not_exported_by_reason"] == {"failed: no reason recorded": 2}


def test_unattributed_drop_leaves_the_nameless_out_and_says_so(tmp_path):
    storage = project(tmp_path, nameless=3)
    kept = build_training_export(TS, storage, spec=spec(completeness_threshold=0.5))
    assert kept.summary.unattributed == 3 and kept.summary.dropped_unattributed == 0
    credits = {c.name: c for c in kept.checks}["credits_cover_every_image"]
    assert not credits.passed and credits.warning  # usable, not licence-clean: a warning
    assert credits.details["by_without_name"] == 3 and "images.unattributed: drop" in credits.description

    dropped = build_training_export(TS, storage, spec=spec(completeness_threshold=0.5, unattributed="drop"))
    assert dropped.summary.dropped_unattributed == 3 and dropped.summary.images == kept.summary.images - 3
    checks = {c.name: c for c in dropped.checks}
    assert all(c.passed for c in checks.values())
    reasons = checks["manifest_images_accounted_for"].details["not_exported_by_reason"]
    assert reasons["dropped: no name to credit under a BY licence"] == 3


def test_a_shard_ledger_that_is_missing_is_unexplained_and_beyond_the_limit_fails(tmp_path):
    storage = project(tmp_path, shards=("00",))  # the second shard's ledger never written
    with pytest.raises(
        StageError, match=r"training_export\[cats\]: .* have no stored image in the ledgers"
    ) as err:
        build_training_export(TS, storage, spec=spec(completeness_threshold=0.95))
    assert err.value.metadata["missing"] > 0.05 * err.value.metadata["manifest_images"]
    result = build_training_export(TS, storage, spec=spec(completeness_threshold=0.3))
    covered = {c.name: c for c in result.checks}["manifest_images_accounted_for"]
    assert not covered.passed and not covered.warning
    assert (
        covered.details["unexplained"] == 16 and "materialize every image_store shard" in covered.description
    )


def test_check_manifest_covered_and_check_credits_cover_on_their_own():
    manifest = pa.table({"content_key": ["a", "b", "c", "d", "e"]})
    ledger = pa.table(
        {
            "content_key": ["a", "b", "c", "d"],
            "status": ["ok", "failed", "skipped", "ok"],
            "reason": [None, "http_404", "duplicate", None],
            "stored": [True, False, False, True],
        }
    )
    ok, details = check_manifest_covered(manifest, ledger, pa.array(["a"]), dropped_unattributed=1)
    assert not ok and details["unexplained"] == 1 and details["unexplained_examples"] == ["e"]
    assert details["not_exported_by_reason"] == {
        "failed: http_404": 1,
        "skipped: duplicate": 1,
        "dropped: no name to credit under a BY licence": 1,
    }
    ok, details = check_manifest_covered(manifest, ledger, pa.array(["a"]), dropped_unattributed=0)
    assert not ok and details["unexplained"] == 2  # d is stored but nothing says why it is not exported
    exported = pa.table({"content_key": ["a", "b", "c"], "license": ["CC-BY-4.0", "CC0-1.0", "CC-BY-SA-4.0"]})
    credits = [
        {"content_key": "a", "attribution": "Ann"},
        {"content_key": "b", "attribution": ""},
        {"content_key": "c", "attribution": " "},
    ]
    ok, details = check_credits_cover(exported, credits)
    assert not ok and details["by_without_name"] == 1 and details["missing_rows"] == 0
    ok, details = check_credits_cover(exported, credits[:2])
    assert not ok and details["missing_rows"] == 1 and "no row in credits.csv" in details["message"]
    assert check_credits_cover(exported.slice(0, 2), credits)[0]  # CC0 needs no name
