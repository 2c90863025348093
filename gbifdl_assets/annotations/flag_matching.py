"""Which images the flags take out: a flag's photo by its URL, its content sha256 and perceptual hash.

A flag names one media item (gbifID + URL) and, when known, the photo's content. The ledgers of the
image store tell the rest: the ``content_sha256`` (and, where the ledger has one, the ``phash``) of
the flagged URL as it was downloaded, and every other URL whose bytes had that hash. So a flag
follows the same photo under another URL or on another occurrence, in this training set and in
others of the same store, and survives a refresh that changes gbifIDs or URLs of copies.

What a match drops:

* NOT_ORGANISM, POOR_QUALITY, DUPLICATE: the photo itself is unfit, so every URL of it goes,
  on every occurrence;
* WRONG_TAXON: the photo shows another taxon than the one it was filed under, which says nothing
  about the same photo filed under its right taxon (a multi-species photo hangs on several
  occurrences): its URLs go on the flagged occurrence, and under the flag's ``taxonKey`` (the class
  the gallery showed it in) wherever that class is the label.

Perceptual hashes match exactly here (equal hex); near duplicates within a Hamming distance are
the duplicate clusters' business, which put all copies in one split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from gbifdl_assets.annotations.image_flags import FLAGS_TABLE_SCHEMA

__all__ = ["FlaggedImages", "effective_flags", "flagged_images"]

#: the term whose match is limited to the flagged occurrence and taxon (module docstring)
SCOPED_FLAG = "WRONG_TAXON"


@dataclass(frozen=True)
class FlaggedImages:
    """URLs to leave out everywhere, and URLs to leave out on some occurrences or under some labels."""

    everywhere: frozenset[str] = frozenset()
    #: url -> (gbifID, label or None) pairs: a row with that URL goes when its gbifID or label matches
    scoped: dict[str, frozenset[tuple[int, int | None]]] = field(default_factory=dict)
    flags: int = 0  # the flags that counted under the policy
    by_flag: dict[str, int] = field(default_factory=dict)
    urls_by_hash: int = 0  # URLs found through a content or perceptual hash (not the flag's own URL)

    def __bool__(self) -> bool:
        return bool(self.everywhere or self.scoped)


def effective_flags(
    flags: pa.Table, *, drop: Iterable[str], min_support: int = 0, exclude_contested: bool = False
) -> pa.Table:
    """The flags that count under a policy: their term is in ``drop``, enough support, no contest."""
    flags = flags.cast(FLAGS_TABLE_SCHEMA)
    mask = pc.and_(
        pc.is_in(flags.column("flag"), pa.array(list(drop), pa.string())),
        pc.greater_equal(flags.column("support"), min_support),
    )
    if exclude_contested:
        mask = pc.and_(mask, pc.equal(flags.column("contest"), 0))
    return flags.filter(mask)


def _values(table: pa.Table, column: str) -> list:
    return table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows


def flagged_images(flags: pa.Table, ledger: pa.Table | None = None) -> FlaggedImages:
    """What ``flags`` (already :func:`effective_flags`) take out, with the ledgers' hashes.

    ``ledger``: ``url`` and ``content_sha256`` columns (and ``phash`` when the ledgers have it) of
    every ledger of the image store; None or empty when nothing was downloaded yet.
    """
    if flags.num_rows == 0:
        return FlaggedImages()
    rows = flags.to_pylist()
    flagged_urls = pa.array(sorted({r["media_identifier"] for r in rows}), pa.string())
    by_url: dict[str, tuple[set[str], set[str]]] = {}
    usable = ledger is not None and ledger.num_rows > 0 and "url" in ledger.column_names
    if usable:
        assert ledger is not None
        own = ledger.filter(pc.fill_null(pc.is_in(ledger.column("url"), flagged_urls), False))
        for url, sha, ph in zip(
            own.column("url").to_pylist(), _values(own, "content_sha256"), _values(own, "phash"), strict=True
        ):
            shas, phs = by_url.setdefault(url, (set(), set()))
            if sha:
                shas.add(sha)
            if ph:
                phs.add(ph)
    # each flag's hashes: its own and those its URL had when downloaded
    flag_hashes: list[tuple[set[str], set[str]]] = []
    for r in rows:
        shas, phs = (set(x) for x in by_url.get(r["media_identifier"], (set(), set())))
        if r["content_sha256"]:
            shas.add(r["content_sha256"])
        if r["phash"]:
            phs.add(r["phash"])
        flag_hashes.append((shas, phs))
    # every URL whose bytes had one of those hashes
    urls_of_sha: dict[str, set[str]] = {}
    urls_of_phash: dict[str, set[str]] = {}
    if usable:
        assert ledger is not None
        for column, index, which in (("content_sha256", urls_of_sha, 0), ("phash", urls_of_phash, 1)):
            wanted = sorted({h for hashes in flag_hashes for h in hashes[which]})
            if not wanted or column not in ledger.column_names:
                continue
            hits = ledger.filter(pc.fill_null(pc.is_in(ledger.column(column), pa.array(wanted)), False))
            for url, value in zip(
                hits.column("url").to_pylist(), hits.column(column).to_pylist(), strict=True
            ):
                if url:
                    index.setdefault(value, set()).add(url)
    everywhere: set[str] = set()
    scoped: dict[str, set[tuple[int, int | None]]] = {}
    by_hash: set[str] = set()
    for r, (shas, phs) in zip(rows, flag_hashes, strict=True):
        urls = {r["media_identifier"]}
        for sha in shas:
            urls |= urls_of_sha.get(sha, set())
        for ph in phs:
            urls |= urls_of_phash.get(ph, set())
        by_hash |= urls - {r["media_identifier"]}
        if r["flag"] == SCOPED_FLAG:
            for url in urls:
                scoped.setdefault(url, set()).add((int(r["gbifID"]), r["taxon_key"]))
        else:
            everywhere |= urls
    return FlaggedImages(
        everywhere=frozenset(everywhere),
        scoped={u: frozenset(v) for u, v in scoped.items() if u not in everywhere},
        flags=len(rows),
        by_flag=dict(Counter(r["flag"] for r in rows)),
        urls_by_hash=len(by_hash),
    )
