"""Rules, rulesets, projects and comments with GBIF's JSON field names, validated.

The models speak GBIF's annotation API (``model/Rule.java`` and friends; reference annotations.md §2):
camelCase field names, nullable ``taxonKey``, timestamps like ``2023-11-10T14:08:04.182+00:00``, nulls
serialised as ``null``. A rule read from GBIF and written back with :meth:`Rule.to_gbif` has exactly the
shape GBIF sends, so rules move between GBIF and our store in both directions.

Unlike GBIF (which never parses geometry), a rule is validated here, because the engine must be able to
apply it and a user should learn about a mistake when saving, not when a training set is built:

* ``geometry``: WKT that parses, a POLYGON or MULTIPOLYGON in lon/lat degrees, at most 125,000 characters
  and 2,500 vertices (GBIF's limits; vertices counted as shapely counts them), 2-D, and valid. A
  self-intersecting polygon is **refused** with the place GEOS reports; pass ``context={"repair": True}`` to repair it with
  ``shapely.make_valid`` instead (the GBIF pull does that, as gbifrules applies ``st_make_valid``).
  GBIF's vertex limit does not apply to its admins, so pulled rules may pass ``{"gbif": True}``.
* ``annotation``: a term of the default vocabulary (GBIF's spelling, case-insensitive on input).
* ``yearRange``: ``"a,b"``, ``"*,b"``, ``"a,*"`` or a single year (as gbifrules accepts), normalised to
  ``"a,b"`` form; ``a <= b``.
* ``basisOfRecord``: GBIF BasisOfRecord names (``PreservedSpecimen`` is accepted and normalised).

Use :func:`parse_rule` for input a user wrote: its :class:`RuleError` names the rule and every problem.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from gbifdl_assets.annotations.compiled import (
    BASIS_OF_RECORD,
    MAX_POLYGON_VERTICES,
    basis_of_record_name,
    check_polygon,
    count_vertices,
    format_year_range,
    parse_year_range,
)
from gbifdl_assets.annotations.vocabulary import LABELS, normalize_label
from gbifdl_assets.errors import GbifdlError
from gbifdl_assets.suggestions import close_matches
from gbifdl_assets.vocabulary import MAX_WKT_CHARS

__all__ = [
    "BASIS_OF_RECORD",
    "MAX_POLYGON_VERTICES",
    "MAX_WKT_LENGTH",
    "Comment",
    "Project",
    "Rule",
    "RuleError",
    "Ruleset",
    "check_geometry",
    "count_vertices",
    "describe_rule",
    "format_timestamp",
    "normalize_basis_of_record",
    "normalize_year_range",
    "parse_rule",
    "parse_year_range",
]

#: GBIF's WKT length limit (occurrence-annotation dev, ``GeometryValidationService.java``); the vertex
#: limit, GBIF's vertex count and the BasisOfRecord names are shared with the compiled rules table.
MAX_WKT_LENGTH = MAX_WKT_CHARS


class RuleError(GbifdlError, ValueError):
    """A rule (or ruleset, project, comment) that cannot be accepted; the message names it."""


# ---------------------------------------------------------------------------------------------------
# field helpers (also used by the rule-text parser, the files and the store)
# ---------------------------------------------------------------------------------------------------
def format_timestamp(value: dt.datetime | None) -> str | None:
    """GBIF's timestamp text: ``2023-11-10T14:08:04.182+00:00`` (UTC, milliseconds)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def check_geometry(wkt: Any, *, repair: bool = False, enforce_limits: bool = True) -> str:
    """Validate a rule geometry and return the WKT to store (repaired when ``repair`` and invalid).

    GBIF's WKT-length and vertex limits apply unless ``enforce_limits`` is off (GBIF's admins are
    exempt). Raises ValueError with the problem and what to do about it (:func:`compiled.check_polygon`).
    """
    text, _ = check_polygon(
        wkt,
        max_vertices=MAX_POLYGON_VERTICES if enforce_limits else None,
        max_wkt_length=MAX_WKT_LENGTH if enforce_limits else None,
        repair=repair,
    )
    return text


def normalize_year_range(value: Any) -> str | None:
    """Canonical ``"a,b"`` text (``*`` for an open end), or None for no year filter."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a year range")
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"{value!r} is not a year range: give two years (use '*' or null for open)")
        value = ",".join("*" if v is None else str(v) for v in value)
    return format_year_range(parse_year_range(str(value)))  # "*,*" filters nothing: None


def normalize_basis_of_record(values: Any) -> list[str] | None:
    """Upper-snake GBIF names; accepts ``PreservedSpecimen`` and comma-separated text; None if empty."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [v for v in re.split(r"[,;]", values) if v.strip()]
    if not isinstance(values, list | tuple):
        raise ValueError(f"expected a list of basisOfRecord names, got {values!r}")
    out: list[str] = []
    for raw in values:
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"{raw!r} is not a basisOfRecord name")
        name = basis_of_record_name(raw)
        if name not in BASIS_OF_RECORD:
            raise ValueError(f"unknown basisOfRecord {raw!r}{_suggest(name, BASIS_OF_RECORD)}")
        if name not in out:
            out.append(name)
    return out or None


def normalize_annotation(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"is missing: give one of {', '.join(LABELS)}")
    try:
        label = normalize_label(value)
    except (ValueError, KeyError) as exc:
        raise ValueError(str(exc) or f"unknown label {value!r}; use one of {', '.join(LABELS)}") from None
    if label not in LABELS:
        raise ValueError(f"unknown label {value!r}; use one of {', '.join(LABELS)}")
    return label


def _suggest(value: str, choices: tuple[str, ...] | list[str]) -> str:
    close = close_matches(value, choices, n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else f"; use one of {', '.join(choices)}"


def _usernames(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of usernames for {what}, got {value!r}")
    out: list[str] = []
    for name in value:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{name!r} is not a username")
        if name.strip() not in out:
            out.append(name.strip())
    return out


# ---------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------
class _GbifModel(BaseModel):
    """camelCase fields exactly as GBIF's JSON; unknown fields are an error (a typo must not vanish)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, populate_by_name=True)

    @field_serializer("created", "modified", "deleted", check_fields=False)
    def _ts(self, value: dt.datetime | None) -> str | None:
        return format_timestamp(value)

    @classmethod
    def gbif_fields(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @classmethod
    def from_gbif(cls, data: Mapping[str, Any], **context: Any):
        """Parse a GBIF JSON object, ignoring fields this version does not know (GBIF adds fields)."""
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        return cls.model_validate(known, context={"gbif": True, **context})

    def to_gbif(self) -> dict[str, Any]:
        """The JSON object GBIF would send (field order and nulls as GBIF)."""
        return self.model_dump(mode="json")


class Rule(_GbifModel):
    """A rule: "taxon in polygon are label" (GBIF ``Rule``)."""

    id: int | None = None
    taxonKey: int | None = None
    datasetKey: str | None = None
    geometry: str
    annotation: str
    basisOfRecord: list[str] | None = None
    basisOfRecordNegated: bool = False
    yearRange: str | None = None
    rulesetId: int | None = None
    projectId: int | None = None
    supportedBy: list[str] = Field(default_factory=list)
    contestedBy: list[str] = Field(default_factory=list)
    created: dt.datetime | None = None
    createdBy: str | None = None
    deleted: dt.datetime | None = None
    deletedBy: str | None = None

    @field_validator("taxonKey", mode="before")
    @classmethod
    def _taxon_key(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not str(value).strip().lstrip("-").isdigit():
            raise ValueError(f"{value!r} is not a GBIF taxon key (a whole number)")
        key = int(str(value).strip())
        if key <= 0:
            raise ValueError(f"{key} is not a GBIF taxon key (keys are positive)")
        return key

    @field_validator("datasetKey", mode="before")
    @classmethod
    def _dataset_key(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            return str(uuid.UUID(str(value).strip()))
        except ValueError:
            raise ValueError(f"{value!r} is not a GBIF dataset key (a UUID)") from None

    @field_validator("geometry", mode="before")
    @classmethod
    def _geometry(cls, value: Any, info: ValidationInfo) -> Any:
        ctx = info.context or {}
        return check_geometry(
            value, repair=bool(ctx.get("repair")), enforce_limits=not (ctx.get("gbif") or ctx.get("admin"))
        )

    @field_validator("annotation", mode="before")
    @classmethod
    def _annotation(cls, value: Any) -> Any:
        return normalize_annotation(value)

    @field_validator("basisOfRecord", mode="before")
    @classmethod
    def _bor(cls, value: Any) -> Any:
        return normalize_basis_of_record(value)

    @field_validator("basisOfRecordNegated", mode="before")
    @classmethod
    def _negated(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("yearRange", mode="before")
    @classmethod
    def _year_range(cls, value: Any) -> Any:
        return normalize_year_range(value)

    @field_validator("supportedBy", "contestedBy", mode="before")
    @classmethod
    def _votes(cls, value: Any, info: ValidationInfo) -> Any:
        return _usernames(value, info.field_name or "votes")

    @property
    def years(self) -> tuple[int | None, int | None] | None:
        return parse_year_range(self.yearRange)

    @property
    def support_count(self) -> int:
        return len(self.supportedBy)

    @property
    def contest_count(self) -> int:
        return len(self.contestedBy)


class Ruleset(_GbifModel):
    """A group of rules, usually inside a project (GBIF ``Ruleset``)."""

    id: int | None = None
    projectId: int | None = None
    name: str
    description: str | None = None
    members: list[str] = Field(default_factory=list)
    created: dt.datetime | None = None
    createdBy: str | None = None
    modified: dt.datetime | None = None
    modifiedBy: str | None = None
    deleted: dt.datetime | None = None
    deletedBy: str | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return _name_text(value)

    @field_validator("members", mode="before")
    @classmethod
    def _members(cls, value: Any) -> Any:
        return _usernames(value, "members")


class Project(_GbifModel):
    """The unit of collaboration: members write, everyone reads (GBIF ``Project``)."""

    id: int | None = None
    name: str
    description: str | None = None
    members: list[str] = Field(default_factory=list)
    created: dt.datetime | None = None
    createdBy: str | None = None
    modified: dt.datetime | None = None
    modifiedBy: str | None = None
    deleted: dt.datetime | None = None
    deletedBy: str | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return _name_text(value)

    @field_validator("members", mode="before")
    @classmethod
    def _members(cls, value: Any) -> Any:
        return _usernames(value, "members")


class Comment(_GbifModel):
    """A comment on a rule (GBIF ``Comment``)."""

    id: int | None = None
    ruleId: int | None = None
    comment: str
    created: dt.datetime | None = None
    createdBy: str | None = None
    deleted: dt.datetime | None = None
    deletedBy: str | None = None

    @field_validator("comment", mode="before")
    @classmethod
    def _comment(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("is empty: write some text")
        if len(value) > 10_000:
            raise ValueError(f"has {len(value):,} characters; keep comments under 10,000")
        return value


def _name_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is empty: give a name")
    if len(value.strip()) > 200:
        raise ValueError("is longer than 200 characters")
    return value.strip()


# ---------------------------------------------------------------------------------------------------
# parsing with messages that name the rule
# ---------------------------------------------------------------------------------------------------
def describe_rule(data: Any) -> str:
    """A short name for a rule in messages: its id, else its taxon and label."""
    if isinstance(data, Rule):
        data = data.model_dump()
    if not isinstance(data, Mapping):
        return "rule"
    if data.get("id") is not None:
        return f"rule {data['id']}"
    taxon = data.get("taxonKey") or data.get("taxon")
    label = data.get("annotation")
    bits = [f"taxon {taxon}" if taxon is not None else None, str(label) if label else None]
    inner = ", ".join(b for b in bits if b)
    return f"rule ({inner})" if inner else "rule"


def format_validation_error(exc: ValidationError, what: str) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "rule"
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "is missing"
        elif err.get("type") == "extra_forbidden":
            msg = "is not a rule field (check the spelling; GBIF's names are camelCase)"
        problems.append(
            f"{field} {msg}" if msg.startswith(("is ", "has ", "reaches ")) else f"{field}: {msg}"
        )
    return f"{what}: " + "; ".join(problems)


def parse_rule(
    data: Mapping[str, Any] | Rule,
    *,
    name: str | None = None,
    repair: bool = False,
    gbif: bool = False,
) -> Rule:
    """Validate ``data`` as a rule; a :class:`RuleError` names the rule (``name`` or its id/taxon)."""
    if isinstance(data, Rule):
        data = data.model_dump()
    if not isinstance(data, Mapping):
        raise RuleError(f"{name or 'rule'}: expected a mapping of rule fields, got {type(data).__name__}")
    what = name or describe_rule(data)
    try:
        if gbif:
            return Rule.from_gbif(data, repair=repair)
        return Rule.model_validate(dict(data), context={"repair": repair})
    except ValidationError as exc:
        raise RuleError(format_validation_error(exc, what)) from None
