"""REST repair of owed id ranges: paging ``aggTrades`` by ``fromId`` (``@trade``: the newest
trades), and the 1m kline fallback for ids REST no longer has.

Functions of the feed's shared state (``ingestion.shared.FeedCore``), called by the repair
thread (``ingestion.repair``); fetched ticks go to the writer queue, so they are stored in
order with everything queued before them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from formats.wire import (
    KLINE_COLUMNS,
    ParseError,
    parse_rest_agg_trade,
    parse_rest_kline,
    parse_rest_trade,
)
from ingestion.rest import RestError
from ingestion.shared import FeedCore
from storage.records import Gap, Tick

__all__ = [
    "Backfill",
    "GapRef",
    "Hole",
    "fetch_agg",
    "fetch_trades",
    "kline_fallback",
    "load_klines",
    "minutes_text",
    "record_gap",
]

log = logging.getLogger(__name__)


@dataclass
class GapRef:
    """Storage's id for a recorded gap, filled in by the writer thread (FIFO: before updates)."""

    gap: Gap
    gap_id: int | None = None


@dataclass
class Backfill:
    """Fetch ids ``first..last`` from REST; recorded in storage (``ref``) before it is fetched.

    ``kind`` is ``history`` (start-up loading, not counted as a hole) or ``gap``.
    ``from_ms`` set: the range is known by time only (the trades at or after it up to
    ``last``); ``first`` is resolved from REST before fetching.
    """

    first: int
    last: int
    kind: str
    ref: GapRef | None = None
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
class Hole:
    """Ids ``first..last`` of a gap that REST could not supply, and the trade times around them
    (``lo_ms`` of the id before, ``hi_ms`` of the id after; None if unknown)."""

    first: int
    last: int
    lo_ms: int | None
    hi_ms: int | None = None


def load_klines(core: FeedCore, start_ms: int, end_ms: int) -> list[int]:
    """1m klines for the closed minutes ``[start_ms, end_ms)``, queued for storage after
    everything queued so far; returns the open times of the minutes that traded."""
    frames = []
    cursor = start_ms
    while cursor < end_ms and not core.stop.is_set():
        rows = core.rest.klines(
            core.symbol, interval="1m", start_ms=cursor, end_ms=end_ms - 1, limit=1500
        )
        parsed = [parse_rest_kline(r) for r in rows]
        parsed = [r for r in parsed if cursor <= r["open_time"] < end_ms]
        if not parsed:
            break
        frames.append(pd.DataFrame(parsed, columns=list(KLINE_COLUMNS)))
        cursor = int(parsed[-1]["open_time"]) + 60_000
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        symbol = core.symbol
        # Through the writer queue, after any ticks already queued (FIFO).
        core.writer.submit(lambda storage: storage.write_klines(symbol, frame))
        log.info("%s: loaded %d 1m klines", core.symbol, len(frame))
        return [int(t) for t in frame.loc[frame["count"] > 0, "open_time"]]
    return []


def kline_fallback(core: FeedCore, holes: list[Hole]) -> str:
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
    closed_before = core.clock.now_ms() // 60_000 * 60_000  # a kline is final once its minute ended
    filled: list[int] = []
    still_open = False
    try:
        for lo, hi in spans:
            still_open = still_open or hi > closed_before
            if lo < min(hi, closed_before):
                filled += load_klines(core, lo, min(hi, closed_before))
    except (RestError, ParseError) as exc:
        log.warning("%s: 1m kline fallback failed: %s", core.symbol, exc)
        notes.append(f"1m kline fallback failed: {exc}")
    if filled:
        notes.insert(
            0,
            f"1m klines {minutes_text(filled)} filled the bars; ticks and 1s "
            "bars of those minutes are missing",
        )
    elif spans and not still_open:
        notes.append("no traded 1m klines for those minutes")
    if still_open:
        notes.append("minutes not yet closed were not filled from klines")
    return "; ".join(notes)


class _Runs:
    """The id runs REST could not supply during one repair, merged as they are found."""

    def __init__(self) -> None:
        self.holes: list[Hole] = []

    def unavailable(self, a: int, b: int, lo_ms: int | None) -> None:
        holes = self.holes
        if holes and holes[-1].last == a - 1 and holes[-1].hi_ms is None:
            holes[-1].last = b  # continues the run before it
        else:
            holes.append(Hole(a, b, lo_ms))

    def later(self, tick: Tick) -> None:
        """``tick`` came from REST: if it is past the open run, its time bounds the run's."""
        holes = self.holes
        if holes and holes[-1].hi_ms is None and tick.trade_id > holes[-1].last:
            holes[-1].hi_ms = tick.ts_ms


def _page(
    core: FeedCore, rows: list, next_id: int, last: int
) -> tuple[list[Tick], Tick | None, Tick | None]:
    """One ``aggTrades`` page: the ticks of ids ``next_id..last``, the first and last rows."""
    ticks = []
    first_row: Tick | None = None
    last_row: Tick | None = None
    for row in rows:
        try:
            tick = parse_rest_agg_trade(row, core.symbol)
        except ParseError as exc:
            log.warning("%s: bad REST row %r: %s", core.symbol, row, exc)
            continue
        if first_row is None:
            first_row = tick
        last_row = tick
        if next_id <= tick.trade_id <= last:
            ticks.append(tick)
    return ticks, first_row, last_row


def fetch_agg(core: FeedCore, job: Backfill) -> tuple[int, str, str, list[Hole]]:
    """Page ``aggTrades`` by ``fromId``.

    Returns (ids fetched, why some are unavailable, REST failure or "", the id runs REST
    could not supply with the trade times around them).
    """
    settings = core.settings
    first = job.first
    notes = []
    runs = _Runs()
    prev_ms = job.before_ms  # trade time of id next_id - 1, if known
    if job.last - first + 1 > settings.max_backfill_ids:
        first = job.last - settings.max_backfill_ids + 1
        notes.append(
            f"ids {job.first}..{first - 1} exceed max_backfill_ids={settings.max_backfill_ids}"
            " and were not fetched"
        )
        runs.unavailable(job.first, first - 1, prev_ms)
        prev_ms = None
    next_id = first
    fetched = 0
    pages = 0
    while next_id <= job.last and not core.stop.is_set():
        core.backfill_todo = job.last - next_id + 1
        pages += 1
        if pages % 10 == 0:
            log.info("%s: %s backfill, %d ids to go", core.symbol, job.kind, core.backfill_todo)
        try:
            rows = core.rest.agg_trades(
                core.symbol, from_id=next_id, limit=settings.rest_page_limit
            )
        except RestError as exc:
            return fetched, "; ".join(notes), str(exc), runs.holes
        if not rows:
            notes.append(f"REST has no ids from {next_id} although the stream is past {job.last}")
            runs.unavailable(next_id, job.last, prev_ms)
            break
        ticks, first_row, last_row = _page(core, rows, next_id, job.last)
        if first_row is not None and first_row.trade_id > next_id:
            gone_to = min(first_row.trade_id - 1, job.last)
            notes.append(
                f"asked REST for id {next_id}, it starts at {first_row.trade_id}: "
                f"ids {next_id}..{gone_to} are no longer available"
            )
            runs.unavailable(next_id, gone_to, prev_ms)
        if first_row is not None:
            runs.later(first_row)
        if ticks:
            core.writer.put_many(ticks)
            fetched += len(ticks)
            core.c.ids_backfilled += len(ticks)
        last_row_id = int(rows[-1].get("a", next_id)) if isinstance(rows[-1], dict) else next_id
        if last_row_id < next_id:
            break  # REST went backwards: do not loop forever
        next_id = last_row_id + 1
        job.next_id = next_id
        prev_ms = last_row.ts_ms if last_row and last_row.trade_id == last_row_id else None
    if core.stop.is_set() and next_id <= job.last:
        return fetched, "; ".join(notes), "stopped before the repair finished", runs.holes
    for hole in runs.holes:  # every id of the gap is older than the id after it
        if hole.hi_ms is None or (job.after_ms is not None and job.after_ms < hole.hi_ms):
            hole.hi_ms = job.after_ms
    return fetched, "; ".join(notes), "", runs.holes


def fetch_trades(core: FeedCore, job: Backfill) -> tuple[int, str, str, list[Hole]]:
    """``@trade`` ids: only ``/fapi/v1/trades`` (the newest 1000) is public; older ids are
    unrepairable without an API key (``historicalTrades``). Returns what
    ``fetch_agg`` returns."""
    try:
        rows = core.rest.recent_trades(core.symbol, limit=core.settings.rest_page_limit)
    except RestError as exc:
        return 0, "", str(exc), []
    ticks = []
    for row in rows:
        try:
            tick = parse_rest_trade(row, core.symbol)
        except ParseError:
            continue
        if job.first <= tick.trade_id <= job.last:
            ticks.append(tick)
    if ticks:
        core.writer.put_many(ticks)
        core.c.ids_backfilled += len(ticks)
    oldest = min((int(r["id"]) for r in rows if isinstance(r, dict) and "id" in r), default=None)
    note = ""
    holes = []
    if oldest is not None and oldest > job.first:
        note = f"/fapi/v1/trades only reaches back to id {oldest}"
        # The oldest REST trade (or the id after the gap) is later than every lost id.
        after = ticks[0].ts_ms if ticks else job.after_ms
        holes.append(Hole(job.first, min(oldest - 1, job.last), job.before_ms, after))
    elif oldest is None:
        holes.append(Hole(job.first, job.last, job.before_ms, job.after_ms))
    return len(ticks), note, "", holes


def record_gap(storage: Any, ref: GapRef) -> None:
    ref.gap_id = storage.record_gap(ref.gap)


def minutes_text(open_ms: list[int]) -> str:
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
