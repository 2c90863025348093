"""Issue 18's case end to end: 300 distinct photos plus 40 copies under other URLs and occurrences.

20 copies are the identical files, 20 are resized and re-encoded; each copy's occurrence puts it in
another split than its original. The photos are served over loopback HTTP, fetched by the downloader
(which hashes them while validating) and exported: no photo may sit in two splits, and no distinct
photo may be lost. With the duplicate handling switched off the same inputs leak all 40 photos,
which is what the issue saw.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbifdl_assets.export.dedup import DuplicatePolicy, check_no_duplicates_across_splits
from gbifdl_assets.export.layout import export_training_set
from gbifdl_assets.media.download import DownloadConfig, download_images
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.media.ledger import load_ledger
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.bench.photos import photo

pytestmark = pytest.mark.integration

DISTINCT, IDENTICAL, RESIZED = 300, 20, 20
SPLITS = ("train", "val", "test")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log in the test output
        pass


@pytest.fixture(scope="module")
def photo_site(tmp_path_factory):
    """A folder of 340 JPEGs served on 127.0.0.1, and what each file is."""
    root = tmp_path_factory.mktemp("site")
    files = []
    for i in range(DISTINCT):
        out = io.BytesIO()
        photo(1000 + i, 480, 360).save(out, "JPEG", quality=88)
        (root / f"p{i}.jpg").write_bytes(out.getvalue())
        files.append({"file": f"p{i}.jpg", "photo": i, "kind": "original"})
    for c in range(IDENTICAL):  # the same file under another name (another URL)
        i = 7 * c
        (root / f"copy{c}.jpg").write_bytes((root / f"p{i}.jpg").read_bytes())
        files.append({"file": f"copy{c}.jpg", "photo": i, "kind": "identical"})
    for c in range(RESIZED):  # resized to 60 % and re-encoded at quality 70
        i = 7 * c + 3
        im = Image.open(root / f"p{i}.jpg")
        out = io.BytesIO()
        im.resize((288, 216), Image.Resampling.LANCZOS).save(out, "JPEG", quality=70)
        (root / f"resized{c}.jpg").write_bytes(out.getvalue())
        files.append({"file": f"resized{c}.jpg", "photo": i, "kind": "resized"})
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


def _manifest(base: str, files: list[dict]) -> pa.Table:
    rows = []
    for n, f in enumerate(files):
        url = f"{base}/{f['file']}"
        original_split = SPLITS[f["photo"] % 3]
        # a copy's occurrence lands in the next split: the leak the issue reports
        split = original_split if f["kind"] == "original" else SPLITS[(f["photo"] + 1) % 3]
        rows.append(
            {
                "content_key": hashlib.sha256(url.encode()).hexdigest(),
                "url": url,
                "label": 100 + f["photo"] % 3,
                "label_name": f"Species {f['photo'] % 3}",
                "gbifID": 5000 + n,  # every file its own occurrence
                "license": "CC0-1.0",
                "creator": f"Photographer {f['photo']}",
                "split": split,
            }
        )
    return pa.Table.from_pylist(rows)


def _fetch(manifest: pa.Table, storage: LocalStorage) -> pa.Table:
    config = DownloadConfig(
        fetch=FetchConfig(allow_loopback=True), event_loop="asyncio", processes=1, ledger_flush_seconds=0.5
    )
    summary = download_images(
        manifest.select(["content_key", "url"]), storage, ledger="photos", config=config
    )
    assert summary.ok == DISTINCT + IDENTICAL + RESIZED, summary
    return load_ledger(storage, "photos")


@pytest.mark.timeout(300)
def test_no_photo_in_two_splits_and_no_distinct_photo_lost(photo_site, tmp_path: Path) -> None:
    base, files = photo_site
    manifest = _manifest(base, files)
    storage = LocalStorage(tmp_path / "store")
    ledger = _fetch(manifest, storage)
    assert ledger.column("phash").null_count == 0  # hashed in the fetch path
    photo_of = {row["content_key"]: f["photo"] for row, f in zip(manifest.to_pylist(), files, strict=True)}

    # the symptom first: exported as the manifest says, all 40 photos sit in two splits
    leaky = export_training_set(
        manifest,
        ledger,
        storage,
        LocalStorage(tmp_path / "leaky"),
        training_set="photos",
        duplicates=DuplicatePolicy(enabled=False),
    )
    assert leaky.images == DISTINCT + IDENTICAL + RESIZED
    exported = pq.read_table(tmp_path / "leaky" / "manifest.parquet")
    splits_of: dict[int, set[str]] = {}
    for row in exported.select(["content_key", "split"]).to_pylist():
        splits_of.setdefault(photo_of[row["content_key"]], set()).add(row["split"])
    assert sum(len(s) > 1 for s in splits_of.values()) == IDENTICAL + RESIZED
    passed, details = check_no_duplicates_across_splits(exported)
    assert not passed and details["clusters_across_splits"] == IDENTICAL + RESIZED

    # the default: every copy in its cluster's split, copies inside one split kept once
    summary = export_training_set(
        manifest, ledger, storage, LocalStorage(tmp_path / "export"), training_set="photos"
    )
    exported = pq.read_table(tmp_path / "export" / "manifest.parquet")
    splits_of = {}
    for row in exported.select(["content_key", "split"]).to_pylist():
        splits_of.setdefault(photo_of[row["content_key"]], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values())  # no photo in two splits
    assert sorted(splits_of) == list(range(DISTINCT))  # no distinct photo lost
    assert summary.images == DISTINCT and exported.num_rows == DISTINCT
    assert summary.duplicates["clusters"] == IDENTICAL + RESIZED
    assert summary.duplicates["dropped"] == IDENTICAL + RESIZED
    # the representative (smallest content key) decides: some copies moved, the others' originals did
    assert 0 < summary.duplicates["moved"] <= IDENTICAL + RESIZED
    passed, details = check_no_duplicates_across_splits(exported, summary=summary.duplicates)
    assert passed and details["clusters_found"] == IDENTICAL + RESIZED and details["examples"]

    # keep_copies_within_split: all 340 exported, still never across splits
    kept = export_training_set(
        manifest,
        ledger,
        storage,
        LocalStorage(tmp_path / "kept"),
        training_set="photos",
        duplicates=DuplicatePolicy(keep_copies_within_split=True),
    )
    assert kept.images == DISTINCT + IDENTICAL + RESIZED and kept.duplicates["dropped"] == 0
    passed, _ = check_no_duplicates_across_splits(pq.read_table(tmp_path / "kept" / "manifest.parquet"))
    assert passed
