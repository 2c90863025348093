"""HTTP header values that both of the project's HTTP clients read the same way.

The GBIF API client (``gbif/http.py``, requests) and the image downloader (``media/fetch.py``, its
own asyncio client) both honour a server's ``Retry-After``; one reading of the header keeps them
from disagreeing on how long a throttled server asked us to wait.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None if it is absent or not understood.

    The header is either delta-seconds (a non-negative integer, RFC 9110) or an HTTP date; a date
    in the past means "now" (0.0). ``now`` is the current time as epoch seconds (``time.time()``
    when not given), so tests can pin the clock. A date without a zone (``-0000``) is read as UTC,
    as RFC 5322 says, not as this machine's local time.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
