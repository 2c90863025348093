"""A generated GBIF-backbone-like taxonomy.

A fixed skeleton (kingdoms to orders, plus the named taxa the project's examples and tests rely on:
Vanessa atalanta, Aglais io with its synonym Inachis io, Panthera leo, Helianthus annuus, …) is filled
with generated families, genera, species, subspecies and synonyms. Named taxa keep the same keys
whatever the seed — where the real backbone key is known it is reused (Vanessa atalanta 1898286,
Helianthus annuus 9206251, Passer domesticus 5231190 …), so specs written against GBIF read naturally
here; generated taxa get seed-dependent keys that never collide with them. A named species' number
is its Zipf rank (lower = more records): the example specs' species rank high enough that a spec
written for GBIF, where each has thousands of images (lion and tiger too), fills its classes here.

The taxonomy has a few thousand usages, so it is kept as Python objects plus small numpy arrays; the
large data (occurrences) refers to usages by index.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import numpy as np

from . import names
from .vocab import RANKS, REGIONS, STATUSES, SYNONYM_STATUSES


@dataclass(slots=True)
class Taxon:
    idx: int
    key: int
    canonical: str
    authorship: str
    rank: str
    status: str
    parent: int  # index of the parent usage (-1 for kingdoms); for synonyms the accepted usage
    accepted: int  # index of the accepted usage (itself when accepted/doubtful)
    vernacular: str | None = None
    region: int = 0  # native region of species (index into vocab.REGIONS)
    kingdom: str = ""

    @property
    def scientific_name(self) -> str:
        return f"{self.canonical} {self.authorship}" if self.authorship else self.canonical

    @property
    def is_synonym(self) -> bool:
        return self.status in SYNONYM_STATUSES


# (rank, name, authorship, key, vernacular, weight-or-children)
# Orders carry a weight: the share of generated species they receive.
_N = None
# fmt: off
SKELETON = (
    ("KINGDOM", "Animalia", "", 1, "Animals", (
        ("PHYLUM", "Arthropoda", "", 54, "Arthropods", (
            ("CLASS", "Insecta", "", 216, "Insects", (
                ("ORDER", "Lepidoptera", "", 797, "Butterflies and moths", 14.0, (
                    ("FAMILY", "Nymphalidae", "", 7017, "Brush-footed butterflies", (
                        ("GENUS", "Vanessa", "Fabricius, 1807", 1898184, _N, (
                            ("SPECIES", "Vanessa atalanta", "(Linnaeus, 1758)", 1898286, "Red Admiral", 3, "HOLARCTIC"),
                            ("SPECIES", "Vanessa cardui", "(Linnaeus, 1758)", 4299368, "Painted Lady", 8, "HOLARCTIC"),
                        )),
                        ("GENUS", "Aglais", "Dalman, 1816", 4535740, _N, (
                            ("SPECIES", "Aglais io", "(Linnaeus, 1758)", 4535827, "Peacock", 5, "EUROPE",
                             (("Inachis io", "(Linnaeus, 1758)", 5881450),)),
                            ("SPECIES", "Aglais urticae", "(Linnaeus, 1758)", 4535831, "Small Tortoiseshell", 10, "EUROPE"),
                        ), (("Inachis", "Hübner, 1819", 1898205),)),
                    )),
                    ("FAMILY", "Papilionidae", "", 9417, "Swallowtails", (
                        ("GENUS", "Papilio", "Linnaeus, 1758", 1938095, _N, (
                            ("SPECIES", "Papilio machaon", "Linnaeus, 1758", 1938125, "Old World Swallowtail", 20, "HOLARCTIC"),
                        )),
                    )),
                    ("FAMILY", "Pieridae", "", 5473, "Whites and sulphurs", (
                        ("GENUS", "Pieris", "Schrank, 1801", 1920469, _N, (
                            ("SPECIES", "Pieris rapae", "(Linnaeus, 1758)", 1920496, "Small White", 2, "HOLARCTIC"),
                            ("SPECIES", "Pieris brassicae", "(Linnaeus, 1758)", 1920506, "Large White", 12, "EUROPE"),
                        )),
                    )),
                )),
                ("ORDER", "Coleoptera", "", 1470, "Beetles", 14.0, ()),
                ("ORDER", "Hymenoptera", "", 1457, "Ants, bees and wasps", 8.0, ()),
                ("ORDER", "Diptera", "", 811, "Flies", 7.0, ()),
                ("ORDER", "Hemiptera", "", 809, "True bugs", 4.0, ()),
                ("ORDER", "Odonata", "", 789, "Dragonflies", 3.0, ()),
                ("ORDER", "Orthoptera", "", 1458, "Grasshoppers", 2.0, ()),
            )),
            ("CLASS", "Arachnida", "", 367, "Arachnids", (
                ("ORDER", "Araneae", "", 1496, "Spiders", 3.0, ()),
            )),
        )),
        ("PHYLUM", "Chordata", "", 44, "Chordates", (
            ("CLASS", "Mammalia", "", 359, "Mammals", (
                ("ORDER", "Carnivora", "", 732, "Carnivores", 1.5, (
                    ("FAMILY", "Felidae", "", 9703, "Cats", (
                        ("GENUS", "Panthera", "Oken, 1816", 2435194, _N, (
                            ("SPECIES", "Panthera leo", "(Linnaeus, 1758)", 5219404, "Lion", 6, "AFRICA"),
                            ("SPECIES", "Panthera tigris", "(Linnaeus, 1758)", 5219416, "Tiger", 7, "ASIA"),
                        )),
                    )),
                )),
                ("ORDER", "Rodentia", "", 1459, "Rodents", 2.0, ()),
                ("ORDER", "Chiroptera", "", 734, "Bats", 1.5, ()),
            )),
            ("CLASS", "Aves", "", 212, "Birds", (
                ("ORDER", "Passeriformes", "", 729, "Perching birds", 6.0, (
                    ("FAMILY", "Passeridae", "", 5264, "Old World sparrows", (
                        ("GENUS", "Passer", "Brisson, 1760", 2492321, _N, (
                            ("SPECIES", "Passer domesticus", "(Linnaeus, 1758)", 5231190, "House Sparrow", 4, "HOLARCTIC",
                             (("Fringilla domestica", "Linnaeus, 1758", 8933000),)),
                        )),
                    )),
                )),
                ("ORDER", "Accipitriformes", "", 7191147, "Hawks and eagles", 1.0, ()),
                ("ORDER", "Anseriformes", "", 1108, "Waterfowl", 1.0, ()),
                ("ORDER", "Suliformes", "", 10789234, "Gannets and cormorants", 0.3, (
                    ("FAMILY", "Sulidae", "", 5289, "Gannets and boobies", (
                        # "Morus" is a genus in Aves and in Plantae: a real homonym for kingdom hints
                        ("GENUS", "Morus", "Vieillot, 1816", 2480979, _N, (
                            ("SPECIES", "Morus bassanus", "(Linnaeus, 1758)", 2480983, "Northern Gannet", 40, "EUROPE"),
                        )),
                    )),
                )),
            )),
            ("CLASS", "Amphibia", "", 131, "Amphibians", (
                ("ORDER", "Anura", "", 952, "Frogs and toads", 1.5, ()),
            )),
        )),
        ("PHYLUM", "Mollusca", "", 52, "Molluscs", (
            ("CLASS", "Gastropoda", "", 225, "Snails and slugs", (
                ("ORDER", "Stylommatophora", "", 1456, "Land snails", 2.0, ()),
            )),
        )),
    )),
    ("KINGDOM", "Plantae", "", 6, "Plants", (
        ("PHYLUM", "Tracheophyta", "", 7707728, "Vascular plants", (
            ("CLASS", "Magnoliopsida", "", 220, "Dicots", (
                ("ORDER", "Asterales", "", 414, _N, 5.0, (
                    ("FAMILY", "Asteraceae", "", 3065, "Daisy family", (
                        ("GENUS", "Helianthus", "L.", 3119134, _N, (
                            ("SPECIES", "Helianthus annuus", "L.", 9206251, "Common Sunflower", 15, "NORTH_AMERICA"),
                        )),
                    )),
                )),
                ("ORDER", "Rosales", "", 691, _N, 3.0, (
                    ("FAMILY", "Moraceae", "", 6640, "Mulberry family", (
                        ("GENUS", "Morus", "L.", 3034759, _N, (
                            ("SPECIES", "Morus alba", "L.", 5361880, "White Mulberry", 50, "ASIA"),
                            ("SPECIES", "Morus nigra", "L.", 5361881, "Black Mulberry", 70, "ASIA"),
                        )),
                    )),
                )),
                ("ORDER", "Fabales", "", 1370, _N, 3.0, ()),
                ("ORDER", "Lamiales", "", 408, _N, 4.0, ()),
                ("ORDER", "Caryophyllales", "", 422, _N, 3.0, ()),
                ("ORDER", "Ericales", "", 1353, _N, 2.0, ()),
            )),
            ("CLASS", "Liliopsida", "", 196, "Monocots", (
                ("ORDER", "Asparagales", "", 1169, _N, 3.0, ()),
                ("ORDER", "Poales", "", 1369, _N, 3.0, ()),
            )),
            ("CLASS", "Polypodiopsida", "", 7228684, "Ferns", (
                ("ORDER", "Polypodiales", "", 392, _N, 1.0, ()),
            )),
            ("CLASS", "Pinopsida", "", 194, "Conifers", (
                ("ORDER", "Pinales", "", 640, _N, 0.7, ()),
            )),
        )),
        ("PHYLUM", "Bryophyta", "", 35, "Mosses", (
            ("CLASS", "Bryopsida", "", 327, _N, (
                ("ORDER", "Hypnales", "", 1163, _N, 1.0, ()),
            )),
        )),
    )),
    ("KINGDOM", "Fungi", "", 5, "Fungi", (
        ("PHYLUM", "Basidiomycota", "", 34, _N, (
            ("CLASS", "Agaricomycetes", "", 186, _N, (
                ("ORDER", "Agaricales", "", 1499, "Gilled mushrooms", 3.0, (
                    ("FAMILY", "Amanitaceae", "", 4171, _N, (
                        ("GENUS", "Amanita", "Pers.", 2530001, _N, (
                            ("SPECIES", "Amanita muscaria", "(L.) Lam.", 8168319, "Fly Agaric", 30, "HOLARCTIC"),
                        )),
                    )),
                )),
                ("ORDER", "Polyporales", "", 1063, _N, 1.0, ()),
                ("ORDER", "Boletales", "", 1065, _N, 1.0, ()),
            )),
        )),
        ("PHYLUM", "Ascomycota", "", 95, _N, (
            ("CLASS", "Lecanoromycetes", "", 180, "Lichens", (
                ("ORDER", "Lecanorales", "", 1054, _N, 1.5, ()),
            )),
        )),
    )),
)

# fmt: on

#: the named species whose keys are fixed whatever the seed (handy for tests and docs)
NAMED_SPECIES = (
    "Vanessa atalanta",
    "Vanessa cardui",
    "Aglais io",
    "Aglais urticae",
    "Papilio machaon",
    "Pieris rapae",
    "Pieris brassicae",
    "Panthera leo",
    "Panthera tigris",
    "Passer domesticus",
    "Morus bassanus",
    "Helianthus annuus",
    "Morus alba",
    "Morus nigra",
    "Amanita muscaria",
)

_RANK_INDEX = {r: i for i, r in enumerate(RANKS)}
_STATUS_INDEX = {s: i for i, s in enumerate(STATUSES)}
_REGION_INDEX = {r[0]: i for i, r in enumerate(REGIONS)}


def normalize_name(name: str) -> str:
    """Lower-case, single-spaced name for look-ups (GBIF's matcher is case-insensitive)."""
    return re.sub(r"\s+", " ", name.strip()).lower()


@dataclass
class Taxonomy:
    taxa: list[Taxon] = field(default_factory=list)
    by_key: dict[int, int] = field(default_factory=dict)
    children: list[list[int]] = field(default_factory=list)
    synonyms: list[list[int]] = field(default_factory=list)
    #: Zipf rank preference of named species (lower = more common), by taxon index
    named_rank: dict[int, int] = field(default_factory=dict)

    # numpy views, filled by finalize()
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ranks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    statuses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    accepted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    #: n × 7 classification of the accepted usage: indices (-1 none) and keys (0 none)
    cls_idx: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.int32))
    cls_keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.int64))
    num_descendants: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    #: per usage: the classification fields of occurrence JSON (kingdomKey…, kingdom…), precomputed
    #: because rendering a million archive rows would otherwise redo this per record
    cls_fields: list[tuple[tuple[str, int], ...]] = field(default_factory=list)
    cls_names: list[tuple[tuple[str, str], ...]] = field(default_factory=list)
    _names: dict[str, list[int]] = field(default_factory=dict)
    _name_list: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ construction helpers
    def add(
        self,
        key: int,
        canonical: str,
        authorship: str,
        rank: str,
        status: str,
        parent: int,
        accepted: int | None = None,
        vernacular: str | None = None,
        region: int = 0,
    ) -> int:
        idx = len(self.taxa)
        kingdom = self.taxa[parent].kingdom if parent >= 0 else canonical
        t = Taxon(
            idx,
            key,
            canonical,
            authorship,
            rank,
            status,
            parent,
            idx if accepted is None else accepted,
            vernacular,
            region,
            kingdom,
        )
        self.taxa.append(t)
        self.children.append([])
        self.synonyms.append([])
        if key in self.by_key:
            raise ValueError(f"duplicate taxon key {key} ({canonical})")
        self.by_key[key] = idx
        if t.is_synonym:
            self.synonyms[t.accepted].append(idx)
        elif parent >= 0:
            self.children[parent].append(idx)
        return idx

    def finalize(self) -> None:
        n = len(self.taxa)
        self.keys = np.array([t.key for t in self.taxa], dtype=np.int64)
        self.ranks = np.array([_RANK_INDEX[t.rank] for t in self.taxa], dtype=np.uint8)
        self.statuses = np.array([_STATUS_INDEX[t.status] for t in self.taxa], dtype=np.uint8)
        self.accepted = np.array([t.accepted for t in self.taxa], dtype=np.int32)
        cls_idx = np.full((n, 7), -1, dtype=np.int32)
        for t in self.taxa:
            cur = self.taxa[t.accepted]
            while cur is not None:
                r = _RANK_INDEX[cur.rank]
                if r < 7:
                    cls_idx[t.idx, r] = cur.idx
                cur = self.taxa[cur.parent] if cur.parent >= 0 else None
        self.cls_idx = cls_idx
        self.cls_keys = np.where(cls_idx >= 0, self.keys[np.maximum(cls_idx, 0)], 0)
        key_names = [f"{r.lower()}Key" for r in RANKS[:7]]
        fields = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
        rows = cls_idx.tolist()
        self.cls_fields = [
            tuple((key_names[r], self.taxa[c].key) for r, c in enumerate(row) if c >= 0) for row in rows
        ]
        self.cls_names = [
            tuple((fields[r], self.taxa[c].canonical) for r, c in enumerate(row) if c >= 0) for row in rows
        ]
        desc = np.zeros(n, dtype=np.int32)
        for t in self.taxa:
            if t.is_synonym:
                continue
            p = t.parent
            while p >= 0:
                desc[p] += 1
                p = self.taxa[p].parent
        self.num_descendants = desc
        self._names = {}
        for t in self.taxa:
            self._names.setdefault(normalize_name(t.canonical), []).append(t.idx)
            self._names.setdefault(normalize_name(t.scientific_name), []).append(t.idx)
        self._name_list = sorted(self._names)

    # ------------------------------------------------------------------ look-ups
    def get(self, key: int) -> Taxon | None:
        idx = self.by_key.get(int(key))
        return None if idx is None else self.taxa[idx]

    def find(self, name: str) -> list[Taxon]:
        """Usages whose canonical or full scientific name equals ``name`` (case-insensitive)."""
        return [self.taxa[i] for i in dict.fromkeys(self._names.get(normalize_name(name), []))]

    def fuzzy(self, name: str, n: int = 5, cutoff: float = 0.8) -> list[tuple[float, Taxon]]:
        """Close spellings, best first, with a similarity ratio in 0..1."""
        norm = normalize_name(name)
        out: dict[int, float] = {}
        for cand in difflib.get_close_matches(norm, self._name_list, n=n, cutoff=cutoff):
            ratio = difflib.SequenceMatcher(None, norm, cand).ratio()
            for i in self._names[cand]:
                out[i] = max(out.get(i, 0.0), ratio)
        return sorted(((r, self.taxa[i]) for i, r in out.items()), key=lambda x: (-x[0], x[1].key))

    def classification(self, idx: int) -> list[Taxon]:
        """Accepted higher classification of a usage, kingdom first (excluding the usage itself)."""
        t = self.taxa[idx]
        chain = []
        p = t.parent if not t.is_synonym else self.taxa[t.accepted].parent
        while p >= 0:
            chain.append(self.taxa[p])
            p = self.taxa[p].parent
        return chain[::-1]

    def descendant_mask(self, idx: int) -> np.ndarray:
        """Boolean mask over usages: the usage, its synonyms, all descendants and their synonyms.

        This is GBIF's ``taxonKey`` semantics: a higher taxon matches everything classified below
        it, and a species also matches records that were identified under one of its synonyms.
        """
        t = self.taxa[idx]
        r = _RANK_INDEX[t.rank]
        if t.is_synonym:
            mask = np.zeros(len(self.taxa), dtype=bool)
            mask[idx] = True
        elif r < 7:
            # the classification of every usage (synonyms and subspecies included) names its
            # accepted ancestors, so one column comparison finds all descendants and their synonyms
            mask = self.cls_idx[:, r] == idx
        else:
            mask = self.accepted == idx
        return mask


def build_taxonomy(seed: int, n_species: int) -> Taxonomy:
    """Build the taxonomy for ``seed`` with about ``n_species`` generated species."""
    rng = np.random.default_rng([seed, 1001])
    tax = Taxonomy()
    used_keys = set()
    used_names: set[str] = set()

    for kingdom in SKELETON:
        _collect_fixed(kingdom, used_keys, used_names)

    def new_key(lo: int, hi: int) -> int:
        while True:
            k = int(rng.integers(lo, hi))
            if k not in used_keys:
                used_keys.add(k)
                return k

    orders: list[tuple[int, float]] = []

    def walk(node, parent: int) -> None:
        rank = node[0]
        if rank == "SPECIES":
            _, name, auth, key, vern, zipf_rank, region = node[:7]
            idx = tax.add(
                key, name, auth, rank, "ACCEPTED", parent, vernacular=vern, region=_REGION_INDEX[region]
            )
            tax.named_rank[idx] = zipf_rank
            for syn_name, syn_auth, syn_key in node[7] if len(node) > 7 else ():
                tax.add(syn_key, syn_name, syn_auth, "SPECIES", "SYNONYM", idx, accepted=idx)
            return
        if rank == "GENUS":
            _, name, auth, key, vern, kids = node[:6]
            idx = tax.add(key, name, auth, rank, "ACCEPTED", parent, vernacular=vern)
            for syn_name, syn_auth, syn_key in node[6] if len(node) > 6 else ():
                tax.add(syn_key, syn_name, syn_auth, "GENUS", "SYNONYM", idx, accepted=idx)
            for kid in kids:
                walk(kid, idx)
            return
        if rank == "ORDER":
            _, name, auth, key, vern, weight, kids = node
            idx = tax.add(key, name, auth, rank, "ACCEPTED", parent, vernacular=vern)
            orders.append((idx, weight))
            for kid in kids:
                walk(kid, idx)
            return
        _, name, auth, key, vern, kids = node
        idx = tax.add(key, name, auth, rank, "ACCEPTED", parent, vernacular=vern)
        for kid in kids:
            walk(kid, idx)

    for kingdom in SKELETON:
        walk(kingdom, -1)

    total_w = sum(w for _, w in orders)
    for order_idx, weight in orders:
        target = max(1, round(n_species * weight / total_w))
        _fill_order(tax, rng, order_idx, target, new_key, used_names)

    tax.finalize()
    return tax


def _collect_fixed(node, used_keys: set[int], used_names: set[str]) -> None:
    rank = node[0]
    used_keys.add(node[3])
    used_names.add(node[1])
    if rank == "SPECIES":
        for syn in node[7] if len(node) > 7 else ():
            used_keys.add(syn[2])
            used_names.add(syn[0])
        return
    if rank == "GENUS":
        for syn in node[6] if len(node) > 6 else ():
            used_keys.add(syn[2])
            used_names.add(syn[0])
        kids = node[5]
    elif rank == "ORDER":
        kids = node[6]
    else:
        kids = node[5]
    for kid in kids:
        _collect_fixed(kid, used_keys, used_names)


def _fill_order(
    tax: Taxonomy, rng: np.random.Generator, order_idx: int, target: int, new_key, used_names: set[str]
) -> None:
    kingdom = tax.taxa[order_idx].kingdom
    families = [c for c in tax.children[order_idx] if tax.taxa[c].rank == "FAMILY"]
    order_region = int(rng.integers(len(REGIONS)))
    remaining = target
    while remaining > 0:
        if families and rng.random() < 0.65:
            fam = families[int(rng.integers(len(families)))]
        else:
            fname = _unique(lambda: names.family_name(rng, kingdom), used_names)
            fam = tax.add(
                new_key(2_000, 9_999) if rng.random() < 0.5 else new_key(3_000_000, 9_999_999),
                fname,
                "",
                "FAMILY",
                "ACCEPTED",
                order_idx,
            )
            families.append(fam)
        gname = _unique(lambda: names.genus_name(rng, kingdom), used_names)
        gauth = names.authorship(rng, kingdom)
        genus = tax.add(new_key(1_000_000, 9_999_999), gname, gauth, "GENUS", "ACCEPTED", fam)
        n_sp = int(min(remaining, 1 + rng.geometric(0.4)))
        remaining -= n_sp
        genus_region = order_region if rng.random() < 0.5 else int(rng.integers(len(REGIONS)))
        epithets: set[str] = set()
        for _ in range(n_sp):
            ep = _unique(lambda gname=gname: names.epithet(rng, gname), epithets)
            canonical = f"{gname} {ep}"
            used_names.add(canonical)
            region = genus_region if rng.random() < 0.7 else int(rng.integers(len(REGIONS)))
            status = "DOUBTFUL" if rng.random() < 0.01 else "ACCEPTED"
            moved = rng.random() < 0.4
            auth = names.authorship(rng, kingdom, moved=moved)
            sp = tax.add(
                new_key(1_000_000, 12_999_999), canonical, auth, "SPECIES", status, genus, region=region
            )
            u = rng.random()
            if u < 0.12:
                # a synonym: the original combination in another genus, or a later heterotypic name
                if moved:
                    other = _unique(lambda: names.genus_name(rng, kingdom), used_names)
                    syn_name, syn_auth = f"{other} {ep}", auth.strip("()")
                else:
                    syn_name = _unique(lambda gname=gname: f"{gname} {names.epithet(rng, gname)}", used_names)
                    syn_auth = names.authorship(rng, kingdom)
                used_names.add(syn_name)
                tax.add(
                    new_key(1_000_000, 12_999_999), syn_name, syn_auth, "SPECIES", "SYNONYM", sp, accepted=sp
                )
            elif u < 0.15:
                for _ in range(int(rng.integers(1, 3))):
                    sub = _unique(lambda gname=gname: names.epithet(rng, gname), epithets)
                    tax.add(
                        new_key(1_000_000, 12_999_999),
                        f"{canonical} {sub}",
                        names.authorship(rng, kingdom),
                        "SUBSPECIES",
                        "ACCEPTED",
                        sp,
                        region=region,
                    )


def _unique(make, used: set[str], tries: int = 50) -> str:
    for _ in range(tries):
        value = make()
        if value not in used:
            used.add(value)
            return value
    value = make()
    suffix = 2
    while f"{value}{suffix}" in used:
        suffix += 1
    used.add(f"{value}{suffix}")
    return f"{value}{suffix}"
