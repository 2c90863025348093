"""Which images flags take out: by URL, by the ledgers' content sha256 and phash, WRONG_TAXON scoped,
the spec's policy, and the manifest filter that applies it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from gbifdl_assets.annotations.flag_matching import effective_flags, flagged_images
from gbifdl_assets.annotations.image_flags import FLAGS_TABLE_SCHEMA
from gbifdl_assets.sampling.manifest import ImageExclusions

A, A_COPY, A_SIMILAR, B, C = (f"https://img.example/{n}.jpg" for n in ("a", "a-copy", "a-small", "b", "c"))


def flags(*rows: dict) -> pa.Table:
    base = {"content_sha256": None, "phash": None, "taxon_key": None, "support": 0, "contest": 0,
            "created_by": "alice"}  # fmt: skip
    return pa.Table.from_pylist(
        [{**base, "flag_id": i + 1, **r} for i, r in enumerate(rows)], FLAGS_TABLE_SCHEMA
    )


LEDGER = pa.table(
    {
        "url": [A, A_COPY, A_SIMILAR, B, C],
        "content_sha256": ["s1", "s1", "s2", "s3", "s4"],
        "phash": ["p1", "p9", "p1", "p3", "p4"],
    }
)


def test_a_flag_follows_its_photo_through_the_ledgers_hashes():
    found = flagged_images(flags({"gbifID": 1, "media_identifier": A, "flag": "NOT_ORGANISM"}), LEDGER)
    # A's bytes (s1) also under A_COPY; A's phash (p1) also on A_SIMILAR; B and C untouched
    assert found.everywhere == {A, A_COPY, A_SIMILAR} and found.urls_by_hash == 2


def test_a_flag_with_a_hash_but_an_unknown_url_still_matches_and_without_ledgers_only_its_url():
    table = flags({"gbifID": 9, "media_identifier": "https://elsewhere/x.jpg", "flag": "DUPLICATE",
                   "content_sha256": "s3"})  # fmt: skip
    assert flagged_images(table, LEDGER).everywhere == {"https://elsewhere/x.jpg", B}
    assert flagged_images(table, None).everywhere == {"https://elsewhere/x.jpg"}
    no_phash = LEDGER.drop_columns(["phash"])  # a ledger written before perceptual hashes
    one = flags({"gbifID": 1, "media_identifier": A, "flag": "NOT_ORGANISM"})
    assert flagged_images(one, no_phash).everywhere == {A, A_COPY}


def test_wrong_taxon_is_scoped_to_its_occurrence_and_taxon():
    found = flagged_images(
        flags({"gbifID": 7, "media_identifier": A, "flag": "WRONG_TAXON", "taxon_key": 100}), LEDGER
    )
    assert not found.everywhere and found.scoped[A_COPY] == {(7, 100)}
    ex = ImageExclusions(found.everywhere, found.scoped)
    batch = pa.table(
        {"identifier": [A, A, A_COPY, B], "gbifID": [7, 8, 9, 7], "speciesKey": [5, 100, 200, 5]}
    )
    # gbifID 7 (the flagged occurrence), label 100 (the flagged taxon); not 9/200 nor B
    assert ex.mask(batch, "speciesKey").tolist() == [True, True, False, False]


def test_the_policy_picks_terms_support_and_contests():
    table = flags(
        {"gbifID": 1, "media_identifier": A, "flag": "NOT_ORGANISM", "support": 2},
        {"gbifID": 2, "media_identifier": B, "flag": "POOR_QUALITY", "contest": 1},
    )
    ids = lambda t: t.column("flag_id").to_pylist()  # noqa: E731
    assert ids(effective_flags(table, drop=["NOT_ORGANISM", "POOR_QUALITY"])) == [1, 2]
    assert ids(effective_flags(table, drop=["POOR_QUALITY"])) == [2]
    assert ids(effective_flags(table, drop=["NOT_ORGANISM", "POOR_QUALITY"], min_support=1)) == [1]
    assert ids(effective_flags(table, drop=["NOT_ORGANISM", "POOR_QUALITY"], exclude_contested=True)) == [1]
    assert flagged_images(effective_flags(table, drop=[])).everywhere == frozenset()


def test_exclusions_mask_dictionary_columns_too():
    ex = ImageExclusions(frozenset({B}))
    ident = pa.array([A, B, None, B]).dictionary_encode()
    batch = pa.table({"identifier": ident, "gbifID": [1, 2, 3, 4], "speciesKey": [1, 1, 1, 1]})
    assert np.array_equal(ex.mask(batch, "speciesKey"), [False, True, False, True])
    assert not ImageExclusions().mask(batch, "speciesKey").any()
