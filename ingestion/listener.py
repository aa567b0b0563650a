"""The connection listener of one symbol's feed: frames in, ticks to the writer.

Runs in the feed's connection thread (``ingestion.connection.Connection`` calls it): parses
each frame at the edge, hands the tick to the gap tracker (``ingestion.gaps``, which this
thread owns), and carries out its decisions: ticks to the writer in one batch per burst of
frames, owed ranges and questions to the repair worker (``ingestion.repair``), rejects
counted. Between frames (``on_tick``) it applies REST's answers (verdicts, probes) and
schedules the quiet-or-stale probe.
"""

from __future__ import annotations

import collections
import logging
import queue

from formats.wire import ParseError, parse_message
from ingestion.connection import Connection
from ingestion.gaps import HISTORY, GapTracker, Step
from ingestion.repair import ProbeResult, RepairWorker
from ingestion.shared import FeedCore
from storage.records import Tick

__all__ = ["FeedListener"]

log = logging.getLogger(__name__)

#: Most live ticks handed to the writer as one item (one burst of frames is usually less).
_BATCH_MAX = 1000


class FeedListener:
    """``ConnectionListener`` of one feed (module docstring)."""

    def __init__(
        self, core: FeedCore, tracker: GapTracker, worker: RepairWorker, ws_url: str
    ) -> None:
        self.core = core
        self.tracker = tracker
        self._worker = worker
        self._ws_url = ws_url
        self._stream = core.settings.stream
        self._batch: list[Tick] = []
        self.open = False
        self.ever_opened = False
        self.connected_ms = 0
        self._messages_at_open = 0
        self._next_probe = 0.0
        self._probe_in_flight = False
        self._trade_seen = False
        self.last_trade_mono: float | None = None
        self._rates: collections.deque[tuple[float, int]] = collections.deque(maxlen=12)

    def run(self, conn: Connection) -> None:
        """The connection thread: wait for the start-up resume point, then read until stop."""
        core = self.core
        # History first sets the resume point, so the first live id can reveal the hole.
        while not core.history_ready.wait(0.2):
            if core.stop.is_set():
                return
        try:
            conn.run()
        except Exception as exc:  # a bug must show in the status, not vanish
            log.exception("%s: feed thread crashed", core.symbol)
            core.fatal = True
            core.error(f"feed thread crashed: {exc!r}")
        finally:
            self.flush()
            self.open = False

    # --- ConnectionListener ------------------------------------------------------------------
    def on_connecting(self, url: str, attempt: int) -> None:
        log.debug("%s: connecting to %s (attempt %d)", self.core.symbol, url, attempt)

    def on_open(self, url: str, planned: bool) -> None:
        c = self.core.c
        if planned:
            c.planned_reconnects += 1
        elif self.ever_opened:
            c.reconnects += 1
        self.ever_opened = True
        self.open = True
        self.connected_ms = self.core.clock.now_ms()
        self._messages_at_open = c.messages
        self._next_probe = 0.0
        self.tracker.new_connection()
        log.info("%s: connected to %s", self.core.symbol, url)

    def on_close(self, reason: str, planned: bool) -> None:
        self.flush()
        self.open = planned
        if reason != "stopped" and not planned:
            log.warning("%s: %s", self.core.symbol, reason)
            self.core.error(reason)

    def on_wait(self, delay_s: float, reason: str) -> None:
        log.info("%s: reconnecting in %.2f s (%s)", self.core.symbol, delay_s, reason)

    def on_message(self, payload: bytes) -> None:
        try:
            tick = parse_message(payload, self._stream)
        except ParseError as exc:
            self._reject(exc, payload)
            return
        except Exception as exc:  # no frame may kill the feed (issue 14)
            # RecursionError (deep nesting), MemoryError, a parser bug: reject the frame.
            self._reject(ParseError("unparseable", f"{type(exc).__name__}: {exc}"[:120]), payload)
            return
        if tick.symbol != self.core.symbol:
            self._reject(ParseError("wrong_symbol", tick.symbol), payload)
            return
        self._apply(self.tracker.accept(tick))

    def on_burst_end(self) -> None:
        if self._batch:
            self.flush()

    def on_tick(self, connected_s: float) -> str | None:
        self._settle_suspects()
        if self._batch:
            self.flush()
        core = self.core
        now = core.clock.monotonic()
        if self._trade_seen:
            self._trade_seen = False
            self.last_trade_mono = now
        if not self._rates or now - self._rates[-1][0] >= 1.0:
            self._rates.append((now, core.c.messages))
        try:
            result = self._worker.probe_results.get_nowait()
        except queue.Empty:
            result = None
        if result is not None:
            reason = self._apply_probe(result)
            if reason:
                return reason
        settings = core.settings
        if core.c.messages > self._messages_at_open and self.last_trade_mono is not None:
            due = now - self.last_trade_mono >= settings.stale_after_s
        else:  # not one trade on this connection yet
            due = connected_s >= settings.first_data_timeout_s
        if due and not self._probe_in_flight and now >= self._next_probe:
            self._probe_in_flight = True
            self._next_probe = now + settings.stale_probe_interval_s
            self._worker.probe(self.tracker.last_id)
        return None

    # --- carrying out the tracker's decisions ---------------------------------------------
    def _apply(self, step: Step) -> None:
        core = self.core
        for owed in step.owed:
            if owed.kind == HISTORY:
                log.info("%s: %s owes ids %d..%d", core.symbol, owed.where, owed.first, owed.last)
            else:
                log.warning(
                    "%s: gap of %d ids (%d..%d) %s",
                    core.symbol,
                    owed.ids,
                    owed.first,
                    owed.last,
                    owed.where,
                )
            self._worker.owe(owed)
        if step.store:
            self._trade_seen = True
            core.stale = False
            core.c.messages += len(step.store)
            self._batch.extend(step.store)
            if len(self._batch) >= _BATCH_MAX:
                self.flush()
        for tick in step.ask:
            self._worker.confirm(tick)
        for rejected in step.rejected:
            self._reject(ParseError(rejected.reason, rejected.detail), str(rejected.tick).encode())
        for message in step.errors:
            log.warning("%s: %s", core.symbol, message)
            core.error(message)
        if step.history_done:
            core.history_loaded = True

    def _settle_suspects(self) -> None:
        """Apply REST's verdicts on held suspect ids; ask again where REST did not answer."""
        verdicts = self._worker.verdicts
        while not verdicts.empty():
            self._apply(self.tracker.settle(verdicts.get()))
        again = self.tracker.due()
        if again is not None:
            self._worker.confirm(again)

    def _apply_probe(self, result: ProbeResult) -> str | None:
        """Act on a probe's answer; returns a reason to replace the socket, if stale."""
        self._probe_in_flight = False
        if result.error:
            self.core.error(f"REST probe failed: {result.error}")
            return None
        step = self.tracker.probe(result.latest_id, result.latest_ms, self.connected_ms)
        self._apply(step)
        if step.recheck:  # too fresh to judge: look again soon
            soon = self.core.clock.monotonic() + self.core.settings.stale_grace_s
            self._next_probe = min(self._next_probe, soon)
        if step.stale_id is not None:
            return self._go_stale(step.stale_id)
        return None

    def _go_stale(self, latest_id: int) -> str:
        core = self.core
        core.stale = True
        age_s = (core.clock.now_ms() - self.connected_ms) / 1000
        reason = (
            f"connected but no data: REST shows trades up to id {latest_id} after this "
            f"connection opened {age_s:.0f} s ago, the socket delivered none "
            f"(wrong route? {self._ws_url})"
        )
        core.error(reason)
        log.warning("%s: %s", core.symbol, reason)
        return reason

    def flush(self) -> None:
        """Hand the ticks parsed from the current burst of frames to the writer, as one item."""
        batch, self._batch = self._batch, []
        if batch:
            writer = self.core.writer
            writer.put_many(batch)
            if self.core.settings.yield_to_commits:
                writer.yield_to_commit()

    def _reject(self, exc: ParseError, payload: bytes) -> None:
        core = self.core
        c = core.c
        c.rejected += 1
        c.reject_reasons[exc.reason] += 1
        if c.rejected <= core.settings.log_rejects_max or c.rejected % 1000 == 0:
            log.warning(
                "%s: rejected message #%d (%s): %r",
                core.symbol,
                c.rejected,
                exc,
                bytes(payload[:120]),
            )

    # --- read by status() -------------------------------------------------------------------
    def rate(self) -> float:
        samples = list(self._rates)
        if len(samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def idle_s(self, connected_for_s: float | None) -> float:
        """Seconds since the last trade (since connecting, if none yet)."""
        last = self.last_trade_mono
        if last is None:
            return connected_for_s or 0.0
        return self.core.clock.monotonic() - last
