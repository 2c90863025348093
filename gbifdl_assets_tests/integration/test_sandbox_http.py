"""The sandbox over real HTTP: envelopes, errors, species endpoints, media server and faults."""

from __future__ import annotations

import io
import time

import pytest
import requests
from PIL import Image

from gbifdl_assets.sandbox import SandboxConfig, start_sandbox
from gbifdl_assets.sandbox.faults import GBIF_429_BODY
from gbifdl_assets.sandbox.media import hidden_fault

pytestmark = pytest.mark.integration

AGLAIS_IO, INACHIS_IO = 4535827, 5881450


@pytest.fixture(scope="module")
def sb():
    cfg = SandboxConfig(occurrences=20_000, seed=42, media_slow_seconds=0.5, media_timeout_seconds=3)
    with start_sandbox(cfg) as running:
        yield running


@pytest.fixture()
def http():
    with requests.Session() as s:
        yield s


@pytest.fixture()
def clean_faults(sb, http):
    yield
    http.delete(sb.url + "/sandbox/faults")


def _image_urls(sb, http, n=20):
    recs = http.get(
        sb.api_url + "/occurrence/search", params={"mediaType": "StillImage", "limit": 300}
    ).json()
    urls = [
        m["identifier"]
        for r in recs["results"]
        for m in r["media"]
        if m.get("format") == "image/jpeg" and "identifier" in m
    ]
    return urls[:n]


# ------------------------------------------------------------------------------ search
def test_search_envelope_and_paging(sb, http):
    r = http.get(sb.api_url + "/occurrence/search", params={"taxonKey": 797, "limit": 500})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["offset", "limit", "endOfRecords", "count", "results", "facets"]
    assert body["limit"] == 300 and len(body["results"]) == 300 and body["endOfRecords"] is False
    keys = [x["key"] for x in body["results"]]
    assert keys == sorted(keys)
    last = body["count"] - 5
    tail = http.get(
        sb.api_url + "/occurrence/search", params={"taxonKey": 797, "offset": last, "limit": 300}
    ).json()
    assert len(tail["results"]) == 5 and tail["endOfRecords"] is True
    page2 = http.get(
        sb.api_url + "/occurrence/search", params={"taxonKey": 797, "offset": 299, "limit": 2}
    ).json()
    assert page2["results"][0]["key"] == keys[-1]  # stable order across pages


def test_offset_cap_and_bad_values_are_plain_text_400s(sb, http):
    r = http.get(sb.api_url + "/occurrence/search", params={"offset": 99_900, "limit": 300})
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "Max offset of 100000 exceeded: 99900 + 300"
    r = http.get(sb.api_url + "/occurrence/search", params={"basisOfRecord": "NOPE"})
    assert r.status_code == 400 and r.text == "Value NOPE invalid for filter parameter BASIS_OF_RECORD"


def test_facets_count_and_single_record(sb, http):
    body = http.get(
        sb.api_url + "/occurrence/search", params={"limit": 0, "facet": "country", "facetLimit": 2}
    ).json()
    assert body["results"] == [] and body["facets"][0]["field"] == "COUNTRY"
    assert len(body["facets"][0]["counts"]) == 2
    n = http.get(sb.api_url + "/occurrence/count", params={"taxonKey": AGLAIS_IO})
    assert (
        n.text.isdigit()
        and int(n.text)
        == http.get(sb.api_url + "/occurrence/search", params={"speciesKey": AGLAIS_IO, "limit": 0}).json()[
            "count"
        ]
    )
    first = http.get(sb.api_url + "/occurrence/search", params={"limit": 1}).json()["results"][0]
    one = http.get(f"{sb.api_url}/occurrence/{first['key']}").json()
    assert one == first
    missing = http.get(f"{sb.api_url}/occurrence/1")
    assert missing.status_code == 404 and missing.json()["status"] == 404


# ------------------------------------------------------------------------------ species
def test_species_endpoints(sb, http):
    usage = http.get(sb.api_url + f"/species/{INACHIS_IO}").json()
    assert usage["taxonomicStatus"] == "SYNONYM" and usage["acceptedKey"] == AGLAIS_IO
    syn = http.get(sb.api_url + f"/species/{AGLAIS_IO}/synonyms").json()
    assert "count" not in syn and [s["key"] for s in syn["results"]] == [INACHIS_IO]
    parents = http.get(sb.api_url + f"/species/{AGLAIS_IO}/parents").json()
    assert [p["rank"] for p in parents] == ["KINGDOM", "PHYLUM", "CLASS", "ORDER", "FAMILY", "GENUS"]
    kids = http.get(sb.api_url + "/species/797/children", params={"limit": 2}).json()
    assert "count" not in kids and len(kids["results"]) == 2 and kids["endOfRecords"] is False
    search = http.get(
        sb.api_url + "/species/search", params={"highertaxonKey": 797, "rank": "SPECIES", "limit": 5000}
    ).json()
    assert search["limit"] == 1000 and search["count"] > 50
    nf = http.get(sb.api_url + "/species/123")
    assert nf.status_code == 404
    assert nf.json()["message"] == "Entity not found for uri: /species/123" and nf.json()["error"] == ""


def test_match_v1_and_v2(sb, http):
    v1 = http.get(sb.api_url + "/species/match", params={"name": "Inachis io", "verbose": "false"}).json()
    assert v1["matchType"] == "EXACT" and v1["acceptedUsageKey"] == AGLAIS_IO
    v2 = http.get(sb.url + "/v2/species/match", params={"scientificName": "Inachis io"}).json()
    assert v2["acceptedUsage"]["key"] == str(AGLAIS_IO)


# ------------------------------------------------------------------------------ 429
def test_api_429_fault_is_switchable(sb, http, clean_faults):
    r = http.post(sb.url + "/sandbox/faults", json={"api_429_every": 2, "retry_after": 3})
    assert r.status_code == 200
    statuses = [http.get(sb.api_url + "/occurrence/search", params={"limit": 0}) for _ in range(4)]
    assert [s.status_code for s in statuses] == [200, 429, 200, 429]
    r429 = statuses[1]
    assert r429.headers["Retry-After"] == "3" and r429.headers["content-type"].startswith("application/json")
    assert r429.json() == GBIF_429_BODY
    # media are never throttled by API faults
    assert http.get(_image_urls(sb, http, 1)[0], params={"fault": "none"}).status_code == 200
    http.delete(sb.url + "/sandbox/faults")
    assert all(http.get(sb.api_url + "/occurrence/count").status_code == 200 for _ in range(3))
    bad = http.post(sb.url + "/sandbox/faults", json={"api_429_everyy": 1})
    assert bad.status_code == 400 and "api_429_everyy" in bad.text


def test_api_503_fault(sb, http, clean_faults):
    http.post(sb.url + "/sandbox/faults", json={"api_503_every": 1})
    r = http.get(sb.api_url + "/species/match", params={"name": "Vanessa atalanta"})
    assert r.status_code == 503 and "Retry-After" in r.headers


# ------------------------------------------------------------------------------ media
def test_media_is_a_deterministic_jpeg_that_depends_on_the_species(sb, http):
    url = _image_urls(sb, http, 1)[0]
    r = http.get(url, params={"fault": "none"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    img.load()
    assert img.size == (320, 240) and img.format == "JPEG"
    assert 4_000 < len(r.content) < 40_000
    assert http.get(url, params={"fault": "none"}).content == r.content
    # two images of one species share the palette more than images of different species
    recs = http.get(
        sb.api_url + "/occurrence/search",
        params={"speciesKey": AGLAIS_IO, "mediaType": "StillImage", "limit": 50},
    ).json()["results"]
    same = [
        m["identifier"]
        for x in recs
        for m in x["media"]
        if m.get("format") == "image/jpeg" and "identifier" in m
    ][:2]
    assert len(same) == 2 and same[0] != same[1]
    a, b = (http.get(u, params={"fault": "none"}).content for u in same)
    assert a != b  # per-image variation


def test_media_faults(sb, http):
    url = _image_urls(sb, http, 1)[0]

    def get(fault, **kw):
        return http.get(url, params={"fault": fault}, **kw)

    assert get("404").status_code == 404
    assert get("500").status_code == 500
    r = get("429")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    html = get("html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    trunc = get("truncated")
    assert trunc.status_code == 200
    with pytest.raises(OSError):
        Image.open(io.BytesIO(trunc.content)).load()
    redirected = get("redirect3")
    assert redirected.status_code == 200 and len(redirected.history) == 3
    Image.open(io.BytesIO(redirected.content)).load()
    assert get("empty").content == b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get("cut")
    t = time.monotonic()
    assert get("slow").status_code == 200 and time.monotonic() - t >= 0.4
    with pytest.raises(requests.exceptions.ReadTimeout):
        get("timeout", timeout=0.5)
    assert http.get(url, params={"fault": "bogus"}).status_code == 400
    assert (
        http.get(url.replace(".jpg", ".png"), params={"fault": "none"}).headers["content-type"] == "image/png"
    )


def test_flaky_media_fails_once_then_succeeds(sb, http):
    url = _image_urls(sb, http, 5)[4]
    first = http.get(url, params={"fault": "flaky"})
    second = http.get(url, params={"fault": "flaky"})
    assert first.status_code == 503 and second.status_code == 200


def test_a_small_deterministic_share_of_media_urls_misbehave(sb, http):
    world = sb.state.world
    occ = world.occ
    rows = [i for i in range(len(occ)) if occ.media[i] & 3]
    faults = [hidden_fault(world, 0.02, int(occ.key[i]), 0) for i in rows]
    share = sum(f is not None for f in faults) / len(rows)
    assert 0.01 < share < 0.03
    row = rows[next(i for i, f in enumerate(faults) if f == "404")]
    url = f"{sb.url}/media/{int(occ.key[row])}/0.jpg"
    assert http.get(url).status_code == 404  # no ?fault= needed: the URL itself is bad
    assert http.get(url, params={"fault": "none"}).status_code == 200


def test_unknown_media_is_404(sb, http):
    assert http.get(sb.url + "/media/1/0.jpg").status_code == 404


def test_faults_reset_makes_flaky_media_fail_once_more(sb, http):
    """Two measured runs over the same images meet the same faults: the reset endpoint makes every
    ``flaky`` URL answer 503 once again (then the image)."""
    url = _image_urls(sb, http, n=1)[0].split("?", 1)[0] + "?fault=flaky"
    assert [http.get(url).status_code for _ in range(2)] == [503, 200]
    http.post(sb.url + "/sandbox/faults/reset").raise_for_status()
    assert [http.get(url).status_code for _ in range(2)] == [503, 200]
