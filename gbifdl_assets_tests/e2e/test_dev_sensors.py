"""``make dev`` offline takes a new spec to its export through the sensors alone, then stays quiet.

Issue 20's "done when": on a machine without GBIF, ``make dev`` (``gbifdl endpoint`` picks the
offline sandbox; ``dagster dev`` runs the webserver and the daemon on the embedded instance) takes a
spec of the folder to a materialized ``training_export`` with no failed run, nobody clicking: the spec
sensor registers the partition and runs the spec to its manifest, and eager automation stores the
images and exports. A second ``make dev`` on the same instance launches nothing: nothing changed.

Here the folder holds the demo's example spec with small caps and one image shard, and every sensor
looks every 5 s (``GBIFDL_SENSOR_SECONDS``; 30-60 s by default: every hop waits for the next tick),
so the test stays short (every run still starts its own processes). The three example specs as they ship, with their download and DOI sources and eight
shards, run the same way in ``reliability/test_dev_examples_soak.py`` (``make soak``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gbifdl_assets.specs import example_specs_dir
from gbifdl_assets_tests.harness.dev_stack import run_dev_twice

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(480)]

EXAMPLE = "european-butterflies"


def small_copy(folder: Path, name: str) -> Path:
    """The example spec with four small images per class (its source unchanged); a class with fewer
    is dropped, so the set stays balanced."""
    folder.mkdir()
    spec = yaml.safe_load((example_specs_dir() / f"{name}.yaml").read_text())
    spec["balancing"] = {**spec.get("balancing", {}), "max_per_class": 4, "min_per_class": 4}
    spec["images"] = {**(spec.get("images") or {}), "max_side": 64, "min_side": 16}
    spec["images"]["completeness_threshold"] = 0.5
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def test_make_dev_offline_takes_a_new_spec_to_its_export_and_then_stays_quiet(tmp_path: Path):
    first, _ = run_dev_twice(
        tmp_path,
        small_copy(tmp_path / "specs", EXAMPLE),
        (EXAMPLE,),
        timeout=300,
        GBIFDL_IMAGE_SHARDS="1",
        # every sensor looks every 5 s instead of 30-60 s: each hop waits for a tick (GBIFDL_SENSOR_SECONDS)
        GBIFDL_SENSOR_SECONDS="5",
    )
    triggers = sorted(r.tags.get("gbifdl/trigger", "") for r in first.runs)
    # one spec run (species list to manifest), the rules and the image flags compiled once, then
    # automation: the image shard, the export
    assert triggers == ["automation", "automation", "flags_changed", "rules_changed", "spec_added"], triggers
