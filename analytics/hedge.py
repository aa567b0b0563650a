"""Rolling OLS hedge ratio, spread, z-score and return correlation, exact at any price level.

Role convention used everywhere in ``analytics``: **x is the dependent leg**,
``x_t = alpha + beta · y_t + e_t``. Swapping the legs is a different regression: the two
slopes multiply to r² (``beta_{x|y} · beta_{y|x} = r²``), r² and the correlation are the
same, but spreads and z-scores are not mirror images of each other.

Numerics: every window is centred on its own means before any product is summed
(a two-pass computation on ``numpy.lib.stride_tricks.sliding_window_view``, processed in
cache-sized chunks). Cumulative-sum formulas such as ``Σx² − n·x̄²`` lose about
``(price / window std)²`` ulps — at BTC levels most of the digits — and are not used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analytics._validate import (
    ZERO_SD_RTOL,
    check_not_constant,
    check_window,
    pair_arrays,
    readonly,
    window_pair,
)
from analytics.warmup import Warmup, warmup_status

#: Elements per chunk of stacked windows: small enough to stay in cache (≈ 0.5 MB each).
_CHUNK_ELEMS = 1 << 16
#: Above r² = 1 − this, the residual sum of squares is summed from residuals, not Sxx(1 − r²).
_TIGHT_FIT = 1e-3


def _chunks(n_windows: int, window: int) -> Iterator[tuple[int, int]]:
    rows = max(1, _CHUNK_ELEMS // window)
    for start in range(0, n_windows, rows):
        yield start, min(n_windows, start + rows)


def window_varies(a: np.ndarray, window: int) -> np.ndarray:
    """For each full window ending at ``t = window-1 .. n-1``: does ``a`` change inside it?

    Exact (integer counts of changes), so a flat window is never mistaken for one with a
    tiny rounding-level variance.
    """
    changes = np.concatenate(([0], np.cumsum(a[1:] != a[:-1])))
    return (changes[window - 1 :] - changes[: a.size - window + 1]) > 0


@dataclass(frozen=True, slots=True)
class OLSFit:
    """One OLS of x on ``[1, y]`` over a whole sample.

    Attributes
    ----------
    alpha, beta : float
        Intercept and hedge ratio: ``x = alpha + beta · y + resid``.
    r2 : float
        Coefficient of determination (NaN if x is constant).
    resid : numpy.ndarray
        Residuals ``x − alpha − beta · y`` (read-only), the spread the stationarity tests use.
    resid_sd : float
        Sample standard deviation of the residuals (ddof = 1).
    nobs : int
        Bars in the sample.

    Notes
    -----
    Computed from centred sums, so it is exact at BTC price levels.
    """

    alpha: float
    beta: float
    r2: float
    resid: np.ndarray
    resid_sd: float
    nobs: int


def ols_fit(x: object, y: object) -> OLSFit:
    """Regress x on ``[1, y]`` over the whole sample.

    Parameters
    ----------
    x, y : array_like
        Close prices of the dependent leg x and the hedge leg y, same length ≥ 3, finite.

    Returns
    -------
    OLSFit

    Raises
    ------
    ValueError
        Unequal lengths, fewer than 3 bars, non-finite values, or y constant.

    Notes
    -----
    ``beta = Σ(x−x̄)(y−ȳ) / Σ(y−ȳ)²`` and ``alpha = x̄ − beta·ȳ``; residuals are formed from
    the centred series so they carry no cancellation error.
    """
    xa, ya = pair_arrays(x, y, min_len=3)
    check_not_constant("y", ya)
    dx = xa - xa.mean()
    dy = ya - ya.mean()
    syy = float(dy @ dy)
    sxx = float(dx @ dx)
    sxy = float(dx @ dy)
    beta = sxy / syy
    alpha = float(xa.mean() - beta * ya.mean())
    # x − alpha − beta·y formed from centred series: no cancellation at BTC price levels.
    resid = dx - beta * dy
    r2 = (sxy * sxy) / (sxx * syy) if sxx > 0 else float("nan")
    readonly(resid)
    return OLSFit(
        alpha=alpha,
        beta=float(beta),
        r2=float(min(r2, 1.0)),
        resid=resid,
        resid_sd=float(np.std(resid, ddof=1)),
        nobs=int(xa.size),
    )


@dataclass(frozen=True, slots=True)
class RollingOLS:
    """Rolling OLS of x on ``[1, y]`` with its spread and z-score, one value per bar.

    Attributes
    ----------
    window : int
        Window length in bars.
    alpha, beta, r2 : numpy.ndarray
        Intercept, hedge ratio and r² of the window ending at each bar (NaN before the
        first full window, and where y is flat over the window).
    spread : numpy.ndarray
        ``x_t − beta_t · y_t``.
    spread_mean, spread_sd : numpy.ndarray
        Mean and sample standard deviation (ddof = 1) of ``x − beta_t · y`` over the same
        window, recomputed with the current ``beta_t``. ``spread_mean = alpha``.
    zscore : numpy.ndarray
        ``(spread_t − spread_mean_t) / spread_sd_t``; NaN where ``spread_sd`` is zero.
    warmup : Warmup
        Warm-up state of the latest bar.

    Notes
    -----
    ``zscore_t`` is the last in-window OLS residual divided by the residuals' standard
    deviation: it uses bars ``t-window+1 .. t`` only, so there is no look-ahead. All arrays
    are read-only and have one entry per input bar.
    """

    window: int
    alpha: np.ndarray
    beta: np.ndarray
    r2: np.ndarray
    spread: np.ndarray
    spread_mean: np.ndarray
    spread_sd: np.ndarray
    zscore: np.ndarray
    warmup: Warmup


def rolling_ols(x: object, y: object, window: int) -> RollingOLS:
    """Rolling OLS hedge ratio, spread and z-score of x on y.

    Parameters
    ----------
    x, y : array_like
        Close prices of the dependent leg x and the hedge leg y on a common bar grid:
        same length, finite. Fewer than ``window`` bars is warm-up (all NaN), not an error.
    window : int
        Bars per regression window (≥ 2).

    Returns
    -------
    RollingOLS

    Raises
    ------
    ValueError
        Unequal lengths, no bars, non-finite values, ``window < 2``, or either leg
        constant over the whole input (nothing could ever be defined from it).

    Notes
    -----
    At each bar t with ``t ≥ window − 1``, over bars ``t−window+1 .. t``:
    ``beta_t = Σ(x−x̄)(y−ȳ) / Σ(y−ȳ)²``, ``alpha_t = x̄ − beta_t ȳ``,
    ``r2_t = Sxy² / (Sxx Syy)``, ``spread_t = x_t − beta_t y_t``,
    ``z_t = (spread_t − alpha_t) / sd(x − beta_t y)`` with ddof = 1.

    A window in which y never moves (common on forward-filled 1 s bars) gives NaN for that
    bar: the slope is undefined there. A window in which x never moves gives ``beta = 0``
    and NaN r² and z-score. A z-score whose denominator is zero up to rounding
    (``sd ≤ 1e-10 ×`` the RMS price of x in the window, e.g. identical legs) is NaN, never
    ±inf.
    """
    window, xa, ya = window_pair(x, y, window)
    n = xa.size
    out = {k: np.full(n, np.nan) for k in ("alpha", "beta", "r2", "sd", "z")}
    if n >= window:
        xw = sliding_window_view(xa, window)
        yw = sliding_window_view(ya, window)
        m = n - window + 1
        x_moves = window_varies(xa, window)
        y_moves = window_varies(ya, window)
        alpha = np.empty(m)
        beta = np.empty(m)
        r2 = np.empty(m)
        sd = np.empty(m)
        z = np.empty(m)
        with np.errstate(divide="ignore", invalid="ignore"):
            for s, e in _chunks(m, window):
                xs, ys = xw[s:e], yw[s:e]
                mx = xs.mean(axis=1)
                my = ys.mean(axis=1)
                dx = xs - mx[:, None]
                dy = ys - my[:, None]
                sxx = np.einsum("ij,ij->i", dx, dx)
                syy = np.einsum("ij,ij->i", dy, dy)
                sxy = np.einsum("ij,ij->i", dx, dy)
                b = np.where(x_moves[s:e], sxy / syy, 0.0)
                # SSR = Sxx (1 − r²) loses ~eps/(1 − r²) relative: fine unless r² > 0.999,
                # where the residuals are summed directly instead.
                ssr = sxx - b * sxy
                tight = np.flatnonzero(ssr < _TIGHT_FIT * sxx)
                if tight.size:
                    res = dx[tight] - b[tight, None] * dy[tight]
                    ssr[tight] = np.einsum("ij,ij->i", res, res)
                ssr = np.maximum(ssr, 0.0)
                last = dx[:, -1] - b * dy[:, -1]  # residual of bar t about its mean alpha_t
                s_t = np.sqrt(ssr / (window - 1))
                level = np.sqrt(mx * mx + sxx / window)
                zero_sd = s_t <= ZERO_SD_RTOL * level
                beta[s:e] = b
                alpha[s:e] = mx - b * my
                r2[s:e] = np.where(x_moves[s:e], np.minimum(sxy * sxy / (sxx * syy), 1.0), np.nan)
                sd[s:e] = np.where(zero_sd, 0.0, s_t)
                z[s:e] = np.where(zero_sd, np.nan, last / s_t)
        flat_y = ~y_moves
        for arr in (alpha, beta, r2, sd, z):
            arr[flat_y] = np.nan
        out["alpha"][window - 1 :] = alpha
        out["beta"][window - 1 :] = beta
        out["r2"][window - 1 :] = r2
        out["sd"][window - 1 :] = sd
        out["z"][window - 1 :] = z
    spread = xa - out["beta"] * ya
    readonly(spread, *out.values())
    return RollingOLS(
        window=window,
        alpha=out["alpha"],
        beta=out["beta"],
        r2=out["r2"],
        spread=spread,
        spread_mean=out["alpha"],
        spread_sd=out["sd"],
        zscore=out["z"],
        warmup=warmup_status(n, window),
    )


def window_spread_zscore(
    x: np.ndarray, y: np.ndarray, window: int, beta: np.ndarray, start: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spread mean, sd and z-score over each window for a given per-bar ``beta``.

    For bars ``t ≥ max(start, window − 1)`` with finite ``beta_t``: mean and sample sd
    (ddof = 1) of ``x − beta_t · y`` over bars ``t−window+1 .. t`` and
    ``z_t = (x_t − beta_t y_t − mean_t) / sd_t`` (NaN where the sd is zero). Inputs are
    assumed validated (finite float arrays of equal length). Returns three length-n arrays.
    """
    n = x.size
    mean = np.full(n, np.nan)
    sd = np.full(n, np.nan)
    z = np.full(n, np.nan)
    first = max(start, window - 1)
    if n <= first:
        return mean, sd, z
    xw = sliding_window_view(x, window)[first - window + 1 :]
    yw = sliding_window_view(y, window)[first - window + 1 :]
    b_all = beta[first:]
    m = b_all.size
    with np.errstate(divide="ignore", invalid="ignore"):
        for s, e in _chunks(m, window):
            xs, ys, b = xw[s:e], yw[s:e], b_all[s:e]
            mx = xs.mean(axis=1)
            my = ys.mean(axis=1)
            dx = xs - mx[:, None]
            level = np.sqrt(mx * mx + np.einsum("ij,ij->i", dx, dx) / window)
            dev = dx - b[:, None] * (ys - my[:, None])
            s_t = np.sqrt(np.einsum("ij,ij->i", dev, dev) / (window - 1))
            zero_sd = s_t <= ZERO_SD_RTOL * level
            mean[first + s : first + e] = mx - b * my
            sd[first + s : first + e] = np.where(zero_sd, 0.0, s_t)
            z[first + s : first + e] = np.where(zero_sd, np.nan, dev[:, -1] / s_t)
    return mean, sd, z


@dataclass(frozen=True, slots=True)
class RollingCorrelation:
    """Rolling Pearson correlation of the two legs' log returns.

    Attributes
    ----------
    window : int
        Returns per window.
    corr : numpy.ndarray
        Correlation over the ``window`` log returns ending at each bar; NaN before bar
        ``window`` and where either leg's returns are constant over the window.
    log_ret_x, log_ret_y : numpy.ndarray
        ``ln(p_t / p_{t−1})`` per bar (NaN at bar 0).
    warmup : Warmup
        Warm-up state of the latest bar (``window + 1`` prices are needed).

    Notes
    -----
    Correlating returns, not price levels: two unrelated trending prices have a level
    correlation near ±1 and a return correlation near 0.
    """

    window: int
    corr: np.ndarray
    log_ret_x: np.ndarray
    log_ret_y: np.ndarray
    warmup: Warmup


def rolling_correlation(x: object, y: object, window: int) -> RollingCorrelation:
    """Rolling Pearson correlation of log returns of x and y.

    Parameters
    ----------
    x, y : array_like
        Positive close prices on a common bar grid, same length, finite.
    window : int
        Returns per window (≥ 2).

    Returns
    -------
    RollingCorrelation

    Raises
    ------
    ValueError
        Unequal lengths, no bars, non-finite or non-positive prices, ``window < 2``.

    Notes
    -----
    ``corr_t = Σ(rx−r̄x)(ry−r̄y) / sqrt(Σ(rx−r̄x)² Σ(ry−r̄y)²)`` over returns
    ``t−window+1 .. t``. Windowed sums come from cumulative sums of the (centred) returns:
    log returns are ~1e-4 with mean ~0, so unlike prices they suffer no cancellation
    (checked against a two-pass computation to 1e-10). Windows in which a leg never trades
    (all returns zero after forward-filling) give NaN, not a spurious 0.
    """
    window = check_window(window)
    xa, ya = pair_arrays(x, y, positive=True)
    n = xa.size
    rx = np.full(n, np.nan)
    ry = np.full(n, np.nan)
    rx[1:] = np.diff(np.log(xa))
    ry[1:] = np.diff(np.log(ya))
    corr = np.full(n, np.nan)
    if n >= window + 1:
        a, b = rx[1:], ry[1:]
        # Returns are small and centred on ~0, so windowed sums from cumulative sums lose no
        # digits to cancellation (unlike prices). Centring on the first window's mean keeps
        # the running sums a zero-mean walk without using any bar after the first output;
        # cumulative sums only look backwards, so the value at t depends on bars ≤ t alone.
        a = a - a[:window].mean()
        b = b - b[:window].mean()

        def wsum(v: np.ndarray) -> np.ndarray:
            c = np.concatenate(([0.0], np.cumsum(v)))
            return c[window:] - c[:-window]

        sa, sb = wsum(a), wsum(b)
        saa = wsum(a * a) - sa * sa / window
        sbb = wsum(b * b) - sb * sb / window
        sab = wsum(a * b) - sa * sb / window
        moves = window_varies(a, window) & window_varies(b, window)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.clip(sab / np.sqrt(saa * sbb), -1.0, 1.0)
        c[~moves | (saa <= 0) | (sbb <= 0)] = np.nan
        corr[window:] = c
    readonly(corr, rx, ry)
    return RollingCorrelation(
        window=window,
        corr=corr,
        log_ret_x=rx,
        log_ret_y=ry,
        warmup=warmup_status(n, window, returns=True),
    )
