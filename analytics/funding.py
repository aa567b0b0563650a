"""Funding events placed on bars: which bar's close a settlement is charged at (pure)."""

from __future__ import annotations

import numpy as np

from analytics._validate import as_series, check_finite


def funding_per_bar(
    open_ms: object, bar_ms: int, funding_time_ms: object, rates: object
) -> np.ndarray:
    """Per-bar funding rates for :func:`analytics.backtest.backtest` (0 where none settles).

    Parameters
    ----------
    open_ms : array_like
        Open time of each bar, ms, strictly increasing (gaps allowed).
    bar_ms : int
        Bar length, ms: bar ``t`` closes at ``open_ms[t] + bar_ms``.
    funding_time_ms, rates : array_like
        Settlement times (ms) and rates of one leg (``GET /fapi/v1/fundingRate`` rows).

    Returns
    -------
    numpy.ndarray
        ``out[t]``: the sum of the rates settling at or after bar ``t``'s close and before the
        next bar's close. A settlement before the first close or at/after the last close is
        outside the backtest and dropped.

    Notes
    -----
    A settlement at time T charges whoever holds a position at T. The backtest changes its
    position only at bar closes, so the position held at T is the one after the last close at
    or before T, and its price then is that bar's close (the last trade before T): that bar is
    where the rate goes.
    """
    opens = np.asarray(as_series("open_ms", open_ms), dtype=float)
    if isinstance(bar_ms, bool) or not isinstance(bar_ms, int | np.integer) or bar_ms <= 0:
        raise ValueError(f"bar_ms must be a positive integer, got {bar_ms!r}")
    if opens.size and (not np.isfinite(opens).all() or (np.diff(opens) <= 0).any()):
        raise ValueError("open_ms must be finite and strictly increasing")
    times = as_series("funding_time_ms", funding_time_ms)
    r = as_series("rates", rates)
    if times.size != r.size:
        raise ValueError(f"{times.size} funding times but {r.size} rates")
    check_finite("funding_time_ms", times)
    check_finite("rates", r)
    out = np.zeros(opens.size)
    if not opens.size or not times.size:
        return out
    closes = opens + bar_ms
    inside = (times >= closes[0]) & (times < closes[-1])
    at = np.searchsorted(closes, times[inside], side="right") - 1
    np.add.at(out, at, r[inside])
    return out
