"""The Multi-symbol tab: the return-correlation heatmap and the pair scanner of chosen symbols.

Rendered only while its tab is open (lazy tabs), inside the panel error boundary.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import align_closes, correlation_matrix, scan_pairs
from analytics.stationarity import MIN_BARS
from service.compute import PairParams
from service.desk import DashboardService
from storage import Reader, timeframe_s
from ui import charts
from ui.guard import (
    PLOT_CONFIG,
    WAIT_ICON,
    csv_download,
    md_escape,
    panel,
)
from ui.state import cached, session_reader, store


def aligned_closes(reader: Reader, symbols: list[str], tf: str, bars: int) -> pd.DataFrame:
    """Closes of ``symbols`` on one grid of ``tf`` bars: the last ``bars`` bars
    (:func:`analytics.align_closes`, the pair-frame rule)."""
    cols = {}
    for s in symbols:
        b = reader.bars(s, tf, limit=bars)
        if b.empty:
            raise ValueError(f"no {tf} bars for {s} yet")
        cols[s] = pd.Series(b["close"].to_numpy(), index=b["open_time_ms"].to_numpy())
    return align_closes(cols, timeframe_s(tf) * 1000, last=bars)


def render_multi(service: DashboardService, params: PairParams | None, tf: str) -> None:
    st.subheader("Beyond the pair")
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        stored = lease.reader.symbols()
        with_bars = [s for s in stored if lease.reader.bar_range(s, tf) is not None]
    c1, c2 = st.columns([3, 1])
    default = [s for s in ([params.x, params.y] if params else []) if s in with_bars]
    default += [s for s in with_bars if s not in default][: max(0, 8 - len(default))]
    chosen = c1.multiselect(
        "Symbols (stored)",
        with_bars,
        default=default,
        key="multi_syms",
        help="Every symbol the database holds bars for at this timeframe.",
    )
    bars = c2.select_slider(
        "Lookback (bars)", [100, 300, 600, 1000, 2000], value=600, key="multi_bars"
    )
    with st.expander("Collect more symbols", expanded=not with_bars or len(with_bars) < 3):
        _collect_more(service, read_only=bool(status.read_only))
    if len(chosen) < 2:
        st.info("Choose at least two symbols with stored bars.")
        return
    with session_reader(status.db_path, status.generation) as lease:
        key = (tuple(chosen), tf, bars, lease.version())
        prices = cached("multi_prices", key, lambda: aligned_closes(lease.reader, chosen, tf, bars))
    if len(prices) < 3:
        st.info(f"Correlation: waiting for data — {len(prices)} of 3 common bars.", icon=WAIT_ICON)
        return
    with panel("Correlation heatmap"):
        cm = cached("multi_corr", key, lambda: correlation_matrix(prices))
        st.plotly_chart(
            charts.heatmap_figure(cm.matrix, tf),
            key="chart_heatmap",
            config=PLOT_CONFIG,
            width="stretch",
        )
        st.caption(f"Pearson correlation of {tf} log returns over {cm.nobs:,} returns.")
    _pair_scanner(prices, key, params.window if params else 60, tf)


def _collect_more(service: DashboardService, *, read_only: bool) -> None:
    """Add symbols to the running feed, or import their history."""
    a1, a2 = st.columns([3, 1])
    raw = a1.text_input(
        "Symbols to add to the feed", key="multi_add", placeholder="SOLUSDT, BNBUSDT"
    )
    if a2.button("Add to feed", key="multi_add_go", width="stretch", disabled=read_only):
        syms = [s.strip().upper() for s in raw.replace(" ", ",").split(",") if s.strip()]
        bad = [f"{s}: {r}" for s in syms if (r := service.check_symbol(s))]
        if bad:
            st.error("Not added — " + md_escape("; ".join(bad)))
        elif syms:
            service.watch(syms)
            st.success(
                f"Collecting {md_escape(', '.join(syms))}; they appear here once they have bars."
            )
    st.caption(
        "Or import history: `python -m storage import "
        "/path/to/*-1m-*.csv --db <DB_PATH>` (Binance kline dumps)."
    )


def _pair_scanner(prices: pd.DataFrame, key: tuple, window: int, tf: str) -> None:
    """The scanner over the chosen symbols, run on demand; its table stays until rescanned."""
    st.subheader("Pair scanner")
    st.caption(
        "Every pair ranked by Engle–Granger p-value (lowest first) over the lookback. "
        "With many symbols about 5 % of unrelated pairs look cointegrated by chance: "
        "treat it as a shortlist."
    )
    if len(prices) < MIN_BARS:
        st.info(
            f"Pair scanner: waiting for data — {len(prices)} of {MIN_BARS} common bars.",
            icon=WAIT_ICON,
        )
        return
    s = store()
    if st.button("Scan pairs", key="scan_go", type="primary"):
        s.cache["scan"] = (key, scan_pairs(prices, max(2, min(window, len(prices) - 1))))
    saved = s.cache.get("scan")
    if saved is None:
        return
    if saved[0] != key:
        st.caption("Computed on earlier bars — scan again to update.")
    scan = saved[1]
    st.dataframe(scan.table, hide_index=True, width="stretch")
    if scan.skipped:
        st.caption("Skipped: " + "; ".join(f"{a}/{b}: {r}" for a, b, r in scan.skipped))
    csv_download(
        "Scanner table (CSV)",
        scan.table.to_csv(index=False, na_rep=""),
        f"pair_scan_{tf}.csv",
        "dl_scan",
    )


# ------------------------------------------------------------------------- feed health
#: Feed states by severity colour (see ``ingestion.status.FeedState``).
