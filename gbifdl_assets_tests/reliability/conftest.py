"""The reliability suite: marker, the soak switch, and a Dagster project in a temporary folder.

Every test in this folder is marked ``reliability``. Tests marked ``soak`` (the 100,000-image load
run) take long: they are skipped unless ``GBIFDL_SOAK=1`` (``make soak`` sets it), so ``make test``
stays fast and ``make soak`` runs them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gbifdl_assets_tests.reliability.project import DagsterProject

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    soak_enabled = os.environ.get("GBIFDL_SOAK") == "1"
    skip_soak = pytest.mark.skip(reason="soak test: run it with `make soak` (sets GBIFDL_SOAK=1)")
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.reliability)
        if item.get_closest_marker("soak") and not soak_enabled:
            item.add_marker(skip_soak)


@pytest.fixture
def project_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., DagsterProject]]:
    """Makes a project (DAGSTER_HOME, data, specs, annotation DB) on a given GBIF API; every
    subprocess run a project started is killed (process group) at the end of the test."""
    made: list[DagsterProject] = []

    def make(api_url: str, **env: str) -> DagsterProject:
        root = tmp_path / f"project{len(made)}"
        root.mkdir()
        made.append(DagsterProject.create(root, api_url=api_url, monkeypatch=monkeypatch, **env))
        return made[-1]

    try:
        yield make
    finally:
        for created in made:
            created.stop_all()


@pytest.fixture
def project(project_factory, sandbox) -> DagsterProject:
    """A project on the session sandbox."""
    return project_factory(sandbox.api_url)
