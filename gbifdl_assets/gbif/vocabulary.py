"""GBIF's BasisOfRecord lists, re-exported from :mod:`gbifdl_assets.vocabulary` (their one home).

Kept so that ``from gbifdl_assets.gbif.vocabulary import BASIS_OF_RECORD`` keeps working while its
last importers move to ``gbifdl_assets.vocabulary``.
"""

from gbifdl_assets.vocabulary import BASIS_OF_RECORD, DEPRECATED_BASIS_OF_RECORD

__all__ = ["BASIS_OF_RECORD", "DEPRECATED_BASIS_OF_RECORD"]
