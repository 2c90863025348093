"""annotation_rulesets: every rule source compiled into one versioned table.

The sources: the annotation store (rules written with ``gbifdl rules add``, the REST service, or
pulled from GBIF's annotation API), rule files in a folder, and CoordinateCleaner-style seed rules.
The version is a hash of the compiled content, so compiling unchanged sources again changes nothing
downstream. :meth:`RuleSources.fingerprint` is cheap enough for a sensor to notice any change.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA, validate_rules_table
from gbifdl_assets.annotations.files import rules_table_from_file
from gbifdl_assets.annotations.gbif_api import pull_from_gbif
from gbifdl_assets.annotations.seeds import coordinate_cleaner_rules
from gbifdl_assets.annotations.store import AnnotationStore
from gbifdl_assets.pipeline.errors import StageError
from gbifdl_assets.storage import Storage, layout
from gbifdl_assets.vocabulary import ANNOTATION_LABELS

_log = logging.getLogger(__name__)

RULE_FILE_SUFFIXES = (".yaml", ".yml", ".geojson", ".json")
#: The ruleset name the seed rules carry (a spec selects them with ``annotations.rulesets``).
SEED_RULESET = "seeds"


@dataclass(frozen=True)
class RuleSources:
    """Where rules come from. ``store_url`` is a SQLAlchemy URL (it may carry a password)."""

    store_url: str
    rules_dir: str | None = None  # a folder of YAML/GeoJSON rule files
    gbif_annotation_url: str | None = None  # GBIF's annotation API to mirror into the store
    seeds: bool = True  # include CoordinateCleaner-style seed rules

    def store(self) -> AnnotationStore:
        return AnnotationStore(self.store_url)

    def rule_files(self) -> list[Path]:
        if not self.rules_dir:
            return []
        folder = Path(self.rules_dir)
        if not folder.is_dir():
            raise StageError(
                f"rules folder {folder} does not exist; set GBIFDL_RULES_DIR to a folder of rule files"
            )
        return sorted(p for p in folder.rglob("*") if p.suffix in RULE_FILE_SUFFIXES and p.is_file())

    def fingerprint(self) -> str:
        """Changes when any local source changes (store counter, rule files)."""
        digest = hashlib.sha256(self.store().version().encode())
        for path in self.rule_files():
            digest.update(str(path).encode())
            digest.update(path.read_bytes())
        digest.update(b"seeds" if self.seeds else b"")
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CompiledRules:
    """A compiled rules table: its version, where it is, and what it holds."""

    version: str
    key: str
    uri: str
    rules: int
    store_version: str
    rule_files: int
    by_label: dict[str, int]  # every label of the vocabulary, in its order
    by_source: dict[str, int]
    gbif_pull: str | None  # what mirroring GBIF's annotations did; None when not configured


def compile_rulesets(sources: RuleSources, storage: Storage, *, log: logging.Logger = _log) -> CompiledRules:
    """Compile every source into one table, store it under its version and make it the newest."""
    store = sources.store()
    pulled = None
    if sources.gbif_annotation_url:
        pulled = pull_from_gbif(store, sources.gbif_annotation_url)
        log.info(f"mirrored GBIF annotations from {sources.gbif_annotation_url}: {pulled}")
    files = sources.rule_files()
    tables = [store.compile(), *(rules_table_from_file(path) for path in files)]
    if sources.seeds:
        seeds = coordinate_cleaner_rules()
        seeds = seeds.set_column(
            seeds.schema.get_field_index("ruleset"),
            "ruleset",
            pa.array([SEED_RULESET] * seeds.num_rows, pa.string()),
        )
        tables.append(seeds)
    table = validate_rules_table(
        pa.concat_tables([t.cast(RULES_TABLE_SCHEMA) for t in tables]), max_vertices=None
    )
    version = table_version(table)
    folder = layout.rulesets()
    key = folder.commit_key(version)
    if not storage.exists(key):  # same content, same version: already there
        storage.write_parquet(key, table)
    layout.publish(storage, folder, version)
    by_label = count_by(table, "label")
    log.info(f"compiled {table.num_rows} rules (version {version}): {by_label}")
    return CompiledRules(
        version=version,
        key=key,
        uri=storage.uri_of(key),
        rules=table.num_rows,
        store_version=store.version(),
        rule_files=len(files),
        by_label={label: by_label.get(label, 0) for label in ANNOTATION_LABELS},
        by_source=count_by(table, "source"),
        gbif_pull=str(pulled) if pulled else None,
    )


def table_version(table: pa.Table) -> str:
    """Content hash of the compiled rules: equal content, equal version (a no-op refresh stays fresh)."""
    digest = hashlib.sha256()
    for batch in table.sort_by("id").to_batches():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:16]


def count_by(table: pa.Table, column: str) -> dict[str, int]:
    """Rules per value of ``column``."""
    if not table.num_rows:
        return {}
    counts = table.group_by(column).aggregate([("id", "count")])
    return dict(zip(counts.column(column).to_pylist(), counts.column("id_count").to_pylist(), strict=True))


def newest_rules(storage: Storage) -> tuple[str, pa.Table]:
    """The newest compiled rules (the storage layout's commit rule): (version, table)."""
    folder = layout.rulesets()
    version = layout.newest_complete(storage, folder)
    if version is None:
        raise StageError("annotation_rulesets has not been materialized yet; materialize it first")
    return version, storage.read_parquet(folder.commit_key(version))
