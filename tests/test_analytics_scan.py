"""Universe scan: statsmodels coint oracle on every ordered pair, BH oracle, known answers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import coint

from analytics.scan import DEFAULT_LAGS, SCAN_COLUMNS, scan_universe
from analytics.scan_stats import bh_qvalues, mackinnon_p
from analytics.stationarity import adf_test, half_life
from tests.conftest import STORAGE_REAL_DIR

KLINES = STORAGE_REAL_DIR / "binance_usdm_klines_1m"
REAL_SYMBOLS = ["ALGOUSDT", "AVAXUSDT", "FILUSDT", "NEARUSDT"]
STAT_RTOL = 1e-8
P_ATOL = 1e-8


def universe(seed: int, n_sym: int, n_bars: int, planted: int = 0) -> pd.DataFrame:
    """Random-walk log prices; the first ``2·planted`` columns are cointegrated pairs."""
    rng = np.random.default_rng(seed)
    logp = np.cumsum(rng.normal(0.0, 0.002, (n_bars, n_sym)), axis=0) + rng.uniform(0, 8, n_sym)
    for k in range(planted):
        noise = np.zeros(n_bars)
        shocks = rng.normal(0.0, 0.002, n_bars)
        for t in range(1, n_bars):
            noise[t] = 0.9 * noise[t - 1] + shocks[t]
        logp[:, 2 * k + 1] = logp[:, 2 * k] + 0.3 + noise
    return pd.DataFrame(np.exp(logp), columns=[f"S{k:03d}USDT" for k in range(n_sym)])


def assert_matches_coint(prices: pd.DataFrame, lags: int) -> None:
    res = scan_universe(prices, lags=lags)
    assert len(res.table) == len(prices.columns) * (len(prices.columns) - 1)
    for row in res.table.itertuples():
        x, y = prices[row.x].to_numpy(), prices[row.y].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CollinearityWarning is part of the oracle
            stat, pvalue, _ = coint(x, y, trend="c", maxlag=lags, autolag=None)
        if math.isinf(stat):
            assert row.eg_stat == stat
        else:
            assert row.eg_stat == pytest.approx(stat, rel=STAT_RTOL), (row.x, row.y)
        assert row.eg_pvalue == pytest.approx(pvalue, abs=P_ATOL), (row.x, row.y)


@pytest.fixture(scope="module")
def real_closes(storage_real_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = {s: pd.read_csv(KLINES / f"{s}-1m-2024-02.csv") for s in REAL_SYMBOLS}
    closes = pd.DataFrame({s: f["close"].to_numpy() for s, f in frames.items()})
    qv = pd.DataFrame({s: f["quote_volume"].to_numpy() for s, f in frames.items()})
    return closes, qv


@pytest.mark.parametrize("lags", [0, 1, 4])
def test_every_ordered_real_pair_equals_statsmodels_coint(real_closes, lags):
    closes, _ = real_closes
    assert_matches_coint(closes, lags)


def test_real_lookback_slices_equal_coint(real_closes):
    closes, _ = real_closes
    for lo, hi in ((0, 2016), (10_000, 18_064), (40_000, 41_760)):
        assert_matches_coint(closes.iloc[lo:hi].reset_index(drop=True), DEFAULT_LAGS)


def test_synthetic_pairs_equal_coint_including_tight_and_collinear_fits():
    prices = universe(1, 6, 3000, planted=2)
    rng = np.random.default_rng(2)
    y = prices["S004USDT"].to_numpy()
    prices["TIGHTUSDT"] = 2.0 * y + 5.0 + rng.normal(0, 0.07, y.size)  # 1 − r² ≈ 4e-6
    prices["EXACTUSDT"] = 3.0 * y + 1.0  # collinear: coint says -inf
    assert_matches_coint(prices, 2)


def test_other_columns_match_their_definitions(real_closes):
    closes, qv = real_closes
    res = scan_universe(closes, qv, lags=1, validation_fraction=0.3)
    n = len(closes)
    n_val = round(0.3 * n)
    assert (res.nobs, res.validation_bars, res.formation_bars) == (n, n_val, n - n_val)
    lr = np.diff(np.log(closes.to_numpy()), axis=0)
    for row in res.table.itertuples():
        x, y = closes[row.x].to_numpy(), closes[row.y].to_numpy()
        b, a = np.polyfit(y, x, 1)
        assert row.beta == pytest.approx(b, rel=1e-9)
        assert row.alpha == pytest.approx(a, rel=1e-7, abs=1e-9)
        e = x - a - b * y
        assert row.zscore_last == pytest.approx(e[-1] / e.std(ddof=1), rel=1e-7)
        hl = half_life(e).bars
        assert row.half_life_bars == pytest.approx(hl, rel=1e-7)
        i, j = REAL_SYMBOLS.index(row.x), REAL_SYMBOLS.index(row.y)
        assert row.corr == pytest.approx(np.corrcoef(lr[:, i], lr[:, j])[0, 1], rel=1e-9)
        assert row.x_quote_volume == np.median(qv[row.x])
        bf, _ = np.polyfit(y[: n - n_val], x[: n - n_val], 1)
        assert row.oos_beta == pytest.approx(bf, rel=1e-9)
        oos = adf_test(x[n - n_val :] - bf * y[n - n_val :], regression="c", maxlag=1, autolag=None)
        assert row.oos_stat == pytest.approx(oos.stat, rel=STAT_RTOL)
        assert row.oos_pvalue == pytest.approx(oos.pvalue, abs=P_ATOL)
    assert list(res.table.columns) == SCAN_COLUMNS


def test_qvalues_equal_an_independent_benjamini_hochberg():
    prices = universe(3, 12, 1500, planted=2)
    res = scan_universe(prices)
    p = res.table["eg_pvalue"].to_numpy()
    expected = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(res.table["qvalue"].to_numpy(), expected, rtol=1e-12, atol=0)
    assert res.pairs_tested == 12 * 11


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200))
def test_bh_matches_statsmodels_on_any_pvalues(pvals):
    expected = multipletests(np.array(pvals), method="fdr_bh")[1]
    np.testing.assert_allclose(bh_qvalues(pvals), expected, rtol=1e-12, atol=1e-15)


def test_bh_skips_untested_and_refuses_nonsense():
    q = bh_qvalues([0.01, np.nan, 0.04])
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.04)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bh_qvalues([0.5, 1.5])


@pytest.mark.parametrize(("regression", "n_vars"), [("c", 1), ("c", 2), ("n", 1), ("ct", 2)])
def test_vectorised_mackinnon_equals_statsmodels(regression, n_vars):
    stats = np.concatenate((np.linspace(-30, 5, 3001), [-np.inf, np.inf]))
    got = mackinnon_p(stats, regression=regression, n_vars=n_vars)
    with np.errstate(invalid="ignore"):  # statsmodels evaluates its polynomial at ±inf
        want = [mackinnonp(s, regression=regression, N=n_vars) for s in stats]
    np.testing.assert_array_equal(got, want)
    assert np.isnan(mackinnon_p([np.nan], n_vars=2)[0])


def test_planted_pairs_rank_first_and_random_walks_respect_the_fdr():
    prices = universe(4, 40, 4000, planted=4)
    res = scan_universe(prices)
    top = res.table.head(8)
    planted = {(f"S{2 * k:03d}USDT", f"S{2 * k + 1:03d}USDT") for k in range(4)}
    planted |= {(b, a) for a, b in planted}
    assert {(r.x, r.y) for r in top.itertuples()} == planted
    null = res.table[[(r.x, r.y) not in planted for r in res.table.itertuples()]]
    false = int(((null["qvalue"] <= 0.05) & (null["oos_pvalue"] <= 0.05)).sum())
    discoveries = false + 8
    assert false / discoveries <= 0.05  # the default ranking's discoveries are honest
    assert (null["eg_pvalue"] < 0.05).mean() < 0.15  # raw p: about 5 % pass by chance


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 100.0))
def test_scaling_a_leg_scales_beta_and_leaves_the_tests_alone(seed, k):
    prices = universe(seed, 3, 200, planted=1)
    scaled = prices.copy()
    scaled["S001USDT"] *= k
    a = scan_universe(prices).table.set_index(["x", "y"]).sort_index()
    b = scan_universe(scaled).table.set_index(["x", "y"]).sort_index()
    yk = b.index.get_level_values("y") == "S001USDT"
    xk = b.index.get_level_values("x") == "S001USDT"
    np.testing.assert_allclose(b["beta"][yk], a["beta"][yk] / k, rtol=1e-9)
    np.testing.assert_allclose(b["beta"][xk], a["beta"][xk] * k, rtol=1e-9)
    for col in ("eg_stat", "oos_stat", "zscore_last", "r2"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-7)


def test_flat_symbol_is_skipped_with_a_reason():
    prices = universe(5, 3, 300)
    prices["DEADUSDT"] = 1.0
    res = scan_universe(prices)
    assert res.skipped == (
        ("DEADUSDT", "price does not move in the formation or the validation period"),
    )
    assert "DEADUSDT" not in set(res.table["x"]) | set(res.table["y"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lags": -1}, "lags must be a non-negative integer"),
        ({"lags": 60}, "lags=60 is too large for 200 bars"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \(0, 1\)"),
    ],
)
def test_bad_options_raise_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scan_universe(universe(6, 3, 200), **kwargs)


def test_bad_inputs_raise_with_the_reason():
    with pytest.raises(ValueError, match="at least two symbols whose price moves"):
        scan_universe(universe(7, 1, 200))
    with pytest.raises(ValueError, match="too few for a 30% validation split"):
        scan_universe(universe(7, 3, 80))
    bad = universe(7, 3, 200)
    bad.iloc[5, 1] = np.nan
    with pytest.raises(ValueError, match="S001USDT has 1 non-finite"):
        scan_universe(bad)
    with pytest.raises(ValueError, match="must be a DataFrame"):
        scan_universe({"A": [1.0, 2.0]})  # type: ignore[arg-type]
