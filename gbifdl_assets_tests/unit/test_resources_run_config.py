"""Run config that sets one field of a location resource keeps the environment's values of the others.

Dagster applies a resource's constructor values as one default for its whole config, so
``resources.image_fetch.config.concurrency`` alone used to reset the sandbox's loopback allowance
(``loopback_origins``, from a loopback GBIF_API_URL), and ``resources.gbif.config.max_retries`` alone
the API URL and credentials (GBIF_API_URL, GBIF_*). GBIFDL_ALLOW_LOOPBACK is set and no longer opens
all of loopback (issue 20).
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from gbifdl_assets.definitions import location_resources
from gbifdl_assets.defs.resources import AnnotationsResource as AnnotationSources
from gbifdl_assets.defs.resources import GbifResource, ImageFetchResource, StorageResource
from gbifdl_assets.defs.resources import SpecsResource as SpecCatalog

SECRET = "pw-never-in-config-7f3a"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    values = {
        "GBIF_API_URL": "http://127.0.0.1:9/v1",
        "GBIF_USERNAME": "alice",
        "GBIF_PASSWORD": SECRET,
        "GBIFDL_DATA_URI": str(tmp_path / "data"),
        "GBIFDL_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "GBIFDL_SPECS_DIR": str(tmp_path / "specs"),
        "GBIFDL_ANNOTATIONS_DB": f"sqlite:///{tmp_path / 'a.sqlite'}",
        "GBIFDL_ALLOW_LOOPBACK": "1",
        "GBIFDL_SEED_RULES": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _seen_by_an_asset(resources: dict, run_config: dict | None) -> dict:
    seen: dict = {}

    @dg.asset
    def probe(
        gbif: GbifResource,
        storage: StorageResource,
        specs: SpecCatalog,
        annotations: AnnotationSources,
        image_fetch: ImageFetchResource,
    ) -> None:
        seen.update(
            gbif=dict(gbif),
            storage=dict(storage),
            specs=dict(specs),
            annotations=dict(annotations),
            image_fetch=dict(image_fetch),
        )

    assert dg.materialize([probe], resources=resources, run_config=run_config).success
    return seen


_POLITENESS_DEFAULTS = {
    "max_rate_per_host": None,
    "host_limits": {},
    "robots_txt": True,
    "opt_out_headers": True,
    "image_cache": True,
}


def test_overriding_one_field_keeps_the_environments_values(env) -> None:
    override = {
        "resources": {
            "image_fetch": {"config": {"concurrency": 4}},
            "gbif": {"config": {"max_retries": 1}},
            "storage": {"config": {"region_name": "eu-west-1"}},
        }
    }
    seen = _seen_by_an_asset(location_resources(), override)

    assert seen["image_fetch"] == {
        "concurrency": 4,
        "per_host": 16,
        "allow_loopback": False,
        "allow_private": False,
        "loopback_origins": ["127.0.0.1:9"],
        **_POLITENESS_DEFAULTS,
        "gbif_api_url": env["GBIF_API_URL"],  # dead links come from the same GBIF's image cache
    }
    assert seen["gbif"] == {
        "base_url": env["GBIF_API_URL"],
        "username": "alice",
        "password": SECRET,
        "timeout_seconds": 60.0,
        "max_retries": 1,
    }
    assert seen["storage"]["uri"] == env["GBIFDL_DATA_URI"]
    assert seen["storage"]["endpoint_url"] == env["GBIFDL_S3_ENDPOINT_URL"]
    assert seen["storage"]["region_name"] == "eu-west-1"
    assert seen["specs"]["folder"] == env["GBIFDL_SPECS_DIR"]
    assert seen["annotations"]["store_url"] == env["GBIFDL_ANNOTATIONS_DB"]
    assert seen["annotations"]["seeds"] is False


def test_without_run_config_and_with_a_full_override(env) -> None:
    seen = _seen_by_an_asset(location_resources(), None)
    assert seen["image_fetch"]["loopback_origins"] == ["127.0.0.1:9"]
    assert seen["image_fetch"]["allow_loopback"] is False and seen["image_fetch"]["concurrency"] == 64
    assert seen["gbif"]["base_url"] == env["GBIF_API_URL"] and seen["gbif"]["password"] == SECRET

    seen = _seen_by_an_asset(
        location_resources(),
        {"resources": {"image_fetch": {"config": {"allow_loopback": False, "per_host": 2}}}},
    )
    assert seen["image_fetch"] == {
        "concurrency": 64,
        "per_host": 2,
        "allow_loopback": False,
        "allow_private": False,
        "loopback_origins": ["127.0.0.1:9"],
        **_POLITENESS_DEFAULTS,
        "gbif_api_url": env["GBIF_API_URL"],  # dead links come from the same GBIF's image cache
    }


def test_the_password_stays_a_variable_name_in_the_config_schema(env) -> None:
    defs = dg.Definitions(assets=[], resources=location_resources())
    gbif = defs.get_repository_def().get_top_level_resources()["gbif"]
    default = json.loads(
        gbif.config_schema.as_field().config_type.fields["password"].default_value_as_json_str
    )
    assert default == {"env": "GBIF_PASSWORD"}
    assert SECRET not in repr(location_resources())


def test_sensors_get_the_same_resources(env, tmp_path) -> None:
    from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text("name: moths\ntaxa:\n  - Aglais io\n")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=location_resources())
        result = training_set_specs_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["moths"]
