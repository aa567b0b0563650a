"""Kalman-filter hedge ratio: a random-walk ``[beta, alpha]`` state, filtered (never smoothed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._validate import check_not_constant, check_window, pair_arrays, readonly
from analytics.warmup import Warmup, warmup_status


@dataclass(frozen=True, slots=True)
class KalmanHedge:
    """Filtered hedge ratio, spread and forecast-error z-score, one value per bar.

    Attributes
    ----------
    delta : float
        Transition setting δ: the state covariance grows by ``δ/(1−δ) · I`` per bar.
    obs_var : float
        Observation noise variance ``R`` (price units of x, squared).
    init_bars : int
        Bars used for the starting estimate (the filter's burn-in).
    alpha, beta : numpy.ndarray
        Filtered state ``E[alpha_t, beta_t | x_0..x_t]``; NaN before bar ``init_bars − 1``.
    spread : numpy.ndarray
        ``x_t − beta_t · y_t`` with the filtered ``beta_t``.
    forecast_error : numpy.ndarray
        ``e_t = x_t − (alpha_{t|t−1} + beta_{t|t−1} · y_t)``, made before x_t is seen.
    forecast_sd : numpy.ndarray
        ``sqrt(S_t)``, ``S_t = H_t P_{t|t−1} H_tᵀ + R`` with ``H_t = [y_t, 1]``.
    zscore : numpy.ndarray
        ``e_t / sqrt(S_t)``: the one-step forecast error in its own standard deviations;
        defined from bar ``init_bars`` on.
    warmup : Warmup
        Warm-up state of the latest bar.

    Notes
    -----
    Model: ``x_t = beta_t · y_t + alpha_t + v_t``, ``v_t ~ N(0, R)``;
    ``[beta_t, alpha_t] = [beta_{t−1}, alpha_{t−1}] + w_t``, ``w_t ~ N(0, δ/(1−δ) · I)``.
    The filter only ever uses bars ≤ t (filtered, never smoothed), so no value depends
    on later bars. δ and R are in the units of beta and of x: the filter is not invariant to
    rescaling a leg the way OLS is.
    """

    delta: float
    obs_var: float
    init_bars: int
    alpha: np.ndarray
    beta: np.ndarray
    spread: np.ndarray
    forecast_error: np.ndarray
    forecast_sd: np.ndarray
    zscore: np.ndarray
    warmup: Warmup


def kalman_hedge(
    x: object,
    y: object,
    *,
    delta: float = 1e-4,
    obs_var: float = 1e-3,
    init_bars: int = 20,
) -> KalmanHedge:
    """Run the Kalman filter for a time-varying hedge ratio of x on y.

    Parameters
    ----------
    x, y : array_like
        Close prices of the dependent leg x and the hedge leg y, same length, finite.
        Fewer than ``init_bars`` bars is warm-up (all NaN), not an error.
    delta : float
        δ in (0, 1): transition covariance ``δ/(1−δ) · I`` per bar. Larger δ lets beta move
        faster. Default 1e-4.
    obs_var : float
        Observation variance R > 0. Default 1e-3.
    init_bars : int
        Bars of burn-in (≥ 2): the state starts as the OLS fit of the first ``init_bars``
        bars with covariance ``R · (XᵀX)⁻¹`` — the exact posterior of this model under a
        flat prior with the state held still over the burn-in. The dashboard passes its
        ``window``.

    Returns
    -------
    KalmanHedge

    Raises
    ------
    ValueError
        Bad lengths, non-finite values, δ outside (0, 1), R ≤ 0, ``init_bars < 2``, or y
        constant over the burn-in bars (no starting slope).

    Notes
    -----
    For t ≥ ``init_bars``: predict ``P ← P + Q``; forecast ``x̂_t = H_t θ``;
    ``e_t = x_t − x̂_t``; ``S_t = H_t P H_tᵀ + R``; gain ``K = P H_tᵀ / S_t``; update
    ``θ ← θ + K e_t``, ``P ← P − K S_t Kᵀ``. The z-score is ``e_t / sqrt(S_t)`` — how
    surprising the new price of x is given the hedge estimated from earlier bars.
    Starting from a least-squares fit instead of ``θ = 0, P = 0`` keeps the filter from
    spending thousands of bars converging (and makes the start scale-aware).
    """
    if not (isinstance(delta, float | int) and 0.0 < float(delta) < 1.0):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not (isinstance(obs_var, float | int) and float(obs_var) > 0.0 and np.isfinite(obs_var)):
        raise ValueError(f"obs_var must be a positive number, got {obs_var!r}")
    init_bars = check_window(init_bars, name="init_bars")
    xa, ya = pair_arrays(x, y)
    n = xa.size
    q = float(delta) / (1.0 - float(delta))
    r = float(obs_var)
    nan = np.full(n, np.nan)
    alpha, beta, err, fsd = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    if n >= init_bars:
        x0, y0 = xa[:init_bars], ya[:init_bars]
        try:
            check_not_constant("y over the Kalman burn-in bars", y0)
        except ValueError as exc:
            raise ValueError(f"{exc}; use more init_bars") from None
        my = y0.mean()
        dy = y0 - my
        syy = float(dy @ dy)
        b = float((x0 - x0.mean()) @ dy) / syy
        a = float(x0.mean() - b * my)
        # P = R (XᵀX)⁻¹ for X = [y, 1], written with centred sums (stable at any price level).
        p11 = r / syy
        p12 = -r * my / syy
        p22 = r * (1.0 / init_bars + my * my / syy)
        k0 = init_bars - 1
        beta[k0], alpha[k0] = b, a
        xs = xa.tolist()
        ys = ya.tolist()
        # Scalar loop: a 2×2 filter is ~30 flops per bar, far cheaper in plain floats
        # than in numpy calls.
        b_out = [0.0] * (n - init_bars)
        a_out = [0.0] * (n - init_bars)
        e_out = [0.0] * (n - init_bars)
        s_out = [0.0] * (n - init_bars)
        for i, t in enumerate(range(init_bars, n)):
            yt = ys[t]
            p11 += q
            p22 += q
            e = xs[t] - (b * yt + a)
            u1 = p11 * yt + p12  # P Hᵀ
            u2 = p12 * yt + p22
            s = u1 * yt + u2 + r
            b += u1 * e / s
            a += u2 * e / s
            p11 -= u1 * u1 / s
            p12 -= u1 * u2 / s
            p22 -= u2 * u2 / s
            b_out[i] = b
            a_out[i] = a
            e_out[i] = e
            s_out[i] = s
        beta[init_bars:] = b_out
        alpha[init_bars:] = a_out
        err[init_bars:] = e_out
        fsd[init_bars:] = np.sqrt(s_out)
    spread = xa - beta * ya
    z = err / fsd
    readonly(alpha, beta, spread, err, fsd, z)
    return KalmanHedge(
        delta=float(delta),
        obs_var=r,
        init_bars=init_bars,
        alpha=alpha,
        beta=beta,
        spread=spread,
        forecast_error=err,
        forecast_sd=fsd,
        zscore=z,
        warmup=warmup_status(n, init_bars + 1),
    )
