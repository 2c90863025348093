"""GBIFDL_IMAGE_SHARDS sets image_store's shard partitions when the code loads; a bad value names the fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gbifdl_assets.pipeline.image_shards import DEFAULT_SHARDS
from gbifdl_assets.pipeline.image_shards import shard_count_from_env as _shard_count


def test_the_code_location_loads_with_the_shard_count_from_the_environment():
    probe = "from gbifdl_assets.defs.images import shard_partitions as p; print(p.get_partition_keys())"
    env = {**os.environ, "GBIFDL_IMAGE_SHARDS": "2"}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "['00', '01']"


def test_shard_count_default_and_bad_values(monkeypatch):
    monkeypatch.delenv("GBIFDL_IMAGE_SHARDS", raising=False)
    assert _shard_count() == DEFAULT_SHARDS == 8
    monkeypatch.setenv("GBIFDL_IMAGE_SHARDS", " 16 ")
    assert _shard_count() == 16
    for bad in ("zero", "0", "101", "-1"):
        monkeypatch.setenv("GBIFDL_IMAGE_SHARDS", bad)
        with pytest.raises(
            ValueError, match=f"GBIFDL_IMAGE_SHARDS='{bad}' is not a shard count; give a whole"
        ):
            _shard_count()
