"""The page, headless: ``streamlit.testing.v1.AppTest`` against a database of real trades.

The database holds the real BTCUSDT + ETHUSDT hftbacktest captures; the "exchange" is the
in-process replay server (a real local HTTP endpoint serving Binance's exchangeInfo for the
recording's symbols), and the feed is not started, so nothing here needs the internet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bench.harness import chart_cells, key_figures
from service import registry
from storage import open_writer
from storage.__main__ import import_file
from tests.conftest import STORAGE_REAL_DIR, wait_for, write_first_seconds

APP = str(Path(__file__).resolve().parents[1] / "app.py")
REAL = STORAGE_REAL_DIR
HFT = [
    REAL / "binance_usdm_ws_hftbacktest" / f for f in ("btcusdt_20240808.gz", "ethusdt_20240808.gz")
]
CHARTS = ["chart_price", "chart_zscore", "chart_spread", "chart_beta", "chart_corr", "chart_volume"]


def _close_service() -> None:
    if registry.SERVICE is not None:
        registry.SERVICE.close()


@pytest.fixture(scope="module")
def exchange():
    """A real local Binance look-alike (exchangeInfo lists BTCUSDT and ETHUSDT)."""
    from replay import start_replay_server

    server = start_replay_server(port=0, speed=1.0, loop=True)
    try:
        yield server
    finally:
        server.stop()


def _env(mp: pytest.MonkeyPatch, db: Path, rest_base: str) -> None:
    mp.setenv("DB_PATH", str(db))
    mp.delenv("DATABASE_URL", raising=False)
    mp.setenv("FEED_AUTOSTART", "0")
    mp.setenv("BINANCE_REST_BASE", rest_base)
    mp.setenv("BINANCE_WS_BASE", rest_base.replace("http", "ws"))
    mp.setenv("TICKS_KEEP_HOURS", "forever")  # recorded 2024 data: retention must keep it
    mp.setenv("BARS_1S_KEEP_DAYS", "forever")


@pytest.fixture(scope="module")
def full_env(tmp_path_factory, exchange) -> Iterator[Path]:
    """Env pointing the page at a database with the two real captures imported."""
    for f in HFT:
        if not f.is_file():
            pytest.skip(f"real recording {f} not found (shared data missing)")
    db = tmp_path_factory.mktemp("app") / "real.db"
    with open_writer(db) as w:
        for f in HFT:
            import_file(w, f)
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, db, exchange.rest_base)
        yield db
        _close_service()


@pytest.fixture
def short_env(tmp_path, exchange, storage_hft_trades) -> Iterator[Path]:
    """The first 20 seconds of the captures (21 one-second bars): analytics warming up."""
    db = tmp_path / "short.db"
    with open_writer(db) as w:
        write_first_seconds(w, storage_hft_trades, 20)
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, db, exchange.rest_base)
        yield db
        _close_service()


def run(query: dict[str, str] | None = None, *, timeout_s: float = 30) -> AppTest:
    """The page run once with ``query`` as its URL parameters; fails on any exception."""
    at = AppTest.from_file(APP, default_timeout=timeout_s)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """The live charts on the page, by key: their Plotly figure as sent to the browser."""
    return {c["key"]: json.loads(c["spec"]) for c in chart_cells(at) if c.get("spec")}


def chart_notes(at: AppTest) -> dict[str, str]:
    """The live charts shown as a note instead (warming up, or failed), by key."""
    return {c["key"]: c["note"] for c in chart_cells(at) if not c.get("spec")}


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error", "success")
        for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


# ------------------------------------------------------------------------- live tab
def test_live_panel_renders_every_chart_and_key_figure(full_env):
    at = run()
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "BTCUSDT / ETHUSDT · 1s"
    figures = key_figures(at)
    assert list(figures) == [
        "BTCUSDT",
        "ETHUSDT",
        "β",
        "α",
        "R²",
        "z-score",
        "Correlation",
        "Half-life",
        "Bars",
    ]
    assert figures["BTCUSDT"] == "61,659.80" and figures["ETHUSDT"] == "2681.38"
    assert figures["Bars"] == "345" and figures["z-score"] != "—"
    got = charts(at)
    assert list(got) == CHARTS
    for key, fig in got.items():
        assert fig["layout"]["uirevision"] == f"{key[6:]}:BTCUSDT:ETHUSDT:1s"
        assert fig["data"], key
    assert "**Last update** `00:00:00.000` UTC" in texts(at)  # newest 1s bar (ETHUSDT)
    assert "Run ADF / Engle–Granger" in [b.label for b in at.button]


def test_stationarity_runs_on_demand(full_env):
    at = run()
    at.button(key="run_adf").click().run()
    labels = {m.label: m.value for m in at.metric}
    for name in (
        "Engle–Granger p",
        "EG statistic",
        "ADF p (spread)",
        "ADF statistic",
        "Half-life",
        "Hurst",
    ):
        assert name in labels
    assert 0.0 <= float(labels["Engle–Granger p"]) <= 1.0
    assert "p-value below 0.05" in texts(at)
    crit = at.dataframe[0].value
    assert list(crit["level"]) == ["1%", "5%", "10%"]


def test_settings_come_from_the_url_and_survive_reruns(full_env):
    at = run(
        {
            "x": "ETHUSDT",
            "y": "BTCUSDT",
            "tf": "1m",
            "window": "10",
            "method": "Kalman",
            "z": "1.5",
            "refresh": "2",
            "prices": "Candles",
            "bars": "300",
        }
    )
    assert at.title[0].value == "ETHUSDT / BTCUSDT · 1m"
    assert at.number_input(key="window").value == 10
    assert at.selectbox(key="method").value == "Kalman"
    assert at.select_slider(key="refresh").value == "2"
    at.run()  # a rerun keeps them
    assert at.number_input(key="z").value == 1.5
    assert at.query_params["tf"] in ("1m", ["1m"])
    price = charts(at)["chart_price"]
    assert [t["type"] for t in price["data"]] == ["candlestick", "candlestick"]


# ------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "x, y, message",
    [
        ("BTCUSDT", "BTCUSDT", "X and Y are both BTCUSDT"),
        ("BTCUSDT", "btcusdt", "X and Y are both BTCUSDT"),
        ("SOLUSDT", "ETHUSDT", "SOLUSDT is not a trading USD-M perpetual on Binance"),
        ("BTC-USDT", "ETHUSDT", "is not a symbol"),
        ("BTCUSDT", "", "enter a symbol"),
    ],
)
def test_invalid_or_duplicate_legs_are_refused_with_a_message(full_env, x, y, message):
    at = run()
    # The symbol list is read in the background: wait for it (a page run never does).
    wait_for(lambda: registry.SERVICE.symbol_check_note() is None, 10, "the symbol list")
    at.text_input(key="x").set_value(x)
    at.text_input(key="y").set_value(y)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(message in e for e in errors), errors
    assert any(e.startswith("Fix the pair in the sidebar") for e in errors)
    assert not charts(at) and not at.metric and not key_figures(at)


def test_warm_up_messages_with_too_little_data(short_env):
    at = run()
    assert not at.error, [e.value for e in at.error]
    assert chart_notes(at) == {
        "chart_zscore": "Z-score: waiting for data — 21 of 61 bars.",
        "chart_spread": "Spread: waiting for data — 21 of 61 bars.",
        "chart_beta": "Hedge ratio: waiting for data — 21 of 61 bars.",
        "chart_corr": "Rolling correlation: waiting for data — 21 of 61 bars.",
    }
    assert list(charts(at)) == ["chart_price", "chart_volume"]  # these need one bar only
    assert [c["key"] for c in chart_cells(at)] == CHARTS  # the grid keeps its order
    assert key_figures(at)["z-score"] == "—"
    at.button(key="run_adf").click().run()
    assert any("Stationarity tests: waiting for data — 21 of 30 bars" in i.value for i in at.info)


# ------------------------------------------------------------------------- other tabs
def test_alerts_tab_adds_a_rule(full_env):
    at = run({"view": "Alerts"})
    assert "No rules yet" in texts(at)
    at.selectbox(key="rule_metric").set_value("abs_zscore")
    at.selectbox(key="rule_op").set_value(">=")
    at.number_input(key="rule_threshold").set_value(2.5)
    at.button[[b.label for b in at.button].index("Add rule")].click().run()
    assert not at.exception
    assert any("Rule" in s.value and "added" in s.value for s in at.success)
    rules = at.dataframe[0].value
    assert "|z-score| >= 2.5 (BTCUSDT/ETHUSDT 1s)" in list(rules["rule"])
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["Alert log (CSV)", "Deliveries (CSV)"]


def test_backtest_tab_shows_equity_and_trades(full_env):
    at = run({"view": "Backtest", "window": "30"})
    labels = [m.label for m in at.metric]
    assert labels == [
        "Total P&L",
        "Trades",
        "Win rate",
        "Max drawdown",
        "Sharpe / bar",
        "Fees paid",
        "Skipped (liquidity)",
        "Funding P&L",
    ]
    assert len(at.get("plotly_chart")) == 1
    assert [d.label for d in at.get("download_button")] == ["Trades (CSV)", "Equity curve (CSV)"]


def test_multi_symbol_tab_shows_heatmap_and_scanner(full_env):
    at = run({"view": "Multi-symbol"})
    assert at.multiselect(key="multi_syms").value == ["BTCUSDT", "ETHUSDT"]
    assert len(at.get("plotly_chart")) == 1  # the heatmap
    at.button(key="scan_go").click().run()
    table = at.dataframe[0].value
    assert list(table[["x", "y"]].iloc[0]) == ["BTCUSDT", "ETHUSDT"]
    assert 0.0 <= table["coint_pvalue"].iloc[0] <= 1.0


def test_feed_health_and_exports_tabs(full_env):
    at = run({"view": "Feed health"})
    assert "No feed is running" in texts(at)
    at = run({"view": "Exports"})
    names = [d.label for d in at.get("download_button")]
    assert names == [
        "Bars of BTCUSDT",
        "Bars of ETHUSDT",
        "Analytics table",
        "Per-bar statistics",
        "Alert log",
    ]


# ------------------------------------------------------------------------- offline
def test_offline_live_source_says_so_and_offers_the_replay(tmp_path):
    db = tmp_path / "offline.db"
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, db, "http://127.0.0.1:9")  # nothing listens on port 9: "Binance" is down
        try:
            at = run()
            # The page never waits for the exchange: a run after the probe's answer shows it.
            wait_for(lambda: registry.SERVICE.probe.ok is False, 10, "the offline probe")
            at.run()
            warnings = [w.value for w in at.warning]
            assert any("Binance cannot be reached" in w for w in warnings), warnings
            at.button(key="offline_replay").click().run()
            assert not at.exception
            shown = texts(at).replace("\\", "")  # file names are shown Markdown-escaped
            assert "Replay · btcusdt_ethusdt_20240808_trades.txt.gz" in shown
            assert registry.SERVICE.source == "replay"
        finally:
            _close_service()


def test_a_failing_panel_shows_its_error_and_the_page_lives():
    def page():
        import streamlit as st

        from ui.guard import panel

        with panel("Broken chart"):
            raise RuntimeError("boom")
        with panel("Missing data"):
            raise ValueError("x has 3 non-finite value(s)")
        st.write("the rest of the page")

    at = AppTest.from_function(page, default_timeout=30).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors[0].startswith("Broken chart could not be shown (RuntimeError: boom)")
    assert errors[1] == "Missing data: x has 3 non-finite value(s)"
    assert at.markdown[-1].value == "the rest of the page"
