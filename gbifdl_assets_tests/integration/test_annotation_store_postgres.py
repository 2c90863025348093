"""The annotation store on the real PostgreSQL server: every SQLite store test again, plus concurrency.

The behaviour tests live in ``unit/test_annotation_store.py`` and use only a ``store`` fixture; this
module provides that fixture on a fresh PostgreSQL database per test and collects them again.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.unit import test_annotation_store as cases

# collect every store test here too (they run against the ``store`` fixture below)
globals().update({name: getattr(cases, name) for name in dir(cases) if name.startswith("test_")})
populated = cases.populated
new_rule = cases.new_rule
# these build their own SQLite stores: nothing PostgreSQL-specific to learn from them
del globals()["test_a_new_database_never_repeats_a_version"]
del globals()["test_in_memory_store_is_one_database_for_every_thread"]


@pytest.fixture
def store(pg_database):
    s = AnnotationStore(pg_database.dsn)
    yield s
    s.close()


def test_store_really_runs_on_postgresql(store):
    assert store.engine.dialect.name == "postgresql"
    with store.engine.connect() as conn:
        assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar()
        # timestamps are stored as timestamps, not text
        kind = conn.execute(
            sa.text(
                "SELECT data_type FROM information_schema.columns WHERE table_name = 'ann_rules' AND column_name = 'created'"
            )
        ).scalar()
    assert kind.startswith("timestamp")


def test_concurrent_votes_and_rules_keep_the_counter_and_exclusivity(store, pg_database):
    rule = new_rule(store)
    stores = [AnnotationStore(pg_database.dsn) for _ in range(4)]
    errors: list[BaseException] = []

    def work(i: int, s: AnnotationStore) -> None:
        try:
            for j in range(10):
                s.vote(rule.id, "support" if (i + j) % 2 else "contest", user=f"user{i}")
                # distinct rules: identical ones are refused now (issue 21)
                new_rule(s, user=f"user{i}", yearRange=f"{1000 + 10 * i + j},*")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert not errors, errors
    final = store.get_rule(rule.id)
    assert len(final.supportedBy) + len(final.contestedBy) == 4
    assert not set(final.supportedBy) & set(final.contestedBy)
    assert len(store.list_rules(limit=1000)) == 41
    # every change advanced the counter exactly once: 1 + 40 rules, and each vote changed something
    assert int(store.version().rsplit(":", 1)[1]) == 1 + 40 + 40
