"""The sections of a training-set spec: taxa, source, balancing, splits, annotations, images, refresh.

Each section is a frozen pydantic model that forbids unknown fields and normalises its values on
load (ranks and enum values to GBIF's spelling, sizes to bytes, cron aliases to lower case), so
that two specs that mean the same thing compare and fingerprint equal. Validators raise
ValueError with the fix in the message, or :class:`~gbifdl_assets.specs.messages.FieldProblems`
for several problems at sub-fields; :mod:`gbifdl_assets.specs.messages` turns either into lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gbifdl_assets.host_limits import normalize_host_limits  # the one reading of the table
from gbifdl_assets.quoting import describe, show
from gbifdl_assets.specs.messages import FieldProblems
from gbifdl_assets.suggestions import match_choice
from gbifdl_assets.vocabulary import ANNOTATION_LABELS, IMAGE_FLAGS, KEY_RANKS, KINGDOMS, TAXON_RANKS

__all__ = [
    "AnnotationPolicy",
    "BalancingSpec",
    "DuplicateOptions",
    "ImageFlagPolicy",
    "ImageOptions",
    "RefreshSpec",
    "Section",
    "SourceSpec",
    "SplitSpec",
    "TaxonRef",
    "kingdom_hint",
]

# ---------------------------------------------------------------------------------------------------
# the spec's own choices (GBIF's vocabularies are in gbifdl_assets.vocabulary)
# ---------------------------------------------------------------------------------------------------
CONFLICT_MODES: tuple[str, ...] = ("exclude_any", "keep_conflicting", "exclude_all")
SPLIT_GROUPS: tuple[str, ...] = ("occurrence", "observer", "location", "dataset")
IMAGE_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "original")
SOURCE_TYPES: tuple[str, ...] = ("auto", "search", "download", "download_key", "doi")
BALANCING_MODES: tuple[str, ...] = ("exact", "weighted")

_DOWNLOAD_KEY_RE = re.compile(r"^\d{7}-\d{15}$")
_GBIF_DOI_RE = re.compile(r"^10\.15468/dl\.[a-z0-9]+$")
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------
class Section(BaseModel):
    """A spec model: strict (unknown fields are errors), frozen, and ``null`` means "the defaults"."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _none_is_default(cls, data: Any) -> Any:
        # `balancing:` with nothing under it is YAML null: take the defaults
        return {} if data is None else data


def kingdom_hint(value: Any) -> str | None:
    """A kingdom hint in GBIF's spelling (None stays None); ValueError with a did-you-mean otherwise."""
    if value is None:
        return None
    return match_choice(value, KINGDOMS, "kingdom")


class TaxonRef(Section):
    """One entry of ``taxa``: a scientific name or a GBIF taxon key, optionally expanded.

    YAML shorthand: ``- Vanessa atalanta`` (name), ``- 1898286`` (key), or a mapping
    ``{name: Nymphalidae, expand_to: SPECIES, kingdom: Animalia}``.
    """

    name: str | None = None
    key: int | None = None
    expand_to: str | None = None  # a rank: the taxon stands for all its accepted descendants there
    kingdom: str | None = None  # hint for name matching (homonyms across kingdoms)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("expected a scientific name, a GBIF key or a mapping; got a boolean")
        if isinstance(data, int):
            return {"key": data}
        if isinstance(data, str):
            text = " ".join(data.split())
            return {"key": int(text)} if text.isdigit() else {"name": text}
        if data is None:
            raise ValueError("empty entry; give a scientific name or a GBIF key")
        if not isinstance(data, Mapping | TaxonRef):
            raise ValueError(
                f"expected a scientific name, a GBIF key or a mapping with name or key; got {describe(data)}"
            )
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(
                f"expected a scientific name as text, got {show(value)}; for a GBIF key use `key:`"
            )
        text = " ".join(value.split())
        if not text:
            raise ValueError("empty name; give a scientific name such as 'Vanessa atalanta'")
        return text

    @field_validator("key", mode="before")
    @classmethod
    def _taxon_key(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"expected a GBIF taxon key (a positive whole number), got {show(value)}")
        return value

    @field_validator("expand_to", mode="before")
    @classmethod
    def _rank(cls, value: Any) -> Any:
        if value is None:
            return None
        return match_choice(value, TAXON_RANKS, "rank")

    @field_validator("kingdom", mode="before")
    @classmethod
    def _kingdom_hint(cls, value: Any) -> Any:
        return kingdom_hint(value)

    @model_validator(mode="after")
    def _name_or_key(self) -> TaxonRef:
        if self.name is None and self.key is None:
            raise ValueError("give a scientific name (name: ...) or a GBIF taxon key (key: ...)")
        if self.name is not None and self.key is not None:
            raise ValueError("give either name or key, not both (a key already names the taxon)")
        return self

    @property
    def label(self) -> str:
        """How to name this entry in reports: the name, or ``key 1898286``."""
        return self.name if self.name is not None else f"key {self.key}"


class SourceSpec(Section):
    """Where occurrences come from.

    ``auto`` (default) pages the search API when the query matches at most
    ``search_max_records`` occurrences and requests a download above that; ``search`` and
    ``download`` force one; ``download_key`` and ``doi`` reuse an existing GBIF download.
    """

    type: str = "auto"
    key: str | None = None
    doi: str | None = None
    format: str = "DWCA"
    # Paging 300 records per request, 20,000 records is ~70 requests (seconds); a download takes
    # minutes whatever its size, and GBIF asks bulk users to use downloads.
    search_max_records: int = Field(default=20_000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        if isinstance(data, Mapping) and "type" not in data:
            if data.get("key") is not None:
                return {**data, "type": "download_key"}
            if data.get("doi") is not None:
                return {**data, "type": "doi"}
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return match_choice(value, SOURCE_TYPES, "source type")

    @field_validator("key", mode="before")
    @classmethod
    def _download_key(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        if not _DOWNLOAD_KEY_RE.match(text):
            raise ValueError(
                f"{show(value)} is not a GBIF download key; keys look like 0000066-140928181241064"
            )
        return text

    @field_validator("doi", mode="before")
    @classmethod
    def _doi(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        text = re.sub(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)", "", text, flags=re.IGNORECASE).lower()
        if not _GBIF_DOI_RE.match(text):
            raise ValueError(f"{show(value)} is not a GBIF download DOI; they look like 10.15468/dl.np3k7j")
        return text

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        fmt = match_choice(value, ("DWCA", "SIMPLE_CSV", "SIMPLE_PARQUET"), "download format")
        if fmt != "DWCA":
            raise ValueError(f"{fmt} archives carry no image URLs; use DWCA (the default)")
        return fmt

    @model_validator(mode="after")
    def _key_or_doi(self) -> SourceSpec:
        problems = []
        if self.type == "download_key":
            if self.key is None:
                problems.append(
                    (
                        "key",
                        "required when source.type is download_key; give the key, e.g. 0000066-140928181241064",
                    )
                )
            if self.doi is not None:
                problems.append(("doi", "not used with source.type download_key; remove it"))
        elif self.type == "doi":
            if self.doi is None:
                problems.append(
                    ("doi", "required when source.type is doi; give the DOI, e.g. 10.15468/dl.np3k7j")
                )
            if self.key is not None:
                problems.append(("key", "not used with source.type doi; remove it"))
        else:
            for field, needs in (("key", "download_key"), ("doi", "doi")):
                if getattr(self, field) is not None:
                    problems.append(
                        (field, f"only used with source.type {needs}; set type: {needs} or remove {field}")
                    )
        if problems:
            raise FieldProblems(problems)
        return self


class BalancingSpec(Section):
    """Exact, seeded stratified sampling: by label, then within a label by ``by`` columns."""

    label_rank: str = "SPECIES"  # labels are the accepted keys at this rank
    max_per_class: int | None = Field(default=None, ge=1)  # None: no cap
    min_per_class: int = Field(default=1, ge=0)  # classes with fewer images are dropped and reported
    max_total: int | None = Field(default=None, ge=1)  # overall cap (weighted mode samples to it)
    by: list[str] = Field(default_factory=lambda: ["publishingOrgKey"])  # strata within a class
    max_per_occurrence: int | None = Field(default=1, ge=1)  # images taken from one occurrence
    mode: str = "exact"  # exact: equal classes up to max_per_class; weighted: natural proportions
    seed: int = Field(default=0, ge=0)
    # The balance check passes when the smallest class has at least (1 - tolerance) x the images
    # of the largest one (0: perfectly equal; 0.5: at most 2x apart). Not checked in weighted mode.
    tolerance: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("label_rank", mode="before")
    @classmethod
    def _rank(cls, value: Any) -> Any:
        return match_choice(value, KEY_RANKS, "label rank")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        return match_choice(value, BALANCING_MODES, "balancing mode").lower()

    @field_validator("by", mode="before")
    @classmethod
    def _by(cls, value: Any) -> Any:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            raise ValueError(f"expected a list of column names, got {describe(value)}")
        out: list[str] = []
        for column in values:
            if not isinstance(column, str) or not _COLUMN_RE.match(column.strip()):
                raise ValueError(f"{show(column)} is not a column name (e.g. publishingOrgKey, datasetKey)")
            if column.strip() not in out:
                out.append(column.strip())
        return out

    @model_validator(mode="after")
    def _min_max(self) -> BalancingSpec:
        if self.max_per_class is not None and self.min_per_class > self.max_per_class:
            raise FieldProblems(
                [
                    (
                        "min_per_class",
                        f"{self.min_per_class} is above max_per_class ({self.max_per_class}); lower it",
                    )
                ]
            )
        return self

    @property
    def max_class_ratio(self) -> float:
        """Largest / smallest class size the balance check accepts."""
        return float("inf") if self.tolerance >= 1.0 else 1.0 / (1.0 - self.tolerance)


class SplitSpec(Section):
    """Train/val/test fractions, assigned by a stable hash of a group key (no group crosses splits)."""

    train: float = Field(default=0.8, ge=0.0, le=1.0)
    val: float = Field(default=0.1, ge=0.0, le=1.0)
    test: float = Field(default=0.1, ge=0.0, le=1.0)
    group_by: str = "occurrence"  # occurrence | observer | location | dataset
    location_cell_degrees: float = Field(default=0.1, gt=0.0, le=90.0)  # grid cell for group_by location
    seed: int = Field(default=0, ge=0)  # salt of the hash: change it to draw different splits

    @field_validator("group_by", mode="before")
    @classmethod
    def _group(cls, value: Any) -> Any:
        return match_choice(value, SPLIT_GROUPS, "split group").lower()

    @model_validator(mode="after")
    def _sum(self) -> SplitSpec:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            parts = " + ".join(
                f"{getattr(self, f):g}" + ("" if f in self.model_fields_set else f" ({f} by default)")
                for f in ("train", "val", "test")
            )
            raise ValueError(f"train + val + test = {parts} = {total:g}; the fractions must sum to 1")
        if self.train <= 0:
            raise FieldProblems([("train", "must be above 0: a training set needs training images")])
        return self


class ImageFlagPolicy(Section):
    """Which flagged images (``gbifdl annotations flags``, the gallery page) the manifest leaves out."""

    # flags with these terms drop their image; []: flags are ignored
    drop: list[str] = Field(default_factory=lambda: list(IMAGE_FLAGS))
    min_support: int = Field(default=0, ge=0)  # flags with fewer supporting votes are ignored
    exclude_contested: bool = False  # ignore flags that anyone contested

    @field_validator("drop", mode="before")
    @classmethod
    def _drop(cls, value: Any) -> Any:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            raise ValueError(f"expected a list of image flags, got {describe(value)}")
        wanted = {match_choice(v, IMAGE_FLAGS, "image flag") for v in values}
        return [flag for flag in IMAGE_FLAGS if flag in wanted]


class AnnotationPolicy(Section):
    """Which annotation rules apply and which labelled records stay out of the training set."""

    rulesets: list[str] | None = None  # None: every ruleset; []: ignore annotations
    drop_labels: list[str] = Field(default_factory=lambda: ["MANAGED", "FORMER", "SUSPICIOUS"])
    min_support: int = Field(default=0, ge=0)  # rules with fewer supporting votes are ignored
    exclude_contested: bool = False  # ignore rules that anyone contested
    # A record matched by rules with several labels, some to drop and some not:
    # exclude_any drops it (any drop label excludes), keep_conflicting keeps it unless every label
    # on it is a drop label, exclude_all drops every conflicting record as well as drop-labelled ones.
    conflicts: str = "exclude_any"
    # flags on single images: which ones leave their image out of the manifest
    image_flags: ImageFlagPolicy = Field(default_factory=ImageFlagPolicy)

    @field_validator("rulesets", mode="before")
    @classmethod
    def _rulesets(cls, value: Any) -> Any:
        if value is None:
            return None
        values = [value] if isinstance(value, str | int) else value
        if not isinstance(values, list):
            raise ValueError(f"expected a list of ruleset names or ids, got {describe(value)}")
        out: list[str] = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
                raise ValueError(f"{show(item)} is not a ruleset name or id")
            if str(item).strip() not in out:
                out.append(str(item).strip())
        return out

    @field_validator("drop_labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            raise ValueError(f"expected a list of labels, got {describe(value)}")
        labels = {match_choice(v, ANNOTATION_LABELS, "annotation label") for v in values}
        return [label for label in ANNOTATION_LABELS if label in labels]

    @field_validator("conflicts", mode="before")
    @classmethod
    def _conflicts(cls, value: Any) -> Any:
        return match_choice(value, CONFLICT_MODES, "conflict mode").lower()


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


#: what the export does with images under an attribution (BY-family) licence that nobody can be
#: credited for (no creator, rights holder, recorder or publisher): keep them marked, or leave them out
UNATTRIBUTED_CHOICES: tuple[str, ...] = ("keep", "drop")


class DuplicateOptions(Section):
    """Exact and near-duplicate photos at export (export/dedup.py): a cluster of copies never spans splits."""

    enabled: bool = True  # false: export the manifest's splits as they are (copies may leak)
    # largest Hamming distance (of 256 bits) between perceptual hashes of near copies; 0: identical only.
    # The default is media.duplicates.DEFAULT_MAX_DISTANCE (measured in bench_duplicates.py)
    max_distance: int = Field(default=31, ge=0, le=64)
    keep_copies_within_split: bool = False  # true: keep every copy inside its split (else once per class)


class ImageOptions(Section):
    """How images are fetched, validated and stored, and what the training export keeps of them."""

    max_side: int | None = Field(default=512, ge=16)  # resize so the longer side is at most this; None: keep
    min_side: int = Field(default=64, ge=1)  # smaller images are rejected as unusable
    format: str = "jpeg"  # jpeg | png | webp | original (keep the downloaded bytes)
    quality: int = Field(default=90, ge=1, le=100)  # jpeg/webp encoder quality
    max_bytes: int = Field(default=20_000_000, ge=1024)  # larger downloads are refused ("20MB" accepted)
    completeness_threshold: float = Field(default=0.95, ge=0.0, le=1.0)  # share of images that must arrive
    shards: int = Field(default=8, ge=1, le=256)  # image_store partitions per training set
    unattributed: str = "keep"  # keep | drop: BY-licensed images with no name to credit (training_export)
    min_class_images: int = Field(default=5, ge=0)  # the data card warns about classes with fewer in a split

    # politeness (media/hosts.py): each host's rate adapts to its answers; these are ceilings
    max_rate_per_host: float | None = Field(
        default=None, gt=0
    )  # requests/s for any host; null: adaptive only
    host_limits: dict[str, float | dict[str, float]] = Field(default_factory=dict)  # {host or .domain: rate}
    # opt-out before the body: robots.txt, X-Robots-Tag (noai, noimageai, noindex, noimageindex), tdm-reservation
    robots_txt: bool = True
    opt_out_headers: bool = True
    # dead links (404/410, DNS, refused) fetched from GBIF's image cache, credited to the original
    image_cache_fallback: bool = True
    # copies of one photo (same bytes, or perceptual hashes close) go to one split at export
    duplicates: DuplicateOptions = Field(default_factory=DuplicateOptions)

    @field_validator("unattributed", mode="before")
    @classmethod
    def _unattributed(cls, value: Any) -> Any:
        return match_choice(value, UNATTRIBUTED_CHOICES, "unattributed choice")

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "jpg":
            return "jpeg"
        return match_choice(value, IMAGE_FORMATS, "image format").lower()

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = _SIZE_RE.match(value)
            if m is None:
                raise ValueError(f"{show(value)} is not a size; write bytes (20000000) or e.g. '20MB'")
            unit = (m.group(2) or "").lower().rstrip("b")
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
        return value

    @field_validator("host_limits")
    @classmethod
    def _host_limits(cls, value: dict[str, Any]) -> dict[str, Any]:
        normalize_host_limits(value)  # ValueError names the host and what to write
        return value

    @model_validator(mode="after")
    def _sides(self) -> ImageOptions:
        problems = []
        if self.max_side is not None and self.min_side > self.max_side:
            problems.append(("min_side", f"{self.min_side} is above max_side ({self.max_side}); lower it"))
        if self.format == "original" and self.max_side is not None:
            problems.append(
                (
                    "max_side",
                    "format original keeps the downloaded bytes and cannot resize; "
                    "set max_side: null or choose jpeg, png or webp",
                )
            )
        if problems:
            raise FieldProblems(problems)
        return self


_CRON_ALIASES = ("@hourly", "@daily", "@weekly", "@monthly")


class RefreshSpec(Section):
    """When the training set is rebuilt from fresh GBIF data; ``cron: null`` = never automatically."""

    cron: str | None = None
    timezone: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"cron": data} if isinstance(data, str) else data

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: Any) -> Any:
        if value is None:
            return None
        text = " ".join(str(value).split())
        example = "e.g. '0 3 1 * *' (03:00 on the 1st of every month) or @daily, @weekly, @monthly"
        if text.startswith("@"):
            if text.lower() in _CRON_ALIASES:
                return text.lower()
            raise ValueError(f"'{text}' is not a cron alias; use {', '.join(_CRON_ALIASES)}")
        if len(text.split()) != 5 or not croniter.is_valid(text):
            raise ValueError(
                f"'{text}' is not a valid cron expression; give 5 fields "
                f"(minute hour day-of-month month day-of-week), {example}"
            )
        return text

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> Any:
        text = str(value).strip() if value is not None else "UTC"
        try:
            ZoneInfo(text)
        except Exception:
            raise ValueError(
                f"'{text}' is not an IANA time zone; use e.g. UTC or Europe/Copenhagen"
            ) from None
        return text
