"""The network settings of a download run (:class:`FetchConfig`), kept apart from the client itself.

Re-exported by :mod:`.fetch`; plain, frozen and picklable, so the same object reaches the worker
processes (:mod:`.pool`), the CLI and the Dagster resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gbifdl_assets.media.hosts import HostLimits, host_limit_for, normalize_host_limits
from gbifdl_assets.media.ssrf import AddressPolicy

__all__ = ["DEFAULT_USER_AGENT", "FetchConfig", "normalize_resolve"]

DEFAULT_USER_AGENT = "gbifdl-assets/0.1 (image training sets from GBIF-mediated media; polite downloader)"


def normalize_resolve(value: Any) -> tuple[tuple[str, str | None], ...]:
    """Host-name overrides as ``((name, address or None), …)``, like ``curl --resolve``.

    Accepts a mapping ``{name: address}`` (``None`` or ``""``: the name does not resolve) or
    ``"name=address"`` strings (the CLI's ``--resolve``). The SSRF guard still checks the address.
    """
    if not value:
        return ()
    pairs: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        for item in value:
            if isinstance(item, str):
                name, sep, address = item.partition("=")
                if not sep:
                    raise ValueError(
                        f"resolve {item!r}: write NAME=ADDRESS (NAME= for a name that does not resolve)"
                    )
                pairs.append((name, address))
            else:
                name, address = item
                pairs.append((name, address))
    out = []
    for name, address in pairs:
        name = str(name).strip().lower().rstrip(".")
        if not name:
            raise ValueError("resolve: empty host name")
        out.append((name, str(address).strip() or None if address is not None else None))
    return tuple(sorted(out))


@dataclass(frozen=True)
class FetchConfig:
    """Network behaviour of a download run (defaults suit public media hosts)."""

    #: requests in flight in all (the worker count)
    concurrency: int = 64
    #: the most requests in flight to one host (its window grows up to this while answers are clean)
    per_host: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 120.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    #: the longest Retry-After honoured; a host asking for more is skipped for the rest of the run
    retry_after_cap: float = 60.0
    max_redirects: int = 5
    max_bytes: int = 20_000_000
    allow_loopback: bool = False
    allow_private: bool = False
    #: ``host:port`` admitted on loopback although allow_loopback is off (the offline sandbox's own)
    loopback_origins: tuple[str, ...] = ()
    user_agent: str = DEFAULT_USER_AGENT
    #: seconds an idle pooled connection is kept for reuse
    keepalive_timeout: float = 30.0
    # --- politeness per host (see .hosts) -------------------------------------------------------
    #: requests in flight to a host at first (then up to per_host while answers are fast and clean)
    start_concurrency: int = 2
    #: ceiling on every host's request rate (requests/s); None: only what each host tells us
    max_rate: float | None = None
    #: the lowest rate throttling can push a host to (requests/s)
    min_rate: float = 0.2
    #: per-host ceilings: {"static.inaturalist.org": 50, ".example.org": {"max_rate": 5,
    #: "max_concurrency": 2}} or "host=rate" strings; normalized to a tuple of triples
    host_limits: Any = ()
    #: consecutive failures without a clean answer after which a host is skipped (0: never)
    skip_host_after: int = 20
    # --- opt-out --------------------------------------------------------------------------------
    #: fetch robots.txt once per host and never request what it disallows for our User-Agent
    robots_txt: bool = True
    #: refuse answers whose X-Robots-Tag (noai, noimageai, noindex, noimageindex, none) or
    #: tdm-reservation: 1 opts out, before their body is read
    opt_out_headers: bool = True
    # --- name resolution ------------------------------------------------------------------------
    #: host-name overrides {name: address or None}, like curl --resolve (the sandbox's hosts)
    resolve: Any = ()

    def __post_init__(self) -> None:
        problems = []
        for name in ("concurrency", "per_host", "max_attempts", "max_bytes", "start_concurrency"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("connect_timeout", "read_timeout", "deadline"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)}: must be > 0 seconds")
        if self.max_redirects < 0:
            problems.append(f"max_redirects={self.max_redirects}: must be >= 0")
        if self.max_rate is not None and not self.max_rate > 0:
            problems.append(f"max_rate={self.max_rate}: must be > 0 requests per second (or None)")
        if not self.min_rate > 0:
            problems.append(f"min_rate={self.min_rate}: must be > 0 requests per second")
        if self.skip_host_after < 0:
            problems.append(f"skip_host_after={self.skip_host_after}: must be >= 0 (0: never skip)")
        if self.retry_after_cap < 0:
            problems.append(f"retry_after_cap={self.retry_after_cap}: must be >= 0 seconds")
        try:
            object.__setattr__(self, "host_limits", normalize_host_limits(self.host_limits))
        except ValueError as exc:
            problems.append(str(exc))
        try:
            object.__setattr__(self, "resolve", normalize_resolve(self.resolve))
        except (ValueError, TypeError) as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("invalid fetch configuration: " + "; ".join(problems))

    @property
    def policy(self) -> AddressPolicy:
        return AddressPolicy(
            allow_loopback=self.allow_loopback,
            allow_private=self.allow_private,
            loopback_origins=frozenset(self.loopback_origins),
        )

    def limits_for(self, host: str) -> HostLimits:
        """The politeness settings of ``host`` (``host_limits`` over the run's defaults)."""
        rate, concurrency = host_limit_for(host, self.host_limits)
        if self.max_rate is not None:
            rate = self.max_rate if rate is None else min(rate, self.max_rate)
        per_host = self.per_host if concurrency is None else concurrency
        return HostLimits(
            max_concurrency=per_host,
            start_concurrency=min(self.start_concurrency, per_host),
            min_rate=min(self.min_rate, rate) if rate is not None else self.min_rate,
            max_rate=rate,
            skip_after=self.skip_host_after,
            retry_after_cap=self.retry_after_cap,
        )
