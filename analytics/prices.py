"""Per-leg price statistics: last price, returns, rolling volatility, volume, VWAP, trades."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analytics._validate import (
    as_series,
    check_finite,
    check_positive,
    check_window,
    readonly,
)
from analytics.warmup import Warmup, warmup_status

#: Seconds in a year of a market that trades around the clock (crypto perpetuals).
SECONDS_PER_YEAR = 365.0 * 86_400.0


@dataclass(frozen=True, slots=True)
class PriceStats:
    """Price statistics of one leg.

    Attributes
    ----------
    window : int
        Bars (returns, for volatility) per rolling window.
    last_price : float
        Close of the latest bar.
    returns : numpy.ndarray
        Simple returns ``p_t / p_{t−1} − 1`` per bar (NaN at bar 0).
    log_returns : numpy.ndarray
        ``ln(p_t / p_{t−1})`` per bar (NaN at bar 0).
    rolling_vol : numpy.ndarray
        Sample standard deviation (ddof = 1) of the ``window`` log returns ending at each
        bar, per bar (not annualised); NaN before bar ``window``.
    vol_last : float
        Latest ``rolling_vol`` (NaN during warm-up).
    vol_annualised_last : float or None
        ``vol_last · sqrt(seconds per year / bar_seconds)`` (365-day year, the market
        never closes); None when ``bar_seconds`` is not given.
    volume : float or None
        Base-asset volume summed over the last ``window`` bars (None without volumes).
    quote_volume : float or None
        Quote volume over the last ``window`` bars, ``Σ vwap_i · volume_i`` (close price
        instead of VWAP when bar VWAPs are not given).
    vwap : float or None
        Volume-weighted average price over the last ``window`` bars; NaN if no volume
        traded, None without volumes.
    vwap_source : str
        ``"bar_vwap"`` (exact, from per-bar VWAPs) or ``"close"`` (close-weighted
        approximation) or ``"none"``.
    trades : int or None
        Trades over the last ``window`` bars (None without counts).
    warmup : Warmup
        Warm-up state of the rolling volatility.

    Notes
    -----
    Volatility is of log returns, so it is unit-free and comparable across legs; for
    1 m bars multiply by ``sqrt(525,600)`` for a yearly figure (done for you when
    ``bar_seconds`` is given).
    """

    window: int
    last_price: float
    returns: np.ndarray
    log_returns: np.ndarray
    rolling_vol: np.ndarray
    vol_last: float
    vol_annualised_last: float | None
    volume: float | None
    quote_volume: float | None
    vwap: float | None
    vwap_source: str
    trades: int | None
    warmup: Warmup


def price_stats(
    close: object,
    window: int,
    *,
    volume: object | None = None,
    vwap: object | None = None,
    trades: object | None = None,
    bar_seconds: float | None = None,
) -> PriceStats:
    """Statistics of one leg's bars.

    Parameters
    ----------
    close : array_like
        Close prices, positive and finite, at least one bar.
    window : int
        Rolling window in bars (≥ 2).
    volume, vwap, trades : array_like or None
        Per-bar base volume (≥ 0), VWAP (> 0 where volume > 0) and trade count, same length
        as ``close``. Bars without trades may carry any VWAP; it is ignored.
    bar_seconds : float or None
        Bar length in seconds, for the annualised volatility.

    Returns
    -------
    PriceStats

    Raises
    ------
    ValueError
        Empty or non-finite input, non-positive prices, negative volumes, length mismatch,
        ``window < 2``, ``vwap`` without ``volume``, or ``bar_seconds ≤ 0``.

    Notes
    -----
    VWAP over several bars is ``Σ vwap_i v_i / Σ v_i``, which is the exact VWAP of all
    trades in those bars. With only closes it is ``Σ close_i v_i / Σ v_i``.
    """
    window = check_window(window)
    p = as_series("close", close)
    if p.size == 0:
        raise ValueError("close has no bars")
    check_finite("close", p)
    check_positive("close", p)
    if bar_seconds is not None and not (math.isfinite(bar_seconds) and bar_seconds > 0):
        raise ValueError(f"bar_seconds must be positive, got {bar_seconds!r}")

    def _aux(name: str, values: object | None) -> np.ndarray | None:
        if values is None:
            return None
        a = as_series(name, values)
        if a.size != p.size:
            raise ValueError(f"{name} has {a.size} bars but close has {p.size}")
        check_finite(name, a)
        if (a < 0).any():
            raise ValueError(f"{name} must not be negative")
        return a

    vol_a = _aux("volume", volume)
    vwap_a = _aux("vwap", vwap)
    trades_a = _aux("trades", trades)
    if vwap_a is not None and vol_a is None:
        raise ValueError("vwap needs volume to be aggregated over bars")

    n = p.size
    lr = np.full(n, np.nan)
    lr[1:] = np.diff(np.log(p))
    rets = np.full(n, np.nan)
    rets[1:] = p[1:] / p[:-1] - 1.0
    rv = np.full(n, np.nan)
    if n >= window + 1:
        w = sliding_window_view(lr[1:], window)
        rows = max(1, (1 << 16) // window)
        out = np.empty(w.shape[0])
        for s in range(0, w.shape[0], rows):
            out[s : s + rows] = np.std(w[s : s + rows], axis=1, ddof=1)
        rv[window:] = out
    vol_last = float(rv[-1])
    ann = None
    if bar_seconds is not None:
        ann = vol_last * math.sqrt(SECONDS_PER_YEAR / float(bar_seconds))

    tail = slice(max(0, n - window), n)
    volume_sum = quote = vw = None
    source = "none"
    if vol_a is not None:
        v = vol_a[tail]
        volume_sum = float(v.sum())
        px = vwap_a[tail] if vwap_a is not None else p[tail]
        source = "bar_vwap" if vwap_a is not None else "close"
        quote = float(np.sum(np.where(v > 0, px * v, 0.0)))
        vw = quote / volume_sum if volume_sum > 0 else float("nan")
    n_trades = int(trades_a[tail].sum()) if trades_a is not None else None
    readonly(rets, lr, rv)
    return PriceStats(
        window=window,
        last_price=float(p[-1]),
        returns=rets,
        log_returns=lr,
        rolling_vol=rv,
        vol_last=vol_last,
        vol_annualised_last=ann,
        volume=volume_sum,
        quote_volume=quote,
        vwap=vw,
        vwap_source=source,
        trades=n_trades,
        warmup=warmup_status(n, window, returns=True),
    )
