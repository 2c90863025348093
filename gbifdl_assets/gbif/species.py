"""Resolve the taxa of a training-set spec into a species list.

Names go through GBIF's species match, keys through the species API, higher taxa are expanded to
their accepted descendants at the rank the spec asks for, and synonyms are replaced by their
accepted usage, because GBIF interprets occurrences against accepted keys (``speciesKey``,
``acceptedTaxonKey``): a synonym key would label the same organisms twice.

Nothing is dropped silently: a name GBIF cannot match, a match that only reached a higher rank,
or an unknown key stays in the table with ``match_type = "NONE"`` and a note saying why, so the
Dagster asset check can fail loudly and the user sees what to fix.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from gbifdl_assets.gbif.client import GbifClient, NameMatch
from gbifdl_assets.gbif.errors import GbifNotFound
from gbifdl_assets.vocabulary import KEY_RANKS

log = logging.getLogger(__name__)

#: The ranks a higher taxon can be expanded to (those with a ``<rank>Key`` on every name usage).
RANKS = KEY_RANKS
_CLASSIFICATION = ("kingdom", "phylum", "class", "order", "family", "genus", "species")

#: match_type values in the species list. EXACT/FUZZY come from GBIF's matcher; SYNONYM marks an
#: input that GBIF matched to a synonym and we replaced by its accepted usage; KEY is a key given
#: in the spec; EXPANDED a descendant of a higher taxon; NONE is unmatched.
MATCH_TYPES = ("EXACT", "FUZZY", "SYNONYM", "KEY", "EXPANDED", "NONE")


class TaxonInput(Protocol):
    """The part of ``specs.TaxonRef`` this module needs (kept structural so the core stays decoupled)."""

    name: str | None
    key: int | None
    expand_to: str | None
    kingdom: str | None


@dataclass
class SpeciesRow:
    input: str
    input_kind: str  # name | key | expansion
    match_type: str
    taxon_key: int | None = None  # the accepted key: the one occurrences are queried and labelled by
    usage_key: int | None = None  # what the input matched before synonym resolution
    scientific_name: str | None = None
    canonical_name: str | None = None
    rank: str | None = None
    status: str | None = None
    confidence: int | None = None
    kingdom: str | None = None
    phylum: str | None = None
    class_: str | None = None
    order: str | None = None
    family: str | None = None
    genus: str | None = None
    species: str | None = None
    expanded_from: str | None = None
    # "label": a class of the training set; "group": a higher taxon that was expanded into its
    # descendants (listed for the record, neither queried nor used as a label).
    role: str = "label"
    note: str = ""


SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("input_kind", pa.string()),
        ("match_type", pa.string()),
        ("taxon_key", pa.int64()),
        ("usage_key", pa.int64()),
        ("scientific_name", pa.string()),
        ("canonical_name", pa.string()),
        ("rank", pa.string()),
        ("status", pa.string()),
        ("confidence", pa.int32()),
        ("kingdom", pa.string()),
        ("phylum", pa.string()),
        ("class", pa.string()),
        ("order", pa.string()),
        ("family", pa.string()),
        ("genus", pa.string()),
        ("species", pa.string()),
        ("expanded_from", pa.string()),
        ("role", pa.string()),
        ("note", pa.string()),
    ]
)


@dataclass
class SpeciesResolution:
    rows: list[SpeciesRow]
    duplicates: list[str] = field(default_factory=list)  # inputs that resolved to a taxon already listed

    @property
    def matched(self) -> list[SpeciesRow]:
        return [r for r in self.rows if r.match_type != "NONE"]

    @property
    def unmatched(self) -> list[SpeciesRow]:
        return [r for r in self.rows if r.match_type == "NONE"]

    def counts(self) -> dict[str, int]:
        by_type = {t: 0 for t in MATCH_TYPES}
        for row in self.rows:
            by_type[row.match_type] += 1
        return {
            "taxa": len(self.matched),
            "exact": by_type["EXACT"],
            "fuzzy": by_type["FUZZY"],
            "synonym": by_type["SYNONYM"],
            "key": by_type["KEY"],
            "expanded": by_type["EXPANDED"],
            "unmatched": by_type["NONE"],
            "duplicates": len(self.duplicates),
        }

    def taxon_keys(self) -> list[int]:
        """Accepted keys of the training set's classes (what occurrences are queried by)."""
        return [r.taxon_key for r in self.matched if r.taxon_key is not None and r.role == "label"]

    def to_table(self) -> pa.Table:
        records = []
        for row in self.rows:
            rec = asdict(row)
            rec["class"] = rec.pop("class_")
            records.append(rec)
        return pa.Table.from_pylist(records, schema=SCHEMA)


def _classification(usage: dict[str, Any]) -> dict[str, Any]:
    out = {("class_" if f == "class" else f): usage.get(f) for f in _CLASSIFICATION}
    return out


def _row_from_usage(
    usage: dict[str, Any], *, input: str, input_kind: str, match_type: str, **extra: Any
) -> SpeciesRow:
    return SpeciesRow(
        input=input,
        input_kind=input_kind,
        match_type=match_type,
        taxon_key=int(usage["key"]),
        scientific_name=usage.get("scientificName"),
        canonical_name=usage.get("canonicalName"),
        rank=usage.get("rank"),
        status=usage.get("taxonomicStatus"),
        **_classification(usage),
        **extra,
    )


class SpeciesResolver:
    """Resolves spec taxa with a GBIF client; names and keys are looked up concurrently."""

    def __init__(self, client: GbifClient, *, default_kingdom: str | None = None, workers: int = 4):
        self.client = client
        self.default_kingdom = default_kingdom
        self.workers = max(1, workers)

    def resolve(self, taxa: Sequence[TaxonInput]) -> SpeciesResolution:
        with ThreadPoolExecutor(self.workers) as pool:
            resolved = list(pool.map(self._resolve_one, taxa))
        rows: list[SpeciesRow] = []
        for taxon, row in zip(taxa, resolved, strict=True):
            rows.append(row)
            if row.match_type != "NONE" and taxon.expand_to:
                children = self._expand(row, taxon.expand_to.upper())
                if children:
                    row.role = "group"
                    row.note = _join(
                        row.note, f"expanded to {len(children)} taxa at rank {taxon.expand_to.upper()}"
                    )
                rows.extend(children)
        return _deduplicate(rows)

    # --- one input -------------------------------------------------------------------------------
    def _resolve_one(self, taxon: TaxonInput) -> SpeciesRow:
        if taxon.key is not None:
            return self._resolve_key(int(taxon.key))
        assert taxon.name, "a TaxonRef has a name or a key"
        # a rank narrows GBIF's match like a kingdom does; used when the input carries one
        rank = getattr(taxon, "rank", None)
        return self._resolve_name(
            taxon.name, taxon.kingdom or self.default_kingdom, taxon.expand_to, rank=rank
        )

    def _resolve_key(self, key: int) -> SpeciesRow:
        label = str(key)
        try:
            usage = self.client.get_species(key)
        except GbifNotFound:
            return SpeciesRow(
                input=label,
                input_kind="key",
                match_type="NONE",
                note=f"GBIF has no taxon with key {key}; check the key in the spec's taxa",
            )
        accepted = self._accepted_usage(usage)
        synonym = accepted["key"] != usage["key"]
        return _row_from_usage(
            accepted,
            input=label,
            input_kind="key",
            match_type="SYNONYM" if synonym else "KEY",
            usage_key=int(usage["key"]),
            note=f"synonym {usage.get('scientificName')} -> accepted {accepted.get('scientificName')}"
            if synonym
            else "",
        )

    def _resolve_name(
        self, name: str, kingdom: str | None, expand_to: str | None, *, rank: str | None = None
    ) -> SpeciesRow:
        match: NameMatch = self.client.match_name(name, kingdom=kingdom, rank=rank)
        if match.usage_key is None or match.match_type == "NONE":
            return SpeciesRow(
                input=name,
                input_kind="name",
                match_type="NONE",
                confidence=match.confidence,
                note=no_match_note(name, match, kingdom=kingdom),
            )
        if match.match_type == "HIGHERRANK" and not expand_to:
            # A misspelt species that only matched its genus must not turn into the whole genus.
            return SpeciesRow(
                input=name,
                input_kind="name",
                match_type="NONE",
                usage_key=match.usage_key,
                confidence=match.confidence,
                rank=match.rank,
                note=f"'{name}' matched only the {str(match.rank).lower()} {match.scientific_name}; "
                "correct the name, or add expand_to to include all its species on purpose",
            )
        if match.match_type == "AGGREGATE":
            return SpeciesRow(
                input=name,
                input_kind="name",
                match_type="NONE",
                usage_key=match.usage_key,
                note=f"'{name}' is ambiguous in GBIF (several taxa share it); {_NARROW_DOWN}",
            )
        accepted_key = match.accepted_key or match.usage_key
        usage = self.client.get_species(accepted_key)
        usage = self._accepted_usage(usage)
        synonym = match.synonym or int(usage["key"]) != match.usage_key
        match_type = "SYNONYM" if synonym else ("FUZZY" if match.match_type == "FUZZY" else "EXACT")
        note = ""
        if synonym:
            note = f"synonym {match.scientific_name} -> accepted {usage.get('scientificName')}"
        elif match_type == "FUZZY":
            note = f"fuzzy match: '{name}' -> {usage.get('scientificName')}"
        return _row_from_usage(
            usage,
            input=name,
            input_kind="name",
            match_type=match_type,
            usage_key=match.usage_key,
            confidence=match.confidence,
            note=note,
        )

    def _accepted_usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        """Follow acceptedKey once: GBIF backbone synonyms point straight at an accepted usage."""
        accepted_key = usage.get("acceptedKey")
        if accepted_key and int(accepted_key) != int(usage["key"]):
            return self.client.get_species(int(accepted_key))
        return usage

    def _expand(self, parent: SpeciesRow, rank: str) -> list[SpeciesRow]:
        if rank not in RANKS:
            raise ValueError(f"expand_to must be one of {', '.join(RANKS)}, not {rank!r}")
        if parent.rank and parent.rank in RANKS and RANKS.index(parent.rank) >= RANKS.index(rank):
            return []  # already at or below the requested rank: the taxon itself is the class
        assert parent.taxon_key is not None
        children = [
            _row_from_usage(
                usage,
                input=usage.get("scientificName") or str(usage["key"]),
                input_kind="expansion",
                match_type="EXPANDED",
                usage_key=int(usage["key"]),
                expanded_from=parent.input,
            )
            for usage in self.client.iter_descendants(parent.taxon_key, rank=rank)
        ]
        log.info("expanded %s to %d taxa at rank %s", parent.input, len(children), rank)
        if not children:
            parent.note = _join(parent.note, f"has no accepted {rank.lower()} below it")
        return children


#: what resolves a name GBIF cannot pin down (it is not the spelling)
_NARROW_DOWN = "give the kingdom (kingdom: in the taxon entry), the rank, or the GBIF taxon key"
#: GBIF's note for a name several taxa share equally (v1 ``note``, v2 ``diagnostics.note``)
_AMBIGUOUS_NOTE = re.compile(r"\bmultiple equal matches\b", re.IGNORECASE)


def gbif_match_note(match: NameMatch) -> str | None:
    """GBIF's own explanation of a match (``note`` in /v1, ``diagnostics.note`` in /v2), if any."""
    raw = match.raw or {}
    diagnostics = raw.get("diagnostics")
    note = raw.get("note") or (diagnostics.get("note") if isinstance(diagnostics, dict) else None)
    return " ".join(str(note).split()) if note else None


def no_match_note(name: str, match: NameMatch, *, kingdom: str | None = None) -> str:
    """The species list's note for a name GBIF did not match: GBIF's note kept, and advice that fits it.

    An ambiguous name ("Multiple equal matches for Calopteryx") is spelt right; it needs a kingdom,
    a rank or a key. Anything else may be a typo as well as a homonym, so both are offered.
    """
    gbif = gbif_match_note(match)
    where = f" in kingdom {kingdom}" if kingdom else ""
    said = f' (GBIF: "{gbif}")' if gbif else ""
    if gbif and _AMBIGUOUS_NOTE.search(gbif):
        return f"'{name}' is ambiguous in GBIF{where}{said}: several taxa share this name; {_NARROW_DOWN}"
    return f"GBIF found no match for '{name}'{where}{said}; check the spelling, or {_NARROW_DOWN}"


def _join(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


def _deduplicate(rows: Iterable[SpeciesRow]) -> SpeciesResolution:
    """Keep the first row per accepted key; a parent that was expanded stays listed once."""
    seen: dict[int, SpeciesRow] = {}
    kept: list[SpeciesRow] = []
    duplicates: list[str] = []
    for row in rows:
        if row.taxon_key is None:
            kept.append(row)
            continue
        first = seen.get(row.taxon_key)
        if first is not None:
            duplicates.append(row.input)
            if row.input_kind != "expansion":
                first.note = _join(first.note, f"also listed as '{row.input}'")
            continue
        seen[row.taxon_key] = row
        kept.append(row)
    return SpeciesResolution(rows=kept, duplicates=duplicates)


def resolve_taxa(
    client: GbifClient, taxa: Sequence[TaxonInput], *, default_kingdom: str | None = None, workers: int = 4
) -> SpeciesResolution:
    """Resolve spec taxa to accepted GBIF taxa (see module docstring)."""
    return SpeciesResolver(client, default_kingdom=default_kingdom, workers=workers).resolve(taxa)
