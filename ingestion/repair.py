"""The repair worker of one symbol's feed: every REST call, in its own daemon thread.

Start-up history (the resume point and 1m klines), owed ranges (gaps, history, ranges an
earlier run left ``open`` or ``failed``), quiet-or-stale probes and questions about suspect
ids are jobs on one queue, run one at a time, so a slow or rate-limited REST call never
stalls the live stream. Answers the connection thread needs (probe results, verdicts) go
back through queues it reads; everything else goes to storage through the writer queue.

Gap life (``ingestion.owed``): every range of ids the feed means to store from REST is
recorded in storage as ``open`` *before* it is fetched and updated once its repair ends
(``repaired``, ``partial``, ``unrepairable``, ``open`` again if the feed stopped first, or
``failed`` while REST fails: then it is retried in this run after a backoff delay). When
REST cannot tell the history's first id at start, the history is recorded by time
(``Gap.from_ts_ms``) and its first id is resolved once REST answers. Ids REST no longer has
are gone for good; with ``kline_fallback`` the minutes they fall in get Binance's 1m klines
(``ingestion.backfill``).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from formats.wire import ParseError, StreamKind, parse_rest_agg_trade, parse_rest_trade
from ingestion.backfill import (
    Backfill,
    GapRef,
    fetch_agg,
    fetch_trades,
    kline_fallback,
    load_klines,
    record_gap,
)
from ingestion.backoff import BackoffFactory, backoff
from ingestion.gaps import HISTORY, GapTracker, Owed
from ingestion.rest import RestError
from ingestion.shared import FeedCore
from ingestion.suspect import Verdict, confirm_id
from storage.records import Gap, Tick

__all__ = ["ProbeResult", "RepairWorker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """REST's newest trade (``latest_id`` at ``latest_ms``), or the ``error`` asking it."""

    latest_id: int
    latest_ms: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class _Probe:
    """Ask REST for the newest trade to tell a quiet market from a stale socket."""

    last_id: int | None


@dataclass(frozen=True, slots=True)
class _Confirm:
    """Ask REST whether a suspect id exists (``ingestion.suspect``)."""

    tick: Tick


class RepairWorker:
    """The repair thread's work for one feed (module docstring).

    Parameters
    ----------
    core : the feed's shared state.
    tracker : the gap tracker; only the start-up touches it (it sets the resume point
        before the connection thread starts, ``core.history_ready``).
    repair_backoff : factory of delays (seconds) between attempts of a repair REST failed;
        default ``backoff(settings.repair_retry_initial_s, 2, settings.repair_retry_max_s)``.
    retry_gaps : gaps an earlier run left ``open`` or ``failed``, repaired after start-up.
    retry_gap_times : per ``gap_id``, the stored trade times just before and after the gap.
    """

    def __init__(
        self,
        core: FeedCore,
        tracker: GapTracker,
        repair_backoff: BackoffFactory | None = None,
        retry_gaps: Sequence[Gap] = (),
        retry_gap_times: Mapping[int, tuple[int | None, int | None]] | None = None,
    ) -> None:
        self.core = core
        self._tracker = tracker
        settings = core.settings
        self._repair_backoff = repair_backoff or (
            lambda: backoff(
                settings.repair_retry_initial_s,
                2.0,
                max(settings.repair_retry_initial_s, settings.repair_retry_max_s),
                settings.backoff_jitter,
            )
        )
        self._retry_gaps = [g for g in retry_gaps if g.gap_id is not None]
        self._retry_gap_times = dict(retry_gap_times or {})
        # Written here, read by the connection thread:
        self.probe_results: queue.SimpleQueue[ProbeResult] = queue.SimpleQueue()
        self.verdicts: queue.SimpleQueue[Verdict] = queue.SimpleQueue()

    # --- asked by the connection thread -------------------------------------------------------
    def owe(self, owed: Owed) -> None:
        """Record ``owed`` through the writer queue (ahead of every later tick), then queue
        the job that fetches it."""
        core = self.core
        gap = Gap(
            core.symbol,
            owed.first,
            owed.last,
            owed.found_ms,
            status="open",
            detail=owed.where,
            from_ts_ms=owed.from_ms,
        )
        ref = GapRef(gap)
        job = Backfill(
            owed.first,
            owed.last,
            owed.kind,
            ref,
            owed.where,
            owed.completes_history,
            owed.before_ms,
            owed.after_ms,
            owed.from_ms,
        )
        core.writer.submit(lambda storage: record_gap(storage, ref))
        core.owed[id(job)] = job
        core.jobs.put(job)

    def probe(self, last_id: int | None) -> None:
        self.core.jobs.put(_Probe(last_id))

    def confirm(self, tick: Tick) -> None:
        self.core.jobs.put(_Confirm(tick))

    # --- the thread ---------------------------------------------------------------------------
    def run(self) -> None:
        """The repair thread: start-up, then jobs until the feed stops."""
        core = self.core
        try:
            self._start_up()
        except Exception as exc:
            log.exception("%s: start-up history failed", core.symbol)
            core.error(f"start-up history failed: {exc}")
            if not self._tracker.history_pending:  # no anchor: nothing more will come of it
                core.history_loaded = True
        finally:
            core.history_ready.set()
        self._queue_retries()
        while not core.stop.is_set():
            job = self._next_job()
            if job is None or core.stop.is_set():
                break
            core.job_active = True
            try:
                self._run(job)
            finally:
                core.job_active = False
        # Leave an honest record of repairs that the stop interrupted.
        while True:
            try:
                job = core.jobs.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, Backfill) and job.ref is not None:
                self._finish_gap(
                    job, "open", 0, f"{job.reason}; not repaired: the feed stopped first"
                )
        # Shelved repairs stay ``failed`` in storage: the next start retries them.

    def _run(self, job: Any) -> None:
        core = self.core
        try:
            if isinstance(job, _Probe):
                self._run_probe(job)
            elif isinstance(job, _Confirm):
                limit = core.settings.rest_page_limit
                self.verdicts.put(confirm_id(core.rest, job.tick, core.settings.stream, limit))
            else:
                self._run_backfill(job)
        except Exception as exc:  # keep repairing later gaps
            log.exception("%s: REST job failed", core.symbol)
            core.error(f"REST job failed: {exc}")
            if isinstance(job, Backfill) and not core.stop.is_set():
                # Still owed (a reply we could not handle, say): try again later.
                delay_s = self._shelve(job)
                self._finish_gap(
                    job,
                    "failed",
                    0,
                    f"{job.reason}; the repair failed: {exc!r}; attempt {job.attempts}, "
                    f"next in {delay_s:.1f} s",
                )

    def _next_job(self) -> Any:
        """The next queued job, or a shelved repair whose retry is due (whichever comes first)."""
        shelf = self.core.shelf
        while True:
            job = shelf.pop_due()
            if job is not None:
                return job
            try:
                return self.core.jobs.get(timeout=shelf.due_in_s())
            except queue.Empty:
                continue

    def _queue_retries(self) -> None:
        """Queue the repair of gaps an earlier run left open or failed, updating their records.

        After start-up, so the resume point is set; the live stream runs meanwhile. The
        stored trade times around a gap (``retry_gap_times``) let the kline fallback cover
        ids REST no longer has; without them its detail says the times are unknown.
        """
        core = self.core
        for gap in self._retry_gaps:
            before_ms, after_ms = self._retry_gap_times.get(gap.gap_id or 0, (None, None))
            where = gap.detail.split(";", 1)[0] or "found earlier"
            kind = HISTORY if where.startswith("start-up history") else "gap"
            if kind == "gap":
                core.c.retried_gaps += 1
                core.c.retried_ids += gap.missing
            log.info(
                "%s: retrying %s gap %d..%d left by an earlier run",
                core.symbol,
                gap.status,
                gap.first_missing_id,
                gap.last_missing_id,
            )
            job = Backfill(
                gap.first_missing_id,
                gap.last_missing_id,
                kind,
                GapRef(gap, gap.gap_id),
                f"{where}; retried on start (was {gap.status})",
                before_ms=before_ms,
                after_ms=after_ms,
                from_ms=gap.from_ts_ms,
            )
            core.owed[id(job)] = job
            core.jobs.put(job)
        self._retry_gaps = []

    # --- start-up -----------------------------------------------------------------------------
    def _start_up(self) -> None:
        """Pick the resume point; load recent trades' anchor and 1m klines (history)."""
        core = self.core
        settings = core.settings
        if not settings.history:
            return
        now = core.clock.now_ms()
        first_trade_ms: int | None = None
        try:
            first_trade_ms = self._history_anchor(now)
        except (RestError, ParseError) as exc:
            if settings.history_trades_s > 0:
                # The range is still known: by time, up to the first live id. Owed from then.
                self._tracker.history_by_time(now - int(settings.history_trades_s * 1000))
            log.warning("%s: start-up history: REST failed: %s", core.symbol, exc)
            core.error(f"start-up history: REST failed: {exc}")
        if settings.history_klines_s > 0:
            end = (first_trade_ms if first_trade_ms is not None else now) // 60_000 * 60_000
            start = end - int(settings.history_klines_s * 1000)
            try:
                load_klines(core, start, end)
            except (RestError, ParseError) as exc:  # trades matter more: carry on
                log.warning("%s: 1m klines history failed: %s", core.symbol, exc)
                core.error(f"1m klines history failed: {exc}")
        if not self._tracker.history_pending:
            core.history_loaded = True

    def _history_anchor(self, now: int) -> int | None:
        """Set the resume point below the history window's first trade (or load the recent
        trades, for ``@trade``); return that trade's time, None if there is none."""
        core = self.core
        settings = core.settings
        if settings.history_trades_s <= 0:
            return None
        start = now - int(settings.history_trades_s * 1000)
        if settings.stream is StreamKind.AGG_TRADE:
            # Binance wants startTime..endTime under an hour; the first row is all we need.
            end = min(now, start + 3_599_999)
            rows = core.rest.agg_trades(core.symbol, start_ms=start, end_ms=end, limit=1)
            if not rows:
                return None
            anchor = parse_rest_agg_trade(rows[0], core.symbol)
            self._tracker.anchor(anchor.trade_id - 1)
            return anchor.ts_ms
        rows = core.rest.recent_trades(core.symbol, limit=settings.rest_page_limit)
        ticks = [parse_rest_trade(r, core.symbol) for r in rows]
        ticks = [t for t in ticks if t.ts_ms >= start]
        if not ticks:
            return None
        if self._tracker.last_id is None:
            # Everything up to the newest REST trade is loaded here; the socket's first id
            # shows any hole after it.
            core.writer.put_many(ticks)
            core.c.ids_backfilled += len(ticks)
            self._tracker.anchor(ticks[-1].trade_id, ticks[-1].ts_ms)
        return ticks[0].ts_ms

    # --- jobs ---------------------------------------------------------------------------------
    def _run_probe(self, job: _Probe) -> None:
        core = self.core
        try:
            if core.settings.stream is StreamKind.AGG_TRADE:
                rows = core.rest.agg_trades(core.symbol, limit=1)
                tick = parse_rest_agg_trade(rows[-1], core.symbol) if rows else None
            else:
                rows = core.rest.recent_trades(core.symbol, limit=1)
                tick = parse_rest_trade(rows[-1], core.symbol) if rows else None
        except (RestError, ParseError) as exc:
            self.probe_results.put(ProbeResult(0, 0, str(exc)))
            return
        if tick is None:
            self.probe_results.put(ProbeResult(job.last_id or 0, 0))
            return
        self.probe_results.put(ProbeResult(tick.trade_id, tick.ts_ms))

    def _run_backfill(self, job: Backfill) -> None:
        core = self.core
        if job.from_ms is not None and not self._resolve_first_id(job):
            return
        job.next_id = None  # every attempt fetches the whole range (writes are idempotent)
        try:
            if core.settings.stream is StreamKind.AGG_TRADE:
                fetched, unavailable, failure, holes = fetch_agg(core, job)
            else:
                fetched, unavailable, failure, holes = fetch_trades(core, job)
        finally:
            core.backfill_todo = 0
        status, detail = self._outcome(job, fetched, unavailable, failure)
        if status in ("partial", "unrepairable") and not failure and core.settings.kline_fallback:
            note = kline_fallback(core, holes)
            detail = f"{detail}; {note}" if note else detail
        if status != "repaired":
            core.error(f"{job.kind} {job.first}..{job.last}: {status} ({detail})")
        elif job.kind == HISTORY:
            log.info("%s: history loaded, %d trades", core.symbol, fetched)
        if status not in ("open", "failed"):  # stored, or declared unrepairable
            self._done(job)
        self._finish_gap(job, status, fetched, detail)

    def _outcome(
        self, job: Backfill, fetched: int, unavailable: str, failure: str
    ) -> tuple[str, str]:
        """A finished attempt's gap status and detail."""
        missing = job.last - job.first + 1
        if fetched >= missing:
            if job.kind == "gap":
                self.core.c.gaps_repaired += 1
            return "repaired", f"{job.reason}; {fetched} ids fetched from REST"
        if failure and self.core.stop.is_set():
            return "open", (
                f"{job.reason}; {fetched} of {missing} ids fetched before the feed stopped"
            )
        if failure:
            # Still owed: retried in this run after a backoff delay, and on every start.
            delay_s = self._shelve(job)
            return "failed", (
                f"{job.reason}; {fetched} of {missing} ids fetched; REST failed: {failure}; "
                f"attempt {job.attempts}, next in {delay_s:.1f} s"
            )
        if fetched:
            return "partial", f"{job.reason}; {fetched} of {missing} ids fetched; {unavailable}"
        return "unrepairable", f"{job.reason}; REST no longer has these ids; {unavailable}"

    def _done(self, job: Backfill) -> None:
        """``job`` is owed no more (stored, or declared unrepairable)."""
        self.core.owed.pop(id(job), None)
        if job.completes_history:
            self.core.history_loaded = True

    def _shelve(self, job: Backfill) -> float:
        """Put a repair REST failed aside for its next attempt; returns the delay in seconds."""
        if job.delays is None:
            job.delays = self._repair_backoff()
        job.attempts += 1
        return self.core.shelf.put(job, job.delays)

    def _resolve_first_id(self, job: Backfill) -> bool:
        """Turn a range known by time into ids (the first trade at or after ``job.from_ms``).

        Returns True when ``job`` is ready to fetch; False when REST failed (shelved for a
        retry) or the range holds no trade (then it is recorded as repaired, 0 ids).
        """
        core = self.core
        assert job.from_ms is not None
        try:
            first = self._first_id_since(job.from_ms)
        except (RestError, ParseError) as exc:
            if core.stop.is_set():
                return False  # still open in storage
            delay_s = self._shelve(job)
            detail = (
                f"{job.reason}; REST failed: {exc}; attempt {job.attempts}, next in {delay_s:.1f} s"
            )
            core.error(f"{job.kind} up to id {job.last}: failed ({detail})")
            self._finish_gap(job, "failed", 0, detail)
            return False
        job.from_ms = None
        if first is None or first > job.last:
            self._done(job)
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
        core = self.core
        if core.settings.stream is StreamKind.AGG_TRADE:
            rows = core.rest.agg_trades(
                core.symbol, start_ms=from_ms, end_ms=from_ms + 3_599_999, limit=1
            )
            return parse_rest_agg_trade(rows[0], core.symbol).trade_id if rows else None
        # ``@trade``: only the newest trades are public; older ids are unrepairable anyway.
        rows = core.rest.recent_trades(core.symbol, limit=core.settings.rest_page_limit)
        ticks = [parse_rest_trade(r, core.symbol) for r in rows]
        return min((t.trade_id for t in ticks if t.ts_ms >= from_ms), default=None)

    def _finish_gap(
        self, job: Backfill, status: str, fetched: int, detail: str, first_id: int | None = None
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

        self.core.writer.submit(update)
