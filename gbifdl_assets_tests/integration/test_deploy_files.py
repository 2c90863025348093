"""deploy/ checked as far as it can be without a Docker engine or a cluster.

* every YAML file parses;
* docker-compose.yml validates offline with Debian's docker-compose (``config -q``) and wires the
  services to each other consistently (ports, bucket, workspace, commands);
* every variable that dagster.yaml, workspace.yaml and the compose file read is in .env.example;
* the Helm values carry the keys the official chart reads for a user deployment, the
  K8sRunLauncher and an external PostgreSQL (``helm lint`` is not available here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gbifdl_assets_tests.harness.debian import ensure_command

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICES = {"postgresql", "minio", "minio_bucket", "user_code", "webserver", "daemon", "annotations"}


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_every_deploy_yaml_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {
        "dagster.yaml",
        "workspace.yaml",
        "docker-compose.yml",
        "helm/values.yaml",
    }
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_env_example_names_every_variable_the_deploy_files_read():
    env = _env_example()
    wanted = set()
    for name in ("dagster.yaml", "workspace.yaml"):
        wanted |= set(re.findall(r"\{env: *([A-Z0-9_]+)\}", (DEPLOY / name).read_text()))
    wanted |= set(re.findall(r"\$\{([A-Z0-9_]+)\}", (DEPLOY / "docker-compose.yml").read_text()))
    assert wanted, "no variables found: the patterns above are out of date"
    assert wanted <= set(env), sorted(wanted - set(env))


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory) -> dict:
    """``docker-compose config`` of deploy/ with .env copied from .env.example (as the README says)."""
    compose = ensure_command("docker-compose", "docker-compose", no_recommends=True)
    work = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, work)
    shutil.copy(work / ".env.example", work / ".env")
    check = subprocess.run(
        [compose, "-f", "docker-compose.yml", "config", "-q"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    resolved = subprocess.run(
        [compose, "-f", "docker-compose.yml", "config"], cwd=work, capture_output=True, text=True, timeout=60
    )
    assert resolved.returncode == 0, resolved.stderr
    return yaml.safe_load(resolved.stdout)


def test_compose_validates_and_wires_the_services(compose_config):
    services = compose_config["services"]
    assert set(services) == SERVICES
    env = _env_example()
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]

    user_code = services["user_code"]
    command = user_code["command"]
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("-p") + 1] == str(workspace["port"])
    assert command[command.index("--location-name") + 1] == workspace["location_name"] == "gbifdl_assets"
    assert command[command.index("-m") + 1] == "gbifdl_assets.definitions"
    assert user_code["build"]["dockerfile"] == "deploy/Dockerfile"
    assert env["GBIFDL_CODE_SERVER_HOST"] == "user_code"  # the service name is the gRPC host

    webserver = services["webserver"]["command"]
    assert webserver[0] == "dagster-webserver" and webserver[webserver.index("-w") + 1].endswith(
        "workspace.yaml"
    )
    daemon = " ".join(services["daemon"]["command"])
    assert "dagster instance concurrency set gbif_download 3" in daemon and "dagster-daemon run" in daemon
    assert services["annotations"]["command"] == [
        "gbifdl", "annotations", "serve", "--host", "0.0.0.0", "--port", "8090",
    ]  # fmt: skip
    annotations_db = services["annotations"]["environment"]["GBIFDL_ANNOTATIONS_DB"]
    assert annotations_db.startswith("postgresql+psycopg2://") and annotations_db.endswith(
        "/gbifdl_annotations"
    )
    assert (
        "CREATE DATABASE gbifdl_annotations"
        in (DEPLOY / "initdb" / "10-annotations-database.sql").read_text()
    )

    # the bucket the one-shot service creates is the one GBIFDL_DATA_URI names
    bucket = env["GBIFDL_DATA_URI"].removeprefix("s3://").split("/")[0]
    assert f"gbifdl/{bucket}" in " ".join(services["minio_bucket"]["command"])
    assert (
        services["user_code"]["depends_on"]["minio_bucket"]["condition"] == "service_completed_successfully"
    )
    for name in ("user_code", "webserver", "daemon"):
        assert services[name]["depends_on"]["postgresql"]["condition"] == "service_healthy"
        assert services[name]["environment"]["DAGSTER_HOME"] == "/opt/dagster/dagster_home"


def test_dockerfile_ships_the_instance_and_workspace():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml $DAGSTER_HOME/" in dockerfile
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in dockerfile
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    # only what the image needs goes into the build context
    assert "*" in ignore and "!gbifdl_assets" in ignore and "!deploy/dagster.yaml" in ignore


def test_helm_values_have_the_keys_the_chart_reads():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    section = values["dagster-user-deployments"]
    assert section["enabled"] is True
    (deployment,) = section["deployments"]
    assert {"name", "image", "dagsterApiGrpcArgs", "port"} <= set(deployment)
    assert {"repository", "tag", "pullPolicy"} <= set(deployment["image"])
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == "gbifdl_assets.definitions"
    assert args[args.index("--location-name") + 1] == "gbifdl_assets"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in values["runLauncher"]["config"]
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runMonitoring"]["enabled"] and daemon["runRetries"]["enabled"]
    assert values["concurrency"]["pools"]["granularity"] == "op"

    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert {"postgresqlHost", "postgresqlUsername", "postgresqlDatabase"} <= set(pg)
    assert values["global"]["postgresqlSecretName"]
    assert values["telemetry"]["enabled"] is False
