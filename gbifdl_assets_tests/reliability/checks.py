"""Invariants the reliability tests assert after a crash or a fault: what is stored is exactly what
the ledger says, complete and decodable; no snapshot is half-visible."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from gbifdl_assets.media.ledger import load_ledger


def assert_ledger_matches_store(storage: Any, ledger: str, manifest_rows: pa.Table | None = None) -> pa.Table:
    """Object for object: the ledger's stored keys are exactly the image objects, each complete
    (size and sha256 as recorded) and decodable; no content key twice; every manifest row known.
    A same-bytes row (``duplicate_of``) shares the object of the row it copies."""
    table = load_ledger(storage, ledger)
    stored = table.filter(table.column("stored"))
    # the same bytes under a second URL are stored once: that row points at the first one's object
    copies = stored.filter(pc.is_valid(stored.column("duplicate_of")))
    stored = stored.filter(pc.is_null(stored.column("duplicate_of")))
    keys = stored.column("key").to_pylist()
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates, f"objects recorded twice: {duplicates[:5]}"
    orphans = set(copies.column("key").to_pylist()) - set(keys)
    assert not orphans, f"same-bytes rows pointing at objects no row stored: {sorted(orphans)[:5]}"
    content = [k for k, n in Counter(table.column("content_key").to_pylist()).items() if n > 1]
    assert not content, f"content keys with two ledger rows: {content[:5]}"
    objects = sorted(storage.list("images/"))
    assert len(objects) == len(set(objects))
    assert set(keys) == set(objects), (
        f"store and ledger disagree: {len(set(objects) - set(keys))} unrecorded objects, "
        f"{len(set(keys) - set(objects))} recorded objects missing"
    )
    for row in stored.select(["key", "sha256", "bytes"]).to_pylist():
        data = storage.read_bytes(row["key"])
        assert len(data) == row["bytes"], f"{row['key']}: {len(data)} bytes, ledger says {row['bytes']}"
        assert hashlib.sha256(data).hexdigest() == row["sha256"], f"{row['key']}: corrupt"
        Image.open(io.BytesIO(data)).load()
    if manifest_rows is not None:
        wanted = set(manifest_rows.column("content_key").to_pylist())
        known = set(table.column("content_key").to_pylist())
        assert wanted <= known, f"{len(wanted - known)} manifest images lost (no ledger row)"
    return table


def leftover_temp_files(root: Path) -> list[Path]:
    """Temporary files of atomic writes (``.gbifdl-tmp-*``) under a local store."""
    return sorted(p for p in root.rglob(".gbifdl-tmp-*") if p.is_file())
