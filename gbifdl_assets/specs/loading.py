"""Reading specs: YAML text, one file, or a folder of files, into validated :class:`TrainingSetSpec`.

Every failure, from unreadable YAML to a bad field value, becomes a :class:`SpecError` that names
the file and lists every problem, so a user fixes a spec in one round.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gbifdl_assets.quoting import describe
from gbifdl_assets.specs.messages import SpecError, problem_lines
from gbifdl_assets.specs.model import TrainingSetSpec

__all__ = ["example_specs_dir", "load_spec", "load_spec_folder", "parse_spec"]


# ---------------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------------
class _SpecLoader(yaml.SafeLoader):
    """Safe YAML with the surprises removed.

    YAML 1.1 reads ``NO`` (Norway), ``yes``, ``on`` and ``off`` as booleans and bare dates as
    date objects; in a spec they are country codes and date strings. Only true/false are
    booleans here. Duplicate keys, which PyYAML silently resolves to the last one, are errors.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable keys are reported by the model
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key '{key}' (first given on line {first.line + 1}); keep only one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_SpecLoader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    hint = (
        ""
        if "duplicate key" in problem
        else "; fix the YAML (indentation, a missing ':', or quote the value)"
    )
    return f"{where}{problem}{hint}"


# ---------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------
def parse_spec(
    text_or_dict: str | Mapping[str, Any],
    *,
    source: str = "<string>",
    default_name: str | None = None,
) -> TrainingSetSpec:
    """A spec from YAML text or an already-parsed mapping; SpecError(source, problems) if invalid.

    ``default_name`` is used when the spec has no ``name`` (load_spec passes the file's stem).
    """
    if isinstance(text_or_dict, str):
        try:
            data = yaml.load(text_or_dict, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise SpecError(source, [_yaml_problem(exc)]) from None
    else:
        data = text_or_dict
    if data is None:
        raise SpecError(source, ["the spec is empty; give at least name: and taxa:"])
    if not isinstance(data, Mapping):
        raise SpecError(source, [f"a spec is a mapping of fields (name:, taxa:, ...), got {describe(data)}"])
    if "name" not in data and default_name is not None:
        data = {"name": default_name, **data}
    try:
        return TrainingSetSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(source, problem_lines(exc, TrainingSetSpec)) from None


def load_spec(path: str | Path) -> TrainingSetSpec:
    """Load and validate one YAML spec file; SpecError naming the file and every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, ["file not found; check the path"]) from None
    except IsADirectoryError:
        raise SpecError(path, ["is a folder; give a .yaml file (or use load_spec_folder)"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(path, [f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"]) from None
    return parse_spec(text, source=str(path), default_name=path.stem)


def load_spec_folder(
    folder: str | Path, *, errors: list[SpecError] | None = None, files: dict[str, Path] | None = None
) -> dict[str, TrainingSetSpec]:
    """Every ``*.yaml``/``*.yml`` spec in a folder, by name.

    With ``errors`` (a list), invalid files are appended to it and skipped; without it, one
    SpecError listing the problems of every invalid file is raised after all were read. With
    ``files`` (a dict), the file of each valid spec is stored in it by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError(folder, ["spec folder not found; give a folder of training-set YAML files"])
    specs: dict[str, TrainingSetSpec] = {}
    files = {} if files is None else files
    failed: list[SpecError] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed.append(exc)
            continue
        if spec.name in specs:
            failed.append(
                SpecError(
                    path,
                    [
                        f"name: '{spec.name}' is already used by {files[spec.name].name}; give every set a unique name"
                    ],
                )
            )
            continue
        specs[spec.name] = spec
        files[spec.name] = path
    if errors is not None:
        errors.extend(failed)
    elif failed:
        raise SpecError(folder, [f"{Path(e.path).name}: {p}" for e in failed for p in e.problems])
    return specs


def example_specs_dir() -> Path:
    """The example specs shipped in the package (the demo's spec folder)."""
    return Path(__file__).resolve().parent.parent / "examples"
