"""Duplicate clusters across the ledgers of one image store, and ``gbifdl images duplicates``."""

from __future__ import annotations

import argparse
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from gbifdl_assets.media.cli import add_images_parser
from gbifdl_assets.media.ledger import LEDGER_SCHEMA
from gbifdl_assets.media.phash import phash_of_bytes
from gbifdl_assets.media.store_duplicates import store_duplicates
from gbifdl_assets.storage import LocalStorage
from gbifdl_assets_tests.bench.photos import photo


def _jpeg(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    out = io.BytesIO()
    photo(seed, *size).save(out, "JPEG", quality=85)
    return out.getvalue()


def _ledger(storage: LocalStorage, name: str, images: list[tuple[str, bytes, bool]]) -> None:
    rows = []
    for url, body, with_hash in images:
        ck = hashlib.sha256(url.encode()).hexdigest()
        key = f"images/original/{ck[:2]}/{ck}.jpg"
        storage.write_bytes(key, body)
        sha = hashlib.sha256(body).hexdigest()
        rows.append(
            {
                "content_key": ck,
                "url": url,
                "status": "ok",
                "stored": True,
                "key": key,
                "sha256": sha,
                "content_sha256": sha,
                "phash": phash_of_bytes(body) if with_hash else None,
            }
        )
    storage.write_parquet(
        f"ledgers/{name}/seg-000000000000-t.parquet", pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
    )


def _small_copy(body: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(body)).resize((200, 150)).save(out, "JPEG", quality=70)
    return out.getvalue()


def test_a_photo_in_two_training_sets_is_one_cluster(tmp_path, capsys) -> None:
    storage = LocalStorage(tmp_path / "store")
    a, b, c = _jpeg(1), _jpeg(2), _jpeg(3)
    _ledger(storage, "cats/s0", [("https://x.org/a", a, True), ("https://x.org/b", b, True)])
    # set two: a resized copy of a under another URL, and c from an older ledger without hashes
    _ledger(storage, "lions/s0", [("https://y.org/a2", _small_copy(a), True), ("https://y.org/c", c, False)])
    _ledger(storage, "tigers/s0", [("https://z.org/c2", _small_copy(c), True)])
    found = store_duplicates(storage)
    assert found.images == 5 and found.clusters == 1 and found.clusters_across_ledgers == 1
    assert found.without_phash == 1 and found.hashed_now == 0
    members = {m["ledger"] for m in found.examples[0]["members"]}
    assert members == {"cats/s0", "lions/s0"}
    hashed = store_duplicates(storage, hash_missing=True)  # c is hashed from its stored bytes now
    assert hashed.clusters == 2 and hashed.hashed_now == 1 and hashed.without_phash == 0

    parser = argparse.ArgumentParser(prog="gbifdl")
    add_images_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "clusters.parquet"
    args = parser.parse_args(["images", "duplicates", "--store", str(storage.root), "--out", str(out)])
    assert args.func(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["ok"] and line["clusters"] == 1 and line["clusters_across_ledgers"] == 1
    assert pq.read_table(out).column("cluster_size").to_pylist().count(2) == 2
    args = parser.parse_args(["images", "duplicates", "--store", str(storage.root), "--ledger", "nope"])
    assert args.func(args) == 2
    assert "has no ledger 'nope' (it has cats/s0, lions/s0, tigers/s0)" in capsys.readouterr().err
