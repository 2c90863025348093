"""Render occurrence rows of the columnar table as GBIF JSON records and media objects.

JSON is built only for the records of the page being served. The DwC-A writer renders archive rows
from the same dicts, so a record looks the same in search results and in a download.
"""

from __future__ import annotations

import calendar
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np

from gbifdl_assets.vocabulary import BASIS_OF_RECORD, MEDIA_TYPES, OCCURRENCE_STATUSES

from . import hashing
from .vocab import (
    COUNTRIES,
    FAMILY_NAMES,
    GIVEN_NAMES,
    HANDLES,
    ISSUE_NAMES,
    LICENSE_URLS,
    MEDIA_LICENSE_TABLES,
    NO_COUNTRY,
)
from .world import (
    DF_DATE,
    DF_INTERVAL,
    DF_MILLIS_Z,
    DF_MINUTES,
    DF_NONE,
    DF_SECONDS,
    DF_YEAR,
    DF_YEAR_MONTH,
    FLAG_ABSENT,
    MF_CREATED,
    MF_FORMAT,
    MF_LICENSE,
    MF_NO_IDENTIFIER,
    MF_PERSON,
    P_NO_IDENTIFIER,
    SALT_CATALOG,
    SALT_COUNT,
    SALT_IDENTIFIER,
    SALT_INTERVAL,
    SALT_RECORDER,
    SALT_TIME,
    World,
    media_items,
    media_salt,
    stable_uuid,
)

_LICENSE_CUM = [
    (np.cumsum([p for _, p in table]) / sum(p for _, p in table), [v for v, _ in table])
    for table in MEDIA_LICENSE_TABLES
]
_STILL_FORMATS = (
    ("image/jpeg", "jpg", 0.92),
    (None, "jpg", 0.055),
    ("image/png", "png", 0.015),
    ("application/ld+json", "json", 0.01),
)
_STILL_CUM = np.cumsum([f[2] for f in _STILL_FORMATS])
_OTHER_FORMATS = {1: ("video/mp4", "mp4"), 2: ("audio/mpeg", "mp3"), 3: ("text/html", "html")}
_TS = "2025-10-01T08:00:00.000+00:00"


def person(world: World, key: int, salt: int) -> str:
    u = world.unit(key, salt)
    g = GIVEN_NAMES[int(u * len(GIVEN_NAMES))]
    f = FAMILY_NAMES[int((u * 7919) % 1 * len(FAMILY_NAMES))]
    return f"{g} {f}"


def handle(world: World, key: int, salt: int) -> str:
    u = world.unit(key, salt)
    return f"{HANDLES[int(u * len(HANDLES))]}_{int(u * 1e6) % 997}"


def media_format(world: World, key: int, item: int, mtype: int) -> tuple[str | None, str]:
    """(format, URL extension) of a media item."""
    if mtype != 0:
        return _OTHER_FORMATS[mtype]
    u = world.unit(key, media_salt(item, MF_FORMAT))
    f = _STILL_FORMATS[min(int(np.searchsorted(_STILL_CUM, u, side="right")), len(_STILL_FORMATS) - 1)]
    return f[0], f[1]


def renders_image_np(world: World, keys: np.ndarray, item: int) -> np.ndarray:
    """Which of the records ``keys`` serve item ``item`` (if it is a still image) as JPEG or PNG bytes
    (not the JSON-LD description some image items point at): :func:`media_format`, vectorised."""
    u = hashing.unit_np(world.seed, keys, media_salt(item, MF_FORMAT))
    idx = np.minimum(np.searchsorted(_STILL_CUM, u, side="right"), len(_STILL_FORMATS) - 1)
    pixels = [i for i, f in enumerate(_STILL_FORMATS) if f[1] in ("jpg", "png")]
    return np.isin(idx, pixels)


def media_url(base: str, key: int, item: int, ext: str) -> str:
    """An image's identifier: under ``base``, or on its media host (``base`` a hosts.MediaSites)."""
    on_host = getattr(base, "media_url", None)
    if on_host is not None:
        return on_host(key, item, ext)
    return f"{base}/media/{key}/{item}.{ext}"


def has_identifier(world: World, key: int, item: int) -> bool:
    return world.unit(key, media_salt(item, MF_NO_IDENTIFIER)) >= P_NO_IDENTIFIER


def media_license(world: World, key: int, item: int, record_license: int) -> str | None:
    cum, values = _LICENSE_CUM[record_license]
    u = world.unit(key, media_salt(item, MF_LICENSE))
    v = values[min(int(np.searchsorted(cum, u, side="right")), len(values) - 1)]
    if v is not None and "{user}" in v:
        v = v.replace("{user}", handle(world, key, media_salt(item, MF_PERSON)))
    return v


def _two(n: int) -> str:
    return f"{n:02d}"


_COUNTRY_ROW = {c[0]: c for c in COUNTRIES}
#: continents whose countries all lie in one GBIF region (the Americas are split below)
_REGION_OF_CONTINENT = {"SOUTH_AMERICA": "LATIN_AMERICA"}


def gbif_region(country_code: str) -> str | None:
    """GBIF's region of a country (``gbifRegion``/``publishedByGbifRegion``): the Americas are split
    into NORTH_AMERICA (US, CA) and LATIN_AMERICA, other continents are regions of their own."""
    row = _COUNTRY_ROW.get(country_code)
    if row is None:
        return None
    if row[2] == "NORTH_AMERICA":
        return "NORTH_AMERICA" if country_code in ("US", "CA") else "LATIN_AMERICA"
    return _REGION_OF_CONTINENT.get(row[2], row[2])


def _day_of_year(y: int, m: int, d: int) -> int:
    return date(y, m, d).timetuple().tm_yday


def day_of_year_range(world: World, i: int) -> tuple[int, int] | None:
    """GBIF's ``startDayOfYear``/``endDayOfYear`` of record ``i``: the span its eventDate covers."""
    occ = world.occ
    form = int(occ.date_form[i])
    y, m, d = int(occ.year[i]), int(occ.month[i]), int(occ.day[i])
    if form == DF_NONE or not y:
        return None
    if form == DF_YEAR:
        return 1, _day_of_year(y, 12, 31)
    if form == DF_YEAR_MONTH:
        return _day_of_year(y, m, 1), _day_of_year(y, m, calendar.monthrange(y, m)[1])
    if form == DF_INTERVAL:
        key = int(occ.key[i])
        start = 1 + int(world.unit(key, SALT_INTERVAL) * 20)
        end = start + 1 + int(world.unit(key, SALT_INTERVAL + 100) * 7)
        return _day_of_year(y, m, start), _day_of_year(y, m, end)
    doy = _day_of_year(y, m, d)
    return doy, doy


def event_date(world: World, i: int) -> str | None:
    occ = world.occ
    form = int(occ.date_form[i])
    if form == DF_NONE:
        return None
    key = int(occ.key[i])
    y, m, d = int(occ.year[i]), int(occ.month[i]), int(occ.day[i])
    if form == DF_YEAR:
        return f"{y}"
    if form == DF_YEAR_MONTH:
        return f"{y}-{_two(m)}"
    if form == DF_INTERVAL:
        start = 1 + int(world.unit(key, SALT_INTERVAL) * 20)
        end = start + 1 + int(world.unit(key, SALT_INTERVAL + 100) * 7)
        return f"{y}-{_two(m)}-{_two(start)}/{y}-{_two(m)}-{_two(end)}"
    date = f"{y}-{_two(m)}-{_two(d)}"
    if form == DF_DATE:
        return date
    secs = 6 * 3600 + int(world.unit(key, SALT_TIME) * 14 * 3600)
    hh, mm, ss = secs // 3600, secs // 60 % 60, secs % 60
    if form == DF_MINUTES:
        return f"{date}T{_two(hh)}:{_two(mm)}"
    if form == DF_SECONDS:
        return f"{date}T{_two(hh)}:{_two(mm)}:{_two(ss)}"
    if form == DF_MILLIS_Z:
        return f"{date}T{_two(hh)}:{_two(mm)}:{_two(ss)}.{int(world.unit(key, SALT_TIME + 1) * 1000):03d}Z"
    raise AssertionError(form)


def render_media(world: World, i: int, base: str) -> list[dict[str, Any]]:
    occ = world.occ
    key = int(occ.key[i])
    ds = world.datasets[int(occ.dataset[i])]
    publisher = world.publishers[ds.publisher].title
    recorder = person(world, key, SALT_RECORDER)
    out = []
    for item, mtype in enumerate(media_items(occ, i)):
        fmt, ext = media_format(world, key, item, mtype)
        obj: dict[str, Any] = {"type": MEDIA_TYPES[mtype]}
        if fmt is not None:
            obj["format"] = fmt
        if has_identifier(world, key, item):
            obj["identifier"] = media_url(base, key, item, ext)
        obj["references"] = f"https://observations.sandbox.invalid/{key}"
        u = world.unit(key, media_salt(item, MF_PERSON))
        if u < 0.03:
            obj["title"] = f"{world.taxonomy.taxa[int(occ.taxon[i])].canonical} — photo {item + 1}"
        year = int(occ.year[i])
        if year and world.unit(key, media_salt(item, MF_CREATED)) < 0.85:
            m = max(int(occ.month[i]), 1)
            d = max(int(occ.day[i]), 1)
            obj["created"] = f"{year}-{_two(m)}-{_two(d)}T12:{_two(item * 7)}:00.000+00:00"
        creator = recorder if u > 0.1 else person(world, key, media_salt(item, MF_PERSON))
        if u < 0.93:
            obj["creator"] = creator
        obj["publisher"] = publisher
        lic = media_license(world, key, item, int(occ.license[i]))
        if lic is not None:
            obj["license"] = lic
        if u < 0.82:
            obj["rightsHolder"] = creator
        elif u < 0.9:
            obj["rightsHolder"] = publisher
        out.append(obj)
    return out


def render_record(world: World, i: int, base: str) -> dict[str, Any]:
    """The GBIF occurrence JSON of row ``i`` (null fields omitted, as GBIF does)."""
    occ = world.occ
    tax = world.taxonomy
    key = int(occ.key[i])
    t = tax.taxa[int(occ.taxon[i])]
    acc = tax.taxa[t.accepted]
    ds = world.datasets[int(occ.dataset[i])]
    pub = world.publishers[ds.publisher]
    r: dict[str, Any] = {
        "key": key,
        "datasetKey": ds.key,
        "publishingOrgKey": pub.key,
        "installationKey": world_install_key(world, ds.publisher),
        "hostingOrganizationKey": pub.key,
        "publishingCountry": pub.country,
        "protocol": "DWC_ARCHIVE",
        "lastCrawled": _TS,
        "lastParsed": _TS,
        "crawlId": 100 + ds.idx,
        "extensions": {},
        "basisOfRecord": BASIS_OF_RECORD[int(occ.basis[i])],
        "occurrenceStatus": OCCURRENCE_STATUSES[1 if int(occ.flags[i]) & FLAG_ABSENT else 0],
        "taxonKey": t.key,
    }
    r.update(tax.cls_fields[t.idx])
    r["acceptedTaxonKey"] = acc.key
    r["scientificName"] = t.scientific_name
    r["acceptedScientificName"] = acc.scientific_name
    r.update(tax.cls_names[t.idx])
    parts = t.canonical.split(" ")
    if t.rank in ("GENUS", "SPECIES", "SUBSPECIES"):
        r["genericName"] = parts[0]
    if len(parts) > 1:
        r["specificEpithet"] = parts[1]
    if len(parts) > 2:
        r["infraspecificEpithet"] = parts[2]
    r["taxonRank"] = t.rank
    r["taxonomicStatus"] = t.status
    lat = float(occ.lat[i])
    if lat == lat:  # not NaN
        r["decimalLatitude"] = round(lat, 5)
        r["decimalLongitude"] = round(float(occ.lon[i]), 5)
        unc = float(occ.uncertainty[i])
        if unc == unc:
            r["coordinateUncertaintyInMeters"] = round(unc, 1)
        r["geodeticDatum"] = "WGS84"
    c = int(occ.country[i])
    if c != NO_COUNTRY:
        r["continent"] = COUNTRIES[c][2]
    r["gadm"] = {}  # GADM areas are not modelled; GBIF sends {} where it has none
    y = int(occ.year[i])
    if y:
        r["year"] = y
        if int(occ.month[i]):
            r["month"] = int(occ.month[i])
        if int(occ.day[i]):
            r["day"] = int(occ.day[i])
    ev = event_date(world, i)
    if ev is not None:
        r["eventDate"] = ev
        span = day_of_year_range(world, i)
        if span is not None:
            r["startDayOfYear"], r["endDayOfYear"] = span
    bits = int(occ.issues[i])
    r["issues"] = [name for b, name in enumerate(ISSUE_NAMES) if bits >> b & 1]
    r["modified"] = _TS
    r["lastInterpreted"] = _TS
    r["license"] = LICENSE_URLS[int(occ.license[i])]
    r["isSequenced"] = False
    catalog = f"{ds.collection_code}-{int(world.unit(key, SALT_CATALOG) * 10_000_000):07d}"
    identifier = str(key) if ds.kind == "citizen" else catalog
    r["identifiers"] = [{"identifier": identifier}]
    r["media"] = render_media(world, i, base)
    r["facts"] = []
    r["relations"] = []
    r["isInCluster"] = False
    recorder = person(world, key, SALT_RECORDER)
    r["recordedBy"] = recorder
    r["identifiedBy"] = (
        recorder if world.unit(key, SALT_IDENTIFIER) < 0.7 else person(world, key, SALT_IDENTIFIER)
    )
    if world.unit(key, SALT_COUNT) < 0.5:
        r["individualCount"] = 1 + int(world.unit(key, SALT_COUNT + 1) * 5) ** 2
    r["dnaSequenceID"] = []
    if "class" in r:
        r["class"] = r.pop("class")  # GBIF writes "class" late in the object
    if c != NO_COUNTRY:
        r["countryCode"] = COUNTRIES[c][0]
    r["recordedByIDs"] = []
    r["identifiedByIDs"] = []
    if c != NO_COUNTRY:
        region = gbif_region(COUNTRIES[c][0])
        if region:
            r["gbifRegion"] = region
        r["country"] = COUNTRIES[c][1]
    published_by = gbif_region(pub.country)
    if published_by:
        r["publishedByGbifRegion"] = published_by
    r["identifier"] = identifier
    r["gbifID"] = str(key)
    r["institutionCode"] = ds.institution_code
    r["collectionCode"] = ds.collection_code
    r["catalogNumber"] = catalog
    if ds.kind == "citizen":
        r["occurrenceID"] = f"https://observations.sandbox.invalid/{key}"
        r["references"] = f"https://observations.sandbox.invalid/{key}"
    else:
        r["occurrenceID"] = f"urn:catalog:{ds.institution_code}:{ds.collection_code}:{r['catalogNumber']}"
    r["rightsHolder"] = recorder if ds.kind == "citizen" else pub.title
    r["datasetName"] = ds.title
    if acc.vernacular and t.rank == "SPECIES":
        r["vernacularName"] = acc.vernacular
    return r


def world_install_key(world: World, publisher: int) -> str:
    return _install_key(world.seed, publisher)


@lru_cache(maxsize=1024)
def _install_key(seed: int, publisher: int) -> str:
    # installations are not modelled; a stable UUID per publisher (the registry says the same)
    return stable_uuid(seed, f"installation/{publisher}")
