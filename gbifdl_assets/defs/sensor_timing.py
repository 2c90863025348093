"""How often the sensors look: each sensor's own interval, or one for all (``GBIFDL_SENSOR_SECONDS``).

The defaults suit a deployment (the spec folder and automation every 30 s, rules, flags and GBIF's
downloads every minute). A development stack or a test that walks a spec through every hop waits
for each of those ticks in turn; ``GBIFDL_SENSOR_SECONDS=5`` makes every sensor look every 5 s
instead. Read once when the code loads, like the shard count.
"""

from __future__ import annotations

import os

SENSOR_SECONDS_VARIABLE = "GBIFDL_SENSOR_SECONDS"


def sensor_seconds(default: int) -> int:
    """The minimum interval of a sensor whose own is ``default``; a ValueError naming the fix when
    ``GBIFDL_SENSOR_SECONDS`` is not a whole number of seconds from 1 to 3600."""
    raw = os.environ.get(SENSOR_SECONDS_VARIABLE, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 3600:
        raise ValueError(
            f"{SENSOR_SECONDS_VARIABLE}={raw!r} is not an interval; give a whole number of seconds "
            "from 1 to 3600, or leave it unset for each sensor's own (30 or 60 s)"
        )
    return int(raw)


def every(seconds: int) -> str:
    """``Every minute`` / ``Every 30 s``: how a sensor's description says when it looks."""
    return "Every minute" if seconds == 60 else f"Every {seconds} s"
