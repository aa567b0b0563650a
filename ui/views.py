"""The other tabs: alerts, backtest, multi-symbol, feed health and exports.

Each is rendered only while its tab is open (lazy tabs), inside the panel error boundary.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from analytics import backtest, correlation_matrix, scan_pairs
from analytics.stationarity import MIN_BARS
from service import exports
from service.alerts import METRICS, OPS, rules_from_frame, validate_rule
from service.compute import METHODS, PairParams, compute_pair
from service.desk import DashboardService
from service.feeds import COLLECTOR_ID
from service.watch import PairKey, keys_from_watchlist
from storage import StorageError, timeframe_s
from storage.timefmt import ms_to_iso
from ui import charts
from ui.guard import WAIT_ICON, db_label, fmt_age, fmt_datetime, fmt_num, fmt_time, md_escape, panel
from ui.state import cached, page_views, session_reader, store

PLOT_CONFIG = {"displaylogo": False, "scrollZoom": True}
DL_ICON = ":material/download:"


# ------------------------------------------------------------------------- alerts
def render_alerts(service: DashboardService, params: PairParams | None) -> None:
    status = service.status()
    st.subheader("Alert rules")
    st.caption(
        "Rules are evaluated by the background monitor on every closed bar, with or "
        "without a browser open. A rule fires when its condition becomes true (on "
        "crossing, not on every bar it stays true), then waits for its cooldown "
        "(in market time)."
    )
    if status.read_only:
        st.info("Read-only: rules cannot be added here while another process writes the database.")
    elif params is None:
        st.info("Choose a valid pair in the sidebar to add a rule for it.")
    else:
        with panel("New rule"):
            _rule_form(service, params)
    with session_reader(status.db_path, status.generation) as lease:
        rules_df = lease.reader.alert_rules()
        events = lease.reader.alert_events(limit=500)
    with panel("Rules"):
        _rules_table(service, rules_df, bool(status.read_only))
    st.subheader("Alert log")
    with panel("Alert log"):
        mon = service.monitor
        if mon is not None:
            st.caption(
                f"Monitor: {mon.stats.passes:,} passes, {mon.stats.fired:,} fired since "
                f"start, last pass {fmt_time(mon.stats.last_pass_ms)} UTC"
                + (
                    f" — last error: {md_escape(mon.stats.last_error)}"
                    if mon.stats.last_error
                    else ""
                )
            )
        if events.empty:
            st.info("No alert has fired yet.")
        else:
            log = events.copy()
            log.insert(0, "fired", ms_to_iso(log["fired_ts_ms"]).to_numpy())
            log.insert(1, "bar", ms_to_iso(log["bar_time_ms"]).to_numpy())
            with session_reader(status.db_path, status.generation) as lease:
                states = exports.delivery_states(lease.reader, log["event_id"].tolist())
            log["delivery"] = [states.get(int(i), "") for i in log["event_id"]]
            st.dataframe(
                log[["fired", "bar", "rule_id", "value", "message", "delivery"]],
                hide_index=True,
                width="stretch",
                height=min(400, 40 + 35 * len(log)),
            )
        st.download_button(
            "Alert log (CSV)",
            partial(exports.alert_log_csv, status.db_path),
            file_name="alert_log.csv",
            mime="text/csv",
            key="dl_alerts_tab",
            icon=DL_ICON,
            on_click="ignore",
        )
        st.download_button(
            "Deliveries (CSV)",
            partial(exports.deliveries_csv, status.db_path),
            file_name="alert_deliveries.csv",
            mime="text/csv",
            key="dl_deliveries_tab",
            icon=DL_ICON,
            on_click="ignore",
        )


def _rule_form(service: DashboardService, p: PairParams) -> None:
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        watched = keys_from_watchlist(lease.reader.watchlist())
    live = PairKey(p.x, p.y, p.tf, p.window, p.method)
    choices = [live, *[k for k in watched if k != live]]
    with st.form("new_rule", clear_on_submit=False, border=True):
        on = st.selectbox(
            "Pair",
            choices,
            key="rule_pair",
            format_func=lambda k: k.describe() + (" (Live panel)" if k == live else ""),
            help="The Live panel's pair, or any watched pair.",
        )
        p = replace(p, x=on.x, y=on.y, tf=on.tf, window=on.window, method=on.method)
        st.markdown(
            f"For **{p.x} / {p.y}**, {p.tf} bars, window {p.window}, "
            f"{METHODS[p.method]} hedge ratio."
        )
        c = st.columns([2, 2, 1, 1.3, 1.3])
        name = c[0].text_input(
            "Name", value="", placeholder="optional", key="rule_name", max_chars=80
        )
        metric = c[1].selectbox(
            "Metric",
            list(METRICS),
            key="rule_metric",
            format_func=lambda m: METRICS[m].replace("X", p.x).replace("Y", p.y),
        )
        op = c[2].selectbox("Operator", list(OPS), key="rule_op")
        threshold = c[3].number_input(
            "Threshold", value=float(p.z), key="rule_threshold", format="%.6g"
        )
        cooldown = c[4].number_input(
            "Cooldown (s)",
            min_value=0.0,
            max_value=86_400.0,
            value=60.0,
            step=10.0,
            key="rule_cooldown",
        )
        if st.form_submit_button("Add rule", type="primary"):
            try:
                validate_rule(metric, op, float(threshold), float(cooldown), p.window, p.method)
                rid = service.add_rule(
                    name=name.strip(),
                    x=p.x,
                    y=p.y,
                    tf=p.tf,
                    metric=metric,
                    op=op,
                    threshold=float(threshold),
                    cooldown_s=float(cooldown),
                    params={"window": p.window, "method": p.method},
                )
            except (ValueError, StorageError) as exc:
                st.error(f"Rule not added: {md_escape(str(exc))}")
            else:
                st.success(f"Rule {rid} added; it is evaluated from the next closed bar on.")


def _rules_table(service: DashboardService, rules_df: pd.DataFrame, read_only: bool) -> None:
    rules = rules_from_frame(rules_df)
    if not rules:
        st.info("No rules yet. Add one above, e.g. |z-score| ≥ 2.")
        return
    mon = service.monitor
    skipped = mon.stats.skipped_rules if mon is not None else {}
    table = pd.DataFrame(
        [
            {
                "id": r.rule_id,
                "name": r.name,
                "rule": r.describe(),
                "window": r.window,
                "method": METHODS.get(r.method, r.method),
                "cooldown_s": r.cooldown_s,
                "enabled": r.enabled,
                "note": skipped.get(r.rule_id, ""),
            }
            for r in rules
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    if read_only:
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    labels = {r.rule_id: r.name or r.describe() for r in rules}
    rid = c1.selectbox(
        "Rule",
        [r.rule_id for r in rules],
        key="rule_pick",
        format_func=lambda i: f"{i}: {labels[i]}",
    )
    current = next(r for r in rules if r.rule_id == rid)
    # Callbacks: the change is made before the page reruns, so the table is already current.
    c2.button(
        "Disable" if current.enabled else "Enable",
        key="rule_toggle",
        width="stretch",
        on_click=service.set_rule_enabled,
        args=(rid, not current.enabled),
    )
    c3.button(
        "Delete", key="rule_delete", width="stretch", on_click=service.delete_rule, args=(rid,)
    )


# ------------------------------------------------------------------------- backtest
def render_backtest(service: DashboardService, params: PairParams) -> None:
    st.subheader(f"Backtest: mean reversion of {params.x} − β·{params.y}")
    st.caption(
        "Enter when |z| exceeds the entry threshold (short the spread above, long "
        "below), exit when z crosses back through ±exit, stop out beyond ±stop. A "
        "signal at a bar's close fills at the next bar's close; β is frozen at entry; "
        "fees are charged per leg per side. P&L is per 1 unit of X, in quote currency."
    )
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
    if exit_ >= entry:
        st.error("Exit must be below entry.")
        return
    if stop and stop <= entry:
        st.error("Stop must be above entry (or 0 for none).")
        return
    status = service.status()
    bt_params = PairParams(
        x=params.x,
        y=params.y,
        tf=params.tf,
        window=params.window,
        method=params.method,
        z=params.z,
        display_bars=lookback,
    )
    with session_reader(status.db_path, status.generation) as lease:
        frame = lease.reader.pair_frame(
            params.x, params.y, params.tf, limit=min(2000, lookback + params.window)
        )
    if len(frame) <= params.window + 1:
        st.info(
            f"Backtest: waiting for data — {len(frame)} of {params.window + 2} bars.",
            icon=WAIT_ICON,
        )
        return
    view = compute_pair(frame, bt_params)
    t = view.table
    res = backtest(
        t["x"],
        t["y"],
        t["zscore"],
        t["beta"],
        entry_z=float(entry),
        exit_z=float(exit_),
        stop_z=float(stop) if stop else None,
        fee_rate=float(fee_bps) / 10_000.0,
        volume_x=t["x_volume"],
        volume_y=t["y_volume"],
        trades_x=t["x_trades"],
        trades_y=t["y_trades"],
        min_quote_volume=float(min_qv) if min_qv else None,
        bar_seconds=timeframe_s(params.tf),
    )
    m = st.columns(7)
    m[0].metric("Total P&L", fmt_num(res.total_pnl, 5))
    m[1].metric("Trades", f"{res.n_trades}")
    m[2].metric("Win rate", "—" if math.isnan(res.win_rate) else f"{100 * res.win_rate:.0f}%")
    m[3].metric("Max drawdown", fmt_num(res.max_drawdown, 5))
    m[4].metric("Sharpe / bar", fmt_num(res.sharpe, 3))
    m[5].metric("Fees paid", fmt_num(res.fees_paid, 5))
    m[6].metric("Skipped (liquidity)", f"{res.skipped_entries}")
    times = t["time_ms"].to_numpy()
    st.plotly_chart(
        charts.equity_figure(times, res.equity, params.x, params.y, params.tf),
        key="chart_equity",
        config=PLOT_CONFIG,
        width="stretch",
    )
    trades = res.trades_frame()
    if not trades.empty:
        iso = t["time"].to_numpy()
        trades.insert(0, "entry_time", [iso[i] for i in trades["entry_bar"]])
        trades.insert(
            1, "exit_time", ["" if pd.isna(i) else iso[int(i)] for i in trades["exit_bar"]]
        )
    st.dataframe(
        trades, hide_index=True, width="stretch", height=min(360, 40 + 35 * max(1, len(trades)))
    )
    curve = pd.DataFrame(
        {
            "time": t["time"],
            "x": t["x"],
            "y": t["y"],
            "beta": t["beta"],
            "zscore": t["zscore"],
            "position": res.position,
            "equity": res.equity,
        }
    )
    c1, c2 = st.columns(2)
    stem = exports.file_stem(params)
    c1.download_button(
        "Trades (CSV)",
        trades.to_csv(index=False, na_rep=""),
        file_name=f"backtest_trades_{stem}.csv",
        mime="text/csv",
        icon=DL_ICON,
        key="dl_bt_trades",
        on_click="ignore",
    )
    c2.download_button(
        "Equity curve (CSV)",
        curve.to_csv(index=False, na_rep=""),
        file_name=f"backtest_equity_{stem}.csv",
        mime="text/csv",
        icon=DL_ICON,
        key="dl_bt_equity",
        on_click="ignore",
    )


# ------------------------------------------------------------------------- multi-symbol
def aligned_closes(reader, symbols: list[str], tf: str, bars: int) -> pd.DataFrame:
    """Closes of ``symbols`` on one grid of ``tf`` bars: the last ``bars`` bars from the first
    bar where every symbol has traded, previous close carried forward (the pair-frame rule)."""
    step = timeframe_s(tf) * 1000
    cols = {}
    for s in symbols:
        b = reader.bars(s, tf, limit=bars)
        if b.empty:
            raise ValueError(f"no {tf} bars for {s} yet")
        cols[s] = pd.Series(b["close"].to_numpy(), index=b["open_time_ms"].to_numpy())
    start = max(int(c.index[0]) for c in cols.values())
    end = max(int(c.index[-1]) for c in cols.values())
    if end < start:
        return pd.DataFrame(columns=symbols)
    grid = np.arange(start, end + step, step, dtype=np.int64)[-bars:]
    out = pd.DataFrame({s: c.reindex(grid).ffill() for s, c in cols.items()})
    return out.dropna()


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
        a1, a2 = st.columns([3, 1])
        raw = a1.text_input(
            "Symbols to add to the feed", key="multi_add", placeholder="SOLUSDT, BNBUSDT"
        )
        if a2.button(
            "Add to feed", key="multi_add_go", width="stretch", disabled=bool(status.read_only)
        ):
            syms = [s.strip().upper() for s in raw.replace(" ", ",").split(",") if s.strip()]
            bad = [f"{s}: {r}" for s in syms if (r := service.check_symbol(s))]
            if bad:
                st.error("Not added — " + md_escape("; ".join(bad)))
            elif syms:
                service.watch(syms)
                st.success(
                    f"Collecting {md_escape(', '.join(syms))}; they appear here once they "
                    "have bars."
                )
        st.caption(
            "Or import history: `python -m storage import "
            "/path/to/*-1m-*.csv --db <DB_PATH>` (Binance kline dumps)."
        )
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
    st.subheader("Pair scanner")
    window = params.window if params else 60
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
    st.download_button(
        "Scanner table (CSV)",
        scan.table.to_csv(index=False, na_rep=""),
        file_name=f"pair_scan_{tf}.csv",
        mime="text/csv",
        key="dl_scan",
        icon=DL_ICON,
        on_click="ignore",
    )


# ------------------------------------------------------------------------- feed health
#: Feed states by severity colour (see ``ingestion.status.FeedState``).
STATE_COLOR = {
    "live": "#16a34a",
    "quiet": "#ca8a04",
    "backfilling": "#2563eb",
    "connecting": "#64748b",
    "reconnecting": "#ea580c",
    "stale": "#ea580c",
    "stopped": "#475569",
    "error": "#dc2626",
}


def health_table(statuses: list) -> pd.DataFrame:
    """One row per symbol: the answer to "is it quiet or dead?"."""
    rows = []
    for s in statuses:
        d = s if isinstance(s, dict) else s.to_dict()
        rows.append(
            {
                "symbol": d.get("symbol"),
                "collector": d.get("collector", ""),
                "state": str(d.get("state", "")),
                "msg/s": round(float(d.get("messages_per_s") or 0.0), 1),
                "last trade age": fmt_age(d.get("last_trade_age_s")),
                "messages": d.get("messages"),
                "reconnects": d.get("reconnects"),
                "gaps found": d.get("gaps_found"),
                "gaps repaired": d.get("gaps_repaired"),
                "owed": owed_text(d),
                "ids backfilled": d.get("ids_backfilled"),
                "rejected": d.get("rejected"),
                "duplicates": d.get("duplicates"),
                "stored": d.get("stored"),
                "queue": f"{d.get('queue_depth', 0)}/{d.get('queue_capacity', 0)}",
                "last error": d.get("last_error") or "",
            }
        )
    return pd.DataFrame(rows)


def owed_text(d: dict) -> str:
    """Ranges recorded as owed and not stored yet (gaps, start-up history), e.g.
    ``4,707 ids in 1 range, retry in 3 s``; empty when nothing is owed."""
    ranges = int(d.get("owed_ranges") or 0)
    if not ranges:
        return ""
    text = f"{int(d.get('owed_ids') or 0):,} ids in {ranges} range{'s' if ranges > 1 else ''}"
    if d.get("owed_by_time"):
        text += f" ({d['owed_by_time']} by time, first id not known yet)"
    retry_s = d.get("repair_retry_in_s")
    if retry_s is not None:
        text += f", REST failed: retry in {float(retry_s):.0f} s"
    return text


def _state_style(value: str) -> str:
    color = STATE_COLOR.get(str(value))
    return f"color: {color}; font-weight: 600" if color else ""


def render_health(service: DashboardService) -> None:
    status = service.status()
    st.subheader("Feed health")
    st.caption(
        "**live**: trades flowing · **quiet**: no trades, and REST confirms the market "
        "did not trade either · **stale** / **reconnecting**: the socket is down or "
        "silent while the market trades (missed trades are repaired from REST) · "
        "**error** · **stopped**."
    )
    own = [dict(s.to_dict(), collector="this dashboard") for s in service.feed_status()]
    # Every other process that publishes into this database (a headless collector, another
    # dashboard on PostgreSQL): two collectors of one symbol show as two rows. Read once for
    # every open tab (PageViews.health), with the gaps below.
    health = page_views(service.views, service.settings.shared_views).health(
        status.db_path, status.generation
    )
    published = health.published
    now_ms = time.time() * 1000
    others = []
    for row in published.itertuples():
        if row.collector_id == COLLECTOR_ID:
            continue
        d = dict(row.status, symbol=row.symbol, collector=row.collector_id)
        if d.get("last_trade_ms"):  # age as of now, not as of the last publish
            d["last_trade_age_s"] = max(0.0, (now_ms - float(d["last_trade_ms"])) / 1000)
        d["published_age_s"] = max(0.0, (now_ms - row.updated_ts_ms) / 1000)
        others.append(d)
    statuses = own + others
    if status.collected_elsewhere:
        st.info(
            "Collected by another process, so this page reads their data instead of starting "
            "its own feed: "
            + "; ".join(
                f"{sym} by {', '.join(ids)}" for sym, ids in status.collected_elsewhere.items()
            ),
            icon=":material/hub:",
        )
    if statuses:
        table = health_table(statuses)
        styled = table.style.map(_state_style, subset=["state"]).format(precision=1)
        st.dataframe(styled, hide_index=True, width="stretch")
        st.caption(
            f"Refreshed {fmt_time(now_ms)} UTC. Rows of other collectors are as they "
            "last published (every few seconds)."
        )
    else:
        st.info("No feed is running: press Start feed in the sidebar.")
    stats = service.feed_stats()
    if stats:
        w, r = stats["writer"], stats["rest"]
        c = st.columns(6)
        c[0].metric(
            "Writer queue",
            f"{w.queued:,}/{w.capacity:,}",
            help=f"High water {w.high_water:,}; producers blocked {w.blocked_s:.1f} s",
        )
        c[1].metric("Ticks committed", f"{w.committed:,}")
        c[2].metric("Last batch", f"{w.last_batch_ms:.1f} ms", help=f"{w.batches:,} batches")
        c[3].metric("REST weight used", f"{r.used_weight_1m}/{r.weight_limit_1m}")
        c[4].metric(
            "REST requests",
            f"{r.requests:,}",
            help=f"{r.errors} errors, {r.rate_limited} rate-limited",
        )
        c[5].metric("Commit errors", f"{w.errors}", help=w.last_error or "none")
    gaps = health.gaps
    st.markdown("**Gaps found in the id sequences**")
    if gaps.empty:
        st.caption("None found.")
    else:
        g = gaps.copy()
        g["found"] = ms_to_iso(g["found_ts_ms"]).to_numpy()
        st.dataframe(
            g[
                [
                    "symbol",
                    "first_missing_id",
                    "last_missing_id",
                    "missing",
                    "status",
                    "repaired_count",
                    "found",
                    "detail",
                ]
            ].tail(200),
            hide_index=True,
            width="stretch",
        )
    st.caption(
        f"Database {md_escape(db_label(status.db_path))} · service up since "
        f"{fmt_datetime(status.started_ms)}"
    )


# ------------------------------------------------------------------------- exports
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
        c1.download_button(
            label,
            data,
            file_name=name,
            mime="text/csv",
            key=key,
            icon=DL_ICON,
            on_click="ignore",
            width="stretch",
        )
        c2.caption(f"`{name}` — {cols}")
    st.caption("The backtest's trades and equity curve are downloadable on the Backtest tab.")
