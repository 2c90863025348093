"""``make dev`` offline brings every example training set to its export through the sensors alone.

Issue 20's "done when": on a machine without GBIF, ``make dev`` (``gbifdl endpoint`` picks the
offline sandbox; ``dagster dev`` runs the webserver and the daemon on the embedded instance) takes each
spec of the folder to a materialized ``training_export`` with no failed run, nobody clicking: the spec
sensor registers the partitions and runs each spec as far as its source allows, the download sensor
takes the download-sourced sets on, and eager automation does the rest. A second ``make dev`` on the
same instance launches nothing, since nothing changed.

The spec folder holds the three example specs with small caps (same sources: a requested download,
the search API, a download cited by DOI), so the run stays about two minutes; the example specs as
they ship run in ``reliability/test_dev_examples_soak.py`` (``make soak``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gbifdl_assets.specs import example_specs_dir
from gbifdl_assets_tests.harness.dev_stack import run_dev_twice

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

EXAMPLES = ("big-cats", "european-butterflies", "sunflowers-from-doi")


def small_copies(folder: Path) -> Path:
    """The example specs with four small images per class (their sources unchanged); a class with fewer
    is dropped, so every set stays balanced."""
    folder.mkdir()
    for name in EXAMPLES:
        spec = yaml.safe_load((example_specs_dir() / f"{name}.yaml").read_text())
        spec["balancing"] = {**spec.get("balancing", {}), "max_per_class": 4, "min_per_class": 4}
        spec["images"] = {**(spec.get("images") or {}), "max_side": 64, "min_side": 16}
        spec["images"]["completeness_threshold"] = 0.5
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def test_make_dev_offline_takes_every_example_spec_to_its_export_and_then_stays_quiet(tmp_path: Path):
    run_dev_twice(tmp_path, small_copies(tmp_path / "specs"), EXAMPLES, timeout=420, GBIFDL_IMAGE_SHARDS="2")
