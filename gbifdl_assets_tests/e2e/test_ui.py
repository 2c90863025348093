"""The Dagster UI as deployed and as a user reads it, in headless Chromium.

One instance on PostgreSQL (deploy/dagster.yaml as it ships), the demo training set materialized on
it against the offline sandbox (in-process, as ``make demo`` does; the other example specs registered
as partitions, as the spec sensor does), then deploy/'s processes in front of it: a gRPC code server,
the webserver and the daemon. The tests walk the pages a user uses: the asset graph, a training set's
partitions, the metadata of the manifest, the image store and the export, the image_store partition
grid, the checks, the sensors and the schedule. Each page is screenshotted into
gbifdl_assets_tests/e2e/screenshots/ (the README shows them) and its rendered DOM is checked for what
the page must say; look at the PNGs after a change to the metadata or the definitions.

The daemon runs so that the sensor and schedule pages show a deployment (ticks, no "daemon is not
running" banner). Before it starts, the spec and rule sensors are given the cursors they compute now,
as a deployment that has been running since the demo would have: their first ticks launch nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from PIL import Image

from gbifdl_assets.defs.annotations import annotation_rules_sensor, annotation_rulesets
from gbifdl_assets.defs.assets import ALL_ASSETS, TRAINING_SET_STAGES
from gbifdl_assets.defs.image_flags import image_flags, image_flags_sensor
from gbifdl_assets.defs.images import image_store, shard_partitions, training_export
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import SpecsResource
from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor
from gbifdl_assets.specs import example_specs_dir
from gbifdl_assets_tests.harness.dagster_services import (
    Webserver,
    dagster_daemon,
    dagster_env,
    dagster_webserver,
    grpc_code_server,
    initialize_instance,
    write_workspace,
)
from gbifdl_assets_tests.harness.debian import ensure_command
from gbifdl_assets_tests.harness.project_resources import sandbox_resources

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(420),
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).parent / "screenshots"
DEMO = "european-butterflies"
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
    ... on Sensors {{ results {{ name description sensorState {{ status }} }} }}
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
    "image_flags",
    "annotated_occurrences",
    "balanced_manifest",
    "image_store",
    "training_export",
}
GROUPS = ("annotations", "export", "gbif", "images", "manifest")


@dataclass(frozen=True)
class Page:
    """A page a user opens: where, the screenshot's name and window size, and what the page must say."""

    name: str
    path: str
    size: tuple[int, int]
    says: tuple[str, ...]


#: The pages, in the order a user meets them (README, "The Dagster UI").
PAGES = [
    # the lineage tab of the export: every asset upstream of it, wide enough for the detailed nodes
    Page(
        "asset-graph",
        "/assets/training_export?view=lineage&lineageScope=upstream&lineageDepth=8",
        (2800, 1400),
        ("species_list", "image_store", "training_export", "Parquet", "File"),
    ),
    Page(
        "training-set-partitions",
        f"/assets/species_list?view=partitions&partition={DEMO}",
        (1600, 1100),
        (DEMO, "big-cats", "spec_fingerprint", "unmatched"),
    ),
    Page(
        "manifest-metadata",
        "/assets/balanced_manifest",
        (1600, 2300),
        ("per_split", "license_mix", "classes_below_min", "Vanessa atalanta", "share"),
    ),
    Page(
        "image-store-partitions",
        f"/assets/image_store?view=partitions&partition=00%7C{DEMO}",
        (1600, 1300),
        ("training_set_images", "to fetch", "00|" + DEMO, "this_run"),
    ),
    Page(
        "image-store-metadata",
        "/assets/image_store",
        (1600, 1500),
        ("training_set_images", "training_set_complete", "8 of 8 shards done", "this run"),
    ),
    Page(
        "export-metadata",
        "/assets/training_export",
        (1600, 1900),
        ("per_class", "Vanessa atalanta", "provenance", "search API"),
    ),
    Page(
        "manifest-checks",
        "/assets/balanced_manifest?view=checks",
        (1600, 1000),
        ("balanced", "min_max_ratio", "smallest", "images"),
    ),
    Page(
        "export-checks",
        "/assets/training_export?view=checks&checkDetail=manifest_images_accounted_for",
        (1600, 1000),
        ("manifest_images_accounted_for", "not_exported_by_reason", "manifest_images"),
    ),
    Page(
        "automation",
        "/automation",
        (1400, 540),
        ("training_set_specs_sensor", "gbif_download_sensor", "annotation_rules_sensor", "gbifdl_automation"),
    ),
    Page(
        "sensor",
        "/locations/gbifdl_assets/sensors/gbif_download_sensor",
        (1400, 700),
        ("polls the GBIF downloads", "occurrence_snapshot", "gbifdl/target"),
    ),
    Page(
        "schedule",
        "/locations/gbifdl_assets/schedules/training_set_refresh_schedule",
        (1400, 800),
        ("training_set_refresh_schedule", "Every 15 minutes", "refreshes the training sets"),
    ),
]


SET_CURSOR = """
mutation Cursor($selector: SensorSelector!, $cursor: String) {
  setSensorCursor(sensorSelector: $selector, cursor: $cursor) { __typename ... on PythonError { message } }
}
"""
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 5) { status skipReason runIds } } }
  }
}
"""
SENSORS = (
    "training_set_specs_sensor",
    "gbif_download_sensor",
    "annotation_rules_sensor",
    "image_flags_sensor",
    "gbifdl_automation",
)


@dataclass
class Deployed:
    web: Webserver
    root: Path
    ticks: dict[str, list[dict]]


def _materialize_demo(root: Path, api_url: str) -> dict:
    """The demo training set through the whole graph, in-process on the instance of DAGSTER_HOME; the
    other example specs registered as partitions too (as the spec sensor of `make dev` does). The
    resources, for the sensors' cursors."""
    resources = {
        **sandbox_resources(api_url, root, seed_rules=True),
        "specs": SpecsResource(folder=str(example_specs_dir())),
    }
    examples = sorted(p.stem for p in example_specs_dir().glob("*.yaml"))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, examples)

        def run(selection, partition_key=None) -> None:
            result = dg.materialize(
                ALL_ASSETS,
                selection=selection,
                partition_key=partition_key,
                instance=instance,
                resources=resources,
                tags={"gbifdl/trigger": "demo"},
            )
            assert result.success

        run([annotation_rulesets.key, image_flags.key])
        run([a.key for a in TRAINING_SET_STAGES], DEMO)
        for shard in shard_partitions.get_partition_keys():
            run([image_store.key], dg.MultiPartitionKey({TRAINING_SET_PARTITION: DEMO, "shard": shard}))
        run([training_export.key], DEMO)
    return resources


def _catch_up_sensors(web: Webserver, resources: dict) -> None:
    """Give the spec and rule sensors the cursors they compute now (module docstring)."""
    with dg.DagsterInstance.get() as instance:
        for sensor in (training_set_specs_sensor, annotation_rules_sensor, image_flags_sensor):
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                result = sensor(context)
            selector = {
                "repositoryLocationName": "gbifdl_assets",
                "repositoryName": "__repository__",
                "sensorName": sensor.name,
            }
            answer = web.graphql(SET_CURSOR, {"selector": selector, "cursor": result.cursor})
            assert answer["setSensorCursor"]["__typename"] == "Sensor", answer


def _first_ticks(web: Webserver, timeout: float = 60.0) -> dict[str, list[dict]]:
    """Every sensor's ticks once each has ticked (the daemon evaluates them as it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        ticks = {}
        for name in SENSORS:
            selector = {
                "repositoryLocationName": "gbifdl_assets",
                "repositoryName": "__repository__",
                "sensorName": name,
            }
            state = web.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]["sensorState"]
            ticks[name] = [t for t in state["ticks"] if t["status"] not in ("STARTED",)]
        if all(ticks.values()) or time.monotonic() > deadline:
            return ticks
        time.sleep(1.0)


@pytest.fixture(scope="module")
def deployed(postgres_server, sandbox, tmp_path_factory) -> Iterator[Deployed]:
    """deploy/dagster.yaml on a fresh PostgreSQL database, the demo set materialized on it, and the code
    server and webserver of deploy/ in front of it."""
    root = tmp_path_factory.mktemp("ui")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    database = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(database)
    pg = {
        "DAGSTER_PG_USERNAME": postgres_server.user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_DB": database,
    }
    # the code location reads the demo's data, rule store and the sandbox (the spec folder: the examples)
    env = dagster_env(
        home,
        **pg,
        GBIFDL_DATA_URI=str(root / "data"),
        GBIFDL_ANNOTATIONS_DB=f"sqlite:///{root / 'a.sqlite'}",
        GBIF_API_URL=sandbox.api_url,
    )
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"DAGSTER_HOME": str(home), **pg}.items():
            mp.setenv(name, value)
        initialize_instance(env)
        resources = _materialize_demo(root, sandbox.api_url)
        logs = root / "logs"
        with grpc_code_server(env, log_dir=logs) as code:
            workspace = write_workspace(root / "workspace.yaml", grpc_port=code.port)
            with dagster_webserver(env, workspace, log_dir=logs) as web:
                _catch_up_sensors(web, resources)
                with dagster_daemon(env, workspace, log_dir=logs):
                    yield Deployed(web, root, _first_ticks(web))
    if postgres_server.running:
        postgres_server.drop_database(database)


def test_code_server_webserver_and_graphql_listing(deployed):
    web = deployed.web
    info = requests.get(f"{web.url}/server_info", timeout=10)
    assert info.status_code == 200
    assert info.json()["dagster_webserver_version"] == "1.13.27"
    # the same shape as deploy/workspace.yaml: one grpc_server entry named gbifdl_assets
    deployed_ws = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())["load_from"][0]
    ours = yaml.safe_load((deployed.root / "workspace.yaml").read_text())["load_from"][0]
    assert set(deployed_ws) == set(ours) == {"grpc_server"}
    assert deployed_ws["grpc_server"]["location_name"] == ours["grpc_server"]["location_name"]

    data = web.graphql(LISTING)
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == ASSETS
    assert nodes["image_store"]["isPartitioned"] and not nodes["annotation_rulesets"]["isPartitioned"]
    assert sorted({n["groupName"] for n in nodes.values()}) == list(GROUPS)
    checks = {
        f"{key}.{check['name']}"
        for key, node in nodes.items()
        for check in (node["assetChecksOrError"].get("checks") or [])
    }
    assert "image_store.complete_enough" in checks and len(checks) >= 3, checks
    sensors = {s["name"]: s for s in data["sensorsOrError"]["results"]}
    assert {name: s["sensorState"]["status"] for name, s in sensors.items()} == {
        "training_set_specs_sensor": "RUNNING",
        "gbif_download_sensor": "RUNNING",
        "annotation_rules_sensor": "RUNNING",
        "image_flags_sensor": "RUNNING",
        "gbifdl_automation": "RUNNING",
    }
    ours_described = (
        "training_set_specs_sensor", "gbif_download_sensor", "annotation_rules_sensor", "image_flags_sensor",
    )  # fmt: skip
    assert all(sensors[name]["description"] for name in ours_described)
    schedules = {s["name"]: s for s in data["schedulesOrError"]["results"]}
    assert schedules["training_set_refresh_schedule"]["scheduleState"]["status"] == "RUNNING"


def test_the_daemon_ticks_every_sensor_and_launches_nothing_for_a_built_set(deployed):
    """After the demo, a running deployment's sensors have nothing to do: every tick skips."""
    assert all(deployed.ticks.values()), deployed.ticks
    launched = {name: [t["runIds"] for t in ticks if t["runIds"]] for name, ticks in deployed.ticks.items()}
    assert not any(launched.values()), launched
    assert all(t["status"] == "SKIPPED" for ticks in deployed.ticks.values() for t in ticks), deployed.ticks


def _open(url: str, out: Path, size: tuple[int, int], profile: Path) -> str:
    """Screenshot ``url`` into ``out`` at ``size``; the rendered DOM."""
    chromium = ensure_command("chromium", "chromium")
    proc = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=20000",
            f"--screenshot={out}", "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    return proc.stdout


def test_the_pages_a_user_reads(deployed, tmp_path):
    """Every page of PAGES renders (not blank, not an error) and says what it must; the screenshots
    go to the README's folder."""

    def visit(page: Page) -> tuple[Page, Path, str]:
        shot = tmp_path / f"{page.name}.png"
        dom = _open(f"{deployed.web.url}{page.path}", shot, page.size, tmp_path / f"profile-{page.name}")
        return page, shot, dom

    with ThreadPoolExecutor(2) as pool:  # two browsers at a time: two cores, and the webserver
        visited = list(pool.map(visit, PAGES))
    problems = []
    for page, shot, dom in visited:
        image = Image.open(shot).convert("RGB")
        assert image.size == page.size, page.name
        colours = image.resize((image.width // 4, image.height // 4)).getcolors(maxcolors=1 << 16)
        if colours is None or len(colours) <= 50:
            problems.append(f"{page.name}: (almost) one colour")
        missing = [text for text in page.says if text not in dom]
        if missing:
            problems.append(f"{page.name}: {page.path} does not say {missing}")
        if "Something went wrong" in dom or "PythonError" in dom:
            problems.append(f"{page.name}: an error page")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for page, shot, _ in visited:  # also when a page failed: the picture shows what went wrong
        shutil.copy(shot, SCREENSHOTS / f"{page.name}.png")
    assert not problems, problems
