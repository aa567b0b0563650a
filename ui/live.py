"""The live panel (key figures, six charts, toasts) and the stationarity section.

``render_live`` runs inside ``st.fragment(run_every=refresh)``: only it reruns. It reads the
last ``window + bars shown`` bars of the pair (cost independent of the history stored),
recomputes only when the database changed (``Reader.data_version``), and draws figures with
stable keys and ``uirevision`` so zoom and pan survive refreshes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analytics.stationarity import MIN_BARS, stationarity
from service.compute import METHODS, PairParams, PairView, compute_pair
from service.desk import DashboardService, ServiceStatus
from storage import UnknownSymbolError
from ui import charts
from ui.guard import WAIT_ICON, fmt_age, fmt_num, fmt_time, md_escape, panel
from ui.plot import figure_payload, show_payload
from ui.state import Lease, cached, session_reader, store


def load_analytics(lease: Lease, params: PairParams, version: Hashable) -> PairView:
    """The pair's analytics, recomputed only when the database changed since the last run."""
    key = (params, version)

    def compute() -> PairView:
        frame = lease.reader.pair_frame(params.x, params.y, params.tf, limit=params.read_bars)
        return compute_pair(frame, params)

    return cached("live", key, compute)


def load_candles(lease: Lease, params: PairParams, version: Hashable) -> dict[str, pd.DataFrame]:
    key = (params, version)

    def read() -> dict[str, pd.DataFrame]:
        n = min(params.display_bars, 1000)
        return {
            "x": lease.reader.bars(params.x, params.tf, limit=n),
            "y": lease.reader.bars(params.y, params.tf, limit=n),
        }

    return cached("candles", key, read)


def newest_trade_ms(service: DashboardService, lease: Lease, params: PairParams) -> int | None:
    """Exchange time of the newest trade of either leg (feed status, else the newest 1s bar)."""
    best: int | None = None
    for s in service.feed_status():
        if s.symbol in (params.x, params.y) and s.last_trade_ms is not None:
            best = max(best or 0, int(s.last_trade_ms))
    if best is not None:
        return best
    for sym in (params.x, params.y):
        try:
            rng = lease.reader.bar_range(sym, "1s")
        except UnknownSymbolError:
            continue
        if rng is not None:
            best = max(best or 0, rng[1])
    return best


def show_new_alerts(lease: Lease) -> None:
    """Toasts for alerts fired since this session last looked (on every tab)."""
    s = store()
    events = lease.reader.alert_events(since_ms=s.started_ms, limit=20)
    events = events[events["event_id"] > s.seen_event_id]
    if events.empty:
        return
    for row in events.sort_values("event_id").itertuples(index=False):
        # The message quotes the rule's name, which a user typed: never Markdown.
        st.toast(md_escape(row.message), icon=":material/notifications_active:", duration="long")
    s.seen_event_id = int(events["event_id"].max())


def _feed_line(service: DashboardService, status: ServiceStatus, params: PairParams) -> str:
    states = {s.symbol: s for s in service.feed_status()}
    if not status.feed_running:
        return "feed stopped" if not status.read_only else "read-only (another process writes)"
    parts = []
    for sym in (params.x, params.y):
        s = states.get(sym)
        parts.append(
            f"{sym} {s.state.value} {s.messages_per_s:.1f} msg/s" if s else f"{sym} starting"
        )
    return " · ".join(parts)


def key_figures(result: PairView) -> None:
    f = result.figures
    p = result.params
    cols = st.columns(9)
    hl = f["half_life_bars"]
    tiles = [
        (p.x, fmt_num(f["x"], 8), "Last close of X."),
        (p.y, fmt_num(f["y"], 8), "Last close of Y."),
        ("β", fmt_num(f["beta"]), f"Hedge ratio ({METHODS[p.method]}): units of Y per unit of X."),
        ("α", fmt_num(f["alpha"]), "Intercept of the regression x = α + β·y."),
        (
            "R²",
            fmt_num(f["r2"], 3),
            "OLS R² over the window: share of X's variance explained by Y.",
        ),
        (
            "z-score",
            fmt_num(f["zscore"], 3),
            f"Spread in standard deviations from its mean; beyond ±{p.z:g} is an extreme.",
        ),
        ("Correlation", fmt_num(f["corr"], 3), "Of log returns over the window."),
        (
            "Half-life",
            "—" if math.isnan(hl) else ("∞" if math.isinf(hl) else f"{hl:.1f} bars"),
            "Bars for a spread deviation to halve (AR(1) fit of the spread over the window).",
        ),
        ("Bars", f"{f['bars']:,}", "Bars of the pair read for this view (window + shown)."),
    ]
    for col, (label, value, help_) in zip(cols, tiles, strict=True):
        col.metric(label, value, help=help_)


def _waiting(what: str, have: int, need: int) -> None:
    st.info(f"**{what}**: waiting for data — {have} of {need} bars.", icon=WAIT_ICON)


def charts_grid(
    result: PairView,
    price_mode: str,
    candles: dict[str, pd.DataFrame] | None,
    version: Hashable,
) -> None:
    """Six charts on one time axis; a chart still warming up says what it waits for.

    Each chart's payload is rebuilt only when the data (``version``) or the view changed, so
    an idle refresh re-sends what it sent last time without recomputing it.
    """
    p = result.params
    t = result.table.iloc[-p.display_bars :]
    hedge, corr = result.hedge, result.corr

    def plot(build: Callable[[], go.Figure], key: str) -> None:
        payload = cached(
            f"payload:{key}", (p, price_mode, version), lambda: figure_payload(build())
        )
        show_payload(payload, key)

    left, right = st.columns(2)
    with left, panel("Prices"):
        mode = price_mode if (price_mode != "candles" or candles) else "normalised"
        plot(
            lambda: charts.price_figure(t, p.x, p.y, p.tf, mode=mode, candles=candles),
            "chart_price",
        )
    with right, panel("Z-score"):
        if hedge.defined:
            plot(lambda: charts.zscore_figure(t, p.x, p.y, p.tf, p.z), "chart_zscore")
        else:
            _waiting("Z-score", hedge.n_bars, hedge.bars_required)
    left, right = st.columns(2)
    with left, panel("Spread"):
        if hedge.defined:
            plot(lambda: charts.spread_figure(t, p.x, p.y, p.tf), "chart_spread")
        else:
            _waiting("Spread", hedge.n_bars, hedge.bars_required)
    with right, panel("Hedge ratio"):
        if hedge.defined:
            plot(lambda: charts.beta_figure(t, p.x, p.y, p.tf, METHODS[p.method]), "chart_beta")
        else:
            _waiting("Hedge ratio", hedge.n_bars, hedge.bars_required)
    left, right = st.columns(2)
    with left, panel("Correlation"):
        if corr.defined:
            plot(lambda: charts.corr_figure(t, p.x, p.y, p.tf), "chart_corr")
        else:
            _waiting("Rolling correlation", corr.n_bars, corr.bars_required)
    with right, panel("Volume"):
        plot(lambda: charts.volume_figure(t, p.x, p.y, p.tf), "chart_volume")


def render_live(service: DashboardService, params: PairParams, price_mode: str) -> None:
    """One refresh of the live panel."""
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        newest = newest_trade_ms(service, lease, params)
        age = None if newest is None else max(0.0, time.time() - newest / 1000.0)
        with st.container(key="last_update"):
            st.markdown(
                f"**Last update** `{fmt_time(newest, millis=True)}` UTC "
                f"(age {fmt_age(age)}) · refreshed {fmt_time(time.time() * 1000)} · "
                f"{_feed_line(service, status, params)}"
            )
        version = lease.version()
        try:
            result = load_analytics(lease, params, version)
        except UnknownSymbolError as exc:
            st.info(
                f"Waiting for the first trades: {exc}. The feed collects "
                f"{params.x} and {params.y} as soon as it runs.",
                icon=WAIT_ICON,
            )
            return
        if result.n_bars == 0:
            st.info(
                f"Waiting for the first bar in which both {params.x} and {params.y} have traded.",
                icon=WAIT_ICON,
            )
            return
        if result.error:
            st.warning(f"Statistics are undefined on this data: {result.error}")
        candles = None
        if price_mode == "candles":
            with panel("Candles"):
                candles = load_candles(lease, params, version)
    with panel("Key figures"):
        key_figures(result)
    charts_grid(result, price_mode, candles, version)


# ------------------------------------------------------------------------- stationarity
EXPLAIN = (
    "Read it as: a p-value below 0.05 says the spread tends to return to its mean over this "
    "lookback (cointegrated); the Engle–Granger p-value is the honest one because β was "
    "estimated. The half-life is how many bars a deviation takes to halve, and a Hurst "
    "exponent below 0.5 means mean-reverting, 0.5 a random walk, above 0.5 trending."
)


def _bars_key(lease: Lease, params: PairParams) -> tuple:
    """(pair, timeframe, newest bar of each leg): changes exactly when new bars arrive."""
    ends = []
    for sym in (params.x, params.y):
        try:
            rng = lease.reader.bar_range(sym, params.tf)
        except UnknownSymbolError:
            rng = None
        ends.append(None if rng is None else rng[1])
    return (params.x, params.y, params.tf, params.read_bars, *ends)


def render_stationarity(service: DashboardService, params: PairParams) -> None:
    """ADF and Engle–Granger on demand over the bars shown, cached until new bars arrive.

    Runs in a fragment (without a timer), so the button reruns only this section.
    """
    st.subheader("Stationarity")
    s = store()
    clicked = st.button(
        "Run ADF / Engle–Granger",
        key="run_adf",
        icon=":material/functions:",
        help=f"On the last {params.read_bars:,} bars of {params.x}/{params.y} ({params.tf}).",
    )
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        key = _bars_key(lease, params)
        saved = s.cache.get("stationarity")
        if clicked and (saved is None or saved[0] != key):
            frame = lease.reader.pair_frame(params.x, params.y, params.tf, limit=params.read_bars)
            if len(frame) < MIN_BARS:
                st.info(
                    f"Stationarity tests: waiting for data — {len(frame)} of {MIN_BARS} bars.",
                    icon=WAIT_ICON,
                )
                return
            result = stationarity(frame["x"].to_numpy(), frame["y"].to_numpy())
            saved = s.cache["stationarity"] = (key, result)
    if saved is None:
        st.caption("Tests whether the spread mean-reverts over the bars shown. " + EXPLAIN)
        return
    skey, r = saved
    if skey[:4] != key[:4]:
        st.caption("The pair or settings changed since the last run: run the tests again.")
        return
    if skey != key:
        st.caption(
            f"Computed on {r.nobs:,} bars; new bars have arrived since — run again to update."
        )
    show_stationarity(r)


def show_stationarity(r) -> None:
    hl = r.half_life.bars
    c = st.columns(6)
    c[0].metric(
        "Engle–Granger p",
        f"{r.coint_pvalue:.4f}",
        help="MacKinnon p-value of the cointegration test (β estimated).",
    )
    c[1].metric("EG statistic", fmt_num(r.coint_stat, 4))
    c[2].metric(
        "ADF p (spread)",
        f"{r.adf.pvalue:.4f}",
        help="ADF on the OLS residual spread, as if β were known.",
    )
    c[3].metric("ADF statistic", fmt_num(r.adf.stat, 4), help=f"{r.adf.lags} lags (AIC)")
    c[4].metric("Half-life", "∞" if hl is None else f"{hl:.1f} bars")
    c[5].metric("Hurst", fmt_num(r.hurst, 3))
    crit = pd.DataFrame(
        {
            "level": ["1%", "5%", "10%"],
            "ADF critical": [r.adf.critical[k] for k in ("1%", "5%", "10%")],
            "Engle–Granger critical": [r.coint_critical[k] for k in ("1%", "5%", "10%")],
        }
    )
    c1, c2 = st.columns([2, 3])
    c1.dataframe(crit, hide_index=True, width="stretch")
    verdict = "**cointegrated** at 5 %" if r.coint_pvalue < 0.05 else "**not cointegrated** at 5 %"
    c2.markdown(
        f"Over **{r.nobs:,} bars**: β = {r.beta:.5g}, α = {r.alpha:.6g}, R² = {r.r2:.3f}; "
        f"ADF used {r.adf.lags} lags on {r.adf.nobs} observations. The pair is {verdict}.\n\n"
        + EXPLAIN
    )
