"""The Exports tab: CSV of bars, analytics, bar statistics, alerts and backtests, made when clicked.

Rendered only while its tab is open (lazy tabs), inside the panel error boundary.
"""

from __future__ import annotations

from functools import partial

import streamlit as st

from service import exports
from service.compute import PairParams
from service.desk import DashboardService
from ui.guard import (
    csv_download,
)


def render_exports(service: DashboardService, params: PairParams) -> None:
    status = service.status()
    st.subheader("Exports")
    st.caption(
        f"CSV files of the current view ({params.x}/{params.y}, {params.tf}); each is "
        "generated when clicked. Times are ISO-8601 UTC; empty cells are undefined "
        "values (warm-up)."
    )
    stem = exports.file_stem(params)
    db = status.db_path
    rows = [
        (
            "Bars of " + params.x,
            partial(exports.bars_csv, db, params.x, params.tf),
            f"bars_{params.x}_{params.tf}.csv",
            "dl_bars_x",
            "open_time, open, high, low, close, volume, trades, vwap, buy_volume",
        ),
        (
            "Bars of " + params.y,
            partial(exports.bars_csv, db, params.y, params.tf),
            f"bars_{params.y}_{params.tf}.csv",
            "dl_bars_y",
            "open_time, open, high, low, close, volume, trades, vwap, buy_volume",
        ),
        (
            "Analytics table",
            partial(exports.analytics_csv, db, params),
            f"analytics_{stem}.csv",
            "dl_analytics",
            "time, x, y, alpha, beta, spread, zscore, corr (+ r2 for OLS) — as the analytics CLI",
        ),
        (
            "Per-bar statistics",
            partial(exports.bar_stats_csv, db, params),
            f"bar_stats_{stem}.csv",
            "dl_stats",
            "the analytics columns plus r2, each leg's volume and filled flag",
        ),
        (
            "Alert log",
            partial(exports.alert_log_csv, db),
            "alert_log.csv",
            "dl_alerts",
            ", ".join(exports.ALERT_EXPORT_COLUMNS),
        ),
    ]
    for label, data, name, key, cols in rows:
        c1, c2 = st.columns([1, 2], vertical_alignment="center")
        csv_download(label, data, name, key, where=c1, width="stretch")
        c2.caption(f"`{name}` — {cols}")
    st.caption("The backtest's trades and equity curve are downloadable on the Backtest tab.")
