"""Image flags in the annotation store (SQLite): create, validation, duplicates, votes, delete, lists,
the flags' own change counter and the compiled table.

``integration/test_image_flags_store_postgres.py`` runs every ``test_*`` here again on PostgreSQL, so the
tests only use the ``store`` fixture.
"""

from __future__ import annotations

import pytest

from gbifdl_assets.annotations.image_flags import FLAGS_TABLE_SCHEMA
from gbifdl_assets.annotations.model import RuleError
from gbifdl_assets.annotations.permissions import Actor, PermissionDenied
from gbifdl_assets.annotations.store import AnnotationStore, Conflict, DuplicateFlag, NotFound

URL = "https://inaturalist-open-data.s3.amazonaws.com/photos/1/original.jpg"
SHA = "a" * 64


@pytest.fixture
def store(tmp_path):
    s = AnnotationStore(f"sqlite:///{tmp_path}/annotations.sqlite")
    yield s
    s.close()


def new_flag(store, user="alice", **fields):
    data = {"gbifID": 4011, "mediaIdentifier": URL, "flag": "NOT_ORGANISM", **fields}
    return store.create_flag(data, user=user)


def test_a_flag_is_stored_with_its_creator_and_normalised_term(store):
    flag = new_flag(store, flag="not-organism", contentSha256=SHA.upper(), comment="  a label  ", id=99)
    got = store.get_flag(flag.id).to_json()
    assert got["flag"] == "NOT_ORGANISM" and got["createdBy"] == "alice"
    assert got["contentSha256"] == SHA and got["comment"] == "a label"
    assert got["id"] == flag.id != 99  # server-managed fields are ignored
    assert got["supportedBy"] == [] and got["deleted"] is None


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"gbifID": None}, "gbifID is missing"),
        ({"gbifID": "x"}, "gbifID='x' is not a positive whole number"),
        ({"gbifID": True}, "gbifID must be a whole number"),
        ({"mediaIdentifier": ""}, "mediaIdentifier is missing"),
        ({"mediaIdentifier": "ftp://x/y.jpg"}, "is not an http(s) URL"),
        ({"flag": "BLURRY"}, "flag is 'BLURRY': use one of NOT_ORGANISM"),
        ({"contentSha256": "abc"}, "contentSha256='abc' is not a sha256"),
        ({"phash": "zz"}, "phash='zz' is not a perceptual hash"),
        ({"taxonKey": -1}, "taxonKey='-1' is not a positive whole number"),
    ],
)
def test_bad_input_is_one_message_naming_the_field(store, fields, needle):
    with pytest.raises(RuleError) as err:
        new_flag(store, **fields)
    assert needle in str(err.value)


def test_an_identical_live_flag_is_refused_naming_it(store):
    first = new_flag(store)
    with pytest.raises(DuplicateFlag) as err:
        new_flag(store, user="bob")
    assert err.value.existing_id == first.id and "support it instead" in str(err.value)
    # another term, or the same after deletion, is fine
    new_flag(store, flag="POOR_QUALITY")
    store.delete_flag(first.id, user="alice")
    assert new_flag(store).id != first.id


def test_writes_need_a_user_and_only_the_creator_or_an_admin_deletes(store):
    with pytest.raises(PermissionDenied, match="needs a user"):
        store.create_flag({"gbifID": 1, "mediaIdentifier": URL, "flag": "DUPLICATE"}, user=Actor(None))
    flag = new_flag(store)
    with pytest.raises(PermissionDenied, match="only its creator"):
        store.delete_flag(flag.id, user="bob")
    deleted = store.delete_flag(flag.id, user=Actor("root", admin=True))
    assert deleted.deleted is not None and deleted.deletedBy == "root"
    assert store.delete_flag(flag.id, user="alice").deletedBy == "root"  # twice changes nothing
    assert store.list_flags() == [] and store.get_flag(flag.id).id == flag.id
    assert len(store.list_flags(include_deleted=True)) == 1


def test_votes_are_exclusive_idempotent_and_need_a_live_flag(store):
    flag = new_flag(store)
    store.vote_flag(flag.id, "support", user="bob")
    store.vote_flag(flag.id, "support", user="bob")
    after = store.vote_flag(flag.id, "contest", user="carol")
    assert after.supportedBy == ["bob"] and after.contestedBy == ["carol"]
    after = store.vote_flag(flag.id, "contest", user="bob")
    assert after.supportedBy == [] and after.contestedBy == ["carol", "bob"]
    assert store.vote_flag(flag.id, "removeSupport", user="bob").contestedBy == ["carol", "bob"]
    assert store.vote_flag(flag.id, "removeContest", user="bob").contestedBy == ["carol"]
    with pytest.raises(RuleError, match="use support, contest or remove"):
        store.vote_flag(flag.id, "like", user="bob")
    with pytest.raises(NotFound, match="no image flag with id 999"):
        store.vote_flag(999, "support", user="bob")
    store.delete_flag(flag.id, user="alice")
    with pytest.raises(Conflict, match="is deleted"):
        store.vote_flag(flag.id, "support", user="bob")


def test_lists_filter_exactly_newest_first(store):
    a = new_flag(store, taxonKey=5219404)
    b = new_flag(store, gbifID=4012, mediaIdentifier=URL + "?r=2", flag="WRONG_TAXON", phash="ff" * 8)
    store.vote_flag(a.id, "support", user="bob")
    assert [f.id for f in store.list_flags()] == [b.id, a.id]
    assert [f.id for f in store.list_flags(gbifID="4011")] == [a.id]
    assert [f.id for f in store.list_flags(mediaIdentifier=URL + "?r=2")] == [b.id]
    assert [f.id for f in store.list_flags(flag="wrong_taxon")] == [b.id]
    assert [f.id for f in store.list_flags(phash="FF" * 8)] == [b.id]
    assert [f.id for f in store.list_flags(taxonKey=5219404)] == [a.id]
    assert [f.id for f in store.list_flags(supportedBy="bob")] == [a.id]
    assert store.list_flags(contestedBy="bob") == []
    assert [f.id for f in store.list_flags(limit=1, offset=1)] == [a.id]
    with pytest.raises(RuleError, match="unknown image flag filter"):
        store.list_flags(colour="red")
    with pytest.raises(RuleError, match="unknown image flag"):
        store.list_flags(flag="blurry")


def test_flags_have_their_own_counter_and_leave_the_rules_version_alone(store):
    rules_before, flags_before = store.version(), store.flags_version()
    flag = new_flag(store)
    after_create = store.flags_version()
    store.vote_flag(flag.id, "support", user="bob")
    after_vote = store.flags_version()
    store.vote_flag(flag.id, "support", user="bob")  # no change: no new version
    assert store.flags_version() == after_vote
    store.delete_flag(flag.id, user="alice")
    assert len({flags_before, after_create, after_vote, store.flags_version()}) == 4
    assert store.version() == rules_before


def test_compile_has_live_flags_with_vote_counts(store):
    a = new_flag(store, contentSha256=SHA, taxonKey=7)
    b = new_flag(store, flag="DUPLICATE")
    gone = new_flag(store, flag="POOR_QUALITY")
    store.vote_flag(a.id, "support", user="bob")
    store.vote_flag(a.id, "support", user="carol")
    store.vote_flag(a.id, "contest", user="dave")
    store.delete_flag(gone.id, user="alice")
    table = store.compile_flags()
    assert table.schema == FLAGS_TABLE_SCHEMA
    rows = {r["flag_id"]: r for r in table.to_pylist()}
    assert set(rows) == {a.id, b.id}
    assert (rows[a.id]["support"], rows[a.id]["contest"]) == (2, 1)
    assert rows[a.id]["content_sha256"] == SHA and rows[a.id]["taxon_key"] == 7
    assert (rows[b.id]["support"], rows[b.id]["contest"]) == (0, 0)


def test_an_empty_store_compiles_an_empty_table(store):
    table = store.compile_flags()
    assert table.num_rows == 0 and table.schema == FLAGS_TABLE_SCHEMA
