"""What a user reads when a spec is wrong: one line per problem, ``<field path>: <what to do>``.

Pydantic's own error format never reaches the user: :func:`problem_lines` turns a
``ValidationError`` into lines that name the field (``balancing.max_per_class``,
``taxa[2].expand_to``) and the fix, with a did-you-mean for unknown fields. Validators that find
several problems at once raise :class:`FieldProblems`; the GBIF parameter grammar raises
:class:`~gbifdl_assets.gbif.search_parameters.SearchParameterError`; both become one line each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.gbif.search_parameters import SearchParameterError
from gbifdl_assets.quoting import describe, show
from gbifdl_assets.suggestions import suggest

__all__ = ["FieldProblems", "SpecError", "problem_lines"]


class SpecError(GbifdlError, ValueError):
    """A spec that cannot be used; ``problems`` holds one line per problem (``<field>: <fix>``)."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.path}: invalid training-set spec ({n} problem{'' if n == 1 else 's'})"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])

    def __reduce__(self):  # keep path and problems when pickled across processes
        return (type(self), (self.path, self.problems))


class FieldProblems(ValueError):
    """Raised inside validators to report several problems at sub-paths of the validated field."""

    def __init__(self, items: Sequence[tuple[str, str]]):
        self.items = list(items)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.items))


# ---------------------------------------------------------------------------------------------------
# pydantic errors -> problem lines
# ---------------------------------------------------------------------------------------------------
def _model_at(root: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model whose fields ``loc`` (a pydantic error location) points into; None past a non-model."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        stack, found = [field.annotation], None
        while stack and found is None:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                found = ann
            else:
                stack.extend(get_args(ann))
        if found is None:
            return None
        model = found
    return model


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part):  # pydantic-internal steps such as function-after[...]
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _join(base: str, sub: str) -> str:
    if not sub:
        return base
    if sub.startswith("[") or not base:
        return base + sub
    return f"{base}.{sub}"


_REQUIRED_HINTS = {
    "name": "required; add e.g. `name: my-training-set` (lowercase letters, digits, '-' and '_')",
    "taxa": "required; list the taxa, e.g. taxa: [Vanessa atalanta, Aglais io]",
}


def _message(err: Mapping[str, Any]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "missing":
        return _REQUIRED_HINTS.get(str(err["loc"][-1]), "required; add it")
    if kind.startswith("int_"):
        return f"expected a whole number, got {show(value)}"
    if kind.startswith("float_"):
        return f"expected a number, got {show(value)}"
    if kind.startswith("bool_"):
        return f"expected true or false, got {show(value)}"
    if kind.startswith("string_"):
        return f"expected text, got {show(value)}"
    if kind == "list_type":
        return f"expected a list, got {describe(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of fields, got {describe(value)}"
    for bound, words in (
        ("ge", "at least"),
        ("gt", "greater than"),
        ("le", "at most"),
        ("lt", "less than"),
    ):
        if bound in ctx:
            return f"must be {words} {ctx[bound]}, got {show(value)}"
    return str(err["msg"])


def _unknown_field(root: type[BaseModel], loc: Sequence[Any]) -> str:
    model = _model_at(root, loc[:-1])
    field = str(loc[-1])
    valid = list(model.model_fields) if model is not None else []
    suggestion = suggest(field, valid) if valid else None
    if suggestion:
        return f"unknown field; did you mean '{suggestion}'?"
    return (
        f"unknown field; remove it (fields here: {', '.join(valid)})" if valid else "unknown field; remove it"
    )


def _sub_problems(cause: Any) -> list[tuple[str, str]] | None:
    """``(sub-path, message)`` pairs of an error that reports several problems, else None."""
    if isinstance(cause, FieldProblems):
        return cause.items
    if isinstance(cause, SearchParameterError):
        return cause.problems
    return None


def problem_lines(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One ``<field path>: <what to do>`` line per problem of ``exc``, raised validating ``root``."""
    lines: dict[str, None] = {}  # ordered and without repeats, in linear time (a spec may have many)
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        base = _path(loc)
        sub_problems = _sub_problems((err.get("ctx") or {}).get("error"))
        if sub_problems is not None:
            items = [(_join(base, sub), msg) for sub, msg in sub_problems]
        elif err["type"] == "extra_forbidden":
            items = [(base, _unknown_field(root, loc))]
        else:
            items = [(base, _message(err))]
        for path, msg in items:
            lines.setdefault(f"{path}: {msg}" if path else msg)
    return list(lines)
