"""Latin-looking scientific names for generated taxa.

Names are built from syllables with rank- and kingdom-specific endings (``-idae`` families of
animals, ``-aceae`` of plants and fungi, ``-ptera`` orders of insects …) so that downstream code,
fuzzy matching and humans reading a species list see something that looks like a real checklist.
"""

from __future__ import annotations

import numpy as np

_ONSETS = (
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "x",
    "z",
    "br",
    "cr",
    "dr",
    "gr",
    "pr",
    "tr",
    "ch",
    "ph",
    "th",
    "st",
    "sp",
    "sc",
    "pl",
    "cl",
    "gl",
    "rh",
)
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ia", "io", "eu", "y", "au", "oe")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "x", "nt", "st", "ct", "rp", "ll")

GENUS_ENDINGS = {
    "Animalia": ("us", "a", "ia", "ella", "odes", "opsis", "ax", "ops", "urus", "ites", "ina", "ion"),
    "Plantae": ("ia", "um", "us", "a", "anthus", "opsis", "ella", "aria", "odendron", "ago", "ris"),
    "Fungi": ("ia", "ella", "us", "myces", "opsis", "ora", "ina", "ium", "aria", "oporus"),
}
EPITHETS = (
    "vulgaris",
    "officinalis",
    "major",
    "minor",
    "alba",
    "rubra",
    "nigra",
    "viridis",
    "aurea",
    "montana",
    "sylvestris",
    "arvensis",
    "palustris",
    "maritima",
    "borealis",
    "australis",
    "orientalis",
    "occidentalis",
    "japonica",
    "sinensis",
    "africana",
    "europaea",
    "americana",
    "gracilis",
    "robusta",
    "elegans",
    "maculata",
    "punctata",
    "lineata",
    "fasciata",
    "striata",
    "ornata",
    "variegata",
    "hirsuta",
    "glabra",
    "tenuis",
    "crassa",
    "longipes",
    "brevipes",
    "angustifolia",
    "latifolia",
    "parviflora",
    "grandiflora",
    "multiflora",
    "nitida",
    "lucida",
    "obscura",
    "pallida",
    "fusca",
    "cinerea",
    "caerulea",
    "flava",
    "lutea",
    "rosea",
    "purpurea",
    "sanguinea",
    "virens",
    "communis",
    "rara",
    "ambigua",
    "dubia",
    "mirabilis",
    "nana",
    "gigantea",
    "pusilla",
    "minuta",
    "elongata",
    "rotundata",
    "serrata",
    "dentata",
    "spinosa",
    "aquatica",
    "campestris",
    "nemoralis",
    "saxatilis",
    "rupestris",
    "alpina",
    "littoralis",
    "tropicalis",
    "indica",
    "capensis",
    "canadensis",
    "hispanica",
    "germanica",
    "gallica",
    "anglica",
    "italica",
    "lusitanica",
    "nordica",
    "fennica",
    "insularis",
)
EPITHET_ENDINGS = ("ensis", "ii", "i", "ae", "ata", "osa", "ella", "oides", "icola", "alis", "ina", "ana")
_AUTHORS_ZOO = (
    "Linnaeus",
    "Fabricius",
    "Hübner",
    "Denis & Schiffermüller",
    "Esper",
    "Walker",
    "Boisduval",
    "Meigen",
    "Latreille",
    "Say",
    "Gray",
    "Cuvier",
    "Temminck",
    "Gmelin",
    "Pallas",
    "Schreber",
    "Rambur",
    "Selys",
    "Kirby",
    "Stephens",
    "Westwood",
    "Herrich-Schäffer",
    "Staudinger",
    "Butler",
)
_AUTHORS_BOT = (
    "L.",
    "Mill.",
    "Willd.",
    "DC.",
    "Lam.",
    "Sm.",
    "Benth.",
    "Hook.f.",
    "Pers.",
    "Fr.",
    "Kunth",
    "Nutt.",
    "Thunb.",
    "Desf.",
    "Roth",
    "Schrad.",
    "Sw.",
    "Michx.",
    "Gaertn.",
    "Spreng.",
    "Vahl",
)
_BOT_KINGDOMS = ("Plantae", "Fungi")


def _stem(rng: np.random.Generator, syllables: int) -> str:
    parts = []
    for _ in range(syllables):
        parts.append(_ONSETS[rng.integers(len(_ONSETS))])
        parts.append(_VOWELS[rng.integers(len(_VOWELS))])
    parts.append(_CODAS[rng.integers(len(_CODAS))])
    return "".join(parts)


def _clean_join(stem: str, ending: str) -> str:
    # avoid vowel pile-ups like "aeia" that make names look machine-made
    while stem and ending and stem[-1] in "aeiouy" and ending[0] in "aeiouy":
        stem = stem[:-1]
    return stem + ending


def genus_name(rng: np.random.Generator, kingdom: str) -> str:
    endings = GENUS_ENDINGS.get(kingdom, GENUS_ENDINGS["Animalia"])
    name = _clean_join(_stem(rng, int(rng.integers(1, 3))), endings[rng.integers(len(endings))])
    return name.capitalize()


def family_name(rng: np.random.Generator, kingdom: str) -> str:
    suffix = "aceae" if kingdom in _BOT_KINGDOMS else "idae"
    return _clean_join(_stem(rng, int(rng.integers(1, 3))), suffix).capitalize()


def epithet(rng: np.random.Generator, gender_hint: str = "") -> str:
    if rng.random() < 0.55:
        word = EPITHETS[rng.integers(len(EPITHETS))]
    else:
        word = _clean_join(
            _stem(rng, int(rng.integers(1, 3))), EPITHET_ENDINGS[rng.integers(len(EPITHET_ENDINGS))]
        )
    if gender_hint.endswith("us") and word.endswith("a") and not word.endswith(("ia", "ea")):
        word = word[:-1] + "us"
    return word.lower()


def authorship(rng: np.random.Generator, kingdom: str, *, moved: bool = False) -> str:
    if kingdom in _BOT_KINGDOMS:
        author = _AUTHORS_BOT[rng.integers(len(_AUTHORS_BOT))]
        if moved:
            return f"({_AUTHORS_BOT[rng.integers(len(_AUTHORS_BOT))]}) {author}"
        return author
    year = int(rng.integers(1758, 2015))
    author = _AUTHORS_ZOO[rng.integers(len(_AUTHORS_ZOO))]
    return f"({author}, {year})" if moved else f"{author}, {year}"
