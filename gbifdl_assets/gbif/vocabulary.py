"""GBIF enumerations that several parts of the package validate against (one list each)."""

#: GBIF's BasisOfRecord enumeration, in GBIF's order (the sandbox stores records by index into it).
BASIS_OF_RECORD: tuple[str, ...] = (
    "PRESERVED_SPECIMEN",
    "FOSSIL_SPECIMEN",
    "LIVING_SPECIMEN",
    "OBSERVATION",
    "HUMAN_OBSERVATION",
    "MACHINE_OBSERVATION",
    "MATERIAL_SAMPLE",
    "LITERATURE",
    "MATERIAL_CITATION",
    "OCCURRENCE",
)

#: Values GBIF no longer issues but that old annotation rules still carry.
DEPRECATED_BASIS_OF_RECORD: tuple[str, ...] = ("UNKNOWN",)
