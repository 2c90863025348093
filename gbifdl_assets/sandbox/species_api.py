"""Species endpoints: name usages, the v1 and v2 name matchers, and species search.

Shapes follow recorded GBIF responses: v1 match is flat (``usageKey``, ``matchType``, classification
names and keys, ``acceptedUsageKey`` for synonyms, no ``usageKey`` when nothing matched); v2 match
nests ``usage``/``acceptedUsage``/``classification``/``diagnostics`` with string keys.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from gbifdl_assets.vocabulary import BACKBONE_DATASET_KEY, KEY_RANKS

from .taxonomy import Taxon, Taxonomy, normalize_name
from .vocab import RANK_FIELDS, RANKS

_TS_CRAWLED = "2023-08-22T23:20:59.545+00:00"
_TS_INTERP = "2023-08-22T22:11:51.237+00:00"


def _classification_fields(tax: Taxonomy, t: Taxon, out: dict[str, Any]) -> None:
    cls = tax.cls_idx[t.idx]
    for i, fld in enumerate(RANK_FIELDS):
        if cls[i] >= 0:
            out[fld] = tax.taxa[int(cls[i])].canonical
    for i, rank in enumerate(KEY_RANKS):
        if cls[i] >= 0:
            out[f"{rank.lower()}Key"] = tax.taxa[int(cls[i])].key


def name_usage(tax: Taxonomy, t: Taxon) -> dict[str, Any]:
    """``/v1/species/{key}`` NameUsage."""
    u: dict[str, Any] = {
        "key": t.key,
        "nubKey": t.key,
        "nameKey": 10_000_000 + t.key % 90_000_000,
        "taxonID": f"gbif:{t.key}",
        "sourceTaxonKey": t.key,
    }
    _classification_fields(tax, t, u)
    cls_ = u.pop("class", None)
    u["datasetKey"] = BACKBONE_DATASET_KEY
    u["constituentKey"] = BACKBONE_DATASET_KEY
    if t.parent >= 0:
        parent = tax.taxa[t.parent]
        u["parentKey"] = parent.key
        u["parent"] = parent.canonical
    if t.is_synonym:
        acc = tax.taxa[t.accepted]
        u["acceptedKey"] = acc.key
        u["accepted"] = acc.scientific_name
    u.update(
        {
            "scientificName": t.scientific_name,
            "canonicalName": t.canonical,
        }
    )
    if t.vernacular:
        u["vernacularName"] = t.vernacular
    u.update(
        {
            "authorship": t.authorship,
            "nameType": "SCIENTIFIC",
            "rank": t.rank,
            "origin": "SOURCE",
            "taxonomicStatus": t.status,
            "nomenclaturalStatus": [],
            "remarks": "",
            "numDescendants": int(tax.num_descendants[t.idx]),
            "lastCrawled": _TS_CRAWLED,
            "lastInterpreted": _TS_INTERP,
            "issues": [],
        }
    )
    if cls_ is not None:
        u["class"] = cls_
    return u


def search_usage(tax: Taxonomy, t: Taxon) -> dict[str, Any]:
    """``/v1/species/search`` result item (adds ``synonym`` and ``higherClassificationMap``)."""
    u = name_usage(tax, t)
    u["synonym"] = t.is_synonym
    u["higherClassificationMap"] = {str(c.key): c.canonical for c in tax.classification(t.idx)}
    u["numOccurrences"] = 0
    return u


# ---------------------------------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------------------------------
def _rank_ok(t: Taxon, rank: str | None) -> bool:
    return rank is None or t.rank == rank


def _kingdom_of(tax: Taxonomy, t: Taxon) -> str:
    return tax.taxa[t.accepted].kingdom


def match(
    tax: Taxonomy,
    name: str | None,
    *,
    rank: str | None = None,
    kingdom: str | None = None,
    strict: bool = False,
    higher: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Core of both matchers: returns {usage, match_type, confidence, note, alternatives}."""
    if not name or not name.strip():
        return {"usage": None, "match_type": "NONE", "confidence": 100, "note": "No name given"}
    rank = rank.upper() if rank else None
    if rank is not None and rank not in RANKS:
        rank = None
    hints = {k.lower(): v for k, v in (higher or {}).items() if v}
    if kingdom:
        hints["kingdom"] = kingdom

    def hint_score(t: Taxon) -> int:
        score = 0
        acc = tax.taxa[t.accepted]
        cls = {c.rank.lower(): normalize_name(c.canonical) for c in tax.classification(acc.idx)}
        for fld, value in hints.items():
            have = cls.get(fld)
            if have is None:
                continue
            score += 1 if have == normalize_name(value) else -3
        return score

    exact = [t for t in tax.find(name) if _rank_ok(t, rank)]
    if exact:
        if len(exact) > 1:
            scored = sorted(exact, key=lambda t: (-hint_score(t), t.is_synonym, t.key))
            best = scored[0]
            if hint_score(best) <= hint_score(scored[1]) and not hints:
                return {
                    "usage": None,
                    "match_type": "NONE",
                    "confidence": 99,
                    "note": f"Multiple equal matches for {name.strip()}",
                    "alternatives": scored,
                }
            if hint_score(best) < 0:
                return {
                    "usage": None,
                    "match_type": "NONE",
                    "confidence": 95,
                    "note": "No match because of too little confidence",
                    "alternatives": scored,
                }
            return {"usage": best, "match_type": "EXACT", "confidence": 97, "alternatives": scored[1:]}
        best = exact[0]
        if hint_score(best) < 0:
            return {
                "usage": None,
                "match_type": "NONE",
                "confidence": 95,
                "note": f"Name matches {best.canonical} but not the given classification",
                "alternatives": exact,
            }
        return {
            "usage": best,
            "match_type": "EXACT",
            "confidence": 99 if best.authorship else 98,
            "alternatives": [],
        }
    if strict:
        return {
            "usage": None,
            "match_type": "NONE",
            "confidence": 100,
            "note": "No match because of too little confidence",
        }
    fuzzy = [(r, t) for r, t in tax.fuzzy(name, n=5, cutoff=0.85) if _rank_ok(t, rank) and hint_score(t) >= 0]
    words = normalize_name(name).split(" ")
    if fuzzy and len(fuzzy[0][1].canonical.split(" ")) == len(words):
        ratio, best = fuzzy[0]
        return {
            "usage": best,
            "match_type": "FUZZY",
            "confidence": max(50, min(95, int(ratio * 100) - 3)),
            "alternatives": [t for _, t in fuzzy[1:]],
        }
    # higher rank: the genus of a binomial we do not know
    if len(words) >= 2:
        genus_name = re.sub(r"[^a-z]", "", words[0])
        candidates = [t for t in tax.find(genus_name) if t.rank == "GENUS" and hint_score(t) >= 0]
        if candidates:
            best = sorted(candidates, key=lambda t: (-hint_score(t), t.is_synonym, t.key))[0]
            return {"usage": best, "match_type": "HIGHERRANK", "confidence": 90, "alternatives": []}
    return {
        "usage": None,
        "match_type": "NONE",
        "confidence": 100,
        "note": "No match because of too little confidence",
    }


def match_v1(tax: Taxonomy, params: dict[str, str], verbose: bool = False) -> dict[str, Any]:
    higher = {k: params[k] for k in ("phylum", "class", "order", "family", "genus") if params.get(k)}
    res = match(
        tax,
        params.get("name") or params.get("scientificName"),
        rank=params.get("rank"),
        kingdom=params.get("kingdom"),
        strict=str(params.get("strict", "false")).lower() == "true",
        higher=higher,
    )
    t: Taxon | None = res["usage"]
    out: dict[str, Any] = {}
    if t is not None:
        out["usageKey"] = t.key
        if t.is_synonym:
            out["acceptedUsageKey"] = tax.taxa[t.accepted].key
        out.update(
            {
                "scientificName": t.scientific_name,
                "canonicalName": t.canonical,
                "rank": t.rank,
                "status": "SYNONYM" if t.is_synonym else t.status,
            }
        )
        out["confidence"] = res["confidence"]
        out["matchType"] = res["match_type"]
        cls: dict[str, Any] = {}
        _classification_fields(tax, t, cls)
        class_ = cls.pop("class", None)
        out.update({k: v for k, v in cls.items() if not k.endswith("Key")})
        out.update({k: v for k, v in cls.items() if k.endswith("Key")})
        out["synonym"] = t.is_synonym
        if class_ is not None:
            out["class"] = class_
    else:
        out = {"confidence": res["confidence"]}
        if res.get("note"):
            out["note"] = res["note"]
        out["matchType"] = "NONE"
        out["synonym"] = False
    if verbose and res.get("alternatives"):
        out["alternatives"] = [
            {
                "usageKey": a.key,
                "scientificName": a.scientific_name,
                "canonicalName": a.canonical,
                "rank": a.rank,
                "status": "SYNONYM" if a.is_synonym else a.status,
                "confidence": 50,
                "matchType": "EXACT",
                "synonym": a.is_synonym,
            }
            for a in res["alternatives"]
        ]
    return out


def _v2_usage(t: Taxon) -> dict[str, Any]:
    parts = t.canonical.split(" ")
    u: dict[str, Any] = {
        "key": str(t.key),
        "name": t.scientific_name,
        "canonicalName": t.canonical,
        "authorship": t.authorship,
        "rank": t.rank,
        "code": "BOTANICAL" if t.kingdom in ("Plantae", "Fungi") else "ZOOLOGICAL",
        "status": "SYNONYM" if t.is_synonym else t.status,
    }
    if t.rank in ("GENUS", "SPECIES", "SUBSPECIES"):
        u["genericName"] = parts[0]
    if len(parts) > 1:
        u["specificEpithet"] = parts[1]
    if len(parts) > 2:
        u["infraspecificEpithet"] = parts[2]
    u["type"] = "SCIENTIFIC"
    italic = t.rank in ("GENUS", "SPECIES", "SUBSPECIES")
    body = " ".join(f"<i>{p}</i>" for p in parts) if italic else t.canonical
    u["formattedName"] = f"{body} {t.authorship}".strip()
    return u


def match_v2(tax: Taxonomy, params: dict[str, str]) -> dict[str, Any]:
    name = params.get("scientificName") or params.get("name")
    higher = {k: params[k] for k in ("phylum", "class", "order", "family", "genus") if params.get(k)}
    res = match(
        tax,
        name,
        rank=params.get("taxonRank") or params.get("rank"),
        kingdom=params.get("kingdom"),
        strict=str(params.get("strict", "false")).lower() == "true",
        higher=higher,
    )
    t: Taxon | None = res["usage"]
    diagnostics: dict[str, Any] = {"matchType": res["match_type"], "confidence": res["confidence"]}
    if res.get("note"):
        diagnostics["note"] = res["note"]
    diagnostics["timeTaken"] = 1
    if t is None:
        return {"diagnostics": diagnostics, "synonym": False}
    out: dict[str, Any] = {"usage": _v2_usage(t)}
    if t.is_synonym:
        out["acceptedUsage"] = _v2_usage(tax.taxa[t.accepted])
    chain = tax.classification(t.idx)
    acc = tax.taxa[t.accepted]
    if acc.rank in KEY_RANKS:
        chain = [*chain, acc]
    out["classification"] = [{"key": str(c.key), "name": c.canonical, "rank": c.rank} for c in chain]
    out["diagnostics"] = diagnostics
    out["synonym"] = t.is_synonym
    return out


def species_search(tax: Taxonomy, params: dict[str, list[str]]) -> list[Taxon]:
    """Usages matching ``/v1/species/search`` filters, in key order (GBIF ranks by relevance)."""
    q = (params.get("q") or [""])[0].strip().lower()
    ranks = {r.upper() for r in params.get("rank", [])}
    statuses = {s.upper() for s in params.get("status", [])}
    higher = [int(k) for k in params.get("highertaxonKey", []) if k.strip().lstrip("-").isdigit()]
    datasets = params.get("datasetKey", [])
    if datasets and BACKBONE_DATASET_KEY not in datasets:
        return []
    out = []
    hmask = None
    if higher:
        hmask = np.zeros(len(tax.taxa), dtype=bool)
        for k in higher:
            idx = tax.by_key.get(k)
            if idx is not None:
                m = tax.descendant_mask(idx)
                m[idx] = False  # descendants only, not the taxon itself
                hmask |= m
    for t in tax.taxa:
        if ranks and t.rank not in ranks:
            continue
        if statuses and t.status not in statuses and not ("SYNONYM" in statuses and t.is_synonym):
            continue
        if hmask is not None and not hmask[t.idx]:
            continue
        if q and q not in t.canonical.lower() and (not t.vernacular or q not in t.vernacular.lower()):
            continue
        out.append(t)
    out.sort(key=lambda t: t.key)
    return out
