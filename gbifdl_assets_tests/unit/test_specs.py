"""The training-set spec: examples load, bad input gives one clear line, fingerprints are stable."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from gbifdl_assets.specs import (
    OCCURRENCE_SEARCH_PARAMETERS,
    SpecError,
    TaxonRef,
    TrainingSetSpec,
    canonical_search_parameter,
    example_specs_dir,
    load_spec,
    load_spec_folder,
    parse_spec,
    record_field,
)

EXAMPLES = sorted(example_specs_dir().glob("*.yaml"))
BASE: dict[str, Any] = {"name": "test-set", "taxa": ["Vanessa atalanta", "Aglais io"]}


def problems_of(data: dict[str, Any] | str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="spec.yaml")
    assert info.value.path == "spec.yaml"
    return info.value.problems


def with_(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


# --- examples --------------------------------------------------------------------------------------
def test_examples_exist() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"european-butterflies", "big-cats", "sunflowers-from-doi"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.taxa
    assert spec.occurrence_filters["mediaType"] == ["StillImage"]
    # the normalised spec is itself a valid spec with the same meaning
    again = parse_spec(spec.model_dump(mode="json"))
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    # and survives a YAML round trip
    assert parse_spec(yaml.safe_dump(spec.model_dump(mode="json"))).fingerprint() == spec.fingerprint()


def test_demo_example() -> None:
    spec = load_spec(example_specs_dir() / "european-butterflies.yaml")
    assert [t.label for t in spec.taxa] == [
        "Vanessa atalanta",
        "Vanessa cardui",
        "Aglais io",
        "Inachis io",
        "Papilio machaon",
        "Pieris rapae",
        "Pieris brassicae",
        "Nymphalidae",
    ]
    assert spec.taxa[-1] == TaxonRef(name="Nymphalidae", expand_to="SPECIES", kingdom="Animalia")
    assert all(t.kingdom == "Animalia" for t in spec.taxa)  # the spec's kingdom hint is filled in
    assert spec.source.type == "search"
    assert spec.balancing.max_per_class == 40
    assert spec.refresh.cron == "0 3 1 * *"
    assert "CC-BY-NC-4.0" not in spec.licenses and "CC-BY-4.0" in spec.licenses


def test_other_examples() -> None:
    cats = load_spec(example_specs_dir() / "big-cats.yaml")
    assert [t.name for t in cats.taxa] == ["Panthera leo", "Panthera tigris"]
    assert cats.source.type == "download"
    assert cats.images.max_bytes == 15_000_000
    assert cats.exclude_filters == {"issue": ["COUNTRY_COORDINATE_MISMATCH", "PRESUMED_SWAPPED_COORDINATE"]}
    assert "CC-BY-NC-4.0" in cats.licenses
    doi = load_spec(example_specs_dir() / "sunflowers-from-doi.yaml")
    assert (doi.source.type, doi.source.doi, doi.refresh.cron) == ("doi", "10.15468/dl.np3k7j", None)


def test_load_spec_folder_examples() -> None:
    specs = load_spec_folder(example_specs_dir())
    assert set(specs) == {p.stem for p in EXAMPLES}


# --- one line per bad input --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            with_(occurence_filters={"country": "DE"}),
            "occurence_filters: unknown field; did you mean 'occurrence_filters'?",
            id="unknown-top-level-field",
        ),
        pytest.param(
            with_(balancing={"max_per_clas": 10}),
            "balancing.max_per_clas: unknown field; did you mean 'max_per_class'?",
            id="unknown-nested-field",
        ),
        pytest.param(
            with_(taxa=["Aglais io", {"name": "Vanessa", "expand": "SPECIES"}]),
            "taxa[1].expand: unknown field; did you mean 'expand_to'?",
            id="unknown-taxon-field",
        ),
        pytest.param(
            with_(images={"maxSide": 256}),
            "images.maxSide: unknown field; did you mean 'max_side'?",
            id="camelcase-field",
        ),
        pytest.param(
            with_(refresh={"cron": "0 3 * *"}),
            "refresh.cron: '0 3 * *' is not a valid cron expression; give 5 fields (minute hour "
            "day-of-month month day-of-week), e.g. '0 3 1 * *' (03:00 on the 1st of every month) "
            "or @daily, @weekly, @monthly",
            id="bad-cron",
        ),
        pytest.param(
            with_(refresh="61 * * * *"),
            "refresh.cron: '61 * * * *' is not a valid cron expression; give 5 fields (minute hour "
            "day-of-month month day-of-week), e.g. '0 3 1 * *' (03:00 on the 1st of every month) "
            "or @daily, @weekly, @monthly",
            id="bad-cron-minute",
        ),
        pytest.param(
            with_(taxa=[]),
            "taxa: empty; list at least one scientific name or GBIF key, e.g. taxa: [Vanessa atalanta]",
            id="empty-taxa",
        ),
        pytest.param(
            {"name": "test-set"},
            "taxa: required; list the taxa, e.g. taxa: [Vanessa atalanta, Aglais io]",
            id="missing-taxa",
        ),
        pytest.param(
            with_(occurrence_filters={"country": ["DE", "XY"]}),
            "occurrence_filters.country: 'XY' is not an ISO 3166-1 alpha-2 country code; "
            "use codes such as DE, FR, GB, US",
            id="bad-country",
        ),
        pytest.param(
            with_(occurrence_filters={"country": "uk"}),
            "occurrence_filters.country: 'uk' is not an ISO 3166-1 alpha-2 code; did you mean 'GB'?",
            id="uk-country",
        ),
        pytest.param(
            with_(splits={"train": 0.7, "val": 0.2, "test": 0.2}),
            "splits: train + val + test = 0.7 + 0.2 + 0.2 = 1.1; the fractions must sum to 1",
            id="fractions-sum",
        ),
        pytest.param(
            with_(splits={"train": 0.6, "val": 0.2}),
            "splits: train + val + test = 0.6 + 0.2 + 0.1 (test by default) = 0.9; the fractions must sum to 1",
            id="fractions-sum-with-default",
        ),
        pytest.param(
            with_(taxa=["Aglais io", "Pieris rapae", {"name": "Nymphalidae", "expand_to": "SPECIS"}]),
            "taxa[2].expand_to: 'SPECIS' is not a valid rank; did you mean 'SPECIES'? (one of: KINGDOM, "
            "PHYLUM, CLASS, ORDER, FAMILY, GENUS, SPECIES, SUBSPECIES, VARIETY, FORM)",
            id="bad-rank",
        ),
        pytest.param(
            with_(balancing={"label_rank": "TRIBE"}),
            "balancing.label_rank: 'TRIBE' is not a valid label rank; use one of: KINGDOM, PHYLUM, CLASS, "
            "ORDER, FAMILY, GENUS, SPECIES",
            id="bad-label-rank",
        ),
        pytest.param(
            with_(name="European Butterflies!"),
            "name: 'European Butterflies!' is not a valid training-set name; use 1-63 lowercase letters, "
            "digits, '-' or '_', starting with a letter or digit, e.g. 'european-butterflies'",
            id="bad-name",
        ),
        pytest.param(
            {"taxa": ["Aglais io"]},
            "name: required; add e.g. `name: my-training-set` (lowercase letters, digits, '-' and '_')",
            id="missing-name",
        ),
        pytest.param(
            with_(source={"type": "download_key"}),
            "source.key: required when source.type is download_key; give the key, e.g. 0000066-140928181241064",
            id="download-key-without-key",
        ),
        pytest.param(
            with_(source={"type": "doi"}),
            "source.doi: required when source.type is doi; give the DOI, e.g. 10.15468/dl.np3k7j",
            id="doi-without-doi",
        ),
        pytest.param(
            with_(source={"key": "12345"}),
            "source.key: '12345' is not a GBIF download key; keys look like 0000066-140928181241064",
            id="bad-download-key",
        ),
        pytest.param(
            with_(source={"type": "search", "key": "0000066-140928181241064"}),
            "source.key: only used with source.type download_key; set type: download_key or remove key",
            id="key-with-search",
        ),
        pytest.param(
            with_(source={"doi": "10.1000/xyz"}),
            "source.doi: '10.1000/xyz' is not a GBIF download DOI; they look like 10.15468/dl.np3k7j",
            id="bad-doi",
        ),
        pytest.param(
            with_(source="downlaod"),
            "source.type: 'downlaod' is not a valid source type; did you mean 'download'? (one of: auto, "
            "search, download, download_key, doi)",
            id="bad-source-type",
        ),
        pytest.param(
            with_(source={"format": "SIMPLE_CSV"}),
            "source.format: SIMPLE_CSV archives carry no image URLs; use DWCA (the default)",
            id="simple-csv",
        ),
        pytest.param(
            with_(occurrence_filters={"contry": "DE"}),
            "occurrence_filters.contry: unknown GBIF occurrence search parameter; did you mean 'country'?",
            id="unknown-filter",
        ),
        pytest.param(
            with_(occurrence_filters={"taxonKey": 5}),
            "occurrence_filters.taxonKey: taxa are given under `taxa:` (names or keys), the snapshot adds "
            "taxonKey itself; remove it here",
            id="taxonkey-filter",
        ),
        pytest.param(
            with_(occurrence_filters={"limit": 300}),
            "occurrence_filters.limit: 'limit' is a paging parameter, not a filter; remove it",
            id="paging-filter",
        ),
        pytest.param(
            with_(occurrence_filters={"basisOfRecord": "HUMAN_OBSERVATON"}),
            "occurrence_filters.basisOfRecord: 'HUMAN_OBSERVATON' is not a valid basisOfRecord value; "
            "did you mean 'HUMAN_OBSERVATION'? (one of: PRESERVED_SPECIMEN, FOSSIL_SPECIMEN, LIVING_SPECIMEN, "
            "OBSERVATION, HUMAN_OBSERVATION, MACHINE_OBSERVATION, MATERIAL_SAMPLE, LITERATURE, "
            "MATERIAL_CITATION, OCCURRENCE)",
            id="bad-basis-of-record",
        ),
        pytest.param(
            with_(occurrence_filters={"year": "2000-2020"}),
            "occurrence_filters.year: '2000-2020' is not a whole number; write a range as 'low,high', "
            "e.g. '2000,2020'",
            id="dash-range",
        ),
        pytest.param(
            with_(occurrence_filters={"year": "2020,2000"}),
            "occurrence_filters.year: range '2020,2000' has its low end above its high end; write '2000,2020'",
            id="reversed-range",
        ),
        pytest.param(
            with_(occurrence_filters={"decimalLatitude": "-95,10"}),
            "occurrence_filters.decimalLatitude: -95 is outside -90..90",
            id="latitude-out-of-range",
        ),
        pytest.param(
            with_(occurrence_filters={"publishingOrg": "not-a-uuid"}),
            "occurrence_filters.publishingOrg: 'not-a-uuid' is not a GBIF key (a UUID such as "
            "50c9509d-22c7-4a22-a47d-8c48425ef4a7)",
            id="bad-uuid",
        ),
        pytest.param(
            with_(occurrence_filters={"license": "CC-BY-SA-4.0"}),
            "occurrence_filters.license: 'CC-BY-SA-4.0' is not a GBIF record licence; use CC0_1_0, CC_BY_4_0 "
            "or CC_BY_NC_4_0 (this filters the record's licence; filter image licences with the top-level "
            "`licenses:` allowlist)",
            id="bad-record-license",
        ),
        pytest.param(
            with_(occurrence_filters={"mediaType": "Sound"}),
            "occurrence_filters.mediaType: an image training set needs StillImage; add it or remove mediaType",
            id="no-still-image",
        ),
        pytest.param(
            with_(occurrence_filters={"hasCoordinate": "maybe"}),
            "occurrence_filters.hasCoordinate: expected true or false, got 'maybe'",
            id="bad-bool",
        ),
        pytest.param(
            with_(occurrence_filters={"geometry": "POLYGON((1 2, 3 4"}),
            "occurrence_filters.geometry: cannot parse WKT 'POLYGON((1 2, 3 4'; write e.g. "
            "'POLYGON((10 50, 12 50, 12 52, 10 52, 10 50))'",
            id="bad-wkt",
        ),
        pytest.param(
            with_(occurrence_filters={"country": []}),
            "occurrence_filters.country: empty list; give at least one value or remove the filter",
            id="empty-filter",
        ),
        pytest.param(
            with_(occurrence_filters={"country": "DE", "COUNTRY": "FR"}),
            "occurrence_filters.COUNTRY: given twice (also as 'country'); merge the values into one list",
            id="filter-twice",
        ),
        pytest.param(
            with_(occurrence_filters=["country", "DE"]),
            "occurrence_filters: expected a mapping of GBIF search parameters (e.g. country: DE), "
            "got a list ['country', 'DE']",
            id="filters-not-mapping",
        ),
        pytest.param(
            with_(licenses=["CC0", "CC-BY-NCC"]),
            "licenses[1]: unknown licence 'CC-BY-NCC' (did you mean 'CC-BY-NC'?); use a family (CC0, PDM, "
            "CC-BY, CC-BY-SA, CC-BY-NC, CC-BY-NC-SA, CC-BY-ND, CC-BY-NC-ND, ALL-RIGHTS-RESERVED, UNKNOWN; a "
            "family admits every version), a versioned id such as CC-BY-4.0 or CC-BY-SA-3.0, a GBIF enum name "
            "such as CC_BY_4_0, or a Creative Commons URL",
            id="unknown-license",
        ),
        pytest.param(
            with_(licenses=[]),
            "licenses: an empty allowlist admits no image; list licences, e.g. ['CC0', 'PDM', 'CC-BY', 'CC-BY-SA']",
            id="empty-licenses",
        ),
        pytest.param(
            with_(taxa=["Aglais io", {"name": "Aglais io", "key": 4535827}]),
            "taxa[1]: give either name or key, not both (a key already names the taxon)",
            id="name-and-key",
        ),
        pytest.param(
            with_(taxa=["Aglais io", {"expand_to": "SPECIES"}]),
            "taxa[1]: give a scientific name (name: ...) or a GBIF taxon key (key: ...)",
            id="neither-name-nor-key",
        ),
        pytest.param(
            with_(taxa=["Aglais io", "Pieris rapae", "aglais  IO"]),
            "taxa[2]: 'aglais IO' repeats taxa[0]; remove one of them",
            id="duplicate-taxon",
        ),
        pytest.param(
            with_(taxa=["Aglais io", -5]),
            "taxa[1].key: expected a GBIF taxon key (a positive whole number), got -5",
            id="negative-key",
        ),
        pytest.param(
            with_(taxa=["Aglais io", 1.5]),
            "taxa[1]: expected a scientific name, a GBIF key or a mapping with name or key; got a number 1.5",
            id="float-taxon",
        ),
        pytest.param(
            with_(kingdom="Animals"),
            "kingdom: 'Animals' is not a valid kingdom; did you mean 'Animalia'? (one of: Animalia, Archaea, "
            "Bacteria, Chromista, Fungi, Plantae, Protozoa, Viruses, incertae sedis)",
            id="bad-kingdom",
        ),
        pytest.param(
            with_(balancing={"max_per_class": 0}),
            "balancing.max_per_class: must be at least 1, got 0",
            id="zero-cap",
        ),
        pytest.param(
            with_(balancing={"max_per_class": "lots"}),
            "balancing.max_per_class: expected a whole number, got 'lots'",
            id="text-cap",
        ),
        pytest.param(
            with_(balancing={"max_per_class": 10, "min_per_class": 20}),
            "balancing.min_per_class: 20 is above max_per_class (10); lower it",
            id="min-above-max",
        ),
        pytest.param(
            with_(balancing={"mode": "random"}),
            "balancing.mode: 'random' is not a valid balancing mode; use one of: exact, weighted",
            id="bad-mode",
        ),
        pytest.param(
            with_(balancing={"by": ["publishing org"]}),
            "balancing.by: 'publishing org' is not a column name (e.g. publishingOrgKey, datasetKey)",
            id="bad-column",
        ),
        pytest.param(
            with_(splits={"group_by": "photographer"}),
            "splits.group_by: 'photographer' is not a valid split group; use one of: occurrence, observer, "
            "location, dataset",
            id="bad-group",
        ),
        pytest.param(
            with_(annotations={"drop_labels": ["SUSPICOUS"]}),
            "annotations.drop_labels: 'SUSPICOUS' is not a valid annotation label; did you mean 'SUSPICIOUS'? "
            "(one of: NATIVE, INTRODUCED, MANAGED, FORMER, VAGRANT, SUSPICIOUS, OTHER)",
            id="bad-label",
        ),
        pytest.param(
            with_(annotations={"conflicts": "exclude"}),
            "annotations.conflicts: 'exclude' is not a valid conflict mode; did you mean 'exclude_any'? "
            "(one of: exclude_any, keep_conflicting, exclude_all)",
            id="bad-conflicts",
        ),
        pytest.param(
            with_(annotations={"min_support": -1}),
            "annotations.min_support: must be at least 0, got -1",
            id="negative-support",
        ),
        pytest.param(
            with_(images={"completeness_threshold": 95}),
            "images.completeness_threshold: must be at most 1.0, got 95",
            id="threshold-percent",
        ),
        pytest.param(
            with_(images={"format": "gif"}),
            "images.format: 'gif' is not a valid image format; use one of: jpeg, png, webp, original",
            id="bad-format",
        ),
        pytest.param(
            with_(images={"format": "original"}),
            "images.max_side: format original keeps the downloaded bytes and cannot resize; set max_side: "
            "null or choose jpeg, png or webp",
            id="original-with-resize",
        ),
        pytest.param(
            with_(images={"unattributed": "delete"}),
            "images.unattributed: 'delete' is not a valid unattributed choice; use one of: keep, drop",
            id="bad-unattributed",
        ),
        pytest.param(
            with_(images={"max_bytes": "lots"}),
            "images.max_bytes: 'lots' is not a size; write bytes (20000000) or e.g. '20MB'",
            id="bad-size",
        ),
        pytest.param(
            with_(refresh={"cron": "@fortnightly"}),
            "refresh.cron: '@fortnightly' is not a cron alias; use @hourly, @daily, @weekly, @monthly",
            id="bad-cron-alias",
        ),
        pytest.param(
            with_(refresh={"cron": "@daily", "timezone": "Mars/Olympus"}),
            "refresh.timezone: 'Mars/Olympus' is not an IANA time zone; use e.g. UTC or Europe/Copenhagen",
            id="bad-timezone",
        ),
        pytest.param(
            with_(balancing=[1, 2]),
            "balancing: expected a mapping of fields, got a list [1, 2]",
            id="section-not-mapping",
        ),
        pytest.param(
            "name: x\ntaxa: [Aglais io\nsplits: {train: 1}\n",
            "line 3, column 7: expected ',' or ']', but got ':'; fix the YAML (indentation, a missing ':', "
            "or quote the value)",
            id="malformed-yaml",
        ),
        pytest.param(
            "name: x\ntaxa:\n  - Aglais io\n bad: indent\n",
            "line 4, column 2: expected <block end>, but found '<block mapping start>'; fix the YAML "
            "(indentation, a missing ':', or quote the value)",
            id="bad-indent",
        ),
        pytest.param(
            "name: x\ntaxa: [Aglais io]\nname: y\n",
            "line 3, column 1: duplicate key 'name' (first given on line 1); keep only one",
            id="duplicate-yaml-key",
        ),
        pytest.param("", "the spec is empty; give at least name: and taxa:", id="empty-yaml"),
        pytest.param(
            "- Aglais io\n",
            "a spec is a mapping of fields (name:, taxa:, ...), got a list ['Aglais io']",
            id="yaml-list",
        ),
    ],
)
def test_one_line_per_problem(data: dict[str, Any] | str, expected: str) -> None:
    assert problems_of(data) == [expected]


def test_several_problems_are_all_reported_in_order() -> None:
    problems = problems_of(
        {
            "name": "Bad Name",
            "taxa": ["Aglais io", {"name": "Vanessa", "expand_to": "GENERA"}],
            "occurrence_filters": {"country": "XX", "yaer": 2020},
            "refresh": {"cron": "every day"},
            "licenses": ["CC-BY", "nope"],
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "name",
        "taxa[1].expand_to",
        "occurrence_filters.country",
        "occurrence_filters.yaer",
        "licenses[1]",
        "refresh.cron",
    ]
    assert "did you mean 'year'?" in problems[3]


def test_no_pydantic_format_leaks() -> None:
    bad = [
        with_(balancing={"max_per_class": [1]}),
        with_(splits={"train": "most"}),
        with_(description=["a"]),
        with_(annotations={"exclude_contested": "perhaps"}),
        with_(images={"shards": 1000}),
        with_(source={"search_max_records": 0}),
        with_(taxa=[{"name": 5}]),
    ]
    for data in bad:
        for line in problems_of(data):
            assert "Input should" not in line and "validation error" not in line and "pydantic" not in line
            assert "Value error" not in line and "\n" not in line
            assert ": " in line


def test_spec_error_str_and_pickle() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(with_(name="X", taxa=[]), source="specs/x.yaml")
    err = info.value
    lines = str(err).splitlines()
    assert lines[0] == "specs/x.yaml: invalid training-set spec (2 problems)"
    assert lines[1:] == [f"  - {p}" for p in err.problems]
    assert isinstance(err, ValueError)
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.path, clone.problems, str(clone)) == (err.path, err.problems, str(err))


# --- normalisation ----------------------------------------------------------------------------------
def test_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.occurrence_filters == {"mediaType": ["StillImage"]}
    assert spec.exclude_filters == {}
    assert spec.source.type == "auto" and spec.source.search_max_records == 20_000
    assert spec.balancing.label_rank == "SPECIES"
    assert spec.balancing.by == ["publishingOrgKey"]
    assert spec.balancing.max_per_occurrence == 1
    assert (spec.balancing.mode, spec.balancing.seed) == ("exact", 0)
    assert (spec.splits.train, spec.splits.val, spec.splits.test, spec.splits.group_by) == (
        0.8,
        0.1,
        0.1,
        "occurrence",
    )
    assert spec.annotations.drop_labels == ["MANAGED", "FORMER", "SUSPICIOUS"]
    assert (spec.annotations.conflicts, spec.annotations.min_support) == ("exclude_any", 0)
    assert spec.images.shards == 8 and spec.images.format == "jpeg"
    assert (spec.images.unattributed, spec.images.min_class_images) == ("keep", 5)
    assert parse_spec(with_(images={"unattributed": " Drop "})).images.unattributed == "drop"
    assert spec.refresh.cron is None
    # license-clean default: CC0, PDM, CC BY and CC BY-SA (all versions); no NC, ND, ARR, UNKNOWN
    assert spec.licenses[:3] == ["CC0-1.0", "PDM", "CC-BY-4.0"]
    assert "CC-BY-SA-3.0" in spec.licenses
    assert not {"CC-BY-NC-4.0", "CC-BY-ND-4.0", "ALL-RIGHTS-RESERVED", "UNKNOWN"} & set(spec.licenses)
    # empty sections are defaults
    assert parse_spec(with_(balancing=None, images=None, refresh=None, licenses=None)) == spec


def test_taxa_shorthand() -> None:
    spec = parse_spec(
        with_(
            taxa=[
                "  Vanessa   atalanta ",
                1898286,
                "5231190",
                {"name": "Nymphalidae", "expand_to": "species", "kingdom": "animalia"},
                {"key": 797, "expand_to": "Genus"},
            ],
            kingdom="Animalia",
        )
    )
    assert spec.taxa == [
        TaxonRef(name="Vanessa atalanta", kingdom="Animalia"),
        TaxonRef(key=1898286),
        TaxonRef(key=5231190),
        TaxonRef(name="Nymphalidae", expand_to="SPECIES", kingdom="Animalia"),
        TaxonRef(key=797, expand_to="GENUS"),
    ]
    assert [t.label for t in spec.taxa][:2] == ["Vanessa atalanta", "key 1898286"]
    assert parse_spec(with_(taxa="Aglais io")).taxa == [TaxonRef(name="Aglais io")]


def test_filter_names_and_values_are_normalised_like_gbif() -> None:
    spec = parse_spec(
        with_(
            occurrence_filters={
                "COUNTRY": ["de", "fr", "de"],
                "basis_of_record": "human observation",
                "Year": "2000, 2024",
                "month": 6,
                "has-coordinate": True,
                "hasGeospatialIssue": "no",
                "dataset.key": "50C9509D-22C7-4A22-A47D-8C48425EF4A7",
                "publishingOrgKey": "28eb1a3f-1c15-4a95-931a-4af90ecb574d",
                "license": [
                    "cc-by-4.0",
                    "CC0_1_0",
                    "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
                ],
                "media_type": "stillimage",
                "eventDate": "2020-05,2021",
                "coordinateUncertaintyInMeters": "*,1000.0",
                "decimalLongitude": -3.5,
                "issue": "zero coordinate",
                "continent": "europe",
                "q": " Admiral ",
            }
        )
    )
    assert spec.occurrence_filters == {
        "basisOfRecord": ["HUMAN_OBSERVATION"],
        "continent": ["EUROPE"],
        "coordinateUncertaintyInMeters": ["*,1000"],
        "country": ["DE", "FR"],
        "datasetKey": ["50c9509d-22c7-4a22-a47d-8c48425ef4a7"],
        "decimalLongitude": ["-3.5"],
        "eventDate": ["2020-05,2021"],
        "hasCoordinate": ["true"],
        "hasGeospatialIssue": ["false"],
        "issue": ["ZERO_COORDINATE"],
        "license": ["CC0_1_0", "CC_BY_4_0", "CC_BY_NC_4_0"],
        "mediaType": ["StillImage"],
        "month": ["6"],
        "publishingOrg": ["28eb1a3f-1c15-4a95-931a-4af90ecb574d"],
        "q": ["Admiral"],
        "year": ["2000,2024"],
    }
    assert list(spec.occurrence_filters) == sorted(spec.occurrence_filters)


def test_yaml_surprises_are_disarmed() -> None:
    spec = parse_spec(
        "name: norway\ntaxa: [Aglais io]\noccurrence_filters:\n  country: [NO, no, SE]\n"
        "  eventDate: 2020-05-01\n  hasCoordinate: yes\n"
    )
    assert spec.occurrence_filters["country"] == ["NO", "SE"]  # not False
    assert spec.occurrence_filters["eventDate"] == ["2020-05-01"]  # not a date object
    assert spec.occurrence_filters["hasCoordinate"] == ["true"]


def test_geometry_is_oriented_and_split() -> None:
    clockwise = "POLYGON((10 50, 10 52, 12 52, 12 50, 10 50))"
    spec = parse_spec(with_(occurrence_filters={"geometry": clockwise}))
    assert spec.occurrence_filters["geometry"] == ["POLYGON ((10 50, 12 50, 12 52, 10 52, 10 50))"]
    multi = "MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))"
    spec = parse_spec(with_(occurrence_filters={"geometry": multi}))
    assert spec.occurrence_filters["geometry"] == [
        "POLYGON ((0 0, 1 0, 1 1, 0 0))",
        "POLYGON ((5 5, 6 5, 6 6, 5 5))",
    ]
    bowtie = "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"
    (line,) = problems_of(with_(occurrence_filters={"geometry": bowtie}))
    assert line.startswith("occurrence_filters.geometry: the geometry is not valid (Self-intersection")


def test_source_forms() -> None:
    assert parse_spec(with_(source="download")).source.type == "download"
    by_key = parse_spec(with_(source={"key": " 0000066-140928181241064 "})).source
    assert (by_key.type, by_key.key) == ("download_key", "0000066-140928181241064")
    for doi in ("10.15468/dl.NP3K7J", "doi:10.15468/dl.np3k7j", "https://doi.org/10.15468/dl.np3k7j"):
        source = parse_spec(with_(source={"doi": doi})).source
        assert (source.type, source.doi) == ("doi", "10.15468/dl.np3k7j")


def test_other_sections() -> None:
    spec = parse_spec(
        with_(
            balancing={"by": "datasetKey", "mode": "Weighted", "max_total": 1000, "max_per_occurrence": None},
            annotations={
                "drop_labels": ["suspicious", "SUSPICIOUS", "vagrant"],
                "rulesets": [3, "zoo-areas"],
            },
            images={"max_bytes": "1.5 MiB", "format": "JPG", "max_side": None},
            refresh="@Monthly",
        )
    )
    assert spec.balancing.by == ["datasetKey"] and spec.balancing.mode == "weighted"
    assert spec.balancing.max_per_occurrence is None
    assert spec.balancing.max_class_ratio == 2.0
    assert spec.annotations.drop_labels == ["VAGRANT", "SUSPICIOUS"]
    assert spec.annotations.rulesets == ["3", "zoo-areas"]
    assert spec.images.max_bytes == int(1.5 * 2**20) and spec.images.format == "jpeg"
    assert spec.refresh.cron == "@monthly"
    assert parse_spec(with_(annotations={"rulesets": []})).annotations.rulesets == []


def test_search_parameter_helpers() -> None:
    assert canonical_search_parameter("BASIS_OF_RECORD") == "basisOfRecord"
    assert canonical_search_parameter("gadm_level_0_gid") == "gadmLevel0Gid"
    assert canonical_search_parameter("publishing-org") == "publishingOrg"
    assert OCCURRENCE_SEARCH_PARAMETERS["coordinateUncertaintyInMeters"] == "COORDINATE_UNCERTAINTY_IN_METERS"
    assert len(OCCURRENCE_SEARCH_PARAMETERS) > 100
    assert record_field("publishingOrg") == "publishingOrgKey" and record_field("year") == "year"
    with pytest.raises(ValueError, match="did you mean 'mediaType'"):
        canonical_search_parameter("mediatyp")
    with pytest.raises(ValueError, match="facet parameter"):
        canonical_search_parameter("facetLimit")


def test_search_params() -> None:
    spec = parse_spec(with_(occurrence_filters={"country": ["FR", "DE"]}))
    params = spec.search_params()
    assert params == {"country": ["DE", "FR"], "mediaType": ["StillImage"]}
    params["country"].append("XX")  # a copy: the spec is unchanged
    assert spec.occurrence_filters["country"] == ["DE", "FR"]
    assert spec.search_params(taxon_keys=[5, 3, 5])["taxonKey"] == ["3", "5"]


# --- fingerprint ---------------------------------------------------------------------------------------
def test_fingerprint_is_stable_across_key_order_and_spelling() -> None:
    a = """
name: fp
taxa: [Aglais io, Pieris rapae]
occurrence_filters: {country: [DE, FR], basisOfRecord: HUMAN_OBSERVATION}
balancing: {max_per_class: 10, seed: 1}
licenses: [CC0, CC-BY]
refresh: {cron: "0 3 1 * *"}
"""
    b = """
refresh: "0  3 1 * *"
licenses: [cc-by, CC0-1.0]
balancing: {seed: 1, max_per_class: 10}
occurrence_filters: {basis_of_record: human_observation, COUNTRY: [fr, de], media_type: StillImage}
taxa: [Aglais io, Pieris rapae]
name: fp
"""
    fa, fb = parse_spec(a).fingerprint(), parse_spec(b).fingerprint()
    assert fa == fb
    assert len(fa) == 64 and int(fa, 16) >= 0
    assert parse_spec(a).fingerprint() == fa  # deterministic across parses


@pytest.mark.parametrize(
    "change",
    [
        {"taxa": ["Aglais io", "Pieris brassicae"]},
        {"occurrence_filters": {"country": ["DE"]}},
        {"balancing": {"max_per_class": 11}},
        {"splits": {"train": 0.7, "val": 0.2, "test": 0.1}},
        {"licenses": ["CC0"]},
        {"refresh": "0 4 1 * *"},
        {"images": {"shards": 4}},
        {"description": "new words"},
    ],
)
def test_fingerprint_changes_with_any_value(change: dict[str, Any]) -> None:
    base = with_(occurrence_filters={"country": ["DE", "FR"]}, balancing={"max_per_class": 10})
    assert parse_spec({**base, **change}).fingerprint() != parse_spec(base).fingerprint()


def test_section_fingerprints() -> None:
    a = parse_spec(with_(balancing={"max_per_class": 10}))
    b = parse_spec(with_(balancing={"max_per_class": 20}))
    assert a.fingerprint("taxa", "kingdom") == b.fingerprint("taxa", "kingdom")
    assert a.fingerprint("balancing") != b.fingerprint("balancing")
    with pytest.raises(ValueError, match="unknown spec fields"):
        a.fingerprint("balance")


def test_spec_is_immutable() -> None:
    spec = parse_spec(BASE)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, TrainingSetSpec)


# --- files ------------------------------------------------------------------------------------------
def test_load_spec_files(tmp_path: Path) -> None:
    path = tmp_path / "my-set.yml"
    path.write_text("taxa: [Aglais io]\n", encoding="utf-8")
    assert load_spec(path).name == "my-set"  # the file name is the default name
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "missing.yaml")
    assert info.value.problems == ["file not found; check the path"]
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert info.value.problems == ["not UTF-8 text (byte 9); save the file as UTF-8"]


def test_load_spec_folder_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("taxa: [Aglais io]\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("taxa: []\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("name: a\ntaxa: [Pieris rapae]\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a spec", encoding="utf-8")
    (tmp_path / ".hidden.yaml").write_text("broken: [", encoding="utf-8")

    errors: list[SpecError] = []
    specs = load_spec_folder(tmp_path, errors=errors)
    assert list(specs) == ["a"]
    assert [(Path(e.path).name, e.problems) for e in errors] == [
        (
            "b.yaml",
            ["taxa: empty; list at least one scientific name or GBIF key, e.g. taxa: [Vanessa atalanta]"],
        ),
        ("c.yaml", ["name: 'a' is already used by a.yaml; give every set a unique name"]),
    ]
    with pytest.raises(SpecError) as info:
        load_spec_folder(tmp_path)
    assert info.value.problems == [
        "b.yaml: taxa: empty; list at least one scientific name or GBIF key, e.g. taxa: [Vanessa atalanta]",
        "c.yaml: name: 'a' is already used by a.yaml; give every set a unique name",
    ]
    with pytest.raises(SpecError, match="spec folder not found"):
        load_spec_folder(tmp_path / "nope")
