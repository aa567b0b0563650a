"""The Watchlist tab: every watched pair at a glance, live, and the alert sinks.

Figures come from ``service.watchlist.watch_rows``: one snapshot per pair and new bar, shared
by every session and the alert monitor (``PageViews.board``), so a refresh of twenty pairs is
cheap. One click on a pair's pill (under the table, in the table's order) opens that pair in
the Live panel.
"""

from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from service.compute import METHODS
from service.delivery import SinkConfigError, send_test, sinks_from_frame
from service.desk import DashboardService
from service.secretfile import process_environ
from service.watch import PairKey
from service.watchlist import (
    add_sink_on,
    parse_pair,
    sink_from_input,
    sinks_table,
    unwatch_on,
    watch_on,
    watch_rows,
)
from storage import TIMEFRAMES_S, StorageError
from ui.funding import with_funding
from ui.guard import md_escape, panel
from ui.state import page_views, session_reader

TABLE_KEY = "watchlist_table"
#: The pills that open a pair in the Live panel (one per row, the table's order).
OPEN_KEY = "watchlist_open"
#: Rows are re-sorted by |z| at most this often (seconds); in between they keep their places,
#: so neither a row nor its pill moves under the mouse.
RESORT_S = 30.0
_ORDER_KEY = "_watchlist_order"
#: The sidebar's window bounds: a watched pair's window outside them opens clipped.
LIVE_WINDOW_MIN, LIVE_WINDOW_MAX = 10, 1000
#: Above this multiple of the band a z-score is shown red; past the band, amber.
FAR_PAST_BAND = 1.5


def _z_style(ratio: float) -> str:
    if not math.isfinite(ratio) or ratio < 1.0:
        return ""
    if ratio < FAR_PAST_BAND:
        return "background-color: #fde68a; color: #111"
    return "background-color: #fca5a5; color: #111; font-weight: 600"


def _open_in_live(rows: pd.DataFrame) -> None:
    """Pill callback: show the picked pair in the Live panel.

    It runs before the rerun, so the sidebar's widgets may still be set; the pills sit in a
    fragment, and ``st.rerun()`` in a callback makes the coming rerun a full one (the Live tab
    and the sidebar are outside the fragment). The pill is picked by the pair's id, not by a
    position, so a re-sort between the render and the click cannot open a neighbour. The pill
    is cleared, so a later click on the same pair opens it again.
    """
    pid = st.session_state.get(OPEN_KEY)
    st.session_state[OPEN_KEY] = None
    found = rows[rows["pair_id"] == pid]
    if pid is None or found.empty:
        return
    row = found.iloc[0]
    x, y = str(row["pair"]).split("/")
    st.session_state["x"], st.session_state["y"] = x, y
    st.session_state["tf"] = row["tf"]
    st.session_state["window"] = min(max(int(row["window"]), LIVE_WINDOW_MIN), LIVE_WINDOW_MAX)
    labels = {v: k for k, v in _method_choices().items()}
    st.session_state["method"] = labels.get(row["method"], "OLS")
    st.session_state["view"] = "Live"
    st.rerun()


def _open_pills(rows: pd.DataFrame) -> None:
    """One pill per row, in the table's order: one click opens that pair in the Live panel.

    Why pills and not a selection on the grid: Streamlit 1.67's canvas grid ignores a cell
    click whose pointer arrives and presses before it re-rendered after the mouse moved
    elsewhere, so a session's first click was often dropped (docs/alerts.md, "One click opens
    a pair"). A pill is a real button whose click always reaches the server.
    """
    labels = {
        int(r.pair_id): f"{r.pair} · {r.tf} · w{r.window} · {r.method}" for r in rows.itertuples()
    }
    st.pills(
        "Open in the Live panel",
        list(labels),
        format_func=labels.get,
        key=OPEN_KEY,
        on_change=_open_in_live,
        args=(rows,),
    )


def _stable_order(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (sorted by |z|) in the order this session last showed them, re-sorted every
    ``RESORT_S`` seconds or when the watched pairs change. The pills follow this order: with
    rows re-sorted on every refresh, they would move under the mouse."""
    ids = rows["pair_id"].tolist()
    kept = st.session_state.get(_ORDER_KEY)
    now = time.monotonic()
    if kept is None or sorted(kept[1]) != sorted(ids) or now - kept[0] >= RESORT_S:
        st.session_state[_ORDER_KEY] = (now, ids)
        return rows
    place = {pid: i for i, pid in enumerate(kept[1])}
    return rows.sort_values("pair_id", key=lambda s: s.map(place)).reset_index(drop=True)


def _method_choices() -> dict[str, str]:
    from ui.sidebar import METHOD_CHOICES

    return METHOD_CHOICES


def render_watchlist(service: DashboardService, params, band_z: float = 2.0) -> None:
    """The whole tab (the table part is refreshed by the caller's fragment)."""
    status = service.status()
    with panel("Add to the watchlist"):
        _add_forms(service, params, bool(status.read_only))
    with panel("Watched pairs"):
        views = page_views(service.views, service.settings.shared_views)
        board = views.board(status.db_path, status.generation)
        with session_reader(status.db_path, status.generation) as lease:
            rows = watch_rows(board, lease.reader, band_z, status.symbol_notes)
        rows = with_funding(service, rows)
        if not rows.empty:
            rows = _stable_order(rows)
        _pairs_table(service, rows, band_z, bool(status.read_only))
    st.subheader("Alert sinks")
    with panel("Alert sinks"):
        _sinks(service, bool(status.read_only))


def _add_forms(service: DashboardService, params, read_only: bool) -> None:
    if read_only:
        st.info("Read-only: another process writes this database; manage the watchlist there.")
        return
    if params is not None:
        live = PairKey(params.x, params.y, params.tf, params.window, params.method)
        if st.button(f"Watch the Live pair ({live.describe()})", key="watch_live", icon="➕"):
            pid = watch_on(service, live)
            st.success(f"Watching {live.describe()} (id {pid}).")
    with st.form("watch_form", border=True):
        c = st.columns([2, 1, 1, 1])
        text = c[0].text_input("Pair X/Y", placeholder="BTCUSDT/ETHUSDT", key="watch_pair")
        tf = c[1].selectbox("Timeframe", list(TIMEFRAMES_S), key="watch_tf")
        window = c[2].number_input("Window", 2, 1000, 60, key="watch_window")
        method = c[3].selectbox(
            "Method", list(METHODS), key="watch_method", format_func=METHODS.get
        )
        if st.form_submit_button("Watch", type="primary"):
            try:
                x, y = parse_pair(text)
                problem = service.check_symbol(x) or service.check_symbol(y)
                if problem:
                    raise ValueError(problem)
                key = PairKey(x, y, tf, int(window), method)
                pid = watch_on(service, key)
            except (ValueError, StorageError) as exc:
                st.error(f"Not added: {md_escape(str(exc))}")
            else:
                st.success(f"Watching {md_escape(key.describe())} (id {pid}).")


def _pairs_table(
    service: DashboardService, rows: pd.DataFrame, band_z: float, read_only: bool
) -> None:
    if rows.empty:
        st.info("No pair is watched yet. Add the Live pair or type one above.")
        return
    st.caption(
        f"Newest closed bar of each pair, sorted by |z| (every {RESORT_S:g} s; rows keep their "
        f"places in between). Amber: past the ±{band_z:g} band; red: past {FAR_PAST_BAND:g}× "
        "the band. Click a pair below the table to open it in the Live panel."
    )
    shown = rows.drop(columns=["pair_id"])
    styled = shown.style.apply(lambda _: [_z_style(r) for r in rows["past_band"]], subset=["z"])
    styled = styled.format(
        {"z": "{:+.2f}", "beta": "{:.4g}", "corr": "{:.2f}", "half_life": "{:.1f}"}
        | {"funding_x": "{:+.4f} %", "funding_y": "{:+.4f} %"},
        na_rep="–",
    )
    # Display only: no selection on the canvas grid (it dropped clicks, see _open_pills). The
    # container's key names the table in the page (tests find it by its ``st-key-`` class).
    st.container(key=TABLE_KEY).dataframe(
        styled,
        hide_index=True,
        width="stretch",
        column_order=[
            "pair",
            "tf",
            "window",
            "method",
            "z",
            "z_spark",
            "beta",
            "corr",
            "half_life",
            "bars",
            "funding_x",
            "funding_y",
            "next_funding",
            "note",
        ],
        column_config={
            "z": st.column_config.Column("last z"),
            "z_spark": st.column_config.LineChartColumn("z (recent bars)", width="medium"),
            "beta": st.column_config.Column("β"),
            "half_life": st.column_config.Column("half-life (bars)"),
            "bars": st.column_config.NumberColumn("bars", help="closed bars read"),
            "funding_x": st.column_config.Column(
                "funding X", help="X's current funding rate per settlement (longs pay if > 0)"
            ),
            "funding_y": st.column_config.Column("funding Y", help="Y's current funding rate"),
            "next_funding": st.column_config.Column(
                "next funding", help="The next funding time of either leg (UTC)"
            ),
        },
    )
    _open_pills(rows)
    if read_only:
        return
    c1, c2 = st.columns([3, 1])
    labels = {int(r.pair_id): f"{r.pair} {r.tf} w{r.window} {r.method}" for r in rows.itertuples()}
    pid = c1.selectbox("Stop watching", list(labels), format_func=labels.get, key="unwatch_id")
    if c2.button("Remove", key="unwatch_go") and pid is not None:
        unwatch_on(service, int(pid))
        st.rerun()


def _sinks(service: DashboardService, read_only: bool) -> None:
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        table = sinks_table(lease.reader)
        sinks = sinks_from_frame(lease.reader.alert_sinks())
    st.caption(
        "Every fired alert is stored first, then sent to every enabled sink by a background "
        "worker, with retries. Secrets stay in environment variables or a secrets file "
        "outside the repository (SECRETS_FILE): a sink stores the variable's name, and URLs "
        "are shown masked."
    )
    problem = process_environ()[1]  # a refused secrets file, or one others may read
    if problem:
        st.warning(md_escape(problem), icon=":material/key:")
    if table.empty:
        st.info("No sink yet: alerts are only logged here.")
    else:
        st.dataframe(table, hide_index=True, width="stretch", key="sinks_table")
        c1, c2 = st.columns([3, 1])
        names = [s.name for s in sinks]
        name = c1.selectbox("Sink", names, key="sink_test_name")
        if c2.button("Send test message", key="sink_test_go"):
            sink = next(s for s in sinks if s.name == name)
            out = send_test(sink, timeout_s=5.0)
            if out.ok:
                st.success(f"Test message delivered to {md_escape(sink.name)}.")
            else:
                st.error(md_escape(f"Test message to {sink.name} failed: {out.error}"))
    if read_only:
        return
    with st.form("sink_form", border=True):
        c = st.columns([1.2, 1, 2, 1])
        name = c[0].text_input("Name", key="sink_name", max_chars=40)
        kind = c[1].selectbox("Kind", ["webhook", "slack", "discord", "telegram"], key="sink_kind")
        where = c[2].text_input(
            "URL, or $VARIABLE holding it (telegram: $VARIABLE of the bot token)",
            key="sink_where",
        )
        chat = c[3].text_input("Telegram chat id", key="sink_chat")
        if st.form_submit_button("Save sink"):
            try:
                var = where.strip()[1:] if where.strip().startswith("$") else ""
                sink = sink_from_input(
                    name,
                    kind,
                    url="" if var or kind == "telegram" else where.strip(),
                    url_env=var if kind != "telegram" else "",
                    token_env=var if kind == "telegram" else "",
                    chat_id=chat,
                )
                sid = add_sink_on(service, sink)
            except (SinkConfigError, StorageError, ValueError) as exc:
                st.error(f"Sink not saved: {md_escape(str(exc))}")
            else:
                st.success(f"Sink {md_escape(sink.name)} saved (id {sid}).")
