"""The sandbox held against real GBIF: recorded answers and real archives in ../shared/fixtures/gbif.

The sandbox stands in for GBIF in every other test, so where it drifts into our own picture of GBIF
the tests stop meaning anything (issue 16: real DWCA downloads have no publishingOrgKey, and nothing
noticed). Compared here, shape by shape:

* search pages: the envelope's keys in order; every record key and media key the sandbox sends is
  one GBIF sends, with a JSON type GBIF uses for it; the keys GBIF sends in every recorded record
  are in every sandbox record, except those GBIF omits when it cannot interpret them (gbif-api.md
  §3.2: dates, coordinates, taxonomy);
* species matches, v1 and v2, per matchType: the keys present in every recording are present, no
  key is sent that no recording has, types agree;
* download status objects per status (PREPARING, RUNNING, SUCCEEDED) and their ``request``;
* the DWCA: zip entries, meta.xml file layout (rowTypes, files, attributes, extension order) and
  term sets against the real archives' meta.xml plus GBIF's current ``describe/dwca`` lists;
* registry objects: the fields real-world.md names, typed; the keys of GBIF's answers as recorded by
  gbif/pygbif (listed below: all that any answer had, and those every answer had); a missing key
  answers GBIF's 404 JSON.

Where the fixture and the sandbox disagreed, the sandbox was fixed (see the commit history of
``gbifdl_assets/sandbox``); the few intended differences are named constants below, each with why.
"""

from __future__ import annotations

import io
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import requests

from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.sandbox.dwca_text import meta_xml
from gbifdl_assets_tests.unit.cassettes import RGBIF, cassette_files, is_search_page, load_cassette

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "gbif"
REAL_DWCAS = ("rgbif_0000066-140928181241064_DWCA.zip", "finch_0000154-150116162929234_DWCA.zip")
DWC_TEXT = "{http://rs.tdwg.org/dwc/text/}"
GBIF_TERMS = "http://rs.gbif.org/terms/1.0/"

#: Occurrence fields GBIF leaves out when it cannot interpret them (gbif-api.md §3.2); the sandbox
#: generates such records on purpose, so "always present in the recordings" does not apply to them.
OMITTED_WHEN_UNINTERPRETABLE = frozenset(
    {
        *(f"{r}Key" for r in ("kingdom", "phylum", "class", "order", "family", "genus", "species")),
        *("kingdom", "phylum", "class", "order", "family", "genus", "species"),
        "taxonKey",
        "acceptedTaxonKey",
        "scientificName",
        "acceptedScientificName",
        "eventDate",
        "year",
        "month",
        "day",
        "startDayOfYear",
        "endDayOfYear",
        "decimalLatitude",
        "decimalLongitude",
        "coordinateUncertaintyInMeters",
        "countryCode",
        "country",
        "occurrenceID",
    }
)
#: Keys of GBIF's Occurrence object that no recorded record happens to carry: every recorded record
#: is at species or genus rank, none is a subspecies.
RECORD_KEYS_NOT_IN_RECORDINGS = frozenset({"infraspecificEpithet"})
#: The one column real downloads lack that the sandbox writes when asked (SandboxConfig.real_dwca_columns=False).
SANDBOX_ONLY_TERMS = frozenset({GBIF_TERMS + "publishingOrgKey"})

#: Key sets of GBIF's registry objects, from the answers recorded by gbif/pygbif @ 207bd3c
#: (test/vcr_cassettes/test_datasets*.yaml: 204 datasets; test_organizations.yaml: 100 organizations;
#: 2024-10-04; ``GET /dataset/{key}`` answers the same object as the listing). The recordings are not
#: in ../shared/fixtures; their key sets are: every key any object had (the sandbox may send no other),
#: and the keys every object had (the sandbox must send them).
GBIF_DATASET_KEYS = frozenset(
    {
        "additionalInfo",
        "bibliographicCitations",
        "citation",
        "collections",
        "comments",
        "contacts",
        "contactsCitation",
        "countryCoverage",
        "created",
        "createdBy",
        "curatorialUnits",
        "dataDescriptions",
        "dataLanguage",
        "description",
        "doi",
        "endpoints",
        "external",
        "geographicCoverages",
        "homepage",
        "identifiers",
        "installationKey",
        "key",
        "keywordCollections",
        "language",
        "license",
        "lockedForAutoUpdate",
        "logoUrl",
        "machineTags",
        "maintenanceChangeHistory",
        "maintenanceDescription",
        "maintenanceUpdateFrequency",
        "modified",
        "modifiedBy",
        "networkKeys",
        "numConstituents",
        "project",
        "pubDate",
        "publishingOrganizationKey",
        "purpose",
        "samplingDescription",
        "subtype",
        "tags",
        "taxonomicCoverages",
        "temporalCoverages",
        "title",
        "type",
        "version",
    }
)
GBIF_DATASET_KEYS_ALWAYS = frozenset(
    {
        "bibliographicCitations",
        "citation",
        "collections",
        "comments",
        "contacts",
        "contactsCitation",
        "countryCoverage",
        "created",
        "createdBy",
        "curatorialUnits",
        "dataDescriptions",
        "doi",
        "endpoints",
        "external",
        "geographicCoverages",
        "identifiers",
        "installationKey",
        "key",
        "keywordCollections",
        "language",
        "license",
        "lockedForAutoUpdate",
        "machineTags",
        "maintenanceChangeHistory",
        "modified",
        "modifiedBy",
        "numConstituents",
        "publishingOrganizationKey",
        "tags",
        "taxonomicCoverages",
        "temporalCoverages",
        "title",
        "type",
    }
)
GBIF_ORGANIZATION_KEYS = frozenset(
    {
        "abbreviation",
        "address",
        "city",
        "comments",
        "contacts",
        "country",
        "created",
        "createdBy",
        "description",
        "email",
        "endorsed",
        "endorsementApproved",
        "endorsementStatus",
        "endorsingNodeKey",
        "endpoints",
        "homepage",
        "identifiers",
        "key",
        "language",
        "latitude",
        "logoUrl",
        "longitude",
        "machineTags",
        "modified",
        "modifiedBy",
        "numPublishedDatasets",
        "phone",
        "postalCode",
        "province",
        "tags",
        "title",
    }
)
GBIF_ORGANIZATION_KEYS_ALWAYS = frozenset(
    {
        "address",
        "comments",
        "contacts",
        "country",
        "created",
        "createdBy",
        "email",
        "endorsementApproved",
        "endorsementStatus",
        "endorsingNodeKey",
        "endpoints",
        "homepage",
        "identifiers",
        "key",
        "language",
        "machineTags",
        "modified",
        "modifiedBy",
        "numPublishedDatasets",
        "phone",
        "tags",
        "title",
    }
)
#: The fields the registry lookup reads (reference real-world.md), all strings.
DATASET_FIELDS_USED = ("key", "title", "publishingOrganizationKey", "doi", "license", "type")
ORGANIZATION_FIELDS_USED = ("key", "title", "country")


def jtype(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


class Shapes:
    """Key presence and value types over many JSON objects of one kind."""

    def __init__(self) -> None:
        self.n = 0
        self.present: dict[str, int] = defaultdict(int)
        self.types: dict[str, set[str]] = defaultdict(set)

    def add(self, obj: dict) -> Shapes:
        self.n += 1
        for k, v in obj.items():
            self.present[k] += 1
            self.types[k].add(jtype(v))
        return self

    @property
    def always(self) -> set[str]:
        return {k for k, c in self.present.items() if c == self.n}

    def mismatches(self, other: Shapes) -> dict[str, tuple[set[str], set[str]]]:
        """Keys of ``other`` whose types are not among ours (an int where GBIF sends a float ...)."""
        return {
            k: (other.types[k], self.types[k])
            for k in other.types
            if k in self.types and not other.types[k] <= self.types[k]
        }


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sb():
    # 3 s in PREPARING: the status test must see it even when a loaded machine answers the first
    # poll late (CI once missed a 1-s window).
    cfg = SandboxConfig(occurrences=20_000, seed=42, download_seconds=(3.0, 1.0))
    with start_sandbox(cfg) as running:
        yield running


@pytest.fixture(scope="module")
def recorded() -> list:
    if not FIXTURES.is_dir():
        pytest.skip(f"GBIF fixtures not found at {FIXTURES}")
    return [i for f in cassette_files() for i in load_cassette(f)]


def get(sb, path: str, **params) -> Any:
    r = requests.get(sb.url + path, params=params)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r.json()


# ------------------------------------------------------------------------------------ search
def test_search_pages_have_gbifs_keys_and_types(sb, recorded):
    real_pages = [i.json() for i in recorded if is_search_page(i)]
    assert len(real_pages) > 10
    real_records, real_media = Shapes(), Shapes()
    for page in real_pages:
        for rec in page["results"]:
            real_records.add(rec)
            for m in rec.get("media", []):
                real_media.add(m)
    envelopes = {tuple(p) for p in real_pages}

    ours, our_media = Shapes(), Shapes()
    for params in ({"limit": 300}, {"limit": 300, "offset": 9000}, {"limit": 300, "mediaType": "StillImage"}):
        page = get(sb, "/v1/occurrence/search", **params)
        assert tuple(page) in envelopes
        for rec in page["results"]:
            ours.add(rec)
            for m in rec["media"]:
                our_media.add(m)

    invented = set(ours.present) - set(real_records.present) - RECORD_KEYS_NOT_IN_RECORDINGS
    assert not invented, f"the sandbox sends record keys GBIF never sent: {sorted(invented)}"
    required = real_records.always - OMITTED_WHEN_UNINTERPRETABLE
    assert required <= ours.always, f"missing in sandbox records: {sorted(required - ours.always)}"
    assert not real_records.mismatches(ours)
    assert set(our_media.present) <= set(real_media.present)
    assert not real_media.mismatches(our_media)


# ------------------------------------------------------------------------------ species match
def _match_kind(path: str, body: dict) -> tuple[str, str]:
    version = "v2" if "/v2/" in path else "v1"
    return version, str(body.get("matchType") or (body.get("diagnostics") or {}).get("matchType"))


SANDBOX_MATCHES = (
    ("/v1/species/match", {"name": "Helianthus annuus"}),
    ("/v1/species/match", {"name": "Calopteryx fakeus"}),
    ("/v2/species/match", {"scientificName": "Helianthus annuus", "taxonRank": "species"}),
    ("/v2/species/match", {"scientificName": "Calopteryx fakeus"}),
    ("/v2/species/match", {"scientificName": "Helianthus fakeus"}),
)


def test_species_matches_have_gbifs_keys_and_types(sb, recorded):
    real: dict[tuple, Shapes] = defaultdict(Shapes)
    for i in recorded:
        if i.path.endswith("/species/match") and i.status == 200:
            body = i.json()
            kind = _match_kind(i.path, body)
            real[kind].add(body)
            for part in ("usage", "diagnostics"):
                if isinstance(body.get(part), dict):
                    real[(*kind, part)].add(body[part])
    checked = set()
    for path, params in SANDBOX_MATCHES:
        body = get(sb, path, **params)
        kind = _match_kind(path, body)
        assert kind in real, f"no recording of a {kind} match to compare with"
        parts = [(kind, body)] + [((*kind, p), body[p]) for p in ("usage", "diagnostics") if p in body]
        for name, obj in parts:
            ours = Shapes().add(obj)
            assert real[name].always <= set(obj), (name, sorted(real[name].always - set(obj)))
            assert set(obj) <= set(real[name].present), (name, sorted(set(obj) - set(real[name].present)))
            assert not real[name].mismatches(ours), name
        checked.add(kind)
    assert checked == {("v1", "EXACT"), ("v1", "NONE"), ("v2", "EXACT"), ("v2", "NONE"), ("v2", "HIGHERRANK")}


# ------------------------------------------------------------------------------ download status
def _recorded_statuses(recorded) -> dict[str, Shapes]:
    out: dict[str, Shapes] = defaultdict(Shapes)
    for i in recorded:
        path = i.path
        if i.method != "GET" or i.status != 200 or "/occurrence/download/" not in path:
            continue
        if any(part in path for part in ("/request", "/describe", "/user/", "/citation", "/datasets")):
            continue
        body = i.json()
        if isinstance(body, dict) and "status" in body:
            out[body["status"]].add(body)
            out["request"].add(body["request"])
    return out


def test_download_status_objects_have_gbifs_keys_and_types(sb, recorded):
    real = _recorded_statuses(recorded)
    r = requests.post(
        sb.api_url + "/occurrence/download/request",
        json={
            "creator": "sandbox",
            "format": "DWCA",
            "predicate": {"type": "equals", "key": "TAXON_KEY", "value": "797"},
        },
        auth=("sandbox", "sandbox"),
    )
    assert r.status_code == 201
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + 30
    while "SUCCEEDED" not in seen and time.monotonic() < deadline:
        body = get(sb, f"/v1/occurrence/download/{r.text}")
        seen.setdefault(body["status"], body)
        time.sleep(0.05)
    assert set(seen) == {"PREPARING", "RUNNING", "SUCCEEDED"}
    for status, body in seen.items():
        shapes = real[status]
        assert shapes.n, f"no recorded {status} status"
        assert shapes.always <= set(body), (status, sorted(shapes.always - set(body)))
        assert set(body) <= set(shapes.present), (status, sorted(set(body) - set(shapes.present)))
        assert not shapes.mismatches(Shapes().add(body)), status
        request = body["request"]
        assert real["request"].always <= set(request) <= set(real["request"].present)


# ---------------------------------------------------------------------------------------- DWCA
def _meta_files(meta: bytes) -> list[dict]:
    root = ET.fromstring(meta)
    out = []
    for elem in root:
        out.append(
            {
                "tag": elem.tag.replace(DWC_TEXT, ""),
                "rowType": elem.get("rowType"),
                "location": elem.find(f"{DWC_TEXT}files/{DWC_TEXT}location").text,
                "attrs": {k: v for k, v in elem.attrib.items() if k != "rowType"},
                "id": [c.tag.replace(DWC_TEXT, "") + c.get("index") for c in elem if c.tag.endswith("id")],
                "terms": [f.get("term") for f in elem.findall(f"{DWC_TEXT}field")],
            }
        )
    return out


@pytest.fixture(scope="module")
def real_archives() -> list[zipfile.ZipFile]:
    paths = [FIXTURES / "archives" / name for name in REAL_DWCAS]
    if not all(p.is_file() for p in paths):
        pytest.skip("real DWCA fixtures not found")
    return [zipfile.ZipFile(p) for p in paths]


@pytest.fixture(scope="module")
def describe() -> dict:
    interaction = next(
        i for i in load_cassette(RGBIF / "occ_download_describe.yml") if i.path.endswith("/dwca")
    )
    return interaction.json()


@pytest.fixture(scope="module")
def sandbox_archive(sb) -> zipfile.ZipFile:
    pred = {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"}
    r = requests.post(
        sb.api_url + "/occurrence/download/request",
        json={"creator": "sandbox", "format": "DWCA", "predicate": pred},
        auth=("sandbox", "sandbox"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = get(sb, f"/v1/occurrence/download/{r.text}")
        if status["status"] == "SUCCEEDED":
            return zipfile.ZipFile(io.BytesIO(requests.get(status["downloadLink"]).content))
        time.sleep(0.05)
    raise AssertionError("sandbox download did not succeed")


def _entry_kinds(zf: zipfile.ZipFile) -> set[str]:
    return {re.sub(r"^dataset/[0-9a-f-]{36}\.xml$", "dataset/<key>.xml", n) for n in zf.namelist()}


def test_dwca_entries_and_file_layout_match_real_downloads(sandbox_archive, real_archives):
    kinds = {
        "occurrence.txt",
        "verbatim.txt",
        "multimedia.txt",
        "meta.xml",
        "metadata.xml",
        "citations.txt",
        "rights.txt",
        "dataset/<key>.xml",
    }
    for real in real_archives:
        assert _entry_kinds(real) == kinds
    assert _entry_kinds(sandbox_archive) == kinds

    def layout(files):
        """The core first, then the extensions in any order (the two real archives differ in it)."""
        rows = [
            (f["tag"], f["rowType"], f["location"], f["id"], tuple(sorted(f["attrs"].items()))) for f in files
        ]
        return rows[0], sorted(rows[1:])

    real_layouts = [layout(_meta_files(z.read("meta.xml"))) for z in real_archives]
    assert real_layouts[0] == real_layouts[1]
    assert layout(_meta_files(sandbox_archive.read("meta.xml"))) == real_layouts[0]
    assert ET.fromstring(sandbox_archive.read("meta.xml")).get("metadata") == "metadata.xml"
    for name in ("metadata.xml", "citations.txt", "rights.txt"):
        assert sandbox_archive.read(name).strip()
    eml = ET.fromstring(sandbox_archive.read("metadata.xml"))
    assert eml.tag == ET.fromstring(real_archives[0].read("metadata.xml")).tag
    assert eml.get("packageId").startswith("10.15468/dl.")  # the DOI (real 2014 archives predate DOIs)


@pytest.mark.parametrize("real_columns", [False, True])
def test_dwca_term_sets_are_gbifs(sandbox_archive, real_archives, describe, real_columns):
    real_files = [_meta_files(z.read("meta.xml")) for z in real_archives]
    current = {
        part: [f["term"] for f in describe[part]["fields"]]
        for part in ("interpreted", "verbatim", "multimedia")
    }
    known = {
        "core": set(current["interpreted"]).union(*(f[0]["terms"] for f in real_files)),
        "verbatim": set(current["verbatim"]).union(
            *(e["terms"] for f in real_files for e in f[1:] if e["location"] == "verbatim.txt")
        ),
    }
    files = _meta_files(meta_xml(real_columns).encode())
    if real_columns == SandboxConfig().real_dwca_columns:  # the default: what is served is what is checked
        assert files == _meta_files(sandbox_archive.read("meta.xml"))
    by_location = {f["location"]: f["terms"] for f in files}
    core, verbatim, multimedia = (
        by_location[n] for n in ("occurrence.txt", "verbatim.txt", "multimedia.txt")
    )

    extra = set(core) - known["core"]
    assert extra == (set() if real_columns else SANDBOX_ONLY_TERMS)
    assert set(verbatim) <= known["verbatim"]
    assert multimedia == current["multimedia"]  # all fifteen, in GBIF's current order
    for ours, order in ((core, current["interpreted"]), (verbatim, current["verbatim"])):
        positions = [order.index(t) for t in ours if t in order]
        assert positions == sorted(positions), "columns are not in GBIF's order"
        assert ours[0] == GBIF_TERMS + "gbifID"
    # what a snapshot needs is there; what GBIF does not write is not
    assert {GBIF_TERMS + "datasetKey", GBIF_TERMS + "publishingCountry"} <= set(core)
    assert (GBIF_TERMS + "publishingOrgKey" in core) is not real_columns


# ------------------------------------------------------------------------------------ registry
def test_registry_objects_have_gbifs_shape(sb, recorded):
    record = get(sb, "/v1/occurrence/search", limit=1)["results"][0]
    dataset = get(sb, f"/v1/dataset/{record['datasetKey']}")
    organization = get(sb, f"/v1/organization/{dataset['publishingOrganizationKey']}")
    for obj, used, allowed, always in (
        (dataset, DATASET_FIELDS_USED, GBIF_DATASET_KEYS, GBIF_DATASET_KEYS_ALWAYS),
        (organization, ORGANIZATION_FIELDS_USED, GBIF_ORGANIZATION_KEYS, GBIF_ORGANIZATION_KEYS_ALWAYS),
    ):
        assert all(isinstance(obj.get(f), str) and obj[f] for f in used), obj
        assert set(obj) <= allowed, sorted(set(obj) - allowed)
        assert always <= set(obj), sorted(always - set(obj))
    assert dataset["type"] == "OCCURRENCE" and re.fullmatch(r"10\.15468/[0-9a-z]{6}", dataset["doi"])
    assert re.fullmatch(r"[A-Z]{2}", organization["country"])
    assert isinstance(dataset["citation"], dict) and isinstance(dataset["citation"]["text"], str)
    assert isinstance(organization["numPublishedDatasets"], int)

    # a missing key: GBIF's 404 JSON, the shape recorded for the species API
    real_404 = next(
        i
        for i in recorded
        if i.status == 404 and i.headers.get("content-type", "").startswith("application/json")
    )
    r = requests.get(f"{sb.api_url}/dataset/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404
    assert Shapes().add(r.json()).types == Shapes().add(real_404.json()).types
