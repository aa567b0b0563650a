"""ADF, Engle–Granger, half-life and Hurst: known answers and the statsmodels oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.tsa.stattools import adfuller, coint

from analytics import adf_test, half_life, hurst_exponent, stationarity
from analytics.stationarity import MIN_BARS, clear_cache


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float = 1.0) -> np.ndarray:
    e = np.zeros(n)
    shocks = rng.normal(0.0, sd, n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + shocks[t]
    return e


def test_cointegrated_pair_recovers_beta_and_half_life():
    rng = np.random.default_rng(20)
    n, phi = 5000, 0.95
    y = 100 + np.cumsum(rng.normal(0.0, 1.0, n))
    x = 3.0 + 1.5 * y + ar1(rng, n, phi)
    st = stationarity(x, y, use_cache=False)
    assert st.beta == pytest.approx(1.5, abs=0.01)
    assert st.coint_pvalue < 0.01 and st.adf.pvalue < 0.01
    # Half-life of an AR(1) with coefficient phi in the OU reading: −ln 2 / (phi − 1).
    assert st.half_life.bars == pytest.approx(-math.log(2) / (phi - 1), rel=0.15)
    assert st.hurst < 0.4


def test_random_walk_pair_is_not_cointegrated():
    pvalues = []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        y = 100 + np.cumsum(rng.normal(size=2000))
        x = 100 + np.cumsum(rng.normal(size=2000))
        pvalues.append(stationarity(x, y, use_cache=False).coint_pvalue)
    assert sum(p > 0.05 for p in pvalues) >= 8
    assert np.median(pvalues) > 0.2


def test_half_life_known_answers():
    assert half_life(np.cumsum(np.ones(50))).bars is None  # trending away: λ ≥ 0
    rng = np.random.default_rng(21)
    hl = half_life(ar1(rng, 20000, 0.9))
    assert hl.lam == pytest.approx(-0.1, abs=0.01)
    assert hl.bars == pytest.approx(math.log(2) / 0.1, rel=0.1)


def test_hurst_known_answers():
    rng = np.random.default_rng(22)
    assert hurst_exponent(np.cumsum(rng.normal(size=20000))) == pytest.approx(0.5, abs=0.08)
    assert hurst_exponent(rng.normal(size=20000)) < 0.1  # white noise: no growth with lag
    trend = np.cumsum(np.cumsum(rng.normal(size=5000)))  # integrated twice: persistent
    assert hurst_exponent(trend) > 0.9


@pytest.mark.parametrize("regression", ["c", "n"])
def test_adf_equals_statsmodels_window_by_window(regression):
    rng = np.random.default_rng(23)
    series = np.concatenate([ar1(rng, 1500, 0.97), np.cumsum(rng.normal(size=1500))])
    for start in range(0, 2700, 290):
        for size in (30, 31, 117, 300):
            e = series[start : start + size]
            ours = adf_test(e, regression=regression)
            ref = adfuller(e, regression=regression, autolag="AIC", result_object=True)
            assert ours.lags == ref.lags and ours.nobs == ref.nobs
            assert ours.stat == pytest.approx(ref.statistic, rel=1e-9)
            assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
            for key in ("1%", "5%", "10%"):
                assert ours.critical[key] == pytest.approx(ref.critical_values[key], rel=1e-12)


def test_adf_fixed_lag_equals_statsmodels():
    rng = np.random.default_rng(24)
    e = ar1(rng, 400, 0.9)
    ours = adf_test(e, maxlag=5, autolag=None)
    ref = adfuller(e, maxlag=5, autolag=None, result_object=True)
    assert ours.lags == 5 and ours.stat == pytest.approx(ref.statistic, rel=1e-9)


def test_engle_granger_pvalue_equals_statsmodels_coint():
    rng = np.random.default_rng(25)
    for phi in (0.5, 0.99, 1.0):
        y = 50 + np.cumsum(rng.normal(size=800))
        x = 10 + 0.7 * y + ar1(rng, 800, phi)
        st = stationarity(x, y, use_cache=False)
        ref = coint(x, y)
        assert st.coint_stat == pytest.approx(ref.coint_t, rel=1e-8)
        assert st.coint_pvalue == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-12)
        np.testing.assert_allclose(list(st.coint_critical.values()), ref.critical_values)
        # Engle–Granger accounts for the fitted beta: never more confident than plain ADF.
        assert st.coint_pvalue >= st.adf.pvalue


def test_cache_returns_same_result_for_same_bars():
    clear_cache()
    rng = np.random.default_rng(26)
    y = 100 + np.cumsum(rng.normal(size=500))
    x = 2 * y + ar1(rng, 500, 0.8)
    first = stationarity(x, y)
    assert stationarity(x.copy(), y.copy()) is first
    x2 = x.copy()
    x2[-1] += 1.0
    assert stationarity(x2, y) is not first
    assert stationarity(x, y, use_cache=False) == first


def test_stationarity_edge_cases():
    rng = np.random.default_rng(27)
    y = 100 + np.cumsum(rng.normal(size=100))
    x = 2 * y + rng.normal(size=100)
    with pytest.raises(ValueError, match=f"at least {MIN_BARS}"):
        stationarity(x[: MIN_BARS - 1], y[: MIN_BARS - 1])
    with pytest.raises(ValueError, match="exact linear function"):
        stationarity(3 + 2 * y, y)
    with pytest.raises(ValueError, match="exact linear function"):
        stationarity(y.copy(), y)  # identical legs
    with pytest.raises(ValueError, match="y is constant"):
        stationarity(x, np.full(100, 5.0))
    xn = x.copy()
    xn[10] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        stationarity(xn, y)
    with pytest.raises(ValueError, match="constant"):
        adf_test(np.ones(50))
    with pytest.raises(ValueError, match="regression"):
        adf_test(x, regression="ct")
    with pytest.raises(ValueError, match="maxlag"):
        adf_test(x, maxlag=60)
    with pytest.raises(ValueError, match="at least 3"):
        half_life([1.0, 2.0])
    with pytest.raises(ValueError, match="constant"):
        hurst_exponent(np.zeros(100))
