"""`gbifdl demo` (what `make demo` runs) works on a machine without network."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gbifdl_assets.specs import example_specs_dir
from gbifdl_assets_tests.harness.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass
class DemoRun:
    root: Path
    specs: Path
    proc: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`gbifdl demo --offline` once, on a spec folder holding only the demo's spec."""
    root = tmp_path_factory.mktemp("demo")
    specs = root / "specs"
    specs.mkdir()
    shutil.copy(example_specs_dir() / "european-butterflies.yaml", specs)
    # a free port for the shared sandbox: none runs there, so the demo starts its own
    env = {**os.environ, "DAGSTER_HOME": str(root / "home"), "GBIFDL_SANDBOX_PORT": str(free_port())}
    env.pop("GBIF_API_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gbifdl_assets.cli",
            "demo",
            "--offline",
            "--spec",
            str(specs / "european-butterflies.yaml"),
            "--data-dir",
            str(root / "data"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    return DemoRun(root, specs, proc)


def test_demo_offline_materializes_the_example_species_list(demo: DemoRun):
    proc, tmp_path = demo.proc, demo.root
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["gbif"] == "sandbox"
    assert summary["failed_checks"] == []
    species = pq.read_table(Path(summary["species_list"]))
    names = set(species.column("canonical_name").to_pylist())
    assert {"Vanessa atalanta", "Aglais io", "Papilio machaon"} <= names
    manifest = pq.read_table(summary["manifest"].removeprefix("file://"))
    assert manifest.num_rows == summary["images"] > 0
    per_class = manifest.group_by("label").aggregate([("url", "count")]).column("url_count").to_pylist()
    assert len(per_class) == summary["classes"] and max(per_class) <= 40 and min(per_class) >= 20
    assert sum(summary["per_split"].values()) == summary["images"]
    export = Path(summary["export"].removeprefix("file://"))
    exported = pq.read_table(export / "manifest.parquet")
    assert exported.num_rows == summary["exported_images"] > 0.8 * summary["images"]
    assert len(list((export / "imagefolder").rglob("*.jpg"))) == summary["exported_images"]
    assert (export / "datacard" / "map.png").exists() and (export / "CREDITS.md").exists()
    assert (tmp_path / "home" / "dagster.yaml").exists()

    # issue 19: what ML tools read, and a data card that says what the export was built from
    mlc = pytest.importorskip("mlcroissant")
    dataset = mlc.Dataset(jsonld=str(export / "croissant.json"))  # raises on a validation error
    assert not dataset.metadata.ctx.issues.errors
    doc = json.loads((export / "croissant.json").read_text())
    for item in doc["distribution"]:
        if item["@type"] == "cr:FileObject":
            data = (export / item["contentUrl"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == item["sha256"], item["contentUrl"]
    snapshot_dir = Path(summary["snapshot"].removeprefix("file://"))
    card = (export / "datacard.md").read_text()
    for value in ("european-butterflies", snapshot_dir.name, summary["rules_version"]):
        assert value in card, value
    assert "## Provenance" in card and "## Contributing datasets" in card
    # issue 16: the snapshot's registry titles reach the data card and CITATION.md
    titles = {
        t
        for t in pq.read_table(snapshot_dir / "media.parquet", columns=["datasetTitle"]).column(0).to_pylist()
        if t
    }
    assert titles and any(t in card for t in titles)
    citation = (export / "CITATION.md").read_text()
    assert sum(t in citation for t in titles) >= 1 and "https://www.gbif.org/occurrence/search?" in citation


def test_demo_is_quiet_by_default(demo: DemoRun):
    """Progress lines and the summary; no Dagster event log, no BetaWarning (issue 20, item 4)."""
    err = demo.proc.stderr
    assert demo.proc.returncode == 0, err[-3000:]
    assert "offline (--offline): running against the bundled offline sandbox" in err
    assert "[1/11] annotation_rulesets, image_flags: done" in err and "[11/11] training_export: done" in err
    for noise in (" - DEBUG - ", "STEP_START", "BetaWarning", "Traceback"):
        assert noise not in err, err[:3000]
    assert len(err.strip().splitlines()) <= 15, err[:3000]


def test_after_the_demo_the_sensors_request_nothing(demo: DemoRun, monkeypatch: pytest.MonkeyPatch):
    """A fresh `make dev` on the demo's instance: nothing is rebuilt (issue 20, item 2).

    Every sensor of the code location is ticked once, as a fresh daemon would (empty cursors), against
    the demo's instance and data, and declarative automation is evaluated from scratch.
    """
    import dagster as dg

    from gbifdl_assets.defs.annotations import annotation_rules_sensor
    from gbifdl_assets.defs.assets import ALL_ASSETS
    from gbifdl_assets.defs.resources import (
        AnnotationsResource,
        GbifResource,
        ImageFetchResource,
        SpecsResource,
        StorageResource,
    )
    from gbifdl_assets.defs.snapshots import gbif_download_sensor
    from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor

    assert demo.proc.returncode == 0, demo.proc.stderr[-3000:]
    data = demo.root / "data"
    resources = {
        "gbif": GbifResource(base_url="http://127.0.0.1:9/v1"),  # nothing may need GBIF to decide
        "storage": StorageResource(uri=str(data)),
        "specs": SpecsResource(folder=str(demo.specs)),
        "annotations": AnnotationsResource(store_url=f"sqlite:///{data / 'annotations.sqlite'}"),
        "image_fetch": ImageFetchResource(),
    }
    monkeypatch.setenv("DAGSTER_HOME", str(demo.root / "home"))  # dagster.yaml reads it
    with dg.DagsterInstance.from_config(str(demo.root / "home")) as instance:
        for sensor in (training_set_specs_sensor, annotation_rules_sensor, gbif_download_sensor):
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                result = sensor(context)
            requests = getattr(result, "run_requests", None) or []
            assert requests == [], f"{sensor.name} requested {[r.partition_key for r in requests]}"
        automation = dg.evaluate_automation_conditions(
            defs=dg.Definitions(assets=ALL_ASSETS, resources=resources), instance=instance
        )
        assert automation.total_requested == 0
