"""One bad spec never hurts the others (issue 20, item 5).

An alias bomb, a 20,000-deep nested list and a 50 MB file are each refused fast, in one line naming
the file and the limit, by ``gbifdl spec validate`` and by the spec sensor, and the folder's other
specs still load.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import dagster as dg
import pytest

from gbifdl_assets.cli import main
from gbifdl_assets.defs.resources import SpecsResource
from gbifdl_assets.defs.specs_sensor import training_set_specs_sensor
from gbifdl_assets.pipeline.spec_folder import read_spec_folder
from gbifdl_assets.specs import SpecError, load_spec, parse_spec
from gbifdl_assets.specs.loading import MAX_DEPTH, MAX_SPEC_BYTES, MAX_VALUES, SpecLimitError

#: generous: each is refused in milliseconds on an idle machine
SECONDS = 5.0


def _alias_bomb() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")  # 9**9 values expanded
    return "name: bomb\ntaxa: [Aglais io]\n" + "\n".join(lines) + "\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "bomb.yaml").write_text(_alias_bomb())
    (tmp_path / "deep.yaml").write_text("name: deep\ntaxa: " + "[" * 20_000 + "]" * 20_000 + "\n")
    line = "  - Aglais io\n"
    (tmp_path / "huge.yaml").write_text("name: huge\ntaxa:\n" + line * (50 * 1024 * 1024 // len(line)))
    (tmp_path / "good.yaml").write_text("name: good\ntaxa: [Aglais io]\n")
    (tmp_path / "also-good.yaml").write_text("name: also-good\ntaxa: [Vanessa cardui]\n")
    return tmp_path


LIMITS = {
    "bomb.yaml": rf"its YAML aliases expand to more than {MAX_VALUES:,} values \(line \d\); write the values out",
    "deep.yaml": rf"nesting deeper than {MAX_DEPTH} levels \(line 2\); a spec nests a few levels",
    "huge.yaml": rf"larger than {MAX_SPEC_BYTES:,} bytes, the limit for a spec file",
}


@pytest.mark.parametrize("file", sorted(LIMITS))
def test_each_hostile_file_is_refused_fast_in_one_line(folder: Path, file: str) -> None:
    started = time.monotonic()
    with pytest.raises(SpecLimitError) as refused:
        load_spec(folder / file)
    assert time.monotonic() - started < SECONDS
    message = str(refused.value)
    assert re.match(re.escape(f"{folder / file}: refused: ") + LIMITS[file], message), message
    assert "\n" not in message
    assert isinstance(refused.value, SpecError)  # the user-facing class every caller handles


def test_spec_validate_refuses_them_and_validates_the_others(folder: Path, capsys) -> None:
    started = time.monotonic()
    status = main(["spec", "validate", *sorted(str(p) for p in folder.iterdir())])
    assert time.monotonic() - started < 3 * SECONDS
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert status == 1 and summary["valid"] == ["also-good", "good"]
    assert summary["invalid"] == sorted(str(folder / f) for f in LIMITS)
    lines = err.strip().splitlines()  # one line per refused file, naming it and its limit
    assert len(lines) == 3 and {line.split(": refused: ")[0] for line in lines} == set(summary["invalid"])


def test_the_folder_and_the_sensor_keep_the_other_specs(folder: Path) -> None:
    started = time.monotonic()
    specs = read_spec_folder(folder)
    assert time.monotonic() - started < 3 * SECONDS
    assert sorted(specs.specs) == ["also-good", "good"]
    assert sorted(p.name for p in specs.problems) == sorted(LIMITS)
    with dg.instance_for_test() as instance:
        resources = {"specs": SpecsResource(folder=str(folder))}
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = training_set_specs_sensor(context)
    assert sorted(r.partition_key for r in result.run_requests) == ["also-good", "good"]


def test_aliases_and_merge_keys_within_the_limits_still_work() -> None:
    spec = parse_spec(
        "name: merged\n"
        "taxa: [&leo Panthera leo, Vanessa cardui]\n"
        "balancing: {<<: &caps {max_per_class: 30}, min_per_class: 10}\n"
        "description: *leo\n"
    )
    assert (spec.name, len(spec.taxa), spec.description) == ("merged", 2, "Panthera leo")
    assert (spec.balancing.max_per_class, spec.balancing.min_per_class) == (30, 10)
    with pytest.raises(SpecError, match="duplicate key 'name'"):
        parse_spec("name: x\ntaxa: [Aglais io]\nname: y\n")


def test_a_text_over_the_limit_is_refused_too() -> None:
    with pytest.raises(SpecLimitError, match="the limit for a spec file"):
        parse_spec("name: x\n" + "#" * MAX_SPEC_BYTES, source="text")
