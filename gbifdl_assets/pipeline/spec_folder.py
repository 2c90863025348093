"""The folder of training-set specs: which specs are valid, and how the partitions follow the folder.

Every spec's ``name`` is its training set (the Dagster partition key). A spec file that stops
validating keeps its partition (the last good version stays usable) and its problems are reported,
so a typo cannot silently delete a training set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gbifdl_assets.pipeline.errors import StageError
from gbifdl_assets.specs import SpecError, TrainingSetSpec, load_spec_folder


@dataclass(frozen=True)
class SpecFolder:
    """The valid specs of a folder by name (with their files), and the problems of the other files."""

    folder: Path
    specs: dict[str, TrainingSetSpec]
    files: dict[str, Path]
    problems: dict[Path, str]

    def get(self, name: str) -> TrainingSetSpec:
        if name in self.specs:
            return self.specs[name]
        hint = " Invalid spec files: " + " | ".join(self.problems.values()) if self.problems else ""
        # a missing spec does not appear by waiting: not transient
        raise StageError(f"No valid spec named '{name}' in {self.folder}; add or fix its YAML file.{hint}")


def read_spec_folder(folder: str | Path) -> SpecFolder:
    """Every spec of ``folder`` (:func:`gbifdl_assets.specs.load_spec_folder`), invalid files kept as problems."""
    errors: list[SpecError] = []
    files: dict[str, Path] = {}
    specs = load_spec_folder(folder, errors=errors, files=files)
    return SpecFolder(Path(folder), specs, files, {Path(e.path): str(e) for e in errors})


@dataclass(frozen=True)
class PartitionChanges:
    """What the spec folder asks of the ``training_set`` partitions since the previous look."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    #: training sets to (re)materialize, with the fingerprint that names the run
    to_run: dict[str, str]
    #: what to remember for the next look: {name: {"fingerprint": ..., "file": ...}}
    remembered: dict[str, dict[str, str]]


def partition_changes(
    specs: SpecFolder, previous: Mapping[str, Mapping[str, str]], existing: Iterable[str]
) -> PartitionChanges:
    """New specs add a partition and run; changed ones (their fingerprint moved) run again; deleted
    ones remove their partition. A spec whose file still exists but no longer validates keeps its
    partition and its remembered fingerprint, and does not run. ``previous`` entries without a
    ``file`` (fingerprints the instance knows, for a sensor with an empty cursor) are kept while any
    file of the folder is broken, since that file may be theirs."""
    existing = set(existing)
    broken_files = {str(p) for p in specs.problems}
    current = {
        name: {"fingerprint": spec.fingerprint(), "file": str(specs.files[name])}
        for name, spec in specs.specs.items()
    }
    for name, entry in previous.items():
        # an entry without its file (known from the instance, not the cursor) may be any broken file
        if name not in current and broken_files and entry.get("file", "") in broken_files | {""}:
            current[name] = dict(entry)
    added = sorted(name for name in current if name not in existing)
    removed = sorted(name for name in existing if name not in current)
    changed = sorted(
        name
        for name in current
        if name in existing and previous.get(name, {}).get("fingerprint") != current[name]["fingerprint"]
    )
    to_run = {name: current[name]["fingerprint"] for name in added + changed if name in specs.specs}
    return PartitionChanges(added, changed, removed, to_run, current)


#: The stages from the species list to the balanced manifest, in order (one run covers them: same
#: partition). Asset names; the Dagster layer maps them to its assets.
STAGES_TO_MANIFEST = (
    "species_list",
    "gbif_download",
    "occurrence_snapshot",
    "annotated_occurrences",
    "balanced_manifest",
)
#: Source types whose occurrences come from a GBIF download (requested, or named by key or DOI).
DOWNLOAD_SOURCES = frozenset({"download", "download_key", "doi"})


def first_run_stages(spec: TrainingSetSpec) -> tuple[str, ...]:
    """The stages a new or changed spec's run materializes.

    A download-sourced set stops at ``gbif_download``: the download may take hours at GBIF, and the
    download sensor launches the snapshot when it ends, so no run sits waiting for it. Every other set
    (search, or ``auto``, which decides at run time) runs to the balanced manifest at once. The image
    store and the export follow through their automation conditions either way.
    """
    if spec.source.type in DOWNLOAD_SOURCES:
        return STAGES_TO_MANIFEST[:2]
    return STAGES_TO_MANIFEST
