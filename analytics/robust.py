"""Rolling robust hedge ratios: Huber M-estimation (IRLS, as statsmodels RLM) and Theil–Sen.

Both regress x (dependent leg) on ``[1, y]`` over the ``window`` bars ending at each bar,
like the rolling OLS, and report the same outputs: ``alpha_t``, ``beta_t``, the spread
``x_t − beta_t y_t`` and its z-score over the window. They resist a few bad prints (a
liquidation wick, a stale forward-filled leg) that drag an OLS slope.

Cost: an exact robust fit per bar is far dearer than OLS, so both accept ``fit_last`` —
fit only the most recent bars (the ones a chart shows) and leave earlier ones NaN. The
algorithms are exact all the same: Huber is a vectorised copy of statsmodels' IRLS
(same start, scale, weights and stopping rule); Theil–Sen keeps the window's pairwise
slopes counted around the median as the window slides, and equals
``scipy.stats.theilslopes`` to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analytics._validate import readonly, window_pair
from analytics.hedge import window_spread_zscore, window_varies
from analytics.warmup import Warmup, warmup_status

#: scipy.stats.norm.ppf(0.75): MAD → standard deviation of a normal (statsmodels' constant).
_MAD_NORMAL = 0.6744897501960817
#: Ranks kept sorted on each side of the Theil–Sen median; outside them only counts are kept.
_BAND_HALF = 4096
#: Windows fitted together in one vectorised IRLS batch.
_HUBER_BATCH_ELEMS = 1 << 17


@dataclass(frozen=True, slots=True)
class RobustHedge:
    """Rolling robust hedge ratio, spread and z-score, one value per bar.

    Attributes
    ----------
    method : str
        ``"huber"`` or ``"theilsen"``.
    window : int
        Bars per fit.
    fitted_from : int
        First bar index that was fitted (``≥ window − 1``); earlier bars are NaN because of
        warm-up or because ``fit_last`` left them out. Equals ``n`` if nothing was fitted.
    alpha, beta : numpy.ndarray
        Robust intercept and slope of the window ending at each bar.
    spread : numpy.ndarray
        ``x_t − beta_t · y_t``.
    spread_mean, spread_sd : numpy.ndarray
        Mean and sample standard deviation (ddof = 1) of ``x − beta_t · y`` over the same
        window.
    zscore : numpy.ndarray
        ``(spread_t − spread_mean_t) / spread_sd_t``; NaN where the sd is zero.
    warmup : Warmup
        Warm-up state of the latest bar.

    Notes
    -----
    The z-score uses the same definition as the OLS method (mean and sd of the spread over
    the window), so z-scores of different methods are comparable. For robust fits
    ``spread_mean`` differs from ``alpha`` (the fit is not a least-squares one).
    """

    method: str
    window: int
    fitted_from: int
    alpha: np.ndarray
    beta: np.ndarray
    spread: np.ndarray
    spread_mean: np.ndarray
    spread_sd: np.ndarray
    zscore: np.ndarray
    warmup: Warmup


def _prepare(
    x: object, y: object, window: int, fit_last: int | None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    window, xa, ya = window_pair(x, y, window)
    n = xa.size
    if fit_last is not None:
        if isinstance(fit_last, bool) or not isinstance(fit_last, int | np.integer) or fit_last < 1:
            raise ValueError(f"fit_last must be a positive number of bars or None: {fit_last!r}")
        first = max(window - 1, n - int(fit_last))
    else:
        first = window - 1
    return xa, ya, window, min(first, n) if n >= window else n


def _finish(
    method: str,
    xa: np.ndarray,
    ya: np.ndarray,
    window: int,
    first: int,
    alpha: np.ndarray,
    beta: np.ndarray,
) -> RobustHedge:
    mean, sd, z = window_spread_zscore(xa, ya, window, beta, first)
    spread = xa - beta * ya
    readonly(alpha, beta, spread, mean, sd, z)
    return RobustHedge(
        method=method,
        window=window,
        fitted_from=first,
        alpha=alpha,
        beta=beta,
        spread=spread,
        spread_mean=mean,
        spread_sd=sd,
        zscore=z,
        warmup=warmup_status(xa.size, window),
    )


# --------------------------------------------------------------------------- Huber


def _huber_deviance(resid: np.ndarray, scale: np.ndarray, t: float) -> np.ndarray:
    """Row sums of Huber's ρ(r/scale): ``z²/2`` for ``|z| ≤ t``, ``t|z| − t²/2`` beyond.

    Written as ``m (|z| − m/2)`` with ``m = min(|z|, t)``, which is both branches at once.
    """
    az = np.abs(resid) / scale[:, None]
    m = np.minimum(az, t)
    az -= 0.5 * m
    return np.einsum("ij,ij->i", m, az)


def _wls(
    xs: np.ndarray, ys: np.ndarray, wt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted LS of each row of xs on [1, ys]; returns alpha, beta, residuals (centred sums)."""
    sw = wt.sum(axis=1)
    mx = np.einsum("ij,ij->i", wt, xs) / sw
    my = np.einsum("ij,ij->i", wt, ys) / sw
    dx = xs - mx[:, None]
    dy = ys - my[:, None]
    wdy = wt * dy
    b = np.einsum("ij,ij->i", wdy, dx) / np.einsum("ij,ij->i", wdy, dy)
    dx -= b[:, None] * dy
    return mx - b * my, b, dx


def _huber_batch(
    xs: np.ndarray, ys: np.ndarray, t: float, maxiter: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """IRLS for each row exactly as ``RLM(x, [1, y], HuberT(t)).fit(maxiter, tol)``."""
    m, w = xs.shape
    alpha, beta, resid = _wls(xs, ys, np.ones_like(xs))
    scale = np.median(np.abs(resid), axis=1) / _MAD_NORMAL
    wls_scale = np.einsum("ij,ij->i", resid, resid) / (w - 2)
    dev = _huber_deviance(resid, wls_scale, t)
    active = np.arange(m)
    iteration = 1
    while active.size:
        # statsmodels stops a fit whose scale is exactly zero (a perfect fit).
        active = active[scale[active] != 0.0]
        if not active.size:
            break
        every = active.size == m
        r = resid if every else resid[active]
        with np.errstate(divide="ignore"):
            wt = np.minimum(1.0, (t * scale[active])[:, None] / np.abs(r))  # |r| = 0 → 1
        a, b, r = _wls(xs if every else xs[active], ys if every else ys[active], wt)
        alpha[active], beta[active], resid[active] = a, b, r
        scale[active] = np.median(np.abs(r), axis=1) / _MAD_NORMAL
        ws = np.einsum("ij,ij->i", wt * r, r) / (w - 2)
        new_dev = _huber_deviance(r, ws, t)
        iteration += 1
        moving = np.abs(new_dev - dev[active]) > tol
        dev[active] = new_dev
        if iteration >= maxiter:
            break
        active = active[moving]
    return alpha, beta


def rolling_huber(
    x: object,
    y: object,
    window: int,
    *,
    fit_last: int | None = None,
    t: float = 1.345,
    maxiter: int = 50,
    tol: float = 1e-8,
) -> RobustHedge:
    """Rolling Huber M-estimate of x on ``[1, y]`` (statsmodels ``RLM`` with ``HuberT``).

    Parameters
    ----------
    x, y : array_like
        Close prices of the dependent leg x and the hedge leg y, same length, finite.
    window : int
        Bars per fit (≥ 3: a two-parameter fit needs a residual degree of freedom).
    fit_last : int or None
        Fit only the last ``fit_last`` bars (None: every bar with a full window).
    t : float
        Huber threshold in robust standard deviations (statsmodels default 1.345).
    maxiter, tol : int, float
        IRLS stopping rule, as ``RLM.fit``: stop when the deviance changes by ≤ ``tol`` or
        after ``maxiter`` iterations.

    Returns
    -------
    RobustHedge

    Raises
    ------
    ValueError
        Bad lengths, non-finite values, ``window < 3``, either leg constant, or bad
        ``fit_last``/``t``.

    Notes
    -----
    Iteratively re-weighted least squares from the OLS fit: weights ``min(1, t/|r/σ|)``,
    ``σ = median(|r|)/0.6745`` re-estimated every iteration. Residuals within ``t·σ`` count
    fully, larger ones linearly — a compromise between the mean (OLS) and the median.
    A window in which y never moves is NaN; one in which x never moves has ``beta = 0``.
    """
    xa, ya, window, first = _prepare(x, y, window, fit_last)
    if window < 3:
        raise ValueError(f"window must be at least 3 bars for a Huber fit, got {window}")
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"t must be a positive threshold, got {t!r}")
    n = xa.size
    alpha = np.full(n, np.nan)
    beta = np.full(n, np.nan)
    if first < n:
        xw = sliding_window_view(xa, window)[first - window + 1 :]
        yw = sliding_window_view(ya, window)[first - window + 1 :]
        x_moves = window_varies(xa, window)[first - window + 1 :]
        y_moves = window_varies(ya, window)[first - window + 1 :]
        ok = np.flatnonzero(x_moves & y_moves)
        rows = max(1, _HUBER_BATCH_ELEMS // window)
        for s in range(0, ok.size, rows):
            idx = ok[s : s + rows]
            a, b = _huber_batch(xw[idx], yw[idx], float(t), maxiter, tol)
            alpha[first + idx] = a
            beta[first + idx] = b
        flat_x = np.flatnonzero(~x_moves & y_moves)
        beta[first + flat_x] = 0.0
        alpha[first + flat_x] = xa[first + flat_x]
    return _finish("huber", xa, ya, window, first, alpha, beta)


# --------------------------------------------------------------------------- Theil–Sen


def _sorted_slopes(x: np.ndarray, y: np.ndarray, i: int, lo: int, hi: int) -> np.ndarray:
    """Sorted slopes ``(x_j − x_i)/(y_j − y_i)`` for ``j in lo..hi-1`` with ``y_j ≠ y_i``.

    Bit-identical to scipy's ``Δx/Δy`` for the same pair in either order (IEEE negation
    and division are exact), which lets a slope be found again when it leaves the window.
    """
    d = y[lo:hi] - y[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (x[lo:hi] - x[i]) / d
    s = s[d != 0]
    s.sort()
    return s


def _window_slopes(x: np.ndarray, y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    xs, ys = x[lo:hi], y[lo:hi]
    dy = ys[:, None] - ys
    dx = xs[:, None] - xs
    keep = dy > 0
    return dx[keep] / dy[keep]


class _SlopeMedian:
    """Median of a multiset of slopes kept as: count below ``lo``, sorted band, count above ``hi``.

    Sliding one bar removes and adds ``window − 1`` slopes; only those inside the band
    touch the (small) sorted band array, so a step costs O(window + band) instead of
    re-sorting ``window²/2`` slopes. When the median's rank leaves the band, the band is
    rebuilt from the current window.
    """

    __slots__ = ("above", "band", "below", "half", "hi", "lo")

    def __init__(self, slopes: np.ndarray, half: int) -> None:
        self.half = half
        self.rebuild(slopes)

    def rebuild(self, slopes: np.ndarray) -> None:
        total = slopes.size
        if total == 0:
            self.lo, self.hi = -np.inf, np.inf
            self.below = self.above = 0
            self.band = slopes
            return
        k = total // 2
        lo_r, hi_r = max(0, k - self.half), min(total - 1, k + self.half)
        part = np.partition(slopes, (lo_r, hi_r))
        self.lo, self.hi = float(part[lo_r]), float(part[hi_r])
        inside = (slopes >= self.lo) & (slopes <= self.hi)
        self.below = int(np.count_nonzero(slopes < self.lo))
        self.above = int(slopes.size - self.below - np.count_nonzero(inside))
        self.band = np.sort(slopes[inside])

    def update(self, removed: np.ndarray, added: np.ndarray) -> None:
        """Apply sorted ``removed`` and sorted ``added`` slope sets."""
        lo, hi = self.lo, self.hi
        r0 = int(removed.searchsorted(lo, side="left"))
        r1 = int(removed.searchsorted(hi, side="right"))
        a0 = int(added.searchsorted(lo, side="left"))
        a1 = int(added.searchsorted(hi, side="right"))
        self.below += a0 - r0
        self.above += (added.size - a1) - (removed.size - r1)
        band = self.band
        if r1 > r0:
            rin = removed[r0:r1]
            pos = band.searchsorted(rin, side="left")
            if rin.size > 1 and (rin[1:] == rin[:-1]).any():
                # Equal slopes map to the same position: step over the earlier copies.
                idx = np.arange(rin.size)
                first = np.concatenate(([True], rin[1:] != rin[:-1]))
                pos += idx - np.maximum.accumulate(np.where(first, idx, 0))
            keep = np.ones(band.size, dtype=bool)
            keep[pos] = False
            band = band[keep]
        if a1 > a0:
            ain = added[a0:a1]
            # Merge two sorted arrays: each new slope lands after the band values < it.
            dest = band.searchsorted(ain, side="left") + np.arange(ain.size)
            merged = np.empty(band.size + ain.size)
            mask = np.ones(merged.size, dtype=bool)
            mask[dest] = False
            merged[dest] = ain
            merged[mask] = band
            band = merged
        self.band = band

    def median(self) -> float | None:
        """The median, NaN if there are no slopes, or None if it lies outside the band."""
        total = self.below + self.above + self.band.size
        if total == 0:
            return float("nan")
        k = total // 2 - self.below
        if total % 2:
            return float(self.band[k]) if 0 <= k < self.band.size else None
        if 1 <= k < self.band.size:
            # Same arithmetic as numpy.median: mean of the two middle values.
            return float((self.band[k - 1] + self.band[k]) / 2.0)
        return None


def rolling_theilsen(
    x: object, y: object, window: int, *, fit_last: int | None = None
) -> RobustHedge:
    """Rolling Theil–Sen estimate of x on ``[1, y]``, equal to ``scipy.stats.theilslopes``.

    Parameters
    ----------
    x, y : array_like
        Close prices of the dependent leg x and the hedge leg y, same length, finite.
    window : int
        Bars per fit (≥ 2).
    fit_last : int or None
        Fit only the last ``fit_last`` bars (None: every bar with a full window).

    Returns
    -------
    RobustHedge

    Raises
    ------
    ValueError
        Bad lengths, non-finite values, ``window < 2``, either leg constant, bad
        ``fit_last``.

    Notes
    -----
    ``beta_t`` is the median of the slopes ``(x_j − x_i)/(y_j − y_i)`` over all pairs of
    bars in the window with ``y_i ≠ y_j``; ``alpha_t = median(x) − beta_t · median(y)``
    (scipy's ``method="separate"``). It tolerates up to ~29 % of bad points. Pairs with
    equal y (frequent with tick-sized prices) are skipped, as scipy does; a window in
    which y never moves has no slopes and gives NaN.
    """
    xa, ya, window, first = _prepare(x, y, window, fit_last)
    n = xa.size
    alpha = np.full(n, np.nan)
    beta = np.full(n, np.nan)
    if first < n:
        state = _SlopeMedian(_window_slopes(xa, ya, first - window + 1, first + 1), half=_BAND_HALF)
        out = np.empty(n - first)
        for k, t in enumerate(range(first, n)):
            if k:
                old = t - window
                state.update(
                    _sorted_slopes(xa, ya, old, old + 1, t),
                    _sorted_slopes(xa, ya, t, t - window + 1, t),
                )
            med = state.median()
            if med is None:
                state.rebuild(_window_slopes(xa, ya, t - window + 1, t + 1))
                med = state.median()
            out[k] = med
        beta[first:] = out
        xw = sliding_window_view(xa, window)[first - window + 1 :]
        yw = sliding_window_view(ya, window)[first - window + 1 :]
        rows = max(1, (1 << 16) // window)
        for s in range(0, out.size, rows):
            e = min(out.size, s + rows)
            alpha[first + s : first + e] = np.median(xw[s:e], axis=1) - out[s:e] * np.median(
                yw[s:e], axis=1
            )
    return _finish("theilsen", xa, ya, window, first, alpha, beta)
