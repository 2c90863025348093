"""GBIF API client, download helpers and licence parsing (plain Python, no Dagster).

Import what you need from the submodules, e.g. ``from gbifdl_assets.gbif.client import GbifClient``;
this package stays empty so that importing one part never drags in the others.
"""
