"""Rules written as sentences: "Panthera leo in GL are suspicious".

Grammar (case-insensitive keywords; a trailing full stop is ignored)::

    TAXON in AREA (are|is) LABEL [YEARS] [(basisOfRecord [not] NAME[, NAME…])] [(dataset UUID)]

* TAXON: a scientific name ("Panthera leo", "Aves"), a vernacular name ("Lions": singular or plural,
  looked up through the species search when the name matcher finds nothing exact), a taxon key
  (5219404), or "anything" / "everything" / "any taxon" for a rule on every taxon. Names go through
  ``client.match_name`` (a :class:`~gbifdl_assets.gbif.client.GbifClient`, or anything with that
  method); synonyms are replaced by their accepted key, because occurrences carry accepted keys.
* AREA: an ISO country code (GL, GRL), an English country name (Greenland) or WKT, via
  :func:`gbifdl_assets.annotations.areas.resolve_area`.
* LABEL: a vocabulary term in any case, singular or plural ("suspicious", "natives", "vagrants");
  also "captive"/"cultivated" (MANAGED) and "extinct"/"fossil" (FORMER), which is what those labels
  mean in GBIF's design document.
* YEARS: "from 1900 to 1950" / "between 1900 and 1950" (inclusive), "in 1950", "until 1950" (≤),
  "before 1950" (<), "since 1950" (≥), "after 1950" (>).

Every failure is a :class:`RuleTextError` naming the part that failed (taxon, area, label, years, …)
and what to write instead.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import shapely

from gbifdl_assets.annotations.areas import resolve_area
from gbifdl_assets.annotations.model import (
    Rule,
    RuleError,
    normalize_basis_of_record,
    normalize_year_range,
    parse_rule,
)
from gbifdl_assets.annotations.vocabulary import LABELS, normalize_label

__all__ = ["NameMatcher", "ParsedRule", "RuleTextError", "parse_rule_text", "resolve_taxon"]


class RuleTextError(RuleError):
    """The sentence could not be turned into a rule; the message names the part that failed."""


class NameMatcher(Protocol):
    """What the parser needs from a GBIF client (``GbifClient`` has it)."""

    def match_name(self, name: str) -> Any: ...


@dataclass
class ParsedRule:
    """A sentence turned into a validated :class:`Rule`, with what was resolved on the way."""

    text: str
    rule: Rule
    taxon: str | None  # the name the key stands for (None: any taxon)
    area: str  # the area's name (country name, or "WKT polygon")
    notes: list[str] = field(default_factory=list)  # fuzzy matches, synonyms, simplifications

    @property
    def description(self) -> str:
        return self.text


_ANY_TAXON = {"anything", "everything", "any taxon", "all taxa", "all", "any", "records", "occurrences"}
_LABEL_ALIASES = {
    "captive": "MANAGED",
    "cultivated": "MANAGED",
    "planted": "MANAGED",
    "extinct": "FORMER",
    "fossil": "FORMER",
    "fossils": "FORMER",
}
_SENTENCE_RE = re.compile(
    r"^\s*(?P<taxon>.+?)\s+in\s+(?P<area>.+?)\s+(?:are|is)\s+(?P<label>[A-Za-z][A-Za-z_-]*)(?P<rest>.*?)\s*\.?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_YEAR = r"(-?\d{1,4})"
_YEAR_FORMS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(rf"\bfrom\s+{_YEAR}\s+(?:to|until|till)\s+{_YEAR}\b", re.I), lambda a, b: f"{a},{b}"),
    (re.compile(rf"\bbetween\s+{_YEAR}\s+and\s+{_YEAR}\b", re.I), lambda a, b: f"{a},{b}"),
    (re.compile(rf"\b(?:until|till|up\s+to)\s+{_YEAR}\b", re.I), lambda b: f"*,{b}"),
    (re.compile(rf"\bbefore\s+{_YEAR}\b", re.I), lambda b: f"*,{int(b) - 1}"),
    (re.compile(rf"\bsince\s+{_YEAR}\b", re.I), lambda a: f"{a},*"),
    (re.compile(rf"\bafter\s+{_YEAR}\b", re.I), lambda a: f"{int(a) + 1},*"),
    (re.compile(rf"\bin\s+{_YEAR}\b", re.I), lambda a: f"{a},{a}"),
)
_BOR_RE = re.compile(
    r"\(\s*(?P<neg1>not\s+)?(?:basisOfRecord|basis\s+of\s+record|bor)\s*:?\s*(?P<neg2>not\s+)?(?P<names>[^)]*)\)",
    re.I,
)
_DATASET_RE = re.compile(r"\(\s*(?:dataset|datasetKey)\s*:?\s*(?P<key>[0-9a-fA-F-]{32,36})\s*\)", re.I)


def parse_rule_text(
    text: str,
    *,
    client: NameMatcher | None = None,
    ruleset_id: int | None = None,
    project_id: int | None = None,
) -> ParsedRule:
    """Parse one sentence into a validated rule (module docstring for the grammar)."""
    if not isinstance(text, str) or not text.strip():
        raise RuleTextError("empty rule: write e.g. 'Panthera leo in GL are suspicious'")
    m = _SENTENCE_RE.match(text)
    if not m:
        raise RuleTextError(
            f"rule {text.strip()!r}: write it as 'TAXON in AREA are LABEL', e.g. "
            "'Panthera leo in GL are suspicious' (optionally 'from 1900 to 1950', "
            "'(basisOfRecord PRESERVED_SPECIMEN)')"
        )
    what = f"rule {text.strip()!r}"
    notes: list[str] = []
    label = _label(m.group("label"), what)
    year_range, bor, negated, dataset_key = _qualifiers(m.group("rest"), what)
    taxon_key, taxon_name = resolve_taxon(m.group("taxon"), client, what, notes)
    area_text = m.group("area").strip()
    try:
        area = resolve_area(area_text)
    except ValueError as exc:
        raise RuleTextError(f"{what}: area: {exc}") from None
    if area.note:
        notes.append(f"{area.name}: {area.note}")
    wkt = area_text if area.kind == "wkt" else shapely.to_wkt(area.geometry, rounding_precision=-1)
    data = {
        "taxonKey": taxon_key,
        "geometry": wkt,
        "annotation": label,
        "yearRange": year_range,
        "basisOfRecord": bor,
        "basisOfRecordNegated": negated,
        "datasetKey": dataset_key,
        "rulesetId": ruleset_id,
        "projectId": project_id,
    }
    try:
        rule = parse_rule(data, name=what)
    except RuleError as exc:
        raise RuleTextError(str(exc)) from None
    return ParsedRule(text=text.strip(), rule=rule, taxon=taxon_name, area=area.name, notes=notes)


def _label(word: str, what: str) -> str:
    raw = word.strip()
    candidates = [raw, raw[:-1] if raw.lower().endswith("s") else None]
    for cand in candidates:
        if not cand:
            continue
        try:
            return normalize_label(cand)
        except ValueError:
            pass
        if cand.lower() in _LABEL_ALIASES:
            return _LABEL_ALIASES[cand.lower()]
    import difflib

    close = difflib.get_close_matches(raw.upper(), LABELS, n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise RuleTextError(f"{what}: label: unknown label {raw!r}{hint}; use one of {', '.join(LABELS)}")


def _qualifiers(rest: str, what: str) -> tuple[str | None, list[str] | None, bool, str | None]:
    text = rest
    bor: list[str] | None = None
    negated = False
    dataset_key = None
    if (m := _BOR_RE.search(text)) is not None:
        try:
            bor = normalize_basis_of_record(m.group("names"))
        except ValueError as exc:
            raise RuleTextError(f"{what}: basisOfRecord: {exc}") from None
        if not bor:
            raise RuleTextError(
                f"{what}: basisOfRecord: name at least one, e.g. (basisOfRecord PRESERVED_SPECIMEN)"
            )
        negated = bool(m.group("neg1") or m.group("neg2"))
        text = text[: m.start()] + " " + text[m.end() :]
    if (m := _DATASET_RE.search(text)) is not None:
        dataset_key = m.group("key")
        text = text[: m.start()] + " " + text[m.end() :]
    year_range = None
    for pattern, build in _YEAR_FORMS:
        if (m := pattern.search(text)) is not None:
            try:
                year_range = normalize_year_range(build(*m.groups()))
            except ValueError as exc:
                raise RuleTextError(f"{what}: years: {exc}") from None
            text = text[: m.start()] + " " + text[m.end() :]
            break
    leftover = text.strip(" ,;.")
    if leftover:
        raise RuleTextError(
            f"{what}: did not understand {leftover!r} after the label; use 'from 1900 to 1950', "
            "'before/after/until/since/in YEAR', '(basisOfRecord [not] NAME, …)' or '(dataset UUID)'"
        )
    return year_range, bor, negated, dataset_key


def resolve_taxon(
    text: str, client: NameMatcher | None, what: str = "rule", notes: list[str] | None = None
) -> tuple[int | None, str | None]:
    """(accepted taxon key, its name) for a name, vernacular name or key; (None, None) for any taxon."""
    notes = notes if notes is not None else []
    name = " ".join(text.split())
    if name.lower() in _ANY_TAXON:
        return None, None
    if name.isdigit():
        return int(name), None
    if client is None:
        raise RuleTextError(
            f"{what}: taxon {name!r}: give a taxon key, or a GBIF API (--api-url) to resolve names"
        )
    try:
        match = client.match_name(name)
    except Exception as exc:  # the client's own errors say what went wrong with the request
        raise RuleTextError(f"{what}: taxon {name!r}: the name could not be looked up ({exc})") from None
    match_type = str(getattr(match, "match_type", "NONE") or "NONE").upper()
    usage_key = getattr(match, "usage_key", None)
    if usage_key is not None and match_type == "EXACT":
        return _accepted(match, name, notes)
    vernacular = _vernacular(client, name, what)
    if vernacular is not None:
        key, sci = vernacular
        notes.append(f"taxon {name!r} is the vernacular name of {sci} ({key})")
        return key, sci
    if usage_key is not None and match_type == "FUZZY":
        notes.append(
            f"taxon {name!r} fuzzily matched {getattr(match, 'scientific_name', None)} ({usage_key})"
        )
        return _accepted(match, name, notes)
    if usage_key is not None and match_type == "HIGHERRANK":
        raise RuleTextError(
            f"{what}: taxon {name!r}: GBIF matched only the higher {str(match.rank).lower()} "
            f"{match.scientific_name} ({usage_key}); check the spelling, or give that key if you mean it"
        )
    raise RuleTextError(
        f"{what}: taxon {name!r}: unknown taxon (GBIF's name matcher found nothing); check the spelling "
        "or give the taxon key"
    )


def _accepted(match: Any, name: str, notes: list[str]) -> tuple[int, str | None]:
    usage_key = int(match.usage_key)
    accepted = getattr(match, "accepted_key", None)
    sci = getattr(match, "canonical_name", None) or getattr(match, "scientific_name", None)
    if accepted is not None and int(accepted) != usage_key:
        notes.append(f"taxon {name!r} ({usage_key}) is a synonym; using its accepted key {accepted}")
        return int(accepted), sci
    return usage_key, sci


def _vernacular(client: Any, name: str, what: str = "rule") -> tuple[int, str] | None:
    """A unique accepted taxon whose vernacular name is ``name`` (singular or plural), if the client can search."""
    search = getattr(client, "iter_species_search", None)
    if search is None:
        return None
    forms = {name.lower()}
    if name.lower().endswith("es"):
        forms.add(name.lower()[:-2])
    if name.lower().endswith("s"):
        forms.add(name.lower()[:-1])
    params: dict[str, Any] = {"qField": "VERNACULAR", "status": "ACCEPTED"}
    checklist = getattr(client, "checklist_dataset_key", None)
    if isinstance(checklist, str) and checklist:
        params["datasetKey"] = checklist  # occurrence keys are backbone keys
    found: dict[int, str] = {}
    ranks: dict[int, str] = {}
    for query in sorted(forms, key=len):
        try:
            for usage in itertools.islice(search({**params, "q": query}), 300):
                names = [str(usage.get("vernacularName") or "")]
                names += [str(v.get("vernacularName") or "") for v in usage.get("vernacularNames") or []]
                if any(n.strip().lower() in forms for n in names) and usage.get("key") is not None:
                    if str(usage.get("taxonomicStatus", "ACCEPTED")).upper() not in ("ACCEPTED", "DOUBTFUL"):
                        continue
                    found[int(usage["key"])] = str(usage.get("canonicalName") or usage.get("scientificName"))
                    ranks[int(usage["key"])] = str(usage.get("rank") or "").upper()
        except Exception:  # vernacular lookup is a convenience; the caller reports the name as unknown
            return None
        if found:
            break
    if len(found) > 1:  # "Lion" names the species and its subspecies: the species is meant
        species = [k for k in found if ranks.get(k) == "SPECIES"]
        if len(species) == 1:
            return species[0], found[species[0]]
    if len(found) == 1:
        return next(iter(found.items()))
    if len(found) > 1:
        listed = ", ".join(f"{n} ({k})" for k, n in sorted(found.items())[:5])
        raise RuleTextError(
            f"{what}: taxon {name!r}: the vernacular name fits several taxa: {listed}; give the scientific name"
        )
    return None
