"""Configuration of the offline GBIF sandbox.

Every knob that changes what the sandbox generates or how it misbehaves lives here, so a test or the
``gbifdl sandbox serve`` command can describe a whole sandbox with one object. Generated data depends
only on ``seed``, ``occurrences`` and ``species``: two sandboxes with the same three values serve
byte-identical JSON, archives and images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .hosts import MediaHost, parse_media_hosts

#: Terminal states a download can be forced into for fault tests (besides the normal SUCCEEDED).
DOWNLOAD_FAULT_STATUSES = ("FAILED", "KILLED", "FILE_ERASED", "CANCELLED", "SUSPENDED")


@dataclass
class SandboxConfig:
    # --- generated data -------------------------------------------------------------------------
    occurrences: int = 10_000
    seed: int = 42
    #: number of generated species (the named species of the contract come on top).
    species: int = 1_500

    # --- GBIF limits ------------------------------------------------------------------------------
    max_offset: int = 100_000
    max_limit: int = 300
    max_species_limit: int = 1_000

    # --- downloads --------------------------------------------------------------------------------
    username: str = "sandbox"
    password: str = "sandbox"
    #: seconds spent in PREPARING, then in RUNNING (the archive must also be built before SUCCEEDED).
    download_seconds: tuple[float, float] = (1.0, 2.0)
    #: GBIF allows about 3 simultaneous downloads per user, then answers 420.
    max_running_downloads: int = 3
    #: force every download to end in this status (FAILED, KILLED, FILE_ERASED, …); None = SUCCEEDED.
    #: A single download can be forced with the keyword ``sandbox:<STATUS>`` in its description.
    download_final_status: str | None = None
    #: GBIF returns the existing key when the same user repeats an identical request.
    dedupe_downloads: bool = True
    #: where archives are written; None = a temporary directory removed when the process exits.
    work_dir: str | None = None
    #: DWCA ``occurrence.txt`` with exactly the columns of real GBIF downloads. Real downloads have
    #: no ``publishingOrgKey`` (reference real-world.md); snapshots take the publisher from the
    #: registry (``gbifdl_assets.gbif.registry``, which the sandbox serves). False adds the column
    #: back, only for tests of that older picture. SIMPLE_CSV always has it, as GBIF's does.
    real_dwca_columns: bool = True
    #: where the data entries of DWCA downloads are kept between runs (:mod:`.archive_cache`), so
    #: that a load run does not pay for rendering the same 10 M records again; None = no cache.
    archive_cache_dir: str | None = None

    # --- media ------------------------------------------------------------------------------------
    #: base URL written into media identifiers; None = the URL the request came in on.
    media_base_url: str | None = None
    #: fraction of generated media URLs that misbehave (deterministically, per URL).
    media_fault_rate: float = 0.02
    media_size: tuple[int, int] = (320, 240)
    media_jpeg_quality: int = 80
    #: share of records whose first image is a copy of an earlier record's (same taxon): identical bytes
    #: or resized and re-encoded, under the record's own URL; ground truth in .duplicates
    media_duplicate_rate: float = 0.03
    #: seconds a ``slow`` fault takes to deliver the body; a ``timeout`` fault waits this long first.
    media_slow_seconds: float = 2.0
    media_timeout_seconds: float = 30.0
    #: GBIF's image cache (``/v1/image/cache/occurrence/{gbifID}/media/{md5}``) answers 503 (switchable
    #: at runtime through /sandbox/faults)
    image_cache_down: bool = False
    #: media served from several host names on loopback addresses, each with its own manners (rate
    #: limits, slowness, robots.txt, opt-out headers, dead links, redirects…; see .hosts); empty:
    #: media under the API's own address, as before. Also ``"default"``, a JSON list or ``@file``.
    media_hosts: tuple[MediaHost, ...] = field(default_factory=tuple)

    # --- API faults -------------------------------------------------------------------------------
    #: answer every Nth API request with 429 / 503 (0 = never).
    api_429_every: int = 0
    api_503_every: int = 0
    #: only requests whose path starts with this prefix are counted for the faults above.
    api_fault_path_prefix: str = "/v1/"
    #: ``Retry-After`` seconds sent with 429/503 (GBIF sends 3 or 31; small by default so tests stay fast).
    retry_after: int = 1

    # --- misc -------------------------------------------------------------------------------------
    #: extra per-request latency in seconds for API calls (simulates a far-away server).
    api_latency: float = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the field and the fix when a value cannot work."""
        problems = []
        if self.occurrences < 0:
            problems.append(f"occurrences={self.occurrences}: must be >= 0")
        if self.species < 10:
            problems.append(f"species={self.species}: must be >= 10 so the taxonomy has some breadth")
        if len(self.download_seconds) != 2 or min(self.download_seconds) < 0:
            problems.append(f"download_seconds={self.download_seconds!r}: give two non-negative numbers")
        if not 0.0 <= self.media_fault_rate <= 1.0:
            problems.append(f"media_fault_rate={self.media_fault_rate}: must be between 0 and 1")
        if (
            self.download_final_status is not None
            and self.download_final_status.upper() not in DOWNLOAD_FAULT_STATUSES
        ):
            problems.append(
                f"download_final_status={self.download_final_status!r}: use one of "
                f"{', '.join(DOWNLOAD_FAULT_STATUSES)} or None"
            )
        if self.max_offset <= 0 or self.max_limit <= 0:
            problems.append("max_offset and max_limit must be positive")
        try:
            self.media_hosts = parse_media_hosts(
                list(self.media_hosts) if isinstance(self.media_hosts, tuple) else self.media_hosts
            )
        except (ValueError, TypeError, OSError) as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("Invalid sandbox configuration: " + "; ".join(problems))
