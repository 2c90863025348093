"""species resolution against a small fake backbone (the client is tested against real recordings)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gbifdl_assets.gbif.client import NameMatch
from gbifdl_assets.gbif.errors import GbifNotFound
from gbifdl_assets.gbif.species import resolve_taxa

USAGES = {
    1: {"key": 1, "scientificName": "Animalia", "canonicalName": "Animalia", "rank": "KINGDOM"},
    10: {"key": 10, "scientificName": "Nymphalidae Swainson, 1827", "rank": "FAMILY", "kingdom": "Animalia"},
    100: {"key": 100, "scientificName": "Vanessa Fabricius, 1807", "rank": "GENUS", "family": "Nymphalidae"},
    1001: {
        "key": 1001,
        "scientificName": "Vanessa atalanta (Linnaeus, 1758)",
        "canonicalName": "Vanessa atalanta",
        "rank": "SPECIES",
        "taxonomicStatus": "ACCEPTED",
        "kingdom": "Animalia",
        "family": "Nymphalidae",
        "genus": "Vanessa",
        "species": "Vanessa atalanta",
    },
    1002: {
        "key": 1002,
        "scientificName": "Vanessa cardui (Linnaeus, 1758)",
        "canonicalName": "Vanessa cardui",
        "rank": "SPECIES",
        "taxonomicStatus": "ACCEPTED",
        "family": "Nymphalidae",
    },
    2001: {
        "key": 2001,
        "scientificName": "Aglais io (Linnaeus, 1758)",
        "canonicalName": "Aglais io",
        "rank": "SPECIES",
        "taxonomicStatus": "ACCEPTED",
        "family": "Nymphalidae",
    },
    2009: {
        "key": 2009,
        "scientificName": "Inachis io (Linnaeus, 1758)",
        "rank": "SPECIES",
        "taxonomicStatus": "SYNONYM",
        "acceptedKey": 2001,
    },
}
DESCENDANTS = {10: [1001, 1002, 2001]}


def _match(name: str, **kw) -> NameMatch:
    base = dict(
        query=name,
        scientific_name=None,
        canonical_name=None,
        rank=None,
        status=None,
        confidence=99,
        synonym=False,
        accepted_key=None,
        species_key=None,
        kingdom=None,
        raw={},
    )
    base.update(kw)
    return NameMatch(**base)


@dataclass
class FakeClient:
    calls: int = 0

    def match_name(self, name, *, rank=None, kingdom=None, strict=False):
        self.calls += 1
        table = {
            "Vanessa atalanta": _match(
                name, usage_key=1001, match_type="EXACT", rank="SPECIES", accepted_key=1001
            ),
            "Vanesa atalanta": _match(
                name, usage_key=1001, match_type="FUZZY", rank="SPECIES", accepted_key=1001, confidence=90
            ),
            "Inachis io": _match(
                name,
                usage_key=2009,
                match_type="EXACT",
                rank="SPECIES",
                synonym=True,
                accepted_key=2001,
                status="SYNONYM",
            ),
            "Vanessa nonexistens": _match(
                name, usage_key=100, match_type="HIGHERRANK", rank="GENUS", scientific_name="Vanessa"
            ),
            "Nymphalidae": _match(name, usage_key=10, match_type="EXACT", rank="FAMILY", accepted_key=10),
        }
        return table.get(name, _match(name, usage_key=None, match_type="NONE", confidence=100))

    def get_species(self, key):
        if key not in USAGES:
            raise GbifNotFound(404, f"http://gbif.test/v1/species/{key}", "Entity not found")
        return USAGES[key]

    def iter_descendants(self, key, rank="SPECIES"):
        yield from (USAGES[k] for k in DESCENDANTS.get(key, []))


@dataclass
class Ref:
    name: str | None = None
    key: int | None = None
    expand_to: str | None = None
    kingdom: str | None = None


def test_names_keys_synonyms_and_fuzzy_resolve_to_accepted_keys():
    res = resolve_taxa(
        FakeClient(), [Ref("Vanessa atalanta"), Ref("Inachis io"), Ref(key=1002), Ref("Vanesa atalanta")]
    )
    by_input = {r.input: r for r in res.rows}
    assert by_input["Vanessa atalanta"].match_type == "EXACT"
    assert by_input["Vanessa atalanta"].taxon_key == 1001
    assert by_input["Inachis io"].match_type == "SYNONYM"
    assert by_input["Inachis io"].taxon_key == 2001 and by_input["Inachis io"].usage_key == 2009
    assert by_input["1002"].match_type == "KEY" and by_input["1002"].taxon_key == 1002
    # the fuzzy spelling lands on a taxon already listed: reported as a duplicate, not listed twice
    assert "Vanesa atalanta" not in by_input and res.duplicates == ["Vanesa atalanta"]
    assert res.taxon_keys() == [1001, 2001, 1002]
    assert res.counts()["unmatched"] == 0


def test_synonym_key_is_replaced_by_accepted():
    res = resolve_taxa(FakeClient(), [Ref(key=2009)])
    (row,) = res.rows
    assert (row.match_type, row.taxon_key, row.usage_key) == ("SYNONYM", 2001, 2009)


def test_unmatched_higherrank_and_unknown_key_are_reported_not_dropped():
    res = resolve_taxa(FakeClient(), [Ref("Nonexistus fakeus"), Ref("Vanessa nonexistens"), Ref(key=999999)])
    assert [r.match_type for r in res.rows] == ["NONE", "NONE", "NONE"]
    notes = [r.note for r in res.rows]
    assert "no match" in notes[0] and "Nonexistus fakeus" in notes[0]
    assert "matched only the genus" in notes[1] and "expand_to" in notes[1]
    assert "999999" in notes[2]
    assert res.taxon_keys() == []
    table = res.to_table()
    assert table.num_rows == 3 and table.column("taxon_key").null_count == 3


def test_higher_taxon_expands_to_species_and_is_not_a_label():
    res = resolve_taxa(FakeClient(), [Ref("Vanessa atalanta"), Ref("Nymphalidae", expand_to="SPECIES")])
    roles = {r.input: (r.role, r.match_type) for r in res.rows}
    assert roles["Nymphalidae"] == ("group", "EXACT")
    assert roles["Vanessa cardui (Linnaeus, 1758)"] == ("label", "EXPANDED")
    # Vanessa atalanta appears once (named first), Aglais io and V. cardui come from the expansion
    assert sorted(res.taxon_keys()) == [1001, 1002, 2001]
    assert res.counts()["expanded"] == 2


def test_table_schema_is_stable():
    table = resolve_taxa(FakeClient(), [Ref("Vanessa atalanta")]).to_table()
    assert table.column_names[:4] == ["input", "input_kind", "match_type", "taxon_key"]
    assert table.schema.field("taxon_key").type.bit_width == 64


@pytest.mark.parametrize("rank", ["SPECIES", "GENUS"])
def test_expand_to_rank_at_or_above_the_taxon_keeps_it_as_label(rank):
    res = resolve_taxa(FakeClient(), [Ref("Vanessa atalanta", expand_to=rank)])
    assert [(r.role, r.taxon_key) for r in res.rows] == [("label", 1001)]
