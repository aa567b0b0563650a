"""One symbol's feed: a thin coordinator of three parts, each in its own module.

- ``ingestion.gaps.GapTracker``: the pure id bookkeeping (duplicates, gaps, suspects, the
  resume point); owned by the connection thread.
- ``ingestion.listener.FeedListener``: the connection thread (``ingestion.connection``
  calls it): parses each frame at the edge, asks the tracker, queues ticks to the writer.
- ``ingestion.repair.RepairWorker``: the repair thread: every REST call (start-up history,
  gap backfill with retries, quiet-or-stale probes, suspect ids), so that a slow or
  rate-limited REST call never stalls the live stream.

They share ``ingestion.shared.FeedCore`` (settings, clocks, REST, writer, stop event, job
queue, owed ranges, counters). ``SymbolFeed`` builds them, starts and stops the two daemon
threads and assembles the status any thread may read. Every clock is the injected
``ingestion.clock.Clock``.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from ingestion.backoff import BackoffFactory, ConnectLimiter
from ingestion.clock import SYSTEM_CLOCK, Clock
from ingestion.config import FeedSettings
from ingestion.connection import Connection
from ingestion.gaps import GapTracker
from ingestion.listener import FeedListener
from ingestion.repair import RepairWorker
from ingestion.rest import RestClient
from ingestion.shared import FeedCore
from ingestion.status import FeedState, SymbolStatus
from ingestion.writer import TickWriter
from storage.records import Gap

__all__ = ["SymbolFeed"]

log = logging.getLogger(__name__)

#: Ticks refused in a row (none stored between) after which a symbol's state is ERROR:
#: one hostile print is isolated and the feed stays live; a symbol storage refuses entirely
#: is storing nothing and says so.
REFUSED_IN_A_ROW_ERROR = 3


class SymbolFeed:
    """Streams one symbol into a ``TickWriter``; see the module docstring.

    Parameters
    ----------
    symbol : upper-case symbol, already validated against exchangeInfo.
    settings : the feed settings.
    rest : the process's shared REST client.
    writer : the process's one ``TickWriter``.
    limiter : the process's connection-attempt limiter.
    backoff : factory of reconnect delays.
    last_stored_id : the newest id already stored for this symbol (resume point), or None.
    last_stored_ms : the trade time of ``last_stored_id`` if known
        (``storage.Writer.trade_time_ms``): bounds the gap after a restart for the kline
        fallback.
    retry_gaps : gaps an earlier run left ``open`` or ``failed`` (``storage.Writer.open_gaps``);
        repaired by the repair thread after start-up, updating their records.
    retry_gap_times : per ``gap_id`` of ``retry_gaps``, the stored trade times of the ids
        just before and just after the gap (None where not stored), for the kline fallback.
    repair_backoff : factory of delays (seconds) between attempts of a repair REST failed;
        default ``backoff(settings.repair_retry_initial_s, 2, settings.repair_retry_max_s)``.
    clock : the feed's clocks (wall ms, monotonic s); tests move it instead of waiting.
    """

    def __init__(
        self,
        symbol: str,
        settings: FeedSettings,
        *,
        rest: RestClient,
        writer: TickWriter,
        limiter: ConnectLimiter,
        backoff: BackoffFactory,
        last_stored_id: int | None = None,
        last_stored_ms: int | None = None,
        retry_gaps: Sequence[Gap] = (),
        retry_gap_times: Mapping[int, tuple[int | None, int | None]] | None = None,
        repair_backoff: BackoffFactory | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.symbol = symbol.upper()
        self.settings = settings
        core = FeedCore(self.symbol, settings, rest=rest, writer=writer, clock=clock)
        self._core = core
        self._tracker = GapTracker(
            settings.suspect_id_jump,
            last_id=last_stored_id,
            last_id_ms=last_stored_ms,
            grace_ms=int(settings.stale_grace_s * 1000),
            now_ms=clock.now_ms,
            monotonic=clock.monotonic,
        )
        self._worker = RepairWorker(
            core, self._tracker, repair_backoff, retry_gaps, retry_gap_times
        )
        self._listener = FeedListener(
            core, self._tracker, self._worker, settings.ws_url(self.symbol)
        )
        self._conn = Connection(
            lambda: settings.ws_url(self.symbol),
            self._listener,
            settings,
            stop=core.stop,
            backoff=backoff,
            limiter=limiter,
        )
        self._threads: list[threading.Thread] = []

    # --- life --------------------------------------------------------------------------------
    def start(self) -> SymbolFeed:
        if self._threads:
            return self
        self._threads = [
            threading.Thread(target=self._worker.run, name=f"repair-{self.symbol}", daemon=True),
            threading.Thread(
                target=self._listener.run,
                args=(self._conn,),
                name=f"feed-{self.symbol}",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Signal both threads and close the socket; ``join`` waits for them."""
        self._core.stop.set()
        self._core.jobs.put(None)
        self._conn.abort()

    def join(self, timeout_s: float | None = None) -> bool:
        # Real time, not the feed's injectable clock: this waits for real threads.
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(t.is_alive() for t in self._threads)

    def fail(self, reason: str) -> None:
        """Stop this feed for good with an error (e.g. storage refuses its id kind)."""
        self._core.fatal = True
        self._core.error(reason)
        self.stop()

    # --- status ------------------------------------------------------------------------------
    def _state(self) -> tuple[FeedState, str]:
        """The state, most severe first, and the last error to show with it."""
        core, writer = self._core, self._core.writer
        wstats = writer.stats()
        if core.fatal:
            return FeedState.ERROR, core.last_error
        if core.stop.is_set():
            return FeedState.STOPPED, core.last_error
        if wstats.failing_s > 0:  # never "live" while nothing is stored (issue 14)
            return (
                FeedState.ERROR,
                f"nothing stored for {wstats.failing_s:.0f} s: {wstats.last_error}",
            )
        if not wstats.running:  # the writer thread ended: nothing more is stored
            return (
                FeedState.ERROR,
                f"nothing stored: the storage writer stopped ({wstats.last_error})",
            )
        refused = writer.refused_in_a_row(self.symbol)
        if refused >= REFUSED_IN_A_ROW_ERROR:  # storage refuses this symbol's every tick
            reasons = ", ".join(sorted(writer.rejected(self.symbol))) or "refused"
            return FeedState.ERROR, (
                f"nothing stored: storage refused the last {refused} ticks ({reasons})"
            )
        if wstats.commit_running_s > self.settings.stale_after_s:  # a wedged database
            return FeedState.ERROR, (
                f"nothing stored: a commit has run for {wstats.commit_running_s:.0f} s"
            )
        if core.stale:
            return FeedState.STALE, core.last_error
        if not self._listener.open:
            state = FeedState.RECONNECTING if self._listener.ever_opened else FeedState.CONNECTING
            return state, core.last_error
        if core.busy() or not core.history_loaded:
            return FeedState.BACKFILLING, core.last_error
        if self._listener.idle_s(self._conn.connected_for_s) >= self.settings.quiet_after_s:
            return FeedState.QUIET, core.last_error
        return FeedState.LIVE, core.last_error

    def status(self) -> SymbolStatus:
        core, tracker, listener = self._core, self._tracker, self._listener
        now_ms = core.clock.now_ms()
        c = core.c
        wstats = core.writer.stats()
        state, last_error = self._state()
        last_ms = tracker.last_trade_ms
        owed = list(core.owed.values())
        return SymbolStatus(
            symbol=self.symbol,
            state=state,
            stream=self.settings.stream.value,
            url=self.settings.ws_url(self.symbol),
            connected=listener.open,
            messages=c.messages,
            messages_per_s=round(listener.rate(), 2),
            last_trade_ms=last_ms,
            last_trade_age_s=None
            if last_ms is None
            else round(max(0.0, (now_ms - last_ms) / 1000), 3),
            last_trade_id=tracker.last_id,
            reconnects=c.reconnects,
            planned_reconnects=c.planned_reconnects,
            gaps_found=tracker.gaps_found + c.retried_gaps,
            gaps_repaired=c.gaps_repaired,
            ids_missing=tracker.ids_missing + c.retried_ids,
            ids_backfilled=c.ids_backfilled,
            backfill_pending=core.busy() or len(core.shelf) > 0,
            backfill_todo_ids=core.backfill_todo,
            history_loaded=core.history_loaded,
            owed_ranges=len(owed),
            owed_ids=sum(max(0, j.last - j.first + 1) for j in owed),
            owed_by_time=sum(1 for j in owed if j.from_ms is not None),
            repair_retry_in_s=_round(core.shelf.due_in_s()),
            rejected=c.rejected + sum(core.writer.rejected(self.symbol).values()),
            duplicates=tracker.duplicates,
            stored=core.writer.stored(self.symbol),
            last_error=last_error,
            last_error_ms=core.last_error_ms,
            connected_for_s=None if not listener.open else _round(self._conn.connected_for_s),
            queue_depth=wstats.queued,
            queue_capacity=wstats.capacity,
            queue_blocked_s=wstats.blocked_s,
            updated_ms=now_ms,
        )

    def owed(self) -> list[str]:
        """The ranges this feed recorded as owed and has not stored, one line each (ids,
        or the time they start at when REST has not told the first id yet)."""
        out = []
        for job in sorted(self._core.owed.values(), key=lambda j: j.last):
            if job.from_ms is not None:
                since = datetime.fromtimestamp(job.from_ms / 1000, UTC).isoformat()[:23]
                text = f"trades since {since}Z up to id {job.last}"
            else:
                first = max(job.first, job.next_id or job.first)  # queued pages get stored
                text = f"ids {first}..{job.last} ({job.last - first + 1:,} ids)"
            out.append(f"{text}, {job.kind}")
        return out

    def reject_reasons(self) -> dict[str, int]:
        """Rejected messages by reason, the storage writer's refusals included."""
        mine = self._core.c.reject_reasons
        return dict(mine + collections.Counter(self._core.writer.rejected(self.symbol)))


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)
