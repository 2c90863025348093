"""Per-host ceilings on image downloads: the table users write (spec, CLI, resource) and its lookup.

Kept at the ground of the package so the spec model validates a table with the same reading the
downloader (:mod:`gbifdl_assets.media.hosts`) applies, without the spec layer importing the media one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["host_limit_for", "normalize_host_limits"]


def normalize_host_limits(value: Any) -> tuple[tuple[str, float | None, int | None], ...]:
    """Per-host ceilings as ``((pattern, max_rate, max_concurrency), …)``.

    Accepts a mapping ``{"host": rate}`` or ``{"host": {"max_rate": r, "max_concurrency": c}}``, an
    iterable of such triples, or ``"host=rate"`` strings (the CLI's ``--host-limit``). A pattern is a
    host (``static.inaturalist.org``, ``host:8080``) or a domain suffix starting with a dot
    (``.inaturalist.org`` covers every sub-domain). Raises ValueError naming the bad entry.
    """
    if not value:
        return ()
    items: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        for item in value:
            if isinstance(item, str):
                host, sep, rate = item.partition("=")
                if not sep:
                    raise ValueError(f"host limit {item!r}: write HOST=REQUESTS_PER_SECOND")
                items.append((host, rate))
            elif isinstance(item, (tuple, list)) and len(item) == 3:
                items.append((item[0], {"max_rate": item[1], "max_concurrency": item[2]}))
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                items.append((item[0], item[1]))
            else:
                raise ValueError(f"host limit {item!r}: give (host, max_rate[, max_concurrency])")
    out = []
    for host, spec in items:
        pattern = str(host).strip().lower()
        if not pattern or "/" in pattern:
            raise ValueError(
                f"host limit for {host!r}: give a host name like static.example.org or .example.org"
            )
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"max_rate", "max_concurrency"}
            if unknown:
                raise ValueError(
                    f"host limit for {host!r}: unknown keys {sorted(unknown)}; use max_rate, max_concurrency"
                )
            rate, conc = spec.get("max_rate"), spec.get("max_concurrency")
        else:
            rate, conc = spec, None
        try:
            rate = None if rate is None or rate == "" else float(rate)
            conc = None if conc is None else int(conc)
        except (TypeError, ValueError):
            raise ValueError(
                f"host limit for {host!r}: {spec!r} is not a number of requests per second"
            ) from None
        if rate is not None and not rate > 0:
            raise ValueError(f"host limit for {host!r}: max_rate {rate} must be > 0 requests per second")
        if conc is not None and conc < 1:
            raise ValueError(f"host limit for {host!r}: max_concurrency {conc} must be >= 1")
        out.append((pattern, rate, conc))
    return tuple(sorted(out))


def host_limit_for(
    host: str, table: Iterable[tuple[str, float | None, int | None]]
) -> tuple[float | None, int | None]:
    """(max_rate, max_concurrency) the table sets for ``host`` (the most specific pattern wins)."""
    name = host.lower()
    bare = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    best: tuple[int, float | None, int | None] | None = None
    for pattern, rate, conc in table:
        if pattern.startswith("."):
            hit = bare.endswith(pattern) or bare == pattern[1:]
        else:
            hit = pattern in (name, bare)
        if hit and (best is None or len(pattern) > best[0]):
            best = (len(pattern), rate, conc)
    return (best[1], best[2]) if best else (None, None)
