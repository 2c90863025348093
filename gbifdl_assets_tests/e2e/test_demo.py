"""`gbifdl demo` (what `make demo` runs) works on a machine without network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gbifdl_assets_tests.harness.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_offline_materializes_the_example_species_list(tmp_path):
    # a free port for the shared sandbox: none runs there, so the demo starts its own
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "GBIFDL_SANDBOX_PORT": str(free_port())}
    env.pop("GBIF_API_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gbifdl_assets.cli",
            "demo",
            "--offline",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
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
