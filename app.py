"""Pairs desk: live pairs-trading analytics for Binance USD-M perpetuals (Streamlit page).

    streamlit run app.py                                   # live Binance feed
    streamlit run app.py -- --replay FILE [FILE ...] [--speed X] [--no-autostart]

Thin by design: controls → cached reads → pure analytics → figure builders. The background
service (feed, writer, replay server, retention, alert monitor) is one per process, held in
``st.cache_resource``; only the live panel reruns on its timer (``st.fragment``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from service.compute import PairParams
from service.desk import DashboardService, Source, acquire_service
from service.settings import SAMPLE_RECORDING, AppSettings, SettingsError
from ui.alerts import render_alerts
from ui.backtest import render_backtest
from ui.exports import render_exports
from ui.guard import db_label, fragment_slot, inject_css, md_escape, panel, tidy_browser
from ui.health import render_health
from ui.live import render_live, render_stationarity, show_new_alerts
from ui.multi import render_multi
from ui.sidebar import Controls, render_sidebar
from ui.state import page_views
from ui.watchlist import render_watchlist

#: What the page says about a replay: the recording repeats, and how its passes are joined.
LOOP_NOTE = (
    "A replay loops: when the recording ends it starts again, each pass with ids and times "
    "continuing and its prices scaled to continue from the previous pass's last price, so the "
    "join adds no jump. Statistics across passes repeat the same market; they are not new data."
)

TABS = ["Live", "Watchlist", "Alerts", "Backtest", "Multi-symbol", "Scan", "Feed health", "Exports"]


def _argv() -> list[str]:
    """Flags after ``--`` of ``streamlit run app.py -- ...``; none under AppTest or pytest."""
    launched = Path(sys.argv[0]).resolve() == Path(__file__).resolve()
    return sys.argv[1:] if launched else []


@st.cache_resource(
    show_spinner="Starting the background service…", validate=lambda svc: svc.healthy()
)
def get_service(settings_key: str, _settings: AppSettings) -> DashboardService:
    """The process's one service (rebuilt only if one of its threads died).

    ``settings_key`` (the settings' repr) only makes the cache honest when a test process runs
    the page with different settings; ``acquire_service`` still allows one service at a time.
    """
    return acquire_service(_settings)


def switch_to_sample(service: DashboardService) -> None:
    """The banner's button: replay the bundled recording, then redraw the whole page.

    A callback, so the switch happens before any script or fragment body runs; ``st.rerun()``
    in a callback turns the fragment's rerun into one full-app rerun (Streamlit ≥ 1.67).
    """
    service.use_replay([str(SAMPLE_RECORDING)], 1.0)
    st.rerun()


def status_strip(service: DashboardService) -> None:
    """Source, feed state, alert toasts and the offline/read-only banners (every 2 s)."""
    status = service.status()
    if status.source == Source.LIVE:
        src = "Live · Binance USD-M"
    else:
        names = md_escape(", ".join(Path(f).name for f in status.replay_files))
        src = f"Replay · {names} at {status.replay_speed:g}×, looped"
    if status.read_only:
        feed = "read-only"
    elif service.feed_starting():
        feed = "feed starting…"
    else:
        feed = "feed running" if status.feed_running else "feed stopped"
    st.caption(f"**{src}** · {feed} · database {md_escape(db_label(status.db_path))}")
    if status.source == Source.REPLAY:
        st.caption(LOOP_NOTE)
    views = page_views(service.views, service.settings.shared_views)
    show_new_alerts(views.alerts(status.db_path, status.generation))
    if status.read_only:
        st.info(md_escape(status.read_only), icon=":material/lock:")
    if status.source == Source.LIVE and status.probe.ok is False:
        st.warning(
            f"**Binance cannot be reached from this machine** ({md_escape(status.probe.detail)}). "
            "No live data will arrive. The bundled real recording (BTCUSDT + ETHUSDT "
            "futures trades) shows the dashboard working offline.",
            icon=":material/wifi_off:",
        )
        st.button(
            "Switch to replay",
            key="offline_replay",
            type="primary",
            icon=":material/play_circle:",
            on_click=switch_to_sample,
            args=(service,),
        )
    elif status.feed_error:
        st.error(md_escape(status.feed_error))
    if status.symbol_notes:  # e.g. a watched symbol delisted: its feed was stopped
        notes = "; ".join(f"{sym}: {why}" for sym, why in status.symbol_notes.items())
        st.warning(md_escape(f"Not collected: {notes}."), icon=":material/block:")


def main() -> None:
    st.set_page_config(
        page_title="Pairs desk · Binance USD-M",
        page_icon="📈",  # an emoji is drawn locally; a :material/ icon is fetched from Google
        layout="wide",
        initial_sidebar_state="expanded",
    )
    inject_css()
    tidy_browser()
    try:
        settings = AppSettings.load(_argv())
    except SettingsError as exc:
        st.error(f"Cannot start: {md_escape(str(exc))}")
        st.stop()
    service = get_service(repr(settings), settings)
    controls = render_sidebar(service, settings)
    params = controls.params
    title = f"{params.x} / {params.y}" if params else "Pairs desk"
    st.title(f"{title}" + (f" · {params.tf}" if params else ""))

    # Every fragment sits alone in a slot the full run draws (see ui.guard.fragment_slot), so a
    # fragment rerun right after a full run can never shift another element's position.
    @st.fragment(run_every=max(2.0, controls.refresh_s))
    def live_strip() -> None:
        with panel("Status"):
            status_strip(service)

    with fragment_slot("status"):
        live_strip()

    _page_notes(controls)
    _render_tabs(service, controls)


def _page_notes(controls: Controls) -> None:
    """URL fixes and the pair's problems. Always drawn (empty while all is well), so the page
    keeps one shape."""
    notes = st.container(key="page_notes")
    for note in controls.notes:
        notes.warning(md_escape(note), icon=":material/link:")
    if controls.params is None:
        notes.error(
            "Fix the pair in the sidebar to see the analytics: "
            + md_escape(" ".join(controls.problems))
        )


def _render_tabs(service: DashboardService, controls: Controls) -> None:
    """Each tab is drawn only while it is open (lazy tabs), inside its error boundary."""
    params = controls.params
    tabs = st.tabs(TABS, key="view", bind="query-params")
    live, watch, alerts, bt, multi, scan, health, exp = tabs
    if live.open:
        with live:
            if params is not None:
                _live_tab(service, params, controls)
    if watch.open:
        with watch:
            _watchlist_tab(service, controls)
    if alerts.open:
        with alerts, panel("Alerts"):
            render_alerts(service, params)
    if bt.open:
        with bt, panel("Backtest"):
            if params is not None:
                render_backtest(service, params)
    if multi.open:
        with multi, panel("Multi-symbol"):
            render_multi(service, params, params.tf if params else "1m")
    if scan.open:
        from ui.scan import render_scan

        with scan, panel("Scan"):
            render_scan(service)
    if health.open:
        with health:
            _health_tab(service, controls)
    if exp.open:
        with exp, panel("Exports"):
            if params is not None:
                render_exports(service, params)


def _live_tab(service: DashboardService, params: PairParams, controls: Controls) -> None:
    @st.fragment(run_every=controls.refresh_s)
    def live_panel() -> None:
        with panel("Live panel"):
            render_live(service, params, controls.price_mode)

    with fragment_slot("live"):
        live_panel()

    @st.fragment
    def stationarity_panel() -> None:
        with panel("Stationarity"):
            render_stationarity(service, params)

    with fragment_slot("stationarity"):
        stationarity_panel()


def _watchlist_tab(service: DashboardService, controls: Controls) -> None:
    params = controls.params

    @st.fragment(run_every=max(1.0, controls.refresh_s))
    def watchlist_panel() -> None:
        with panel("Watchlist"):
            render_watchlist(service, params, params.z if params else 2.0)

    with fragment_slot("watchlist"):
        watchlist_panel()


def _health_tab(service: DashboardService, controls: Controls) -> None:
    @st.fragment(run_every=max(2.0, controls.refresh_s))
    def health_panel() -> None:
        with panel("Feed health"):
            render_health(service)

    with fragment_slot("health"):
        health_panel()


main()
