"""Rule files: YAML and GeoJSON, in the repository or anywhere, in and out of the store.

YAML (top-level defaults, then a list; a bare list works too)::

    ruleset: lions            # default ruleset of the rules below (else the file's stem)
    project: big-cats         # optional
    rules:
      - taxon: Panthera leo   # or taxonKey: 5219404 (names need a GBIF client)
        area: GL              # or geometry: POLYGON ((...)) in lon/lat
        annotation: SUSPICIOUS
        basisOfRecord: [PRESERVED_SPECIMEN]
        yearRange: "1900,1950"
        description: Lions are not found in Greenland
        id: lions-greenland   # optional stable id (else a hash of the rule's content)
      - text: Panthera leo in KE are native   # a sentence (rule_text) works too

JSON as GBIF's annotation API returns it (``GET .../annotation/rule``: a list of rule objects, or a page
with ``results``) is read as it is: WKT ``geometry``, GBIF's field names, deleted rules left out.

GeoJSON: a ``FeatureCollection`` of Polygon/MultiPolygon features whose ``properties`` use GBIF's rule
field names (``annotation``, ``taxonKey``, ``datasetKey``, ``basisOfRecord``, ``basisOfRecordNegated``,
``yearRange``, …) plus ``taxon``, ``ruleset``, ``project``, ``description``; the feature ``id`` (or an
``id`` property) is the rule's id. ``ruleset``/``project`` members of the collection are defaults.

A file's rules are identified by ``file:<origin>#<id>``, where origin is the file's path relative to the
working directory: the same id whether the rules go straight into a rules table
(:func:`rules_table_from_file`) or through the store (:func:`import_rule_file`, which mirrors the file:
re-importing updates changed rules, adds new ones and deletes those no longer in the file). Exports
(:func:`export_rules`, :func:`export_store`) write both formats and read back to the same rules.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import shapely
import yaml
from shapely.geometry import mapping, shape

from gbifdl_assets.annotations.compiled import RULES_TABLE_SCHEMA, validate_rules_table
from gbifdl_assets.annotations.model import Rule, RuleError, parse_rule
from gbifdl_assets.annotations.rule_text import NameMatcher, parse_rule_text, resolve_taxon

if TYPE_CHECKING:
    from gbifdl_assets.annotations.store import AnnotationStore

__all__ = [
    "FILE_SOURCE",
    "FileRule",
    "RuleFile",
    "RuleFileError",
    "export_rules",
    "export_store",
    "import_rule_file",
    "load_rule_file",
    "rules_table_from_file",
    "content_key",
    "file_origin",
]

FILE_SOURCE = "file"
YAML_SUFFIXES = (".yaml", ".yml")
GEOJSON_SUFFIXES = (".geojson", ".json")
#: keys a file rule may carry besides GBIF's rule fields
_EXTRA_KEYS = {"id", "taxon", "area", "text", "ruleset", "project", "description"}
#: GBIF fields that are local ids elsewhere: meaningless in another store, so ignored on import
_IGNORED_KEYS = {"rulesetId", "projectId", "deleted", "deletedBy"}


class RuleFileError(RuleError):
    """A rule file that cannot be read; the message names the file and every bad rule."""


@dataclass
class FileRule:
    key: str  # the rule's id within its file
    rule: Rule
    ruleset: str
    project: str | None = None
    description: str | None = None


@dataclass
class RuleFile:
    path: Path
    origin: str
    rules: list[FileRule] = field(default_factory=list)

    def compiled_id(self, item: FileRule) -> str:
        return f"{FILE_SOURCE}:{self.origin}#{item.key}"


def file_origin(path: str | Path) -> str:
    """The file's path relative to the working directory (absolute if outside it), POSIX style."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix()


# ---------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------
def load_rule_file(
    path: str | Path,
    *,
    client: NameMatcher | None = None,
    ruleset: str | None = None,
    origin: str | None = None,
) -> RuleFile:
    """Read and validate every rule of a YAML or GeoJSON file (all problems reported at once)."""
    path = Path(path)
    if not path.is_file():
        raise RuleFileError(f"{path}: no such rule file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(f"{path}: cannot be read ({exc})") from None
    if suffix in YAML_SUFFIXES:
        defaults, entries = _yaml_entries(path, text)
    elif suffix in GEOJSON_SUFFIXES:
        defaults, entries = _geojson_entries(path, text)
    else:
        raise RuleFileError(f"{path}: unknown rule file type {suffix!r}; use .yaml/.yml or .geojson")
    default_ruleset = ruleset or defaults.get("ruleset") or path.stem
    default_project = defaults.get("project")
    out = RuleFile(path=path, origin=origin or file_origin(path))
    problems: list[str] = []
    seen: dict[str, str] = {}
    for where, entry in entries:
        try:
            item = _file_rule(entry, where, client, str(default_ruleset), default_project)
        except RuleError as exc:
            problems.append(str(exc))
            continue
        if item.key in seen:
            problems.append(
                f"{where}: same id {item.key!r} as {seen[item.key]} (ids must be unique in a file)"
            )
            continue
        seen[item.key] = where
        out.rules.append(item)
    if problems:
        head = f"{path}: {len(problems)} invalid rule{'s' if len(problems) != 1 else ''}"
        raise RuleFileError(head + ":\n  " + "\n  ".join(problems))
    return out


def _yaml_entries(path: Path, text: str) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{path}: not valid YAML ({exc})") from None
    if doc is None:
        return {}, []
    if isinstance(doc, list):
        defaults: dict[str, Any] = {}
        rules = doc
    elif isinstance(doc, Mapping):
        unknown = sorted(set(doc) - {"ruleset", "project", "description", "rules"})
        if unknown:
            raise RuleFileError(
                f"{path}: unknown top-level key(s) {', '.join(unknown)}; use ruleset, project, description, rules"
            )
        defaults = {k: doc.get(k) for k in ("ruleset", "project")}
        rules = doc.get("rules") or []
        if not isinstance(rules, list):
            raise RuleFileError(f"{path}: 'rules' must be a list of rules")
    else:
        raise RuleFileError(f"{path}: expected a list of rules or a mapping with 'rules'")
    return defaults, [(f"rule {i + 1}", entry) for i, entry in enumerate(rules)]


def _geojson_entries(path: Path, text: str) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleFileError(f"{path}: not valid JSON ({exc})") from None
    gbif_rules = _gbif_api_rules(doc)
    if gbif_rules is not None:
        return {}, gbif_rules
    if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection":
        raise RuleFileError(
            f"{path}: expected a GeoJSON FeatureCollection of rule polygons, or what GBIF's annotation API "
            "returns for GET /occurrence/experimental/annotation/rule (a list of rules, or a page with 'results')"
        )
    features = doc.get("features")
    if not isinstance(features, list):
        raise RuleFileError(f"{path}: the FeatureCollection has no 'features' list")
    entries: list[tuple[str, Any]] = []
    problems = []
    for i, feature in enumerate(features):
        where = f"feature {i + 1}"
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            problems.append(f"{where}: not a GeoJSON Feature")
            continue
        props = dict(feature.get("properties") or {})
        if feature.get("id") is not None and props.get("id") is None:
            props["id"] = feature["id"]
        geom = feature.get("geometry")
        if geom is None:
            problems.append(f"{where}: has no geometry (give a Polygon or MultiPolygon)")
            continue
        try:
            props["geometry"] = shapely.to_wkt(shape(geom), rounding_precision=-1)
        except Exception as exc:  # shapely raises several types for malformed GeoJSON geometry
            problems.append(f"{where}: geometry is not valid GeoJSON ({exc})")
            continue
        entries.append((where, props))
    if problems:
        raise RuleFileError(f"{path}:\n  " + "\n  ".join(problems))
    return {k: doc.get(k) for k in ("ruleset", "project")}, entries


def _gbif_api_rules(doc: Any) -> list[tuple[str, Any]] | None:
    """The rules of a file saved from GBIF's annotation API (``GET .../annotation/rule``): a JSON list
    of rule objects or one page ``{"offset", "limit", "endOfRecords", "results": [...]}``; None when the
    document is neither. Deleted rules (``deleted`` set) are left out, as GBIF's lists leave them out;
    GBIF's id becomes the rule's id in the file, so re-importing a newer copy updates it in place."""
    if isinstance(doc, Mapping) and isinstance(doc.get("results"), list) and "type" not in doc:
        items = doc["results"]
    elif isinstance(doc, list):
        items = doc
    else:
        return None
    entries: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        where = f"rule {i + 1}"
        if isinstance(item, Mapping):
            if item.get("deleted") is not None:
                continue
            if item.get("id") is not None:
                item = {**item, "id": f"gbif-{item['id']}"}
        entries.append((where, item))
    return entries


def _file_rule(
    entry: Any, where: str, client: NameMatcher | None, default_ruleset: str, default_project: str | None
) -> FileRule:
    if not isinstance(entry, Mapping):
        raise RuleFileError(f"{where}: expected a mapping of rule fields, got {type(entry).__name__}")
    data = dict(entry)
    if data.get("id") is not None:
        where = f"{where} (id {data['id']})"
    ruleset = str(data.pop("ruleset", None) or default_ruleset)
    project = data.pop("project", None) or default_project
    description = data.pop("description", None)
    key = data.pop("id", None)
    for ignored in _IGNORED_KEYS:
        data.pop(ignored, None)
    text = data.pop("text", None)
    if text is not None:
        if set(data) - {"supportedBy", "contestedBy", "createdBy", "created"}:
            extra = ", ".join(sorted(set(data)))
            raise RuleFileError(f"{where}: give either 'text' or rule fields, not both ({extra})")
        try:
            parsed = parse_rule_text(str(text), client=client)
        except RuleError as exc:
            raise RuleFileError(f"{where}: {exc}") from None
        data = {**parsed.rule.model_dump(exclude={"id"}), **data}
        description = description or parsed.text
    taxon = data.pop("taxon", None)
    if taxon is not None:
        if data.get("taxonKey") is not None:
            raise RuleFileError(f"{where}: give either 'taxon' or 'taxonKey', not both")
        try:
            data["taxonKey"], _ = resolve_taxon(str(taxon), client, where)
        except RuleError as exc:
            raise RuleFileError(str(exc)) from None
    area = data.pop("area", None)
    if area is not None:
        if data.get("geometry") is not None:
            raise RuleFileError(f"{where}: give either 'area' or 'geometry', not both")
        from gbifdl_assets.annotations.areas import resolve_area

        try:
            resolved = resolve_area(str(area))
        except ValueError as exc:
            raise RuleFileError(f"{where}: area: {exc}") from None
        data["geometry"] = (
            str(area).strip()
            if resolved.kind == "wkt"
            else shapely.to_wkt(resolved.geometry, rounding_precision=-1)
        )
    rule = parse_rule(data, name=where)
    return FileRule(
        key=str(key) if key is not None else content_key(rule),
        rule=rule,
        ruleset=ruleset,
        project=str(project) if project is not None else None,
        description=str(description) if description is not None else None,
    )


def content_key(rule: Rule) -> str:
    """A stable id for a rule without one: a hash of what it says (not of who voted or when)."""
    geom = shapely.normalize(shapely.from_wkt(rule.geometry))
    payload = {
        "taxonKey": rule.taxonKey,
        "geometry": shapely.to_wkt(geom, rounding_precision=-1),
        "annotation": rule.annotation,
        "datasetKey": rule.datasetKey,
        "basisOfRecord": sorted(rule.basisOfRecord or []),
        "basisOfRecordNegated": rule.basisOfRecordNegated,
        "yearRange": rule.yearRange,
    }
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode(), usedforsecurity=False)
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------
# into a rules table or the store
# ---------------------------------------------------------------------------------------------------
def rules_table_from_file(
    path: str | Path,
    *,
    client: NameMatcher | None = None,
    ruleset: str | None = None,
    origin: str | None = None,
) -> pa.Table:
    """A file's rules as a validated rules table (``compiled.RULES_TABLE_SCHEMA``), source ``file``."""
    rf = load_rule_file(path, client=client, ruleset=ruleset, origin=origin)
    rows = []
    for item in rf.rules:
        r = item.rule
        rows.append(
            {
                "id": rf.compiled_id(item),
                "source": FILE_SOURCE,
                "ruleset": item.ruleset,
                "project": item.project,
                "taxonKey": r.taxonKey,
                "geometry": r.geometry,
                "label": r.annotation,
                "datasetKey": r.datasetKey,
                "basisOfRecord": r.basisOfRecord,
                "basisOfRecordNegated": r.basisOfRecordNegated,
                "yearRange": r.yearRange,
                "supportCount": len(r.supportedBy),
                "contestCount": len(r.contestedBy),
                "createdBy": r.createdBy,
                "description": item.description,
            }
        )
    columns = {f.name: pa.array([row[f.name] for row in rows], type=f.type) for f in RULES_TABLE_SCHEMA}
    return validate_rules_table(pa.table(columns, schema=RULES_TABLE_SCHEMA))


def import_rule_file(
    store: AnnotationStore,
    path: str | Path,
    *,
    user: str,
    client: NameMatcher | None = None,
    ruleset: str | None = None,
    origin: str | None = None,
    sync: bool = True,
) -> dict[str, Any]:
    """Mirror a rule file into the store (idempotent); returns a summary of what changed.

    Rulesets and projects named in the file are created when missing (``user`` becomes a member) and
    ``user`` must be able to add rules to existing ones. With ``sync``, rules of an earlier import of
    this file that are no longer in it are deleted.
    """
    from gbifdl_assets.annotations.store import MirroredRule

    rf = load_rule_file(path, client=client, ruleset=ruleset, origin=origin)
    projects: dict[str, int] = {}
    rulesets: dict[tuple[str, str | None], Any] = {}
    for item in rf.rules:
        if item.project and item.project not in projects:
            projects[item.project] = store.ensure_project(item.project, user=user).id
        rs_key = (item.ruleset, item.project)
        if rs_key not in rulesets:
            rs = store.ensure_ruleset(
                item.ruleset, user=user, project_id=projects.get(item.project) if item.project else None
            )
            store.rulesets.require_rule_writer(rs.id, user=user)
            rulesets[rs_key] = rs
    items = []
    for item in rf.rules:
        rs = rulesets[(item.ruleset, item.project)]
        items.append(
            MirroredRule(
                rule=item.rule,
                external_id=f"{rf.origin}#{item.key}",
                ruleset_id=rs.id,
                project_id=rs.projectId,
                description=item.description,
                created_by=item.rule.createdBy or user,
                votes=(item.rule.supportedBy, item.rule.contestedBy),
            )
        )
    counts = store.mirror.upsert_rules(items, source=FILE_SOURCE, origin=rf.origin)
    deleted = 0
    if sync:
        keep = [i.external_id for i in items]
        deleted = store.mirror.retire("rule", source=FILE_SOURCE, origin=rf.origin, keep=keep, who=user)
    return {
        "file": str(rf.path),
        "origin": rf.origin,
        "rules": len(items),
        "rulesets": sorted({k[0] for k in rulesets}),
        **counts,
        "deleted": deleted,
    }


# ---------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------
def export_store(
    store: AnnotationStore, path: str | Path, *, rulesets: Sequence[str | int] | None = None
) -> int:
    """Write the store's non-deleted rules (all, or of ``rulesets``) to ``path``; returns the count."""
    wanted = None
    if rulesets is not None:  # every ruleset of that name (local and mirrored), or by id
        wanted = set()
        for item in rulesets:
            text = str(item).strip()
            found = (
                [store.get_ruleset(int(text))]
                if text.isdigit()
                else store.list_rulesets(name=text, limit=10_000)
            )
            if not found:
                store.find_ruleset(text)  # raises NotFound listing the names there are
            wanted |= {r.id for r in found}
    rules = [r for r in store.iter_rules() if wanted is None or r.rulesetId in wanted]
    infos = store.rule_infos([r.id for r in rules])
    records = []
    for rule in rules:
        info = infos[rule.id]
        records.append(
            _record(
                rule,
                key=info.compiled_id,
                ruleset=info.ruleset,
                project=info.project,
                description=info.description,
            )
        )
    records.reverse()  # oldest first reads naturally in a file
    return export_rules(records, path)


def export_rules(rules: Iterable[Rule | Mapping[str, Any]], path: str | Path) -> int:
    """Write rules (models, or records with GBIF field names) as YAML or GeoJSON by the suffix."""
    path = Path(path)
    records = [_record(r) if isinstance(r, Rule) else dict(r) for r in rules]
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        body = yaml.safe_dump({"rules": records}, sort_keys=False, allow_unicode=True, width=1000)
    elif suffix in GEOJSON_SUFFIXES:
        features = []
        for rec in records:
            props = {k: v for k, v in rec.items() if k not in ("geometry", "id")}
            feature: dict[str, Any] = {"type": "Feature"}
            if rec.get("id") is not None:
                feature["id"] = rec["id"]
            feature["geometry"] = mapping(shapely.from_wkt(rec["geometry"]))
            feature["properties"] = props
            features.append(feature)
        body = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=1)
    else:
        raise RuleFileError(f"{path}: unknown export type {suffix!r}; use .yaml/.yml or .geojson")
    _atomic_write(path, body)
    return len(records)


def _record(
    rule: Rule,
    *,
    key: str | None = None,
    ruleset: str | None = None,
    project: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A file record: GBIF's field names, nulls and defaults left out for readability."""
    rec: dict[str, Any] = {"id": key if key is not None else rule.id}
    gbif = rule.model_dump(mode="json", exclude={"id", "rulesetId", "projectId", "deleted", "deletedBy"})
    for name, value in gbif.items():
        if value is None or value == [] or (name == "basisOfRecordNegated" and value is False):
            continue
        rec[name] = value
    if ruleset is not None:
        rec["ruleset"] = ruleset
    if project is not None:
        rec["project"] = project
    if description is not None:
        rec["description"] = description
    return {k: v for k, v in rec.items() if v is not None}


def _atomic_write(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            if not body.endswith("\n"):
                fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
