"""Media-licence normalisation against the licence strings GBIF really carries."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
import zlib
from collections import Counter
from functools import cache
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from gbifdl_assets.gbif import licenses as lic
from gbifdl_assets.gbif.licenses import (
    KNOWN_LICENSES,
    LICENSE_FAMILIES,
    gbif_license_enum,
    license_family,
    license_label,
    license_url,
    normalize_license,
    normalize_licenses,
    parse_license_allowlist,
)

FIXTURES = Path(__file__).resolve().parents[2] / "../shared/fixtures/gbif"


# --- the forms listed in the reference (gbif-api.md §3.2, §3.3, §5.3, §6) --------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # record licences (legalcode URLs) and media licences (CC URIs without legalcode)
        ("http://creativecommons.org/publicdomain/zero/1.0/legalcode", "CC0-1.0"),
        ("http://creativecommons.org/licenses/by/4.0/legalcode", "CC-BY-4.0"),
        ("http://creativecommons.org/licenses/by-nc/4.0/legalcode", "CC-BY-NC-4.0"),
        ("http://creativecommons.org/licenses/by-nc-nd/4.0/", "CC-BY-NC-ND-4.0"),
        ("http://creativecommons.org/licenses/by-nc-sa/4.0/", "CC-BY-NC-SA-4.0"),
        ("http://creativecommons.org/licenses/by-sa/4.0/", "CC-BY-SA-4.0"),
        ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
        # the verbatim extension keeps https; no trailing slash; deed suffixes
        ("https://creativecommons.org/licenses/by-nc/4.0/", "CC-BY-NC-4.0"),
        ("https://creativecommons.org/publicdomain/zero/1.0", "CC0-1.0"),
        ("http://creativecommons.org/licenses/by/4.0/deed.en_US", "CC-BY-4.0"),
        ("https://creativecommons.org/licenses/by-sa/4.0/deed.fr", "CC-BY-SA-4.0"),
        ("https://creativecommons.org/licenses/by/4.0/legalcode.de", "CC-BY-4.0"),
        ("HTTPS://CreativeCommons.org/Licenses/BY-NC/4.0/", "CC-BY-NC-4.0"),
        ("  http://creativecommons.org/licenses/by/4.0/ ", "CC-BY-4.0"),
        ("creativecommons.org/licenses/by/4.0", "CC-BY-4.0"),
        ("http://www.creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
        # 3.0 variants and older versions, jurisdiction ports
        ("http://creativecommons.org/licenses/by-nc/3.0/", "CC-BY-NC-3.0"),
        ("https://creativecommons.org/licenses/by/3.0/us/", "CC-BY-3.0"),
        ("http://creativecommons.org/licenses/by-sa/3.0/deed.en", "CC-BY-SA-3.0"),
        ("http://creativecommons.org/licenses/by-nc-nd/2.5/au/", "CC-BY-NC-ND-2.5"),
        ("http://creativecommons.org/licenses/by-nc/2.1/jp/", "CC-BY-NC-2.1"),
        ("http://creativecommons.org/licenses/by/2.0/", "CC-BY-2.0"),
        ("http://creativecommons.org/licenses/by-nd-nc/1.0/", "CC-BY-NC-ND-1.0"),
        ("https://creativecommons.org/licenses/by-nc/", "CC-BY-NC"),
        # public domain
        ("http://creativecommons.org/publicdomain/mark/1.0/", "PDM"),
        ("https://creativecommons.org/licenses/publicdomain/", "PDM"),
        ("Public Domain", "PDM"),
        ("public domain mark", "PDM"),
        # GBIF enum names (search parameter, predicate value, download column)
        ("CC0_1_0", "CC0-1.0"),
        ("CC_BY_4_0", "CC-BY-4.0"),
        ("CC_BY_NC_4_0", "CC-BY-NC-4.0"),
        ("UNSPECIFIED", "UNKNOWN"),
        ("UNSUPPORTED", "UNKNOWN"),
        ("unspecified", "UNKNOWN"),  # download status licence
        # SPDX-ish ids and short forms
        ("CC-BY-4.0", "CC-BY-4.0"),
        ("CC-BY-NC-SA-2.5", "CC-BY-NC-SA-2.5"),
        ("CC-BY-3.0-US", "CC-BY-3.0"),
        ("CC-BY-SA-4.0", "CC-BY-SA-4.0"),
        ("cc0-1.0", "CC0-1.0"),
        ("CC0", "CC0-1.0"),
        ("CC BY 4.0", "CC-BY-4.0"),
        ("CC BY-NC 4.0.", "CC-BY-NC-4.0"),
        ("CC BY-NC-ND", "CC-BY-NC-ND"),
        ("CC BY", "CC-BY"),
        ("cc-by-sa", "CC-BY-SA"),
        ("cc-by-nc-nd/4.0", "CC-BY-NC-ND-4.0"),
        ("Hanxiouchao (cc-by-sa)", "CC-BY-SA"),
        ("henryb68 (cc-by-sa)", "CC-BY-SA"),
        ("Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International", "CC-BY-NC-SA-4.0"),
        ("Attribution-NoDerivatives 4.0 International", "CC-BY-ND-4.0"),
        # iNaturalist-style rights statements: the CC part wins over "(c)"
        ("(c) Jane Doe, some rights reserved (CC BY-NC)", "CC-BY-NC"),
        ("(c) Jane Doe, no rights reserved (CC0)", "CC0-1.0"),
        ("(c) Jane Doe, all rights reserved", "ALL-RIGHTS-RESERVED"),
        # copyright without a licence
        ("All rights reserved", "ALL-RIGHTS-RESERVED"),
        ("All Rights Reserved", "ALL-RIGHTS-RESERVED"),
        ("© The Board of Trustees of the Royal Botanic Gardens, Kew.", "ALL-RIGHTS-RESERVED"),
        ("Copyright 2019 Some Museum", "ALL-RIGHTS-RESERVED"),
        ("http://rightsstatements.org/vocab/InC/1.0/", "ALL-RIGHTS-RESERVED"),
        # truly unknowable
        ("Usage Conditions Apply", "UNKNOWN"),
        ("http://kiki.huh.harvard.edu/databases/addenda.html#policy", "UNKNOWN"),
        ("http://fieldmuseum.org/about/copyright-information", "UNKNOWN"),
        ("not-for-profit use only", "UNKNOWN"),
        ("", "UNKNOWN"),
        ("   ", "UNKNOWN"),
        (None, "UNKNOWN"),
        # look-alikes that are not licences
        ("CC-BY-NCC", "UNKNOWN"),
        ("CC-BY-ND-SA", "UNKNOWN"),
        ("http://creativecommons.org/licenses/sampling+/1.0/", "UNKNOWN"),
    ],
)
def test_normalize_license(raw: str | None, expected: str) -> None:
    assert normalize_license(raw) == expected


def test_every_result_is_a_known_id() -> None:
    assert len(KNOWN_LICENSES) == len(set(KNOWN_LICENSES)) == 46
    for raw in ["CC BY-SA 2.5", "cc by 5.0", "whatever", "CC_BY_SA_4_0", "PDM", "unknown"]:
        assert normalize_license(raw) in KNOWN_LICENSES


# --- the recorded fixtures -------------------------------------------------------------------------
def _cassette_bodies(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    bodies = []
    for interaction in doc.get("interactions") or doc.get("http_interactions") or []:
        body = interaction["response"]["body"]
        text = body.get("string")
        if not text and body.get("raw_gzip"):
            text = zlib.decompress(base64.b64decode(body["raw_gzip"])).decode("utf-8")
        if text:
            bodies.append(text)
    return bodies


def _media_licences(node: object, out: list[str | None]) -> None:
    """Every media[].license (None when the media object has none) anywhere in a JSON body."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "media" and isinstance(value, list):
                out.extend(m.get("license") for m in value if isinstance(m, dict))
            else:
                _media_licences(value, out)
    elif isinstance(node, list):
        for item in node:
            _media_licences(item, out)


@cache
def _json_bodies(path: Path) -> list[object]:
    """Parsed JSON bodies of a cassette (cached: several tests walk the same files)."""
    out = []
    for text in _cassette_bodies(path):
        try:
            out.append(json.loads(text))
        except ValueError:
            continue  # 400 texts, bare download keys
    return out


def test_pygbif_search_media_licences() -> None:
    raw: list[str | None] = []
    for body in _json_bodies(FIXTURES / "recorded/pygbif/test_search.yaml"):
        _media_licences(body, raw)
    assert len(raw) == 487
    assert Counter(normalize_license(v) for v in raw) == {
        "CC-BY-4.0": 462,
        "ALL-RIGHTS-RESERVED": 15,
        "CC-BY-NC-4.0": 10,
    }


def test_all_recorded_media_licences() -> None:
    raw: list[str | None] = []
    for path in sorted((FIXTURES / "recorded").glob("*/*.y*ml")):
        for body in _json_bodies(path):
            _media_licences(body, raw)
    assert len(raw) == 2264
    counts = Counter(normalize_license(v) for v in raw)
    assert counts == {
        "CC-BY-NC-4.0": 1535,
        "CC-BY-4.0": 595,
        "CC0-1.0": 67,
        "CC-BY-NC-ND-4.0": 37,
        "ALL-RIGHTS-RESERVED": 15,
        "CC-BY-SA": 7,  # "<user> (cc-by-sa)": no version given
        "CC-BY-NC-SA-4.0": 3,
        "CC-BY-SA-4.0": 3,
        "UNKNOWN": 2,  # the two media objects without any licence field
    }
    assert sum(1 for v in raw if v is None) == 2


def test_recorded_verbatim_record_species_and_download_licences() -> None:
    """The other licence fields in the cassettes: verbatim Multimedia extension (https forms),
    occurrence record licences, species media licences and download status licences."""
    verbatim: Counter[str] = Counter()
    record: Counter[str] = Counter()
    species_media: Counter[str] = Counter()
    download: Counter[str] = Counter()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            value = node.get("license")
            if "gbifID" in node and isinstance(value, str):
                record[normalize_license(value)] += 1
            elif "sourceTaxonKey" in node and "identifier" in node:  # /species/{key}/media
                species_media[normalize_license(value)] += 1
            elif "downloadLink" in node:
                download[normalize_license(value)] += 1
            for key, child in node.items():
                if key == "http://purl.org/dc/terms/license" and isinstance(child, str):
                    verbatim[normalize_license(child)] += 1
                walk(child)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted((FIXTURES / "recorded").glob("*/*.y*ml")):
        for body in _json_bodies(path):
            walk(body)
    assert verbatim == {
        "CC-BY-NC-4.0": 1535,
        "CC-BY-4.0": 595,
        "CC0-1.0": 68,
        "CC-BY-NC-ND-4.0": 37,
        "ALL-RIGHTS-RESERVED": 15,
        "CC-BY-NC-SA-4.0": 3,
        "CC-BY-SA-4.0": 3,
    }
    assert record == {"CC-BY-NC-4.0": 913, "CC-BY-4.0": 412, "CC0-1.0": 75}
    assert species_media == {"CC-BY-NC-ND": 42, "CC-BY": 2}  # "CC BY-NC-ND", "CC BY"
    # GBIF's own "unspecified" is truly unknowable; the rest are legalcode URLs
    assert download == {"UNKNOWN": 69, "CC-BY-NC-4.0": 14, "CC-BY-4.0": 2}


def _archive_column(archive: str, member: str, column: str) -> Counter[str]:
    with zipfile.ZipFile(FIXTURES / "archives" / archive) as zf:
        text = zf.read(member).decode("utf-8")
    rows = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    return Counter(row[column] for row in rows)


def test_archive_licences() -> None:
    mm = _archive_column("rgbif_0000066-140928181241064_DWCA.zip", "multimedia.txt", "license")
    normalised = Counter()
    for value, n in mm.items():
        normalised[normalize_license(value)] += n
    assert normalised == {"UNKNOWN": 208, "ALL-RIGHTS-RESERVED": 7}  # empty; Kew ©; All Rights Reserved

    rights = _archive_column("rgbif_0000066-140928181241064_DWCA.zip", "occurrence.txt", "rights")
    normalised = Counter()
    for value, n in rights.items():
        normalised[normalize_license(value)] += n
    # 326 deed.en_US URLs; empty and two institutions' terms pages are unknowable
    assert normalised == {"CC-BY-4.0": 326, "UNKNOWN": 143, "ALL-RIGHTS-RESERVED": 1}

    finch = _archive_column("finch_0000154-150116162929234_DWCA.zip", "occurrence.txt", "rights")
    normalised = Counter()
    for value, n in finch.items():
        normalised[normalize_license(value)] += n
    assert normalised == {"UNKNOWN": 410, "CC-BY-NC-3.0": 17, "CC0-1.0": 16}

    csv_enum = _archive_column(
        "rgbif_0009886-250127130748423_SIMPLE_CSV.zip", "0009886-250127130748423.csv", "license"
    )
    assert {normalize_license(k) for k in csv_enum} == {"CC-BY-NC-4.0", "CC-BY-4.0"}


# --- vectorised ------------------------------------------------------------------------------------
RAW = [
    "http://creativecommons.org/licenses/by/4.0/",
    None,
    "All rights reserved",
    "http://creativecommons.org/licenses/by/4.0/",
    "",
    "Hanxiouchao (cc-by-sa)",
]
EXPECTED = ["CC-BY-4.0", "UNKNOWN", "ALL-RIGHTS-RESERVED", "CC-BY-4.0", "UNKNOWN", "CC-BY-SA"]


@pytest.mark.parametrize(
    "values",
    [
        pa.array(RAW, pa.string()),
        pa.array(RAW, pa.large_string()),
        pa.chunked_array([RAW[:2], RAW[2:]], pa.string()),
        pa.array(RAW, pa.string()).dictionary_encode(),
        RAW,
        tuple(RAW),
    ],
    ids=["string", "large_string", "chunked", "dictionary", "list", "tuple"],
)
def test_normalize_licenses_matches_scalar(values: object) -> None:
    out = normalize_licenses(values)  # type: ignore[arg-type]
    assert isinstance(out, pa.Array)
    assert out.type == pa.string()
    assert out.to_pylist() == EXPECTED


def test_normalize_licenses_edge_arrays() -> None:
    assert normalize_licenses(pa.array([None, None])).to_pylist() == ["UNKNOWN", "UNKNOWN"]
    assert normalize_licenses(pa.array([], pa.string())).to_pylist() == []
    assert normalize_licenses(pa.chunked_array([], pa.string())).to_pylist() == []
    assert normalize_licenses([]).to_pylist() == []


def test_normalize_licenses_parses_each_distinct_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = lic.normalize_license

    def counting(raw: str | None) -> str:
        calls.append(raw)
        return real(raw)

    monkeypatch.setattr(lic, "normalize_license", counting)
    column = pa.array(RAW * 10_000)
    out = normalize_licenses(column)
    assert len(out) == 60_000
    assert out.to_pylist()[:6] == EXPECTED
    assert len(calls) == 4  # distinct non-null values; nulls never reach the parser
    calls.clear()
    normalize_licenses(RAW * 1000)
    assert len(calls) == 5  # the Python path caches per distinct value too (None included)


# --- ids --------------------------------------------------------------------------------------------
def test_family_url_label() -> None:
    assert license_family("CC-BY-4.0") == "CC-BY"
    assert license_family("CC-BY-NC-SA-3.0") == "CC-BY-NC-SA"
    assert license_family("CC-BY-SA") == "CC-BY-SA"
    assert license_family("CC0-1.0") == "CC0"
    assert license_family("PDM") == "PDM"
    assert license_family("UNKNOWN") == "UNKNOWN"
    assert {license_family(x) for x in KNOWN_LICENSES} == set(LICENSE_FAMILIES)

    assert license_url("CC-BY-NC-ND-4.0") == "https://creativecommons.org/licenses/by-nc-nd/4.0/"
    assert license_url("CC-BY-3.0") == "https://creativecommons.org/licenses/by/3.0/"
    assert license_url("CC0-1.0") == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert license_url("PDM") == "https://creativecommons.org/publicdomain/mark/1.0/"
    for no_url in ("CC-BY-SA", "ALL-RIGHTS-RESERVED", "UNKNOWN"):
        assert license_url(no_url) is None

    assert license_label("CC-BY-NC-4.0") == "CC BY-NC 4.0"
    assert license_label("CC-BY-SA") == "CC BY-SA (version not stated)"
    assert license_label("CC0-1.0") == "CC0 1.0"

    assert gbif_license_enum("CC-BY-4.0") == "CC_BY_4_0"
    assert gbif_license_enum("CC0-1.0") == "CC0_1_0"
    assert gbif_license_enum("CC-BY-SA-4.0") is None
    assert gbif_license_enum("UNKNOWN") is None

    with pytest.raises(ValueError, match="'CC BY 4.0' is not a normalised licence id"):
        license_family("CC BY 4.0")


def test_urls_round_trip() -> None:
    for license_id in KNOWN_LICENSES:
        url = license_url(license_id)
        if url is not None:
            assert normalize_license(url) == license_id


# --- allowlists -------------------------------------------------------------------------------------
def test_allowlist_families_ids_enums_urls() -> None:
    assert parse_license_allowlist(["CC-BY"]) == [
        "CC-BY-4.0",
        "CC-BY-3.0",
        "CC-BY-2.5",
        "CC-BY-2.1",
        "CC-BY-2.0",
        "CC-BY-1.0",
        "CC-BY",
    ]
    assert parse_license_allowlist(["CC-BY-4.0", "cc0", "pdm"]) == ["CC0-1.0", "PDM", "CC-BY-4.0"]
    assert parse_license_allowlist(["CC_BY_NC_4_0"]) == ["CC-BY-NC-4.0"]
    assert parse_license_allowlist(["http://creativecommons.org/licenses/by-sa/3.0/"]) == ["CC-BY-SA-3.0"]
    # an unversioned name means every version
    assert parse_license_allowlist(["cc by-sa"]) == parse_license_allowlist(["CC-BY-SA"])
    assert parse_license_allowlist(["https://creativecommons.org/licenses/by-nd/"])[-1] == "CC-BY-ND"
    assert parse_license_allowlist("CC0") == ["CC0-1.0"]
    # explicit opt-in to the non-licences
    assert parse_license_allowlist(["UNKNOWN", "All rights reserved"]) == ["ALL-RIGHTS-RESERVED", "UNKNOWN"]
    # order and duplicates do not matter
    assert parse_license_allowlist(["CC-BY", "CC0", "CC-BY-4.0"]) == parse_license_allowlist(["CC0", "CC-BY"])


def test_allowlist_errors_name_the_entry() -> None:
    with pytest.raises(ValueError) as info:
        parse_license_allowlist(["CC-BY", "CC-BY-NCC", "Usage Conditions Apply"])
    message = str(info.value)
    assert message.startswith(
        "unknown licence 'CC-BY-NCC' (did you mean 'CC-BY-NC'?); unknown licence 'Usage Conditions Apply'; use a family ("
    )
    for family in LICENSE_FAMILIES:
        assert family in message
    with pytest.raises(ValueError, match="licence entry 3 is not a licence name"):
        parse_license_allowlist([3])
    with pytest.raises(ValueError, match="licence entry '' is not a licence name"):
        parse_license_allowlist([""])
