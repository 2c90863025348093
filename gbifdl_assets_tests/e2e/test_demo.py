"""`gbifdl demo` (what `make demo` runs) works on a machine without network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_offline_materializes_the_example_species_list(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("GBIF_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gbifdl_assets.cli", "demo", "--offline", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["gbif"] == "sandbox"
    assert summary["check_all_taxa_matched"] is True
    path = Path(summary["species_list"])
    table = pq.read_table(path)
    assert summary["taxa"] == sum(1 for m in table.column("match_type").to_pylist() if m != "NONE")
    names = set(table.column("canonical_name").to_pylist())
    assert {"Vanessa atalanta", "Aglais io", "Papilio machaon"} <= names
    assert (tmp_path / "home" / "dagster.yaml").exists()
