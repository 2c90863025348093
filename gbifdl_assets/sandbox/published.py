"""Downloads that exist at GBIF before anyone asks: the ones the example specs cite by DOI or key.

A spec may name an existing GBIF download (``source: {doi: …}`` or ``{key: …}``); the sandbox serves
those as GBIF does: the DOI resolves to the download's key, the status is SUCCEEDED with GBIF's
recorded key, DOI, creation time and predicate, and the archive is a real-layout DWCA of the
sandbox's own occurrences that match that predicate (so its row count is the sandbox's, not GBIF's).

The values are copied from recorded GBIF answers (``../shared/fixtures/gbif/recorded``, rgbif
``occ_download_wait_request.yml``): download ``0026011-250827131500795``, DOI ``10.15468/dl.np3k7j``,
Helianthus annuus in the US and Canada since 1975.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PublishedDownload:
    """One download GBIF already holds: its status fields as recorded."""

    key: str
    doi: str
    created: str  # ISO 8601, as GBIF writes it
    modified: str
    predicate: dict[str, Any]
    format: str = "DWCA"


PUBLISHED_DOWNLOADS: tuple[PublishedDownload, ...] = (
    PublishedDownload(
        key="0026011-250827131500795",
        doi="10.15468/dl.np3k7j",
        created="2025-09-04T12:11:34.648+00:00",
        modified="2025-09-04T12:14:17.723+00:00",
        predicate={
            "type": "and",
            "predicates": [
                {"type": "equals", "key": "TAXON_KEY", "value": "9206251", "matchCase": False},
                {"type": "in", "key": "COUNTRY", "values": ["US", "CA"], "matchCase": False},
                {"type": "greaterThanOrEquals", "key": "YEAR", "value": "1975", "matchCase": False},
            ],
        },
    ),
)
#: The creator of the published downloads: not the sandbox's test account, so they stay out of its
#: listing (GBIF's public status omits the creator anyway).
PUBLISHED_CREATOR = "gbif-published"
