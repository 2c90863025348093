"""The sandbox's duplicate photos and their ground truth (sandbox/duplicates.py)."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from gbifdl_assets.sandbox import get_world
from gbifdl_assets.sandbox.duplicates import duplicate_groups
from gbifdl_assets.sandbox.media import media_body
from gbifdl_assets.sandbox.records import media_format


def _body(world, key: int, rate: float = 0.03) -> bytes:
    row = world.occ.index_of(key)
    ext = media_format(world, key, 0, 0)[1]
    return media_body(world, row, 0, ext, size=(320, 240), quality=80, duplicate_rate=rate)[0]


def test_ground_truth_is_deterministic_and_matches_what_is_served() -> None:
    world = get_world(7, 3_000, 300)
    groups = duplicate_groups(world)
    assert groups == duplicate_groups(get_world(7, 3_000, 300)) and len(groups) >= 20
    kinds = {c["kind"] for g in groups for c in g["copies"]}
    assert kinds == {"identical", "resized"}
    copies = {c["gbifID"] for g in groups for c in g["copies"]}
    originals = {g["original"]["gbifID"] for g in groups}
    assert not copies & originals  # a copy's source is never itself a copy
    taxon = world.occ.taxon
    for group in groups[:15]:
        original = _body(world, group["original"]["gbifID"])
        source_taxon = taxon[world.occ.index_of(group["original"]["gbifID"])]
        for copy in group["copies"]:
            body = _body(world, copy["gbifID"])
            assert taxon[world.occ.index_of(copy["gbifID"])] == source_taxon
            if copy["kind"] == "identical":
                assert hashlib.sha256(body).digest() == hashlib.sha256(original).digest()
            else:
                small, big = Image.open(io.BytesIO(body)), Image.open(io.BytesIO(original))
                assert body != original and small.width < big.width and small.format == "JPEG"


def test_rate_zero_serves_every_record_its_own_image() -> None:
    world = get_world(7, 3_000, 300)
    group = duplicate_groups(world)[0]
    copy = group["copies"][0]["gbifID"]
    assert duplicate_groups(world, 0.0) == []
    assert _body(world, copy, rate=0.0) != _body(world, group["original"]["gbifID"], rate=0.0)
