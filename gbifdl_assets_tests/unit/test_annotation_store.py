"""The annotation store on SQLite: CRUD, GBIF's permissions, votes, soft delete, filters, compile, users.

``integration/test_annotation_store_postgres.py`` runs every ``test_*`` here again on PostgreSQL, so the
tests only use the ``store`` fixture (and plain pytest ones).
"""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
import sqlalchemy as sa

from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA
from gbifdl_assets.annotations.model import Project, Rule, RuleError
from gbifdl_assets.annotations.permissions import Actor, PermissionDenied
from gbifdl_assets.annotations.store import AnnotationStore, Conflict, DuplicateRule, MirroredRule, NotFound

LION, TIGER, FELIDAE = 5219404, 5219416, 9703
GREENLAND = "POLYGON ((-55 60, -20 60, -20 84, -55 84, -55 60))"
KENYA = "POLYGON ((34 -5, 42 -5, 42 5, 34 5, 34 -5))"
# an L shape whose bounding box covers (5 5) but which does not
ELL = "POLYGON ((0 0, 10 0, 10 2, 2 2, 2 10, 0 10, 0 0))"
DATASET = "50c9509d-22c7-4a22-a47d-8c48425ef4a7"


@pytest.fixture
def store(tmp_path):
    s = AnnotationStore(f"sqlite:///{tmp_path}/annotations.sqlite")
    yield s
    s.close()


def new_rule(store, user="alice", **fields):
    data = {"taxonKey": LION, "geometry": GREENLAND, "annotation": "SUSPICIOUS", **fields}
    return store.create_rule(data, user=user)


# ------------------------------------------------------------------------------------------ schema
def test_schema_is_created_once_and_store_id_is_kept(store):
    again = AnnotationStore(store.url)
    try:
        assert again.store_id == store.store_id
        assert again.version() == store.version()
    finally:
        again.close()
    with store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"ann_rules", "ann_votes", "ann_rulesets", "ann_projects", "ann_comments", "ann_users"} <= tables


def test_repr_hides_passwords():
    s = AnnotationStore.__new__(AnnotationStore)  # no connection needed to render it
    s.url = "postgresql+psycopg2://ann:s3cret@db.example.org/annotations"
    assert "s3cret" not in repr(s) and "***" in repr(s) and "db.example.org" in repr(s)


def test_store_is_usable_from_other_threads(store):
    import threading

    new_rule(store)
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(len(store.list_rules())))
    t.start()
    t.join(10)
    assert seen == [1]


def test_in_memory_store_is_one_database_for_every_thread():
    import threading

    s = AnnotationStore("sqlite://")
    try:
        new_rule(s)
        seen: list[int] = []
        t = threading.Thread(target=lambda: seen.append(len(s.list_rules())))
        t.start()
        t.join(10)
        assert seen == [1]
    finally:
        s.close()


# ------------------------------------------------------------------------------------------ rules
def test_create_rule_ignores_server_managed_fields(store):
    r = new_rule(
        store,
        id=999,
        createdBy="mallory",
        supportedBy=["x"],
        contestedBy=["y"],
        created="2001-01-01T00:00:00.000+00:00",
    )
    assert r.id != 999 and r.createdBy == "alice"
    assert r.supportedBy == [] and r.contestedBy == []
    assert r.created.year >= 2024 and r.deleted is None
    assert store.get_rule(r.id) == r


def test_rule_json_from_the_store_has_gbifs_shape(store):
    r = new_rule(store, basisOfRecord=["PRESERVED_SPECIMEN"], yearRange="1900,1950", datasetKey=DATASET)
    out = r.to_gbif()
    assert list(out) == list(Rule.model_fields)
    assert out["annotation"] == "SUSPICIOUS" and out["basisOfRecord"] == ["PRESERVED_SPECIMEN"]
    assert out["created"].endswith("+00:00") and len(out["created"]) == len("2025-11-20T08:09:43.949+00:00")
    assert Rule.model_validate(out).to_gbif() == out


def test_invalid_rule_is_refused_with_the_model_message(store):
    with pytest.raises(RuleError, match=r"geometry is not a valid polygon \(Self-intersection"):
        new_rule(store, geometry="POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))")
    assert store.list_rules() == []


def test_unknown_ids_raise_not_found(store):
    for call in (
        lambda: store.get_rule(42),
        lambda: store.get_ruleset(42),
        lambda: store.get_project(42),
        lambda: store.support(42, user="bob"),
        lambda: store.add_comment(42, "hello", user="bob"),
        lambda: store.list_comments(42),
        lambda: store.delete_rule(42, user="bob"),
    ):
        with pytest.raises(NotFound, match="42"):
            call()


def test_only_the_creator_or_an_admin_edits_or_deletes_a_rule(store):
    r = new_rule(store)
    with pytest.raises(PermissionDenied, match=r"bob may not change this rule: only its creator \(alice\)"):
        store.update_rule(r.id, {**r.model_dump(), "annotation": "NATIVE"}, user="bob")
    with pytest.raises(PermissionDenied, match="bob may not delete this rule"):
        store.delete_rule(r.id, user="bob")
    with pytest.raises(PermissionDenied, match="needs a user"):
        store.delete_rule(r.id, user=None)
    updated = store.update_rule(r.id, {**r.model_dump(), "annotation": "native"}, user="alice")
    assert updated.annotation == "NATIVE" and updated.created == r.created
    assert store.rule_info(r.id).modifiedBy == "alice"
    deleted = store.delete_rule(r.id, user=Actor("root", admin=True))
    assert deleted.deletedBy == "root" and deleted.deleted is not None


def test_admin_rights_come_from_the_users_table(store):
    r = new_rule(store)
    store.add_user("root", "correct horse", admin=True)
    assert store.delete_rule(r.id, user="root").deletedBy == "root"


def test_deleted_rule_cannot_be_changed_voted_or_commented_but_is_still_readable(store):
    r = new_rule(store)
    store.delete_rule(r.id, user="alice")
    again = store.delete_rule(r.id, user="alice")  # idempotent
    assert again.deleted is not None
    with pytest.raises(Conflict, match="is deleted"):
        store.update_rule(r.id, r, user="alice")
    with pytest.raises(Conflict, match="is deleted"):
        store.support(r.id, user="bob")
    with pytest.raises(Conflict, match="is deleted"):
        store.add_comment(r.id, "hi", user="bob")
    assert store.get_rule(r.id).deleted is not None
    assert store.list_rules() == []
    assert [x.id for x in store.list_rules(include_deleted=True)] == [r.id]


# ------------------------------------------------------------------------------------------ votes
def test_votes_are_exclusive_per_user_and_idempotent(store):
    r = new_rule(store)
    assert store.support(r.id, user="bob").supportedBy == ["bob"]
    assert store.support(r.id, user="bob").supportedBy == ["bob"]
    v = store.contest(r.id, user="bob")
    assert (v.supportedBy, v.contestedBy) == ([], ["bob"])
    store.support(r.id, user="carol")
    v = store.contest(r.id, user="dave")
    assert (v.supportedBy, v.contestedBy) == (["carol"], ["bob", "dave"])
    # removeSupport removes only a support, removeContest only a contest (as GBIF)
    assert store.remove_support(r.id, user="bob").contestedBy == ["bob", "dave"]
    v = store.remove_contest(r.id, user="bob")
    assert (v.supportedBy, v.contestedBy) == (["carol"], ["dave"])
    v = store.vote(r.id, "remove", user="carol")
    assert (v.supportedBy, v.contestedBy) == ([], ["dave"])
    with pytest.raises(RuleError, match="use support, contest or remove"):
        store.vote(r.id, "like", user="carol")
    with pytest.raises(PermissionDenied, match="needs a user"):
        store.support(r.id, user=None)


def test_votes_table_allows_one_row_per_user(store):
    r = new_rule(store)
    store.support(r.id, user="bob")
    store.contest(r.id, user="bob")
    with store.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM ann_votes WHERE rule_id = :r"), {"r": r.id}).scalar()
    assert n == 1


# ------------------------------------------------------------------------------------------ comments
def test_comments_crud_and_permissions(store):
    r = new_rule(store)
    c1 = store.add_comment(r.id, "Lions in Greenland are zoo animals", user="bob")
    time.sleep(0.002)
    c2 = store.add_comment(r.id, {"comment": "agreed"}, user="carol")
    assert [c.id for c in store.list_comments(r.id)] == [c2.id, c1.id]  # newest first
    assert c1.to_gbif()["ruleId"] == r.id and c1.createdBy == "bob"
    with pytest.raises(PermissionDenied, match="carol may not delete this comment"):
        store.delete_comment(r.id, c1.id, user="carol")
    with pytest.raises(NotFound, match="has no comment"):
        store.delete_comment(r.id + 1, c1.id, user="bob")
    assert store.delete_comment(r.id, c1.id, user="bob").deletedBy == "bob"
    assert [c.id for c in store.list_comments(r.id)] == [c2.id]
    assert len(store.list_comments(r.id, include_deleted=True)) == 2


# ------------------------------------------------------------------------------------------ projects, rulesets
def test_projects_members_edit_creator_deletes_with_cascade(store):
    p = store.create_project({"name": "Big cats", "members": ["bob"]}, user="alice")
    assert p.members == ["alice", "bob"] and p.createdBy == "alice"
    rs = store.create_ruleset({"name": "lions", "projectId": p.id}, user="bob")
    other_rs = store.create_ruleset({"name": "elsewhere"}, user="alice")
    r1 = new_rule(store, user="bob", rulesetId=rs.id)
    r2 = new_rule(store, user="alice", projectId=p.id)
    r3 = new_rule(store, user="alice", rulesetId=other_rs.id)
    assert store.get_rule(r1.id).projectId == p.id  # implied by the ruleset

    with pytest.raises(PermissionDenied, match=r"carol may not edit this project: only members of project"):
        store.update_project(p.id, {"name": "x"}, user="carol")
    renamed = store.update_project(p.id, {"name": "Felids", "description": "d"}, user="bob")
    assert renamed.name == "Felids" and renamed.members == ["alice", "bob"] and renamed.modifiedBy == "bob"
    with pytest.raises(PermissionDenied, match=r"only its creator \(alice\)"):
        store.delete_project(p.id, user="bob")

    c = store.add_comment(r1.id, "note", user="carol")
    gone = store.delete_project(p.id, user="alice")
    assert gone.deleted is not None and gone.deletedBy == "alice"
    assert store.get_ruleset(rs.id).deleted is not None
    assert store.get_rule(r1.id).deleted is not None and store.get_rule(r2.id).deleted is not None
    assert store.get_rule(r3.id).deleted is None  # another ruleset: untouched
    assert store.get_comment(c.id).deleted is None  # comments never cascade (as GBIF)
    assert store.list_projects() == []
    assert [x.id for x in store.list_rules()] == [r3.id]
    with pytest.raises(Conflict, match="is deleted"):
        store.update_project(p.id, {"name": "again"}, user="alice")


def test_ruleset_permissions_membership_and_cascade(store):
    p = store.create_project({"name": "cats"}, user="alice")
    with pytest.raises(
        PermissionDenied, match=r"bob may not create a ruleset in it: only members of project"
    ):
        store.create_ruleset({"name": "x", "projectId": p.id}, user="bob")
    with pytest.raises(NotFound, match="projectId 999"):
        store.create_ruleset({"name": "x", "projectId": 999}, user="alice")
    rs = store.create_ruleset({"name": "lions", "projectId": p.id}, user="alice")
    assert rs.members == ["alice"]
    with pytest.raises(
        PermissionDenied, match=r"bob may not add rules to it: only members of ruleset 'lions'"
    ):
        new_rule(store, user="bob", rulesetId=rs.id)
    # project members have the rights of ruleset members (GBIF copies members onto rulesets)
    store.update_project(p.id, {"name": "cats", "members": ["alice", "bob"]}, user="alice")
    r = new_rule(store, user="bob", rulesetId=rs.id)
    updated = store.update_ruleset(
        rs.id, {"name": "Lions", "projectId": p.id, "members": ["bob"]}, user="bob"
    )
    assert updated.members == ["bob"] and updated.name == "Lions"
    with pytest.raises(PermissionDenied, match="only its creator"):
        store.delete_ruleset(rs.id, user="bob")
    keep = new_rule(store, user="alice")
    store.delete_ruleset(rs.id, user="alice")
    assert store.get_rule(r.id).deletedBy == "alice"
    assert store.get_rule(keep.id).deleted is None
    with pytest.raises(Conflict, match="ruleset .* is deleted"):
        new_rule(store, user="alice", rulesetId=rs.id)


def test_a_ruleset_leaves_its_project_only_with_the_projects_permission(store):
    cats = store.create_project({"name": "cats"}, user="alice")
    dogs = store.create_project({"name": "dogs"}, user="bob")
    rs = store.create_ruleset({"name": "lions", "projectId": cats.id}, user="alice")
    store.update_ruleset(
        rs.id, {"name": "lions", "projectId": cats.id, "members": ["alice", "bob"]}, user="alice"
    )
    # bob, a ruleset member outside the project, can neither detach it (a PUT without projectId)
    # nor move it into his own project: both take it from the project's members (issue 21)
    for body in ({"name": "lions"}, {"name": "lions", "projectId": dogs.id}):
        with pytest.raises(
            PermissionDenied, match=rf"bob may not move a ruleset out of it: .*project {cats.id}"
        ):
            store.update_ruleset(rs.id, body, user="bob")
    assert store.get_ruleset(rs.id).projectId == cats.id
    # alice (a member of cats, not of dogs) may detach it, not move it into dogs
    with pytest.raises(PermissionDenied, match=rf"alice may not move a ruleset into it: .*project {dogs.id}"):
        store.update_ruleset(rs.id, {"name": "lions", "projectId": dogs.id}, user="alice")
    assert store.update_ruleset(rs.id, {"name": "lions"}, user="alice").projectId is None


def test_an_identical_live_local_rule_is_refused_with_its_id(store):
    first = new_rule(store, basisOfRecord=["FOSSIL_SPECIMEN", "LIVING_SPECIMEN"])
    with pytest.raises(DuplicateRule, match=rf"rule {first.id}") as err:
        new_rule(store, user="bob", basisOfRecord=["LIVING_SPECIMEN", "FOSSIL_SPECIMEN"])
    assert err.value.existing_id == first.id and isinstance(err.value, Conflict)
    rs = store.create_ruleset({"name": "elsewhere"}, user="alice")
    assert new_rule(store, rulesetId=rs.id, basisOfRecord=["FOSSIL_SPECIMEN", "LIVING_SPECIMEN"]).id
    store.delete_rule(first.id, user="alice")
    assert new_rule(store, basisOfRecord=["FOSSIL_SPECIMEN", "LIVING_SPECIMEN"]).id != first.id


def test_rule_project_must_match_its_ruleset(store):
    p1 = store.create_project({"name": "a"}, user="alice")
    p2 = store.create_project({"name": "b"}, user="alice")
    rs = store.create_ruleset({"name": "lions", "projectId": p1.id}, user="alice")
    with pytest.raises(
        RuleError, match=rf"rulesetId {rs.id} belongs to project {p1.id}, not projectId {p2.id}"
    ):
        new_rule(store, rulesetId=rs.id, projectId=p2.id)


def test_list_projects_and_rulesets_filters(store):
    a = store.create_project({"name": "Big Cats"}, user="alice")
    b = store.create_project({"name": "plants", "members": ["bob"]}, user="carol")
    assert [p.id for p in store.list_projects()] == [b.id, a.id]
    assert [p.id for p in store.list_projects(member="bob")] == [b.id]
    assert [p.id for p in store.list_projects(name="cats")] == [a.id]
    r1 = store.create_ruleset({"name": "lions", "projectId": a.id}, user="alice")
    r2 = store.create_ruleset({"name": "loose"}, user="bob")
    assert [r.id for r in store.list_rulesets(projectId=a.id)] == [r1.id]
    assert [r.id for r in store.list_rulesets(projectId="null")] == [r2.id]
    assert [r.id for r in store.list_rulesets(member="bob")] == [r2.id]
    assert store.find_ruleset("lions").id == r1.id and store.find_ruleset(str(r2.id)).id == r2.id
    with pytest.raises(NotFound, match=r"no ruleset named 'tigers'; there are: lions, loose"):
        store.find_ruleset("tigers")
    store.create_ruleset({"name": "lions"}, user="bob")
    with pytest.raises(Conflict, match="2 rulesets are named 'lions'"):
        store.find_ruleset("lions")
    assert store.ensure_ruleset("new", user="dave").members == ["dave"]
    assert isinstance(store.ensure_project("Big Cats", user="x"), Project)


# ------------------------------------------------------------------------------------------ list filters
@pytest.fixture
def populated(store):
    p = store.create_project({"name": "cats"}, user="alice")
    rs = store.create_ruleset({"name": "lions", "projectId": p.id}, user="alice")
    rules = {
        "gl": new_rule(store, rulesetId=rs.id, basisOfRecord=["PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"]),
        "ke": new_rule(store, geometry=KENYA, annotation="NATIVE", datasetKey=DATASET, user="bob"),
        "tiger": new_rule(store, taxonKey=TIGER, geometry=ELL, yearRange="*,1950"),
        "felid": new_rule(
            store, taxonKey=FELIDAE, basisOfRecord=["LIVING_SPECIMEN"], basisOfRecordNegated=True
        ),
        "any": new_rule(store, taxonKey=None, datasetKey=DATASET, geometry=KENYA),
    }
    store.support(rules["gl"].id, user="carol")
    store.contest(rules["ke"].id, user="carol")
    store.add_comment(rules["tiger"].id, "100% in ZOOS", user="dave")
    deleted = store.add_comment(rules["ke"].id, "zoo", user="dave")
    store.delete_comment(rules["ke"].id, deleted.id, user="dave")
    return {"project": p, "ruleset": rs, **rules}


def ids(rules):
    return [r.id for r in rules]


def test_list_is_newest_first_with_limit_offset(store, populated):
    all_ids = ids(store.list_rules())
    assert all_ids == sorted(all_ids, reverse=True) and len(all_ids) == 5
    assert ids(store.list_rules(limit=2)) == all_ids[:2]
    assert ids(store.list_rules(limit=2, offset=2)) == all_ids[2:4]
    assert ids(store.list_rules(limit=0)) == []
    assert ids(list(store.iter_rules(batch=2))) == all_ids
    with pytest.raises(RuleError, match="negative"):
        store.list_rules(offset=-1)


def test_list_filters_as_gbif(store, populated):
    P = populated  # noqa: N806
    assert ids(store.list_rules(taxonKey=LION)) == [P["ke"].id, P["gl"].id]  # exact key, no descendants
    assert ids(store.list_rules(taxonKey=FELIDAE)) == [P["felid"].id]
    assert ids(store.list_rules(taxonKey="null")) == [P["any"].id]
    assert ids(store.list_rules(datasetKey=DATASET)) == [P["any"].id, P["ke"].id]
    assert set(ids(store.list_rules(datasetKey="null"))) == {P["gl"].id, P["tiger"].id, P["felid"].id}
    assert ids(store.list_rules(rulesetId=P["ruleset"].id)) == [P["gl"].id]
    assert ids(store.list_rules(projectId=P["project"].id)) == [P["gl"].id]
    assert len(store.list_rules(rulesetId="null")) == 4
    assert ids(store.list_rules(basisOfRecord="FOSSIL_SPECIMEN")) == [P["gl"].id]
    assert ids(store.list_rules(basisOfRecord="LIVING_SPECIMEN,FOSSIL_SPECIMEN")) == [
        P["felid"].id,
        P["gl"].id,
    ]
    assert ids(store.list_rules(basisOfRecord=["LIVING_SPECIMEN", "PRESERVED_SPECIMEN"])) == [
        P["felid"].id,
        P["gl"].id,
    ]
    assert set(ids(store.list_rules(basisOfRecord="null"))) == {P["ke"].id, P["tiger"].id, P["any"].id}
    assert ids(store.list_rules(basisOfRecordNegated="true")) == [P["felid"].id]
    assert ids(store.list_rules(yearRange="*,1950")) == [P["tiger"].id]
    assert ids(store.list_rules(annotation="native")) == [P["ke"].id]
    assert ids(store.list_rules(createdBy="bob")) == [P["ke"].id]
    assert ids(store.list_rules(supportedBy="carol")) == [P["gl"].id]
    assert ids(store.list_rules(contestedBy="carol")) == [P["ke"].id]
    assert ids(store.list_rules(comment="zoos")) == [P["tiger"].id]  # case-insensitive substring
    assert ids(store.list_rules(comment="100%")) == [P["tiger"].id]  # % is literal
    assert ids(store.list_rules(comment="0%")) == [P["tiger"].id]
    assert ids(store.list_rules(comment="_")) == []  # _ is literal too
    assert ids(store.list_rules(comment="zoo", createdBy="bob")) == []  # deleted comments do not count
    with pytest.raises(RuleError, match="unknown rule filter"):
        store.list_rules(taxon=LION)
    with pytest.raises(RuleError, match="taxonKey='lion' is not a number"):
        store.list_rules(taxonKey="lion")


def test_geometry_filter_is_a_real_intersection(store, populated):
    P = populated  # noqa: N806
    assert ids(store.list_rules(geometry="POINT (-30 70)")) == [P["felid"].id, P["gl"].id]
    assert ids(store.list_rules(geometry="POINT (38 0)")) == [P["any"].id, P["ke"].id]
    # inside the L's bounding box but not the L: the bbox prefilter alone would say yes
    assert ids(store.list_rules(geometry="POINT (5 5)")) == []
    assert ids(store.list_rules(geometry="POINT (1 5)")) == [P["tiger"].id]
    # a polygon touching Greenland's edge intersects it
    touching = "POLYGON ((-20 70, -10 70, -10 75, -20 75, -20 70))"
    assert set(ids(store.list_rules(geometry=touching))) == {P["gl"].id, P["felid"].id}
    world = "POLYGON ((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"
    assert ids(store.list_rules(geometry=world, limit=2, offset=1)) == ids(store.list_rules())[1:3]
    assert ids(store.list_rules(geometry=world, taxonKey=LION)) == [P["ke"].id, P["gl"].id]
    with pytest.raises(RuleError, match="geometry filter is not valid WKT"):
        store.list_rules(geometry="POLYGON ((")


# ------------------------------------------------------------------------------------------ compile, version
def test_compile_gives_the_rules_table(store, populated):
    P = populated  # noqa: N806
    store.delete_rule(P["felid"].id, user="alice")
    table = store.compile()
    assert table.schema.equals(RULES_TABLE_SCHEMA)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert set(rows) == {f"local:{P[k].id}" for k in ("gl", "ke", "tiger", "any")}
    gl = rows[f"local:{P['gl'].id}"]
    assert gl["source"] == "local" and gl["ruleset"] == "lions" and gl["project"] == "cats"
    assert gl["label"] == "SUSPICIOUS" and gl["supportCount"] == 1 and gl["contestCount"] == 0
    assert gl["basisOfRecord"] == ["PRESERVED_SPECIMEN", "FOSSIL_SPECIMEN"]
    ke = rows[f"local:{P['ke'].id}"]
    assert ke["contestCount"] == 1 and ke["datasetKey"] == DATASET and ke["ruleset"] == "local"
    assert rows[f"local:{P['any'].id}"]["taxonKey"] is None
    assert rows[f"local:{P['tiger'].id}"]["yearRange"] == "*,1950"
    assert table.column("id").to_pylist() == sorted(table.column("id").to_pylist(), key=lambda s: int(s[6:]))


def test_compile_selects_rulesets_by_name_id_or_source(store, populated):
    P = populated  # noqa: N806
    assert store.compile(["lions"]).column("id").to_pylist() == [f"local:{P['gl'].id}"]
    assert store.compile([P["ruleset"].id]).num_rows == 1
    assert store.compile(["local"]).num_rows == 4  # rules outside any ruleset
    assert store.compile([]).num_rows == 0
    with pytest.raises(NotFound, match=r"no ruleset 'tigers' in the store; there are: lions, local"):
        store.compile(["tigers"])
    store.create_ruleset({"name": "empty"}, user="alice")
    assert store.compile(["empty"]).num_rows == 0


def test_compile_of_an_empty_store(store):
    table = store.compile()
    assert table.num_rows == 0 and table.schema.equals(RULES_TABLE_SCHEMA)


def test_version_changes_whenever_the_compiled_rules_can_change(store):
    seen = [store.version()]

    def changed() -> None:
        v = store.version()
        assert v not in seen, "version did not change"
        seen.append(v)

    p = store.create_project({"name": "cats"}, user="alice")
    rs = store.create_ruleset({"name": "lions", "projectId": p.id}, user="alice")
    r = new_rule(store, rulesetId=rs.id)
    changed()
    store.update_rule(r.id, {**r.model_dump(), "yearRange": "1900,*"}, user="alice")
    changed()
    store.support(r.id, user="bob")
    changed()
    before = store.version()
    store.support(r.id, user="bob")  # no change, no new version
    store.list_rules()
    store.compile()
    store.add_comment(r.id, "comments do not change the rules table", user="bob")
    assert store.version() == before
    store.update_ruleset(rs.id, {"name": "Lions", "projectId": p.id}, user="alice")  # the name is compiled
    changed()
    store.update_project(p.id, {"name": "Cats"}, user="alice")
    changed()
    store.delete_project(p.id, user="alice")
    changed()
    assert store.version().startswith(store.store_id + ":")


def test_a_new_database_never_repeats_a_version(tmp_path):
    a = AnnotationStore(f"sqlite:///{tmp_path}/a.sqlite")
    b = AnnotationStore(f"sqlite:///{tmp_path}/b.sqlite")
    try:
        assert a.version() != b.version()
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------------------------------ users
def test_users_have_salted_slow_hashes_never_the_password(store):
    store.add_user("alice", "correct horse battery")
    store.add_user("bob", "correct horse battery", admin=True)
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT username, password_hash FROM ann_users")).all())
    assert all("correct" not in h for h in rows.values())
    assert rows["alice"] != rows["bob"]  # salted
    assert rows["alice"].startswith("scrypt$32768$8$1$")
    assert store.verify_user("alice", "correct horse battery")
    assert not store.verify_user("alice", "correct horse battery!")
    assert not store.verify_user("nobody", "correct horse battery")
    assert not store.verify_user("", "x")
    assert store.get_user("bob").admin and not store.get_user("alice").admin
    assert store.get_user("nobody") is None
    assert [u.username for u in store.list_users()] == ["alice", "bob"]
    assert store.actor("bob") == Actor("bob", admin=True)
    with pytest.raises(Conflict, match="user alice exists already"):
        store.add_user("alice", "another password")
    with pytest.raises(RuleError, match="at least 8 characters"):
        store.add_user("carol", "short")
    with pytest.raises(RuleError, match="username"):
        store.add_user("bad name", "long enough pw")
    store.set_password("alice", "new password 1")
    assert store.verify_user("alice", "new password 1") and not store.verify_user(
        "alice", "correct horse battery"
    )
    with pytest.raises(NotFound):
        store.set_password("nobody", "whatever123")


# ------------------------------------------------------------------------------------------ mirroring
def _mirror(rule: Rule, ext: str, **kw) -> MirroredRule:
    return MirroredRule(rule=rule, external_id=ext, created_by="jwaller", **kw)


def test_mirrored_rules_upsert_idempotently_and_are_read_only_here(store):
    r = Rule.model_validate({"taxonKey": LION, "geometry": GREENLAND, "annotation": "SUSPICIOUS"})
    counts = store.upsert_mirrored_rules(
        [_mirror(r, "60", votes=(["a"], ["b"]))], source="gbif", origin="https://example.org/annotation"
    )
    assert counts == {"created": 1, "updated": 0, "unchanged": 0}
    v1 = store.version()
    counts = store.upsert_mirrored_rules(
        [_mirror(r, "60", votes=(["a"], ["b"]))], source="gbif", origin="https://example.org/annotation"
    )
    assert counts == {"created": 0, "updated": 0, "unchanged": 1} and store.version() == v1
    changed = r.model_copy(update={"annotation": "NATIVE"})
    counts = store.upsert_mirrored_rules(
        [_mirror(changed, "60", votes=(["a", "c"], []))],
        source="gbif",
        origin="https://example.org/annotation",
    )
    assert counts["updated"] == 1 and store.version() != v1
    (local,) = store.list_rules()
    assert local.annotation == "NATIVE" and local.supportedBy == ["a", "c"] and local.contestedBy == []
    info = store.rule_info(local.id)
    assert (info.source, info.external_id, info.compiled_id) == ("gbif", "60", "gbif:60")
    assert store.compile().column("id").to_pylist() == ["gbif:60"]
    with pytest.raises(PermissionDenied, match="mirrored from gbif"):
        store.update_rule(local.id, local, user="jwaller")
    with pytest.raises(PermissionDenied, match="mirrored from gbif"):
        store.delete_rule(local.id, user="jwaller")
    # local votes on a mirrored rule survive a re-pull
    store.contest(local.id, user="localuser")
    store.upsert_mirrored_rules(
        [_mirror(changed, "60", votes=(["a", "c"], []))],
        source="gbif",
        origin="https://example.org/annotation",
    )
    assert store.get_rule(local.id).contestedBy == ["localuser"]
    assert (
        store.retire_mirrored(
            "rule", source="gbif", origin="https://example.org/annotation", keep=[], who="sync"
        )
        == 1
    )
    assert store.list_rules() == [] and store.get_rule(local.id).deletedBy == "sync"


def test_metrics(store, populated):
    m = store.rule_metrics()
    assert m == {
        "username": None,
        "ruleCount": 5,
        "datasetCount": 1,
        "projectCount": 1,
        "taxonCount": 3,
        "supportCount": 1,
        "contestCount": 1,
    }
    assert store.rule_metrics(username="bob")["ruleCount"] == 1


def test_compile_table_is_valid_arrow(store, populated):
    table = store.compile()
    assert isinstance(table, pa.Table)
    table.validate(full=True)
