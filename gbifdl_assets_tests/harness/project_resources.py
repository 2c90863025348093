"""The code location's resources for a throwaway project folder, against the offline sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gbifdl_assets.defs.resources import (
    AnnotationsResource,
    GbifResource,
    ImageFetchResource,
    SpecsResource,
    StorageResource,
)


def sandbox_resources(
    api_url: str, root: Path, *, seed_rules: bool = False, images: bool = True
) -> dict[str, Any]:
    """Resources for a project under ``root`` (``data/``, ``specs/``, rules in ``a.sqlite``) whose
    GBIF is the sandbox at ``api_url``; with ``images``, media hosts on loopback are allowed."""
    resources: dict[str, Any] = {
        "gbif": GbifResource(base_url=api_url),
        "storage": StorageResource(uri=str(root / "data")),
        "specs": SpecsResource(folder=str(root / "specs")),
        "annotations": AnnotationsResource(store_url=f"sqlite:///{root / 'a.sqlite'}", seeds=seed_rules),
    }
    if images:
        resources["image_fetch"] = ImageFetchResource(allow_loopback=True)
    return resources
