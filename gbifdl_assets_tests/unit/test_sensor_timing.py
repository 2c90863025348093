"""GBIFDL_SENSOR_SECONDS: one interval for every sensor (a development stack, the e2e tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gbifdl_assets.defs.sensor_timing import every, sensor_seconds


def test_unset_keeps_each_sensors_own_interval(monkeypatch) -> None:
    monkeypatch.delenv("GBIFDL_SENSOR_SECONDS", raising=False)
    assert sensor_seconds(60) == 60 and sensor_seconds(30) == 30
    monkeypatch.setenv("GBIFDL_SENSOR_SECONDS", " 5 ")
    assert sensor_seconds(60) == 5
    assert every(60) == "Every minute" and every(5) == "Every 5 s"


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "soon", "3601"])
def test_a_value_that_is_not_an_interval_names_the_variable_and_the_fix(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("GBIFDL_SENSOR_SECONDS", raw)
    with pytest.raises(ValueError, match=r"GBIFDL_SENSOR_SECONDS=.*whole number of seconds from 1 to 3600"):
        sensor_seconds(60)


def test_every_sensor_of_the_definitions_takes_it() -> None:
    code = (
        "import json; from gbifdl_assets.definitions import defs; "
        "print(json.dumps({s.name: [s.minimum_interval_seconds, s.description.split(':')[0]] "
        "for s in defs.sensors}))"
    )
    env = {**os.environ, "GBIFDL_SENSOR_SECONDS": "7"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    sensors = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(sensors) == 5 and all(v == [7, "Every 7 s"] for v in sensors.values()), sensors
