"""Bar convention and the vectorised aggregation of a batch of ticks into partial bars.

Convention (the README repeats it):

* A bar of timeframe ``tf`` covers the half-open interval ``[open_time_ms, open_time_ms + tf)``
  of **exchange trade time** (Binance ``T``), aligned to UTC boundaries (1m bars start at :00,
  5m bars at multiples of five minutes), and is labelled by its open time in UTC ms.
* ``open``/``close`` are the prices of the first/last trade ordered by ``(ts_ms, trade_id)``;
  ``high``/``low`` the extremes; ``volume`` the base quantity; ``trades`` the count of prints;
  ``vwap = quote_volume / volume``; ``buy_volume`` is taker-buy volume: trades whose buyer was
  not the maker (``is_buyer_maker`` false).
* Empty intervals produce **no** bar in storage. Readers that need a regular grid (the aligned
  pair frame) carry the previous close forward and flag the row as filled.

A batch is aggregated into *partial* bars here; :mod:`storage.sqlite` merges partials into the
stored bars, which is associative, so bars are maintained incrementally and late or backfilled
ticks update exactly the bar they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PartialBars:
    """Column arrays of bars aggregated from one batch; one element per touched interval."""

    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    buy_volume: np.ndarray
    first_ts_ms: np.ndarray
    first_id: np.ndarray
    last_ts_ms: np.ndarray
    last_id: np.ndarray

    def rows(self, sym_id: int, tf_s: int) -> list[tuple]:
        """Rows for an INSERT in the column order of the ``bars`` table (without src)."""
        n = len(self.open_time_ms)
        return list(
            zip(
                [sym_id] * n,
                [tf_s] * n,
                self.open_time_ms.tolist(),
                self.open.tolist(),
                self.high.tolist(),
                self.low.tolist(),
                self.close.tolist(),
                self.volume.tolist(),
                self.quote_volume.tolist(),
                self.trades.tolist(),
                self.buy_volume.tolist(),
                self.first_ts_ms.tolist(),
                self.first_id.tolist(),
                self.last_ts_ms.tolist(),
                self.last_id.tolist(),
                strict=True,
            )
        )


def aggregate_ticks(
    ts_ms: np.ndarray,
    trade_id: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    is_buyer_maker: np.ndarray,
    tf_ms: int,
) -> PartialBars:
    """Aggregate ticks (any order) into bars of ``tf_ms`` milliseconds.

    Ticks are ordered by ``(ts_ms, trade_id)``; the interval of a tick is
    ``ts_ms - ts_ms % tf_ms`` (floor, so negative times also land correctly).
    """
    order = np.lexsort((trade_id, ts_ms))
    ts = ts_ms[order]
    ids = trade_id[order]
    px = price[order]
    q = qty[order]
    taker_buy = ~is_buyer_maker[order].astype(bool)
    bucket = ts - np.mod(ts, tf_ms)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    return PartialBars(
        open_time_ms=bucket[starts],
        open=px[starts],
        high=np.maximum.reduceat(px, starts),
        low=np.minimum.reduceat(px, starts),
        close=px[ends],
        volume=np.add.reduceat(q, starts),
        quote_volume=np.add.reduceat(px * q, starts),
        trades=(ends - starts + 1).astype(np.int64),
        buy_volume=np.add.reduceat(np.where(taker_buy, q, 0.0), starts),
        first_ts_ms=ts[starts],
        first_id=ids[starts],
        last_ts_ms=ts[ends],
        last_id=ids[ends],
    )


def merge_bars(rows: np.ndarray, tf_ms: int) -> tuple[np.ndarray, ...]:
    """Merge finer bars into coarser ones of ``tf_ms``.

    ``rows`` is a structured/2-D float array sorted by open time with columns
    ``open_time_ms, open, high, low, close, volume, quote_volume, trades, buy_volume,
    first_ts_ms, first_id, last_ts_ms, last_id, src``. Returns the same columns for the merged
    bars. Used to derive 5m bars from 1m bars, so a 5m bar always equals the merge of its
    1m bars.
    """
    t = rows[:, 0].astype(np.int64)
    bucket = t - np.mod(t, tf_ms)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t)] - 1
    return (
        bucket[starts],
        rows[starts, 1],
        np.maximum.reduceat(rows[:, 2], starts),
        np.minimum.reduceat(rows[:, 3], starts),
        rows[ends, 4],
        np.add.reduceat(rows[:, 5], starts),
        np.add.reduceat(rows[:, 6], starts),
        np.add.reduceat(rows[:, 7], starts),
        np.add.reduceat(rows[:, 8], starts),
        rows[starts, 9],
        rows[starts, 10],
        rows[ends, 11],
        rows[ends, 12],
        np.maximum.reduceat(rows[:, 13], starts),
    )
