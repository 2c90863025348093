"""Occurrence search: parameter parsing, paging envelope and facets, GBIF style.

- Parameter names are matched case- and separator-insensitively (``TAXON_KEY``, ``taxon-key``,
  ``taxonkey`` all mean ``taxonKey``); unknown parameters are ignored, as GBIF ignores them.
- Repeated parameters are OR-ed; different parameters AND-ed.
- ``limit`` defaults to 20 and is silently capped (300); ``offset + limit`` beyond ``max_offset``
  is a 400 with GBIF's message.
- Matching row indices are cached per normalised query, so paging through a large result costs one
  filter evaluation, not one per page.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from gbifdl_assets.vocabulary import BASIS_OF_RECORD, CONTINENTS, KEY_RANKS, MEDIA_TYPES, OCCURRENCE_STATUSES

from .filters import FIELDS, BadRequest, Field, lookup, norm, params_mask
from .vocab import COUNTRY_CODES, ISSUE_NAMES, LICENSES, NO_COUNTRY
from .world import FLAG_ABSENT, World

#: matching-row arrays kept for paging (int32, so 1M rows cost 4 MB)
CACHE_BUDGET_BYTES = 64 * 1024 * 1024


@dataclass
class Query:
    filters: dict[Field, list[str]] = field(default_factory=dict)
    limit: int = 20
    offset: int = 0
    facets: list[Field] = field(default_factory=list)
    facet_limit: int = 10
    facet_offset: int = 0
    facet_mincount: int = 1
    facet_overrides: dict[tuple[str, str], int] = field(default_factory=dict)

    def cache_key(self) -> tuple:
        return tuple(sorted((f.name, tuple(sorted(v))) for f, v in self.filters.items()))


def _int_param(name: str, value: str, *, minimum: int = 0) -> int:
    try:
        x = int(value)
    except ValueError:
        raise BadRequest(f"Invalid {name}: {value}. Use a whole number.") from None
    if x < minimum:
        raise BadRequest(f"Invalid {name}: {value}. It cannot be less than {minimum}.")
    return x


def parse_query(
    items: Iterable[tuple[str, str]],
    *,
    default_limit: int = 20,
    max_limit: int = 300,
    max_offset: int | None = 100_000,
) -> Query:
    q = Query(limit=default_limit)
    for raw_name, value in items:
        name = norm(raw_name)
        if name == "LIMIT":
            q.limit = min(_int_param("limit", value), max_limit)  # GBIF caps silently
        elif name == "OFFSET":
            q.offset = _int_param("offset", value)
        elif name == "FACET":
            f = lookup(value)
            if f is None or not f.facet:
                raise BadRequest(f"Unknown facet field: {value}")
            if f not in q.facets:
                q.facets.append(f)
        elif name == "FACETLIMIT":
            q.facet_limit = _int_param("facetLimit", value)
        elif name == "FACETOFFSET":
            q.facet_offset = _int_param("facetOffset", value)
        elif name == "FACETMINCOUNT":
            q.facet_mincount = _int_param("facetMincount", value)
        elif name == "FACETMULTISELECT":
            continue
        elif name.endswith(("FACETLIMIT", "FACETOFFSET")):
            suffix = "FACETLIMIT" if name.endswith("FACETLIMIT") else "FACETOFFSET"
            f = lookup(name[: -len(suffix)])
            if f is not None:
                q.facet_overrides[(f.name, suffix)] = _int_param(raw_name, value)
        else:
            f = lookup(raw_name)
            if f is None or value is None or value.strip() == "":
                continue  # GBIF ignores parameters it does not know
            q.filters.setdefault(f, []).append(value)
    if max_offset is not None and q.offset + q.limit > max_offset:
        raise BadRequest(f"Max offset of {max_offset} exceeded: {q.offset} + {q.limit}")
    return q


class SearchIndex:
    """Evaluates queries against a world, keeping recent matching-row arrays within a byte budget."""

    def __init__(self, world: World, cache_bytes: int = CACHE_BUDGET_BYTES) -> None:
        self.world = world
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_bytes = cache_bytes

    def matches(self, q: Query) -> np.ndarray:
        """Row indices (ascending = key order) matching the query's filters."""
        if not q.filters:
            return np.arange(len(self.world.occ), dtype=np.int32)
        ck = q.cache_key()
        with self._lock:
            hit = self._cache.get(ck)
            if hit is not None:
                self._cache.move_to_end(ck)
                return hit
        rows = np.flatnonzero(params_mask(self.world, q.filters)).astype(np.int32)
        with self._lock:
            self._cache[ck] = rows
            while self._cache and sum(a.nbytes for a in self._cache.values()) > self._cache_bytes:
                self._cache.popitem(last=False)
        return rows

    def facets(self, q: Query, rows: np.ndarray) -> list[dict]:
        out = []
        for f in q.facets:
            counts = facet_counts(self.world, f, rows)
            items = sorted(
                ((k, c) for k, c in counts.items() if c >= max(q.facet_mincount, 1)),
                key=lambda kv: (-kv[1], kv[0]),
            )
            off = q.facet_overrides.get((f.name, "FACETOFFSET"), q.facet_offset)
            lim = q.facet_overrides.get((f.name, "FACETLIMIT"), q.facet_limit)
            out.append(
                {"field": f.enum, "counts": [{"name": k, "count": int(c)} for k, c in items[off : off + lim]]}
            )
        return out


def _bincount_named(
    values: np.ndarray, names, *, skip: int | None = None, size: int | None = None
) -> dict[str, int]:
    bc = np.bincount(values.astype(np.int64), minlength=size or 0)
    return {str(names[i]): int(c) for i, c in enumerate(bc) if c and i != skip and i < len(names)}


def facet_counts(world: World, f: Field, rows: np.ndarray) -> dict[str, int]:
    occ = world.occ
    tax = world.taxonomy
    name = f.name
    if name == "basisOfRecord":
        return _bincount_named(occ.basis[rows], BASIS_OF_RECORD)
    if name == "license":
        return _bincount_named(occ.license[rows], LICENSES)
    if name == "occurrenceStatus":
        return _bincount_named((occ.flags[rows] & FLAG_ABSENT).astype(np.int64), OCCURRENCE_STATUSES)
    if name == "country":
        return _bincount_named(occ.country[rows], COUNTRY_CODES, skip=NO_COUNTRY)
    if name == "continent":
        cont = f.values(world)[occ.country[rows]]
        return _bincount_named(cont[cont != 255], CONTINENTS)
    if name in ("year", "month"):
        vals = getattr(occ, name)[rows].astype(np.int64)
        vals = vals[vals > 0]
        bc = np.bincount(vals)
        return {str(i): int(c) for i, c in enumerate(bc) if c}
    if name in ("datasetKey", "publishingOrg", "publishingCountry", "institutionCode", "collectionCode"):
        bc = np.bincount(occ.dataset[rows].astype(np.int64), minlength=len(world.datasets))
        out: dict[str, int] = {}
        for d in world.datasets:
            if not bc[d.idx]:
                continue
            k = {
                "datasetKey": d.key,
                "publishingOrg": world.publishers[d.publisher].key,
                "publishingCountry": world.publishers[d.publisher].country,
                "institutionCode": d.institution_code,
                "collectionCode": d.collection_code,
            }[name]
            out[k] = out.get(k, 0) + int(bc[d.idx])
        return out
    if name in ("mediaType", "issue"):
        vals = f.values(world)[rows]
        names = MEDIA_TYPES if name == "mediaType" else ISSUE_NAMES
        out = {}
        for b, n in enumerate(names):
            c = int(np.count_nonzero(vals & vals.dtype.type(1 << b)))
            if c:
                out[n] = c
        return out
    if name in ("hasCoordinate", "hasGeospatialIssue"):
        m = f.values(world)[rows]
        t = int(np.count_nonzero(m))
        return {k: v for k, v in (("true", t), ("false", len(rows) - t)) if v}
    # taxonomic facets: count per usage, then roll up to the wanted key
    per_taxon = np.bincount(occ.taxon[rows].astype(np.int64), minlength=len(tax.taxa))
    nz = np.flatnonzero(per_taxon)
    out = {}
    if name == "taxonKey":
        # GBIF indexes every key of a record's classification under taxonKey
        for t in nz:
            keys = {int(tax.keys[t])} | {int(k) for k in tax.cls_keys[t] if k}
            for k in keys:
                out[str(k)] = out.get(str(k), 0) + int(per_taxon[t])
        return out
    if name == "acceptedTaxonKey":
        keys = tax.keys[tax.accepted[nz]]
    else:
        r = [f"{x.lower()}Key" for x in KEY_RANKS].index(name)
        keys = tax.cls_keys[nz, r]
    for t, k in zip(nz, keys, strict=True):
        if k:
            out[str(int(k))] = out.get(str(int(k)), 0) + int(per_taxon[t])
    return out


FACETABLE = tuple(f.enum for f in FIELDS if f.facet)

__all__ = ["Query", "parse_query", "SearchIndex", "facet_counts", "BadRequest", "FACETABLE"]
