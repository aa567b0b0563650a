"""The live panel (key figures, six charts, toasts) and the stationarity section.

``render_live`` runs inside ``st.fragment(run_every=refresh)``: only it reruns. The pair's
analytics (the last ``window + bars shown`` bars, cost independent of the history stored), key
figures and chart payloads come from ``service.pageviews.PageViews``: computed once per data
version and shared by every tab of the same view. Figures keep stable keys and ``uirevision``
so zoom and pan survive refreshes.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from functools import partial

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analytics.stationarity import MIN_BARS, stationarity
from service.compute import METHODS, PairParams, PairView
from service.desk import DashboardService, ServiceStatus
from service.pageviews import newest_1s_bar_ms
from service.viewcache import Snapshot
from storage import Reader, UnknownSymbolError
from ui import charts
from ui.funding import show_funding_line
from ui.guard import WAIT_ICON, failure, fmt_age, fmt_num, fmt_time, md_escape, panel
from ui.plot import Cell, encode_grid, figure_payload, show_grid
from ui.state import Lease, page_views, session_reader, store


def feed_newest_trade_ms(service: DashboardService, params: PairParams) -> int | None:
    """Exchange time of the newest trade of either leg, from the in-process feed (no I/O)."""
    best: int | None = None
    for s in service.feed_status():
        if s.symbol in (params.x, params.y) and s.last_trade_ms is not None:
            best = max(best or 0, int(s.last_trade_ms))
    return best


def show_new_alerts(events: pd.DataFrame) -> None:
    """Toasts for alerts fired since this session last looked (on every tab).

    ``events`` are the newest alert events, read once for every session
    (``PageViews.alerts``); each session toasts those after its start it has not shown yet.
    """
    s = store()
    if events.empty:
        return
    events = events[
        (events["event_id"] > s.seen_event_id) & (events["fired_ts_ms"] >= s.started_ms)
    ]
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


def key_figure_tiles(result: PairView) -> list[tuple[str, str, str]]:
    """(label, value, help) of the nine key-figure tiles."""
    f = result.figures
    p = result.params
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
    return tiles


def key_figures_html(tiles: list[tuple[str, str, str]]) -> str:
    """The key-figure tiles as one HTML block (built once per data version, for every tab).

    One element instead of nine ``st.metric`` in nine columns: each refresh of each tab sent
    nineteen elements for them, about 7 % of the server's CPU with eight tabs open
    (docs/viewers.md). Each tile keeps its label, value and help (the tooltip); the look is
    ``ui.guard.CSS``'s ``.pd-kf``. Labels and values are escaped: a symbol name is user input.
    """
    cells = "".join(
        f'<div class="pd-kf" data-label="{html.escape(label)}" title="{html.escape(help_)}">'
        f'<div class="pd-kf-label">{html.escape(label)}</div>'
        f'<div class="pd-kf-value">{html.escape(value)}</div></div>'
        for label, value, help_ in tiles
    )
    return f'<div class="pd-kfs">{cells}</div>'


def key_figures(block: str) -> None:
    st.markdown(block, unsafe_allow_html=True)


def chart_cells(
    result: PairView, price_mode: str, candles: dict[str, pd.DataFrame] | None
) -> list[Cell]:
    """The six charts of the live grid, on one time axis, in reading order (two per row).

    A chart whose statistic is still warming up is a note saying what it waits for; a chart
    that fails to build is a note saying why (``ui.guard.failure``), and the others are drawn.
    """
    p = result.params
    hedge, corr = result.hedge, result.corr
    shown = result.table.iloc[-p.display_bars :]  # the bars shown

    def cell(key: str, title: str, build: Callable[[], go.Figure], warm=None) -> Cell:
        if warm is not None and not warm.defined:
            note = f"{title}: waiting for data — {warm.n_bars} of {warm.bars_required} bars."
            return Cell(key, title, note=note)
        try:
            return Cell(key, title, chart=figure_payload(build()))
        except Exception as exc:  # broad on purpose: one chart fails, the grid lives
            level, text = failure(title, exc)
            return Cell(key, title, note=text, level=level)

    mode = price_mode if (price_mode != "candles" or candles) else "normalised"
    return [
        cell(
            "chart_price",
            "Prices",
            lambda: charts.price_figure(shown, p.x, p.y, p.tf, mode=mode, candles=candles),
        ),
        cell(
            "chart_zscore",
            "Z-score",
            lambda: charts.zscore_figure(shown, p.x, p.y, p.tf, p.z),
            hedge,
        ),
        cell("chart_spread", "Spread", lambda: charts.spread_figure(shown, p.x, p.y, p.tf), hedge),
        cell(
            "chart_beta",
            "Hedge ratio",
            lambda: charts.beta_figure(shown, p.x, p.y, p.tf, METHODS[p.method]),
            hedge,
        ),
        cell(
            "chart_corr",
            "Rolling correlation",
            lambda: charts.corr_figure(shown, p.x, p.y, p.tf),
            corr,
        ),
        cell("chart_volume", "Volume", lambda: charts.volume_figure(shown, p.x, p.y, p.tf)),
    ]


def charts_grid(
    snap: Snapshot[PairView], price_mode: str, candles: dict[str, pd.DataFrame] | None
) -> None:
    """The six charts as one component (``ui.plot``), its payload built once per data version
    and view for every session (``snap.derive``): a refresh serialises nothing new, the browser
    skips a payload it already drew, and Streamlit sends a payload the tab already has
    (≥ 10 kB) as a hash reference.
    """
    payload = snap.derive(
        ("charts", price_mode), lambda: encode_grid(chart_cells(snap.value, price_mode, candles))
    )
    show_grid(payload, "live_charts")


def render_live(service: DashboardService, params: PairParams, price_mode: str) -> None:
    """One refresh of the live panel: at most one database read (the data version), shared by
    every tab of the same view; the analytics and chart payloads are computed once per version.
    """
    status = service.status()
    views = page_views(service.views, service.settings.shared_views)
    db = (status.db_path, status.generation)
    snap: Snapshot[PairView] | None = None
    waiting: UnknownSymbolError | None = None
    try:
        snap = views.pair(*db, params)
    except UnknownSymbolError as exc:
        waiting = exc
    newest = feed_newest_trade_ms(service, params)
    if newest is None and snap is not None:  # no feed in this process: the newest 1s bar
        newest = snap.derive(
            "newest_1s", lambda: views.read(*db, partial(newest_1s_bar_ms, params=params))
        )
    age = None if newest is None else max(0.0, time.time() - newest / 1000.0)
    with st.container(key="last_update"):
        st.markdown(
            f"**Last update** `{fmt_time(newest, millis=True)}` UTC "
            f"(age {fmt_age(age)}) · refreshed {fmt_time(time.time() * 1000)} · "
            f"{_feed_line(service, status, params)}"
        )
    if snap is None:
        st.info(
            f"Waiting for the first trades: {waiting}. The feed collects "
            f"{params.x} and {params.y} as soon as it runs.",
            icon=WAIT_ICON,
        )
        return
    result = snap.value
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
            candles = snap.derive(
                "candles", lambda: views.read(*db, partial(read_candles, params=params))
            )
    with panel("Key figures"):
        key_figures(snap.derive("tiles", lambda: key_figures_html(key_figure_tiles(result))))
        show_funding_line(service, params)
    charts_grid(snap, price_mode, candles)


def read_candles(reader: Reader, params: PairParams) -> dict[str, pd.DataFrame]:
    """Both legs' bars for the candles price mode (the bars shown, at most 1,000)."""
    n = min(params.display_bars, 1000)
    return {
        "x": reader.bars(params.x, params.tf, limit=n),
        "y": reader.bars(params.y, params.tf, limit=n),
    }


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
