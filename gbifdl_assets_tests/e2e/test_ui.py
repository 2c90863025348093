"""The Dagster UI as deployed: a gRPC code server (deploy/'s user-code container) serving the definitions
to a webserver on the PostgreSQL instance of deploy/dagster.yaml; /server_info, a GraphQL listing of our
assets, checks, sensors and schedules, and a headless Chromium screenshot of the asset graph (the one
the README shows: gbifdl_assets_tests/e2e/screenshots/asset-graph.png).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from PIL import Image

from gbifdl_assets_tests.harness.dagster_services import (
    dagster_env,
    dagster_webserver,
    grpc_code_server,
    initialize_instance,
    write_workspace,
)
from gbifdl_assets_tests.harness.debian import ensure_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = Path(__file__).parent / "screenshots" / "asset-graph.png"
SELECTOR = '{repositoryName: "__repository__", repositoryLocationName: "gbifdl_assets"}'
LISTING = f"""
query {{
  assetNodes {{
    assetKey {{ path }}
    groupName
    isPartitioned
    assetChecksOrError {{ ... on AssetChecks {{ checks {{ name }} }} }}
  }}
  sensorsOrError(repositorySelector: {SELECTOR}) {{
    ... on Sensors {{ results {{ name sensorState {{ status }} }} }}
  }}
  schedulesOrError(repositorySelector: {SELECTOR}) {{
    ... on Schedules {{ results {{ name cronSchedule scheduleState {{ status }} }} }}
  }}
}}
"""
ASSETS = {
    "species_list",
    "gbif_download",
    "occurrence_snapshot",
    "annotation_rulesets",
    "annotated_occurrences",
    "balanced_manifest",
    "image_store",
    "training_export",
}


@pytest.fixture
def deploy_env(pg_database, tmp_path, monkeypatch) -> dict[str, str]:
    """deploy/dagster.yaml as it ships, on a fresh PostgreSQL database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    pg = {
        "DAGSTER_PG_USERNAME": pg_database.user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_HOST": pg_database.host,
        "DAGSTER_PG_PORT": str(pg_database.port),
        "DAGSTER_PG_DB": pg_database.name,
    }
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return dagster_env(home, **pg, GBIFDL_DATA_URI=str(tmp_path / "data"))


def _screenshot(url: str, out: Path, profile: Path) -> None:
    chromium = ensure_command("chromium", "chromium")
    proc = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=20000",
            f"--screenshot={out}", url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]


def test_code_server_webserver_graphql_and_asset_graph_screenshot(deploy_env, tmp_path):
    initialize_instance(deploy_env)
    logs = tmp_path / "logs"
    with grpc_code_server(deploy_env, log_dir=logs) as code:
        workspace = write_workspace(tmp_path / "workspace.yaml", grpc_port=code.port)
        # the same shape as deploy/workspace.yaml: one grpc_server entry named gbifdl_assets
        deployed = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())["load_from"][0]
        ours = yaml.safe_load(workspace.read_text())["load_from"][0]
        assert set(deployed) == set(ours) == {"grpc_server"}
        assert deployed["grpc_server"]["location_name"] == ours["grpc_server"]["location_name"]

        with dagster_webserver(deploy_env, workspace, log_dir=logs) as web:
            info = requests.get(f"{web.url}/server_info", timeout=10)
            assert info.status_code == 200
            assert info.json()["dagster_webserver_version"] == "1.13.27"

            data = web.graphql(LISTING)
            nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
            assert set(nodes) == ASSETS
            assert nodes["image_store"]["isPartitioned"] and not nodes["annotation_rulesets"]["isPartitioned"]
            checks = {
                f"{key}.{check['name']}"
                for key, node in nodes.items()
                for check in (node["assetChecksOrError"].get("checks") or [])
            }
            assert "image_store.complete_enough" in checks and len(checks) >= 3, checks
            sensors = {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}
            assert sensors == {
                "training_set_specs_sensor": "RUNNING",
                "gbif_download_sensor": "RUNNING",
                "annotation_rules_sensor": "RUNNING",
                "gbifdl_automation": "RUNNING",
            }
            schedules = {s["name"]: s for s in data["schedulesOrError"]["results"]}
            assert schedules["training_set_refresh_schedule"]["scheduleState"]["status"] == "RUNNING"

            # The lineage page collapses groups; its `expanded` query parameter opens them (group ids are
            # "global@global:<group>" on a single-location instance).
            groups = sorted({node["groupName"] for node in nodes.values()})
            expanded = ",".join(f"global@global:{group}" for group in groups)
            shot = tmp_path / "asset-graph.png"
            _screenshot(f"{web.url}/asset-groups?expanded={expanded}", shot, tmp_path / "chromium-profile")

    # a rendered graph, not a blank page or a spinner: many colours, and wide enough
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 900)
    colours = image.resize((350, 225)).getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 50, "the screenshot is (almost) one colour"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOT)
