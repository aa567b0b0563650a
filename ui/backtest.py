"""The Backtest tab: the z-score mean-reversion rule on the current pair, fees, liquidity filter.

Rendered only while its tab is open (lazy tabs), inside the panel error boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd
import streamlit as st

from analytics import backtest
from analytics.backtest import BacktestResult
from service import exports
from service.compute import PairParams, compute_pair
from service.desk import DashboardService
from storage import timeframe_s
from ui import charts
from ui.funding import backtest_funding
from ui.guard import (
    PLOT_CONFIG,
    WAIT_ICON,
    csv_download,
    fmt_num,
)
from ui.state import session_reader


@dataclass(frozen=True, slots=True)
class BacktestInputs:
    """The tab's controls: thresholds in |z|, fee in bps per leg, lookback in bars."""

    entry_z: float
    exit_z: float
    stop_z: float | None  # None: no stop
    fee_bps: float
    min_quote_volume: float | None  # None: no liquidity filter
    lookback_bars: int
    charge_funding: bool = False  # each leg's settled funding (ui/funding.py)


def render_backtest(service: DashboardService, params: PairParams) -> None:
    st.subheader(f"Backtest: mean reversion of {params.x} − β·{params.y}")
    st.caption(
        "Enter when |z| exceeds the entry threshold (short the spread above, long "
        "below), exit when z crosses back through ±exit, stop out beyond ±stop. A "
        "signal at a bar's close fills at the next bar's close; β is frozen at entry; "
        "fees are charged per leg per side. P&L is per 1 unit of X, in quote currency."
    )
    inputs = _inputs(params)
    if inputs is None:
        return
    frame = _read_frame(service, params, inputs.lookback_bars)
    if len(frame) <= params.window + 1:
        st.info(
            f"Backtest: waiting for data — {len(frame)} of {params.window + 2} bars.",
            icon=WAIT_ICON,
        )
        return
    bt_params = replace(params, display_bars=inputs.lookback_bars)
    t = compute_pair(frame, bt_params).table
    funding = backtest_funding(service, params, t) if inputs.charge_funding else (None, None, "")
    if funding is None:
        return  # the history is being fetched in the background; the page reruns when it is in
    res = _run(t, inputs, params.tf, funding[:2])
    _metrics(res, inputs.charge_funding)
    if funding[2]:
        st.caption(funding[2])
    st.plotly_chart(
        charts.equity_figure(t["time_ms"].to_numpy(), res.equity, params.x, params.y, params.tf),
        key="chart_equity",
        config=PLOT_CONFIG,
        width="stretch",
    )
    trades = _trades_table(res, t)
    st.dataframe(
        trades, hide_index=True, width="stretch", height=min(360, 40 + 35 * max(1, len(trades)))
    )
    curve = res.equity_frame(t["time"], t["x"], t["y"], t["beta"], t["zscore"])
    _downloads(exports.file_stem(params), trades, curve)


def _inputs(params: PairParams) -> BacktestInputs | None:
    """The controls' values, or None (with the reason shown) when they contradict."""
    c = st.columns(6)
    entry = c[0].number_input(
        "Entry |z|", 0.5, 10.0, float(max(params.z, 0.5)), 0.1, key="bt_entry"
    )
    exit_ = c[1].number_input("Exit |z|", 0.0, 9.5, 0.0, 0.1, key="bt_exit")
    stop = c[2].number_input("Stop |z| (0 = none)", 0.0, 20.0, 0.0, 0.5, key="bt_stop")
    fee_bps = c[3].number_input("Fee (bps per leg)", 0.0, 50.0, 5.0, 0.5, key="bt_fee")
    min_qv = c[4].number_input(
        "Min quote volume / bar",
        0.0,
        1e9,
        0.0,
        1000.0,
        key="bt_minqv",
        help="Liquidity filter: skip entries when a "
        "leg traded less notional on the signal bar (0 = off).",
    )
    lookback = c[5].select_slider(
        "Lookback (bars)", [300, 600, 1000, 1500, 2000], value=1000, key="bt_lookback"
    )
    charge = st.checkbox(
        "Charge funding",
        key="bt_funding",
        help="Charge each leg's settled funding (GET /fapi/v1/fundingRate) at every funding "
        "time inside the span: position × close × rate; longs pay positive rates.",
    )
    if exit_ >= entry:
        st.error("Exit must be below entry.")
        return None
    if stop and stop <= entry:
        st.error("Stop must be above entry (or 0 for none).")
        return None
    return BacktestInputs(
        entry_z=float(entry),
        exit_z=float(exit_),
        stop_z=float(stop) if stop else None,
        fee_bps=float(fee_bps),
        min_quote_volume=float(min_qv) if min_qv else None,
        lookback_bars=int(lookback),
        charge_funding=bool(charge),
    )


def _read_frame(service: DashboardService, params: PairParams, lookback: int) -> pd.DataFrame:
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        return lease.reader.pair_frame(
            params.x, params.y, params.tf, limit=min(2000, lookback + params.window)
        )


def _run(t: pd.DataFrame, inputs: BacktestInputs, tf: str, funding=(None, None)) -> BacktestResult:
    return backtest(
        t["x"],
        t["y"],
        t["zscore"],
        t["beta"],
        entry_z=inputs.entry_z,
        exit_z=inputs.exit_z,
        stop_z=inputs.stop_z,
        fee_rate=inputs.fee_bps / 10_000.0,
        volume_x=t["x_volume"],
        volume_y=t["y_volume"],
        trades_x=t["x_trades"],
        trades_y=t["y_trades"],
        min_quote_volume=inputs.min_quote_volume,
        bar_seconds=timeframe_s(tf),
        funding_x=funding[0],
        funding_y=funding[1],
    )


def _metrics(res: BacktestResult, charge_funding: bool) -> None:
    m = st.columns(8)
    m[0].metric("Total P&L", fmt_num(res.total_pnl, 5))
    m[1].metric("Trades", f"{res.n_trades}")
    m[2].metric("Win rate", "—" if math.isnan(res.win_rate) else f"{100 * res.win_rate:.0f}%")
    m[3].metric("Max drawdown", fmt_num(res.max_drawdown, 5))
    m[4].metric("Sharpe / bar", fmt_num(res.sharpe, 3))
    m[5].metric("Fees paid", fmt_num(res.fees_paid, 5))
    m[6].metric("Skipped (liquidity)", f"{res.skipped_entries}")
    m[7].metric(
        "Funding P&L",
        fmt_num(res.funding_pnl, 5) if charge_funding else "off",
        help="Funding received (+) or paid (−), included in Total P&L.",
    )


def _trades_table(res: BacktestResult, t: pd.DataFrame) -> pd.DataFrame:
    """The trades with their entry and exit bars' times in front."""
    trades = res.trades_frame()
    if not trades.empty:
        iso = t["time"].to_numpy()
        trades.insert(0, "entry_time", [iso[i] for i in trades["entry_bar"]])
        trades.insert(
            1, "exit_time", ["" if pd.isna(i) else iso[int(i)] for i in trades["exit_bar"]]
        )
    return trades


def _downloads(stem: str, trades: pd.DataFrame, curve: pd.DataFrame) -> None:
    c1, c2 = st.columns(2)
    for where, label, frame, name, key in (
        (c1, "Trades (CSV)", trades, f"backtest_trades_{stem}.csv", "dl_bt_trades"),
        (c2, "Equity curve (CSV)", curve, f"backtest_equity_{stem}.csv", "dl_bt_equity"),
    ):
        csv_download(label, frame.to_csv(index=False, na_rep=""), name, key, where=where)


# ------------------------------------------------------------------------- multi-symbol
