"""Reading WKT that users send: a 2-D geometry with finite coordinates, or a ValueError that says why.

Rule geometries (the model, rule files, the compiled table) and the service's ``geometry`` filter all
read their text here, so no text can reach GEOS in a shape it cannot handle and come back as a 500
(issue 21): curved types (``CURVEPOLYGON``, ``MULTISURFACE``, ``CIRCULARSTRING`` …) that shapely does
not support, ``NaN`` or infinite coordinates (``1e400`` overflows), Z or M coordinates (refused
alike: rules are lon/lat), and anything else GEOS refuses to parse.

The messages start with what the geometry "is" or "has", so the caller puts the field's name in front.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import shapely

__all__ = ["count_coordinates", "read_wkt"]

#: ``POLYGON Z (``, ``POINTM(``, ``POLYGON ZM EMPTY``: a dimension tag after a type name
_DIMENSION_TAG = re.compile(r"[A-Z]\s*(ZM|Z|M)\s*(\(|EMPTY\b)")
#: curved types, also as parts of a collection (shapely parses some of those, then cannot use them)
_CURVED = re.compile(r"\b(CIRCULARSTRING|COMPOUNDCURVE|CURVEPOLYGON|MULTICURVE|MULTISURFACE)\b")


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def read_wkt(text: Any) -> shapely.Geometry:
    """Parse ``text`` as WKT; ValueError for text that is not a usable 2-D geometry.

    Any geometry type is returned (the caller checks the type it needs); empty geometries are returned
    as they are.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("is empty: give WKT, e.g. POLYGON ((-8 50, 2 50, 2 59, -8 59, -8 50))")
    stripped = text.strip()
    upper = stripped.upper()
    if curved := _CURVED.search(upper):
        what = "is" if curved.start() == 0 else "has"
        raise ValueError(
            f"{what} a {curved.group(1)}, a curved geometry; give straight edges: "
            "a POLYGON or MULTIPOLYGON in lon/lat"
        )
    try:
        with np.errstate(all="ignore"):  # 1e400 overflows to inf (refused below), without a warning
            geom = shapely.from_wkt(stripped)
    except NotImplementedError:  # shapely: "Nonlinear geometry types are not currently supported"
        raise ValueError(
            "has curved parts (CIRCULARSTRING, COMPOUNDCURVE …); give straight edges: "
            "a POLYGON or MULTIPOLYGON in lon/lat"
        ) from None
    except Exception as exc:  # noqa: BLE001 - untrusted text: any parser failure is "not WKT"
        reason = str(exc).replace("ParseException: ", "").replace("IllegalArgumentException: ", "")
        reason = reason.strip().splitlines()[0][:120] if reason.strip() else type(exc).__name__
        raise ValueError(f"is not valid WKT ({reason}): {_clip(stripped)}") from None
    if geom is None:
        raise ValueError(f"is not valid WKT (no geometry): {_clip(stripped)}")
    try:
        has_m = getattr(shapely, "has_m", None)
        dimensions = (
            shapely.has_z(geom) or (has_m is not None and has_m(geom)) or _DIMENSION_TAG.search(upper)
        )
        coords = shapely.get_coordinates(geom)
    except Exception as exc:  # noqa: BLE001 - a geometry GEOS parsed but cannot take apart
        raise ValueError(f"is WKT that cannot be used ({type(exc).__name__}): {_clip(stripped)}") from None
    if dimensions:
        raise ValueError(
            "has Z or M coordinates (3-D, or measures); give 2-D coordinates: longitude latitude"
        )
    if coords.size and not np.isfinite(coords).all():
        raise ValueError(
            "has coordinates that are not finite numbers (NaN, infinity, or too large such as 1e400); "
            "give longitude -180..180 and latitude -90..90"
        )
    return geom


def count_coordinates(geom: shapely.Geometry) -> int:
    """Coordinates as shapely counts them: every vertex of every ring and part, ring closures included."""
    return int(shapely.get_num_coordinates(geom))
