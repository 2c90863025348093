"""GBIF registry objects of the generated world: ``/v1/dataset/{key}`` and ``/v1/organization/{key}``.

One place derives every registry fact the sandbox shows anywhere (a dataset's DOI, its citation
text, its publisher's title and country), so the registry JSON, the download's ``/datasets``
listing, the archive's ``dataset/<key>.xml``, ``citations.txt`` and ``metadata.xml`` always agree.

The JSON follows the shapes GBIF's registry answers (key sets as in the datasets and organizations
listings recorded by gbif/pygbif, ``test/vcr_cassettes/test_datasets.yaml`` and
``test_organizations.yaml``, 2024-10-04): the fields a client reads (``title``,
``publishingOrganizationKey``, ``doi``, ``license``, ``type``; ``title``, ``country``) carry the
world's values; the bookkeeping lists GBIF always sends (``contacts``, ``endpoints``,
``machineTags`` …) are present, mostly empty. Unknown keys are ``None`` here and 404 on the wire.
"""

from __future__ import annotations

import uuid
from typing import Any

from . import hashing
from .vocab import LICENSE_URLS
from .world import Dataset, Publisher, World, stable_uuid

#: registry bookkeeping timestamps (fixed, so two sandboxes with the same seed serve identical JSON)
_CREATED = "2019-03-14T09:26:53.000+00:00"
_MODIFIED = "2025-09-30T06:12:44.000+00:00"
_PUB_DATE = "2025-09-01T00:00:00.000+00:00"
#: the day citations say the data was "accessed via GBIF.org" (GBIF writes the day of the request)
ACCESS_DATE = "2025-10-01"
DATASET_DOI_PREFIX = "10.15468/"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_SALT_DOI = 91

_KIND_DESCRIPTIONS = {
    "citizen": "Research-grade observations shared by the members of a citizen-science network.",
    "survey": "Standardised counts from a repeated field survey.",
    "museum": "Digitised specimens of a natural history collection.",
    "herbarium": "Digitised herbarium sheets.",
    "fungarium": "Digitised fungarium specimens.",
    "cameratrap": "Detections from a network of camera traps.",
    "literature": "Occurrences extracted from published literature.",
}


def dataset_doi(world: World, ds: Dataset) -> str:
    """The dataset's DOI, GBIF style: ``10.15468/`` and six base-36 characters."""
    h = hashing.h64(world.seed, ds.idx, _SALT_DOI)
    out = ""
    for _ in range(6):
        h, r = divmod(h, 36)
        out += _B36[r]
    return DATASET_DOI_PREFIX + out


def publisher_of(world: World, ds: Dataset) -> Publisher:
    return world.publishers[ds.publisher]


def dataset_license_url(ds: Dataset) -> str:
    """The dataset's licence as the registry gives it (a CC legalcode URL)."""
    return LICENSE_URLS[ds.license]


def dataset_citation(world: World, ds: Dataset) -> str:
    """The citation text GBIF shows for a dataset (``citation.text`` in the registry JSON)."""
    pub = publisher_of(world, ds)
    return (
        f"{pub.title} ({_PUB_DATE[:4]}). {ds.title}. Occurrence dataset "
        f"https://doi.org/{dataset_doi(world, ds)} accessed via GBIF.org on {ACCESS_DATE}."
    )


def find_dataset(world: World, key: str) -> Dataset | None:
    idx = world.dataset_by_key.get(_canonical_uuid(key) or "")
    return None if idx is None else world.datasets[idx]


def find_publisher(world: World, key: str) -> Publisher | None:
    idx = world.publisher_by_key.get(_canonical_uuid(key) or "")
    return None if idx is None else world.publishers[idx]


def _canonical_uuid(key: str) -> str | None:
    try:
        return str(uuid.UUID(key.strip()))
    except (ValueError, AttributeError):
        return None


def is_uuid(key: str) -> bool:
    return _canonical_uuid(key) is not None


def installation_key(world: World, publisher: int) -> str:
    return stable_uuid(world.seed, f"installation/{publisher}")


def dataset_json(world: World, ds: Dataset) -> dict[str, Any]:
    """``GET /v1/dataset/{key}``: GBIF's Dataset object for ``ds``."""
    pub = publisher_of(world, ds)
    doi = dataset_doi(world, ds)
    return {
        "key": ds.key,
        "installationKey": installation_key(world, ds.publisher),
        "publishingOrganizationKey": pub.key,
        "doi": doi,
        "external": False,
        "numConstituents": 0,
        "type": "OCCURRENCE",
        "title": ds.title,
        "description": _KIND_DESCRIPTIONS[ds.kind],
        "language": "eng",
        "homepage": f"https://collections.sandbox.invalid/{ds.institution_code.lower()}/{ds.collection_code}",
        "citation": {"text": dataset_citation(world, ds), "citationProvidedBySource": False},
        "contactsCitation": [],
        "lockedForAutoUpdate": False,
        "createdBy": "sandbox",
        "modifiedBy": "crawler.gbif.org",
        "created": _CREATED,
        "modified": _MODIFIED,
        "contacts": [],
        "endpoints": [
            {
                "key": 1_000_000 + ds.idx,
                "type": "DWC_ARCHIVE",
                "url": f"https://ipt.sandbox.invalid/archive.do?r={ds.collection_code.lower()}",
                "createdBy": "sandbox",
                "modifiedBy": "sandbox",
                "created": _CREATED,
                "modified": _CREATED,
                "machineTags": [],
            }
        ],
        "machineTags": [],
        "tags": [],
        "identifiers": [
            {
                "key": 2_000_000 + ds.idx,
                "type": "DOI",
                "identifier": doi,
                "createdBy": "sandbox",
                "created": _CREATED,
            }
        ],
        "comments": [],
        "bibliographicCitations": [],
        "curatorialUnits": [],
        "taxonomicCoverages": [],
        "geographicCoverages": [],
        "temporalCoverages": [],
        "keywordCollections": [],
        "countryCoverage": [ds.country],
        "collections": [],
        "dataDescriptions": [],
        "dataLanguage": "eng",
        "pubDate": _PUB_DATE,
        "maintenanceChangeHistory": [],
        "license": dataset_license_url(ds),
    }


def organization_json(world: World, pub: Publisher) -> dict[str, Any]:
    """``GET /v1/organization/{key}``: GBIF's Organization object for ``pub``."""
    n_datasets = sum(1 for d in world.datasets if d.publisher == pub.idx)
    return {
        "key": pub.key,
        "endorsingNodeKey": stable_uuid(world.seed, f"node/{pub.country}"),
        "endorsementApproved": True,
        "endorsementStatus": "ENDORSED",
        "title": pub.title,
        "description": f"{pub.title} publishes biodiversity data through GBIF.",
        "language": "eng",
        "email": [],
        "phone": [],
        "homepage": [f"https://org{pub.idx}.sandbox.invalid/"],
        "address": [],
        "city": "Sandbox",
        "country": pub.country,
        "numPublishedDatasets": n_datasets,
        "createdBy": "sandbox",
        "modifiedBy": "sandbox",
        "created": _CREATED,
        "modified": _MODIFIED,
        "endorsed": _CREATED,
        "contacts": [],
        "endpoints": [],
        "machineTags": [],
        "tags": [],
        "identifiers": [],
        "comments": [],
    }


__all__ = [
    "ACCESS_DATE",
    "DATASET_DOI_PREFIX",
    "dataset_citation",
    "dataset_doi",
    "dataset_json",
    "dataset_license_url",
    "find_dataset",
    "find_publisher",
    "installation_key",
    "is_uuid",
    "organization_json",
    "publisher_of",
]
