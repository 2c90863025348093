"""``make dev`` offline on the example specs as they ship (issue 20's "done when"), for ``make soak``.

The same two starts as ``e2e/test_dev_sensors.py`` (every set exported through the sensors with no
failed run; the second start launches nothing), on the shipped ``gbifdl_assets/examples`` folder with
the default eight image shards: a few hundred images per set and about thirty runs, several minutes
on a 2-core machine, so it runs with the soak tests rather than in ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gbifdl_assets.specs import example_specs_dir
from gbifdl_assets_tests.harness.dev_stack import run_dev_twice

pytestmark = [pytest.mark.soak, pytest.mark.e2e, pytest.mark.timeout(1800)]

EXAMPLES = tuple(sorted(p.stem for p in example_specs_dir().glob("*.yaml")))


def test_make_dev_offline_on_the_shipped_examples(tmp_path: Path):
    first, seconds = run_dev_twice(tmp_path, example_specs_dir(), EXAMPLES, timeout=1500)
    print(f"\n{len(first.runs)} runs, every example exported in {seconds:.0f} s")
