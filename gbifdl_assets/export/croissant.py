"""``croissant.json``: the export described in Croissant 1.1 with the Responsible-AI (RAI) fields.

Croissant (MLCommons) is JSON-LD over schema.org that ML tools read to find, load and judge a
dataset (``mlcroissant.Dataset(jsonld="croissant.json").records("images")``). What this file holds:

* **distribution**: every file of the export but the images, each a ``cr:FileObject`` with its
  sha256 and size (the manifest, classes.json, credits, citation, data card, Hugging Face metadata,
  every WebDataset shard), and ``cr:FileSet``\\ s for the ImageFolder images and the WebDataset
  shards. Image checksums are the ``sha256`` column of the manifest (one FileObject per image would
  make the file as large as the manifest).
* **recordSet** ``images``: one record per exported image, read from ``manifest.parquet`` and joined
  (on the file path) with the ImageFolder FileSet for the image itself: label (the classes.json
  index), label name, taxon key, split, gbifID, licence, credit, creator, rights holder, datasetKey,
  content key and sha256. ``classes``: the rows of classes.json.
* ``citeAs`` (GBIF's citation with the download DOIs, or the search query), ``license`` (the deed of
  every licence in the mix), version, dates, and the RAI fields filled from what the export knows
  (collection, missing data, preprocessing, labels, biases measured on the data, limitations,
  personal data, use cases, maintenance).

This module only writes JSON: ``mlcroissant`` is needed to read the file, not to write it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from gbifdl_assets.export.credits import citation_text, doi_url, query_text
from gbifdl_assets.export.digests import DigestingStorage
from gbifdl_assets.export.escape import clean_text, clean_value
from gbifdl_assets.export.facts import ExportFacts, bias_statements, license_mix
from gbifdl_assets.export.license_display import license_url_or_blank

__all__ = ["CROISSANT_FILE", "CROISSANT_VERSION", "croissant_document", "write_croissant"]

CROISSANT_FILE = "croissant.json"
CROISSANT_VERSION = "http://mlcommons.org/croissant/1.1"
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")

# The Croissant 1.1 context (as mlcroissant writes it) plus the RAI prefix.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

_MEDIA_TYPES = {
    "parquet": "application/x-parquet",
    "json": "application/json",
    "jsonl": "application/jsonlines",
    "csv": "text/csv",
    "md": "text/markdown",
    "html": "text/html",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tar": "application/x-tar",
}
IMAGE_FILESET = "imagefolder-images"
SHARD_FILESET = "webdataset-shards"
MANIFEST_ID = "manifest.parquet"
CLASSES_ID = "classes.json"
# (field name, manifest column, schema.org type) of the images record set, when the column exists
_IMAGE_FIELDS = (
    ("content_key", "content_key", "sc:Text"),
    ("sha256", "sha256", "sc:Text"),
    ("label", "label_index", "sc:Integer"),
    ("label_name", "label_name", "sc:Text"),
    ("taxon_key", "label", "sc:Integer"),
    ("split", "split", "sc:Text"),
    ("gbifID", "gbifID", "sc:Integer"),
    ("license", "license", "sc:Text"),
    ("attribution", "attribution", "sc:Text"),
    ("creator", "creator", "sc:Text"),
    ("rightsHolder", "rightsHolder", "sc:Text"),
    ("datasetKey", "datasetKey", "sc:Text"),
    ("image_url", "url", "sc:URL"),
)
_CLASS_FIELDS = (
    ("index", "index", "sc:Integer"),
    ("taxon_key", "label", "sc:Integer"),
    ("name", "name", "sc:Text"),
    ("dirname", "dirname", "sc:Text"),
    ("count", "count", "sc:Integer"),
)


def _media_type(key: str) -> str:
    return _MEDIA_TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _is_image_file(key: str) -> bool:
    return key.startswith("imagefolder/") and not key.endswith(".jsonl")


def _field(
    record_set: str, name: str, data_type: str, source: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "@type": "cr:Field",
        "@id": f"{record_set}/{name}",
        "name": name,
        "dataType": data_type,
        "source": source,
        **extra,
    }


def _distribution(storage: DigestingStorage, table: pa.Table, owned: Sequence[str]) -> list[dict[str, Any]]:
    dist: list[dict[str, Any]] = []
    for key in sorted(storage.list("")):
        if _is_image_file(key) or key in (CROISSANT_FILE, "export.json") or key.split("/")[0] not in owned:
            continue
        sha, size = storage.digest(key)
        dist.append(
            {
                "@type": "cr:FileObject",
                "@id": key,
                "name": key,
                "contentUrl": key,
                "encodingFormat": _media_type(key),
                "contentSize": f"{size} B",
                "sha256": sha,
            }
        )
    if "imagefolder_path" in table.column_names:
        exts = sorted(set(table.column("ext").to_pylist()))
        dist.append(
            {
                "@type": "cr:FileSet",
                "@id": IMAGE_FILESET,
                "name": IMAGE_FILESET,
                "description": "The images, imagefolder/<split>/<class folder>/<content key>.<ext>; "
                "their sha256 are in the manifest.",
                "encodingFormat": sorted({_media_type(f"x.{e}") for e in exts}),
                "includes": [f"imagefolder/*/*/*.{e}" for e in exts],
            }
        )
    if any(d["@id"].startswith("webdataset/") for d in dist):
        dist.append(
            {
                "@type": "cr:FileSet",
                "@id": SHARD_FILESET,
                "name": SHARD_FILESET,
                "description": "WebDataset shards <split>-NNNNNN.tar: per image <content key>.<ext>, .cls "
                "(label index) and .json (label, licence, credit).",
                "encodingFormat": "application/x-tar",
                "includes": ["webdataset/*.tar"],
            }
        )
    return dist


def _record_sets(table: pa.Table) -> list[dict[str, Any]]:
    manifest = {"fileObject": {"@id": MANIFEST_ID}}
    fields = []
    if "imagefolder_path" in table.column_names:
        fields.append(
            _field(
                "images",
                "image",
                "sc:ImageObject",
                {"fileSet": {"@id": IMAGE_FILESET}, "extract": {"fileProperty": "content"}},
            )
        )
        # the join: each image file (its path in the export) with its manifest row
        fields.append(
            _field(
                "images",
                "file",
                "sc:Text",
                {
                    "fileSet": {"@id": IMAGE_FILESET},
                    "extract": {"fileProperty": "fullpath"},
                    "transform": {"regex": "^(.*)$"},
                },
                references={**manifest, "extract": {"column": "imagefolder_path"}},
            )
        )
    for name, column, data_type in _IMAGE_FIELDS:
        if column in table.column_names:
            fields.append(_field("images", name, data_type, {**manifest, "extract": {"column": column}}))
    classes = [
        _field(
            "classes",
            name,
            data_type,
            {"fileObject": {"@id": CLASSES_ID}, "extract": {"jsonPath": f"$[*].{key}"}},
        )
        for name, key, data_type in _CLASS_FIELDS
    ]
    return [
        {
            "@type": "cr:RecordSet",
            "@id": "images",
            "name": "images",
            "description": "One record per exported image: label (index of classes.json), split, GBIF "
            "occurrence, licence and who to credit.",
            "key": {"@id": "images/content_key"},
            "field": fields,
        },
        {
            "@type": "cr:RecordSet",
            "@id": "classes",
            "name": "classes",
            "description": "The classes: index (the label), GBIF taxon key, name, folder, images.",
            "key": {"@id": "classes/index"},
            "field": classes,
        },
    ]


def _date(value: Any) -> str | None:
    text = clean_text(value).strip()
    return text or None


def _rai(
    *,
    training_set: str,
    facts: ExportFacts,
    classes: Sequence[dict[str, Any]],
    sources: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any],
    missing: int,
    unattributed: int,
    dropped_unattributed: int,
) -> dict[str, Any]:
    where = []
    for s in sources:
        if s.get("doi"):
            where.append(f"the GBIF occurrence download {doi_url(s['doi'])}")
        else:
            where.append(
                f"the GBIF occurrence search API on {s.get('date', 'an unrecorded date')} with the query {query_text(s)}"
            )
    spec = provenance.get("spec_name") or training_set
    collection = (
        "Occurrence records with still images (GBIF occurrence media) from the Global Biodiversity Information "
        f"Facility (https://www.gbif.org), retrieved through {'; '.join(where) or 'GBIF (source not recorded)'}"
        f"{', snapshot ' + str(provenance['snapshot_id']) if provenance.get('snapshot_id') else ''}. "
        f"The training-set spec {spec!r} chose taxa, filters and licences; records were balanced per class "
        "and split into train/val/test by group, and each image was downloaded from its publisher's URL "
        "(or GBIF's image cache) into a content-addressed image store."
    )
    mix = license_mix(facts)
    mix_text = ", ".join(f"{label} {n}" for label, _, n, _ in mix)
    by_class = [c["count"] for c in classes]
    limitations = [
        "Labels are the taxon of each GBIF occurrence as identified by its observer or publisher and "
        "interpreted against the GBIF backbone; they are not verified image by image.",
        "An image may show several organisms, a habitat, a trace or a specimen label, and the same photo "
        "can hang on several occurrences.",
        f"The smallest class has {min(by_class, default=0)} images; see the data card for classes with few "
        "images in a split.",
        f"Licences (images per licence): {mix_text}. Each image may be reused only under its own licence and "
        "with its credit (credits.csv); NC licences forbid commercial use, ND licences forbid adaptations.",
    ]
    missing_text = (
        f"{missing} images of the manifest could not be downloaded or stored and are not in the export."
        if missing
        else "Every image of the manifest is in the export."
    )
    if unattributed:
        missing_text += (
            f" {unattributed} images under an attribution licence have no creator, rights holder, recorder or "
            f"publisher on record; {dropped_unattributed} of them were left out."
        )
    rai: dict[str, Any] = {
        "rai:dataCollection": collection,
        "rai:dataCollectionType": ["Web API", "Secondary Data analysis", "User-generated content data"],
        "rai:dataCollectionMissingData": missing_text,
        "rai:dataCollectionRawData": "GBIF occurrence records and the media items they link to; the "
        "manifest keeps each image's source URL, occurrence (gbifID) and dataset.",
        "rai:dataPreprocessingProtocol": [
            "Images are decoded and checked (minimum side, decompression-bomb guard), then resized to the "
            "spec's maximum side and stored under the sha256 of their URL.",
            "Text from the records is stripped of control characters.",
        ],
        "rai:dataAnnotationProtocol": [
            "Labels come from GBIF's taxonomic interpretation of each record (the accepted taxon at the "
            "label rank); records that annotation rules mark suspicious, managed or fossil are left out as "
            "the spec says"
            + (f" (rules version {provenance['rules_version']})." if provenance.get("rules_version") else ".")
        ],
        "rai:dataBiases": bias_statements(facts, classes),
        "rai:dataLimitations": limitations,
        "rai:personalSensitiveInformation": [
            "Names of natural persons (creators, rights holders and recorders of the images) are included "
            "because the licences require attribution.",
            "Photos may show people, and record coordinates may reveal where observers were; publishers "
            "generalise the locations of sensitive species at source.",
        ],
        "rai:dataUseCases": [
            "Training and evaluating image classifiers of the taxa listed in classes.json.",
            "Not validated for identifying taxa outside these classes, nor for decisions about individual "
            "organisms, sites or people.",
        ],
        "rai:dataReleaseMaintenancePlan": "Rebuilt from the training-set spec when the spec, the occurrence "
        "snapshot or the annotation rules change; each export names its manifest and snapshot.",
    }
    if facts.years:
        rai["rai:dataCollectionTimeframe"] = [f"{facts.years[0]}-01-01", f"{facts.years[1]}-12-31"]
    return rai


def croissant_document(
    table: pa.Table,
    storage: DigestingStorage,
    *,
    training_set: str,
    classes: Sequence[dict[str, Any]],
    facts: ExportFacts,
    sources: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any] | None = None,
    missing: int = 0,
    unattributed: int = 0,
    dropped_unattributed: int = 0,
    created: dt.datetime | None = None,
    owned: Sequence[str] = (),
) -> dict[str, Any]:
    """The Croissant JSON-LD of an export whose files are in ``storage`` (written through it).

    ``owned``: the top-level names of the export's files (others in the folder are not listed).
    """
    provenance = clean_value(dict(provenance or {}))
    created = created or dt.datetime.now(dt.UTC)
    mix = license_mix(facts)
    licences = [license_url_or_blank(lic) or lic for _, lic, _, _ in mix]
    version = str(provenance.get("version") or "1.0.0")
    if not _SEMVER.match(version):
        version = "1.0.0"
    cite = [citation_text(s) for s in sources]
    splits = ", ".join(f"{k} {v}" for k, v in sorted(facts.splits.items()))
    description = (
        f"Image training set {training_set!r} built from GBIF-mediated occurrence media: {facts.images} images "
        f"of {facts.occurrences} occurrences in {len(classes)} classes (splits: {splits}). Every image keeps its "
        "own licence and credit (credits.csv)."
    )
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CROISSANT_VERSION,
        "name": training_set,
        "description": description,
        "version": version,
        "datePublished": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "license": licences,
        "citeAs": "\n".join(cite)
        if cite
        else f"GBIF.org ({created.date().isoformat()}) GBIF occurrence data; see CITATION.md",
        "creator": {"@type": "sc:Organization", "name": "GBIF.org", "url": "https://www.gbif.org"},
        "keywords": ["biodiversity", "GBIF", "image classification", "species", "occurrence media"],
        "isAccessibleForFree": True,
        "inLanguage": "en",
    }
    created_at = _date(provenance.get("date")) or next(
        (_date(s.get("created") or s.get("date")) for s in sources if s.get("created") or s.get("date")), None
    )
    if created_at:
        doc["dateCreated"] = created_at
    if provenance.get("url"):
        doc["url"] = provenance["url"]
    elif any(s.get("doi") for s in sources):
        doc["url"] = doi_url(next(s["doi"] for s in sources if s.get("doi")))
    doc.update(
        _rai(
            training_set=training_set,
            facts=facts,
            classes=classes,
            sources=sources,
            provenance=provenance,
            missing=missing,
            unattributed=unattributed,
            dropped_unattributed=dropped_unattributed,
        )
    )
    doc["distribution"] = _distribution(storage, table, owned)
    doc["recordSet"] = _record_sets(table)
    return doc


def write_croissant(storage: DigestingStorage, table: pa.Table, **kwargs: Any) -> dict[str, Any]:
    """Write ``croissant.json`` (after every other file but ``export.json``); return the document."""
    doc = croissant_document(table, storage, **kwargs)
    storage.write_bytes(
        CROISSANT_FILE, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    )
    return doc
