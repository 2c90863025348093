"""The metadata helpers of the Dagster layer (defs/metadata.py) and the storage kind of the assets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg

from gbifdl_assets.defs.metadata import (
    check_metadata,
    count_table,
    fields_table,
    markdown_table,
    storage_kind,
)
from gbifdl_assets_tests.harness.markdown_tables import markdown_rows


def test_count_table_is_largest_first_with_names_and_shares():
    text = count_table(
        {"4535827": 10, "1898286": 30, "0": 0},
        ("label", "images"),
        names={"1898286": "Vanessa atalanta"},
        skip_zero=True,
    )
    rows = markdown_rows(text)
    assert [r["label"] for r in rows] == ["1898286", "4535827"]
    assert rows[0] == {"label": "1898286", "name": "Vanessa atalanta", "images": "30", "share": "75.0%"}
    assert rows[1]["name"] == ""
    assert count_table({"a": 0}, ("reason", "rows"), skip_zero=True) == "none"


def test_cells_escape_pipes_and_keep_keys_plain():
    text = markdown_table(
        [{"label": 1898286, "note": "a | b\nc", "share": 0.123456}], ("label", "note", "share")
    )
    assert markdown_rows(text) == [{"label": "1898286", "note": "a | b c", "share": "0.1235"}]


def test_fields_table_flattens_nested_mappings():
    rows = markdown_rows(fields_table({"source": {"type": "search", "records": 12}, "gaps": {}}))
    assert rows == [
        {"field": "source.type", "value": "search"},
        {"field": "source.records", "value": "12"},
        {"field": "gaps", "value": "none"},
    ]
    assert fields_table({}) == "none"


def test_check_metadata_is_numbers_and_lines_with_names():
    meta = check_metadata(
        {
            "classes": 7,
            "min_max_ratio": 0.6,
            "smallest": [{"label": 1938125, "images": 24}, {"label": 1, "images": 40}],
            "licenses": {"CC0-1.0": 3, "CC-BY-4.0": 9},
            "columns": {"publisher": {"rows": 10, "empty": 0}},
            "examples": [],
            "message": "said by the description",
        },
        names={"1938125": "Papilio machaon"},
    )
    assert "message" not in meta
    assert isinstance(meta["classes"], dg.IntMetadataValue) and isinstance(
        meta["min_max_ratio"], dg.FloatMetadataValue
    )
    assert meta["smallest"].value == "Papilio machaon (1938125): images 24; 1: images 40"
    assert meta["licenses"].value == "CC-BY-4.0: 9; CC0-1.0: 3"
    assert meta["columns"].value == "publisher: rows 10, empty 0"
    assert meta["examples"].value == "none"
    assert all(not isinstance(v, dg.MarkdownMetadataValue | dg.JsonMetadataValue) for v in meta.values())


def test_storage_kind_follows_the_data_uri():
    assert storage_kind("s3://bucket/prefix") == "s3" and storage_kind("S3://B") == "s3"
    assert (
        storage_kind("data") == "file"
        and storage_kind("/srv/gbifdl") == "file"
        and storage_kind("") == "file"
    )


def test_assets_carry_the_storage_kind_of_the_configured_storage():
    """Kinds are fixed when the code location loads: s3 with an S3 data URI, file otherwise."""
    probe = (
        "import json; from gbifdl_assets.definitions import defs\n"
        "print(json.dumps({k.to_user_string(): sorted(s.kinds) for a in defs.assets for s in a.specs for k in [s.key]}))"
    )
    kinds = {}
    for uri in ("s3://bucket/gbifdl", "/tmp/gbifdl-data"):
        env = {**os.environ, "GBIFDL_DATA_URI": uri}
        proc = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        kinds[uri] = json.loads(proc.stdout.strip().splitlines()[-1])
    on_s3, local = kinds["s3://bucket/gbifdl"], kinds["/tmp/gbifdl-data"]
    assert set(on_s3) == set(local) and len(on_s3) == 9  # the eight stages and image_flags
    assert all("s3" in k and "file" not in k for k in on_s3.values()), on_s3
    assert all("file" in k and "s3" not in k for k in local.values()), local
    assert on_s3["image_store"] == ["python", "s3"] and local["training_export"] == [
        "file",
        "python",
        "pytorch",
        "tensorflow",
    ]
