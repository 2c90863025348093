"""Reading specs: YAML text, one file, or a folder of files, into validated :class:`TrainingSetSpec`.

Every failure, from unreadable YAML to a bad field value, becomes a :class:`SpecError` that names
the file and lists every problem, so a user fixes a spec in one round.

A spec folder is read by a sensor that every training set depends on, so one hostile or broken file
must cost little and hurt no other: a file over :data:`MAX_SPEC_BYTES` is not read, and before YAML
builds anything one pass over its events (which never recurses) refuses nesting deeper than
:data:`MAX_DEPTH` and aliases that expand past :data:`MAX_VALUES` values (a "billion laughs"). Each
is a :class:`SpecLimitError`: one line naming the file and the limit.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gbifdl_assets.quoting import describe
from gbifdl_assets.specs.messages import SpecError, problem_lines
from gbifdl_assets.specs.model import TrainingSetSpec

__all__ = [
    "MAX_DEPTH",
    "MAX_SPEC_BYTES",
    "MAX_VALUES",
    "SpecLimitError",
    "example_specs_dir",
    "load_spec",
    "load_spec_folder",
    "parse_spec",
]

#: A spec is a few KB of YAML; some 10,000 taxa fit (more: a higher taxon with expand_to). The pure-Python
#: YAML parser reads about 200 KB a second, so this also bounds what one file costs a sensor tick.
MAX_SPEC_BYTES = 262_144
#: Specs nest a few levels (a field, a list, an item's fields).
MAX_DEPTH = 50
#: Values (scalars and collections) a spec may hold once its aliases are expanded.
MAX_VALUES = 100_000


class SpecLimitError(SpecError):
    """A spec file refused for its size or shape before it is built: one line, file and limit."""

    def __str__(self) -> str:
        return f"{self.path}: refused: {'; '.join(self.problems)}"


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


#: A run of flow openers (``[[[[`` or ``{ {``) deeper than the limit, found without the YAML scanner,
#: whose look-ahead for simple keys costs time per pending level.
_DEEP_FLOW = re.compile(r"(?:[\[{]\s*)" + f"{{{MAX_DEPTH + 1}}}")


def _deeper_than_allowed(source: str, line: int) -> SpecLimitError:
    return SpecLimitError(
        source, [f"nesting deeper than {MAX_DEPTH} levels (line {line}); a spec nests a few levels"]
    )


def _checked_events(text: str, source: str) -> list[yaml.Event]:
    """The YAML events of ``text``, refusing deep nesting and alias bombs before anything is built.

    The composer and constructors recurse per level and expand every alias, so a 20,000-deep list
    overflows the stack and a few lines of nested aliases become billions of values. The event stream
    is flat: track the depth, and the expanded size of each anchored node so that an alias counts
    what it stands for. The events are then composed as they are (:func:`_load_events`): one parse.
    """
    deep = _DEEP_FLOW.search(text)
    if deep is not None:
        raise _deeper_than_allowed(source, text.count("\n", 0, deep.start()) + 1)
    loader = _SpecLoader(text)
    events: list[yaml.Event] = []
    try:
        depth, total = 0, 0
        frames: list[list] = []  # [expanded values so far, anchor] per open collection
        sizes: dict[str, int] = {}
        while loader.check_event():
            event = loader.get_event()
            events.append(event)
            size = 0
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _deeper_than_allowed(source, event.start_mark.line + 1)
                frames.append([1, event.anchor])
                total += 1
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
                size, anchor = frames.pop()
                if anchor:
                    sizes[anchor] = size
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                total += 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                size = sizes.get(event.anchor, 1)
                total += size
            if frames:
                frames[-1][0] += size
            if total > MAX_VALUES:
                raise SpecLimitError(
                    source,
                    [
                        f"its YAML aliases expand to more than {MAX_VALUES:,} values (line "
                        f"{event.start_mark.line + 1}); write the values out or use fewer aliases"
                    ],
                )
    finally:
        loader.dispose()
    return events


class _EventReplay(_SpecLoader):
    """The spec loader composing events already parsed (and checked) instead of parsing again."""

    def __init__(self, events: list[yaml.Event]) -> None:
        super().__init__("")
        self._events = deque(events)

    def check_event(self, *choices: type) -> bool:
        return bool(self._events) and (not choices or isinstance(self._events[0], choices))

    def peek_event(self) -> yaml.Event:
        return self._events[0]

    def get_event(self) -> yaml.Event:
        return self._events.popleft()


def _load_events(events: list[yaml.Event]) -> Any:
    loader = _EventReplay(events)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _too_large(source: str | Path) -> SpecLimitError:
    return SpecLimitError(
        source,
        [f"larger than {MAX_SPEC_BYTES:,} bytes, the limit for a spec file (a spec is a few KB of YAML)"],
    )


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
        if len(text_or_dict) > MAX_SPEC_BYTES:
            raise _too_large(source)
        try:
            data = _load_events(_checked_events(text_or_dict, source))  # the safe loader's constructors
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
        with path.open("rb") as file:  # never more than the limit, whatever the file claims to be
            raw = file.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:
            raise _too_large(path)
        text = raw.decode("utf-8")
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
