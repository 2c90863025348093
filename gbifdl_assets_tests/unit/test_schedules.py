"""training_set_refresh_schedule: one schedule, each spec's own cron, evaluated with build_schedule_context."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from gbifdl_assets.definitions import defs
from gbifdl_assets.defs.partitions import TRAINING_SET_PARTITION
from gbifdl_assets.defs.resources import SpecsResource as SpecCatalog
from gbifdl_assets.defs.schedules import REFRESH_SELECTION, training_set_refresh_schedule
from gbifdl_assets.pipeline.refresh import due_refreshes, previous_tick
from gbifdl_assets.specs import parse_spec

UTC = dt.UTC


def _spec_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    # 03:00 UTC on the 1st of each month
    (folder / "monthly.yaml").write_text("name: monthly\ntaxa: [Panthera leo]\nrefresh: '0 3 1 * *'\n")
    # 04:00 in Copenhagen every day: 03:00 UTC in winter, 02:00 UTC in summer
    (folder / "daily.yaml").write_text(
        "name: daily-cph\ntaxa: [Panthera leo]\nrefresh: {cron: '0 4 * * *', timezone: Europe/Copenhagen}\n"
    )
    (folder / "never.yaml").write_text("name: never\ntaxa: [Panthera leo]\nrefresh: null\n")
    (folder / "broken.yaml").write_text("name: broken\ntaxa: []\nrefresh: '0 3 * * *'\n")
    return folder


def _evaluate(instance: dg.DagsterInstance, folder: Path, tick: dt.datetime) -> dg.ScheduleExecutionData:
    # closed by the with: an open context keeps the instance's state storage as Dagster's current one,
    # and a later materialize in the same process then fails on the dead instance's weakref
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=tick,
        resources={"specs": SpecCatalog(folder=str(folder))},
        repository_def=defs.get_repository_def(),  # resolves the target and checks partition keys
    ) as context:
        return training_set_refresh_schedule.evaluate_tick(context)


def test_schedule_and_every_sensor_start_running():
    schedule = defs.resolve_schedule_def("training_set_refresh_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "*/15 * * * *"
    sensors = defs.get_repository_def().sensor_defs
    assert {s.name for s in sensors} >= {
        "training_set_specs_sensor",
        "gbif_download_sensor",
        "annotation_rules_sensor",
        "gbifdl_automation",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)


def test_due_training_sets_get_one_partitioned_run_request_each(tmp_path):
    folder = _spec_folder(tmp_path)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["monthly", "daily-cph", "never"])
        # 1 March, 03:00 UTC = 04:00 in Copenhagen (winter time): both crons fired in (02:45, 03:00]
        data = _evaluate(instance, folder, dt.datetime(2026, 3, 1, 3, 0, tzinfo=UTC))
        requests = {r.partition_key: r for r in data.run_requests}
        assert set(requests) == {"monthly", "daily-cph"}
        assert requests["monthly"].run_key == "refresh:monthly:2026-03-01T03:00Z"
        assert requests["daily-cph"].run_key == "refresh:daily-cph:2026-03-01T03:00Z"
        assert requests["monthly"].tags["gbifdl/trigger"] == "refresh"
        job = defs.get_repository_def().get_job(training_set_refresh_schedule.job_name)
        assert set(job.asset_layer.executable_asset_keys) == {a.key for a in REFRESH_SELECTION}

        # the next tick: nothing fired since 03:00
        quiet = _evaluate(instance, folder, dt.datetime(2026, 3, 1, 3, 15, tzinfo=UTC))
        assert not quiet.run_requests and "no refresh due" in quiet.skip_message
        assert "2 of 3 specs have a refresh cron" in quiet.skip_message

        # 2 March: only the daily one; in summer time Copenhagen's 04:00 is 02:00 UTC
        second = _evaluate(instance, folder, dt.datetime(2026, 3, 2, 3, 0, tzinfo=UTC))
        assert [r.partition_key for r in second.run_requests] == ["daily-cph"]
        summer = _evaluate(instance, folder, dt.datetime(2026, 7, 2, 2, 0, tzinfo=UTC))
        assert [r.partition_key for r in summer.run_requests] == ["daily-cph"]
        assert not _evaluate(instance, folder, dt.datetime(2026, 7, 2, 3, 0, tzinfo=UTC)).run_requests


def test_re_evaluating_a_tick_gives_the_same_run_keys(tmp_path):
    folder = _spec_folder(tmp_path)
    tick = dt.datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["monthly", "daily-cph"])
        first = sorted(r.run_key for r in _evaluate(instance, folder, tick).run_requests)
        again = sorted(r.run_key for r in _evaluate(instance, folder, tick).run_requests)
        assert first == again and len(set(first)) == 2


def test_specs_not_yet_registered_as_partitions_wait(tmp_path):
    folder = _spec_folder(tmp_path)
    with dg.instance_for_test() as instance:
        # the spec sensor has not registered "monthly" yet
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["daily-cph"])
        data = _evaluate(instance, folder, dt.datetime(2026, 3, 1, 3, 0, tzinfo=UTC))
        assert [r.partition_key for r in data.run_requests] == ["daily-cph"]


def test_due_refreshes_window_edges():
    spec = parse_spec({"name": "x", "taxa": ["Panthera leo"], "refresh": "30 3 * * *"})
    at = dt.datetime(2026, 1, 5, 3, 30, tzinfo=UTC)
    assert [d.fire_time for d in due_refreshes([spec], at - dt.timedelta(minutes=15), at)] == [at]
    # the window is open at its start: a fire exactly at the previous tick belonged to that tick
    assert due_refreshes([spec], at, at + dt.timedelta(minutes=15)) == []
    assert previous_tick(dt.datetime(2026, 1, 5, 3, 30, tzinfo=UTC)) == dt.datetime(
        2026, 1, 5, 3, 15, tzinfo=UTC
    )
    assert previous_tick(dt.datetime(2026, 1, 5, 3, 31, tzinfo=UTC)) == dt.datetime(
        2026, 1, 5, 3, 30, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        due_refreshes([spec], dt.datetime(2026, 1, 5, 3, 15), at)


def test_after_a_refreshed_manifest_automation_stores_the_shards_then_exports():
    """The refresh run ends at balanced_manifest; eager conditions carry it to the shards and the export."""
    from gbifdl_assets.defs.images import image_store, shard_partitions, training_export
    from gbifdl_assets.defs.manifest import balanced_manifest

    def materialized(instance, key, partition):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))

    shards = shard_partitions.get_partition_keys()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TRAINING_SET_PARTITION, ["cats", "dogs"])
        # the state before the refresh: everything of both training sets materialized once
        for name in ("cats", "dogs"):
            materialized(instance, balanced_manifest.key, name)
            for shard in shards:
                materialized(instance, image_store.key, f"{shard}|{name}")
            materialized(instance, training_export.key, name)
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)

        materialized(instance, balanced_manifest.key, "cats")  # the refresh run of "cats"
        after_manifest = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        requested = after_manifest.get_requested_partitions(image_store.key)
        assert requested == {f"{shard}|cats" for shard in shards}  # all shards of cats, none of dogs
        assert after_manifest.get_num_requested(training_export.key) == 0  # not before the shards

        for shard in shards:
            materialized(instance, image_store.key, f"{shard}|cats")
        after_shards = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=after_manifest.cursor
        )
        assert after_shards.get_requested_partitions(training_export.key) == {"cats"}
