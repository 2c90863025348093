"""One image_store shard as a plain call, no Dagster: the anchor of "image_store through Dagster".

``python -m gbifdl_assets_tests.reliability.plain_shard DATA FRESH TRAINING_SET SHARD SPEC`` copies the
training set's manifests from the project's data folder DATA into an empty folder FRESH and runs
``store_shard`` there with the image-fetch configuration the code location builds from the
environment (GBIF_API_URL), then prints one JSON line. FRESH holds no image, so every image of the
shard is fetched, as in the Dagster run it is compared with.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from gbifdl_assets.defs.resources import image_fetch_resource
from gbifdl_assets.pipeline.image_store import store_shard
from gbifdl_assets.specs import load_spec
from gbifdl_assets.storage import layout, open_storage


def main(argv: list[str]) -> int:
    data, fresh, training_set, shard, spec_path = argv
    prefix = layout.manifest_prefix(training_set)
    shutil.copytree(Path(data) / prefix, Path(fresh) / prefix)
    storage = open_storage(fresh)
    started = time.monotonic()
    result = store_shard(
        training_set, shard, load_spec(spec_path), storage, image_fetch_resource().download_config()
    )
    seconds = time.monotonic() - started
    print(json.dumps({"images": result.images, "ok": int(result.this_run.ok), "call_seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
