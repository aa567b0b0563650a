"""The feed's clocks as one injectable object: wall time in ms and monotonic seconds.

Every timer of a feed (probe schedule, quiet/stale judgement, repair retry delays, suspect
retries, gap timestamps) reads these, never ``time`` directly, so a test can move a feed's
time forward instead of waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from storage.timefmt import now_ms

__all__ = ["SYSTEM_CLOCK", "Clock"]


@dataclass(frozen=True, slots=True)
class Clock:
    """``now_ms()``: wall-clock UTC ms (compared with exchange trade times);
    ``monotonic()``: seconds for intervals and schedules."""

    now_ms: Callable[[], int] = now_ms
    monotonic: Callable[[], float] = time.monotonic


#: The real clocks.
SYSTEM_CLOCK = Clock()
