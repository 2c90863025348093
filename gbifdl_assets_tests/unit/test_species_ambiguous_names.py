"""Names GBIF cannot pin down: its note stays in the species list, with advice that fits it.

GBIF answers an ambiguous name with ``matchType: NONE`` and a note (reference real-world.md,
"Multiple equal matches for Calopteryx"); "check the spelling" is the wrong advice for a name that
is spelt right. Replayed against GBIF's recorded answers (pygbif ``test_name_backbone_multiple_matches``:
the ambiguous genus name "Aso", answered "No match because of too little confidence"; rgbif v2 matches).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gbifdl_assets.gbif.client import GbifClient, NameMatch
from gbifdl_assets.gbif.species import gbif_match_note, no_match_note, resolve_taxa
from gbifdl_assets_tests.unit.cassettes import PYGBIF, RGBIF, Interaction, load_cassette, replay_session


@dataclass
class Taxon:
    name: str | None = None
    key: int | None = None
    expand_to: str | None = None
    kingdom: str | None = None


def resolve(interactions, *taxa):
    session, adapter = replay_session(interactions, ignore={"limit"})
    client = GbifClient(session=session, sleep=lambda s: None)
    return resolve_taxa(client, list(taxa)), adapter


def test_recorded_ambiguous_name_keeps_gbifs_note_and_offers_kingdom_rank_or_key():
    recorded = load_cassette(PYGBIF / "test_name_backbone_multiple_matches.yaml")
    assert recorded[0].json()["note"] == "No match because of too little confidence"
    result, adapter = resolve(recorded, Taxon(name="Aso"))
    assert adapter.unused == []
    (row,) = result.rows
    assert row.match_type == "NONE" and row.taxon_key is None and row.confidence == 100
    assert '(GBIF: "No match because of too little confidence")' in row.note
    # GBIF's note does not say why; a typo is possible, and so is a homonym
    assert "check the spelling" in row.note
    assert "kingdom" in row.note and "rank" in row.note and "GBIF taxon key" in row.note
    assert result.counts()["unmatched"] == 1


def multiple_equal_matches(name: str) -> list[Interaction]:
    """The recorded interaction, answering with GBIF's note for equally good candidates."""
    (real,) = load_cassette(PYGBIF / "test_name_backbone_multiple_matches.yaml")
    body = {
        "confidence": 99,
        "note": f"Multiple equal matches for {name}",
        "matchType": "NONE",
        "synonym": False,
    }
    uri = real.uri.replace("name=Aso", f"name={name}")
    return [Interaction(real.method, uri, None, 200, real.headers, json.dumps(body).encode())]


def test_multiple_equal_matches_is_called_ambiguous_not_a_spelling_problem():
    result, _ = resolve(multiple_equal_matches("Calopteryx"), Taxon(name="Calopteryx"))
    (row,) = result.rows
    assert row.match_type == "NONE"
    assert row.note == (
        "'Calopteryx' is ambiguous in GBIF "
        '(GBIF: "Multiple equal matches for Calopteryx"): several taxa share this name; '
        "give the kingdom (kingdom: in the taxon entry), the rank, or the GBIF taxon key"
    )
    assert "spelling" not in row.note
    assert result.to_table().column("note").to_pylist() == [row.note]  # kept in the species list


def test_kingdom_given_is_named_in_the_note():
    m = NameMatch.from_v1(
        "Morus", {"confidence": 99, "note": "Multiple equal matches for Morus", "matchType": "NONE"}
    )
    assert no_match_note("Morus", m, kingdom="Animalia").startswith(
        "'Morus' is ambiguous in GBIF in kingdom Animalia"
    )


def test_v2_notes_are_read_from_diagnostics():
    v2_none = next(
        i
        for i in load_cassette(RGBIF / "name_backbone.yml")
        if "strict=TRUE" in i.uri and "verbose=FALSE" in i.uri and i.path.endswith("/species/match")
    )
    match = NameMatch.from_v2("Calopteryx splendens", v2_none.json())
    assert match.match_type == "NONE"
    assert gbif_match_note(match) == "No match because of too little confidence"
    assert '(GBIF: "No match because of too little confidence")' in no_match_note(
        "Calopteryx splendens", match
    )


def test_a_plain_miss_without_gbif_note_still_says_what_to_do():
    m = NameMatch.from_v1("Calopteryx fakeus", {"confidence": 100, "matchType": "NONE", "synonym": False})
    assert gbif_match_note(m) is None
    assert no_match_note("Calopteryx fakeus", m) == (
        "GBIF found no match for 'Calopteryx fakeus'; check the spelling, or give the kingdom "
        "(kingdom: in the taxon entry), the rank, or the GBIF taxon key"
    )


def test_a_rank_on_the_input_is_sent_to_the_matcher():
    @dataclass
    class RankedTaxon(Taxon):
        rank: str | None = None

    (real,) = load_cassette(PYGBIF / "test_name_backbone_multiple_matches.yaml")
    ranked = Interaction(real.method, real.uri + "&rank=GENUS", None, 200, real.headers, real.body)
    result, adapter = resolve([ranked], RankedTaxon(name="Aso", rank="GENUS"))
    assert adapter.unused == [] and "rank=GENUS" in adapter.requests[0].url
