"""Backtest of the z-score rule on hand-built spread paths: signs, exits, fees, timing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import backtest, compute_pair

FEE = 0.0005


def path(z: list[float], y_level: float = 10.0):
    """x = y + z with y flat and beta 1: the spread *is* the z-score (mean 0, sd 1)."""
    z = np.asarray(z, dtype=float)
    y = np.full(z.size, y_level)
    return y + z, y, z, np.ones(z.size)


def test_short_above_entry_makes_money_when_spread_falls_back():
    x, y, z, b = path([0, 1, 2.5, 3, 1, -0.5, -1, 0.5, 0])
    res = backtest(x, y, z, b, entry_z=2.0)
    (tr,) = res.trades
    assert tr.side == "short" and tr.qty_x == -1.0 and tr.qty_y == 1.0
    # Signal at bar 2 (z = 2.5), filled at bar 3's close; exit signal at bar 5 (z ≤ 0),
    # filled at bar 6's close.
    assert (tr.signal_bar, tr.entry_bar, tr.exit_bar) == (2, 3, 6)
    assert tr.entry_x == 13.0 and tr.exit_x == 9.0
    assert tr.gross_pnl == pytest.approx(4.0)
    fees = FEE * (13 + 10) + FEE * (9 + 10)
    assert tr.fees == pytest.approx(fees) and tr.pnl == pytest.approx(4.0 - fees)
    assert tr.exit_reason == "revert"
    assert res.total_pnl == pytest.approx(4.0 - fees)
    assert res.win_rate == 1.0 and res.n_trades == 1
    np.testing.assert_array_equal(res.position, [0, 0, 0, -1, -1, -1, 0, 0, 0])


def test_long_below_minus_entry_makes_money_when_spread_rises_back():
    x, y, z, b = path([0, -2.5, -3, -1, 0.2, 0, 0])
    res = backtest(x, y, z, b, entry_z=2.0, fee_rate=0.0)
    (tr,) = res.trades
    assert tr.side == "long" and tr.qty_x == 1.0 and tr.qty_y == -1.0
    assert (tr.entry_bar, tr.exit_bar) == (2, 5)
    assert tr.pnl == pytest.approx(0.0 - (-3.0))
    np.testing.assert_allclose(res.equity, [0, 0, 0, 2, 3.2, 3, 3])


def test_wrong_way_trade_loses_money_and_drawdown_is_measured():
    x, y, z, b = path([0, 2.5, 3, 4, 3.5, -0.1, -0.2, 0])
    res = backtest(x, y, z, b, fee_rate=0.0)
    (tr,) = res.trades
    # Short filled at 13 (bar 2); spread rose to 14 then fell; closed at 9.8 (bar 6).
    assert tr.pnl == pytest.approx(13 - 9.8)
    np.testing.assert_allclose(res.equity, [0, 0, 0, -1, -0.5, 3.1, 3.2, 3.2])
    assert res.max_drawdown == pytest.approx(1.0)


def test_beta_is_frozen_at_entry_and_hedge_leg_pnl_counts():
    x = np.array([20.0, 20, 20, 21, 21, 21])
    y = np.array([10.0, 10, 10, 11, 11, 12])
    z = np.array([0.0, 2.5, 1, 0.5, -0.1, 0])
    beta = np.array([2.0, 2.0, 5.0, 5.0, 5.0, 5.0])
    res = backtest(x, y, z, beta, fee_rate=0.0)
    (tr,) = res.trades
    assert tr.beta == 2.0 and tr.qty_y == 2.0  # beta of the signal bar, not later ones
    # Short spread: −1·(21 − 20) + 2·(12 − 10) = 3.
    assert tr.pnl == pytest.approx(3.0)


def test_stop_exits_and_does_not_reenter_until_back_inside_entry():
    x, y, z, b = path([0, 2.5, 3, 5, 5, 3, 2.5, 1, 2.6, 2.7, 0])
    res = backtest(x, y, z, b, entry_z=2.0, stop_z=4.0, fee_rate=0.0)
    first, second = res.trades
    assert first.exit_reason == "stop" and (first.entry_bar, first.exit_bar) == (2, 4)
    assert first.pnl == pytest.approx(13 - 15)  # short filled at 13, stopped at 15
    # Re-armed at bar 7 (|z| = 1 < 2), then a new signal at bar 8.
    assert second.signal_bar == 8 and second.exit_reason == "open"
    assert res.win_rate == 0.0 and res.n_trades == 2


def test_open_trade_at_end_is_marked_to_market():
    x, y, z, b = path([0, 0, 2.5, 3, 3.5])
    res = backtest(x, y, z, b)
    (tr,) = res.trades
    assert tr.exit_bar is None and tr.exit_reason == "open"
    entry_fee = FEE * (13 + 10)
    assert tr.pnl == pytest.approx(-0.5 - entry_fee)
    assert res.total_pnl == pytest.approx(-0.5 - entry_fee)
    assert math.isnan(res.win_rate)  # no closed trade


def test_liquidity_filter_skips_entries_on_thin_bars():
    x, y, z, b = path([0, 2.5, 1, 0, 2.5, 1, -1, 0])
    vol = np.full(8, 100.0)
    vol[1] = 0.1  # signal bar 1 is thin: 0.1 × 12.5 quote volume
    trades = np.full(8, 50)
    res = backtest(
        x,
        y,
        z,
        b,
        volume_x=vol,
        volume_y=vol,
        trades_x=trades,
        trades_y=trades,
        min_quote_volume=10.0,
        min_trades=5,
    )
    assert res.skipped_entries == 1
    assert [t.signal_bar for t in res.trades] == [4]
    trades[4] = 1
    res = backtest(
        x, y, z, b, volume_x=vol, volume_y=vol, trades_x=trades, trades_y=trades, min_trades=5
    )
    assert res.skipped_entries == 1 and [t.signal_bar for t in res.trades] == [1]


def test_nan_zscore_means_no_signal_and_no_trades_means_flat_equity():
    x, y, _, b = path([0, 0, 0.5, 1.0, 0])
    z = np.array([np.nan, np.nan, 0.5, 1.0, np.nan])
    res = backtest(x, y, z, b)
    assert res.trades == () and res.total_pnl == 0.0 and res.max_drawdown == 0.0
    assert math.isnan(res.sharpe) and res.n_trades == 0
    assert len(res.trades_frame()) == 0


def test_sharpe_of_per_bar_pnl():
    x, y, z, b = path([0, 2.5, 2, 1, -0.1, 0, 0, 0])
    res = backtest(x, y, z, b, fee_rate=0.0, bar_seconds=60)
    steps = np.diff(res.equity, prepend=0.0)
    assert res.sharpe == pytest.approx(steps.mean() / steps.std(ddof=1))
    assert res.sharpe_annualised == pytest.approx(res.sharpe * math.sqrt(365 * 1440))


def test_backtest_validates_inputs():
    x, y, z, b = path([0, 1, 2, 3])
    with pytest.raises(ValueError, match="exit_z"):
        backtest(x, y, z, b, entry_z=1.0, exit_z=1.0)
    with pytest.raises(ValueError, match="stop_z"):
        backtest(x, y, z, b, entry_z=2.0, stop_z=1.5)
    with pytest.raises(ValueError, match="bars"):
        backtest(x, y, z[:-1], b)
    with pytest.raises(ValueError, match="min_quote_volume needs"):
        backtest(x, y, z, b, min_quote_volume=5.0)
    with pytest.raises(ValueError, match="infinite"):
        backtest(x, y, np.array([0, np.inf, 0, 0]), b)
    with pytest.raises(ValueError, match="fee_rate"):
        backtest(x, y, z, b, fee_rate=-0.001)


def test_backtest_on_a_computed_mean_reverting_pair_is_profitable_before_fees():
    rng = np.random.default_rng(30)
    n = 3000
    y = 100 + np.cumsum(rng.normal(0, 0.5, n))
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = 0.9 * e[t - 1] + rng.normal(0, 0.5)
    x = 20 + 1.5 * y + e
    pa = compute_pair(x, y, 200)
    res = backtest(x, y, pa.frame["zscore"], pa.frame["beta"], fee_rate=0.0)
    assert res.n_trades > 10 and res.total_pnl > 0 and res.win_rate > 0.6
    frame = res.trades_frame()
    assert list(frame["pnl"]) == [t.pnl for t in res.trades]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 120), cut=st.floats(0, 1))
def test_equity_up_to_t_does_not_depend_on_later_bars(seed, n, cut):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    x = 50 + np.cumsum(rng.normal(0, 1, n))
    y = 30 + np.cumsum(rng.normal(0, 1, n))
    b = rng.uniform(0.5, 2, n)
    c = max(1, int(cut * n))
    full = backtest(x, y, z, b, stop_z=3.5)
    part = backtest(x[:c], y[:c], z[:c], b[:c], stop_z=3.5)
    np.testing.assert_array_equal(part.equity, full.equity[:c])
    np.testing.assert_array_equal(part.position, full.position[:c])
    closed = [t for t in part.trades if t.exit_bar is not None]
    assert closed == list(full.trades[: len(closed)])
