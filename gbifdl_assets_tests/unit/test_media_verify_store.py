"""Checking ledgers against the store: one listing per variant prefix (never one HEAD per object), and
what verify_store reports (missing, damaged, orphans, unreadable ledgers)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter

import pytest

from gbifdl_assets.media.ledger import LedgerWriter, UnknownLedgerError, verify_store
from gbifdl_assets.media.store import ImageStore, listing_prefix
from gbifdl_assets.storage import LocalStorage


def ck(i: int) -> str:
    return hashlib.sha256(f"http://example.org/{i}.jpg".encode()).hexdigest()


class CountingStorage(LocalStorage):
    """A local storage that counts listings and per-object probes."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.calls: Counter[str] = Counter()
        self.prefixes: list[str] = []

    def list(self, prefix: str = ""):
        self.calls["list"] += 1
        self.prefixes.append(prefix)
        return super().list(prefix)

    def exists(self, key: str) -> bool:
        self.calls["exists"] += 1
        return super().exists(key)

    def size(self, key: str) -> int:
        self.calls["size"] += 1
        return super().size(key)


def put_images(storage, ledger: str, ids: range, variant: str = "jpeg-512-q90") -> dict[int, str]:
    """Objects plus ok entries for them; returns id -> key."""
    store = ImageStore(storage)
    writer = LedgerWriter(store, ledger)
    keys = {}
    now = int(time.time() * 1000)
    for i in ids:
        data = f"image {i}".encode()
        key = ImageStore.image_key(ck(i), variant, "jpg")
        storage.write_bytes(key, data)
        keys[i] = key
        writer.add(
            {
                "content_key": ck(i),
                "url": f"http://example.org/{i}.jpg",
                "status": "ok",
                "stored": True,
                "key": key,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "started_at": now,
                "finished_at": now,
            }
        )
    writer.flush()
    return keys


def test_listing_prefix() -> None:
    key = ImageStore.image_key(ck(1), "jpeg-512-q90", "jpg")
    assert listing_prefix(key) == "images/jpeg-512-q90/"
    assert listing_prefix("elsewhere/x.jpg") == "elsewhere/x.jpg"


def test_missing_keys_lists_each_variant_once_and_never_probes_objects(tmp_path) -> None:
    storage = CountingStorage(tmp_path)
    a = put_images(storage, "a", range(300))
    b = put_images(storage, "b", range(300, 320), variant="png-128")
    for i in (3, 150, 299, 310):
        storage.delete((a | b)[i])
    storage.calls.clear()
    storage.prefixes.clear()
    missing = ImageStore(storage).missing_keys([*a.values(), *b.values(), "images/webp-64/00/none.webp"])
    assert missing == {a[3], a[150], a[299], b[310], "images/webp-64/00/none.webp"}
    assert storage.calls == {"list": 3}  # one listing per variant prefix, no HEAD/stat per key
    assert sorted(storage.prefixes) == ["images/jpeg-512-q90/", "images/png-128/", "images/webp-64/"]
    assert ImageStore(storage).missing_keys([]) == set()


def test_verify_store_reports_every_kind_of_problem(tmp_path) -> None:
    storage = LocalStorage(tmp_path)
    a = put_images(storage, "set-a", range(20))
    b = put_images(storage, "set-b", range(10, 30))  # shares 10..19 with set-a
    clean = verify_store(storage, deep=True)
    assert clean.consistent and clean.ledgers == ["set-a", "set-b"]
    assert (clean.entries, clean.objects) == (40, 30)
    assert clean.missing == clean.mismatched == clean.orphans == []

    storage.delete(a[2])
    storage.delete(b[15])  # named by both ledgers
    storage.write_bytes(b[25], b"damaged")
    orphan = ImageStore.image_key(ck(999), "jpeg-512-q90", "jpg")
    storage.write_bytes(orphan, b"stored by a killed run")
    storage.write_bytes("ledgers/broken/seg-000000000000-abc.parquet", b"not parquet")

    shallow = verify_store(storage)
    assert not shallow.consistent
    assert sorted((m["ledger"], m["key"]) for m in shallow.missing) == sorted(
        [("set-a", a[2]), ("set-a", a[15]), ("set-b", b[15])]
    )
    assert shallow.mismatched == [] and shallow.orphans == [orphan]
    assert [u["ledger"] for u in shallow.unreadable] == ["broken"]

    deep = verify_store(storage, ledger="set-b", deep=True, threads=4)
    assert deep.ledgers == ["set-b"] and deep.entries == 20 and deep.unreadable == []
    assert [m["key"] for m in deep.missing] == [b[15]]
    assert [(m["key"], m["actual_bytes"], m["expected_bytes"]) for m in deep.mismatched] == [
        (b[25], 7, len(b"image 25"))
    ]
    assert deep.orphans == [orphan]  # judged against every ledger, so set-a's images are not orphans

    only_orphans = LocalStorage(tmp_path / "other")
    put_images(only_orphans, "x", range(3))
    only_orphans.write_bytes(ImageStore.image_key(ck(77), "jpeg-512-q90", "jpg"), b"left by kill -9")
    report = verify_store(only_orphans)
    assert report.consistent and len(report.orphans) == 1  # legitimate after an interrupted run

    with pytest.raises(UnknownLedgerError, match="no ledger 'nope'.*set-a, set-b"):
        verify_store(storage, ledger="nope")
