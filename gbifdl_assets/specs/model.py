"""The training-set spec: one YAML file describes one training set (= one Dagster partition).

:class:`TrainingSetSpec` gathers the sections (:mod:`gbifdl_assets.specs.sections`) with the name,
the taxa and the GBIF occurrence filters, whose grammar lives beside the GBIF client
(:mod:`gbifdl_assets.gbif.search_parameters`). Its :meth:`~TrainingSetSpec.fingerprint` is what
stages compare to decide whether a spec change concerns them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, field_validator, model_validator

from gbifdl_assets.gbif import licenses as lic
from gbifdl_assets.gbif.search_parameters import normalize_search_filters
from gbifdl_assets.quoting import describe, show
from gbifdl_assets.specs.messages import FieldProblems
from gbifdl_assets.specs.sections import (
    AnnotationPolicy,
    BalancingSpec,
    ImageOptions,
    RefreshSpec,
    Section,
    SourceSpec,
    SplitSpec,
    TaxonRef,
    kingdom_hint,
)

__all__ = ["DEFAULT_LICENSE_ALLOWLIST", "TrainingSetSpec"]

#: License-clean default: images anyone may reuse, including commercially, given attribution.
#: CC0 and the public-domain mark carry no conditions; CC BY only asks for credit, which the
#: export writes for every image; CC BY-SA asks for credit and that adapted *images* keep the
#: licence, which the per-image licence log satisfies. NC (no commercial use) and ND (no
#: adaptations: resizing or cropping may already count) are left out, as are "all rights
#: reserved" and unknown licences; a spec can opt into any of them explicitly.
DEFAULT_LICENSE_ALLOWLIST: tuple[str, ...] = ("CC0", "PDM", "CC-BY", "CC-BY-SA")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class TrainingSetSpec(Section):
    """One training set. See ``gbifdl_assets/examples/*.yaml`` for annotated examples."""

    name: str  # the partition key
    description: str = ""
    kingdom: str | None = None  # default kingdom hint for taxa given by name
    taxa: list[TaxonRef]
    occurrence_filters: dict[str, list[str]] = Field(default_factory=lambda: {"mediaType": ["StillImage"]})
    exclude_filters: dict[str, list[str]] = Field(default_factory=dict)  # records matching any are dropped
    source: SourceSpec = Field(default_factory=SourceSpec)
    balancing: BalancingSpec = Field(default_factory=BalancingSpec)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    annotations: AnnotationPolicy = Field(default_factory=AnnotationPolicy)
    images: ImageOptions = Field(default_factory=ImageOptions)
    licenses: list[str] = Field(
        default_factory=lambda: lic.parse_license_allowlist(DEFAULT_LICENSE_ALLOWLIST)
    )  # normalised media-licence ids allowed in the set
    refresh: RefreshSpec = Field(default_factory=RefreshSpec)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not _NAME_RE.match(value):
            slug = re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-_")[:63] or "my-training-set"
            raise ValueError(
                f"{show(value)} is not a valid training-set name; use 1-63 lowercase letters, digits, "
                f"'-' or '_', starting with a letter or digit, e.g. '{slug}'"
            )
        return value

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("kingdom", mode="before")
    @classmethod
    def _kingdom_hint(cls, value: Any) -> Any:
        return kingdom_hint(value)

    @field_validator("taxa", mode="before")
    @classmethod
    def _taxa(cls, value: Any) -> Any:
        if isinstance(value, str | int | Mapping) and not isinstance(value, bool):
            value = [value]
        if value is None or (isinstance(value, list) and not value):
            raise ValueError(
                "empty; list at least one scientific name or GBIF key, e.g. taxa: [Vanessa atalanta]"
            )
        return value

    @field_validator("occurrence_filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> Any:
        filters = normalize_search_filters(value)
        # an image training set only wants records that have images
        media = filters.setdefault("mediaType", ["StillImage"])
        if "StillImage" not in media:
            raise FieldProblems(
                [("mediaType", "an image training set needs StillImage; add it or remove mediaType")]
            )
        return dict(sorted(filters.items()))

    @field_validator("exclude_filters", mode="before")
    @classmethod
    def _exclude(cls, value: Any) -> Any:
        return normalize_search_filters(value)

    @field_validator("licenses", mode="before")
    @classmethod
    def _licenses(cls, value: Any) -> Any:
        if value is None:
            return lic.parse_license_allowlist(DEFAULT_LICENSE_ALLOWLIST)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError(f"expected a list of licences, got {describe(value)}")
        if not items:
            raise ValueError(
                f"an empty allowlist admits no image; list licences, e.g. {list(DEFAULT_LICENSE_ALLOWLIST)}"
            )
        allowed: set[str] = set()
        problems: list[tuple[str, str]] = []
        for i, item in enumerate(items):
            try:
                allowed.update(lic.resolve_license_entry(item))
            except ValueError as exc:
                problems.append((f"[{i}]", str(exc)))
        if problems:
            raise FieldProblems(problems)
        return [x for x in lic.KNOWN_LICENSES if x in allowed]

    @model_validator(mode="after")
    def _taxa_checks(self) -> TrainingSetSpec:
        problems: list[tuple[str, str]] = []
        seen: dict[Any, int] = {}
        for i, taxon in enumerate(self.taxa):
            ident = ("key", taxon.key) if taxon.key is not None else ("name", (taxon.name or "").casefold())
            if ident in seen:
                problems.append(
                    (f"taxa[{i}]", f"'{taxon.label}' repeats taxa[{seen[ident]}]; remove one of them")
                )
            seen.setdefault(ident, i)
        if problems:
            raise FieldProblems(problems)
        if self.kingdom is not None:
            taxa = [
                t.model_copy(update={"kingdom": self.kingdom}) if t.kingdom is None and t.name else t
                for t in self.taxa
            ]
            object.__setattr__(self, "taxa", taxa)  # frozen model: fill the hint in once, here
        return self

    # -- derived ------------------------------------------------------------------------------------
    def search_params(self, taxon_keys: Iterable[int] | None = None) -> dict[str, list[str]]:
        """``occurrence_filters`` as GBIF search parameters (a list = repeated parameter = OR).

        With ``taxon_keys`` (the resolved taxa) a ``taxonKey`` parameter is added.
        """
        params = {k: list(v) for k, v in self.occurrence_filters.items()}
        if taxon_keys is not None:
            params["taxonKey"] = [str(k) for k in sorted(set(taxon_keys))]
        return params

    def fingerprint(self, *sections: str) -> str:
        """Stable sha256 of the normalised spec (or of some top-level fields only).

        Key order, spelling of parameter names, case of enum values and the order of filter
        values do not change it; any change of meaning does. ``fingerprint("taxa", "kingdom")``
        fingerprints only what a stage depends on.
        """
        data = self.model_dump(mode="json")
        if sections:
            unknown = [s for s in sections if s not in data]
            if unknown:
                raise ValueError(f"unknown spec fields {unknown}; fields: {', '.join(data)}")
            data = {s: data[s] for s in sections}
        payload = json.dumps({"spec_format": 1, "spec": data}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
