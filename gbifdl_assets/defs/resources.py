"""Resources: GBIF access, the data storage, the spec folder, the rule sources and image fetching.

Each resource holds its settings and hands out the core object that does the work (a GbifClient, a
Storage, a SpecFolder, RuleSources, a FetchConfig); the resource keys (``gbif``, ``storage``,
``specs``, ``annotations``, ``image_fetch``) are what assets and sensors name as parameters.

Secrets come from environment variables through ``dg.EnvVar``, so run config and the UI only ever
show the variable's name, never the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from gbifdl_assets.gbif.client import DEFAULT_BASE_URL, GbifClient
from gbifdl_assets.gbif.endpoint import API_URL_ENV, api_url_from_env, loopback_origin
from gbifdl_assets.media.download import DownloadConfig
from gbifdl_assets.media.fetch import FetchConfig
from gbifdl_assets.pipeline.annotation_rulesets import RuleSources
from gbifdl_assets.pipeline.errors import StageError
from gbifdl_assets.pipeline.spec_folder import SpecFolder, read_spec_folder
from gbifdl_assets.specs import TrainingSetSpec, example_specs_dir
from gbifdl_assets.storage import Storage, open_storage

DEFAULT_DATA_DIR = "data"
DEFAULT_ANNOTATIONS_DB = "sqlite:///data/annotations.sqlite"


class GbifResource(dg.ConfigurableResource):
    """The GBIF API (or the offline sandbox, which serves the same paths)."""

    base_url: str = Field(
        default=DEFAULT_BASE_URL, description="GBIF API v1 root, e.g. https://api.gbif.org/v1"
    )
    username: str | None = Field(default=None, description="GBIF user for downloads; set via GBIF_USERNAME")
    password: str | None = Field(default=None, description="GBIF password; set via GBIF_PASSWORD")
    timeout_seconds: float = 60.0
    max_retries: int = 5

    def client(self) -> GbifClient:
        return GbifClient(
            self.base_url,
            username=self.username,
            password=self.password,
            timeout=(10.0, self.timeout_seconds),
            max_retries=self.max_retries,
        )


class StorageResource(dg.ConfigurableResource):
    """Where Parquet tables and images live: a local folder or an S3-compatible bucket."""

    uri: str = Field(default=DEFAULT_DATA_DIR, description="a folder, or s3://bucket/prefix")
    endpoint_url: str | None = Field(default=None, description="S3 endpoint (MinIO, Ceph); None for AWS")
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region_name: str | None = None

    def open(self) -> Storage:
        return open_storage(
            self.uri,
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region_name=self.region_name,
        )


class SpecsResource(dg.ConfigurableResource):
    """The folder of training-set specs (YAML); each spec's ``name`` is its partition key."""

    folder: str = Field(default_factory=lambda: str(example_specs_dir()))

    def load(self) -> SpecFolder:
        """Every spec of the folder: the valid ones by name, and the problems of the others."""
        if not Path(self.folder).is_dir():
            raise FileNotFoundError(
                f"spec folder {self.folder} does not exist; set GBIFDL_SPECS_DIR to a folder of training-set YAML files"
            )
        return read_spec_folder(self.folder)

    def get(self, name: str) -> TrainingSetSpec:
        """The valid spec named ``name``; a final Failure (waiting does not make a spec appear) otherwise."""
        try:
            return self.load().get(name)
        except StageError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc


class AnnotationsResource(dg.ConfigurableResource):
    """Where rules come from. The store URL may carry a password: set it through an EnvVar."""

    store_url: str = Field(default=DEFAULT_ANNOTATIONS_DB, description="SQLAlchemy URL")
    rules_dir: str | None = Field(default=None, description="a folder of YAML/GeoJSON rule files")
    gbif_annotation_url: str | None = Field(
        default=None, description="GBIF's annotation API to mirror, e.g. https://api.gbif.org/v1"
    )
    seeds: bool = Field(default=True, description="include CoordinateCleaner-style seed rules")

    def sources(self) -> RuleSources:
        return RuleSources(self.store_url, self.rules_dir, self.gbif_annotation_url, self.seeds)


class ImageFetchResource(dg.ConfigurableResource):
    """Network politeness and safety of image downloads."""

    concurrency: int = 64
    per_host: int = 16
    allow_loopback: bool = Field(default=False, description="every loopback address: only for tests")
    allow_private: bool = False
    loopback_origins: list[str] = Field(
        default_factory=list,
        description="host:port admitted on loopback: the offline sandbox's own address, nothing else",
    )

    max_rate_per_host: float | None = Field(
        default=None, description="requests/s no host exceeds (None: what each host tells us)"
    )
    host_limits: dict[str, float] = Field(
        default_factory=dict,
        description='per-host ceilings in requests/s, e.g. {"static.inaturalist.org": 50, ".example.org": 5}',
    )
    robots_txt: bool = Field(default=True, description="never request what a host's robots.txt disallows")
    opt_out_headers: bool = Field(
        default=True, description="refuse images whose X-Robots-Tag or tdm-reservation opts out of AI use"
    )
    image_cache: bool = Field(default=True, description="fetch dead links from GBIF's image cache")
    gbif_api_url: str = Field(
        default=DEFAULT_BASE_URL, description="the GBIF API whose image cache serves dead links"
    )

    def fetch_config(self) -> FetchConfig:
        return FetchConfig(
            concurrency=self.concurrency,
            per_host=self.per_host,
            allow_loopback=self.allow_loopback,
            allow_private=self.allow_private,
            loopback_origins=tuple(self.loopback_origins),
            max_rate=self.max_rate_per_host,
            host_limits=dict(self.host_limits),
            robots_txt=self.robots_txt,
            opt_out_headers=self.opt_out_headers,
        )

    def download_config(self) -> DownloadConfig:
        """The whole download configuration (the spec's image options apply on top)."""
        return DownloadConfig(
            fetch=self.fetch_config(), image_cache=self.image_cache, gbif_api_url=self.gbif_api_url
        )


#: Set to 1 to mirror GBIF's annotation API (at GBIF_API_URL) into annotation_rulesets.
GBIF_ANNOTATIONS_ENV = "GBIFDL_GBIF_ANNOTATIONS"
#: The deprecated ways: a second URL variable for the same API, and loopback opened wholesale.
DEPRECATED_ANNOTATION_API_ENV = "GBIFDL_ANNOTATION_API_URL"
DEPRECATED_ALLOW_LOOPBACK_ENV = "GBIFDL_ALLOW_LOOPBACK"
_said: set[str] = set()


def _deprecated(message: str) -> None:
    if message not in _said:
        _said.add(message)
        dg.get_dagster_logger("gbifdl_assets").warning(message)


def _gbif_annotation_url() -> str | None:
    """GBIF's annotation API to mirror: GBIF_API_URL when GBIFDL_GBIF_ANNOTATIONS=1 (else none)."""
    if os.environ.get(GBIF_ANNOTATIONS_ENV, "").lower() in ("1", "true", "yes"):
        return api_url_from_env()
    if os.environ.get(DEPRECATED_ANNOTATION_API_ENV):
        _deprecated(
            f"{DEPRECATED_ANNOTATION_API_ENV} is deprecated: set {GBIF_ANNOTATIONS_ENV}=1 to mirror GBIF's "
            f"annotation API, which is then the one {API_URL_ENV} names"
        )
        return os.environ[DEPRECATED_ANNOTATION_API_ENV]
    return None


def image_fetch_resource() -> ImageFetchResource:
    """Image fetching from the environment: loopback only at the sandbox's own address.

    When the GBIF API is on loopback it is the offline sandbox (GBIF never is), and the sandbox serves
    its media from that same ``host:port``: that origin is admitted, no other loopback URL.
    """
    if os.environ.get(DEPRECATED_ALLOW_LOOPBACK_ENV):
        _deprecated(
            f"{DEPRECATED_ALLOW_LOOPBACK_ENV} is no longer read: media on loopback are admitted from the "
            f"offline sandbox's own address only (the loopback {API_URL_ENV})"
        )
    api_url = api_url_from_env()
    origin = loopback_origin(api_url)
    given: dict[str, Any] = {"gbif_api_url": _env_or(API_URL_ENV, api_url)}
    if origin:
        given["loopback_origins"] = [origin]
    return ImageFetchResource(**given)


def _env_or(var: str, default: str | None = None) -> str | dg.EnvVar | None:
    """An EnvVar when the variable is set (the value stays out of run config), else the default."""
    return dg.EnvVar(var) if os.environ.get(var) else default


def keep_values_under_run_config(resources: Mapping[str, dg.ConfigurableResource]) -> dict[str, Any]:
    """The resources with the values they were built with as per-field defaults of their run config.

    Dagster applies the values passed to a resource's constructor as *one* default for its whole
    config, so run config that sets a single field (``resources.image_fetch.config.concurrency``)
    silently resets every other field to its class default: the sandbox's ``allow_loopback``,
    ``GBIF_API_URL``, the S3 endpoint, the data folder. ``configure_at_launch`` makes each given value
    the default of its own field instead, so run config overrides field by field. EnvVars stay EnvVars:
    run config and the UI show the variable's name, and the value is read when the run starts.
    """
    return {
        key: type(resource).configure_at_launch(
            **{name: getattr(resource, name) for name in resource.model_fields_set}
        )
        for key, resource in resources.items()
    }


def _api_url() -> str | dg.EnvVar:
    """GBIF_API_URL as an EnvVar (read when a run starts), or a deprecated name's value, or GBIF."""
    return dg.EnvVar(API_URL_ENV) if os.environ.get(API_URL_ENV) else api_url_from_env()


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources from the environment: embedded defaults when nothing is set."""
    return {
        "gbif": GbifResource(
            base_url=_api_url(),
            username=_env_or("GBIF_USERNAME"),
            password=_env_or("GBIF_PASSWORD"),
        ),
        "storage": StorageResource(
            uri=_env_or("GBIFDL_DATA_URI", DEFAULT_DATA_DIR),
            endpoint_url=_env_or("GBIFDL_S3_ENDPOINT_URL"),
            access_key_id=_env_or("AWS_ACCESS_KEY_ID"),
            secret_access_key=_env_or("AWS_SECRET_ACCESS_KEY"),
            region_name=_env_or("AWS_REGION"),
        ),
        "specs": SpecsResource(folder=_env_or("GBIFDL_SPECS_DIR", str(example_specs_dir()))),
        "annotations": AnnotationsResource(
            store_url=_env_or("GBIFDL_ANNOTATIONS_DB", DEFAULT_ANNOTATIONS_DB),
            rules_dir=_env_or("GBIFDL_RULES_DIR"),
            gbif_annotation_url=_gbif_annotation_url(),
            seeds=os.environ.get("GBIFDL_SEED_RULES", "1").lower() not in ("0", "false", "no"),
        ),
    }
