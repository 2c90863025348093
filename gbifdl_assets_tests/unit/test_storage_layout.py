"""The storage layout: the keys every stage uses, and the one commit rule for "the newest output"."""

from __future__ import annotations

from pathlib import Path

import pytest

from gbifdl_assets.storage import LocalStorage, layout

SNAP_OLD = "20260105T031500123Z-0123456789ab"
SNAP_NEW = "20260106T031500123Z-ba9876543210"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "data")


def test_keys_are_the_ones_the_stages_have_always_written():
    assert layout.species_list_key("cats") == "species_lists/cats/species_list.parquet"
    assert layout.download_request_key("cats") == "downloads/cats/request.json"
    assert layout.snapshots("cats").commit_key(SNAP_OLD) == f"snapshots/cats/{SNAP_OLD}/snapshot.json"
    assert layout.rulesets().commit_key("abc") == "annotations/rulesets/abc/rules.parquet"
    output = layout.annotated_id(SNAP_OLD, "abc")
    assert layout.annotated("cats").commit_key(output) == f"annotated/cats/{SNAP_OLD}-abc/annotated.parquet"
    assert layout.manifests("cats").commit_key(output) == f"manifests/cats/{SNAP_OLD}-abc/manifest.parquet"
    assert layout.split_annotated_id(output) == (SNAP_OLD, "abc")
    assert layout.ledger_name("cats", "03") == "cats.shard03"
    assert layout.attribution_key("cats", "03") == "attribution/cats/shard03.parquet"
    assert layout.export_prefix("cats") == "exports/cats"
    with pytest.raises(ValueError, match="cannot name a snapshot folder"):
        layout.snapshots("../up")


def _commit(
    storage: LocalStorage, folder: layout.OutputFolder, output_id: str, *, pointer: bool = True
) -> None:
    storage.write_bytes(folder.commit_key(output_id), b"x")
    if pointer:
        layout.publish(storage, folder, output_id)


def test_the_newest_stamp_wins_over_a_stale_pointer(storage):
    folder = layout.snapshots("cats")
    assert layout.newest_complete(storage, folder) is None
    _commit(storage, folder, SNAP_OLD)
    _commit(storage, folder, SNAP_NEW, pointer=False)  # a crash between the commit and the pointer
    assert layout.newest_complete(storage, folder) == SNAP_NEW
    storage.delete(folder.commit_key(SNAP_NEW))  # no commit file: the output does not exist
    assert layout.newest_complete(storage, folder) == SNAP_OLD


def test_the_pointer_decides_among_outputs_without_a_stamp(storage):
    folder = layout.rulesets()
    _commit(storage, folder, "ffff")
    _commit(storage, folder, "0000")
    assert layout.newest_complete(storage, folder) == "0000"
    _commit(storage, folder, "ffff")  # rules back to an earlier version: same content, same id
    assert layout.newest_complete(storage, folder) == "ffff"
    assert storage.read_bytes(folder.pointer_key) == b"ffff"


@pytest.mark.parametrize("kind", [layout.annotated, layout.manifests])
def test_outputs_named_after_a_snapshot_order_by_it_then_by_the_pointer(storage, kind):
    folder = kind("cats")
    first, rules_changed = layout.annotated_id(SNAP_OLD, "aaaa"), layout.annotated_id(SNAP_OLD, "bbbb")
    _commit(storage, folder, rules_changed)
    _commit(storage, folder, first)
    assert layout.newest_complete(storage, folder) == first
    _commit(storage, folder, layout.annotated_id(SNAP_NEW, "aaaa"))
    assert layout.newest_complete(storage, folder) == layout.annotated_id(SNAP_NEW, "aaaa")


def test_every_pointer_form_written_so_far_is_read():
    output = layout.annotated_id(SNAP_OLD, "abc")
    assert layout.snapshots("cats").pointer_text(SNAP_OLD) == f"{SNAP_OLD}\n"
    assert layout.annotated("cats").pointer_text(output) == f"annotated/cats/{output}"
    assert layout.manifests("cats").pointer_text(output) == f"manifests/cats/{output}/manifest.parquet"
    for folder, output_id in [
        (layout.snapshots("cats"), SNAP_OLD),
        (layout.rulesets(), "abc"),
        (layout.annotated("cats"), output),
        (layout.manifests("cats"), output),
    ]:
        assert folder.id_from_pointer(folder.pointer_text(output_id)) == output_id
