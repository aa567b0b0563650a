"""Owed data: repairs that must be retried until their ids are stored, and the start-up id check.

A range of ids is *owed* from the moment a feed means to store it (start-up history below
the first live id, a gap, a backfill) until it is stored or declared unrepairable. It is in
the gap ledger (storage's ``gaps`` table) before it is fetched, so a stop at any moment
leaves a record that the next start resumes (``open``/``failed`` gaps). A repair that REST
fails waits on a :class:`RetryShelf` and runs again after a backoff delay in the same run.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from storage.records import Gap

__all__ = ["RetryShelf", "check_stored_ids"]

log = logging.getLogger(__name__)

J = TypeVar("J")


class RetryShelf(Generic[J]):
    """Jobs waiting for their next attempt, each with its own iterator of delays (seconds).

    ``clock`` is injectable (monotonic seconds). Thread-safe: the repair thread pushes and
    pops, status readers call ``snapshot``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, J]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def put(self, job: J, delays: Iterator[float]) -> float:
        """Shelve ``job`` for the next delay of ``delays``; returns that delay in seconds."""
        delay_s = max(0.0, float(next(delays)))
        with self._lock:
            heapq.heappush(self._heap, (self._clock() + delay_s, next(self._seq), job))
        return delay_s

    def due_in_s(self) -> float | None:
        """Seconds until the earliest job is due (0 if overdue); None when empty."""
        with self._lock:
            if not self._heap:
                return None
            return max(0.0, self._heap[0][0] - self._clock())

    def pop_due(self) -> J | None:
        """The earliest job if it is due, else None."""
        with self._lock:
            if self._heap and self._heap[0][0] <= self._clock():
                return heapq.heappop(self._heap)[2]
            return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)


def check_stored_ids(storage: Any, symbol: str, now_ms: int) -> list[Gap]:
    """Record every hole in ``symbol``'s stored ids that no gap covers; return the new gaps.

    Cheap (``storage.Writer.unrecorded_holes``: ids above the last check point only, from the
    primary key); the check point then moves to the highest stored id. Holes come from
    stores no run recorded as owed (a database written by an older version, say).
    """
    holes, top = storage.unrecorded_holes(symbol)
    found = []
    for first, last in holes:
        gap = Gap(
            symbol,
            first,
            last,
            now_ms,
            status="open",
            detail="found by the start-up id check: stored ids not contiguous",
        )
        gap_id = storage.record_gap(gap)
        log.warning(
            "%s: stored ids skip %d..%d (%d ids) with no gap recorded; recorded as gap %d",
            symbol,
            first,
            last,
            last - first + 1,
            gap_id,
        )
        found.append(gap)
    if top is not None:
        storage.set_id_check(symbol, top)
    return found
