"""Rolling OLS hedge ratio, spread, z-score and correlation: known answers, oracles, properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import ols_fit, rolling_correlation, rolling_ols, warmup_status

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cointegrated(
    seed: int,
    n: int,
    beta: float = 2.0,
    alpha: float = 5.0,
    phi: float = 0.9,
    level: float = 100.0,
    step: float = 1.0,
    noise: float = 1.0,
):
    """y a random walk around ``level``; x = alpha + beta y + AR(1) spread with coefficient phi."""
    rng = np.random.default_rng(seed)
    y = level + np.cumsum(rng.normal(0.0, step, n))
    e = np.zeros(n)
    shocks = rng.normal(0.0, noise, n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + shocks[t]
    return alpha + beta * y + e, y


# ----------------------------------------------------------------------------- known answers


def test_recovers_known_beta_and_alpha():
    x, y = cointegrated(1, 3000, beta=2.0, alpha=5.0, phi=0.5, noise=0.5)
    r = rolling_ols(x, y, 1000)
    assert r.beta[-1] == pytest.approx(2.0, abs=0.02)
    assert r.alpha[-1] == pytest.approx(5.0, abs=2.0)
    assert np.nanmean(r.r2) > 0.95
    fit = ols_fit(x, y)
    assert fit.beta == pytest.approx(2.0, abs=0.01)


def test_zscore_equals_last_residual_over_residual_sd():
    x, y = cointegrated(2, 400)
    w = 60
    r = rolling_ols(x, y, w)
    t = 250
    xs, ys = x[t - w + 1 : t + 1], y[t - w + 1 : t + 1]
    spread = xs - r.beta[t] * ys
    expected = (spread[-1] - spread.mean()) / spread.std(ddof=1)
    assert r.zscore[t] == pytest.approx(expected, rel=1e-10)
    assert r.spread_mean[t] == pytest.approx(r.alpha[t], rel=1e-12)
    assert r.spread[t] == pytest.approx(x[t] - r.beta[t] * y[t], rel=1e-12)


def test_warmup_is_nan_then_defined():
    x, y = cointegrated(3, 50)
    r = rolling_ols(x, y, 20)
    assert np.isnan(r.beta[:19]).all() and np.isnan(r.zscore[:19]).all()
    assert np.isfinite(r.beta[19:]).all() and np.isfinite(r.zscore[19:]).all()
    assert r.warmup.defined and r.warmup.bars_needed == 0
    c = rolling_correlation(x, y, 20)
    assert np.isnan(c.corr[:20]).all() and np.isfinite(c.corr[20:]).all()


def test_warmup_status_counts_bars_still_needed():
    assert warmup_status(0, 10).bars_needed == 10
    assert warmup_status(7, 10).bars_needed == 3
    assert warmup_status(10, 10).defined
    assert warmup_status(10, 10, returns=True).bars_needed == 1
    assert warmup_status(11, 10, returns=True).defined
    with pytest.raises(ValueError, match="window"):
        warmup_status(5, 1)
    with pytest.raises(ValueError, match="n_bars"):
        warmup_status(-1, 5)


# ----------------------------------------------------------------------------- oracle


def test_rolling_ols_equals_statsmodels_window_by_window():
    x, y = cointegrated(4, 260, beta=-1.3, alpha=40.0, level=200.0)
    w = 40
    r = rolling_ols(x, y, w)
    for t in range(w - 1, x.size):
        xs, ys = x[t - w + 1 : t + 1], y[t - w + 1 : t + 1]
        fit = sm.OLS(xs, sm.add_constant(ys)).fit()
        resid = fit.resid
        assert r.alpha[t] == pytest.approx(fit.params[0], rel=1e-9, abs=1e-9)
        assert r.beta[t] == pytest.approx(fit.params[1], rel=1e-9)
        assert r.r2[t] == pytest.approx(fit.rsquared, rel=1e-9)
        assert r.zscore[t] == pytest.approx(resid[-1] / resid.std(ddof=1), rel=1e-8, abs=1e-9)
        assert r.spread_sd[t] == pytest.approx(resid.std(ddof=1), rel=1e-8)


def test_rolling_correlation_equals_numpy_window_by_window():
    x, y = cointegrated(5, 300)
    w = 30
    c = rolling_correlation(x, y, w)
    lx, ly = np.diff(np.log(x)), np.diff(np.log(y))
    for t in range(w, x.size):
        ref = np.corrcoef(lx[t - w : t], ly[t - w : t])[0, 1]
        assert c.corr[t] == pytest.approx(ref, rel=1e-10)
    pandas_ref = pd.Series(lx).rolling(w).corr(pd.Series(ly)).to_numpy()
    np.testing.assert_allclose(c.corr[1:], pandas_ref, rtol=1e-9, equal_nan=True)


def _exact_window(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float]:
    """Two-pass with exactly rounded sums (math.fsum): beta, alpha, z of the last bar."""
    w = len(xs)
    mx, my = math.fsum(xs) / w, math.fsum(ys) / w
    dx, dy = xs - mx, ys - my
    beta = math.fsum(dx * dy) / math.fsum(dy * dy)
    e = dx - beta * dy
    sd = math.sqrt(math.fsum(e * e) / (w - 1))
    return beta, mx - beta * my, e[-1] / sd


def test_accurate_at_btc_price_levels():
    # BTC ≈ 60,000 moving a few dollars per bar: Σx² − n·x̄² would cancel ~16 digits.
    rng = np.random.default_rng(6)
    n, w = 3000, 500
    y = 3000.0 + np.cumsum(rng.normal(0.0, 0.2, n))
    x = 60000.0 + 18.0 * (y - 3000.0) + rng.normal(0.0, 2.0, n)
    r = rolling_ols(x, y, w)
    worst = 0.0
    for t in range(w - 1, n, 97):
        beta, alpha, z = _exact_window(x[t - w + 1 : t + 1], y[t - w + 1 : t + 1])
        worst = max(
            worst, abs(r.beta[t] / beta - 1), abs(r.alpha[t] / alpha - 1), abs(r.zscore[t] / z - 1)
        )
    assert worst < 1e-9
    # The test can tell: the textbook cumulative-sum formula is far off on the same data.
    cx, cy = np.cumsum(np.r_[0, x]), np.cumsum(np.r_[0, y])
    cxy, cyy = np.cumsum(np.r_[0, x * y]), np.cumsum(np.r_[0, y * y])
    t = n - 1
    sx, sy = cx[t + 1] - cx[t + 1 - w], cy[t + 1] - cy[t + 1 - w]
    sxy, syy = cxy[t + 1] - cxy[t + 1 - w], cyy[t + 1] - cyy[t + 1 - w]
    naive_beta = (sxy - sx * sy / w) / (syy - sy * sy / w)
    assert abs(naive_beta / r.beta[t] - 1) > 1e-9


# ----------------------------------------------------------------------------- edge cases


def test_constant_leg_is_refused():
    y = np.linspace(10, 20, 50)
    with pytest.raises(ValueError, match="y is constant"):
        rolling_ols(y * 2, np.full(50, 3.0), 10)
    with pytest.raises(ValueError, match="x is constant"):
        rolling_ols(np.full(50, 3.0), y, 10)
    with pytest.raises(ValueError, match="y is constant"):
        ols_fit(y, np.full(50, 3.0))


def test_identical_legs_give_beta_one_and_undefined_z():
    x, _ = cointegrated(7, 100)
    r = rolling_ols(x, x.copy(), 20)
    np.testing.assert_allclose(r.beta[19:], 1.0, rtol=1e-12)
    np.testing.assert_allclose(r.r2[19:], 1.0, rtol=1e-12)
    assert np.isnan(r.zscore).all()  # undefined, never ±inf
    assert (r.spread_sd[19:] == 0).all()
    c = rolling_correlation(x, x.copy(), 20)
    np.testing.assert_allclose(c.corr[20:], 1.0)


def test_exact_linear_legs_give_undefined_z_not_noise():
    _, y = cointegrated(8, 100)
    r = rolling_ols(3.7 + 1.3 * y, y, 20)
    assert np.isnan(r.zscore).all()
    np.testing.assert_allclose(r.beta[19:], 1.3, rtol=1e-10)


def test_flat_window_inside_live_data_is_nan_not_error():
    # A forward-filled quiet leg: y does not trade for 15 bars.
    x, y = cointegrated(9, 120)
    y[50:65] = y[50]
    r = rolling_ols(x, y, 10)
    assert np.isnan(r.beta[59:65]).all() and np.isnan(r.zscore[59:65]).all()
    assert np.isfinite(r.beta[65:]).all()
    c = rolling_correlation(x, y, 10)
    assert np.isnan(c.corr[60:65]).all()  # zero returns: correlation undefined, not 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    x, y = cointegrated(10, 40)
    x[17] = bad
    with pytest.raises(ValueError, match=r"x has 1 non-finite value.*index 17"):
        rolling_ols(x, y, 5)
    with pytest.raises(ValueError, match="non-finite"):
        rolling_correlation(y, x, 5)


def test_pandas_nullable_missing_values_are_refused():
    x, y = cointegrated(14, 40)
    xs = pd.Series(x, dtype="Float64")
    xs.iloc[5] = pd.NA
    with pytest.raises(ValueError, match="non-finite"):
        rolling_ols(xs, pd.Series(y), 5)
    ok = rolling_ols(pd.Series(x, dtype="Float64"), pd.Series(y), 5)
    np.testing.assert_array_equal(ok.beta, rolling_ols(x, y, 5).beta)
    with pytest.raises(ValueError, match="not numeric"):
        rolling_ols(pd.Series(["a"] * 40), y, 5)


def test_length_window_and_empty_errors():
    x, y = cointegrated(11, 40)
    with pytest.raises(ValueError, match="equal lengths"):
        rolling_ols(x, y[:-1], 5)
    with pytest.raises(ValueError, match="at least 2"):
        rolling_ols(x, y, 1)
    with pytest.raises(ValueError, match="integer"):
        rolling_ols(x, y, 5.5)
    with pytest.raises(ValueError, match="at least 1 bars"):
        rolling_ols([], [], 5)
    with pytest.raises(ValueError, match="positive"):
        rolling_correlation(x - 1000, y, 5)
    with pytest.raises(ValueError, match="at least 3 bars"):
        ols_fit(x[:2], y[:2])


def test_window_larger_than_data_is_warmup_not_error():
    x, y = cointegrated(12, 30)
    r = rolling_ols(x, y, 50)
    assert np.isnan(r.beta).all() and r.beta.size == 30
    assert r.warmup.bars_needed == 20 and not r.warmup.defined
    c = rolling_correlation(x, y, 50)
    assert c.warmup.bars_needed == 21 and np.isnan(c.corr).all()


def test_results_are_read_only():
    x, y = cointegrated(13, 60)
    r = rolling_ols(x, y, 10)
    with pytest.raises(ValueError):
        r.beta[0] = 1.0
    with pytest.raises(AttributeError):
        r.window = 3  # frozen dataclass


# ----------------------------------------------------------------------------- properties

pair_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "n": st.integers(30, 150),
        "beta": st.floats(-3.0, 3.0).filter(lambda b: abs(b) > 0.05),
        "phi": st.floats(0.0, 0.98),
        "level": st.floats(1.0, 60000.0),
    }
)


def _pair(p):
    x, y = cointegrated(
        p["seed"],
        p["n"],
        beta=p["beta"],
        phi=p["phi"],
        level=p["level"],
        step=p["level"] * 1e-3,
        noise=p["level"] * 1e-3,
    )
    # Shift to positive prices (a constant shift changes alpha only).
    return x - x.min() + p["level"], y - y.min() + p["level"]


@PROPS
@given(p=pair_params, k=st.floats(1e-3, 1e3), wfrac=st.floats(0.1, 1.0))
def test_scaling_y_by_k_scales_beta_by_inverse_k_and_keeps_z(p, k, wfrac):
    x, y = _pair(p)
    w = max(5, int(wfrac * p["n"]))
    a, b = rolling_ols(x, y, w), rolling_ols(x, y * k, w)
    scale = np.nanmax(np.abs(a.beta))
    np.testing.assert_allclose(b.beta * k, a.beta, rtol=1e-8, atol=1e-9 * scale)
    np.testing.assert_allclose(b.alpha, a.alpha, rtol=1e-8, atol=1e-8 * p["level"])
    np.testing.assert_allclose(b.zscore, a.zscore, rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(b.r2, a.r2, rtol=1e-8, atol=1e-10)


@PROPS
@given(p=pair_params, wfrac=st.floats(0.1, 1.0))
def test_swapping_legs_multiplies_slopes_to_r2(p, wfrac):
    # Documented convention: x is dependent. Swapping legs is another regression whose slope
    # times ours is r²; r² and the return correlation do not change.
    x, y = _pair(p)
    w = max(5, int(wfrac * p["n"]))
    xy, yx = rolling_ols(x, y, w), rolling_ols(y, x, w)
    np.testing.assert_allclose(xy.beta * yx.beta, xy.r2, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(xy.r2, yx.r2, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        rolling_correlation(x, y, w - 1).corr,
        rolling_correlation(y, x, w - 1).corr,
        rtol=1e-12,
        equal_nan=True,
    )


@PROPS
@given(p=pair_params, wfrac=st.floats(0.05, 0.9), cut=st.floats(0.0, 1.0))
def test_no_value_depends_on_later_bars(p, wfrac, cut):
    x, y = _pair(p)
    n = p["n"]
    w = max(2, int(wfrac * n))
    c = max(1, int(cut * n))
    full, part = rolling_ols(x, y, w), rolling_ols(x[:c], y[:c], w)
    for name in ("alpha", "beta", "r2", "spread", "zscore", "spread_sd"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[:c])
    fc, pc = rolling_correlation(x, y, w), rolling_correlation(x[:c], y[:c], w)
    np.testing.assert_array_equal(pc.corr, fc.corr[:c])
