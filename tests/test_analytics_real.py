"""A month of real Binance USD-M 1m klines (AVAX, NEAR, ALGO, FIL) through the whole engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.stattools import adfuller, coint

from analytics import (
    METHODS,
    backtest,
    compute_pair,
    correlation_matrix,
    price_stats,
    rolling_correlation,
    rolling_ols,
    scan_pairs,
    stationarity,
)
from tests.conftest import STORAGE_REAL_DIR

KLINES = STORAGE_REAL_DIR / "binance_usdm_klines_1m"
SYMBOLS = ("ALGOUSDT", "AVAXUSDT", "FILUSDT", "NEARUSDT")


@pytest.fixture(scope="module")
def klines() -> dict[str, pd.DataFrame]:
    files = {s: KLINES / f"{s}-1m-2024-02.csv" for s in SYMBOLS}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        pytest.skip(f"real kline files not found (shared/ not beside the repo?): {missing[0]}")
    return {s: pd.read_csv(p) for s, p in files.items()}


@pytest.fixture(scope="module")
def closes(klines) -> pd.DataFrame:
    frame = pd.DataFrame({s: k["close"].to_numpy(float) for s, k in klines.items()})
    assert len(frame) == 41_760  # the README: every minute of February 2024
    return frame


def test_correlation_matrix_matches_the_published_figures(closes):
    cm = correlation_matrix(closes).matrix
    assert cm.loc["AVAXUSDT", "NEARUSDT"] == pytest.approx(0.68, abs=0.005)
    assert cm.loc["ALGOUSDT", "AVAXUSDT"] == pytest.approx(0.65, abs=0.005)
    assert cm.loc["ALGOUSDT", "NEARUSDT"] == pytest.approx(0.60, abs=0.005)
    for other in ("ALGOUSDT", "AVAXUSDT", "NEARUSDT"):
        assert cm.loc["FILUSDT", other] == pytest.approx(0.5, abs=0.07)


@pytest.mark.parametrize("method", METHODS)
def test_whole_month_every_method(closes, method):
    x, y = closes["AVAXUSDT"].to_numpy(), closes["NEARUSDT"].to_numpy()
    w = 1440  # one day of minutes
    pa = compute_pair(x, y, w, method=method, fit_last=300)
    z = pa.frame["zscore"].to_numpy()[pa.fitted_from + 1 :]
    assert np.isfinite(z).all()
    assert np.isfinite(pa.frame["beta"].to_numpy()[pa.fitted_from + 1 :]).all()
    assert 0 < pa.beta_last < 30  # AVAX ≈ 35–40 USDT, NEAR ≈ 2.8–4 USDT
    assert pa.corr_last == pytest.approx(0.68, abs=0.25)
    if method != "kalman":  # window z-scores are standardised by construction
        assert 0.5 < np.std(z) < 2.0 and np.mean(np.abs(z) > 6) < 0.01


def test_rolling_ols_on_real_data_equals_statsmodels(closes):
    x, y = closes["AVAXUSDT"].to_numpy(), closes["NEARUSDT"].to_numpy()
    w = 1440
    r = rolling_ols(x, y, w)
    for t in range(w - 1, x.size, 4001):
        fit = sm.OLS(x[t - w + 1 : t + 1], sm.add_constant(y[t - w + 1 : t + 1])).fit()
        assert r.beta[t] == pytest.approx(fit.params[1], rel=1e-9)
        assert r.alpha[t] == pytest.approx(fit.params[0], rel=1e-9, abs=1e-9)
        assert r.zscore[t] == pytest.approx(fit.resid[-1] / fit.resid.std(ddof=1), rel=1e-8)


def test_rolling_correlation_over_the_month_equals_two_pass(closes):
    # The correlation uses cumulative sums of returns: check they lose nothing over 41,760 bars.
    x, y = closes["AVAXUSDT"].to_numpy(), closes["NEARUSDT"].to_numpy()
    w = 1440
    corr = rolling_correlation(x, y, w).corr
    lx, ly = np.diff(np.log(x)), np.diff(np.log(y))
    for t in range(w, x.size, 997):
        assert corr[t] == pytest.approx(np.corrcoef(lx[t - w : t], ly[t - w : t])[0, 1], rel=1e-10)
    assert np.nanmean(corr) == pytest.approx(0.68, abs=0.1)


def test_stationarity_on_real_data_equals_statsmodels(closes):
    x, y = closes["AVAXUSDT"].to_numpy()[:5000], closes["NEARUSDT"].to_numpy()[:5000]
    st = stationarity(x, y, use_cache=False)
    fit = sm.OLS(x, sm.add_constant(y)).fit()
    assert st.beta == pytest.approx(fit.params[1], rel=1e-9)
    assert st.r2 == pytest.approx(fit.rsquared, rel=1e-9)
    ref = adfuller(fit.resid, regression="c", autolag="AIC", result_object=True)
    assert st.adf.lags == ref.lags and st.adf.nobs == ref.nobs
    assert st.adf.stat == pytest.approx(ref.statistic, rel=1e-8)
    assert st.adf.pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    assert st.coint_pvalue == pytest.approx(coint(x, y).pvalue, rel=1e-7)
    assert st.half_life.bars is None or st.half_life.bars > 0
    assert 0.0 < st.hurst < 1.0


def test_whole_month_stationarity_backtest_and_prices(klines, closes):
    ax, nx = klines["AVAXUSDT"], klines["NEARUSDT"]
    x, y = closes["AVAXUSDT"].to_numpy(), closes["NEARUSDT"].to_numpy()
    st = stationarity(x, y)
    assert 0 <= st.coint_pvalue <= 1 and st.nobs == 41_760
    pa = compute_pair(x, y, 1440)
    res = backtest(
        x,
        y,
        pa.frame["zscore"],
        pa.frame["beta"],
        stop_z=4.0,
        volume_x=ax["volume"],
        volume_y=nx["volume"],
        trades_x=ax["count"],
        trades_y=nx["count"],
        bar_seconds=60,
    )
    assert res.n_trades > 5 and res.fees_paid > 0
    assert np.isfinite(res.equity).all() and res.max_drawdown >= 0
    thin = backtest(
        x,
        y,
        pa.frame["zscore"],
        pa.frame["beta"],
        volume_x=ax["volume"],
        volume_y=nx["volume"],
        trades_x=ax["count"],
        trades_y=nx["count"],
        min_trades=int(np.median(ax["count"])),
    )
    assert thin.skipped_entries > 0
    ps = price_stats(
        x,
        60,
        volume=ax["volume"],
        trades=ax["count"],
        bar_seconds=60,
        vwap=ax["quote_volume"] / ax["volume"],
    )
    assert ps.vwap == pytest.approx(
        ax["quote_volume"].iloc[-60:].sum() / ax["volume"].iloc[-60:].sum(), rel=1e-12
    )
    assert 0.1 < ps.vol_annualised_last < 5


def test_scan_of_four_symbols(closes):
    scan = scan_pairs(closes.iloc[-5000:], 500)
    assert len(scan.table) == 6 and not scan.skipped
    assert scan.table["coint_pvalue"].between(0, 1).all()
    assert scan.table["coint_pvalue"].is_monotonic_increasing
