"""A sandbox query matching more than GBIF's offset cap is paged completely by the client.

GBIF's cap is 100,000 (``offset + limit``); the sandbox and the client take it as a setting, so this
runs at a cap of 20,000 over 26,000 occurrences: the same splitting, a fifth of the pages (it paged
130,000 records twice, 54-81 s of the suite).
"""

from __future__ import annotations

import pytest

from gbifdl_assets.gbif.client import GbifClient
from gbifdl_assets.gbif.errors import GbifBadRequest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAP = 20_000


@pytest.fixture(scope="module")
def big_sandbox():
    from gbifdl_assets.sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(occurrences=26_000, seed=7, max_offset=CAP)) as sandbox:
        yield sandbox


def test_the_sandbox_enforces_the_cap_like_gbif(big_sandbox):
    client = GbifClient(big_sandbox.api_url, max_retries=0, max_offset=CAP)
    with pytest.raises(GbifBadRequest, match=f"Max offset of {CAP} exceeded"):
        client.search_page({}, offset=CAP - 100, limit=300)


def test_query_above_the_cap_is_paged_completely_without_duplicates(big_sandbox):
    client = GbifClient(big_sandbox.api_url, max_offset=CAP)
    params = {"kingdomKey": client.match_name("Animalia").usage_key}
    total = client.count(params)
    assert total > CAP, "the query must exceed the offset cap for this test to mean anything"
    keys = [record["key"] for record in client.iter_occurrences(params, workers=4)]
    assert len(keys) == total
    assert len(set(keys)) == total
    # An independent route to the same records: one plain paged query per dataset (each below the cap).
    expected: set[int] = set()
    for dataset_key, count in client.facet_counts(params, "datasetKey", limit=1000):
        assert count <= CAP
        for offset in range(0, count, 300):
            page = client.search_page({**params, "datasetKey": dataset_key}, offset=offset, limit=300)
            expected.update(r["key"] for r in page["results"])
    assert set(keys) == expected
