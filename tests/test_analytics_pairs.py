"""compute_pair (the dashboard's entry point), price statistics, correlation matrix, scanner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import (
    METHODS,
    align_closes,
    compute_pair,
    compute_pair_frame,
    correlation_matrix,
    price_stats,
    rolling_correlation,
    rolling_ols,
    scan_pairs,
)


def pair(seed: int, n: int, beta: float = 1.5, phi: float = 0.8):
    rng = np.random.default_rng(seed)
    y = 100 + np.cumsum(rng.normal(0, 0.5, n))
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + rng.normal(0, 0.3)
    return 20 + beta * y + e, y


# ----------------------------------------------------------------------------- compute_pair


@pytest.mark.parametrize("method", METHODS)
def test_compute_pair_every_method_same_shape_and_warmup(method):
    x, y = pair(1, 400)
    pa = compute_pair(x, y, 100, method=method, fit_last=None)
    assert list(pa.frame.columns[:2]) == ["x", "y"]
    for col in ("alpha", "beta", "spread", "zscore", "corr"):
        assert col in pa.frame and len(pa.frame[col]) == 400
    assert pa.bars_needed == 0 and pa.defined
    assert pa.beta_last == pytest.approx(1.5, abs=0.15)
    assert pa.zscore_last == pa.frame["zscore"].iloc[-1]
    assert np.isnan(pa.frame["zscore"].iloc[:99]).all()
    assert np.isfinite(pa.frame["zscore"].iloc[101:]).all()


def test_compute_pair_ols_matches_building_blocks():
    x, y = pair(2, 300)
    pa = compute_pair(x, y, 50)
    np.testing.assert_array_equal(pa.frame["zscore"], rolling_ols(x, y, 50).zscore)
    np.testing.assert_array_equal(pa.frame["corr"], rolling_correlation(x, y, 50).corr)
    assert pa.frame["r2"].iloc[-1] > 0.5


def test_compute_pair_warmup_reports_bars_needed():
    x, y = pair(3, 30)
    pa = compute_pair(x, y, 50)
    assert pa.bars_needed == 21 and not pa.defined
    assert np.isnan(pa.zscore_last) and np.isnan(pa.beta_last)
    one = compute_pair(x[:1], y[:1], 50)
    assert one.bars_needed == 50 and one.n_bars == 1


def test_compute_pair_robust_defaults_fit_recent_bars_only():
    x, y = pair(4, 600)
    pa = compute_pair(x, y, 100, method="theilsen", fit_last=50)
    assert pa.fitted_from == 550
    assert np.isnan(pa.frame["beta"].iloc[:550]).all()
    assert np.isfinite(pa.frame["beta"].iloc[550:]).all()


def test_compute_pair_frame_uses_storage_pair_frame_times():
    x, y = pair(5, 120)
    t0 = 1_706_745_600_000
    frame = pd.DataFrame(
        {
            "open_time_ms": t0 + 60_000 * np.arange(120),
            "x": x,
            "y": y,
            "x_filled": False,
            "y_filled": False,
        }
    )
    pa = compute_pair_frame(frame, 30, method="kalman")
    assert isinstance(pa.frame.index, pd.DatetimeIndex) and pa.frame.index.name == "time"
    assert str(pa.frame.index[0]) == "2024-02-01 00:00:00+00:00"
    with pytest.raises(ValueError, match="lacks column"):
        compute_pair_frame(frame.drop(columns="y"), 30)


def test_compute_pair_validates():
    x, y = pair(6, 50)
    with pytest.raises(ValueError, match="method"):
        compute_pair(x, y, 10, method="magic")
    with pytest.raises(ValueError, match="positive"):
        compute_pair(x, -y, 10)
    with pytest.raises(ValueError, match="index"):
        compute_pair(x, y, 10, index=range(3))
    with pytest.raises(ValueError, match="at least 3"):
        compute_pair(x, y, 2, method="huber")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(10, 80),
    wfrac=st.floats(0.1, 0.9),
    cut=st.floats(0, 1),
    method=st.sampled_from(METHODS),
)
def test_compute_pair_does_not_look_ahead(seed, n, wfrac, cut, method):
    x, y = pair(seed, n)
    w = max(3, int(wfrac * n))
    c = max(1, int(cut * n))
    full = compute_pair(x, y, w, method=method, fit_last=None).frame
    part = compute_pair(x[:c], y[:c], w, method=method, fit_last=None).frame
    pd.testing.assert_frame_equal(part, full.iloc[:c])


# ----------------------------------------------------------------------------- prices


def test_price_stats_known_answers():
    close = np.array([100.0, 101, 99, 102, 102, 103])
    vol = np.array([1.0, 2, 0, 4, 1, 2])
    vwap = np.array([100.5, 100.8, 50.0, 101.5, 102, 102.8])  # bar 2: no trade, VWAP ignored
    ps = price_stats(close, 3, volume=vol, vwap=vwap, trades=[3, 4, 0, 9, 1, 2], bar_seconds=60)
    assert ps.last_price == 103.0
    np.testing.assert_allclose(ps.returns[1:], close[1:] / close[:-1] - 1)
    np.testing.assert_allclose(ps.log_returns[1:], np.diff(np.log(close)))
    ref = pd.Series(np.log(close)).diff().rolling(3).std().to_numpy()
    np.testing.assert_allclose(ps.rolling_vol, ref, equal_nan=True, rtol=1e-12)
    assert ps.vol_annualised_last == pytest.approx(ref[-1] * np.sqrt(365 * 1440))
    # Last 3 bars: volumes 4, 1, 2.
    assert ps.volume == 7.0 and ps.trades == 12
    assert ps.vwap == pytest.approx((101.5 * 4 + 102 * 1 + 102.8 * 2) / 7)
    assert ps.vwap_source == "bar_vwap"
    approx = price_stats(close, 3, volume=vol)
    assert approx.vwap == pytest.approx((102 * 4 + 102 + 103 * 2) / 7)
    assert approx.vwap_source == "close"
    bare = price_stats(close[:2], 3)
    assert bare.volume is None and bare.vwap is None and bare.warmup.bars_needed == 2


def test_price_stats_validates():
    with pytest.raises(ValueError, match="no bars"):
        price_stats([], 3)
    with pytest.raises(ValueError, match="positive"):
        price_stats([1.0, 0.0, 2.0], 2)
    with pytest.raises(ValueError, match="volume has 2 bars"):
        price_stats([1.0, 2.0, 3.0], 2, volume=[1.0, 2.0])
    with pytest.raises(ValueError, match="negative"):
        price_stats([1.0, 2.0, 3.0], 2, volume=[1.0, -2.0, 1.0])
    with pytest.raises(ValueError, match="vwap needs volume"):
        price_stats([1.0, 2.0, 3.0], 2, vwap=[1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- multi-symbol


def test_correlation_matrix_equals_pandas():
    rng = np.random.default_rng(7)
    common = rng.normal(0, 0.01, 500)
    prices = pd.DataFrame(
        {
            s: 10 * np.exp(np.cumsum(common * k + rng.normal(0, 0.01, 500)))
            for s, k in (("A", 1.0), ("B", 0.5), ("C", 0.0))
        }
    )
    cm = correlation_matrix(prices)
    ref = np.log(prices).diff().corr()
    np.testing.assert_allclose(cm.matrix.to_numpy(), ref.to_numpy(), rtol=1e-10)
    assert cm.symbols == ("A", "B", "C") and cm.nobs == 499
    last = correlation_matrix(prices, last=100)
    ref = np.log(prices).diff().iloc[-100:].corr()
    np.testing.assert_allclose(last.matrix.to_numpy(), ref.to_numpy(), rtol=1e-10)


def test_correlation_matrix_dead_symbol_is_nan_not_error():
    rng = np.random.default_rng(8)
    prices = {
        "A": 10 + np.cumsum(rng.normal(0, 0.1, 50)) + 5,
        "DEAD": np.full(50, 3.0),
        "B": 20 + np.cumsum(rng.normal(0, 0.1, 50)),
    }
    cm = correlation_matrix(prices)
    assert np.isnan(cm.matrix.loc["A", "DEAD"]) and cm.matrix.loc["DEAD", "DEAD"] == 1.0
    assert np.isfinite(cm.matrix.loc["A", "B"])
    with pytest.raises(ValueError, match="at least 2 symbols"):
        correlation_matrix({"A": prices["A"]})
    with pytest.raises(ValueError, match="share one bar grid"):
        correlation_matrix({"A": prices["A"], "B": prices["B"][:-1]})


def test_align_closes_carries_the_previous_close_onto_one_grid():
    """The grid starts where every symbol has traded and ends at the last bar of any; a
    symbol without a bar carries its previous close, also one from before a ``last`` window
    (the CLI scanner and the page's heatmap share this rule)."""
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1000, 4000])
    b = pd.Series([10.0, 20.0], index=[1000, 2000])
    table = align_closes({"A": a, "B": b}, 1000)
    assert table.index.tolist() == [1000, 2000, 3000, 4000]
    assert table["A"].tolist() == [2.0, 2.0, 2.0, 3.0]
    assert table["B"].tolist() == [10.0, 20.0, 20.0, 20.0]
    last = align_closes({"A": a, "B": b}, 1000, last=2)
    assert last.index.tolist() == [3000, 4000]
    assert last.to_numpy().tolist() == [[2.0, 20.0], [3.0, 20.0]]
    with pytest.raises(ValueError, match="no bars for B"):
        align_closes({"A": a, "B": b.iloc[:0]}, 1000)
    with pytest.raises(ValueError, match="step_ms"):
        align_closes({"A": a}, 0)


def test_scanner_ranks_the_cointegrated_pair_first():
    rng = np.random.default_rng(9)
    n = 1500
    y = 100 + np.cumsum(rng.normal(0, 0.5, n))
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = 0.8 * e[t - 1] + rng.normal(0, 0.3)
    prices = pd.DataFrame(
        {
            "COINT_X": 20 + 1.5 * y + e,
            "RW1": 100 + np.cumsum(rng.normal(0, 0.5, n)),
            "COINT_Y": y,
            "RW2": 100 + np.cumsum(rng.normal(0, 0.5, n)),
            "DEAD": np.full(n, 7.0),
        }
    )
    scan = scan_pairs(prices, 200)
    top = scan.table.iloc[0]
    assert (top["x"], top["y"]) == ("COINT_X", "COINT_Y")
    assert top["coint_pvalue"] < 0.01 and top["beta"] == pytest.approx(1.5, abs=0.05)
    assert top["half_life_bars"] == pytest.approx(-np.log(2) / (0.8 - 1), rel=0.3)
    assert len(scan.table) == 6  # C(4, 2) live pairs
    assert scan.table["coint_pvalue"].is_monotonic_increasing
    assert {(a, b) for a, b, _ in scan.skipped} == {
        ("COINT_X", "DEAD"),
        ("RW1", "DEAD"),
        ("COINT_Y", "DEAD"),
        ("RW2", "DEAD"),
    }
    both = scan_pairs(prices.drop(columns="DEAD"), 200, both_orders=True)
    assert len(both.table) == 12
