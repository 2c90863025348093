"""The sandbox's generated world: determinism, the contract's taxonomy, realistic messiness."""

from __future__ import annotations

import numpy as np
import pytest

from gbifdl_assets import vocabulary
from gbifdl_assets.sandbox import NAMED_SPECIES, build_world, get_world, hashing
from gbifdl_assets.sandbox import vocab as sandbox_vocab
from gbifdl_assets.sandbox.records import render_record
from gbifdl_assets.sandbox.vocab import LICENSE_URLS, RANKS
from gbifdl_assets.sandbox.world import KINDS

BASE = "http://sandbox.test"


@pytest.fixture(scope="module")
def world():
    return get_world(42, 20_000, 1_500)


def _columns(w):
    return {k: v for k, v in vars(w.occ).items() if isinstance(v, np.ndarray)}


def test_same_seed_gives_identical_data_and_json():
    a = build_world(7, 5_000, 300)
    b = build_world(7, 5_000, 300)
    for name, col in _columns(a).items():
        np.testing.assert_array_equal(col, _columns(b)[name], err_msg=name)
    assert [t.key for t in a.taxonomy.taxa] == [t.key for t in b.taxonomy.taxa]
    assert [d.key for d in a.datasets] == [d.key for d in b.datasets]
    for i in (0, 17, 4_999):
        assert render_record(a, i, BASE) == render_record(b, i, BASE)


def test_different_seed_gives_different_data():
    a = build_world(7, 5_000, 300)
    c = build_world(8, 5_000, 300)
    assert not np.array_equal(a.occ.taxon, c.occ.taxon)
    assert [d.key for d in a.datasets] != [d.key for d in c.datasets]
    # the named taxa keep their keys whatever the seed, so specs read the same everywhere
    assert a.taxonomy.find("Vanessa atalanta")[0].key == c.taxonomy.find("Vanessa atalanta")[0].key == 1898286


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("Vanessa atalanta", ["Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Vanessa"]),
        ("Vanessa cardui", ["Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Vanessa"]),
        ("Aglais io", ["Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Aglais"]),
        ("Papilio machaon", ["Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Papilionidae", "Papilio"]),
        ("Pieris rapae", ["Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Pieridae", "Pieris"]),
        ("Pieris brassicae", ["Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Pieridae", "Pieris"]),
        ("Panthera leo", ["Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae", "Panthera"]),
        ("Panthera tigris", ["Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae", "Panthera"]),
        (
            "Helianthus annuus",
            ["Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Helianthus"],
        ),
    ],
)
def test_required_names_sit_in_the_required_classification(world, name, path):
    (t,) = world.taxonomy.find(name)
    assert t.rank == "SPECIES" and t.status == "ACCEPTED"
    chain = world.taxonomy.classification(t.idx)
    assert [c.canonical for c in chain] == path
    assert [c.rank for c in chain] == list(RANKS[:6])


def test_inachis_io_is_a_synonym_of_aglais_io(world):
    tax = world.taxonomy
    (syn,) = tax.find("Inachis io")
    (acc,) = tax.find("Aglais io")
    assert syn.status == "SYNONYM" and syn.is_synonym
    assert tax.taxa[syn.accepted] is acc
    assert syn.idx in tax.synonyms[acc.idx]


def test_taxonomy_is_broad_and_has_every_rank(world):
    tax = world.taxonomy
    ranks = {t.rank for t in tax.taxa}
    assert set(RANKS) <= ranks
    species = [t for t in tax.taxa if t.rank == "SPECIES" and not t.is_synonym]
    assert len(species) >= 1_500
    assert sum(t.is_synonym for t in tax.taxa) > 100
    assert len({t.key for t in tax.taxa}) == len(tax.taxa)
    # generated names look like binomials: Capitalised genus, lower-case epithet
    for t in species[::97]:
        genus, epithet = t.canonical.split(" ")
        assert genus[0].isupper() and genus[1:].islower() and epithet.islower()
    assert set(NAMED_SPECIES) <= {t.canonical for t in species}


def test_keys_are_unique_and_sorted(world):
    k = world.occ.key
    assert np.all(np.diff(k) > 0)


def test_species_abundance_and_dataset_sizes_are_skewed(world):
    occ = world.occ
    per_dataset = np.sort(np.bincount(occ.dataset))[::-1]
    assert per_dataset[0] > 0.25 * len(occ)  # one dominant citizen-science dataset
    assert per_dataset[-1] < 0.01 * len(occ)
    species_key = world.taxonomy.cls_keys[occ.taxon, 6]
    _, counts = np.unique(species_key[species_key > 0], return_counts=True)
    counts = np.sort(counts)[::-1]
    assert counts[0] > 20 * np.median(counts)  # Zipf-like: a few very common species, a long tail


def test_records_carry_the_messiness_gbif_has(world):
    recs = [render_record(world, i, BASE) for i in range(0, len(world.occ), 7)]
    assert all(r["gbifID"] == str(r["key"]) for r in recs)
    assert {r["license"] for r in recs} == set(LICENSE_URLS)
    assert any("decimalLatitude" not in r for r in recs)
    assert any("year" not in r for r in recs)
    assert any("speciesKey" not in r for r in recs)  # identified above species
    synonyms = [r for r in recs if r["taxonKey"] != r["acceptedTaxonKey"]]
    assert synonyms and all(r["taxonomicStatus"] == "SYNONYM" for r in synonyms)
    assert all(r["speciesKey"] == r["acceptedTaxonKey"] for r in synonyms)
    dates = {r["eventDate"] for r in recs if "eventDate" in r}
    assert any(len(d) == 4 for d in dates) and any("T" in d for d in dates) and any("/" in d for d in dates)
    media = [m for r in recs for m in r["media"]]
    assert any("identifier" not in m for m in media)
    assert any(m.get("format") not in ("image/jpeg", None) for m in media)
    lic = {m.get("license") for m in media}
    assert None in lic and "" in lic and "All rights reserved" in lic
    assert any(x and x.startswith("https://") for x in lic) and any(
        x and not x.endswith("/") and "creativecommons" in x for x in lic
    )
    assert any(x and "/3.0" in x for x in lic) and any(x and x.endswith("(cc-by-sa)") for x in lic)
    assert all(m["identifier"].startswith(BASE + "/media/") for m in media if "identifier" in m)
    assert max(len(r["media"]) for r in recs) == 3


def test_scalar_and_vector_hashes_agree():
    keys = np.array([0, 1, 4_000_000_123, 2**40 + 5], dtype=np.int64)
    vec = hashing.unit_np(42, keys, 1003)
    assert [hashing.unit(42, int(k), 1003) for k in keys] == vec.tolist()


def test_the_occurrence_table_is_compact():
    # bytes per record of the columnar table; generation time is measured in the report, not here
    w = build_world(1, 50_000, 300)
    assert w.occ.nbytes / len(w.occ) < 48


def test_the_sandbox_generates_only_values_of_gbifs_vocabularies():
    # the sandbox picks its own subsets (with weights, coordinates, index orders), but every value
    # comes from the shared vocabulary the product validates against
    assert set(sandbox_vocab.ISSUE_NAMES) <= set(vocabulary.OCCURRENCE_ISSUES)
    assert set(sandbox_vocab.COUNTRY_CODES) <= set(vocabulary.COUNTRY_CODES)
    assert {c[2] for c in sandbox_vocab.COUNTRIES} <= set(vocabulary.CONTINENTS)
    assert set(sandbox_vocab.STATUSES) <= set(vocabulary.TAXONOMIC_STATUSES)
    assert set(RANKS) <= set(vocabulary.TAXON_RANKS)
    assert set(sandbox_vocab.LICENSES) <= set(vocabulary.RECORD_LICENSES)
    assert {b for kind in KINDS.values() for b in kind.basis} <= set(vocabulary.BASIS_OF_RECORD)
    assert {v for _, codes in sandbox_vocab.REGIONS for v in codes} <= set(sandbox_vocab.COUNTRY_CODES)
