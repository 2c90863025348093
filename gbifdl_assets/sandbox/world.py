"""The generated world: taxonomy, publishers, datasets and a columnar occurrence table.

Occurrences are numpy columns (about 40 bytes per record), generated vectorised in a few seconds for
a million records. Everything a record needs that is not a column is derived at render time from
``hashing.unit(seed, key, salt)``. Records are ordered by ``key`` (ascending, unique), which is the
stable order of search results.

Realism that downstream code should meet here as it does at GBIF:
- skewed sizes: a few big citizen-science datasets hold most records; species abundance is Zipf-like;
- records identified above species (no ``speciesKey``), under a synonym (``taxonKey`` ≠
  ``acceptedTaxonKey``) or to a subspecies;
- missing coordinates, countries, uncertainty, dates; free-form ``eventDate`` values;
- per-dataset media habits (camera traps: images; herbaria: scans; literature: none) and messy media
  licences.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from gbifdl_assets.vocabulary import MEDIA_TYPES

from . import hashing
from .taxonomy import Taxonomy, build_taxonomy
from .vocab import (
    BOR,
    COUNTRIES,
    COUNTRY_INDEX,
    INSTITUTION_WORDS,
    ISSUE_BIT,
    ISSUES,
    LICENSES,
    NO_COUNTRY,
    PLACES,
    REGIONS,
)

NAMESPACE = uuid.UUID("6f1c7f1e-3b7a-4d0e-9a59-5a4e2c1f0b42")  # fixed: keys stay stable across runs

#: data "now": generated dates never pass it, bookkeeping timestamps are derived from it
NOW_YEAR = 2025

# salts of hashing.unit() for render-time details (one place, so they never collide)
SALT_RECORDER = 1
SALT_IDENTIFIER = 2
SALT_TIME = 3
SALT_INTERVAL = 4
SALT_COUNT = 5
SALT_CATALOG = 6
SALT_MEDIA = 1000  # + 10 * item + field


def media_salt(item: int, fld: int) -> int:
    return SALT_MEDIA + 10 * item + fld


# media item fields (second argument of media_salt)
MF_NO_IDENTIFIER, MF_FAULT, MF_FAULT_KIND, MF_LICENSE, MF_FORMAT, MF_PERSON, MF_CREATED = range(7)
#: probability that a media item carries no identifier (GBIF: 48 of 5,027)
P_NO_IDENTIFIER = 0.01

# date forms: how eventDate is written (see reference §3.2)
(DF_NONE, DF_YEAR, DF_YEAR_MONTH, DF_DATE, DF_MINUTES, DF_SECONDS, DF_MILLIS_Z, DF_INTERVAL) = range(8)

FLAG_ABSENT = 1


@dataclass(frozen=True)
class Kind:
    name: str
    basis: dict[str, float]
    media: tuple[float, float, float, float]  # P(0..3 media items)
    no_coords: float
    no_uncertainty: float
    era: str  # recent | mixed | historic
    no_date: float
    date_forms: tuple[float, ...]  # P over DF_YEAR..DF_INTERVAL
    kingdom: str | None
    country_focus: float  # share of records in the dataset's home country


KINDS = {
    "citizen": Kind(
        "citizen",
        {"HUMAN_OBSERVATION": 0.985, "OBSERVATION": 0.01, "MACHINE_OBSERVATION": 0.005},
        (0.12, 0.55, 0.23, 0.10),
        0.02,
        0.25,
        "recent",
        0.003,
        (0.01, 0.01, 0.30, 0.20, 0.34, 0.13, 0.01),
        None,
        0.0,
    ),
    "museum": Kind(
        "museum",
        {
            "PRESERVED_SPECIMEN": 0.9,
            "FOSSIL_SPECIMEN": 0.03,
            "MATERIAL_SAMPLE": 0.03,
            "LIVING_SPECIMEN": 0.02,
            "MATERIAL_CITATION": 0.02,
        },
        (0.75, 0.2, 0.04, 0.01),
        0.35,
        0.6,
        "historic",
        0.06,
        (0.15, 0.15, 0.6, 0.0, 0.0, 0.0, 0.1),
        "Animalia",
        0.3,
    ),
    "herbarium": Kind(
        "herbarium",
        {"PRESERVED_SPECIMEN": 0.97, "LIVING_SPECIMEN": 0.03},
        (0.4, 0.55, 0.05, 0.0),
        0.3,
        0.7,
        "historic",
        0.05,
        (0.1, 0.15, 0.7, 0.0, 0.0, 0.0, 0.05),
        "Plantae",
        0.5,
    ),
    "fungarium": Kind(
        "fungarium",
        {"PRESERVED_SPECIMEN": 0.8, "MATERIAL_SAMPLE": 0.2},
        (0.5, 0.4, 0.1, 0.0),
        0.2,
        0.6,
        "mixed",
        0.04,
        (0.05, 0.1, 0.85, 0.0, 0.0, 0.0, 0.0),
        "Fungi",
        0.5,
    ),
    "cameratrap": Kind(
        "cameratrap",
        {"MACHINE_OBSERVATION": 1.0},
        (0.05, 0.6, 0.25, 0.10),
        0.0,
        0.1,
        "recent",
        0.0,
        (0.0, 0.0, 0.0, 0.0, 0.6, 0.4, 0.0),
        "Animalia",
        0.9,
    ),
    "survey": Kind(
        "survey",
        {"HUMAN_OBSERVATION": 0.7, "OCCURRENCE": 0.2, "MATERIAL_SAMPLE": 0.1},
        (0.92, 0.07, 0.01, 0.0),
        0.05,
        0.3,
        "mixed",
        0.01,
        (0.02, 0.05, 0.8, 0.05, 0.0, 0.0, 0.08),
        None,
        0.8,
    ),
    "literature": Kind(
        "literature",
        {"LITERATURE": 0.6, "MATERIAL_CITATION": 0.4},
        (0.98, 0.02, 0.0, 0.0),
        0.5,
        0.9,
        "historic",
        0.1,
        (0.4, 0.2, 0.4, 0.0, 0.0, 0.0, 0.0),
        None,
        0.2,
    ),
}
#: dataset mix: (kind, count); the first dataset is the big citizen-science one
DATASET_PLAN = (
    ("citizen", 3),
    ("survey", 9),
    ("museum", 7),
    ("herbarium", 5),
    ("fungarium", 2),
    ("cameratrap", 4),
    ("literature", 3),
)


@dataclass(slots=True)
class Publisher:
    idx: int
    key: str
    title: str
    country: str


@dataclass(slots=True)
class Dataset:
    idx: int
    key: str
    title: str
    publisher: int
    kind: str
    license: int
    country: str
    institution_code: str
    collection_code: str
    weight: float


@dataclass
class Occurrences:
    """Columnar occurrence table; row i is the i-th record in key order."""

    key: np.ndarray  # int64, ascending
    taxon: np.ndarray  # int32 index into Taxonomy.taxa (the usage the record was identified as)
    dataset: np.ndarray  # uint16
    basis: np.ndarray  # uint8 index into gbifdl_assets.vocabulary.BASIS_OF_RECORD
    license: np.ndarray  # uint8 index into vocab.LICENSES
    country: np.ndarray  # uint8 index into vocab.COUNTRIES, NO_COUNTRY = missing
    lat: np.ndarray  # float32, NaN = missing
    lon: np.ndarray  # float32
    uncertainty: np.ndarray  # float32, NaN = missing
    year: np.ndarray  # int16, 0 = missing
    month: np.ndarray  # uint8, 0 = missing
    day: np.ndarray  # uint8, 0 = missing
    date_form: np.ndarray  # uint8 DF_*
    issues: np.ndarray  # uint32 bit set over vocab.ISSUES
    media: np.ndarray  # uint8: n items (bits 0-1) | type of item i (2 bits each, from bit 2)
    media_types: np.ndarray  # uint8 bit set over gbifdl_assets.vocabulary.MEDIA_TYPES
    flags: np.ndarray  # uint8 FLAG_*
    _date_ordinal: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.key.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))

    def index_of(self, key: int) -> int | None:
        i = int(np.searchsorted(self.key, key))
        if i < len(self) and int(self.key[i]) == key:
            return i
        return None

    def date_ordinal(self) -> np.ndarray:
        """Days since 1970-01-01 of each record's (start) date; int32 min where undated."""
        if self._date_ordinal is None:
            y = self.year.astype(np.int64)
            m = np.maximum(self.month.astype(np.int64), 1)
            d = np.maximum(self.day.astype(np.int64), 1)
            months = ((y - 1970) * 12 + (m - 1)).astype("datetime64[M]")
            days = months.astype("datetime64[D]") + (d - 1).astype("timedelta64[D]")
            out = days.astype(np.int64).astype(np.int32)
            out[self.year == 0] = np.iinfo(np.int32).min
            self._date_ordinal = out
        return self._date_ordinal


@dataclass
class World:
    seed: int
    taxonomy: Taxonomy
    publishers: list[Publisher]
    datasets: list[Dataset]
    occ: Occurrences
    generation_seconds: float = 0.0
    dataset_by_key: dict[str, int] = field(default_factory=dict)
    publisher_by_key: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dataset_by_key = {d.key: d.idx for d in self.datasets}
        self.publisher_by_key = {p.key: p.idx for p in self.publishers}
        self.dataset_publisher = np.array([d.publisher for d in self.datasets], dtype=np.int32)

    def unit(self, key: int, salt: int) -> float:
        return hashing.unit(self.seed, key, salt)


# ---------------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------------
_CACHE: dict[tuple[int, int, int], World] = {}
_CACHE_LOCK = threading.Lock()


def get_world(seed: int, occurrences: int, species: int) -> World:
    """Build (or reuse) the world for these parameters; building is deterministic."""
    k = (seed, occurrences, species)
    with _CACHE_LOCK:
        w = _CACHE.get(k)
        if w is None:
            w = build_world(seed, occurrences, species)
            if len(_CACHE) >= 4:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[k] = w
        return w


def build_world(seed: int, occurrences: int, species: int) -> World:
    t0 = time.perf_counter()
    tax = build_taxonomy(seed, species)
    publishers, datasets = _build_datasets(seed)
    occ = _build_occurrences(seed, occurrences, tax, datasets)
    world = World(seed, tax, publishers, datasets, occ)
    world.generation_seconds = time.perf_counter() - t0
    _release_freed_memory()
    return world


def _release_freed_memory() -> None:
    """Give the generation temporaries back to the OS.

    Generating a million records allocates a few hundred MB of short-lived numpy arrays; glibc keeps
    freed heap pages, which would triple the sandbox's resident size for its whole life. Elsewhere
    (no glibc) this is a no-op.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def stable_uuid(seed: int, what: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"sandbox/{seed}/{what}"))


def _build_datasets(seed: int) -> tuple[list[Publisher], list[Dataset]]:
    rng = np.random.default_rng([seed, 3003])
    publishers: list[Publisher] = []
    datasets: list[Dataset] = []
    n_total = sum(n for _, n in DATASET_PLAN)
    # Zipf-like dataset sizes; the first (citizen science) dataset is by far the largest
    weights = 1.0 / np.arange(1, n_total + 1) ** 1.3
    order = np.concatenate([[0], 1 + rng.permutation(n_total - 1)])
    weights = weights[np.argsort(order)]
    country_codes = [c[0] for c in COUNTRIES if c[6] > 0]
    i = 0
    for kind, count in DATASET_PLAN:
        for j in range(count):
            country = country_codes[int(rng.integers(len(country_codes)))]
            place = PLACES[int(rng.integers(len(PLACES)))]
            institutional = [p.idx for p in publishers if not p.title.startswith("Sandbox Naturalist")]
            pub_idx = None
            if kind == "citizen" and j > 0:
                pub_idx = 0  # BioBlitz datasets come from the same network as the big one
            elif kind != "citizen" and institutional and rng.random() < 0.35:
                pub_idx = institutional[int(rng.integers(len(institutional)))]
            if pub_idx is None:
                if kind == "citizen":
                    title = f"Sandbox Naturalist Network {place}"
                else:
                    fitting = [w for w, k in INSTITUTION_WORDS if k == kind] or [
                        w for w, _ in INSTITUTION_WORDS
                    ]
                    taken = {p.title for p in publishers}
                    title = f"{fitting[int(rng.integers(len(fitting)))]} {place}"
                    for other in PLACES:
                        if title not in taken:
                            break
                        title = f"{fitting[0]} {other}"
                pub_idx = len(publishers)
                publishers.append(
                    Publisher(pub_idx, stable_uuid(seed, f"publisher/{pub_idx}"), title, country)
                )
            pub = publishers[pub_idx]
            inst = "".join(w[0] for w in pub.title.split() if w[0].isupper())[:6] or "SBX"
            title = {
                "citizen": f"{pub.title} research-grade observations"
                if j == 0
                else f"{place} BioBlitz {2015 + j}",
                "survey": f"{place} {['breeding bird', 'butterfly transect', 'vegetation plot', 'pollinator', 'moth trap'][j % 5]} survey",
                "museum": f"{pub.title} — {['Entomology', 'Vertebrate Zoology', 'Invertebrates', 'Mammals'][j % 4]} collection",
                "herbarium": f"{pub.title} — Herbarium specimens ({place})",
                "fungarium": f"Fungarium of {place}",
                "cameratrap": f"{place} camera-trap network {2016 + j}",
                "literature": f"Historical records of {place} from published literature",
            }[kind]
            lic = {"citizen": [2, 1, 2], "literature": [0]}.get(kind, [1, 0, 2, 1])
            license_code = lic[j % len(lic)]
            datasets.append(
                Dataset(
                    i,
                    stable_uuid(seed, f"dataset/{i}"),
                    title,
                    pub_idx,
                    kind,
                    license_code,
                    country,
                    inst,
                    f"{kind[:3].upper()}-{j + 1}",
                    float(weights[i]),
                )
            )
            i += 1
    return publishers, datasets


def _categorical(rng: np.random.Generator, probs, n: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    return np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").astype(np.int64)


def _build_occurrences(seed: int, n: int, tax: Taxonomy, datasets: list[Dataset]) -> Occurrences:
    rng = np.random.default_rng([seed, 4004])
    with np.errstate(over="ignore"):
        key = 4_000_000_000 + np.cumsum(rng.integers(1, 64, n, dtype=np.int64))

    # --- species abundance: Zipf over accepted species, named species at fixed popular ranks ------
    sp_idx = np.array([t.idx for t in tax.taxa if t.rank == "SPECIES" and not t.is_synonym], dtype=np.int32)
    rank = rng.permutation(len(sp_idx))
    pos = {int(t): i for i, t in enumerate(sp_idx)}
    for tidx, want in sorted(tax.named_rank.items(), key=lambda kv: kv[1]):
        i = pos[tidx]
        j = int(np.flatnonzero(rank == want)[0]) if want < len(rank) else i
        rank[i], rank[j] = rank[j], rank[i]
    sp_weight = 1.0 / (rank + 1.0) ** 1.05
    sp_kingdom = np.array([tax.taxa[t].kingdom for t in sp_idx])
    sp_region = np.array([tax.taxa[t].region for t in sp_idx], dtype=np.int64)

    # per-species alternatives used for identification noise
    genus_of = np.array([tax.taxa[t].parent for t in sp_idx], dtype=np.int32)
    syn_of = np.array([tax.synonyms[t][0] if tax.synonyms[t] else -1 for t in sp_idx], dtype=np.int32)
    ssp = [[c for c in tax.children[t] if tax.taxa[c].rank == "SUBSPECIES"] for t in sp_idx]
    ssp1 = np.array([s[0] if s else -1 for s in ssp], dtype=np.int32)
    ssp2 = np.array([s[-1] if s else -1 for s in ssp], dtype=np.int32)
    family_of = np.array([tax.taxa[g].parent for g in genus_of], dtype=np.int32)

    # --- datasets ---------------------------------------------------------------------------------
    dw = np.array([d.weight for d in datasets])
    dataset = _categorical(rng, dw, n).astype(np.uint16)
    order = np.argsort(dataset, kind="stable")
    bounds = np.searchsorted(dataset[order], np.arange(len(datasets) + 1))

    species_pos = np.zeros(n, dtype=np.int32)  # position in sp_idx
    basis = np.zeros(n, dtype=np.uint8)
    media_n = np.zeros(n, dtype=np.uint8)
    no_coords = np.zeros(n, dtype=bool)
    no_unc = np.zeros(n, dtype=bool)
    year = np.zeros(n, dtype=np.int16)
    date_form = np.zeros(n, dtype=np.uint8)
    home_country = np.full(n, -1, dtype=np.int64)

    kingdom_weights: dict[str | None, np.ndarray] = {}
    for d in datasets:
        rows = order[bounds[d.idx] : bounds[d.idx + 1]]
        m = len(rows)
        if m == 0:
            continue
        kind = KINDS[d.kind]
        w = kingdom_weights.get(kind.kingdom)
        if w is None:
            w = sp_weight if kind.kingdom is None else sp_weight * (sp_kingdom == kind.kingdom)
            w = np.cumsum(w / w.sum())
            kingdom_weights[kind.kingdom] = w
        species_pos[rows] = np.minimum(np.searchsorted(w, rng.random(m), side="right"), len(w) - 1)
        names, probs = zip(*kind.basis.items(), strict=True)
        basis[rows] = np.array([BOR[b] for b in names], dtype=np.uint8)[_categorical(rng, probs, m)]
        media_n[rows] = _categorical(rng, kind.media, m)
        no_coords[rows] = rng.random(m) < kind.no_coords
        no_unc[rows] = rng.random(m) < kind.no_uncertainty
        if kind.era == "recent":
            y = NOW_YEAR - np.floor(rng.exponential(3.5, m))
            y = np.where(y < 1995, rng.integers(1995, NOW_YEAR + 1, m), y)
        elif kind.era == "historic":
            y = np.where(
                rng.random(m) < 0.7, rng.integers(1850, 2000, m), rng.integers(2000, NOW_YEAR + 1, m)
            )
        else:
            y = np.where(
                rng.random(m) < 0.6, rng.integers(1990, NOW_YEAR + 1, m), rng.integers(1900, 1990, m)
            )
        year[rows] = y.astype(np.int16)
        date_form[rows] = (1 + _categorical(rng, kind.date_forms, m)).astype(np.uint8)
        date_form[rows[rng.random(m) < kind.no_date]] = DF_NONE
        if kind.country_focus > 0:
            sel = rows[rng.random(m) < kind.country_focus]
            home_country[sel] = COUNTRY_INDEX[d.country]

    # --- identification: species, genus only, synonym, subspecies, family only --------------------
    taxon = sp_idx[species_pos].copy()
    u = rng.random(n)
    v = rng.random(n)
    syn = syn_of[species_pos]
    s1 = ssp1[species_pos]
    use_syn = (syn >= 0) & (v < 0.2)
    taxon[use_syn] = syn[use_syn]
    use_ssp = (s1 >= 0) & (v >= 0.2) & (v < 0.45)
    taxon[use_ssp] = np.where(u[use_ssp] < 0.5, s1[use_ssp], ssp2[species_pos][use_ssp])
    to_genus = u < 0.025
    taxon[to_genus] = genus_of[species_pos][to_genus]
    to_family = (u >= 0.025) & (u < 0.028)
    taxon[to_family] = family_of[species_pos][to_family]

    # --- licence: mostly the dataset's ------------------------------------------------------------
    dlic = np.array([d.license for d in datasets], dtype=np.uint8)
    license_ = dlic[dataset]
    other = rng.random(n) < 0.04
    license_[other] = rng.integers(0, len(LICENSES), int(other.sum())).astype(np.uint8)

    # --- country and coordinates ------------------------------------------------------------------
    cweights = np.array([c[6] for c in COUNTRIES], dtype=np.float64)
    country = np.zeros(n, dtype=np.int64)
    region = sp_region[species_pos]
    for r, (_name, codes) in enumerate(REGIONS):
        rows = np.flatnonzero(region == r)
        idx = np.array([COUNTRY_INDEX[c] for c in codes])
        country[rows] = idx[_categorical(rng, cweights[idx] + 0.5, len(rows))]
    stray = rng.random(n) < 0.1
    country[stray] = _categorical(rng, cweights, int(stray.sum()))
    focus = home_country >= 0
    country[focus] = home_country[focus]
    clat = np.array([c[3] for c in COUNTRIES], dtype=np.float64)
    clon = np.array([c[4] for c in COUNTRIES], dtype=np.float64)
    cspread = np.array([c[5] for c in COUNTRIES], dtype=np.float64)
    lat = np.clip(clat[country] + rng.normal(0.0, 1.0, n) * cspread[country] * 0.6, -89.9, 89.9)
    lon = clon[country] + rng.normal(0.0, 1.0, n) * cspread[country]
    lon = (lon + 180.0) % 360.0 - 180.0
    issues = np.zeros(n, dtype=np.uint32)
    for bit, (_name, p, _geo) in enumerate(ISSUES):
        if p > 0:
            issues |= (rng.random(n) < p).astype(np.uint32) << np.uint32(bit)
    zero = rng.random(n) < 0.0015
    lat[zero] = 0.0
    lon[zero] = 0.0
    issues[zero] |= np.uint32(1 << ISSUE_BIT["ZERO_COORDINATE"])
    lat[no_coords] = np.nan
    lon[no_coords] = np.nan
    # coordinate issues only make sense with coordinates
    coord_bits = sum(
        1 << ISSUE_BIT[k]
        for k in (
            "COORDINATE_ROUNDED",
            "GEODETIC_DATUM_ASSUMED_WGS84",
            "CONTINENT_DERIVED_FROM_COORDINATES",
            "COUNTRY_COORDINATE_MISMATCH",
            "PRESUMED_NEGATED_LONGITUDE",
            "COUNTRY_DERIVED_FROM_COORDINATES",
        )
    )
    issues[no_coords] &= np.uint32(~coord_bits & 0xFFFFFFFF)
    no_country = rng.random(n) < 0.015
    country_u8 = country.astype(np.uint8)
    country_u8[no_country] = NO_COUNTRY

    unc = np.exp(rng.normal(np.log(30.0), 1.6, n)).clip(1.0, 50_000.0)
    unc = np.round(unc, 1)
    common = rng.random(n) < 0.1
    unc[common] = np.array([1000.0, 5000.0, 10000.0, 30.0, 100.0])[rng.integers(0, 5, int(common.sum()))]
    unc = unc.astype(np.float32)
    unc[no_unc | no_coords] = np.nan

    # --- dates ------------------------------------------------------------------------------------
    month = rng.integers(1, 13, n).astype(np.uint8)
    # keep generated dates in the past of NOW (Oct 2025)
    late = (year == NOW_YEAR) & (month > 9)
    month[late] = month[late] - 3
    dim = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.uint8)
    day = (1 + np.floor(rng.random(n) * dim[month - 1])).astype(np.uint8)
    undated = date_form == DF_NONE
    year[undated] = 0
    month[undated | (date_form == DF_YEAR)] = 0
    day[undated | (date_form == DF_YEAR) | (date_form == DF_YEAR_MONTH) | (date_form == DF_INTERVAL)] = 0
    invalid = undated & (rng.random(n) < 0.3)
    issues[invalid] |= np.uint32(1 << ISSUE_BIT["RECORDED_DATE_INVALID"])

    # --- media ------------------------------------------------------------------------------------
    mtype_p = (0.985, 0.004, 0.003, 0.008)
    media = media_n.copy()
    media_types = np.zeros(n, dtype=np.uint8)
    for item in range(3):
        t = _categorical(rng, mtype_p, n).astype(np.uint8)
        present = media_n > item
        media |= np.where(present, t << np.uint8(2 + 2 * item), 0).astype(np.uint8)
        media_types |= np.where(present, np.uint8(1) << t, 0).astype(np.uint8)
        no_id = present & (hashing.unit_np(seed, key, media_salt(item, MF_NO_IDENTIFIER)) < P_NO_IDENTIFIER)
        issues[no_id] |= np.uint32(1 << ISSUE_BIT["MULTIMEDIA_URI_INVALID"])

    # --- identification issues follow the data ----------------------------------------------------
    higher = tax.ranks[taxon] < 6
    issues[higher] |= np.uint32(1 << ISSUE_BIT["TAXON_MATCH_HIGHERRANK"])

    flags = (rng.random(n) < 0.003).astype(np.uint8) * np.uint8(FLAG_ABSENT)

    return Occurrences(
        key=key,
        taxon=taxon.astype(np.int32),
        dataset=dataset,
        basis=basis,
        license=license_,
        country=country_u8,
        lat=lat.astype(np.float32),
        lon=lon.astype(np.float32),
        uncertainty=unc,
        year=year,
        month=month,
        day=day,
        date_form=date_form,
        issues=issues,
        media=media,
        media_types=media_types,
        flags=flags,
    )


def media_items(occ: Occurrences, i: int) -> list[int]:
    """Media types (index into MEDIA_TYPES) of record ``i``, in item order."""
    code = int(occ.media[i])
    return [(code >> (2 + 2 * item)) & 3 for item in range(code & 3)]


__all__ = [
    "World",
    "Occurrences",
    "Dataset",
    "Publisher",
    "get_world",
    "build_world",
    "media_items",
    "MEDIA_TYPES",
]
