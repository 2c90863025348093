"""gbifdl_assets: GBIF image training sets as Dagster assets.

The core packages (vocabulary, errors, storage, gbif, specs, occurrences, annotations, sampling,
media, export, pipeline) are plain Python and usable as a library; ``gbifdl_assets.defs`` is the thin
Dagster layer and ``gbifdl_assets.definitions`` the code location; the sandbox is an offline GBIF.
ARCHITECTURE.md (beside the README) says where things live and the rules that keep them there.
"""

import os as _os
import sys as _sys

# Arrow allocates through mimalloc, which by default returns freed memory to the OS almost at once;
# the archive ingest then faults the same buffers in again for every chunk, and on VMs a first touch
# of a page is expensive (2M-row archive: about half the page faults and sys 2.5 s -> 0.8 s with a
# 10 s delay). Memory not reused within 10 s still goes back, so long-lived processes shrink again.
# mimalloc also asks for transparent huge pages on its segments by default; where THP is "madvise"
# each first touch then zeroes a whole 2 MiB page (perf: clear_page_erms under do_huge_pmd_anonymous_page
# was ~9 % of the 2M-row ingest's CPU). Without them: ~4x the minor faults, ~1 CPU-s less.
# mimalloc reads the variables only when pyarrow loads; a value set in the environment wins.
MIMALLOC_SETTINGS = {"MIMALLOC_PURGE_DELAY": "10000", "MIMALLOC_ALLOW_THP": "0"}
if "pyarrow" not in _sys.modules:
    for _name, _value in MIMALLOC_SETTINGS.items():
        _os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
