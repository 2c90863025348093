"""Fixed tables of the sandbox's generated world: which GBIF values it uses, how often, and where.

GBIF's enums themselves (BasisOfRecord, MediaType, Continent, OccurrenceIssue names, country codes,
licences, statuses) come from :mod:`gbifdl_assets.vocabulary`, the one copy the product checks
against too; this module holds the sandbox's own choices among them: the subset it generates, with
probabilities, coordinates and name pools.

Orders matter: occurrence columns store the index into these tuples (and into the shared enums),
so changing an order changes generated data (and the seed-determinism tests notice).
"""

from __future__ import annotations

from gbifdl_assets.vocabulary import BASIS_OF_RECORD, KEY_RANKS, RECORD_LICENSES

#: the ranks of the generated taxonomy: every rank with a ``<rank>Key`` field, and subspecies
RANKS = (*KEY_RANKS, "SUBSPECIES")
RANK_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")

#: the TaxonomicStatus values the generated taxonomy uses (index order of its status column)
STATUSES = ("ACCEPTED", "DOUBTFUL", "SYNONYM", "HOMOTYPIC_SYNONYM", "HETEROTYPIC_SYNONYM")
SYNONYM_STATUSES = frozenset(STATUSES[2:])

BOR = {name: i for i, name in enumerate(BASIS_OF_RECORD)}

#: record licences the sandbox generates: enum name (search parameter, archive column) and legalcode URL (JSON)
LICENSES = RECORD_LICENSES[:3]
LICENSE_URLS = (
    "http://creativecommons.org/publicdomain/zero/1.0/legalcode",
    "http://creativecommons.org/licenses/by/4.0/legalcode",
    "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
)
#: file extension of a generated media item, by MediaType (same order as vocabulary.MEDIA_TYPES)
MEDIA_EXT = ("jpg", "mp4", "mp3", "html")

#: (name, probability, geospatial?) — the OccurrenceIssues flagged on generated records (index = bit)
ISSUES = (
    ("COORDINATE_ROUNDED", 0.22, False),
    ("GEODETIC_DATUM_ASSUMED_WGS84", 0.30, False),
    ("CONTINENT_DERIVED_FROM_COORDINATES", 0.15, False),
    ("TAXON_MATCH_FUZZY", 0.01, False),
    ("TAXON_MATCH_HIGHERRANK", 0.0, False),  # set from data: records identified above species
    ("INSTITUTION_MATCH_NONE", 0.08, False),
    ("COLLECTION_MATCH_NONE", 0.06, False),
    ("OCCURRENCE_STATUS_INFERRED_FROM_INDIVIDUAL_COUNT", 0.10, False),
    ("MULTIMEDIA_URI_INVALID", 0.0, False),  # set from data: a media item without identifier
    ("RECORDED_DATE_INVALID", 0.0, False),  # set from data: records without a date
    ("ZERO_COORDINATE", 0.0, True),  # set from data together with 0,0 coordinates
    ("COUNTRY_COORDINATE_MISMATCH", 0.004, True),
    ("COORDINATE_UNCERTAINTY_METERS_INVALID", 0.003, False),
    ("COUNTRY_DERIVED_FROM_COORDINATES", 0.03, False),
    ("TAXON_MATCH_TAXON_ID_IGNORED", 0.05, False),
    ("RECORDED_DATE_UNLIKELY", 0.002, False),
    ("COORDINATE_OUT_OF_RANGE", 0.0, True),
    ("PRESUMED_NEGATED_LONGITUDE", 0.001, True),
    ("MULTIMEDIA_DATE_INVALID", 0.004, False),
    ("IDENTIFIED_DATE_UNLIKELY", 0.003, False),
)
ISSUE_NAMES = tuple(i[0] for i in ISSUES)
ISSUE_BIT = {name: i for i, name in enumerate(ISSUE_NAMES)}
GEOSPATIAL_ISSUE_MASK = sum(1 << i for i, issue in enumerate(ISSUES) if issue[2])

#: code, name, continent, centre lat, centre lon, spread (degrees), weight in "global" draws
COUNTRIES = (
    ("US", "United States of America", "NORTH_AMERICA", 39.0, -97.0, 9.0, 22),
    ("CA", "Canada", "NORTH_AMERICA", 52.0, -100.0, 7.0, 5),
    ("MX", "Mexico", "NORTH_AMERICA", 22.0, -102.0, 4.0, 3),
    ("CR", "Costa Rica", "NORTH_AMERICA", 9.9, -84.1, 0.6, 1),
    ("BR", "Brazil", "SOUTH_AMERICA", -12.0, -50.0, 7.0, 3),
    ("AR", "Argentina", "SOUTH_AMERICA", -36.0, -64.0, 6.0, 1),
    ("CO", "Colombia", "SOUTH_AMERICA", 4.5, -74.0, 2.5, 2),
    ("EC", "Ecuador", "SOUTH_AMERICA", -1.5, -78.5, 1.0, 1),
    ("GB", "United Kingdom of Great Britain and Northern Ireland", "EUROPE", 53.0, -1.8, 1.8, 10),
    ("FR", "France", "EUROPE", 46.6, 2.4, 2.2, 8),
    ("DE", "Germany", "EUROPE", 51.0, 10.3, 1.8, 7),
    ("NL", "Netherlands", "EUROPE", 52.2, 5.5, 0.6, 8),
    ("BE", "Belgium", "EUROPE", 50.6, 4.6, 0.5, 3),
    ("ES", "Spain", "EUROPE", 40.2, -3.6, 2.2, 4),
    ("IT", "Italy", "EUROPE", 42.8, 12.5, 2.0, 3),
    ("SE", "Sweden", "EUROPE", 60.5, 15.5, 3.0, 6),
    ("NO", "Norway", "EUROPE", 61.0, 9.5, 3.0, 3),
    ("FI", "Finland", "EUROPE", 62.5, 26.0, 2.5, 3),
    ("DK", "Denmark", "EUROPE", 56.0, 10.0, 0.8, 4),
    ("PL", "Poland", "EUROPE", 52.0, 19.4, 1.6, 2),
    ("CH", "Switzerland", "EUROPE", 46.8, 8.2, 0.5, 2),
    ("AT", "Austria", "EUROPE", 47.6, 14.1, 0.8, 1),
    ("PT", "Portugal", "EUROPE", 39.6, -8.0, 1.2, 1),
    ("ZA", "South Africa", "AFRICA", -29.0, 25.0, 4.0, 3),
    ("KE", "Kenya", "AFRICA", 0.2, 37.9, 2.0, 1),
    ("TZ", "Tanzania, United Republic of", "AFRICA", -6.3, 34.8, 2.5, 1),
    ("MG", "Madagascar", "AFRICA", -19.0, 46.7, 2.5, 1),
    ("IN", "India", "ASIA", 22.0, 79.0, 5.0, 2),
    ("CN", "China", "ASIA", 34.0, 104.0, 7.0, 1),
    ("JP", "Japan", "ASIA", 36.5, 138.5, 2.5, 2),
    ("TW", "Taiwan, Province of China", "ASIA", 23.7, 121.0, 0.6, 2),
    ("ID", "Indonesia", "ASIA", -2.5, 118.0, 5.0, 1),
    ("MY", "Malaysia", "ASIA", 3.8, 102.0, 1.5, 1),
    ("RU", "Russian Federation", "EUROPE", 56.0, 45.0, 8.0, 2),
    ("AU", "Australia", "OCEANIA", -25.0, 134.0, 7.0, 6),
    ("NZ", "New Zealand", "OCEANIA", -41.5, 172.5, 2.5, 2),
    ("AQ", "Antarctica", "ANTARCTICA", -77.0, 166.0, 2.0, 0),
)
COUNTRY_CODES = tuple(c[0] for c in COUNTRIES)
COUNTRY_INDEX = {c: i for i, c in enumerate(COUNTRY_CODES)}
NO_COUNTRY = 255

#: country groups a species can be native to (index = region id of a species)
REGIONS = (
    ("EUROPE", ("GB", "FR", "DE", "NL", "BE", "ES", "IT", "SE", "NO", "FI", "DK", "PL", "CH", "AT", "PT")),
    ("NORTH_AMERICA", ("US", "CA", "MX")),
    ("NEOTROPICS", ("MX", "CR", "BR", "AR", "CO", "EC")),
    ("AFRICA", ("ZA", "KE", "TZ", "MG")),
    ("ASIA", ("IN", "CN", "JP", "TW", "ID", "MY", "RU")),
    ("OCEANIA", ("AU", "NZ")),
    ("HOLARCTIC", ("US", "CA", "GB", "FR", "DE", "NL", "SE", "FI", "RU", "JP", "DK", "PL")),
)

# ---------------------------------------------------------------------------------------------------
# media licences as GBIF carries them: free text, not normalised (see reference §3.3 and §6)
# ---------------------------------------------------------------------------------------------------
_CC = "creativecommons.org"


def _cc_variants(path: str) -> tuple[str, ...]:
    return (
        f"http://{_CC}/{path}/",
        f"https://{_CC}/{path}/",
        f"http://{_CC}/{path}",
        f"https://{_CC}/{path}",
    )


CC0 = _cc_variants("publicdomain/zero/1.0")
BY4 = _cc_variants("licenses/by/4.0")
BYNC4 = _cc_variants("licenses/by-nc/4.0")
BYNCND4 = _cc_variants("licenses/by-nc-nd/4.0")
BYNCSA4 = _cc_variants("licenses/by-nc-sa/4.0")
BYSA4 = _cc_variants("licenses/by-sa/4.0")
BY3 = _cc_variants("licenses/by/3.0")
BYNC3 = _cc_variants("licenses/by-nc/3.0")
BYSA3 = _cc_variants("licenses/by-sa/3.0")

#: None = the media object has no ``license`` at all; "{user}" is replaced by the creator's handle
MEDIA_LICENSE_TABLES: tuple[tuple[tuple[str | None, float], ...], ...] = (
    # record CC0_1_0
    (
        (CC0[0], 0.62),
        (CC0[1], 0.10),
        (CC0[2], 0.03),
        (BY4[0], 0.10),
        (BY3[0], 0.02),
        (None, 0.07),
        ("", 0.02),
        ("All rights reserved", 0.02),
        ("{user} (cc-by-sa)", 0.02),
    ),
    # record CC_BY_4_0
    (
        (BY4[0], 0.55),
        (BY4[1], 0.08),
        (BY4[2], 0.03),
        (BY4[3], 0.02),
        (BYSA4[0], 0.06),
        (BYNCND4[0], 0.05),
        (BY3[0], 0.03),
        (BYSA3[1], 0.01),
        (CC0[0], 0.05),
        (None, 0.06),
        ("", 0.02),
        ("All rights reserved", 0.02),
        ("{user} (cc-by-sa)", 0.01),
        ("Usage Conditions Apply", 0.01),
    ),
    # record CC_BY_NC_4_0
    (
        (BYNC4[0], 0.56),
        (BYNC4[1], 0.08),
        (BYNC4[2], 0.02),
        (BYNCND4[0], 0.06),
        (BYNCSA4[0], 0.04),
        (BYNC3[0], 0.02),
        (BY4[0], 0.08),
        (CC0[0], 0.03),
        (None, 0.05),
        ("", 0.02),
        ("All rights reserved", 0.02),
        ("{user} (cc-by-sa)", 0.01),
        ("Usage Conditions Apply", 0.01),
    ),
)

# ---------------------------------------------------------------------------------------------------
# people, institutions
# ---------------------------------------------------------------------------------------------------
GIVEN_NAMES = (
    "Anna",
    "Lars",
    "Maria",
    "José",
    "Karina",
    "Tomás",
    "Yuki",
    "Priya",
    "Olu",
    "Emma",
    "Liam",
    "Sofia",
    "Mateo",
    "Ingrid",
    "Ahmed",
    "Mei",
    "Chloé",
    "Jan",
    "Aroha",
    "Kofi",
    "Elena",
    "Pieter",
    "Nadia",
    "Hugo",
    "Saanvi",
    "Björn",
    "Lucía",
    "Noah",
    "Amara",
    "Kenji",
    "Freya",
    "Rafael",
    "Zanele",
    "Oscar",
)
FAMILY_NAMES = (
    "Nielsen",
    "García",
    "Smith",
    "Okafor",
    "Tanaka",
    "Müller",
    "Jansen",
    "Kowalski",
    "Rossi",
    "Dubois",
    "Silva",
    "Andersson",
    "Novak",
    "Patel",
    "Wang",
    "Nguyen",
    "O'Brien",
    "van der Berg",
    "Haddad",
    "Kim",
    "Lindqvist",
    "Moreau",
    "Costa",
    "Fischer",
    "Ivanova",
    "Mensah",
    "Walker",
    "Ngata",
    "Sato",
    "Hernández",
    "Berg",
    "Eriksen",
    "Papadopoulos",
    "Mbeki",
)
HANDLES = ("naturalist", "birder", "mothman", "bugfan", "leafpeeper", "wildeye", "fieldnotes", "macro")

INSTITUTION_WORDS = (
    ("Natural History Museum of", "museum"),
    ("Royal Botanic Garden of", "herbarium"),
    ("Biodiversity Information Facility of", "survey"),
    ("Society for Field Naturalists of", "citizen"),
    ("Institute of Ecology of", "survey"),
    ("University Herbarium of", "herbarium"),
    ("Wildlife Camera Network of", "cameratrap"),
    ("Entomological Collections of", "museum"),
)
PLACES = (
    "Nordhavn",
    "Valderrama",
    "Eastmoor",
    "Kirkwall",
    "Santa Clara",
    "Ostrava",
    "Lyngby",
    "Aurich",
    "Tamsin",
    "Wellsbury",
    "Port Ellis",
    "Marañón",
    "Kawakami",
    "Brindle",
    "Ashfield",
    "Lindau",
)
