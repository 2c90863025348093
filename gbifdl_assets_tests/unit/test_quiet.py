"""Quiet by default (issue 20, item 4): no warnings a user cannot act on, and one instance config.

The demo's own output (progress lines, no Dagster DEBUG events) is checked end to end in
``e2e/test_demo.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_licence_is_an_spdx_expression() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # a table is deprecated (setuptools warns on every build)
    assert "setuptools>=77" in project["build-system"]["requires"]  # the first to read SPDX strings
    assert not any("License ::" in c for c in project["project"].get("classifiers", []))


def test_loading_the_definitions_prints_no_beta_warning() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import gbifdl_assets.definitions, gbifdl_assets.demo"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MultiToSingleDimensionPartitionMapping" not in done.stderr, done.stderr[-3000:]


def test_make_dev_and_demo_keep_the_instance_config_in_step(tmp_path: Path) -> None:
    """The recipes' config lines (read with ``make -n``, run here) copy ./dagster.yaml whenever it differs."""
    home = tmp_path / "home"
    for target in ("dev", "demo"):
        plan = subprocess.run(
            ["make", "-n", "--no-print-directory", target, f"DAGSTER_HOME={home}"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert plan.returncode == 0, plan.stderr
        lines = [ln for ln in plan.stdout.splitlines() if "dagster.yaml" in ln or ln.startswith("mkdir -p ")]
        assert lines and not any("cp -n" in line for line in lines), lines
        sync = "\n".join(lines)
        subprocess.run(["bash", "-c", sync], cwd=REPO, check=True, capture_output=True)
        assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
        (home / "dagster.yaml").write_text("# an older copy\n")
        said = subprocess.run(["bash", "-c", sync], cwd=REPO, check=True, capture_output=True, text=True)
        assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
        assert (home / "dagster.yaml.bak").read_text() == "# an older copy\n"
        assert "updated from ./dagster.yaml" in said.stdout
