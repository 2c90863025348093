"""GBIF credentials never reach logs, metadata, run config or stored data.

A download-source training set is materialized by ``dagster asset materialize`` with
GBIF_USERNAME/GBIF_PASSWORD set (the sandbox accepts exactly that password), and once more (in this
process) with a wrong password: the failure message must not echo it. Then every byte the runs left
behind is searched for both passwords: the instance (event log, run storage with run config and asset metadata,
compute logs), the data folder (snapshots, download records) and the runs' stdout/stderr.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from gbifdl_assets.sandbox import SandboxConfig, start_sandbox


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.timeout(240)
def test_gbif_password_appears_nowhere(project_factory) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    config = SandboxConfig(
        occurrences=5_000, seed=3, username="reliability-user", password=password, download_seconds=(0.2, 0.2)
    )
    with start_sandbox(config) as sandbox:
        project = project_factory(sandbox.api_url, GBIF_USERNAME="reliability-user", GBIF_PASSWORD=password)
        project.write_spec("secret", "taxa: [Animalia]\nsource: download\n")
        project.add_partition("secret")
        assets = "species_list,gbif_download,occurrence_snapshot"
        fast_poll = {"ops": {"occurrence_snapshot": {"config": {"poll_seconds": 0.2}}}}
        ok = project.start(assets, "secret", run_config=fast_poll)
        assert ok.wait(timeout=180) == 0, ok.log_text()[-3000:]
        assert "RUN_SUCCESS" in ok.log_text()

        # the wrong password in this process: its failure goes to the same event log
        project.write_spec("secret-wrong", "taxa: [Animalia]\nsource: download\n")
        project.add_partition("secret-wrong")
        project.set_env(GBIF_PASSWORD=wrong)
        bad = project.materialize(["species_list", "gbif_download"], "secret-wrong", raise_on_error=False)
        assert not bad.success
        failure = bad.get_step_failure_events()[0].event_specific_data.error.message
        assert "gbif_download[secret-wrong]" in failure, failure
        assert "401" in failure or "password" in failure.lower(), failure

    with project.instance() as instance:
        runs = instance.get_runs()
        assert len(runs) == 2
        events = [
            record.event_log_entry.to_json()
            for run in runs
            for record in instance.get_records_for_run(run.run_id, limit=10_000).records
        ]
        run_configs = [json.dumps(run.run_config) for run in runs]
    # the search does see what the runs recorded: the download key is in the event log and the data
    key = json.loads((project.data / "downloads" / "secret" / "request.json").read_text())["key"]
    assert any(key in event for event in events) and _files_containing(project.home, key.encode())
    for secret in (password, wrong):
        assert not [e for e in events if secret in e], "a password is in the event log"
        assert not [c for c in run_configs if secret in c], "a password is in a run config"
        leaked = _files_containing(project.root, secret.encode())
        assert leaked == [], f"a password was written to {leaked}"
