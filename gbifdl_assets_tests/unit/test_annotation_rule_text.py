"""Rule sentences → rules, with a fake GBIF client; errors name the part that failed."""

from __future__ import annotations

import pytest
import shapely

from gbifdl_assets.annotations.areas import country_geometry
from gbifdl_assets.annotations.rule_text import RuleTextError, parse_rule_text
from gbifdl_assets.gbif.client import NameMatch

LION, PANTHERA, AVES, PEACOCK, INACHIS_IO = 5219404, 2435194, 212, 4535827, 5881450


def _match(query, key=None, name=None, match_type="EXACT", rank="SPECIES", accepted=None):
    return NameMatch(
        query=query,
        usage_key=key,
        scientific_name=name,
        canonical_name=name,
        rank=rank,
        status="SYNONYM" if accepted else "ACCEPTED",
        match_type=match_type if key is not None else "NONE",
        confidence=99,
        synonym=accepted is not None,
        accepted_key=accepted if accepted is not None else key,
        species_key=None,
        kingdom="Animalia",
        raw={},
    )


class FakeClient:
    """GBIF's matcher for a handful of names, and a vernacular species search."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.names = {
            "panthera leo": _match("Panthera leo", LION, "Panthera leo"),
            "panthra leo": _match("Panthra leo", LION, "Panthera leo", "FUZZY"),
            "panthera leoo": _match("Panthera leoo", PANTHERA, "Panthera", "HIGHERRANK", "GENUS"),
            "aves": _match("Aves", AVES, "Aves", rank="CLASS"),
            "inachis io": _match("Inachis io", INACHIS_IO, "Inachis io", accepted=PEACOCK),
        }
        self.vernacular = [
            {"key": LION, "canonicalName": "Panthera leo", "vernacularName": "Lion", "rank": "SPECIES"},
            # the subspecies shares the vernacular name: the species is meant
            {
                "key": 99,
                "canonicalName": "Panthera leo persica",
                "vernacularName": "Lion",
                "rank": "SUBSPECIES",
            },
            {
                "key": 1,
                "canonicalName": "Zalophus",
                "vernacularName": "Sea lion",
                "taxonomicStatus": "ACCEPTED",
            },
            {"key": 7, "canonicalName": "Cygnus a", "vernacularName": "Swan", "taxonomicStatus": "ACCEPTED"},
            {"key": 8, "canonicalName": "Cygnus b", "vernacularName": "Swan", "taxonomicStatus": "ACCEPTED"},
        ]

    def match_name(self, name, **kwargs):
        self.queries.append(name)
        return self.names.get(name.lower(), _match(name))

    def iter_species_search(self, params):
        q = params["q"].lower()
        return iter([u for u in self.vernacular if q in u["vernacularName"].lower()])


@pytest.fixture
def client():
    return FakeClient()


def test_the_canonical_example(client):
    p = parse_rule_text("Panthera leo in GL are suspicious", client=client)
    assert p.rule.taxonKey == LION and p.rule.annotation == "SUSPICIOUS"
    assert p.taxon == "Panthera leo" and p.area == "Greenland"
    geom = shapely.from_wkt(p.rule.geometry)
    assert geom.intersects(shapely.Point(-42, 72)) and not geom.intersects(shapely.Point(37, 0))
    assert geom.symmetric_difference(country_geometry("GL")).area < 0.05 * geom.area
    assert p.description == "Panthera leo in GL are suspicious"
    assert p.rule.yearRange is None and p.rule.basisOfRecord is None


def test_vernacular_name_and_country_name(client):
    p = parse_rule_text("Lions in Greenland are suspicious", client=client)
    assert p.rule.taxonKey == LION and p.area == "Greenland"
    assert any("vernacular" in n for n in p.notes)


def test_wkt_area_and_higher_taxon(client):
    wkt = "POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))"
    p = parse_rule_text(f"Aves in {wkt} are introduced", client=client)
    assert p.rule.taxonKey == AVES and p.rule.annotation == "INTRODUCED"
    assert p.rule.geometry == wkt and p.area == "WKT polygon"


def test_is_singular_and_years(client):
    p = parse_rule_text("Panthera leo in Kenya is native from 1900 to 1950", client=client)
    assert (p.rule.annotation, p.rule.yearRange, p.area) == ("NATIVE", "1900,1950", "Kenya")


@pytest.mark.parametrize(
    ("tail", "years"),
    [
        ("between 1900 and 1950", "1900,1950"),
        ("in 1950", "1950,1950"),
        ("until 1950", "*,1950"),
        ("before 1950", "*,1949"),
        ("since 1950", "1950,*"),
        ("after 1950", "1951,*"),
    ],
)
def test_year_phrases(client, tail, years):
    assert parse_rule_text(f"Panthera leo in KE are native {tail}", client=client).rule.yearRange == years


def test_basis_of_record_and_dataset_qualifiers(client):
    p = parse_rule_text("Panthera leo in KE are managed (basisOfRecord PRESERVED_SPECIMEN)", client=client)
    assert p.rule.basisOfRecord == ["PRESERVED_SPECIMEN"] and not p.rule.basisOfRecordNegated
    p = parse_rule_text(
        "Panthera leo in KE are managed (basisOfRecord not living specimen, PreservedSpecimen) "
        "(dataset 50C9509D-22C7-4A22-A47D-8C48425EF4A7) from 1900 to 1950.",
        client=client,
    )
    assert p.rule.basisOfRecord == ["LIVING_SPECIMEN", "PRESERVED_SPECIMEN"] and p.rule.basisOfRecordNegated
    assert p.rule.datasetKey == "50c9509d-22c7-4a22-a47d-8c48425ef4a7" and p.rule.yearRange == "1900,1950"


@pytest.mark.parametrize(
    ("word", "label"),
    [
        ("suspicious", "SUSPICIOUS"),
        ("NATIVES", "NATIVE"),
        ("Vagrants", "VAGRANT"),
        ("captive", "MANAGED"),
        ("other", "OTHER"),
    ],
)
def test_labels_any_case_singular_plural(client, word, label):
    assert parse_rule_text(f"Panthera leo in GL are {word}", client=client).rule.annotation == label


def test_synonyms_are_replaced_by_the_accepted_key(client):
    p = parse_rule_text("Inachis io in FR are native", client=client)
    assert p.rule.taxonKey == PEACOCK and "synonym" in p.notes[0]


def test_fuzzy_match_is_accepted_with_a_note(client):
    p = parse_rule_text("Panthra leo in GL are suspicious", client=client)
    assert p.rule.taxonKey == LION and "fuzzily" in p.notes[0]


def test_keys_and_any_taxon_need_no_client():
    assert parse_rule_text("5219404 in GL are suspicious").rule.taxonKey == LION
    assert (
        parse_rule_text("Anything in POLYGON((-1 -1, 1 -1, 1 1, -1 1, -1 -1)) is suspicious").rule.taxonKey
        is None
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Panthera leo in GL", r"write it as 'TAXON in AREA are LABEL'"),
        ("", r"empty rule"),
        (
            "Panthera leoo in GL are suspicious",
            r"taxon 'Panthera leoo': GBIF matched only the higher genus Panthera \(2435194\)",
        ),
        ("Felis unknownus in GL are suspicious", r"taxon 'Felis unknownus': unknown taxon"),
        (
            "Swans in GL are suspicious",
            r"taxon 'Swans': the vernacular name fits several taxa: Cygnus a \(7\), Cygnus b \(8\)",
        ),
        (
            "Panthera leo in Grenland are suspicious",
            r"area: unknown area 'Grenland'.*did you mean Greenland \(GL\)",
        ),
        (
            "Panthera leo in GL are suspcious",
            r"label: unknown label 'suspcious' \(did you mean SUSPICIOUS\?\)",
        ),
        (
            "Panthera leo in GL are suspicious (basisOfRecord SPECIMENS)",
            r"basisOfRecord: unknown basisOfRecord 'SPECIMENS'",
        ),
        ("Panthera leo in GL are suspicious from 1950 to 1900", r"years: .* starts after it ends"),
        (
            "Panthera leo in GL are suspicious on Tuesdays",
            r"did not understand 'on Tuesdays' after the label",
        ),
        (
            "Panthera leo in POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)) are suspicious",
            r"geometry is not a valid polygon",
        ),
    ],
)
def test_errors_name_the_failing_part(client, text, message):
    with pytest.raises(RuleTextError, match=message) as info:
        parse_rule_text(text, client=client)
    if text:
        assert str(info.value).startswith("rule ")


def test_names_without_a_client_are_refused_clearly():
    with pytest.raises(RuleTextError, match=r"taxon 'Panthera leo': give a taxon key, or a GBIF API"):
        parse_rule_text("Panthera leo in GL are suspicious")


def test_client_failures_are_reported_as_the_taxon_part():
    class Broken:
        def match_name(self, name, **kwargs):
            raise ConnectionError("no route to host")

    with pytest.raises(
        RuleTextError, match=r"taxon 'Panthera leo': the name could not be looked up \(no route"
    ):
        parse_rule_text("Panthera leo in GL are suspicious", client=Broken())
