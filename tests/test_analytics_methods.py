"""Kalman, Huber, Theil–Sen: known answers, statsmodels/scipy oracles, properties."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import theilslopes
from statsmodels.tsa.statespace.mlemodel import MLEModel

from analytics import kalman_hedge, rolling_huber, rolling_ols, rolling_theilsen

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pair(
    seed: int,
    n: int,
    beta: float = 1.7,
    alpha: float = 5.0,
    noise: float = 0.05,
    ticks: float | None = None,
):
    rng = np.random.default_rng(seed)
    y = 30.0 + np.cumsum(rng.normal(0.0, 0.1, n))
    x = alpha + beta * y + rng.normal(0.0, noise, n)
    if ticks is not None:  # exchange tick sizes: many equal prices, many tied slopes
        x, y = np.round(x / ticks) * ticks, np.round(y / ticks) * ticks
    return x, y


# ----------------------------------------------------------------------------- Kalman


def test_kalman_converges_to_constant_true_beta():
    x, y = pair(1, 4000, beta=1.7, alpha=5.0, noise=0.03)
    k = kalman_hedge(x, y, init_bars=50)
    assert np.all(np.abs(k.beta[-500:] - 1.7) < 0.02)
    assert np.isnan(k.beta[:49]).all() and np.isnan(k.zscore[:50]).all()
    assert np.isfinite(k.zscore[50:]).all()
    # The spread is x − beta·y: hovering around the true intercept.
    assert np.mean(k.spread[-500:]) == pytest.approx(5.0, abs=0.5)


def test_kalman_tracks_a_beta_that_moves():
    rng = np.random.default_rng(2)
    n = 3000
    y = 30.0 + np.cumsum(rng.normal(0.0, 0.1, n))
    beta = np.where(np.arange(n) < 1500, 1.0, 2.0)
    x = beta * y + rng.normal(0.0, 0.03, n)
    k = kalman_hedge(x, y, delta=1e-3, init_bars=50)
    assert abs(k.beta[1400] - 1.0) < 0.05 and abs(k.beta[-1] - 2.0) < 0.05


def test_kalman_equals_statsmodels_state_space_filter():
    x, y = pair(3, 600)
    w, r, delta = 40, 1e-3, 1e-4
    q = delta / (1 - delta)
    k = kalman_hedge(x, y, delta=delta, obs_var=r, init_bars=w)
    design = np.column_stack([y[:w], np.ones(w)])
    theta0 = np.linalg.lstsq(design, x[:w], rcond=None)[0]
    p0 = r * np.linalg.inv(design.T @ design)
    mod = MLEModel(
        x[w:],
        k_states=2,
        initialization="known",
        initial_state=theta0,
        initial_state_cov=p0 + q * np.eye(2),
    )
    mod["design"] = np.vstack([y[w:], np.ones(x.size - w)])[None, :, :]
    mod["obs_cov"] = [[r]]
    mod["transition"] = np.eye(2)
    mod["selection"] = np.eye(2)
    mod["state_cov"] = q * np.eye(2)
    f = mod.ssm.filter()
    np.testing.assert_allclose(k.beta[w:], f.filtered_state[0], rtol=1e-9)
    np.testing.assert_allclose(k.alpha[w:], f.filtered_state[1], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(k.forecast_error[w:], f.forecasts_error[0], atol=1e-9)
    np.testing.assert_allclose(k.forecast_sd[w:], np.sqrt(f.forecasts_error_cov[0, 0]), rtol=1e-9)
    np.testing.assert_allclose(k.zscore[w:], k.forecast_error[w:] / k.forecast_sd[w:])
    assert k.beta[w - 1] == pytest.approx(theta0[0], rel=1e-9)


def test_kalman_validates_settings():
    x, y = pair(4, 100)
    with pytest.raises(ValueError, match="delta"):
        kalman_hedge(x, y, delta=1.0)
    with pytest.raises(ValueError, match="obs_var"):
        kalman_hedge(x, y, obs_var=0.0)
    y2 = y.copy()
    y2[:30] = y2[0]
    with pytest.raises(ValueError, match="burn-in"):
        kalman_hedge(x, y2, init_bars=20)
    short = kalman_hedge(x[:10], y[:10], init_bars=20)
    assert np.isnan(short.beta).all() and short.warmup.bars_needed == 11


# ----------------------------------------------------------------------------- Theil–Sen


@pytest.mark.parametrize("ticks", [None, 0.01])
def test_theilsen_equals_scipy_every_window(ticks):
    x, y = pair(5, 260, ticks=ticks)
    w = 60
    ts = rolling_theilsen(x, y, w)
    for t in range(w - 1, x.size):
        ref = theilslopes(x[t - w + 1 : t + 1], y[t - w + 1 : t + 1])
        assert ts.beta[t] == ref.slope  # exact: same slopes, same median
        assert ts.alpha[t] == ref.intercept


@pytest.mark.parametrize("band_half", [4096, 3])
def test_theilsen_band_rebuilds_keep_exactness(band_half, monkeypatch):
    # A regime change drags the median far through the sorted slopes; a tiny band forces a
    # rebuild at almost every bar, and duplicate slopes exercise the multiset bookkeeping.
    monkeypatch.setattr("analytics.robust._BAND_HALF", band_half)
    rng = np.random.default_rng(6)
    n, w = 900, 150
    y = 30.0 + np.cumsum(rng.normal(0.0, 0.1, n))
    beta = np.where(np.arange(n) < 450, 0.5, 3.0)
    x = np.round(10 + beta * y + rng.normal(0.0, 0.02, n), 2)
    y = np.round(y, 2)
    ts = rolling_theilsen(x, y, w)
    for t in range(w - 1, n, 13):
        assert ts.beta[t] == theilslopes(x[t - w + 1 : t + 1], y[t - w + 1 : t + 1]).slope


def test_theilsen_resists_outliers_where_ols_does_not():
    x, y = pair(7, 300, beta=1.7, noise=0.01)
    x[250:270] += 25.0  # a liquidation wick in x
    w = 100
    assert abs(rolling_theilsen(x, y, w).beta[-1] - 1.7) < 0.05
    assert abs(rolling_ols(x, y, w).beta[-1] - 1.7) > 0.2


def test_theilsen_fit_last_fits_only_recent_bars_with_same_values():
    x, y = pair(8, 300)
    full = rolling_theilsen(x, y, 50)
    recent = rolling_theilsen(x, y, 50, fit_last=40)
    assert recent.fitted_from == 260
    assert np.isnan(recent.beta[:260]).all()
    np.testing.assert_array_equal(recent.beta[260:], full.beta[260:])
    np.testing.assert_array_equal(recent.zscore[260:], full.zscore[260:])


# ----------------------------------------------------------------------------- Huber


def test_huber_equals_statsmodels_rlm_window_by_window():
    rng = np.random.default_rng(9)
    n, w = 200, 50
    y = 30.0 + np.cumsum(rng.normal(0.0, 0.1, n))
    x = 5 + 1.7 * y + rng.standard_t(2, n) * 0.05  # heavy tails: many downweighted points
    h = rolling_huber(x, y, w)
    for t in range(w - 1, n):
        fit = sm.RLM(
            x[t - w + 1 : t + 1], sm.add_constant(y[t - w + 1 : t + 1]), M=sm.robust.norms.HuberT()
        ).fit()
        assert h.beta[t] == pytest.approx(fit.params[1], rel=1e-9)
        assert h.alpha[t] == pytest.approx(fit.params[0], rel=1e-9, abs=1e-9)


def test_huber_resists_outliers_and_fit_last_matches_full():
    x, y = pair(10, 300, beta=1.7, noise=0.01)
    x[250:258] += 25.0
    full = rolling_huber(x, y, 100)
    assert abs(full.beta[-1] - 1.7) < 0.05
    recent = rolling_huber(x, y, 100, fit_last=30)
    np.testing.assert_allclose(recent.beta[270:], full.beta[270:], rtol=1e-12)
    assert np.isnan(recent.beta[:270]).all() and recent.fitted_from == 270


def test_robust_zscore_uses_the_window_spread_definition():
    x, y = pair(11, 200)
    w = 40
    for res in (rolling_huber(x, y, w), rolling_theilsen(x, y, w)):
        t = 150
        s = x[t - w + 1 : t + 1] - res.beta[t] * y[t - w + 1 : t + 1]
        assert res.zscore[t] == pytest.approx((s[-1] - s.mean()) / s.std(ddof=1), rel=1e-9)
        assert res.spread[t] == pytest.approx(x[t] - res.beta[t] * y[t])


def test_robust_edge_cases():
    x, y = pair(12, 80)
    with pytest.raises(ValueError, match="y is constant"):
        rolling_theilsen(x, np.full(80, 2.0), 10)
    with pytest.raises(ValueError, match="x is constant"):
        rolling_huber(np.full(80, 2.0), y, 10)
    with pytest.raises(ValueError, match="at least 3"):
        rolling_huber(x, y, 2)
    with pytest.raises(ValueError, match="fit_last"):
        rolling_theilsen(x, y, 10, fit_last=0)
    xn = x.copy()
    xn[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        rolling_huber(xn, y, 10)
    warm = rolling_theilsen(x[:5], y[:5], 10)
    assert np.isnan(warm.beta).all() and warm.warmup.bars_needed == 5
    # A window in which y is flat: no slopes, so NaN (not an error) for those bars.
    yf = y.copy()
    yf[30:45] = yf[30]
    ts, hu = rolling_theilsen(x, yf, 10), rolling_huber(x, yf, 10)
    assert np.isnan(ts.beta[39:45]).all() and np.isnan(hu.beta[39:45]).all()
    assert np.isfinite(ts.beta[45:]).all() and np.isfinite(hu.beta[45:]).all()
    # Identical legs: slope 1, spread sd 0, z undefined.
    same = rolling_theilsen(x, x.copy(), 10)
    np.testing.assert_allclose(same.beta[9:], 1.0)
    assert np.isnan(same.zscore).all()


# ----------------------------------------------------------------------------- properties

params = st.fixed_dictionaries(
    {"seed": st.integers(0, 2**32 - 1), "n": st.integers(20, 90), "k": st.floats(1e-2, 1e2)}
)


@PROPS
@given(p=params, wfrac=st.floats(0.2, 1.0))
def test_robust_beta_scales_with_inverse_k(p, wfrac):
    x, y = pair(p["seed"], p["n"])
    w = max(5, int(wfrac * p["n"]))
    for fit in (rolling_theilsen, rolling_huber):
        a, b = fit(x, y, w), fit(x, y * p["k"], w)
        np.testing.assert_allclose(b.beta * p["k"], a.beta, rtol=1e-7)
        np.testing.assert_allclose(b.zscore, a.zscore, rtol=1e-6, atol=1e-6)


@PROPS
@given(p=params, wfrac=st.floats(0.1, 0.9), cut=st.floats(0.0, 1.0))
def test_methods_do_not_look_ahead(p, wfrac, cut):
    x, y = pair(p["seed"], p["n"])
    w = max(3, int(wfrac * p["n"]))
    c = max(1, int(cut * p["n"]))
    for fit in (rolling_theilsen, rolling_huber):
        full, part = fit(x, y, w), fit(x[:c], y[:c], w)
        np.testing.assert_array_equal(part.beta, full.beta[:c])
        np.testing.assert_array_equal(part.zscore, full.zscore[:c])
    full, part = kalman_hedge(x, y, init_bars=w), kalman_hedge(x[:c], y[:c], init_bars=w)
    np.testing.assert_array_equal(part.beta, full.beta[:c])
    np.testing.assert_array_equal(part.zscore, full.zscore[:c])
