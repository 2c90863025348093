"""gbifdl_assets: GBIF image training sets as Dagster assets.

The core packages (gbif, annotations, sampling, media, export, specs, storage, sandbox) are plain
Python and usable as a library; ``gbifdl_assets.defs`` is the thin Dagster layer.
"""

__version__ = "0.1.0"
