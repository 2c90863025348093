"""Evaluate GBIF download predicates against the occurrence table, vectorised.

Supports ``and or not equals in lessThan lessThanOrEquals greaterThan greaterThanOrEquals isNull
isNotNull like within geoDistance``. Keys are UPPER_SNAKE (any case/separators accepted), values are
strings (numbers are accepted and stringified, as GBIF's deserialiser does). ``equals`` has the same
semantics as the search parameter of the same name, so ``TAXON_KEY`` includes descendants and
synonyms, exactly like ``taxonKey=`` in a search.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .filters import (
    BadRequest,
    compare,
    geo_distance_mask,
    geometry_mask,
    like_mask,
    lookup,
    null_mask,
    value_mask,
)
from .world import World

_COMPARE = {"lessthan": "lt", "lessthanorequals": "le", "greaterthan": "gt", "greaterthanorequals": "ge"}
MAX_PREDICATES = 101_000


def _field(key: Any, pred: dict):
    if not isinstance(key, str) or not key:
        raise BadRequest(
            f"Predicate {pred.get('type')!r} needs a 'key' naming a search parameter, got {key!r}"
        )
    f = lookup(key)
    if f is None:
        raise BadRequest(
            f"Unknown predicate key {key!r} (use an occurrence search parameter, e.g. TAXON_KEY)"
        )
    return f


def _value(v: Any, pred: dict) -> str:
    if v is None or isinstance(v, (dict, list)):
        raise BadRequest(f"Predicate {pred.get('type')!r} needs a string 'value', got {v!r}")
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def count_predicates(pred: Any) -> int:
    if not isinstance(pred, dict):
        return 1
    n = 1
    for p in pred.get("predicates") or []:
        n += count_predicates(p)
    if isinstance(pred.get("predicate"), dict):
        n += count_predicates(pred["predicate"])
    n += len(pred.get("values") or [])
    return n


def evaluate(world: World, pred: dict | None) -> np.ndarray:
    """Boolean mask of the records matching ``pred`` (None = everything, like GBIF)."""
    if pred is None:
        return np.ones(len(world.occ), dtype=bool)
    if count_predicates(pred) > MAX_PREDICATES:
        raise BadRequest(f"A download limitation is exceeded: more than {MAX_PREDICATES} predicates")
    return _eval(world, pred)


def _eval(world: World, pred: Any) -> np.ndarray:
    if not isinstance(pred, dict) or "type" not in pred:
        raise BadRequest(f"Invalid predicate {pred!r}: an object with a 'type' is required")
    t = str(pred["type"]).replace("_", "").lower()
    n = len(world.occ)
    if t in ("and", "or"):
        subs = pred.get("predicates")
        if not isinstance(subs, list) or not subs:
            raise BadRequest(f"Predicate '{pred['type']}' needs a non-empty 'predicates' list")
        out = _eval(world, subs[0])
        for s in subs[1:]:
            out = (out & _eval(world, s)) if t == "and" else (out | _eval(world, s))
        return out
    if t == "not":
        sub = pred.get("predicate")
        if not isinstance(sub, dict):
            raise BadRequest("Predicate 'not' needs a 'predicate' object")
        return ~_eval(world, sub)
    if t == "equals":
        return value_mask(world, _field(pred.get("key"), pred), _value(pred.get("value"), pred))
    if t == "in":
        f = _field(pred.get("key"), pred)
        values = pred.get("values")
        if not isinstance(values, list) or not values:
            raise BadRequest("Predicate 'in' needs a non-empty 'values' list")
        out = np.zeros(n, dtype=bool)
        for v in values:
            out |= value_mask(world, f, _value(v, pred))
        return out
    if t in _COMPARE:
        return compare(world, _field(pred.get("key"), pred), _COMPARE[t], _value(pred.get("value"), pred))
    if t in ("isnull", "isnotnull"):
        # GBIF uses 'parameter' here, not 'key'; accept both to be forgiving
        f = _field(pred.get("parameter") or pred.get("key"), pred)
        m = null_mask(world, f)
        return m if t == "isnull" else ~m
    if t == "like":
        return like_mask(world, _field(pred.get("key"), pred), _value(pred.get("value"), pred))
    if t == "within":
        geom = pred.get("geometry")
        if not isinstance(geom, str):
            raise BadRequest("Predicate 'within' needs a WKT 'geometry' string")
        return geometry_mask(world, geom)
    if t == "geodistance":
        return geo_distance_mask(world, pred.get("latitude"), pred.get("longitude"), pred.get("distance"))
    raise BadRequest(f"Unsupported predicate type {pred['type']!r}")


def echo(pred: Any) -> Any:
    """The predicate as GBIF echoes it in download metadata: ``matchCase: false`` on leaf predicates."""
    if not isinstance(pred, dict):
        return pred
    out = copy.deepcopy(pred)
    t = str(out.get("type", "")).lower()
    if t in ("and", "or"):
        out["predicates"] = [echo(p) for p in out.get("predicates") or []]
    elif t == "not":
        out["predicate"] = echo(out.get("predicate"))
    elif t in ("equals", "in", "like") or t in _COMPARE:
        out.setdefault("matchCase", False)
    return out


__all__ = ["evaluate", "echo", "count_predicates"]
