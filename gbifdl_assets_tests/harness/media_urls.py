"""Image URLs of a running sandbox and minimal manifests of them, for the image-store tests."""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa

from gbifdl_assets.sandbox.duplicates import copy_of
from gbifdl_assets.sandbox.records import media_format
from gbifdl_assets.sandbox.world import media_items


def sandbox_image_urls(sb: Any, n: int, start: int = 0, fault: str | None = "none") -> list[str]:
    """``n`` distinct plain-JPEG media URLs of the sandbox ``sb``, skipping the first ``start``.

    Distinct images too: media items the sandbox serves as copies of another record's image
    (``sandbox.duplicates``) are left out.

    ``fault`` is the sandbox's media fault to ask for (``none`` pins a healthy answer); ``None``
    leaves the query string off, so a test can add its own."""
    world = sb.state.world
    rate = sb.state.config.media_duplicate_rate
    query = f"?fault={fault}" if fault else ""
    out: list[str] = []
    for i in range(len(world.occ)):
        key = int(world.occ.key[i])
        for item, mtype in enumerate(media_items(world.occ, i)):
            if copy_of(world, i, item, rate) is not None:
                continue
            if mtype == 0 and media_format(world, key, item, mtype)[1] == "jpg":
                out.append(f"{sb.url}/media/{key}/{item}.jpg{query}")
        if len(out) >= start + n:
            break
    return out[start : start + n]


def url_manifest(urls: list[str], labels: list[int] | None = None) -> pa.Table:
    """A manifest of ``urls`` (content_key = sha256 of the URL), with ``label`` when given."""
    columns: dict[str, Any] = {
        "content_key": [hashlib.sha256(u.encode()).hexdigest() for u in urls],
        "url": urls,
    }
    if labels is not None:
        columns["label"] = labels
    return pa.table(columns)
