"""The manifest: rows, statistics, streaming == in-memory, the asset checks, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gbifdl_assets.gbif.media_schema import conform
from gbifdl_assets.sampling.manifest import (
    MANIFEST_METADATA_KEY,
    MANIFEST_SCHEMA,
    SamplingError,
    build_manifest,
    build_manifest_from_parquet,
    check_balance,
    check_licenses,
    check_split_leakage,
    check_strata_columns,
    check_unique_urls,
    class_counts_markdown,
    write_manifest,
)
from gbifdl_assets.specs import parse_spec

PUBS = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(4)]
LICENCES = ["CC-BY-4.0", "CC0-1.0", "CC-BY-NC-4.0", "ALL-RIGHTS-RESERVED", "CC-BY-SA-4.0"]


def snapshot(n: int = 3000, seed: int = 0, *, annotated: bool = True) -> pa.Table:
    """A small, skewed snapshot: 12 species, 4 publishers, 1-3 images per occurrence."""
    rng = np.random.default_rng(seed)
    n_occ = n  # more than enough occurrences; rows are cut at n
    per_occ = rng.choice([1, 2, 3], n_occ, p=[0.6, 0.3, 0.1])
    occ = np.repeat(np.arange(n_occ), per_occ)[:n]
    media_index = np.concatenate([np.arange(k) for k in per_occ])[:n]
    n_occ = int(occ.max()) + 1
    species = rng.choice(12, n_occ, p=np.arange(12, 0, -1) / 78)[occ]
    pub = rng.integers(0, 4, n_occ)[occ]
    lic = np.array(LICENCES)[rng.choice(5, n, p=[0.5, 0.2, 0.15, 0.1, 0.05])]
    table = conform(
        pa.table(
            {
                "gbifID": pa.array(5_000_000 + occ, pa.int64()),
                "speciesKey": pa.array(1000 + species, pa.int64()),
                "species": pa.array([f"Species {s}" for s in species]),
                "datasetKey": pa.array([f"ds-{p}" for p in pub]),
                "publishingOrgKey": pa.array(np.array(PUBS)[pub]),
                "basisOfRecord": pa.array(["HUMAN_OBSERVATION"] * len(occ)),
                "recordedBy": pa.array([f"obs {o % 97}" for o in occ]),
                "decimalLatitude": pa.array(rng.uniform(40, 60, n_occ)[occ]),
                "decimalLongitude": pa.array(rng.uniform(0, 20, n_occ)[occ]),
                "media_index": pa.array(media_index, pa.int32()),
                "identifier": pa.array(
                    [f"https://img.example/{o}/{m}.jpg" for o, m in zip(occ, media_index, strict=True)]
                ),
                "media_license": pa.array(lic),
                "media_license_raw": pa.array([f"raw {x}" for x in lic]),
                "creator": pa.array([f"creator {o % 13}" for o in occ]),
                "rightsHolder": pa.array([f"holder {o % 7}" for o in occ]),
                "references": pa.array([f"https://ref.example/{o}" for o in occ]),
            }
        )
    )
    if annotated:
        labels = [["SUSPICIOUS"] if o % 50 == 0 else ([] if o % 7 else ["NATIVE"]) for o in occ]
        arr = pa.array(labels, pa.list_(pa.string()))
        table = table.append_column("annotation_labels", arr)
        table = table.append_column("annotation_conflict", pc.greater(pc.list_value_length(arr), 1))
    return table


def spec(**fields: Any):
    base = {"name": "t", "taxa": ["x"], "balancing": {"max_per_class": 40, "min_per_class": 10}}
    base.update(fields)
    return parse_spec(base)


def test_rows_and_columns() -> None:
    table = snapshot()
    result = build_manifest(table, spec(), snapshot_id="snap-1")
    m = result.table
    assert m.schema.equals(MANIFEST_SCHEMA)
    assert m.num_rows == result.stats["images"] > 0
    rows = m.to_pylist()
    for r in rows[:50]:
        assert r["content_key"] == hashlib.sha256(r["url"].encode()).hexdigest()
        assert r["label"] == r["speciesKey"]
        assert r["label_name"] == f"Species {r['label'] - 1000}"
        assert r["license"] in ("CC-BY-4.0", "CC0-1.0", "CC-BY-SA-4.0")
        assert r["license_raw"] == f"raw {r['license']}"
        assert r["publisher"] in PUBS and r["stratum"] == r["publisher"]
        assert r["split"] in ("train", "val", "test")
        assert r["split_group"] == f"gbifID:{r['gbifID']}"
        assert r["snapshot_id"] == "snap-1"
    # sorted by (label, content_key)
    keys = [(r["label"], r["content_key"]) for r in rows]
    assert keys == sorted(keys)
    # every input row is accounted for exactly once
    stats = result.stats
    assert stats["input_rows"] == table.num_rows
    assert stats["images"] + sum(stats["dropped"].values()) == table.num_rows
    assert stats["dropped"]["annotation_drop_label"] > 0
    assert stats["dropped"]["license"] > 0
    assert sum(stats["per_split"].values()) == stats["images"]
    assert sum(stats["licenses"].values()) == stats["images"]
    assert max(stats["per_class"].values()) == 40
    assert set(stats["classes_below_min"]) | set(stats["per_class"]) <= {1000 + s for s in range(12)}
    json.dumps(stats)  # JSON-ready for Dagster metadata


def test_deterministic_and_independent_of_row_order_and_batching() -> None:
    table = snapshot()
    s = spec()
    a = build_manifest(table, s, snapshot_id="x").table
    b = build_manifest(
        table.take(pa.array(np.random.default_rng(3).permutation(table.num_rows))), s, snapshot_id="x"
    ).table
    c = build_manifest(table, s, snapshot_id="x", batch_rows=97).table
    assert a.equals(b)
    assert a.equals(c)
    d = build_manifest(
        table, spec(balancing={"max_per_class": 40, "min_per_class": 10, "seed": 5}), snapshot_id="x"
    ).table
    assert set(d.column("url").to_pylist()) != set(a.column("url").to_pylist())


def test_streaming_parquet_equals_in_memory(tmp_path: Path) -> None:
    table = snapshot(4000, seed=2)
    # duplicates across batches and files: the first by (gbifID, media_index) survives
    dup = table.slice(10, 1)
    dup = dup.set_column(0, table.schema.field("gbifID"), pa.array([1], pa.int64()))
    table = pa.concat_tables([table, dup])
    s = spec()
    expected = build_manifest(table, s, snapshot_id="x")
    folder = tmp_path / "snap"
    folder.mkdir()
    pq.write_table(table.slice(0, 1500), folder / "part-0.parquet")
    pq.write_table(table.slice(1500), folder / "part-1.parquet", row_group_size=333)
    got = build_manifest_from_parquet(folder, s, snapshot_id="x", batch_rows=250)
    assert got.table.equals(expected.table)
    assert got.stats["dropped"] == expected.stats["dropped"]
    assert expected.stats["dropped"]["duplicate_url"] == 1
    dup_url = dup.column("identifier")[0].as_py()
    if dup_url in got.table.column("url").to_pylist():
        row = got.table.filter(pc.equal(got.table.column("url"), dup_url))
        assert row.column("gbifID").to_pylist() == [1]


def test_previous_manifest_keeps_its_images_as_far_as_the_quotas_allow() -> None:
    table = snapshot(3000)
    s = spec()
    first = build_manifest(table, s, snapshot_id="v1").table
    new = snapshot(3000, seed=8)
    new = new.set_column(0, new.schema.field("gbifID"), pc.add(new.column("gbifID"), 10**7))
    i = new.column_names.index("identifier")
    new = new.set_column(i, new.schema.field(i), pc.binary_join_element_wise(new.column(i), "?new", ""))
    grown = pa.concat_tables([table, new])
    plain = build_manifest(grown, s, snapshot_id="v2").table
    sticky = build_manifest(grown, s, snapshot_id="v2", previous=first)
    old_urls = set(first.column("url").to_pylist())

    def per_stratum(m: pa.Table) -> dict[tuple[int, str], set[str]]:
        out: dict[tuple[int, str], set[str]] = {}
        for r in m.select(["label", "stratum", "url"]).to_pylist():
            out.setdefault((r["label"], r["stratum"]), set()).add(r["url"])
        return out

    before, after = per_stratum(first), per_stratum(sticky.table)
    # every stratum keeps min(its old picks, its new quota) old images: only a smaller quota evicts
    for key, old in before.items():
        now = after.get(key, set())
        assert len(now & old_urls) == min(len(old), len(now)), key
    assert sticky.stats["previous"]["kept"] == sum(len(after.get(k, set()) & old_urls) for k in before)
    assert len(set(sticky.table.column("url").to_pylist()) & old_urls) > len(
        set(plain.column("url").to_pylist()) & old_urls
    )
    # and the images that stay keep their split
    split_before = dict(zip(first.column("url").to_pylist(), first.column("split").to_pylist(), strict=True))
    split_after = dict(
        zip(sticky.table.column("url").to_pylist(), sticky.table.column("split").to_pylist(), strict=True)
    )
    assert all(split_after[u] == split_before[u] for u in split_after.keys() & split_before.keys())


def test_write_manifest_is_atomic_and_carries_stats(tmp_path: Path) -> None:
    result = build_manifest(snapshot(), spec(), snapshot_id="x")
    out = tmp_path / "m" / "manifest.parquet"
    write_manifest(result, out)
    back = pq.read_table(out)
    assert back.equals(result.table.replace_schema_metadata(back.schema.metadata))
    assert json.loads(back.schema.metadata[MANIFEST_METADATA_KEY])["images"] == result.stats["images"]
    assert [p.name for p in out.parent.iterdir()] == ["manifest.parquet"]


# --- checks ------------------------------------------------------------------------------------
def _manifest(rows: list[dict[str, Any]]) -> pa.Table:
    base = {"url": None, "label": 1, "license": "CC-BY-4.0", "split": "train", "split_group": "g"}
    return pa.Table.from_pylist([{**base, **r} for r in rows])


def test_checks_pass_on_a_built_manifest() -> None:
    s = spec(balancing={"max_per_class": 40, "min_per_class": 40})
    m = build_manifest(snapshot(), s, snapshot_id="x").table
    assert check_balance(m, 0.0)[0]  # every kept class has exactly 40
    assert check_licenses(m, s.licenses)[0]
    assert check_split_leakage(m)[0]
    assert check_split_leakage(m, "gbifID")[0]
    assert check_unique_urls(m)[0]


def test_check_balance_fails_when_classes_are_far_apart() -> None:
    m = _manifest(
        [{"url": f"u{i}", "label": 1} for i in range(10)] + [{"url": f"v{i}", "label": 2} for i in range(4)]
    )
    ok, details = check_balance(m, 0.5)
    assert not ok and details["min_max_ratio"] == 0.4 and details["smallest"][0] == {"label": 2, "images": 4}
    assert check_balance(m, 0.6)[0]
    assert not check_balance(m.slice(0, 0), 0.5)[0]


def test_check_licenses_fails_on_a_disallowed_licence() -> None:
    m = _manifest([{"url": "a"}, {"url": "b", "license": "CC-BY-NC-4.0"}])
    ok, details = check_licenses(m, ["CC0", "CC-BY"])
    assert not ok and details["disallowed"] == {"CC-BY-NC-4.0": 1}
    assert check_licenses(m, ["CC-BY", "CC-BY-NC"])[0]


def test_check_split_leakage_fails_when_a_group_crosses_splits() -> None:
    m = _manifest([{"url": "a", "split_group": "g1"}, {"url": "b", "split_group": "g1", "split": "test"}])
    ok, details = check_split_leakage(m)
    assert not ok and details["leaking_groups"] == 1 and details["examples"] == ["g1"]
    assert not check_split_leakage(m, "nope")[0]


def test_check_unique_urls_fails_on_duplicates() -> None:
    m = _manifest([{"url": "a"}, {"url": "a"}, {"url": "b"}])
    ok, details = check_unique_urls(m)
    assert not ok and details["duplicated_urls"] == 1 and details["examples"] == ["a"]


def test_a_filled_strata_column_passes_and_its_fill_is_in_the_stats() -> None:
    result = build_manifest(snapshot(), spec(), snapshot_id="x")
    fill = result.stats["strata_columns"]
    assert fill["publishingOrgKey"]["empty"] == 0 and fill["publishingOrgKey"]["rows"] > 0
    assert result.stats["empty_strata_columns"] == []
    assert check_strata_columns(fill)[0]


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_balancing_by_a_column_empty_everywhere_says_so_with_the_fix(empty) -> None:
    table = snapshot()
    i = table.column_names.index("publishingOrgKey")
    table = table.set_column(i, "publishingOrgKey", pa.array([empty] * table.num_rows, pa.string()))
    s = spec(balancing={"max_per_class": 40, "min_per_class": 10, "by": ["publishingOrgKey", "datasetKey"]})
    result = build_manifest(table, s, snapshot_id="x")  # still built: one stratum per publisher-less class
    stats = result.stats
    assert stats["empty_strata_columns"] == ["publishingOrgKey"]
    rows = stats["strata_columns"]["publishingOrgKey"]["rows"]
    assert stats["strata_columns"]["publishingOrgKey"]["empty"] == rows > 0
    assert stats["strata_columns"]["datasetKey"]["empty"] == 0
    ok, details = check_strata_columns(stats["strata_columns"])
    assert not ok and details["empty_columns"] == ["publishingOrgKey"]
    message = details["message"]
    assert f"balancing.by column 'publishingOrgKey' is empty in all {rows} candidate rows" in message
    assert "re-materialize occurrence_snapshot with the registry reachable" in message
    assert "or remove publishingOrgKey from balancing.by" in message
    assert details["fixes"]["publishingOrgKey"] in message


def test_an_empty_column_that_is_not_the_registrys_gets_its_own_fix() -> None:
    ok, details = check_strata_columns(
        {"institutionCode": {"rows": 5, "empty": 5}, "x": {"rows": 0, "empty": 0}}
    )
    assert not ok and details["empty_columns"] == ["institutionCode"]
    assert "the snapshot carries no institutionCode values" in details["message"]
    assert check_strata_columns({})[0]  # balancing by nothing: nothing to say


def test_class_counts_markdown() -> None:
    m = build_manifest(snapshot(), spec(), snapshot_id="x").table
    text = class_counts_markdown(m, limit=3)
    lines = text.splitlines()
    assert lines[0].startswith("| label | name | images")
    assert len(lines) == 2 + 3 + 1 and "more classes" in lines[-1]


# --- bad input ---------------------------------------------------------------------------------
def test_empty_after_filtering_names_the_input_and_the_reasons() -> None:
    with pytest.raises(
        SamplingError, match=r"my-snapshot: no images left after filtering 3000 rows \(.*license"
    ):
        build_manifest(snapshot(), spec(licenses=["PDM"]), snapshot_id="x", source="my-snapshot")
    with pytest.raises(SamplingError, match="no images left after filtering 0 rows"):
        build_manifest(snapshot().slice(0, 0), spec(), snapshot_id="x")


def test_all_classes_below_min() -> None:
    with pytest.raises(SamplingError, match="min_per_class=500"):
        build_manifest(snapshot(), spec(balancing={"min_per_class": 500}), snapshot_id="x")


def test_missing_columns() -> None:
    table = snapshot()
    with pytest.raises(SamplingError, match="lacks column speciesKey"):
        build_manifest(table.drop_columns(["speciesKey"]), spec(), snapshot_id="x")
    with pytest.raises(SamplingError, match="balancing.by names column institution"):
        build_manifest(table, spec(balancing={"by": ["institution"]}), snapshot_id="x")
    as_text = table.set_column(
        table.column_names.index("speciesKey"), "speciesKey", table.column("speciesKey").cast(pa.string())
    )
    with pytest.raises(SamplingError, match="not integer taxon keys"):
        build_manifest(as_text, spec(), snapshot_id="x")
    with pytest.raises(SamplingError, match="group_by: dataset needs column datasetKey"):
        build_manifest(
            table.drop_columns(["datasetKey"]), spec(splits={"group_by": "dataset"}), snapshot_id="x"
        )


def test_unreadable_parquet(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(SamplingError, match="bad.parquet: cannot read it as Parquet"):
        build_manifest_from_parquet(bad, spec(), snapshot_id="x")
    with pytest.raises(SamplingError, match="missing.parquet: not found"):
        build_manifest_from_parquet(tmp_path / "missing.parquet", spec(), snapshot_id="x")


def test_url_hash_collisions_never_drop_distinct_urls(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Force 64-bit hash collisions (8 distinct hashes for 3000 URLs): the exact comparison in the
    last pass must catch them and redo the selection with the true duplicates only."""
    from gbifdl_assets.sampling import filters
    from gbifdl_assets.sampling.hashing import hash_strings

    table = snapshot(3000)
    dup = table.slice(5, 1)
    dup = dup.set_column(0, table.schema.field("gbifID"), pa.array([1], pa.int64()))
    table = pa.concat_tables([table, dup])
    s = spec()
    normal = build_manifest(table, s, snapshot_id="x")
    monkeypatch.setattr(filters, "hash_strings", lambda *a, **k: hash_strings(*a, **k) & np.uint64(7))
    with caplog.at_level("WARNING"):
        colliding = build_manifest(table, s, snapshot_id="x")
    assert "hash collision" in caplog.text
    assert colliding.stats["dropped"]["duplicate_url"] == normal.stats["dropped"]["duplicate_url"] == 1
    assert colliding.stats["per_class"] == normal.stats["per_class"]
    assert check_unique_urls(colliding.table)[0]
