"""The Dagster layer: definitions load, and the spec sensor turns a folder into partitions."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from gbifdl_assets.definitions import defs
from gbifdl_assets.defs.assets import TRAINING_SET_STAGES
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import SpecsResource as SpecCatalog
from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert "species_list" in keys
    sensor = defs.resolve_sensor_def("training_set_specs_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def _write(folder: Path, file: str, name: str, taxa: list[str]) -> Path:
    path = folder / file
    path.write_text(f"name: {name}\ntaxa:\n" + "".join(f"  - {t}\n" for t in taxa))
    return path


def _tick(instance, folder: Path, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"specs": SpecCatalog(folder=str(folder))}
    )
    result = training_set_specs_sensor(context)
    # apply the partition requests as the daemon would
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def test_spec_sensor_adds_changes_keeps_broken_and_removes(tmp_path):
    with dg.instance_for_test() as instance:
        _write(tmp_path, "a.yaml", "moths", ["Aglais io"])
        _write(tmp_path, "b.yaml", "lions", ["Panthera leo"])
        first = _tick(instance, tmp_path, None)
        assert sorted(r.partition_key for r in first.run_requests) == ["lions", "moths"]
        assert sorted(instance.get_dynamic_partitions(TRAINING_SET_PARTITION)) == ["lions", "moths"]

        # nothing changed: skip, same cursor content
        second = _tick(instance, tmp_path, first.cursor)
        assert not second.run_requests and second.skip_reason is not None

        # a changed spec is re-run with a new run key
        _write(tmp_path, "a.yaml", "moths", ["Aglais io", "Vanessa cardui"])
        third = _tick(instance, tmp_path, second.cursor)
        assert [r.partition_key for r in third.run_requests] == ["moths"]
        assert third.run_requests[0].run_key != first.run_requests[1].run_key

        # a spec that stops validating keeps its partition and is not re-run
        (tmp_path / "b.yaml").write_text("name: lions\ntaxa: []\n")
        fourth = _tick(instance, tmp_path, third.cursor)
        assert not fourth.run_requests
        assert "lions" in instance.get_dynamic_partitions(TRAINING_SET_PARTITION)
        assert "lions" in json.loads(fourth.cursor)["specs"]

        # a deleted spec removes its partition
        (tmp_path / "b.yaml").unlink()
        fifth = _tick(instance, tmp_path, fourth.cursor)
        assert not fifth.run_requests
        assert instance.get_dynamic_partitions(TRAINING_SET_PARTITION) == ["moths"]


def test_spec_sensor_runs_a_new_spec_as_far_as_its_source_allows(tmp_path):
    """A search spec runs to the manifest at once; a download-sourced one stops at gbif_download (the
    download sensor takes over when GBIF is done); images and export follow through automation."""
    with dg.instance_for_test() as instance:
        _write(tmp_path, "a.yaml", "moths", ["Aglais io"])
        (tmp_path / "b.yaml").write_text("name: lions\ntaxa: [Panthera leo]\nsource: download\n")
        (tmp_path / "c.yaml").write_text(
            "name: suns\ntaxa: [Helianthus annuus]\nsource: {doi: 10.15468/dl.np3k7j}\n"
        )
        result = _tick(instance, tmp_path, None)
        selections = {
            r.partition_key: [k.to_user_string() for k in r.asset_selection] for r in result.run_requests
        }
        to_manifest = [a.key.to_user_string() for a in TRAINING_SET_STAGES]
        assert selections == {
            "moths": to_manifest,
            "lions": ["species_list", "gbif_download"],
            "suns": ["species_list", "gbif_download"],
        }
        targets = {r.partition_key: r.tags["gbifdl/target"] for r in result.run_requests}
        assert targets["moths"] == "species_list..balanced_manifest[moths]"


def test_gbif_credentials_come_from_env_vars_not_values(monkeypatch):
    from gbifdl_assets.defs.resources import default_resources

    monkeypatch.setenv("GBIF_USERNAME", "alice")
    monkeypatch.setenv("GBIF_PASSWORD", "s3cr3t-pw")
    gbif = default_resources()["gbif"]
    assert isinstance(gbif.password, dg.EnvVar) and gbif.password == "GBIF_PASSWORD"
    assert "s3cr3t-pw" not in repr(gbif)


def test_without_credentials_the_defaults_need_no_environment(monkeypatch):
    from gbifdl_assets.defs.resources import default_resources

    for var in ("GBIF_USERNAME", "GBIF_PASSWORD", "GBIF_API_URL", "GBIFDL_DATA_URI"):
        monkeypatch.delenv(var, raising=False)
    resources = default_resources()
    assert resources["gbif"].password is None
    assert resources["gbif"].base_url == "https://api.gbif.org/v1"
    assert resources["storage"].uri == "data"


def test_media_on_loopback_only_at_the_sandboxs_own_address(monkeypatch):
    from gbifdl_assets.defs.resources import image_fetch_resource

    monkeypatch.setenv("GBIFDL_ALLOW_LOOPBACK", "1")  # deprecated: no longer opens all of loopback
    monkeypatch.setenv("GBIF_API_URL", "https://api.gbif.org/v1")
    fetch = image_fetch_resource().fetch_config()
    assert (fetch.allow_loopback, fetch.loopback_origins) == (False, ())
    monkeypatch.setenv("GBIF_API_URL", "http://127.0.0.1:8765/v1")  # the sandbox (GBIF never is on loopback)
    fetch = image_fetch_resource().fetch_config()
    assert (fetch.allow_loopback, fetch.loopback_origins) == (False, ("127.0.0.1:8765",))


def test_gbif_api_url_is_the_one_name_of_the_api(monkeypatch):
    from gbifdl_assets.defs.resources import default_resources

    for var in ("GBIF_API_URL", "GBIFDL_API_URL", "GBIFDL_GBIF_ANNOTATIONS", "GBIFDL_ANNOTATION_API_URL"):
        monkeypatch.delenv(var, raising=False)
    assert default_resources()["annotations"].gbif_annotation_url is None
    monkeypatch.setenv("GBIFDL_API_URL", "http://old.example/v1")  # deprecated, still read
    assert default_resources()["gbif"].base_url == "http://old.example/v1"
    monkeypatch.setenv("GBIF_API_URL", "http://mirror.example/v1")
    monkeypatch.setenv("GBIFDL_GBIF_ANNOTATIONS", "1")  # mirror GBIF's annotations from that same API
    resources = default_resources()
    assert resources["gbif"].base_url == "GBIF_API_URL"  # an EnvVar: read when the run starts
    assert resources["annotations"].gbif_annotation_url == "http://mirror.example/v1"
    monkeypatch.delenv("GBIFDL_GBIF_ANNOTATIONS")
    monkeypatch.setenv("GBIFDL_ANNOTATION_API_URL", "http://annotations.example/v1")  # deprecated
    assert default_resources()["annotations"].gbif_annotation_url == "http://annotations.example/v1"


def _built(instance, name: str, fingerprint: str) -> None:
    """A species_list materialization of ``name`` built from a spec with ``fingerprint`` (as the demo leaves)."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="species_list", partition=name, metadata={"spec_fingerprint": fingerprint}
        )
    )


def test_a_fresh_spec_sensor_does_not_rerun_what_the_instance_built_from_the_same_spec(tmp_path):
    from gbifdl_assets.specs import load_spec

    spec = load_spec(_write(tmp_path, "a.yaml", "moths", ["Aglais io"]))
    _write(tmp_path, "b.yaml", "lions", ["Panthera leo"])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["moths", "lions"])
        _built(instance, "moths", spec.fingerprint())  # unchanged since its last build
        _built(instance, "lions", "a-fingerprint-of-an-older-spec")
        first = _tick(instance, tmp_path, None)  # a fresh sensor: empty cursor
        assert [r.partition_key for r in first.run_requests] == ["lions"]
        assert json.loads(first.cursor)["specs"]["moths"]["fingerprint"] == spec.fingerprint()


def test_a_fresh_spec_sensor_keeps_a_built_partition_while_a_spec_file_is_broken(tmp_path):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["moths"])
        _built(instance, "moths", "fingerprint")
        (tmp_path / "a.yaml").write_text("name: moths\ntaxa: []\n")  # its file, broken
        result = _tick(instance, tmp_path, None)
        assert not result.run_requests
        assert instance.get_dynamic_partitions(TRAINING_SET_PARTITION) == ["moths"]


def test_a_fresh_rules_sensor_does_not_rebuild_rules_the_instance_has(tmp_path):
    from gbifdl_assets.defs.annotations import annotation_rules_sensor
    from gbifdl_assets.defs.resources import AnnotationsResource

    rules = AnnotationsResource(store_url=f"sqlite:///{tmp_path / 'a.sqlite'}", seeds=False)
    fingerprint = rules.sources().fingerprint()

    def tick(instance):
        with dg.build_sensor_context(instance=instance, resources={"annotations": rules}) as context:
            return annotation_rules_sensor(context)

    with dg.instance_for_test() as instance:
        assert tick(instance).run_requests  # never built: build
        instance.report_runless_asset_event(
            dg.AssetMaterialization("annotation_rulesets", metadata={"sources_fingerprint": fingerprint})
        )
        result = tick(instance)
        assert not result.run_requests and result.cursor == fingerprint


def test_the_flags_sensor_builds_once_and_again_after_a_flag(tmp_path):
    from gbifdl_assets.annotations.store import AnnotationStore
    from gbifdl_assets.defs.image_flags import image_flags_sensor
    from gbifdl_assets.defs.resources import AnnotationsResource
    from gbifdl_assets.pipeline.image_flags import flags_fingerprint

    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    annotations = AnnotationsResource(store_url=url, seeds=False)

    def tick(instance, cursor=None):
        resources = {"annotations": annotations}
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
            return image_flags_sensor(context)

    with dg.instance_for_test() as instance:
        assert tick(instance).run_requests  # never built: build
        instance.report_runless_asset_event(
            dg.AssetMaterialization("image_flags", metadata={"flags_fingerprint": flags_fingerprint(url)})
        )
        result = tick(instance)
        assert not result.run_requests and result.cursor == flags_fingerprint(url)
        with AnnotationStore(url) as store:
            store.create_flag(
                {"gbifID": 1, "mediaIdentifier": "https://x.org/a.jpg", "flag": "DUPLICATE"}, user="a"
            )
            rules_version = store.version()
        changed = tick(instance, result.cursor)
        assert changed.run_requests and changed.run_requests[0].tags["gbifdl/trigger"] == "flags_changed"
        with AnnotationStore(url) as store:
            assert store.version() == rules_version  # a flag does not make the rules sensor fire
