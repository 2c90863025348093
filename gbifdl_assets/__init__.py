"""gbifdl_assets: GBIF image training sets as Dagster assets.

The core packages (gbif, annotations, sampling, media, export, specs, storage, sandbox) are plain
Python and usable as a library; ``gbifdl_assets.defs`` is the thin Dagster layer.
"""

import os as _os
import sys as _sys

# Arrow allocates through mimalloc, which by default returns freed memory to the OS almost at once;
# the archive ingest then faults the same buffers in again for every chunk, and on VMs a first touch
# of a page is expensive (2M-row archive: about half the page faults and sys 2.5 s -> 0.8 s with a
# 10 s delay). Memory not reused within 10 s still goes back, so long-lived processes shrink again.
# mimalloc reads the variable only when pyarrow loads; a value set in the environment wins.
if "pyarrow" not in _sys.modules:
    _os.environ.setdefault("MIMALLOC_PURGE_DELAY", "10000")

__version__ = "0.1.0"
