"""Where the pipeline keeps everything in the data storage, and when an output counts as written.

Every storage key of the stages is built here, so the layout can be read in one place::

    species_lists/<ts>/species_list.parquet                       the spec's taxa, resolved (rewritten)
    downloads/<ts>/request.json                                   the GBIF download <ts> waits for
    snapshots/<ts>/<snapshot_id>/media.parquet                    one row per image (media_schema)
    snapshots/<ts>/<snapshot_id>/snapshot.json                    source and counts; the commit file
    snapshots/<ts>/latest                                         pointer: "<snapshot_id>\\n"
    annotations/rulesets/<version>/rules.parquet                  compiled rules; the commit file
    annotations/rulesets/latest                                   pointer: "<version>"
    annotations/image_flags/<version>/flags.parquet               compiled image flags; the commit file
    annotations/image_flags/latest                                pointer: "<version>"
    annotated/<ts>/<snapshot_id>-<version>/matches.parquet        which rule matched what
    annotated/<ts>/<snapshot_id>-<version>/annotated.parquet      labelled rows; the commit file
    annotated/<ts>/latest                                         pointer: the output's folder
    manifests/<ts>/<snapshot_id>-<version>/manifest.parquet       one row per image; the commit file
    manifests/<ts>/<snapshot_id>-<version>.f<flags>/manifest.parquet  the same, with image flags applied
    manifests/<ts>/latest                                         pointer: the manifest's key
    ledgers/<ts>.shard<shard>/...                                 image ledgers (inside: media/ledger.py)
    images/...                                                    content-addressed images (media/store.py)
    attribution/<ts>/shard<shard>.parquet                         credits of one shard's images
    exports/<ts>/...                                              what a training loop reads (export/)
    registry/datasets.parquet, registry/organizations.parquet     GBIF registry cache (gbif/registry.py)

``<ts>`` is the training set (the spec's name, the Dagster partition key).

**The commit rule** (one for every versioned output: snapshots, compiled rules, annotated tables and
manifests). An output is written under its own id, files first and its *commit file* last: until
the commit file exists the output does not exist for any reader. The ``latest`` pointer is written
after the commit. The newest complete output is the complete one with the latest creation stamp
(the UTC time an id starts with: snapshot ids, and the ids derived from them); among complete outputs
the stamp cannot order (compiled rules are named by a content hash), the pointer decides. So a crash
between a commit and its pointer never hides a snapshot, a pointer to an output whose commit file is
gone is not followed, and every output written by earlier versions (whose pointers hold an id, a
folder or a key: all three are read) stays readable.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gbifdl_assets.storage.base import Storage

# --- plain keys (one file per training set, rewritten in place) ------------------------------------
SPECIES_LISTS_PREFIX = "species_lists"
DOWNLOADS_PREFIX = "downloads"
DOWNLOAD_REQUEST_FILE = "request.json"
ATTRIBUTION_PREFIX = "attribution"
EXPORTS_PREFIX = "exports"
#: GBIF registry objects cached across snapshots and runs (one row per key, with its fetch time).
REGISTRY_DATASETS_KEY = "registry/datasets.parquet"
REGISTRY_ORGANIZATIONS_KEY = "registry/organizations.parquet"

# --- versioned outputs ---------------------------------------------------------------------------
SNAPSHOTS_PREFIX = "snapshots"
SNAPSHOT_MEDIA_FILE = "media.parquet"
SNAPSHOT_META_FILE = "snapshot.json"
RULESETS_PREFIX = "annotations/rulesets"
RULES_FILE = "rules.parquet"
IMAGE_FLAGS_PREFIX = "annotations/image_flags"
IMAGE_FLAGS_FILE = "flags.parquet"
#: between an annotated table's id and the version of the image flags a manifest applied
FLAGS_SEPARATOR = ".f"
ANNOTATED_PREFIX = "annotated"
MATCHES_FILE = "matches.parquet"
ANNOTATED_FILE = "annotated.parquet"
MANIFESTS_PREFIX = "manifests"
MANIFEST_FILE = "manifest.parquet"
LATEST_POINTER = "latest"

_TRAINING_SET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SNAPSHOT_ID = re.compile(r"^\d{8}T\d{9}Z-[0-9a-f]{12}$")
#: The creation time an id starts with (``20260105T031500123Z``): what orders outputs by age.
_STAMP = re.compile(r"^\d{8}T\d{9}Z")


def check_training_set(name: str) -> str:
    """``name`` when it can name a folder of its own (no ``/``, no ``..``); else a ValueError saying why."""
    if not isinstance(name, str) or not _TRAINING_SET.match(name):
        raise ValueError(
            f"training set name {name!r} cannot name a snapshot folder: use letters, digits, '.', '_' "
            "and '-' (starting with a letter or digit, at most 128 characters)"
        )
    return name


def species_list_key(training_set: str) -> str:
    return f"{SPECIES_LISTS_PREFIX}/{training_set}/species_list.parquet"


def download_request_key(training_set: str) -> str:
    return f"{DOWNLOADS_PREFIX}/{training_set}/{DOWNLOAD_REQUEST_FILE}"


def is_download_request_key(key: str) -> bool:
    """A key found under ``downloads/`` that holds a download request."""
    return key.startswith(f"{DOWNLOADS_PREFIX}/") and key.endswith(f"/{DOWNLOAD_REQUEST_FILE}")


def ledger_name(training_set: str, shard: str) -> str:
    """The image ledger of one shard of a training set (stored under ``ledgers/<name>/``)."""
    return f"{training_set}.shard{shard}"


def training_set_ledgers(names: Iterable[str], training_set: str) -> list[str]:
    """The ledgers of ``training_set`` among ``names``: its shards' (:func:`ledger_name`) and the one
    ledger ``NAME`` that ``gbifdl images fetch`` writes, in order."""
    pattern = re.compile(re.escape(training_set) + r"(?:\.shard\d+)?")
    return sorted(n for n in names if pattern.fullmatch(n))


def attribution_key(training_set: str, shard: str) -> str:
    return f"{ATTRIBUTION_PREFIX}/{training_set}/shard{shard}.parquet"


def export_prefix(training_set: str) -> str:
    return f"{EXPORTS_PREFIX}/{training_set}"


def new_snapshot_id(sha256_hex: str, now: dt.datetime | None = None) -> str:
    """``<UTC time, ms>Z-<first 12 hex of the content hash>``: ids sort by creation and name their content."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{sha256_hex[:12]}"


def annotated_id(snapshot_id: str, rules_version: str) -> str:
    """The id of the annotated table (and of the manifest built from it): its two inputs."""
    return f"{snapshot_id}-{rules_version}"


def split_annotated_id(output_id: str) -> tuple[str, str]:
    """(snapshot id, rules version) of an annotated table's (or a manifest's) id."""
    snapshot_id, _, rules_version = split_manifest_id(output_id)[0].rpartition("-")
    return snapshot_id, rules_version


def manifest_id(annotated: str, flags_version: str | None) -> str:
    """A manifest's id: the annotated table's, plus ``.f<flags version>`` when image flags took images
    out (a flag changes the manifest, not the annotated table)."""
    return f"{annotated}{FLAGS_SEPARATOR}{flags_version}" if flags_version else annotated


def split_manifest_id(output_id: str) -> tuple[str, str | None]:
    """(annotated table id, image flags version or None) of a manifest's id."""
    annotated, sep, flags = output_id.partition(FLAGS_SEPARATOR)
    return annotated, (flags if sep else None)


# --- the commit rule -----------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputFolder:
    """A folder of immutable outputs of one kind, each under ``<prefix>/<id>/``, with its pointer.

    ``pointer`` says what the ``latest`` file holds, as each stage has always written it: the bare
    ``id``, the id and a newline (``id_line``), the output's folder (``folder``) or its commit file's
    key (``commit_key``). Readers accept all of them.
    """

    prefix: str
    commit_file: str
    pointer: str = "id"
    id_pattern: re.Pattern[str] | None = None

    def folder(self, output_id: str) -> str:
        return f"{self.prefix}/{output_id}"

    def key(self, output_id: str, file: str) -> str:
        return f"{self.folder(output_id)}/{file}"

    def commit_key(self, output_id: str) -> str:
        return self.key(output_id, self.commit_file)

    @property
    def pointer_key(self) -> str:
        return f"{self.prefix}/{LATEST_POINTER}"

    def pointer_text(self, output_id: str) -> str:
        return {
            "id": output_id,
            "id_line": f"{output_id}\n",
            "folder": self.folder(output_id),
            "commit_key": self.commit_key(output_id),
        }[self.pointer]

    def id_from_pointer(self, text: str) -> str:
        value = text.strip()
        if value.startswith(self.prefix + "/"):
            return value[len(self.prefix) + 1 :].split("/", 1)[0]
        return value


def snapshots(training_set: str) -> OutputFolder:
    return OutputFolder(
        f"{SNAPSHOTS_PREFIX}/{check_training_set(training_set)}",
        SNAPSHOT_META_FILE,
        pointer="id_line",
        id_pattern=SNAPSHOT_ID,
    )


def snapshot_training_sets(storage: Storage) -> list[str]:
    """The training sets that have a folder under ``snapshots/`` (sorted; committed or not)."""
    base = SNAPSHOTS_PREFIX + "/"
    names = set()
    for key in storage.list(base):
        name = key[len(base) :].split("/", 1)[0]
        if _TRAINING_SET.match(name):
            names.add(name)
    return sorted(names)


def snapshot_prefix(training_set: str, snapshot_id: str) -> str:
    """``snapshots/<training_set>/<snapshot_id>``: the folder of one snapshot."""
    return snapshots(training_set).folder(snapshot_id)


def rulesets() -> OutputFolder:
    return OutputFolder(RULESETS_PREFIX, RULES_FILE, pointer="id")


def image_flags() -> OutputFolder:
    return OutputFolder(IMAGE_FLAGS_PREFIX, IMAGE_FLAGS_FILE, pointer="id")


def annotated(training_set: str) -> OutputFolder:
    return OutputFolder(f"{ANNOTATED_PREFIX}/{training_set}", ANNOTATED_FILE, pointer="folder")


def manifests(training_set: str) -> OutputFolder:
    return OutputFolder(f"{MANIFESTS_PREFIX}/{training_set}", MANIFEST_FILE, pointer="commit_key")


def manifest_prefix(training_set: str) -> str:
    """``manifests/<training_set>``: the folder of a training set's manifests."""
    return manifests(training_set).prefix


def complete_outputs(storage: Storage, folder: OutputFolder) -> list[str]:
    """Ids of the outputs whose commit file exists, sorted."""
    base = folder.prefix + "/"
    ids = []
    for key in storage.list(base):
        parts = key[len(base) :].split("/")
        committed = len(parts) == 2 and parts[1] == folder.commit_file
        if committed and (folder.id_pattern is None or folder.id_pattern.match(parts[0])):
            ids.append(parts[0])
    return sorted(ids)


def newest_complete(storage: Storage, folder: OutputFolder) -> str | None:
    """The id of the newest complete output (see the commit rule above), or None when there is none."""
    ids = complete_outputs(storage, folder)
    if not ids:
        return None

    def stamp(output_id: str) -> str:
        found = _STAMP.match(output_id)
        return found.group(0) if found else ""

    newest = max(stamp(i) for i in ids)
    candidates = [i for i in ids if stamp(i) == newest]
    if len(candidates) > 1 and storage.exists(folder.pointer_key):
        pointed = folder.id_from_pointer(storage.read_bytes(folder.pointer_key).decode())
        if pointed in candidates:
            return pointed
    return candidates[-1]


def publish(storage: Storage, folder: OutputFolder, output_id: str) -> None:
    """Point ``latest`` at a committed output (after its commit file: the pointer is a convenience)."""
    storage.write_bytes(folder.pointer_key, folder.pointer_text(output_id).encode())
