"""What the SQLite and the PostgreSQL :class:`Reader` share: the queries and the frames.

:class:`ReaderBase` holds the reader methods whose logic is the same on both backends. Their SQL
is written with ``?`` placeholders and runs through ``self._q(sql, params)`` (or, inside a
backend's snapshot, a :data:`Query` bound to that snapshot); the PostgreSQL reader turns ``?``
into ``%s`` (:func:`pyformat`). What differs per backend stays there: connections, snapshots,
the table of 1s bars (``_bars_table``) and what :meth:`info` adds around the symbol summaries.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from storage.errors import UnknownSymbolError
from storage.funding import FundingReads
from storage.outbox import OutboxReads
from storage.records import timeframe_s
from storage.timefmt import ms_to_iso, now_ms

BAR_COLUMNS = [
    "open_time_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "vwap",
    "buy_volume",
]
#: Columns of a bars export (``python -m storage export`` and the dashboard's CSV): the bar
#: columns with ``open_time`` as ISO-8601 UTC.
BAR_EXPORT_COLUMNS = ["open_time", *BAR_COLUMNS[1:]]


def bars_for_export(bars: pd.DataFrame) -> pd.DataFrame:
    """``Reader.bars`` output → export rows: ``open_time`` as ISO-8601 UTC, documented order."""
    out = bars.rename(columns={"open_time_ms": "open_time"})
    out["open_time"] = ms_to_iso(bars["open_time_ms"]).to_numpy()
    return out[BAR_EXPORT_COLUMNS]


PAIR_COLUMNS = [
    "open_time_ms",
    "x",
    "y",
    "x_filled",
    "y_filled",
    "x_volume",
    "y_volume",
    "x_trades",
    "y_trades",
]
TICK_COLUMNS = ["trade_id", "ts_ms", "price", "qty", "is_buyer_maker"]
GAP_COLUMNS = [
    "gap_id",
    "symbol",
    "first_missing_id",
    "last_missing_id",
    "missing",
    "found_ts_ms",
    "status",
    "repaired_count",
    "detail",
    "updated_ts_ms",
]
FEED_STATUS_COLUMNS = ["collector_id", "symbol", "status", "updated_ts_ms"]
ALERT_RULE_COLUMNS = [
    "rule_id",
    "name",
    "x",
    "y",
    "tf",
    "metric",
    "op",
    "threshold",
    "cooldown_s",
    "enabled",
    "params",
    "created_ts_ms",
]
ALERT_EVENT_COLUMNS = ["event_id", "rule_id", "fired_ts_ms", "bar_time_ms", "value", "message"]

#: Runs one statement written with ``?`` placeholders and returns all its rows.
Query = Callable[[str, Sequence[Any]], list[tuple]]

_LO, _HI = -(2**62), 2**62  # an open end of a time range


@lru_cache(maxsize=256)
def pyformat(sql: str) -> str:
    """``?`` placeholders → psycopg's ``%s``. Our SQL has no literal ``?`` or ``%`` to confuse."""
    if "%" in sql:
        raise ValueError(f"SQL for ? placeholders holds a literal '%': {sql!r}")
    return sql.replace("?", "%s")


def _check_range(start_ms: int | None, end_ms: int | None, limit: int | None) -> None:
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise ValueError(f"start ({start_ms}) is after end ({end_ms})")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be at least 1 (got {limit})")


def _empty_pair() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "open_time_ms": pd.Series([], dtype="int64"),
            "x": pd.Series([], dtype="float64"),
            "y": pd.Series([], dtype="float64"),
            "x_filled": pd.Series([], dtype="bool"),
            "y_filled": pd.Series([], dtype="bool"),
            "x_volume": pd.Series([], dtype="float64"),
            "y_volume": pd.Series([], dtype="float64"),
            "x_trades": pd.Series([], dtype="int64"),
            "y_trades": pd.Series([], dtype="int64"),
        }
    )


def pair_span(
    rx: tuple[int, int],
    ry: tuple[int, int],
    tf_ms: int,
    start_ms: int | None,
    end_ms: int | None,
    limit: int | None,
) -> tuple[int, int] | None:
    """First and last grid time of a pair frame from the legs' bar ranges; None if empty.

    From the first bar where both legs traded (not before ``start_ms``) to the last bar of
    either leg (not after ``end_ms``); with ``limit`` only the last ``limit`` points.
    """
    first = max(rx[0], ry[0])
    last = max(rx[1], ry[1])
    if start_ms is not None:
        first = max(first, -(-int(start_ms) // tf_ms) * tf_ms)
    if end_ms is not None:
        last = min(last, int(end_ms) - int(end_ms) % tf_ms)
    if limit is not None:
        first = max(first, last - (int(limit) - 1) * tf_ms)
    return None if last < first else (first, last)


def leg_columns(
    grid: np.ndarray, tf_ms: int, rows: Sequence[tuple], prev_close: Callable[[], float | None]
) -> tuple[np.ndarray, ...]:
    """One leg on the grid: (close, filled, volume, trades), closes carried forward.

    ``rows`` are the leg's ``(open_time_ms, close, volume, trades)`` bars within the grid, in
    order; ``prev_close()`` (asked only if the grid's first bar has no trade) is the close of
    the bar before the grid, or None.
    """
    t = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    pos = ((t - grid[0]) // tf_ms).astype(np.int64)
    close = np.full(len(grid), np.nan)
    vol = np.zeros(len(grid))
    trades = np.zeros(len(grid), np.int64)
    close[pos] = [r[1] for r in rows]
    vol[pos] = [r[2] for r in rows]
    trades[pos] = [r[3] for r in rows]
    filled = np.ones(len(grid), bool)
    filled[pos] = False
    if filled[0]:
        prev = prev_close()
        if prev is not None:
            close[0] = prev
    return pd.Series(close).ffill().to_numpy(), filled, vol, trades


class ReaderBase(OutboxReads, FundingReads):
    """The reader methods both backends share; see the module docstring.

    A subclass provides ``_q`` (one query, ``?`` placeholders), ``_sym_ids`` (a dict) and, if
    its 1s bars live elsewhere, ``_bars_table``.
    """

    _sym_ids: dict[str, int]

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def _bars_table(self, tf_s: int) -> str:
        """The table holding bars of ``tf_s`` seconds."""
        del tf_s
        return "bars"

    # ----------------------------------------------------------------- symbols
    def symbols(self) -> list[str]:
        return [r[0] for r in self._q("SELECT symbol FROM symbols ORDER BY symbol")]

    def _sym_id(self, symbol: str) -> int:
        symbol = symbol.upper()
        sid = self._sym_ids.get(symbol)
        if sid is None:
            rows = self._q("SELECT sym_id FROM symbols WHERE symbol = ?", (symbol,))
            if not rows:
                raise UnknownSymbolError(symbol, self.symbols())
            sid = self._sym_ids[symbol] = int(rows[0][0])
        return sid

    # ----------------------------------------------------------------- bars
    def bars(
        self,
        symbol: str,
        tf: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Bars with at least one trade, oldest first, open time in ``[start_ms, end_ms]``.

        With ``limit``, the last ``limit`` such bars of the range.
        """
        tf_s = timeframe_s(tf)
        _check_range(start_ms, end_ms, limit)
        sid = self._sym_id(symbol)
        lo = _LO if start_ms is None else int(start_ms)
        hi = _HI if end_ms is None else int(end_ms)
        sql = (
            "SELECT open_time_ms, open, high, low, close, volume, trades, "
            "quote_volume / NULLIF(volume, 0), buy_volume FROM "
            + self._bars_table(tf_s)
            + " WHERE sym_id = ? AND tf_s = ? AND open_time_ms BETWEEN ? AND ? "
            "ORDER BY open_time_ms"
        )
        params: list[Any] = [sid, tf_s, lo, hi]
        if limit is not None:
            sql = sql.replace("ORDER BY open_time_ms", "ORDER BY open_time_ms DESC LIMIT ?")
            params.append(int(limit))
        rows = self._q(sql, params)
        if limit is not None:
            rows.reverse()
        df = pd.DataFrame(rows, columns=BAR_COLUMNS)
        return df.astype(
            {
                "open_time_ms": "int64",
                "trades": "int64",
                "open": "float64",
                "high": "float64",
                "low": "float64",
                "close": "float64",
                "volume": "float64",
                "vwap": "float64",
                "buy_volume": "float64",
            }
        )

    def bar_closes(
        self, symbol: str, tf: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> np.ndarray:
        """``(open_time_ms, close, quote_volume)`` per traded bar in ``[start_ms, end_ms]``.

        An ``(n, 3)`` float64 array, oldest first: the lean read of the universe scan, which
        reads hundreds of symbols at once (times in ms are exact in float64).
        """
        tf_s = timeframe_s(tf)
        _check_range(start_ms, end_ms, None)
        lo = _LO if start_ms is None else int(start_ms)
        hi = _HI if end_ms is None else int(end_ms)
        rows = self._q(
            "SELECT open_time_ms, close, quote_volume FROM "
            + self._bars_table(tf_s)
            + " WHERE sym_id = ? AND tf_s = ? AND open_time_ms BETWEEN ? AND ? "
            "ORDER BY open_time_ms",
            (self._sym_id(symbol), tf_s, lo, hi),
        )
        flat = np.fromiter(itertools.chain.from_iterable(rows), np.float64, 3 * len(rows))
        return flat.reshape(len(rows), 3)

    def bar_range(self, symbol: str, tf: str) -> tuple[int, int] | None:
        """(first, last) bar open time of a symbol, or None if it has no bars."""
        return self._bar_range(self._q, self._sym_id(symbol), timeframe_s(tf))

    def newest_bar_stamp(self, symbol: str, tf: str) -> tuple[int, int, float] | None:
        """(open time ms, trades, volume) of a symbol's newest bar, or None if it has none.

        One primary-key lookup: a cheap "did this symbol's bars change?" stamp for caches.
        A trade lands in the newest bar, so the stamp moves with every stored trade.
        """
        tf_s = timeframe_s(tf)
        rows = self._q(
            f"SELECT open_time_ms, trades, volume FROM {self._bars_table(tf_s)} "
            "WHERE sym_id = ? AND tf_s = ? ORDER BY open_time_ms DESC LIMIT 1",
            (self._sym_id(symbol), tf_s),
        )
        return None if not rows else (int(rows[0][0]), int(rows[0][1]), float(rows[0][2]))

    def _bar_range(self, q: Query, sid: int, tf_s: int) -> tuple[int, int] | None:
        # Two single-aggregate subqueries: SQLite answers each from the index in O(log n);
        # min() and max() in one SELECT would scan every bar of the symbol.
        table = self._bars_table(tf_s)
        row = q(
            f"SELECT (SELECT min(open_time_ms) FROM {table} WHERE sym_id = ? AND tf_s = ?),"
            f" (SELECT max(open_time_ms) FROM {table} WHERE sym_id = ? AND tf_s = ?)",
            (sid, tf_s, sid, tf_s),
        )[0]
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def _pair_legs(
        self, x: str, y: str, tf: str, start_ms: int | None, end_ms: int | None, limit: int | None
    ) -> tuple[int, int, int]:
        """Check a pair frame's arguments; the legs' symbol ids and ``tf`` in seconds."""
        tf_s = timeframe_s(tf)
        _check_range(start_ms, end_ms, limit)
        if x.upper() == y.upper():
            raise ValueError(f"the two legs must differ (both are {x.upper()})")
        return self._sym_id(x), self._sym_id(y), tf_s

    def _pair_frame(
        self,
        q: Query,
        sx: int,
        sy: int,
        tf_s: int,
        start_ms: int | None,
        end_ms: int | None,
        limit: int | None,
    ) -> pd.DataFrame:
        """The body of ``pair_frame``: every query through ``q`` (the backend's snapshot)."""
        tf_ms = tf_s * 1000
        table = self._bars_table(tf_s)
        rx, ry = self._bar_range(q, sx, tf_s), self._bar_range(q, sy, tf_s)
        if rx is None or ry is None:
            return _empty_pair()
        span = pair_span(rx, ry, tf_ms, start_ms, end_ms, limit)
        if span is None:
            return _empty_pair()
        first, last = span
        grid = np.arange(first, last + tf_ms, tf_ms, dtype=np.int64)
        out: dict[str, Any] = {"open_time_ms": grid}
        for leg, sid in (("x", sx), ("y", sy)):
            rows = q(
                f"SELECT open_time_ms, close, volume, trades FROM {table} WHERE sym_id = ? "
                "AND tf_s = ? AND open_time_ms BETWEEN ? AND ? ORDER BY open_time_ms",
                (sid, tf_s, first, last),
            )

            def prev_close(sid: int = sid) -> float | None:
                prev = q(
                    f"SELECT close FROM {table} WHERE sym_id = ? AND tf_s = ? "
                    "AND open_time_ms < ? ORDER BY open_time_ms DESC LIMIT 1",
                    (sid, tf_s, first),
                )
                return prev[0][0] if prev else None

            (out[leg], out[f"{leg}_filled"], out[f"{leg}_volume"], out[f"{leg}_trades"]) = (
                leg_columns(grid, tf_ms, rows, prev_close)
            )
        return pd.DataFrame(out, columns=PAIR_COLUMNS)

    # ----------------------------------------------------------------- ticks
    def ticks(
        self, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> pd.DataFrame:
        """Ticks by exchange time in ``[start_ms, end_ms]``, ordered by (ts_ms, trade_id)."""
        _check_range(start_ms, end_ms, None)
        lo = _LO if start_ms is None else int(start_ms)
        hi = _HI if end_ms is None else int(end_ms)
        rows = self._q(
            "SELECT trade_id, ts_ms, price, qty, is_buyer_maker FROM ticks WHERE sym_id = ? "
            "AND ts_ms BETWEEN ? AND ? ORDER BY ts_ms, trade_id",
            (self._sym_id(symbol), lo, hi),
        )
        df = pd.DataFrame(rows, columns=TICK_COLUMNS)
        return df.astype(
            {
                "trade_id": "int64",
                "ts_ms": "int64",
                "price": "float64",
                "qty": "float64",
                "is_buyer_maker": "bool",
            }
        )

    def last_trade_id(self, symbol: str) -> int | None:
        row = self._q("SELECT max(trade_id) FROM ticks WHERE sym_id = ?", (self._sym_id(symbol),))[
            0
        ]
        return None if row[0] is None else int(row[0])

    def id_kind(self, symbol: str) -> str:
        return self._q("SELECT id_kind FROM symbols WHERE sym_id = ?", (self._sym_id(symbol),))[0][
            0
        ]

    # ----------------------------------------------------------------- gaps, status, alerts
    def gaps(self, symbol: str | None = None) -> pd.DataFrame:
        sql = (
            "SELECT gap_id, symbol, first_missing_id, last_missing_id, "
            "last_missing_id - first_missing_id + 1, found_ts_ms, status, repaired_count, "
            "detail, updated_ts_ms FROM gaps JOIN symbols USING (sym_id)"
        )
        params: tuple = ()
        if symbol is not None:
            sql += " WHERE sym_id = ?"
            params = (self._sym_id(symbol),)
        return pd.DataFrame(
            self._q(sql + " ORDER BY found_ts_ms, gap_id", params), columns=GAP_COLUMNS
        )

    def feed_status(self, max_age_s: float | None = None) -> pd.DataFrame:
        """Published feed health: one row per (collector, symbol), newest first."""
        cutoff = _LO if max_age_s is None else now_ms() - int(max_age_s * 1000)
        rows = self._q(
            "SELECT collector_id, symbol, status, updated_ts_ms FROM feed_status "
            "WHERE updated_ts_ms >= ? ORDER BY updated_ts_ms DESC",
            (cutoff,),
        )
        return pd.DataFrame(
            [(c, s, json.loads(st), u) for c, s, st, u in rows], columns=FEED_STATUS_COLUMNS
        )

    def alert_rules(self) -> pd.DataFrame:
        return pd.DataFrame(
            self._q(f"SELECT {', '.join(ALERT_RULE_COLUMNS)} FROM alert_rules ORDER BY rule_id"),
            columns=ALERT_RULE_COLUMNS,
        )

    def alert_events(self, since_ms: int | None = None, limit: int = 1000) -> pd.DataFrame:
        rows = self._q(
            f"SELECT {', '.join(ALERT_EVENT_COLUMNS)} FROM alert_events WHERE fired_ts_ms >= ? "
            "ORDER BY event_id DESC LIMIT ?",
            (since_ms or 0, limit),
        )
        return pd.DataFrame(rows, columns=ALERT_EVENT_COLUMNS)

    # ----------------------------------------------------------------- info
    def _symbol_info(self, q: Query) -> list[dict[str, Any]]:
        """Per symbol: ticks, bars per timeframe and gaps by status (``info()["symbols"]``)."""
        symbols = []
        for sym_id, symbol, kind in q(
            "SELECT sym_id, symbol, id_kind FROM symbols ORDER BY symbol", ()
        ):
            n, t0, t1, i0, i1 = q(
                "SELECT count(*), min(ts_ms), max(ts_ms), min(trade_id), max(trade_id) "
                "FROM ticks WHERE sym_id = ?",
                (sym_id,),
            )[0]
            bars = {}
            for tf, tf_s in (("1s", 1), ("1m", 60), ("5m", 300)):
                bn, b0, b1 = q(
                    "SELECT count(*), min(open_time_ms), max(open_time_ms) FROM "
                    f"{self._bars_table(tf_s)} WHERE sym_id = ? AND tf_s = ?",
                    (sym_id, tf_s),
                )[0]
                bars[tf] = {"count": bn, "first_ms": b0, "last_ms": b1}
            gaps = dict(
                q(
                    "SELECT status, count(*) FROM gaps WHERE sym_id = ? "
                    "GROUP BY status ORDER BY status",
                    (sym_id,),
                )
            )
            symbols.append(
                {
                    "symbol": symbol,
                    "id_kind": kind,
                    "ticks": n,
                    "first_tick_ms": t0,
                    "last_tick_ms": t1,
                    "first_id": i0,
                    "last_id": i1,
                    "bars": bars,
                    "gaps": gaps,
                }
            )
        return symbols
