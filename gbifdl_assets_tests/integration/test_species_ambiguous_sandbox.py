"""An ambiguous name against the sandbox: "Morus" is a bird genus and a plant genus, as at GBIF."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.species import resolve_taxa

pytestmark = pytest.mark.integration


@dataclass
class Taxon:
    name: str | None = None
    key: int | None = None
    expand_to: str | None = None
    kingdom: str | None = None


def test_ambiguous_name_then_the_kingdom_that_resolves_it(sandbox):
    client = GbifClient(sandbox.api_url, checklist_dataset_key=None)
    result = resolve_taxa(client, [Taxon(name="Morus"), Taxon(name="Morus", kingdom="Plantae")])
    ambiguous, resolved = result.rows
    assert ambiguous.match_type == "NONE"
    assert '(GBIF: "Multiple equal matches for Morus")' in ambiguous.note
    assert "kingdom" in ambiguous.note and "spelling" not in ambiguous.note
    assert resolved.match_type == "EXACT" and resolved.kingdom == "Plantae"
