"""What the threads of one symbol's feed share: settings, clocks, REST, the writer, the stop
event, the repair job queue, the owed ranges, counters and the last error.

Who writes what: the connection thread (``ingestion.listener``) the live counters,
``stale`` and the queue of jobs; the repair thread (``ingestion.repair``) the REST counters,
``owed``, the retry shelf and ``history_loaded``; anyone the last error (under a lock).
``status()`` (any thread) only reads.
"""

from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from ingestion.clock import Clock
from ingestion.config import FeedSettings
from ingestion.owed import RetryShelf
from ingestion.rest import RestClient
from ingestion.writer import TickWriter

__all__ = ["Counters", "FeedCore"]


@dataclass
class Counters:
    messages: int = 0  # accepted from the socket (connection thread)
    rejected: int = 0
    reconnects: int = 0
    planned_reconnects: int = 0
    # Gaps an earlier run left owed, retried by this run (repair thread); the live ones are
    # counted by the gap tracker.
    retried_gaps: int = 0
    retried_ids: int = 0
    gaps_repaired: int = 0
    ids_backfilled: int = 0
    reject_reasons: collections.Counter[str] = field(default_factory=collections.Counter)


class FeedCore:
    """The shared state of one symbol's feed (module docstring)."""

    def __init__(
        self,
        symbol: str,
        settings: FeedSettings,
        *,
        rest: RestClient,
        writer: TickWriter,
        clock: Clock,
    ) -> None:
        self.symbol = symbol
        self.settings = settings
        self.rest = rest
        self.writer = writer
        self.clock = clock
        self.stop = threading.Event()
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.job_active = False
        self.backfill_todo = 0  # ids still to fetch in the running REST job
        # Owed data: repairs recorded and not finished (by id(job)), and those REST failed,
        # waiting for their next attempt.
        self.owed: dict[int, Any] = {}
        self.shelf: RetryShelf[Any] = RetryShelf(clock.monotonic)
        self.c = Counters()
        self.history_loaded = not settings.history
        self.history_ready = threading.Event()
        self.stale = False
        self.fatal = False
        self.last_error = ""
        self.last_error_ms: int | None = None
        self._lock = threading.Lock()

    def error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
            self.last_error_ms = self.clock.now_ms()

    def busy(self) -> bool:
        """A REST job is running or queued."""
        return self.job_active or not self.jobs.empty()
