"""API fault injection: every Nth API request answered with 429 or 503.

Switchable at runtime (``POST /sandbox/faults``) so one running sandbox can serve a clean phase and a
throttled phase of the same test. The 429 body and headers copy GBIF's (a JSON array of two sentences,
``Retry-After``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Any

from .config import SandboxConfig

GBIF_429_BODY = [
    "To download GBIF occurrence data in bulk, please request a download through the website "
    "<https://www.gbif.org/occurrence/search>, the API <https://techdocs.gbif.org/en/data-use/api-downloads>, "
    "or use the free public cloud datasets <https://www.gbif.org/occurrence-snapshot>.",
    "We can also provide data about downloads, datasets, citations and so on in CSV or some other format, "
    "please contact helpdesk@gbif.org.",
]


@dataclass
class FaultSettings:
    api_429_every: int = 0
    api_503_every: int = 0
    api_fault_path_prefix: str = "/v1/"
    retry_after: int = 1
    api_latency: float = 0.0
    media_fault_rate: float = 0.02
    #: GBIF's image cache (/v1/image/cache/…) answers 503 with an HTML page: "the cache is down too"
    image_cache_down: bool = False


class FaultState:
    def __init__(self, config: SandboxConfig) -> None:
        self._defaults = FaultSettings(
            api_429_every=config.api_429_every,
            api_503_every=config.api_503_every,
            api_fault_path_prefix=config.api_fault_path_prefix,
            retry_after=config.retry_after,
            api_latency=config.api_latency,
            media_fault_rate=config.media_fault_rate,
            image_cache_down=config.image_cache_down,
        )
        self.settings = FaultSettings(**asdict(self._defaults))
        self._lock = threading.Lock()
        self.counter = 0
        self.injected = {"429": 0, "503": 0}

    def update(self, values: dict[str, Any]) -> FaultSettings:
        """Apply a partial update; raises ValueError naming an unknown or invalid field."""
        if not isinstance(values, dict):
            raise ValueError('Send a JSON object, e.g. {"api_429_every": 3}')
        known = asdict(self.settings)
        with self._lock:
            for k, v in values.items():
                if k == "reset":
                    continue
                if k not in known:
                    raise ValueError(f"Unknown fault setting {k!r}; known: {', '.join(known)}")
                typ = type(known[k])
                if typ is bool and not isinstance(v, bool):
                    raise ValueError(f"Fault setting {k!r} must be true or false, got {v!r}")
                try:
                    setattr(self.settings, k, typ(v))
                except (TypeError, ValueError):
                    raise ValueError(f"Fault setting {k!r} must be a {typ.__name__}, got {v!r}") from None
            if values.get("reset"):
                self.counter = 0
        return self.settings

    def reset(self) -> FaultSettings:
        with self._lock:
            self.settings = FaultSettings(**asdict(self._defaults))
            self.counter = 0
            self.injected = {"429": 0, "503": 0}
        return self.settings

    def check(self, path: str) -> str | None:
        """'429', '503' or None for this API request (counts only paths under the prefix)."""
        s = self.settings
        if not (s.api_429_every or s.api_503_every) or not path.startswith(s.api_fault_path_prefix):
            return None
        with self._lock:
            self.counter += 1
            n = self.counter
            fault = None
            if s.api_429_every and n % s.api_429_every == 0:
                fault = "429"
            elif s.api_503_every and n % s.api_503_every == 0:
                fault = "503"
            if fault:
                self.injected[fault] += 1
            return fault

    def describe(self) -> dict[str, Any]:
        return {**asdict(self.settings), "requests_counted": self.counter, "injected": dict(self.injected)}


def body_429() -> bytes:
    return json.dumps(GBIF_429_BODY).encode()
