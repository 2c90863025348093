"""Occurrence-search filters → GBIF download predicate.

A training set is described once with search parameter names (``country``, ``year``,
``mediaType`` …) and must give the same records through the search API and the download API.
The download API wants a predicate tree with UPPER_SNAKE keys and string values instead, so this
module translates: one value → ``equals``, several → ``in``, ranges (``"1990,2000"``,
``"*,1999"``, ``"2000,*"``) → ``greaterThanOrEquals``/``lessThanOrEquals``, ``geometry`` →
``within``, ``geoDistance`` → ``geoDistance``; several parameters are AND-ed, several values of one
parameter OR-ed, exactly as the search API combines repeated parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: parameters whose values may be ranges "low,high" with "*" for an open end
RANGE_PARAMS = frozenset(
    {
        "YEAR",
        "MONTH",
        "DAY",
        "START_DAY_OF_YEAR",
        "END_DAY_OF_YEAR",
        "EVENT_DATE",
        "LAST_INTERPRETED",
        "MODIFIED",
        "DATE_IDENTIFIED",
        "DECIMAL_LATITUDE",
        "DECIMAL_LONGITUDE",
        "ELEVATION",
        "DEPTH",
        "COORDINATE_UNCERTAINTY_IN_METERS",
        "DISTANCE_FROM_CENTROID_IN_METERS",
        "ORGANISM_QUANTITY",
        "RELATIVE_ORGANISM_QUANTITY",
        "SAMPLE_SIZE_VALUE",
    }
)

#: search parameter names whose predicate key is not the plain UPPER_SNAKE form
SPECIAL_KEYS = {
    "GBIFID": "GBIF_ID",
    "GBIF_I_D": "GBIF_ID",
}

#: search-only parameters with no download equivalent
UNSUPPORTED = {
    "Q": "free-text search 'q' has no download predicate; use specific filters instead",
}


def predicate_key(name: str) -> str:
    """``taxonKey`` → ``TAXON_KEY``, ``identifiedByID`` → ``IDENTIFIED_BY_ID``; UPPER_SNAKE kept."""
    if name.isupper() or "_" in name:
        key = name.upper()
    else:
        key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()
    return SPECIAL_KEYS.get(key, key)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return [v for v in value if v is not None]
    return [value]


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _range_predicate(key: str, value: str) -> dict | None:
    """``"a,b"`` → and(>=a, <=b); ``"*,b"`` → <=b; ``"a,*"`` → >=a; None if not a range."""
    if "," not in value:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2:
        raise ValueError(f"{key} range {value!r} must look like 'low,high' with '*' for an open end")
    low, high = parts
    preds = []
    if low not in ("", "*"):
        preds.append({"type": "greaterThanOrEquals", "key": key, "value": low})
    if high not in ("", "*"):
        preds.append({"type": "lessThanOrEquals", "key": key, "value": high})
    if not preds:
        return None  # "*,*" constrains nothing
    if len(preds) == 1:
        return preds[0]
    if low == high:
        return {"type": "equals", "key": key, "value": low}
    return {"type": "and", "predicates": preds}


def _geo_distance(value: str) -> dict:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3:
        raise ValueError(
            f"geoDistance {value!r} must be 'latitude,longitude,distance' (e.g. '52.5,13.4,10km')"
        )
    lat, lon, distance = parts
    return {"type": "geoDistance", "latitude": lat, "longitude": lon, "distance": distance}


def _either(preds: list[dict]) -> dict:
    return preds[0] if len(preds) == 1 else {"type": "or", "predicates": preds}


def _param_predicate(name: str, values: list[Any]) -> dict | None:
    key = predicate_key(name)
    strings = [_string(v) for v in values if _string(v) != ""]
    if not strings:
        return None
    if key in UNSUPPORTED:
        raise ValueError(f"filter {name!r}: {UNSUPPORTED[key]}")
    if key == "GEOMETRY":
        return _either([{"type": "within", "geometry": wkt} for wkt in strings])
    if key == "GEO_DISTANCE":
        return _either([_geo_distance(v) for v in strings])
    plain: list[str] = []
    ranges: list[dict] = []
    for value in strings:
        rng = _range_predicate(key, value) if key in RANGE_PARAMS else None
        if rng is not None:
            ranges.append(rng)
        elif key in RANGE_PARAMS and "," in value:
            continue  # "*,*": no constraint
        else:
            plain.append(value)
    preds: list[dict] = []
    if len(plain) == 1:
        preds.append({"type": "equals", "key": key, "value": plain[0]})
    elif plain:
        preds.append({"type": "in", "key": key, "values": list(dict.fromkeys(plain))})
    preds.extend(ranges)
    if not preds:
        return None
    return _either(preds)


def predicate_from_filters(filters: Mapping[str, Any], *, taxon_keys: Sequence[int] = ()) -> dict:
    """GBIF download predicate for ``taxon_keys`` AND the search ``filters``.

    ``filters`` maps search parameter names (camelCase as GBIF documents them) to a value or a list
    of values. ``taxon_keys`` become ``TAXON_KEY`` (``equals`` for one, ``in`` for several); a
    ``taxonKey`` in ``filters`` is AND-ed on top. A lone predicate is returned without an ``and``
    wrapper. Raises ValueError when nothing constrains the download (it would be all of GBIF).
    """
    preds: list[dict] = []
    keys = [str(int(k)) for k in taxon_keys]
    keys = list(dict.fromkeys(keys))
    if len(keys) == 1:
        preds.append({"type": "equals", "key": "TAXON_KEY", "value": keys[0]})
    elif keys:
        preds.append({"type": "in", "key": "TAXON_KEY", "values": keys})
    for name, value in filters.items():
        pred = _param_predicate(name, _as_list(value))
        if pred is None:
            continue
        if pred["type"] == "and":  # a closed range: its two bounds join the top-level "and"
            preds.extend(pred["predicates"])
        else:
            preds.append(pred)
    if not preds:
        raise ValueError(
            "the download would have no predicate and return all of GBIF; give taxa or occurrence filters"
        )
    if len(preds) == 1:
        return preds[0]
    return {"type": "and", "predicates": preds}
