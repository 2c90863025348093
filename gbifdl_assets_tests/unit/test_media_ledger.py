"""Ledger: segments, latest-wins loading, crash-safe compaction, summaries, completeness, attribution."""

from __future__ import annotations

import hashlib
import time

import pyarrow as pa
import pytest

from gbifdl_assets.media.ledger import (
    LEDGER_SCHEMA,
    LedgerWriter,
    attribution_table,
    compact_ledger,
    completeness_table,
    ledger_files,
    list_ledgers,
    load_ledger,
    load_ledger_history,
    summarize_ledger,
)
from gbifdl_assets.media.store import ImageStore
from gbifdl_assets.storage import LocalStorage


def ck(i: int) -> str:
    return hashlib.sha256(f"http://example.org/{i}.jpg".encode()).hexdigest()


def ok(i: int, **extra) -> dict:
    now = int(time.time() * 1000)
    row = {
        "content_key": ck(i),
        "url": f"http://example.org/{i}.jpg",
        "status": "ok",
        "stored": True,
        "key": ImageStore.image_key(ck(i), "jpeg-512-q90", "jpg"),
        "bytes": 1000 + i,
        "width": 320,
        "height": 240,
        "sha256": "0" * 64,
        "started_at": now,
        "finished_at": now,
    }
    row.update(extra)
    return row


def failed(i: int, reason: str = "http_404") -> dict:
    now = int(time.time() * 1000)
    return {
        "content_key": ck(i),
        "url": f"http://example.org/{i}.jpg",
        "status": "failed",
        "reason": reason,
        "stored": False,
        "http_status": 404 if reason == "http_404" else None,
        "started_at": now,
        "finished_at": now,
    }


@pytest.fixture
def store(tmp_path) -> ImageStore:
    return ImageStore(LocalStorage(tmp_path / "store"))


def test_empty_ledger_has_the_schema(store: ImageStore) -> None:
    table = load_ledger(store, "nothing")
    assert table.num_rows == 0 and table.schema == LEDGER_SCHEMA
    assert list_ledgers(store) == []


def test_segments_and_latest_entry_wins(store: ImageStore) -> None:
    w = LedgerWriter(store, "set-a/shard-0", flush_rows=2)
    w.add(failed(1, "timeout"))
    w.add(ok(2))
    assert w.due()
    first = w.flush()
    w.add(ok(1))  # the retry succeeded
    w.add(failed(3))
    w.flush()
    assert first and first.startswith("ledgers/set-a/shard-0/seg-000000000000-")
    files = ledger_files(store, "set-a/shard-0")
    assert len(files.segments) == 2 and files.base is None
    assert load_ledger_history(store, "set-a/shard-0").num_rows == 4
    latest = load_ledger(store, "set-a/shard-0")
    by_key = {r["content_key"]: r for r in latest.to_pylist()}
    assert by_key[ck(1)]["status"] == "ok" and by_key[ck(3)]["reason"] == "http_404"
    assert latest.num_rows == 3
    assert list_ledgers(store) == ["set-a/shard-0"]
    assert all(r["run_id"] == w.run_id for r in latest.to_pylist())


def test_new_writer_continues_the_sequence(store: ImageStore) -> None:
    a = LedgerWriter(store, "l")
    a.add(failed(1))
    a.flush()
    b = LedgerWriter(store, "l")  # a later run
    b.add(ok(1))
    b.flush()
    assert load_ledger(store, "l").column("status").to_pylist() == ["ok"]


def test_flush_failure_keeps_entries(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    w = LedgerWriter(store, "l")
    w.add(ok(1))

    def boom(*a, **k):
        raise PermissionError(13, "read-only")

    monkeypatch.setattr(store.storage, "write_parquet", boom)
    with pytest.raises(PermissionError):
        w.flush()
    assert len(w) == 1  # nothing dropped
    monkeypatch.undo()
    w.flush()
    assert load_ledger(store, "l").num_rows == 1


def test_compaction_folds_segments_and_survives_crashes(store: ImageStore) -> None:
    w = LedgerWriter(store, "l")
    for i in range(5):
        w.add(failed(i))
        w.flush()
    w.add(ok(0))
    w.flush()
    before = load_ledger(store, "l").sort_by("content_key")
    assert compact_ledger(store, "l") == 6
    files = ledger_files(store, "l")
    assert files.base is not None and files.segments == () and files.stale == ()
    assert load_ledger(store, "l").sort_by("content_key").equals(before)
    assert compact_ledger(store, "l") == 0  # nothing to do

    # A crash after writing a new base but before deleting: old segments lie around. They are
    # covered by the base (seq <= base seq) and must not override newer information.
    storage = store.storage
    stale_key = "ledgers/l/seg-000000000003-deadbeef.parquet"
    storage.write_parquet(stale_key, pa.Table.from_pylist([failed(0, "timeout")], schema=LEDGER_SCHEMA))
    assert stale_key in ledger_files(store, "l").stale
    latest = {r["content_key"]: r["status"] for r in load_ledger(store, "l").to_pylist()}
    assert latest[ck(0)] == "ok"
    # A later writer continues after the base, and its entries win.
    w2 = LedgerWriter(store, "l")
    w2.add(failed(0, "http_410"))
    w2.flush()
    assert {r["content_key"]: r["reason"] for r in load_ledger(store, "l").to_pylist()}[ck(0)] == "http_410"
    compact_ledger(store, "l")
    assert not storage.exists(stale_key)


def test_summaries_completeness_and_attribution(store: ImageStore) -> None:
    w = LedgerWriter(store, "l")
    w.add(ok(0))
    w.add(ok(1))
    w.add(failed(2))
    w.add(failed(3, "timeout"))
    w.add({**ok(4), "status": "skipped", "reason": "already_stored"})
    w.flush()
    ledger = load_ledger(store, "l")
    s = summarize_ledger(ledger)
    assert (s["ok"], s["failed"], s["skipped"], s["stored"]) == (2, 2, 1, 3)
    assert s["failed_by_reason"] == {"http_404": 1, "timeout": 1}
    assert s["skipped_by_reason"] == {"already_stored": 1}

    manifest = pa.table(
        {
            "content_key": [ck(i) for i in range(6)],
            "url": [f"http://example.org/{i}.jpg" for i in range(6)],
            "label": [1, 1, 1, 2, 2, 2],
            "label_name": ["A", "A", "A", "B", "B", "B"],
            "license": ["CC-BY-4.0"] * 6,
            "rightsHolder": [f"holder {i}" for i in range(6)],
        }
    )
    comp = completeness_table(manifest, ledger, by=["label", "label_name"], threshold=0.5)
    assert comp.to_pylist() == [
        {
            "label": 1,
            "label_name": "A",
            "expected": 3,
            "stored": 2,
            "completeness": 2 / 3,
            "below_threshold": False,
        },
        # 3: failed, 4: already stored, 5: no entry at all (missing)
        {
            "label": 2,
            "label_name": "B",
            "expected": 3,
            "stored": 1,
            "completeness": 1 / 3,
            "below_threshold": True,
        },
    ]
    attr = attribution_table(manifest, ledger)
    assert attr.column("content_key").to_pylist() == sorted([ck(0), ck(1), ck(4)])
    assert {"key", "sha256", "license", "rightsHolder", "url"} <= set(attr.column_names)
