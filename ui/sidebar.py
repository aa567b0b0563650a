"""The sidebar: source and feed controls, the pair, and the analysis settings.

Pair and analysis settings are widgets bound to the URL query string (``bind="query-params"``,
keys ``x, y, tf, window, method, z, refresh, prices, bars``), so they survive reruns and a
link reproduces the view. The source and the feed are process-wide (one service per process)
and are not in the URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from service.compute import PairParams
from service.desk import DashboardService, Source
from service.settings import SAMPLE_RECORDING, AppSettings
from ui.guard import db_label, md_escape
from ui.recordings import (
    Checked,
    check_recording_path,
    checked_upload,
    save_upload,
    validate_recording,
)
from ui.urlparams import Choice, Number, normalise

__all__ = ["URL_SPECS", "check_recording_path", "render_sidebar", "save_upload"]

TIMEFRAMES = ["1s", "1m", "5m"]
#: Widget options are what the URL carries, so they are short, URL-safe strings.
REFRESH_CHOICES = ["0.5", "1", "2", "3", "5", "10"]
METHOD_CHOICES = {"OLS": "ols", "Kalman": "kalman", "Huber": "huber", "Theil-Sen": "theilsen"}
SPEED_CHOICES = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
BARS_CHOICES = [120, 300, 600, 1000, 1500]
PRICE_MODES = {"Normalised": "normalised", "Dual axis": "dual", "Candles": "candles"}
RECORDING_EXTS = ("gz", "txt", "json", "jsonl", "ndjson", "log", "0")
DEFAULTS = {
    "tf": "1s",
    "window": 60,
    "method": "OLS",
    "z": 2.0,
    "refresh": "0.5",
    "prices": "Normalised",
    "bars": 600,
}
#: How each URL parameter is read (see ui.urlparams): keys of fixed choices case-insensitively.
URL_SPECS = {
    "tf": Choice({t: t for t in TIMEFRAMES}, DEFAULTS["tf"], fold=False),  # 1M is a month
    "method": Choice(METHOD_CHOICES, DEFAULTS["method"]),
    "prices": Choice(PRICE_MODES, DEFAULTS["prices"]),
    "window": Number(10, 1000, DEFAULTS["window"], integer=True),
    "z": Number(0.5, 6.0, DEFAULTS["z"]),
    "refresh": Number(0.5, 10, 0.5, options=tuple(float(c) for c in REFRESH_CHOICES), as_text=True),
    "bars": Number(120, 1500, DEFAULTS["bars"], integer=True, options=tuple(BARS_CHOICES)),
}
_URL_NOTES = "_url_notes"
_UPLOADS = "_checked_uploads"
_REPLAY_ERROR = "_replay_error"


@dataclass(frozen=True, slots=True)
class Controls:
    """What the sidebar decided. ``params`` is None while the pair is invalid (``problems``)."""

    params: PairParams | None
    problems: tuple[str, ...] = ()
    refresh_s: float = 0.5
    price_mode: str = "normalised"
    notes: tuple[str, ...] = field(default_factory=tuple)


def _switch_source(service: DashboardService) -> None:
    choice = st.session_state.get("source_choice")
    if choice == "Replay" and service.source != Source.REPLAY:
        service.use_replay()
    elif choice == "Live" and service.source != Source.LIVE:
        service.use_live()


def _source_controls(service: DashboardService, settings: AppSettings) -> None:
    sb = st.sidebar
    status = service.status()
    st.session_state["source_choice"] = "Replay" if status.source == Source.REPLAY else "Live"
    sb.segmented_control(
        "Source",
        ["Live", "Replay"],
        key="source_choice",
        required=True,
        on_change=_switch_source,
        args=(service,),
        help="Live: Binance USD-M WebSocket. Replay: a recorded session served by a local "
        "Binance look-alike, so the same client code runs.",
    )
    if status.source == Source.REPLAY:
        _replay_controls(service, settings)
    c1, c2 = sb.columns(2)
    running = status.feed_running
    c1.button(
        "Start feed",
        key="feed_start",
        icon=":material/play_arrow:",
        disabled=running or bool(status.read_only),
        on_click=service.start_feed,
        type="primary",
        width="stretch",
    )
    c2.button(
        "Stop feed",
        key="feed_stop",
        icon=":material/stop:",
        disabled=not running,
        on_click=service.stop_feed,
        width="stretch",
    )
    if status.feed_error:
        sb.error(md_escape(status.feed_error))


def _replay_controls(service: DashboardService, settings: AppSettings) -> None:
    sb = st.sidebar
    names = md_escape(", ".join(Path(f).name for f in service.replay_files))
    sb.caption(
        f"Replaying **{names}** at {service.replay_speed:g}×, looped, "
        f"into {md_escape(db_label(service.db_path))} (a fresh file per replay)."
    )
    with sb.expander("Replay another recording", expanded=False):
        kind = st.radio(
            "Recording",
            ["Bundled sample", "Upload a file", "File on this machine"],
            key="replay_kind",
            horizontal=False,
        )
        speed = st.select_slider(
            "Speed",
            SPEED_CHOICES,
            value=service.replay_speed if service.replay_speed in SPEED_CHOICES else 1.0,
            key="replay_speed",
            format_func=lambda v: f"{v:g}×",
        )
        path: str | None = None
        if kind == "Bundled sample":
            path = str(SAMPLE_RECORDING)
            st.caption(
                "Real Binance USD-M BTCUSDT + ETHUSDT trades, 2024-08-08 23:54–00:00 "
                "UTC (hftbacktest capture), looped."
            )
        elif kind == "Upload a file":
            up = st.file_uploader(
                f"Recording (≤ {settings.max_upload_mb:g} MB)",
                type=list(RECORDING_EXTS),
                key="replay_upload",
                max_upload_size=int(settings.max_upload_mb),
                help="Capture lines (`<ns> {json}`), WebSocket JSON lines or collector NDJSON; "
                "gzip or plain text.",
            )
            if up is not None:
                cache = st.session_state.setdefault(_UPLOADS, {})
                checked: Checked = checked_upload(cache, up.file_id, up.name, up.getvalue, settings)
                path = checked.path
                if checked.error:
                    st.error(md_escape(checked.error))
        else:
            raw = st.text_input("Path", key="replay_path", placeholder="/data/capture.gz")
            if raw:
                try:
                    path = check_recording_path(raw, settings)
                except ValueError as exc:
                    st.error(md_escape(str(exc)))
        st.button(
            "Start this replay",
            key="replay_go",
            icon=":material/replay:",
            disabled=path is None,
            width="stretch",
            on_click=_start_replay,
            args=(service, path, speed),
        )
        error = st.session_state.pop(_REPLAY_ERROR, None)
        if error:
            st.error(md_escape(error))


def _start_replay(service: DashboardService, path: str | None, speed: float) -> None:
    """The "Start this replay" button (a callback: it acts before the page reruns)."""
    try:
        validate_recording(path)
    except ValueError as exc:
        st.session_state[_REPLAY_ERROR] = str(exc)
    else:
        service.use_replay([path], speed)


def url_notes() -> tuple[str, ...]:
    """Read the URL once per session (before the widgets): fix what the widgets cannot use.

    Each fixed value is put in the widget's state, so the widget shows it; the notes say
    which parameter was replaced by what (plain text: they repeat the user's value).
    """
    notes = st.session_state.get(_URL_NOTES)
    if notes is None:
        raw = {k: st.query_params.get(k) for k in URL_SPECS}
        fixes = normalise({k: v for k, v in raw.items() if v is not None}, URL_SPECS)
        for fix in fixes:
            st.session_state[fix.param] = fix.used
        notes = st.session_state[_URL_NOTES] = tuple(f.note() for f in fixes)
    return notes


@dataclass(frozen=True, slots=True)
class _Choices:
    """The sidebar's Pair, Analysis and Display widgets as read (symbols not yet checked)."""

    x: str
    y: str
    tf: str
    window: int
    method: str
    z: float
    refresh_s: float
    price_mode: str
    bars: int


def _pair_controls(default_x: str, default_y: str) -> _Choices:
    """The Pair, Analysis and Display sections, in that order."""
    return _Choices(
        **_pair_section(default_x, default_y), **_analysis_section(), **_display_section()
    )


def _pair_section(default_x: str, default_y: str) -> dict[str, Any]:
    sb = st.sidebar
    sb.subheader("Pair")
    c1, c2 = sb.columns(2)
    x = c1.text_input(
        "Symbol X",
        value=default_x,
        key="x",
        bind="query-params",
        max_chars=30,
        help="Dependent leg: x = α + β·y + spread.",
    )
    y = c2.text_input(
        "Symbol Y",
        value=default_y,
        key="y",
        bind="query-params",
        max_chars=30,
        help="Hedge leg: β units of Y hedge one unit of X.",
    )
    tf = sb.segmented_control(
        "Timeframe",
        TIMEFRAMES,
        default=DEFAULTS["tf"],
        key="tf",
        bind="query-params",
        required=True,
        help="Bar length. 1s bars are built from trades as they arrive.",
    )
    return {"x": x, "y": y, "tf": tf or DEFAULTS["tf"]}


def _analysis_section() -> dict[str, Any]:
    sb = st.sidebar
    sb.subheader("Analysis")
    window = sb.number_input(
        "Rolling window (bars)",
        min_value=10,
        max_value=1000,
        value=DEFAULTS["window"],
        step=10,
        key="window",
        bind="query-params",
        help="Bars per regression, z-score and correlation window.",
    )
    method = sb.selectbox(
        "Hedge ratio",
        list(METHOD_CHOICES),
        key="method",
        bind="query-params",
        help="OLS: rolling least squares. Kalman: time-varying β, filtered. "
        "Huber / Theil–Sen: robust to outlier prints.",
    )
    z = sb.number_input(
        "Z-score alert band ±",
        min_value=0.5,
        max_value=6.0,
        value=DEFAULTS["z"],
        step=0.1,
        format="%.1f",
        key="z",
        bind="query-params",
        help="Drawn on the z-score chart; the default threshold of new rules.",
    )
    return {
        "window": int(window),
        "method": METHOD_CHOICES.get(method or "", "ols"),
        "z": float(z),
    }


def _display_section() -> dict[str, Any]:
    sb = st.sidebar
    sb.subheader("Display")
    refresh = sb.select_slider(
        "Refresh every (seconds)",
        REFRESH_CHOICES,
        value=DEFAULTS["refresh"],
        key="refresh",
        bind="query-params",
        help="How often the live panel redraws (only it reruns).",
    )
    prices = sb.segmented_control(
        "Prices",
        list(PRICE_MODES),
        default=DEFAULTS["prices"],
        key="prices",
        bind="query-params",
        required=True,
    )
    bars = sb.select_slider(
        "Bars shown",
        BARS_CHOICES,
        value=DEFAULTS["bars"],
        key="bars",
        bind="query-params",
        help="Bars drawn (each trace is capped at 1,000 points).",
    )
    return {
        "refresh_s": float(refresh or DEFAULTS["refresh"]),
        "price_mode": PRICE_MODES.get(prices or "", "normalised"),
        "bars": int(bars),
    }


def check_pair(service: DashboardService, x: str, y: str) -> list[str]:
    """Problems with the pair, one sentence each (empty when it can be shown)."""
    xs, ys = x.strip().upper(), y.strip().upper()
    if xs and xs == ys:
        return [f"X and Y are both {xs}: choose two different symbols."]
    problems = []
    for label, sym in (("X", x), ("Y", y)):
        reason = service.check_symbol(sym)
        if reason:
            problems.append(f"Symbol {label}: {reason}.")
    return problems


def render_sidebar(service: DashboardService, settings: AppSettings) -> Controls:
    """Draw the sidebar; return the validated controls."""
    sb = st.sidebar
    sb.header("Pairs desk")
    _source_controls(service, settings)
    notes = url_notes()
    c = _pair_controls(*service.default_pair())
    problems = check_pair(service, c.x, c.y)
    for p in problems:
        sb.error(md_escape(p))
    note = service.symbol_check_note()  # never waits for the network
    if not problems and note:
        sb.caption(note)
    if problems:
        return Controls(None, tuple(problems), c.refresh_s, c.price_mode, notes)
    params = PairParams(
        x=c.x.strip().upper(),
        y=c.y.strip().upper(),
        tf=c.tf,
        window=c.window,
        method=c.method,
        z=c.z,
        display_bars=c.bars,
    )
    service.watch([params.x, params.y])
    return Controls(params, (), c.refresh_s, c.price_mode, notes)
