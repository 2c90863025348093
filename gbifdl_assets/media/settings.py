"""A training-set spec's ``images`` options applied to a download run's configuration.

The Dagster resource (or the CLI) sets up a :class:`~.download.DownloadConfig` for a deployment;
a spec may ask for more politeness on top (a rate ceiling per host, opt-out checks, the image cache
fallback). :func:`apply_image_options` combines the two: ceilings take the lower value; a check
(robots.txt, opt-out headers) runs when both the deployment and the spec leave it on, so either
can switch it off for hosts it answers for.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gbifdl_assets.media.hosts import normalize_host_limits

if TYPE_CHECKING:
    from gbifdl_assets.media.download import DownloadConfig
    from gbifdl_assets.specs import ImageOptions

__all__ = ["apply_image_options", "merge_host_limits"]


def _lower(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def merge_host_limits(*tables: Any) -> tuple[tuple[str, float | None, int | None], ...]:
    """One per-host ceiling table from several; a host named twice keeps the lower ceilings."""
    merged: dict[str, tuple[float | None, int | None]] = {}
    for table in tables:
        for pattern, rate, concurrency in normalize_host_limits(table):
            have = merged.get(pattern)
            merged[pattern] = (
                (rate, concurrency) if have is None else (_lower(have[0], rate), _lower(have[1], concurrency))
            )
    return tuple(sorted((p, r, c) for p, (r, c) in merged.items()))


def apply_image_options(config: DownloadConfig, options: ImageOptions) -> DownloadConfig:
    """``config`` with the spec's politeness options (``images.max_bytes`` too) applied."""
    fetch = config.fetch
    fetch = replace(
        fetch,
        max_bytes=min(fetch.max_bytes, options.max_bytes),
        max_rate=_lower(fetch.max_rate, options.max_rate_per_host),
        host_limits=merge_host_limits(fetch.host_limits, options.host_limits),
        robots_txt=fetch.robots_txt and options.robots_txt,
        opt_out_headers=fetch.opt_out_headers and options.opt_out_headers,
    )
    return replace(config, fetch=fetch, image_cache=config.image_cache and options.image_cache_fallback)
