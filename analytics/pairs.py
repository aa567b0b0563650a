"""One entry point per dashboard refresh: hedge ratio, spread, z-score and correlation of a pair."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics._validate import check_choice, check_window, pair_arrays
from analytics.hedge import rolling_correlation, rolling_ols
from analytics.kalman import kalman_hedge
from analytics.robust import rolling_huber, rolling_theilsen

#: Hedge-ratio methods, by name.
METHODS: tuple[str, ...] = ("ols", "kalman", "huber", "theilsen")

#: Bars the robust methods fit by default (keeps a refresh under ~100 ms at window 500).
DEFAULT_ROBUST_FIT_LAST = 200


@dataclass(frozen=True, slots=True)
class PairAnalytics:
    """Per-bar pair analytics plus the latest values, for one method and window.

    Attributes
    ----------
    method : str
        ``"ols"``, ``"kalman"``, ``"huber"`` or ``"theilsen"``.
    window : int
        Window in bars (regression window; Kalman burn-in; correlation window).
    n_bars : int
        Bars in the input.
    frame : pandas.DataFrame
        One row per bar, indexed like the input, columns ``x, y, alpha, beta, spread,
        zscore, corr`` (and ``r2`` for OLS). NaN where undefined. The caller's own copy.
    alpha_last, beta_last, spread_last, zscore_last, corr_last : float
        Values at the latest bar (NaN while undefined).
    bars_needed : int
        More bars needed before the z-score and the correlation at the latest bar are
        defined (0 once warmed up): ``max(0, window + 1 − n_bars)``.
    fitted_from : int
        First bar the method produced values for (robust methods fit only the last
        ``fit_last`` bars).

    Notes
    -----
    x is the dependent leg: ``x = alpha + beta · y + spread``. A z-score of +2 means x is
    rich against ``beta`` units of y by two standard deviations of the spread over the
    window: the mean-reversion rule would sell x and buy y. No value at bar t depends on
    bars after t.
    """

    method: str
    window: int
    n_bars: int
    frame: pd.DataFrame
    alpha_last: float
    beta_last: float
    spread_last: float
    zscore_last: float
    corr_last: float
    bars_needed: int
    fitted_from: int

    @property
    def defined(self) -> bool:
        """True when warmed up and the latest z-score is a number."""
        return self.bars_needed == 0 and math.isfinite(self.zscore_last)


def compute_pair(
    x: object,
    y: object,
    window: int,
    *,
    method: str = "ols",
    index: object | None = None,
    kalman_delta: float = 1e-4,
    kalman_obs_var: float = 1e-3,
    fit_last: int | None = DEFAULT_ROBUST_FIT_LAST,
) -> PairAnalytics:
    """Hedge ratio, spread, z-score and return correlation of x against y, per bar.

    Parameters
    ----------
    x, y : array_like
        Close prices of the dependent leg x and the hedge leg y on a common bar grid (the
        aligned pair frame from storage): same length ≥ 1, finite, positive.
    window : int
        Bars per rolling window (≥ 2; ≥ 3 for Huber).
    method : {"ols", "kalman", "huber", "theilsen"}
        Hedge-ratio estimator. ``"kalman"`` uses ``window`` as its burn-in.
    index : array_like or None
        Labels for ``frame`` rows (e.g. bar open times); default 0..n−1.
    kalman_delta, kalman_obs_var : float
        Kalman settings δ and R (see :func:`analytics.kalman.kalman_hedge`).
    fit_last : int or None
        Robust methods only: fit the last ``fit_last`` bars (None: all, ~0.5 s for Huber at
        2,000 bars).

    Returns
    -------
    PairAnalytics

    Raises
    ------
    ValueError
        Unknown method, bad window, unequal lengths, no bars, non-finite or non-positive
        prices, or a leg that is constant over the whole input.

    Notes
    -----
    Fewer bars than the window is warm-up: the result is returned with NaN values and
    ``bars_needed > 0``. The correlation is always of log returns over ``window`` returns.
    """
    method = check_choice("method", method, METHODS)
    window = check_window(window, minimum=3 if method == "huber" else 2)
    xa, ya = pair_arrays(x, y, positive=True)
    n = xa.size
    if index is not None:
        idx = pd.Index(index)
        if len(idx) != n:
            raise ValueError(f"index has {len(idx)} labels but there are {n} bars")
    else:
        idx = pd.RangeIndex(n)
    cols: dict[str, np.ndarray] = {"x": xa, "y": ya}
    fitted_from = window - 1
    if method == "ols":
        res = rolling_ols(xa, ya, window)
        cols |= {
            "alpha": res.alpha,
            "beta": res.beta,
            "r2": res.r2,
            "spread": res.spread,
            "zscore": res.zscore,
        }
    elif method == "kalman":
        res = kalman_hedge(xa, ya, delta=kalman_delta, obs_var=kalman_obs_var, init_bars=window)
        cols |= {"alpha": res.alpha, "beta": res.beta, "spread": res.spread, "zscore": res.zscore}
    else:
        fit = rolling_huber if method == "huber" else rolling_theilsen
        res = fit(xa, ya, window, fit_last=fit_last)
        fitted_from = res.fitted_from
        cols |= {"alpha": res.alpha, "beta": res.beta, "spread": res.spread, "zscore": res.zscore}
    cols["corr"] = rolling_correlation(xa, ya, window).corr
    frame = pd.DataFrame(cols, index=idx)  # a writable copy: the caller may add columns

    def last(name: str) -> float:
        return float(cols[name][-1])

    return PairAnalytics(
        method=method,
        window=window,
        n_bars=n,
        frame=frame,
        alpha_last=last("alpha"),
        beta_last=last("beta"),
        spread_last=last("spread"),
        zscore_last=last("zscore"),
        corr_last=last("corr"),
        bars_needed=max(0, window + 1 - n),
        fitted_from=min(fitted_from, n),
    )


def compute_pair_frame(pair_frame: pd.DataFrame, window: int, **kwargs: object) -> PairAnalytics:
    """:func:`compute_pair` on storage's aligned pair frame.

    Parameters
    ----------
    pair_frame : pandas.DataFrame
        ``Reader.pair_frame(...)`` output: columns ``open_time_ms``, ``x``, ``y`` at least.
    window : int
        Bars per window.
    **kwargs
        Passed to :func:`compute_pair` (``method``, Kalman settings, ``fit_last``).

    Returns
    -------
    PairAnalytics
        ``frame`` is indexed by bar open time as a UTC ``DatetimeIndex`` named ``time``.

    Raises
    ------
    ValueError
        Missing columns, or anything :func:`compute_pair` refuses.

    Notes
    -----
    Bar times are the bars' open times (storage's convention).
    """
    missing = {"open_time_ms", "x", "y"} - set(pair_frame.columns)
    if missing:
        raise ValueError(f"pair frame lacks column(s) {', '.join(sorted(missing))}")
    times = pd.to_datetime(pair_frame["open_time_ms"].to_numpy(dtype="int64"), unit="ms", utc=True)
    return compute_pair(
        pair_frame["x"],
        pair_frame["y"],
        window,
        index=pd.DatetimeIndex(times, name="time"),
        **kwargs,  # type: ignore[arg-type]
    )
