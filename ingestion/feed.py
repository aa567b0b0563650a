"""One symbol's feed: connection + parser + gap detection + REST repair + history.

Two daemon threads per symbol: the *connection* thread reads the socket, parses each
frame at the edge, checks the id sequence and queues ticks; the *repair* thread does all
REST work (start-up history, gap backfill, quiet-or-stale probes) so that a slow or
rate-limited REST call never stalls the live stream. The last id seen is owned by the
connection thread; the repair thread only reports back through a slot it reads.

Id sequence rules (``../shared/docs/binance-usdm.md`` §2): aggregate ids ``a`` rise by
exactly one per aggregate, so ``a > last + 1`` is a gap of ``last+1 .. a-1``; ``a <= last``
is a duplicate (overlap after a reconnect) and dropped. Long silences with consecutive
ids are quiet markets, not loss.

Gap life: every range of ids the feed means to store from REST (a gap, and the start-up
history below the first live id) is recorded in storage as ``open`` *before* it is fetched
and updated once its repair ends (``repaired``, ``partial``, ``unrepairable``, ``open``
again if the feed stopped first, or ``failed`` while REST fails: then it is retried in this
run after a backoff delay, see ``ingestion.owed``). Gaps an earlier run left ``open`` or
``failed`` are retried when the feed starts, updating the same record. When REST cannot
tell the history's first id at start, the history is recorded by time (``Gap.from_ts_ms``:
the trades since ``history_trades_s`` before start, up to the first live id) and its first
id is resolved once REST answers. Ids REST no longer has are gone for good; with
``kline_fallback`` the minutes they fall in (known from the trade times around them) get
Binance's 1m klines instead, and the gap's ``detail`` says which minutes: those minutes'
1m and 5m bars are then complete, their ticks and 1s bars are not.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from formats.wire import (
    KLINE_COLUMNS,
    ParseError,
    StreamKind,
    parse_message,
    parse_rest_agg_trade,
    parse_rest_kline,
    parse_rest_trade,
)
from ingestion import backoff as _backoff
from ingestion.backoff import BackoffFactory, ConnectLimiter
from ingestion.config import FeedSettings
from ingestion.connection import Connection
from ingestion.owed import RetryShelf
from ingestion.rest import RestClient, RestError
from ingestion.status import FeedState, SymbolStatus
from ingestion.suspect import SuspectIds, Verdict, confirm_id
from ingestion.writer import TickWriter
from storage.records import Gap, Tick

__all__ = ["SymbolFeed"]

log = logging.getLogger(__name__)

#: Ticks refused in a row (none stored between) after which a symbol's state is ERROR:
#: one hostile print is isolated and the feed stays live; a symbol storage refuses entirely
#: is storing nothing and says so.
REFUSED_IN_A_ROW_ERROR = 3

#: Most live ticks handed to the writer as one item (one burst of frames is usually less).
_BATCH_MAX = 1000

#: Consecutive duplicate ids after which the stream is reported as going backwards.
_BACKWARDS_AFTER = 5000


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _GapRef:
    """Storage's id for a recorded gap, filled in by the writer thread (FIFO: before updates)."""

    gap: Gap
    gap_id: int | None = None


@dataclass
class _Backfill:
    """Fetch ids ``first..last`` from REST; recorded in storage (``ref``) before it is fetched.

    ``kind`` is ``history`` (start-up loading, not counted as a hole) or ``gap``.
    ``from_ms`` set: the range is known by time only (the trades at or after it up to
    ``last``); ``first`` is resolved from REST before fetching.
    """

    first: int
    last: int
    kind: str
    ref: _GapRef | None = None
    reason: str = ""
    completes_history: bool = False
    #: Trade time of id ``first - 1`` (a lower bound of the missing trades' times), if known.
    before_ms: int | None = None
    #: Trade time of id ``last + 1``, or another upper bound of the missing trades' times.
    after_ms: int | None = None
    from_ms: int | None = None
    #: Delays (seconds) before each retry after REST failed; made at the first failure.
    delays: Any = None
    attempts: int = 0
    #: Ids below this were fetched and queued for storage by the running attempt (progress).
    next_id: int | None = None


@dataclass
class _Hole:
    """Ids ``first..last`` of a gap that REST could not supply, and the trade times around them
    (``lo_ms`` of the id before, ``hi_ms`` of the id after; None if unknown)."""

    first: int
    last: int
    lo_ms: int | None
    hi_ms: int | None = None


@dataclass
class _Probe:
    """Ask REST for the newest trade to tell a quiet market from a stale socket."""

    last_id: int | None
    connected_ms: int
    idle_s: float


@dataclass
class _Confirm:
    """Ask REST whether a far-ahead id exists (``ingestion.suspect``)."""

    tick: Tick


@dataclass
class _Counters:
    messages: int = 0
    rejected: int = 0
    duplicates: int = 0
    reconnects: int = 0
    planned_reconnects: int = 0
    gaps_found: int = 0
    gaps_repaired: int = 0
    ids_missing: int = 0
    ids_backfilled: int = 0
    reject_reasons: collections.Counter[str] = field(default_factory=collections.Counter)


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
    ) -> None:
        self.symbol = symbol.upper()
        self.settings = settings
        self._rest = rest
        self._writer = writer
        self._stop = threading.Event()
        self._stream = settings.stream
        self._yield_to_commits = settings.yield_to_commits
        self._conn = Connection(
            lambda: settings.ws_url(self.symbol),
            self,
            settings,
            stop=self._stop,
            backoff=backoff,
            limiter=limiter,
        )
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._job_active = False
        self._threads: list[threading.Thread] = []
        self._c = _Counters()
        # Owned by the connection thread:
        self._batch: list[Tick] = []
        self._dup_run = 0
        self._backfill_todo = 0  # ids still to fetch in the running REST job
        self._last_id: int | None = last_stored_id
        # Trade time of ``_last_id``, when known.
        self._last_id_ms: int | None = last_stored_ms if last_stored_id is not None else None
        self._pending_kind: str | None = "gap" if last_stored_id is not None else None
        self._last_trade_ms: int | None = None
        self._trade_seen = False
        self._last_trade_mono: float | None = None
        self._connected_ms = 0
        self._open = False
        self._ever_opened = False
        self._next_probe = 0.0
        self._messages_at_open = 0
        self._probe_in_flight = False
        # REST's newest id at a probe that found it too fresh to judge (None: no such probe).
        self._rest_ahead_id: int | None = None
        self._rates: collections.deque[tuple[float, int]] = collections.deque(maxlen=12)
        # Written by the repair thread, read by the connection thread:
        self._probe_results: queue.SimpleQueue[tuple[int, int, str]] = queue.SimpleQueue()
        self._verdicts: queue.SimpleQueue[Verdict] = queue.SimpleQueue()
        self._suspects = SuspectIds(settings.suspect_id_jump)  # owned by the connection thread
        # Shared, display only:
        self._stale = False
        self._fatal = False
        self._history_loaded = not settings.history
        self._history_ready = threading.Event()
        self._retry_gaps = [g for g in retry_gaps if g.gap_id is not None]
        self._retry_gap_times = dict(retry_gap_times or {})
        self._last_error = ""
        self._last_error_ms: int | None = None
        self._lock = threading.Lock()
        # Owed data: repairs recorded and not finished (by id(job)), and those REST failed,
        # waiting for their next attempt.
        self._owed: dict[int, _Backfill] = {}
        self._shelf: RetryShelf[_Backfill] = RetryShelf()
        self._repair_backoff = repair_backoff or (
            lambda: _backoff.backoff(
                settings.repair_retry_initial_s,
                2.0,
                max(settings.repair_retry_initial_s, settings.repair_retry_max_s),
                settings.backoff_jitter,
            )
        )
        # Start of the history window when REST could not tell its first id at start.
        self._history_from_ms: int | None = None

    # --- life --------------------------------------------------------------------------------
    def start(self) -> SymbolFeed:
        if self._threads:
            return self
        self._threads = [
            threading.Thread(target=self._repair_loop, name=f"repair-{self.symbol}", daemon=True),
            threading.Thread(target=self._connection_main, name=f"feed-{self.symbol}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Signal both threads and close the socket; ``join`` waits for them."""
        self._stop.set()
        self._jobs.put(None)
        self._conn.abort()

    def join(self, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(t.is_alive() for t in self._threads)

    def fail(self, reason: str) -> None:
        """Stop this feed for good with an error (e.g. storage refuses its id kind)."""
        self._fatal = True
        self._error(reason)
        self.stop()

    # --- status ------------------------------------------------------------------------------
    def status(self) -> SymbolStatus:
        now_ms = _now_ms()
        c = self._c
        wstats = self._writer.stats()
        storage_rejects = self._writer.rejected(self.symbol)
        last_error = self._last_error
        if self._fatal:
            state = FeedState.ERROR
        elif self._stop.is_set():
            state = FeedState.STOPPED
        elif wstats.failing_s > 0:  # never "live" while nothing is stored (issue 14)
            state = FeedState.ERROR
            last_error = f"nothing stored for {wstats.failing_s:.0f} s: {wstats.last_error}"
        elif not wstats.running:  # the writer thread ended: nothing more is stored
            state = FeedState.ERROR
            last_error = f"nothing stored: the storage writer stopped ({wstats.last_error})"
        elif (refused := self._writer.refused_in_a_row(self.symbol)) >= REFUSED_IN_A_ROW_ERROR:
            state = FeedState.ERROR  # storage refuses this symbol's every tick: none stored
            reasons = ", ".join(sorted(storage_rejects)) or "refused"
            last_error = f"nothing stored: storage refused the last {refused} ticks ({reasons})"
        elif wstats.commit_running_s > self.settings.stale_after_s:  # a wedged database
            state = FeedState.ERROR
            last_error = f"nothing stored: a commit has run for {wstats.commit_running_s:.0f} s"
        elif self._stale:
            state = FeedState.STALE
        elif not self._open:
            state = FeedState.RECONNECTING if self._ever_opened else FeedState.CONNECTING
        elif self._job_active or not self._jobs.empty() or not self._history_loaded:
            state = FeedState.BACKFILLING
        elif self._is_quiet():
            state = FeedState.QUIET
        else:
            state = FeedState.LIVE
        last_ms = self._last_trade_ms
        owed = list(self._owed.values())
        return SymbolStatus(
            symbol=self.symbol,
            state=state,
            stream=self.settings.stream.value,
            url=self.settings.ws_url(self.symbol),
            connected=self._open,
            messages=c.messages,
            messages_per_s=round(self._rate(), 2),
            last_trade_ms=last_ms,
            last_trade_age_s=None
            if last_ms is None
            else round(max(0.0, (now_ms - last_ms) / 1000), 3),
            last_trade_id=self._last_id,
            reconnects=c.reconnects,
            planned_reconnects=c.planned_reconnects,
            gaps_found=c.gaps_found,
            gaps_repaired=c.gaps_repaired,
            ids_missing=c.ids_missing,
            ids_backfilled=c.ids_backfilled,
            backfill_pending=self._job_active or not self._jobs.empty() or len(self._shelf) > 0,
            backfill_todo_ids=self._backfill_todo,
            history_loaded=self._history_loaded,
            owed_ranges=len(owed),
            owed_ids=sum(max(0, j.last - j.first + 1) for j in owed),
            owed_by_time=sum(1 for j in owed if j.from_ms is not None),
            repair_retry_in_s=_round(self._shelf.due_in_s()),
            rejected=c.rejected + sum(storage_rejects.values()),
            duplicates=c.duplicates,
            stored=self._writer.stored(self.symbol),
            last_error=last_error,
            last_error_ms=self._last_error_ms,
            connected_for_s=None if not self._open else _round(self._conn.connected_for_s),
            queue_depth=wstats.queued,
            queue_capacity=wstats.capacity,
            queue_blocked_s=wstats.blocked_s,
            updated_ms=now_ms,
        )

    def owed(self) -> list[str]:
        """The ranges this feed recorded as owed and has not stored, one line each (ids,
        or the time they start at when REST has not told the first id yet)."""
        out = []
        for job in sorted(self._owed.values(), key=lambda j: j.last):
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
        return dict(
            self._c.reject_reasons + collections.Counter(self._writer.rejected(self.symbol))
        )

    def _rate(self) -> float:
        samples = list(self._rates)
        if len(samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _is_quiet(self) -> bool:
        last = self._last_trade_mono
        idle = (
            (time.monotonic() - last) if last is not None else (self._conn.connected_for_s or 0.0)
        )
        return idle >= self.settings.quiet_after_s

    def _error(self, message: str) -> None:
        with self._lock:
            self._last_error = message
            self._last_error_ms = _now_ms()

    # --- the connection thread ---------------------------------------------------------------
    def _connection_main(self) -> None:
        # History first sets the resume point, so the first live id can reveal the hole.
        while not self._history_ready.wait(0.2):
            if self._stop.is_set():
                return
        try:
            self._conn.run()
        except Exception as exc:  # a bug must show in the status, not vanish
            log.exception("%s: feed thread crashed", self.symbol)
            self._fatal = True
            self._error(f"feed thread crashed: {exc!r}")
        finally:
            self._flush()
            self._open = False

    # ConnectionListener -----------------------------------------------------------------------
    def on_connecting(self, url: str, attempt: int) -> None:
        log.debug("%s: connecting to %s (attempt %d)", self.symbol, url, attempt)

    def on_open(self, url: str, planned: bool) -> None:
        if planned:
            self._c.planned_reconnects += 1
        elif self._ever_opened:
            self._c.reconnects += 1
        self._ever_opened = True
        self._open = True
        self._connected_ms = _now_ms()
        self._messages_at_open = self._c.messages
        self._next_probe = 0.0
        self._rest_ahead_id = None
        log.info("%s: connected to %s", self.symbol, url)

    def on_close(self, reason: str, planned: bool) -> None:
        self._flush()
        self._open = planned
        if reason != "stopped" and not planned:
            log.warning("%s: %s", self.symbol, reason)
            self._error(reason)

    def on_wait(self, delay_s: float, reason: str) -> None:
        log.info("%s: reconnecting in %.2f s (%s)", self.symbol, delay_s, reason)

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
        if tick.symbol != self.symbol:
            self._reject(ParseError("wrong_symbol", tick.symbol), payload)
            return
        self._accept(tick)

    def _accept(self, tick: Tick) -> None:
        """The id sequence rules for one parsed tick of this symbol (module docstring)."""
        tid = tick.trade_id
        last = self._last_id
        if last is None and self._history_from_ms is not None:
            self._owe_history_by_time(tid - 1, tick.ts_ms)
        elif last is not None:
            if tid <= last:
                self._c.duplicates += 1
                self._dup_run += 1
                if self._dup_run == _BACKWARDS_AFTER:
                    self._went_backwards(tid, last)
                return
            if self._suspects.is_suspect(tick, last):
                self._hold_suspect(tick)
                return
            if tid != last + 1:
                self._found_gap(last + 1, tid - 1, "in the live stream", after_ms=tick.ts_ms)
            elif self._pending_kind is not None:
                self._contiguous_start()
        self._last_id = tid
        self._last_id_ms = tick.ts_ms
        self._dup_run = 0
        self._last_trade_ms = tick.ts_ms
        self._trade_seen = True
        self._stale = False
        self._c.messages += 1
        batch = self._batch
        batch.append(tick)
        if len(batch) >= _BATCH_MAX:
            self._flush()

    def _hold_suspect(self, tick: Tick) -> None:
        held, ask = self._suspects.hold(tick)
        if not held:
            self._reject(ParseError("suspect_overflow", f"id {tick.trade_id}"), b"")
        elif ask is not None:
            self._jobs.put(_Confirm(ask))

    def _settle_suspects(self) -> None:
        """Apply REST's verdicts on held far-ahead ids (in the connection thread)."""
        while True:
            try:
                verdict = self._verdicts.get_nowait()
            except queue.Empty:
                break
            release, refuted = self._suspects.settle(verdict)
            for tick in refuted:
                self._reject(ParseError("suspect_id", verdict.detail), str(tick).encode())
            if refuted:
                self._error(f"far-ahead id {verdict.trade_id} rejected: {verdict.detail}")
            for tick in release:
                self._accept(tick)
        again = self._suspects.due()
        if again is not None:
            self._jobs.put(_Confirm(again))

    def _went_backwards(self, tid: int, last: int) -> None:
        """Thousands of ids in a row at or below the last one: not an overlap any more."""
        message = (
            f"ids went backwards: the stream sends id {tid} but the last id is {last}; "
            f"nothing new is stored (a restarted replay, or another id space in this database?)"
        )
        log.error("%s: %s", self.symbol, message)
        self._error(message)

    def on_burst_end(self) -> None:
        if self._batch:
            self._flush()

    def _flush(self) -> None:
        """Hand the ticks parsed from the current burst of frames to the writer, as one item."""
        batch, self._batch = self._batch, []
        if batch:
            self._writer.put_many(batch)
            if self._yield_to_commits:
                self._writer.yield_to_commit()

    def _contiguous_start(self) -> None:
        """The first live id follows the resume point exactly: nothing to fetch."""
        if self._pending_kind == "history":
            self._history_loaded = True
        self._pending_kind = None

    def on_tick(self, connected_s: float) -> str | None:
        self._settle_suspects()
        if self._batch:
            self._flush()
        now = time.monotonic()
        if self._trade_seen:
            self._trade_seen = False
            self._last_trade_mono = now
        if not self._rates or now - self._rates[-1][0] >= 1.0:
            self._rates.append((now, self._c.messages))
        try:
            result = self._probe_results.get_nowait()
        except queue.Empty:
            result = None
        if result is not None:
            reason = self._apply_probe(*result)
            if reason:
                return reason
        settings = self.settings
        if self._c.messages > self._messages_at_open and self._last_trade_mono is not None:
            idle_s = now - self._last_trade_mono
            due = idle_s >= settings.stale_after_s
        else:  # not one trade on this connection yet
            idle_s = connected_s
            due = connected_s >= settings.first_data_timeout_s
        if due and not self._probe_in_flight and now >= self._next_probe:
            self._probe_in_flight = True
            self._next_probe = now + settings.stale_probe_interval_s
            self._jobs.put(_Probe(self._last_id, self._connected_ms, idle_s))
        return None

    def _apply_probe(self, latest_id: int, latest_ms: int, error: str) -> str | None:
        """Act on a probe's answer (in the connection thread, which owns ``_last_id``)."""
        self._probe_in_flight = False
        if error:
            self._error(f"REST probe failed: {error}")
            return None
        last = self._last_id
        self._suspects.trust(latest_id)
        if last is not None and latest_id <= last:
            return None  # the exchange has nothing we lack: a quiet market
        grace_ms = self.settings.stale_grace_s * 1000
        # REST had an id at the last probe (``stale_grace_s`` ago at least) that the socket
        # still has not delivered: stale, however young the market's trades are (issue 14).
        ahead, self._rest_ahead_id = self._rest_ahead_id, None
        missed = ahead is not None and (last is None or last < ahead)
        if latest_ms > _now_ms() - grace_ms and not missed:
            # Too fresh to judge: the socket may deliver it any moment. Look again soon.
            self._rest_ahead_id = latest_id
            self._next_probe = min(self._next_probe, time.monotonic() + self.settings.stale_grace_s)
            return None
        # The exchange has ids we never saw, old enough that the socket should have sent them.
        traded_since_connect = latest_ms > self._connected_ms
        if last is None:
            if traded_since_connect:
                if self._history_from_ms is not None:  # history owed up to here
                    self._owe_history_by_time(latest_id, latest_ms)
                self._last_id = latest_id  # no resume point: start from here
                self._last_id_ms = latest_ms
                return self._go_stale(latest_id)
            return None
        # ``latest_id`` is the gap's last id, so its time bounds the missing trades' times.
        self._found_gap(
            last + 1,
            latest_id,
            "found by REST probe",
            stale=traded_since_connect,
            after_ms=latest_ms,
        )
        self._last_id = latest_id
        self._last_id_ms = latest_ms
        self._last_trade_ms = max(self._last_trade_ms or 0, latest_ms)
        if traded_since_connect:
            return self._go_stale(latest_id)
        return None

    def _go_stale(self, latest_id: int) -> str:
        self._stale = True
        age_s = (_now_ms() - self._connected_ms) / 1000
        reason = (
            f"connected but no data: REST shows trades up to id {latest_id} after this "
            f"connection opened {age_s:.0f} s ago, the socket delivered none "
            f"(wrong route? {self.settings.ws_url(self.symbol)})"
        )
        self._error(reason)
        log.warning("%s: %s", self.symbol, reason)
        return reason

    def _found_gap(
        self, first: int, last: int, where: str, stale: bool = False, after_ms: int | None = None
    ) -> None:
        """Ids ``first..last`` are missing (``first - 1`` is ``_last_id``); record them as owed
        (before any later tick reaches the writer) and queue their repair."""
        before_ms = self._last_id_ms
        kind = self._pending_kind or "gap"
        completes_history = self._pending_kind == "history"
        self._pending_kind = None
        if stale:
            kind = "gap"  # history plus trades the socket missed: one recorded gap
        missing = last - first + 1
        if kind == "history":
            where = "start-up history"
            log.info("%s: start-up history owes ids %d..%d", self.symbol, first, last)
        else:
            self._c.gaps_found += 1
            self._c.ids_missing += missing
            log.warning("%s: gap of %d ids (%d..%d) %s", self.symbol, missing, first, last, where)
        completes_history = completes_history or kind == "history"
        job = _Backfill(first, last, kind, None, where, completes_history, before_ms, after_ms)
        self._owe(job, Gap(self.symbol, first, last, _now_ms(), status="open", detail=where))

    def _owe_history_by_time(self, last: int, after_ms: int) -> None:
        """REST could not tell the history's first id at start: owe the trades since the
        history window's start up to id ``last`` (the one before the first live id)."""
        from_ms, self._history_from_ms = self._history_from_ms, None
        self._pending_kind = None
        assert from_ms is not None
        since = datetime.fromtimestamp(from_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        where = f"start-up history since {since}Z (first id not known yet: REST failed)"
        log.warning("%s: %s, up to id %d", self.symbol, where, last)
        job = _Backfill(last, last, "history", None, where, True, after_ms=after_ms)
        job.from_ms = from_ms
        self._owe(job, Gap(self.symbol, last, last, _now_ms(), "open", 0, where, None, from_ms))

    def _owe(self, job: _Backfill, gap: Gap) -> None:
        """Record ``gap`` through the writer queue (ahead of every later tick), then queue
        the job that fetches it."""
        ref = _GapRef(gap)
        job.ref = ref
        self._writer.submit(lambda storage: _record_gap(storage, ref))
        self._owed[id(job)] = job
        self._jobs.put(job)

    def _reject(self, exc: ParseError, payload: bytes) -> None:
        c = self._c
        c.rejected += 1
        c.reject_reasons[exc.reason] += 1
        if c.rejected <= self.settings.log_rejects_max or c.rejected % 1000 == 0:
            log.warning(
                "%s: rejected message #%d (%s): %r",
                self.symbol,
                c.rejected,
                exc,
                bytes(payload[:120]),
            )

    # --- the repair thread -------------------------------------------------------------------
    def _repair_loop(self) -> None:
        try:
            self._start_up()
        except Exception as exc:
            log.exception("%s: start-up history failed", self.symbol)
            self._error(f"start-up history failed: {exc}")
            if self._pending_kind != "history":  # no anchor: nothing more will come of it
                self._history_loaded = True
        finally:
            self._history_ready.set()
        self._queue_retries()
        while not self._stop.is_set():
            job = self._next_job()
            if job is None or self._stop.is_set():
                break
            self._job_active = True
            try:
                if isinstance(job, _Probe):
                    self._run_probe(job)
                elif isinstance(job, _Confirm):
                    limit = self.settings.rest_page_limit
                    self._verdicts.put(confirm_id(self._rest, job.tick, self._stream, limit))
                else:
                    self._run_backfill(job)
            except Exception as exc:  # keep repairing later gaps
                log.exception("%s: REST job failed", self.symbol)
                self._error(f"REST job failed: {exc}")
                if isinstance(job, _Backfill) and not self._stop.is_set():
                    # Still owed (a reply we could not handle, say): try again later.
                    delay_s = self._shelve(job)
                    self._finish_gap(
                        job,
                        "failed",
                        0,
                        f"{job.reason}; the repair failed: {exc!r}; attempt {job.attempts}, "
                        f"next in {delay_s:.1f} s",
                    )
            finally:
                self._job_active = False
        # Leave an honest record of repairs that the stop interrupted.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, _Backfill) and job.ref is not None:
                self._finish_gap(
                    job, "open", 0, f"{job.reason}; not repaired: the feed stopped first"
                )
        # Shelved repairs stay ``failed`` in storage: the next start retries them.

    def _next_job(self) -> Any:
        """The next queued job, or a shelved repair whose retry is due (whichever comes first)."""
        while True:
            job = self._shelf.pop_due()
            if job is not None:
                return job
            try:
                return self._jobs.get(timeout=self._shelf.due_in_s())
            except queue.Empty:
                continue

    def _queue_retries(self) -> None:
        """Queue the repair of gaps an earlier run left open or failed, updating their records.

        After start-up, so the resume point is set; the live stream runs meanwhile. The
        stored trade times around a gap (``retry_gap_times``) let the kline fallback cover
        ids REST no longer has; without them its detail says the times are unknown.
        """
        for gap in self._retry_gaps:
            before_ms, after_ms = self._retry_gap_times.get(gap.gap_id or 0, (None, None))
            where = gap.detail.split(";", 1)[0] or "found earlier"
            ref = _GapRef(gap, gap.gap_id)
            kind = "history" if where.startswith("start-up history") else "gap"
            if kind == "gap":
                self._c.gaps_found += 1
                self._c.ids_missing += gap.missing
            log.info(
                "%s: retrying %s gap %d..%d left by an earlier run",
                self.symbol,
                gap.status,
                gap.first_missing_id,
                gap.last_missing_id,
            )
            job = _Backfill(
                gap.first_missing_id,
                gap.last_missing_id,
                kind,
                ref,
                f"{where}; retried on start (was {gap.status})",
                before_ms=before_ms,
                after_ms=after_ms,
                from_ms=gap.from_ts_ms,
            )
            self._owed[id(job)] = job
            self._jobs.put(job)
        self._retry_gaps = []

    def _start_up(self) -> None:
        """Pick the resume point; load recent trades' anchor and 1m klines (history)."""
        settings = self.settings
        if not settings.history:
            return
        now = _now_ms()
        first_trade_ms: int | None = None
        try:
            first_trade_ms = self._history_anchor(now)
        except (RestError, ParseError) as exc:
            if self._last_id is None and settings.history_trades_s > 0:
                # The range is still known: by time, up to the first live id. Owed from then.
                self._history_from_ms = now - int(settings.history_trades_s * 1000)
                self._pending_kind = "history"
            log.warning("%s: start-up history: REST failed: %s", self.symbol, exc)
            self._error(f"start-up history: REST failed: {exc}")
        if settings.history_klines_s > 0:
            end = (first_trade_ms if first_trade_ms is not None else now) // 60_000 * 60_000
            start = end - int(settings.history_klines_s * 1000)
            try:
                self._load_klines(start, end)
            except (RestError, ParseError) as exc:  # trades matter more: carry on
                log.warning("%s: 1m klines history failed: %s", self.symbol, exc)
                self._error(f"1m klines history failed: {exc}")
        if self._pending_kind != "history":
            self._history_loaded = True

    def _history_anchor(self, now: int) -> int | None:
        """Set the resume point below the history window's first trade (or load the recent
        trades, for ``@trade``); return that trade's time, None if there is none."""
        settings = self.settings
        first_trade_ms: int | None = None
        if settings.stream is StreamKind.AGG_TRADE:
            if settings.history_trades_s > 0:
                start = now - int(settings.history_trades_s * 1000)
                # Binance wants startTime..endTime under an hour; the first row is all we need.
                end = min(now, start + 3_599_999)
                rows = self._rest.agg_trades(self.symbol, start_ms=start, end_ms=end, limit=1)
                if rows:
                    anchor = parse_rest_agg_trade(rows[0], self.symbol)
                    first_trade_ms = anchor.ts_ms
                    if self._last_id is None:
                        self._last_id = anchor.trade_id - 1
                        self._pending_kind = "history"
        elif settings.history_trades_s > 0:
            rows = self._rest.recent_trades(self.symbol, limit=settings.rest_page_limit)
            ticks = [parse_rest_trade(r, self.symbol) for r in rows]
            cutoff = now - int(settings.history_trades_s * 1000)
            ticks = [t for t in ticks if t.ts_ms >= cutoff]
            if ticks:
                first_trade_ms = ticks[0].ts_ms
                if self._last_id is None:
                    # Everything up to the newest REST trade is loaded here; the socket's
                    # first id shows any hole after it.
                    self._writer.put_many(ticks)
                    self._c.ids_backfilled += len(ticks)
                    self._last_id = ticks[-1].trade_id
                    self._last_id_ms = self._last_trade_ms = ticks[-1].ts_ms
                    self._pending_kind = "history"
        return first_trade_ms

    def _load_klines(self, start_ms: int, end_ms: int) -> list[int]:
        """1m klines for the closed minutes ``[start_ms, end_ms)``, queued for storage after
        everything queued so far; returns the open times of the minutes that traded."""
        frames = []
        cursor = start_ms
        while cursor < end_ms and not self._stop.is_set():
            rows = self._rest.klines(
                self.symbol, interval="1m", start_ms=cursor, end_ms=end_ms - 1, limit=1500
            )
            parsed = [parse_rest_kline(r) for r in rows]
            parsed = [r for r in parsed if cursor <= r["open_time"] < end_ms]
            if not parsed:
                break
            frames.append(pd.DataFrame(parsed, columns=list(KLINE_COLUMNS)))
            cursor = int(parsed[-1]["open_time"]) + 60_000
        if frames:
            frame = pd.concat(frames, ignore_index=True)
            symbol = self.symbol
            # Through the writer queue, after any ticks already queued (FIFO).
            self._writer.submit(lambda storage: storage.write_klines(symbol, frame))
            log.info("%s: loaded %d 1m klines", self.symbol, len(frame))
            return [int(t) for t in frame.loc[frame["count"] > 0, "open_time"]]
        return []

    def _run_probe(self, job: _Probe) -> None:
        try:
            if self.settings.stream is StreamKind.AGG_TRADE:
                rows = self._rest.agg_trades(self.symbol, limit=1)
                tick = parse_rest_agg_trade(rows[-1], self.symbol) if rows else None
            else:
                rows = self._rest.recent_trades(self.symbol, limit=1)
                tick = parse_rest_trade(rows[-1], self.symbol) if rows else None
        except (RestError, ParseError) as exc:
            self._probe_results.put((0, 0, str(exc)))
            return
        if tick is None:
            self._probe_results.put((job.last_id or 0, 0, ""))
            return
        self._probe_results.put((tick.trade_id, tick.ts_ms, ""))

    def _run_backfill(self, job: _Backfill) -> None:
        if job.from_ms is not None and not self._resolve_first_id(job):
            return
        job.next_id = None  # every attempt fetches the whole range (writes are idempotent)
        try:
            if self.settings.stream is StreamKind.AGG_TRADE:
                fetched, unavailable, failure, holes = self._backfill_agg(job)
            else:
                fetched, unavailable, failure, holes = self._backfill_trades(job)
        finally:
            self._backfill_todo = 0
        missing = job.last - job.first + 1
        if fetched >= missing:
            status, detail = "repaired", f"{job.reason}; {fetched} ids fetched from REST"
            if job.kind == "gap":
                self._c.gaps_repaired += 1
        elif failure and self._stop.is_set():
            status = "open"
            detail = f"{job.reason}; {fetched} of {missing} ids fetched before the feed stopped"
        elif failure:
            # Still owed: retried in this run after a backoff delay, and on every start.
            status = "failed"
            delay_s = self._shelve(job)
            detail = (
                f"{job.reason}; {fetched} of {missing} ids fetched; REST failed: {failure}; "
                f"attempt {job.attempts}, next in {delay_s:.1f} s"
            )
        elif fetched:
            status = "partial"
            detail = f"{job.reason}; {fetched} of {missing} ids fetched; {unavailable}"
        else:
            status = "unrepairable"
            detail = f"{job.reason}; REST no longer has these ids; {unavailable}"
        if status in ("partial", "unrepairable") and not failure and self.settings.kline_fallback:
            note = self._kline_fallback(holes)
            detail = f"{detail}; {note}" if note else detail
        if status != "repaired":
            self._error(f"{job.kind} {job.first}..{job.last}: {status} ({detail})")
        elif job.kind == "history":
            log.info("%s: history loaded, %d trades", self.symbol, fetched)
        if status not in ("open", "failed"):  # stored, or declared unrepairable
            self._owed.pop(id(job), None)
            if job.completes_history:
                self._history_loaded = True
        self._finish_gap(job, status, fetched, detail)

    def _shelve(self, job: _Backfill) -> float:
        """Put a repair REST failed aside for its next attempt; returns the delay in seconds."""
        if job.delays is None:
            job.delays = self._repair_backoff()
        job.attempts += 1
        return self._shelf.put(job, job.delays)

    def _resolve_first_id(self, job: _Backfill) -> bool:
        """Turn a range known by time into ids (the first trade at or after ``job.from_ms``).

        Returns True when ``job`` is ready to fetch; False when REST failed (shelved for a
        retry) or the range holds no trade (then it is recorded as repaired, 0 ids).
        """
        assert job.from_ms is not None
        try:
            first = self._first_id_since(job.from_ms)
        except (RestError, ParseError) as exc:
            if self._stop.is_set():
                return False  # still open in storage
            delay_s = self._shelve(job)
            detail = (
                f"{job.reason}; REST failed: {exc}; attempt {job.attempts}, next in {delay_s:.1f} s"
            )
            self._error(f"{job.kind} up to id {job.last}: failed ({detail})")
            self._finish_gap(job, "failed", 0, detail)
            return False
        job.from_ms = None
        if first is None or first > job.last:
            self._owed.pop(id(job), None)
            if job.completes_history:
                self._history_loaded = True
            self._finish_gap(
                job, "repaired", 0, f"{job.reason}; no trade in that window", job.last + 1
            )
            return False
        job.first = first
        job.reason = f"{job.reason}; first id {first} from REST"
        self._finish_gap(job, "open", 0, job.reason, first)
        return True

    def _first_id_since(self, from_ms: int) -> int | None:
        """Id of the first trade at or after ``from_ms`` that REST has (None: no trade)."""
        if self.settings.stream is StreamKind.AGG_TRADE:
            rows = self._rest.agg_trades(
                self.symbol, start_ms=from_ms, end_ms=from_ms + 3_599_999, limit=1
            )
            return parse_rest_agg_trade(rows[0], self.symbol).trade_id if rows else None
        # ``@trade``: only the newest trades are public; older ids are unrepairable anyway.
        rows = self._rest.recent_trades(self.symbol, limit=self.settings.rest_page_limit)
        ticks = [parse_rest_trade(r, self.symbol) for r in rows]
        return min((t.trade_id for t in ticks if t.ts_ms >= from_ms), default=None)

    def _finish_gap(
        self, job: _Backfill, status: str, fetched: int, detail: str, first_id: int | None = None
    ) -> None:
        ref = job.ref
        if ref is None:
            return

        def update(storage: Any) -> None:
            if ref.gap_id is not None:
                storage.update_gap(
                    ref.gap_id,
                    status=status,
                    repaired_count=fetched,
                    detail=detail,
                    first_missing_id=first_id,
                )

        self._writer.submit(update)

    def _kline_fallback(self, holes: list[_Hole]) -> str:
        """Write Binance's 1m klines for the closed minutes the ``holes`` fall in; say which.

        A kline bar is authoritative for its minute (``storage.Writer.write_klines``): it
        replaces the 1m bar built from the incomplete ticks, and the 5m bars are derived
        again. The 1s bars and the ticks keep the hole: klines have no finer data.
        """
        spans: list[list[int]] = []
        unknown = 0
        for hole in sorted(holes, key=lambda h: h.first):
            if hole.lo_ms is None or hole.hi_ms is None:
                unknown += hole.last - hole.first + 1
                continue
            lo, hi = hole.lo_ms // 60_000 * 60_000, hole.hi_ms // 60_000 * 60_000 + 60_000
            if spans and lo <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], hi)
            else:
                spans.append([lo, hi])
        notes = []
        if unknown:
            notes.append(f"no 1m kline fallback for {unknown} ids: their trade times are unknown")
        closed_before = _now_ms() // 60_000 * 60_000  # a kline is final once its minute ended
        filled: list[int] = []
        still_open = False
        try:
            for lo, hi in spans:
                still_open = still_open or hi > closed_before
                if lo < min(hi, closed_before):
                    filled += self._load_klines(lo, min(hi, closed_before))
        except (RestError, ParseError) as exc:
            log.warning("%s: 1m kline fallback failed: %s", self.symbol, exc)
            notes.append(f"1m kline fallback failed: {exc}")
        if filled:
            notes.insert(
                0,
                f"1m klines {_minutes_text(filled)} filled the bars; ticks and 1s "
                "bars of those minutes are missing",
            )
        elif spans and not still_open:
            notes.append("no traded 1m klines for those minutes")
        if still_open:
            notes.append("minutes not yet closed were not filled from klines")
        return "; ".join(notes)

    def _backfill_agg(self, job: _Backfill) -> tuple[int, str, str, list[_Hole]]:
        """Page ``aggTrades`` by ``fromId``.

        Returns (ids fetched, why some are unavailable, REST failure or "", the id runs REST
        could not supply with the trade times around them).
        """
        settings = self.settings
        first = job.first
        notes = []
        holes: list[_Hole] = []

        def unavailable(a: int, b: int, lo_ms: int | None) -> None:
            if holes and holes[-1].last == a - 1 and holes[-1].hi_ms is None:
                holes[-1].last = b  # continues the run before it
            else:
                holes.append(_Hole(a, b, lo_ms))

        prev_ms = job.before_ms  # trade time of id next_id - 1, if known
        if job.last - first + 1 > settings.max_backfill_ids:
            first = job.last - settings.max_backfill_ids + 1
            notes.append(
                f"ids {job.first}..{first - 1} exceed max_backfill_ids={settings.max_backfill_ids}"
                " and were not fetched"
            )
            unavailable(job.first, first - 1, prev_ms)
            prev_ms = None
        next_id = first
        fetched = 0
        pages = 0
        while next_id <= job.last and not self._stop.is_set():
            self._backfill_todo = job.last - next_id + 1
            pages += 1
            if pages % 10 == 0:
                log.info(
                    "%s: %s backfill, %d ids to go", self.symbol, job.kind, self._backfill_todo
                )
            try:
                rows = self._rest.agg_trades(
                    self.symbol, from_id=next_id, limit=settings.rest_page_limit
                )
            except RestError as exc:
                return fetched, "; ".join(notes), str(exc), holes
            ticks = []
            first_row: Tick | None = None
            last_row: Tick | None = None
            for row in rows:
                try:
                    tick = parse_rest_agg_trade(row, self.symbol)
                except ParseError as exc:
                    log.warning("%s: bad REST row %r: %s", self.symbol, row, exc)
                    continue
                if first_row is None:
                    first_row = tick
                last_row = tick
                if next_id <= tick.trade_id <= job.last:
                    ticks.append(tick)
            if not rows:
                notes.append(
                    f"REST has no ids from {next_id} although the stream is past {job.last}"
                )
                unavailable(next_id, job.last, prev_ms)
                break
            if first_row is not None and first_row.trade_id > next_id:
                gone_to = min(first_row.trade_id - 1, job.last)
                notes.append(
                    f"asked REST for id {next_id}, it starts at {first_row.trade_id}: "
                    f"ids {next_id}..{gone_to} are no longer available"
                )
                unavailable(next_id, gone_to, prev_ms)
            if (
                first_row is not None
                and holes
                and holes[-1].hi_ms is None
                and first_row.trade_id > holes[-1].last
            ):
                holes[-1].hi_ms = first_row.ts_ms  # a later id: its time bounds the run's
            if ticks:
                self._writer.put_many(ticks)
                fetched += len(ticks)
                self._c.ids_backfilled += len(ticks)
            last_row_id = int(rows[-1].get("a", next_id)) if isinstance(rows[-1], dict) else next_id
            if last_row_id < next_id:
                break  # REST went backwards: do not loop forever
            next_id = last_row_id + 1
            job.next_id = next_id
            prev_ms = last_row.ts_ms if last_row and last_row.trade_id == last_row_id else None
        if self._stop.is_set() and next_id <= job.last:
            return fetched, "; ".join(notes), "stopped before the repair finished", holes
        for hole in holes:  # every id of the gap is older than the id after it
            if hole.hi_ms is None or (job.after_ms is not None and job.after_ms < hole.hi_ms):
                hole.hi_ms = job.after_ms
        return fetched, "; ".join(notes), "", holes

    def _backfill_trades(self, job: _Backfill) -> tuple[int, str, str, list[_Hole]]:
        """``@trade`` ids: only ``/fapi/v1/trades`` (the newest 1000) is public; older ids are
        unrepairable without an API key (``historicalTrades``). Returns what
        ``_backfill_agg`` returns."""
        try:
            rows = self._rest.recent_trades(self.symbol, limit=self.settings.rest_page_limit)
        except RestError as exc:
            return 0, "", str(exc), []
        ticks = []
        for row in rows:
            try:
                tick = parse_rest_trade(row, self.symbol)
            except ParseError:
                continue
            if job.first <= tick.trade_id <= job.last:
                ticks.append(tick)
        if ticks:
            self._writer.put_many(ticks)
            self._c.ids_backfilled += len(ticks)
        oldest = min(
            (int(r["id"]) for r in rows if isinstance(r, dict) and "id" in r), default=None
        )
        note = ""
        holes = []
        if oldest is not None and oldest > job.first:
            note = f"/fapi/v1/trades only reaches back to id {oldest}"
            # The oldest REST trade (or the id after the gap) is later than every lost id.
            after = ticks[0].ts_ms if ticks else job.after_ms
            holes.append(_Hole(job.first, min(oldest - 1, job.last), job.before_ms, after))
        elif oldest is None:
            holes.append(_Hole(job.first, job.last, job.before_ms, job.after_ms))
        return len(ticks), note, "", holes


def _record_gap(storage: Any, ref: _GapRef) -> None:
    ref.gap_id = storage.record_gap(ref.gap)


def _minutes_text(open_ms: list[int]) -> str:
    """Minutes by open time as ISO ranges: ``2024-08-08T23:55Z..23:57Z, 2024-08-09T00:10Z``."""
    out = []
    minutes = sorted(set(open_ms))
    start = prev = minutes[0]
    for t in [*minutes[1:], None]:
        if t is not None and t == prev + 60_000:
            prev = t
            continue
        a = datetime.fromtimestamp(start / 1000, UTC)
        b = datetime.fromtimestamp(prev / 1000, UTC)
        text = a.strftime("%Y-%m-%dT%H:%MZ")
        if prev != start:
            text += ".." + b.strftime("%H:%MZ" if a.date() == b.date() else "%Y-%m-%dT%H:%MZ")
        out.append(text)
        if t is not None:
            start = prev = t
    return ", ".join(out)


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)
