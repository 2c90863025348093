"""Media-licence normalisation.

GBIF interprets the *record* licence into three enum values, but it leaves the licence of each
*media item* as free text (reference gbif-api.md §3.3 and §6): Creative Commons URLs with or
without ``https``, a trailing slash, ``legalcode`` or ``deed.xx``; jurisdiction ports such as
``3.0/us``; short forms like ``CC BY-NC`` or ``Hanxiouchao (cc-by-sa)``; copyright notices;
``Usage Conditions Apply``; or nothing at all. A training set must be filtered on the licence
of the image itself, so every value is mapped onto a small vocabulary of ids:

* ``CC0-1.0`` and ``PDM`` (public domain mark / public domain statements);
* ``CC-BY[-NC][-SA|-ND]-<version>`` for versions 1.0, 2.0, 2.1, 2.5, 3.0 and 4.0. Jurisdiction
  ports (``3.0/us``, SPDX ``CC-BY-3.0-US``) map to the version: the licence terms are the same
  in substance and the raw value is kept next to the normalised one anyway;
* the unversioned family id (``CC-BY-SA``) when the text names the licence but not its version
  (``<user> (cc-by-sa)``): we do not invent a version, but an allowlist entry for the family
  still admits it;
* ``ALL-RIGHTS-RESERVED`` for copyright notices without a licence (``©…``, ``All rights
  reserved``);
* ``UNKNOWN`` for empty values and anything we cannot read as a licence (``Usage Conditions
  Apply``, an institution's terms-of-use URL). Unknown is never guessed to be open.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ALL_RIGHTS_RESERVED",
    "CC_VERSIONS",
    "GBIF_LICENSE_ENUMS",
    "KNOWN_LICENSES",
    "LICENSE_FAMILIES",
    "PDM",
    "UNKNOWN",
    "gbif_license_enum",
    "license_family",
    "license_label",
    "license_url",
    "normalize_license",
    "normalize_licenses",
    "parse_license_allowlist",
    "resolve_license_entry",
]

UNKNOWN = "UNKNOWN"
ALL_RIGHTS_RESERVED = "ALL-RIGHTS-RESERVED"
PDM = "PDM"
CC0 = "CC0-1.0"

#: Creative Commons licence versions that exist (2.1 only as jurisdiction ports), newest first.
CC_VERSIONS: tuple[str, ...] = ("4.0", "3.0", "2.5", "2.1", "2.0", "1.0")

#: The six attribution licences, most permissive first; ids are "CC-" + the modifiers.
_CC_BY_FAMILIES: tuple[str, ...] = ("CC-BY", "CC-BY-SA", "CC-BY-NC", "CC-BY-NC-SA", "CC-BY-ND", "CC-BY-NC-ND")

#: Allowlist family names: a family admits every version of its licence, and its unversioned id.
LICENSE_FAMILIES: tuple[str, ...] = (
    "CC0",
    PDM,
    *_CC_BY_FAMILIES,
    ALL_RIGHTS_RESERVED,
    UNKNOWN,
)

#: Every normalised id, in a fixed order (allowlists are returned in this order).
KNOWN_LICENSES: tuple[str, ...] = (
    CC0,
    PDM,
    *(f"{fam}-{v}" if v else fam for fam in _CC_BY_FAMILIES for v in (*CC_VERSIONS, "")),
    ALL_RIGHTS_RESERVED,
    UNKNOWN,
)
_KNOWN_SET = frozenset(KNOWN_LICENSES)
_ORDER = {lic: i for i, lic in enumerate(KNOWN_LICENSES)}

#: GBIF's licence enum (search ``license=``, predicate ``LICENSE``, the download ``license`` column).
GBIF_LICENSE_ENUMS: dict[str, str] = {
    "CC0_1_0": CC0,
    "CC_BY_4_0": "CC-BY-4.0",
    "CC_BY_NC_4_0": "CC-BY-NC-4.0",
    "UNSPECIFIED": UNKNOWN,
    "UNSUPPORTED": UNKNOWN,
}

# ---------------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------------
# creativecommons.org/{licenses|licences|publicdomain}/{kind}[/{version}]; anything after the
# version (port, legalcode, deed.xx) is irrelevant.
_CC_URL = re.compile(
    r"creativecommons\.org/+(licen[cs]es|publicdomain)/+([a-z+-]+)(?:/+v?(\d+(?:\.\d+)?))?", re.IGNORECASE
)
# "CC BY-NC-SA 4.0", "cc-by-sa", "CC_BY_NC_4_0", "CC-BY-3.0-US", "(cc-by)"
_CC_SHORT = re.compile(
    r"(?<![a-z0-9])cc[\s_-]*(by(?:[\s_-]*(?:nc|nd|sa)(?![a-z]))*)(?![a-z]|[_-][a-z])"
    r"(?:[\s_/-]*v?(\d+(?:[._]\d+)?)(?!\d|\.\d))?",
    re.IGNORECASE,
)
# "CC0", "CC-0", "CC 0 1.0", "CC Zero"
_CC_ZERO = re.compile(r"(?<![a-z0-9])cc[\s_-]*(?:0|zero)(?![a-z0-9])|(?<![a-z0-9])cc0", re.IGNORECASE)
# "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International"
_ATTRIBUTION = re.compile(r"\battribution\b", re.IGNORECASE)
_NONCOMMERCIAL = re.compile(r"non[\s_-]?commercial", re.IGNORECASE)
_NODERIVS = re.compile(r"no[\s_-]?deriv", re.IGNORECASE)
_SHAREALIKE = re.compile(r"share[\s_-]?alike", re.IGNORECASE)
_VERSION = re.compile(r"(?<![\d.])(\d)\.(\d)(?![\d.])")
_PUBLIC_DOMAIN = re.compile(r"public[\s_-]*domain|(?<![a-z])pdm(?![a-z])", re.IGNORECASE)
_RIGHTS_RESERVED = re.compile(
    r"all\s+rights\s+reserved|©|\(c\)|copyright|tous\s+droits\s+r[ée]serv[ée]s|"
    r"todos\s+los\s+derechos\s+reservados|alle\s+rechte\s+vorbehalten",
    re.IGNORECASE,
)
_RIGHTSSTATEMENTS = re.compile(r"rightsstatements\.org/+(?:vocab|page)/+([a-z-]+)", re.IGNORECASE)
_BARE_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)\S+$", re.IGNORECASE)


def _version(raw: str | None) -> str | None:
    """'4' / '4.0' / '4_0' -> '4.0'; None for a version that does not exist."""
    if not raw:
        return None
    raw = raw.replace("_", ".")
    if "." not in raw:
        raw += ".0"
    return raw if raw in CC_VERSIONS else None


def _cc_by(modifiers: Iterable[str], version: str | None) -> str:
    mods = {m.lower() for m in modifiers}
    if mods - {"nc", "nd", "sa"} or {"nd", "sa"} <= mods:
        return UNKNOWN  # "by-nd-sa" and friends are not licences
    family = "CC-BY" + ("-NC" if "nc" in mods else "") + ("-SA" if "sa" in mods else "")
    family += "-ND" if "nd" in mods else ""
    return f"{family}-{version}" if version else family


def _from_cc_url(match: re.Match[str]) -> str:
    section, kind, version = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if section == "publicdomain":
        if kind == "zero":
            return CC0
        if kind in ("mark", "certification"):
            return PDM
        return UNKNOWN
    if kind == "publicdomain":  # the retired CC "Public Domain Certification" lived under licenses/
        return PDM
    parts = kind.split("-")
    if parts[0] != "by":
        return UNKNOWN  # by-less 1.0 licences, sampling, GPL wrappers: outside the vocabulary
    return _cc_by(parts[1:], _version(version))


def _from_text(text: str) -> str:
    if _CC_ZERO.search(text):
        return CC0
    if (m := _CC_SHORT.search(text)) is not None:
        modifiers = re.split(r"[\s_-]+", m.group(1))[1:]
        return _cc_by(modifiers, _version(m.group(2)))
    if _ATTRIBUTION.search(text) and (
        "creative commons" in text.lower() or _VERSION.search(text) or "licen" in text.lower()
    ):
        mods = [
            mod
            for mod, rx in (("nc", _NONCOMMERCIAL), ("nd", _NODERIVS), ("sa", _SHAREALIKE))
            if rx.search(text)
        ]
        vm = _VERSION.search(text)
        return _cc_by(mods, _version(f"{vm.group(1)}.{vm.group(2)}") if vm else None)
    if _PUBLIC_DOMAIN.search(text):
        return PDM
    if _RIGHTS_RESERVED.search(text):
        return ALL_RIGHTS_RESERVED
    return UNKNOWN


@lru_cache(maxsize=8192)
def _normalize(text: str) -> str:
    upper = text.upper()
    # exact ids and GBIF enum names first: they are unambiguous
    if upper in _KNOWN_SET:
        return upper
    enum = re.sub(r"[\s.-]", "_", upper)
    if enum in GBIF_LICENSE_ENUMS:
        return GBIF_LICENSE_ENUMS[enum]
    if (m := _CC_URL.search(text)) is not None:
        return _from_cc_url(m)
    if (m := _RIGHTSSTATEMENTS.search(text)) is not None:
        # in-copyright statements (InC, InC-EDU, InC-NC, ...) grant no reuse licence
        return ALL_RIGHTS_RESERVED if m.group(1).upper().startswith("INC") else UNKNOWN
    if _BARE_URL.match(text):
        return UNKNOWN  # somebody's terms-of-use page: we cannot tell what it allows
    return _from_text(text)


def normalize_license(raw: str | None) -> str:
    """The normalised licence id of one free-text licence value (UNKNOWN when unreadable)."""
    if raw is None:
        return UNKNOWN
    text = " ".join(str(raw).split())
    if not text:
        return UNKNOWN
    return _normalize(text)


def normalize_licenses(values: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    """Vectorised :func:`normalize_license`: a ``pa.string()`` array of ids, nulls become UNKNOWN.

    Licence columns have a handful of distinct values in millions of rows, so each distinct
    value is parsed once (dictionary encoding) and the ids are gathered with ``take``.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if isinstance(values, pa.Array):
        if pa.types.is_null(values.type):
            return pa.array([UNKNOWN] * len(values), pa.string())
        if pa.types.is_dictionary(values.type):
            encoded = values
        else:
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                values = values.cast(pa.string())
            encoded = pc.dictionary_encode(values)
        ids = pa.array([normalize_license(v) for v in encoded.dictionary.to_pylist()], pa.string())
        return pc.fill_null(ids.take(encoded.indices), UNKNOWN)
    cache: dict[str | None, str] = {}
    out = []
    for value in values:
        if value not in cache:
            cache[value] = normalize_license(value)
        out.append(cache[value])
    return pa.array(out, pa.string())


# ---------------------------------------------------------------------------------------------------
# ids: families, labels, URLs
# ---------------------------------------------------------------------------------------------------
def _check_id(license_id: str) -> str:
    if license_id not in _KNOWN_SET:
        raise ValueError(
            f"'{license_id}' is not a normalised licence id; normalise it with normalize_license() "
            f"first (ids: {', '.join(KNOWN_LICENSES)})"
        )
    return license_id


def _split(license_id: str) -> tuple[str, str | None]:
    """('CC-BY-NC', '4.0') for 'CC-BY-NC-4.0'; (id, None) for ids without a version."""
    _check_id(license_id)
    if license_id == CC0:
        return "CC0", "1.0"
    head, _, tail = license_id.rpartition("-")
    if head and tail in CC_VERSIONS:
        return head, tail
    return license_id, None


def license_family(license_id: str) -> str:
    """The family of a normalised id, ignoring the version: 'CC-BY-4.0' -> 'CC-BY', 'CC0-1.0' -> 'CC0'."""
    return _split(license_id)[0]


def license_url(license_id: str) -> str | None:
    """The canonical deed URL of a normalised id; None where there is no single licence text."""
    family, version = _split(license_id)
    if family == "CC0":
        return "https://creativecommons.org/publicdomain/zero/1.0/"
    if family == PDM:
        return "https://creativecommons.org/publicdomain/mark/1.0/"
    if family.startswith("CC-BY") and version:
        return f"https://creativecommons.org/licenses/{family[3:].lower()}/{version}/"
    return None


def license_label(license_id: str) -> str:
    """A human label for credits and data cards: 'CC BY-NC 4.0', 'Public Domain Mark 1.0'."""
    family, version = _split(license_id)
    if family == "CC0":
        return "CC0 1.0"
    if family == PDM:
        return "Public Domain Mark 1.0"
    if family == ALL_RIGHTS_RESERVED:
        return "All rights reserved"
    if family == UNKNOWN:
        return "Unknown licence"
    name = "CC " + family[3:]
    return f"{name} {version}" if version else f"{name} (version not stated)"


def gbif_license_enum(license_id: str) -> str | None:
    """GBIF's enum name for a normalised id (only CC0 1.0, CC BY 4.0 and CC BY-NC 4.0 have one)."""
    for enum, lic in GBIF_LICENSE_ENUMS.items():
        if lic == license_id and lic != UNKNOWN:
            return enum
    return None


# ---------------------------------------------------------------------------------------------------
# allowlists
# ---------------------------------------------------------------------------------------------------
def _family_members(family: str) -> tuple[str, ...]:
    return tuple(lic for lic in KNOWN_LICENSES if license_family(lic) == family)


_FAMILY_KEYS = {re.sub(r"[\s_.-]", "", fam.upper()): fam for fam in LICENSE_FAMILIES}
_VALID_HINT = (
    f"use a family ({', '.join(LICENSE_FAMILIES)}; a family admits every version), a versioned id "
    "such as CC-BY-4.0 or CC-BY-SA-3.0, a GBIF enum name such as CC_BY_4_0, or a Creative Commons URL"
)


def resolve_license_entry(entry: object) -> tuple[str, ...]:
    """The normalised ids one allowlist entry admits; ValueError naming the entry when unknown.

    Accepted: a family name ("CC-BY", "cc by", "CC0", "PDM"), a normalised id ("CC-BY-4.0"), a
    GBIF enum name ("CC_BY_NC_4_0"), a licence URL or any text normalize_license() understands.
    "UNKNOWN" and "ALL-RIGHTS-RESERVED" are accepted only when written out.
    """
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"licence entry {entry!r} is not a licence name; {_VALID_HINT}")
    text = entry.strip()
    family = _FAMILY_KEYS.get(re.sub(r"[\s_.-]", "", text.upper()))
    if family is not None:
        return _family_members(family)
    lic = normalize_license(text)
    if lic == UNKNOWN:
        keys = list(_FAMILY_KEYS) + [re.sub(r"[\s_.-]", "", k) for k in KNOWN_LICENSES]
        names = list(_FAMILY_KEYS.values()) + list(KNOWN_LICENSES)
        close = difflib.get_close_matches(re.sub(r"[\s_.-]", "", text.upper()), keys, n=1, cutoff=0.75)
        hint = f" (did you mean '{names[keys.index(close[0])]}'?)" if close else ""
        raise ValueError(f"unknown licence '{text}'{hint}; {_VALID_HINT}")
    if license_family(lic) == lic and lic not in (PDM, ALL_RIGHTS_RESERVED, UNKNOWN):
        # an unversioned name ("CC BY-SA", ".../licenses/by-sa/") means every version
        return _family_members(lic)
    return (lic,)


def parse_license_allowlist(items: Iterable[object] | str) -> list[str]:
    """Normalised ids admitted by an allowlist, deduplicated, in :data:`KNOWN_LICENSES` order.

    Raises ValueError naming every unknown entry and listing what is valid.
    """
    if isinstance(items, str):
        items = [items]
    allowed: set[str] = set()
    problems: list[str] = []
    for item in items:
        try:
            allowed.update(resolve_license_entry(item))
        except ValueError as exc:
            problems.append(str(exc).split(";")[0])
    if problems:
        raise ValueError("; ".join(problems) + f"; {_VALID_HINT}")
    return sorted(allowed, key=_ORDER.__getitem__)
