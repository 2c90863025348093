"""Image flags in the annotation store on the real PostgreSQL server: every SQLite test again."""

from __future__ import annotations

import pytest

from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets_tests.unit import test_image_flags_store as cases

globals().update({name: getattr(cases, name) for name in dir(cases) if name.startswith("test_")})
new_flag = cases.new_flag


@pytest.fixture
def store(pg_database):
    s = AnnotationStore(pg_database.dsn)
    yield s
    s.close()


def test_flags_really_run_on_postgresql(store):
    assert store.engine.dialect.name == "postgresql"
    assert new_flag(store).id > 0
