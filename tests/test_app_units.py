"""Dashboard parts without a page: settings, alert rules and monitor, charts, exports, service.

Real SQLite files in ``tmp_path``, real recorded trades, real threads; no mocks of our code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service import exports
from service.alerts import (
    AlertMonitor,
    Rule,
    RuleState,
    evaluate,
    rules_from_frame,
    validate_rule,
)
from service.compute import TABLE_COLUMNS, PairParams, compute_pair, export_table
from service.desk import DashboardService, Source, acquire_service
from service.settings import SAMPLE_RECORDING, AppSettings, SettingsError, replay_db_path
from storage import IdKind, StorageError, Tick, Writer, open_reader, open_writer
from storage.__main__ import import_file
from tests.conftest import STORAGE_REAL_DIR, wait_for
from ui import charts
from ui.sidebar import check_recording_path, save_upload

REAL = STORAGE_REAL_DIR
HFT = [
    REAL / "binance_usdm_ws_hftbacktest" / f for f in ("btcusdt_20240808.gz", "ethusdt_20240808.gz")
]
QUIET_ENV = {"TICKS_KEEP_HOURS": "forever", "BARS_1S_KEEP_DAYS": "forever"}


@pytest.fixture(scope="module")
def real_db(tmp_path_factory) -> str:
    """The two real hftbacktest captures (BTCUSDT + ETHUSDT, 5 min 44 s) imported."""
    for f in HFT:
        if not f.is_file():
            pytest.skip(f"real recording {f} not found (shared data missing)")
    path = tmp_path_factory.mktemp("real") / "real.db"
    with open_writer(path) as w:
        for f in HFT:
            import_file(w, f)
    return str(path)


# ------------------------------------------------------------------------- settings
def test_settings_from_flags_and_environment(tmp_path):
    db = tmp_path / "x.db"
    s = AppSettings.load(
        ["--replay", str(SAMPLE_RECORDING), "--speed", "5"],
        {
            "DB_PATH": str(db),
            "BINANCE_WS_BASE": "ws://127.0.0.1:1/",
            "BINANCE_REST_BASE": "http://127.0.0.1:1",
        },
    )
    assert s.start_in_replay and s.replay_files == (str(SAMPLE_RECORDING),)
    assert s.replay_speed == 5.0
    assert s.db_path == str(db) and s.replay_db_path == str(tmp_path / "x.replay.db")
    assert s.ws_base == "ws://127.0.0.1:1" and s.rest_base == "http://127.0.0.1:1"
    env = AppSettings.load(
        [], {"REPLAY_FILES": str(SAMPLE_RECORDING), "REPLAY_SPEED": "2", "FEED_AUTOSTART": "0"}
    )
    assert env.start_in_replay and env.replay_speed == 2.0 and not env.autostart
    assert not AppSettings.load([], {}).start_in_replay


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--replay", "/nonexistent/file.gz"], {}, "does not exist"),
        (["--speed", "fast"], {}, "not a number"),
        (["--speed", "-1"], {}, "expected a number"),
        (["--bogus"], {}, "unknown dashboard flag"),
        ([], {"FEED_AUTOSTART": "maybe"}, "FEED_AUTOSTART"),
    ],
)
def test_settings_refuse_bad_input_with_a_message(argv, env, message):
    with pytest.raises(SettingsError, match=message):
        AppSettings.load(argv, env)


def test_replay_database_sits_beside_the_live_one():
    assert replay_db_path("data.db") == "data.replay.db"
    assert replay_db_path("/var/lib/qd/live.sqlite") == "/var/lib/qd/live.replay.sqlite"


# ------------------------------------------------------------------------- alert rules
def _rule(op=">", threshold=2.0, cooldown_s=10.0) -> Rule:
    return Rule(
        rule_id=1,
        name="r",
        x="AUSDT",
        y="BUSDT",
        tf="1s",
        metric="zscore",
        op=op,
        threshold=threshold,
        cooldown_s=cooldown_s,
    )


def test_rule_fires_on_crossing_not_while_it_stays_true():
    rule, state = _rule(), RuleState()
    t = np.arange(0, 12_000, 1000)
    v = np.array([0, 1, 3, 3, 3, 1, 0, 1, 1, 1, 1, 1], float)
    assert evaluate(rule, t[:1], v[:1], state) == []  # first sight: baseline only
    fired = evaluate(rule, t, v, state)
    assert [(f.bar_time_ms, f.value) for f in fired] == [(2000, 3.0)]
    assert state.last_bar_ms == 11_000
    assert evaluate(rule, t, v, state) == []  # the same bars again: nothing new


def test_rule_cooldown_is_in_market_time():
    rule, state = _rule(cooldown_s=5.0), RuleState()
    t = np.arange(0, 20_000, 1000)
    v = np.zeros(20)
    v[[3, 5, 9]] = 3.0  # crossings at 3 s, 5 s (within 5 s of 3 s) and 9 s
    evaluate(rule, t[:1], v[:1], state)
    fired = evaluate(rule, t, v, state)
    assert [f.bar_time_ms for f in fired] == [3000, 9000]


def test_warm_up_nan_never_fires_and_counts_as_false():
    rule, state = _rule(op="<", threshold=-2.0), RuleState()
    t = np.arange(0, 5000, 1000)
    v = np.array([np.nan, np.nan, -3.0, np.nan, -3.0])
    evaluate(rule, t[:1], v[:1], state)
    assert [f.bar_time_ms for f in evaluate(rule, t, v, state)] == [2000]  # cooldown 10 s


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"metric": "vol"}, "unknown metric"),
        ({"op": "=="}, "unknown operator"),
        ({"threshold": math.inf}, "finite"),
        ({"cooldown_s": -1.0}, "cooldown"),
        ({"method": "magic"}, "hedge method"),
        ({"window": 1}, "window"),
    ],
)
def test_new_rules_are_validated(kw, message):
    args = {
        "metric": "zscore",
        "op": ">",
        "threshold": 2.0,
        "cooldown_s": 60.0,
        "window": 60,
        "method": "ols",
    } | kw
    with pytest.raises(ValueError, match=message):
        validate_rule(**args)


def test_monitor_records_crossings_with_cooldown_in_the_background(tmp_path):
    """The monitor thread fires on closed bars only, once per crossing, honouring cooldown."""
    path = tmp_path / "alerts.db"
    t0 = 1_700_000_000_000
    ids = {"AUSDT": 0, "BUSDT": 0}

    def bar(w: Writer, second: int, price_a: float) -> None:
        ticks = []
        for sym, px in (("AUSDT", price_a), ("BUSDT", 50.0 + second % 3)):
            ids[sym] += 1
            ticks.append(Tick(sym, ids[sym], t0 + second * 1000 + 10, px, 1.0, False, IdKind.AGG))
        w.write_ticks(ticks)

    with open_writer(path) as w:
        for s in range(3):
            bar(w, s, 90.0)
        rid = w.add_alert_rule(
            name="A above 100",
            x="AUSDT",
            y="BUSDT",
            tf="1s",
            metric="price_x",
            op=">",
            threshold=100.0,
            cooldown_s=5.0,
            params={"window": 10, "method": "ols"},
        )
        mon = AlertMonitor(w, str(path), poll_s=0.02).start()
        try:
            wait_for(lambda: mon.stats.passes >= 1, what="the first monitor pass")
            prices = {5: 110, 6: 90, 7: 110, 8: 90, 12: 110, 13: 110}
            for s in range(3, 15):
                bar(w, s, float(prices.get(s, 90.0)))
            with open_reader(path) as r:
                wait_for(lambda: len(r.alert_events()) >= 2, what="two alerts")
                wait_for(lambda: mon.stats.passes >= 3, what="more passes")
                events = r.alert_events()
        finally:
            mon.stop()
    got = sorted(
        (int(e.rule_id), int(e.bar_time_ms - t0) // 1000, e.value) for e in events.itertuples()
    )
    # 5 s fires; 7 s is within the 5 s cooldown; 12 s fires; 13 s stays true (no crossing);
    # 14 s is the bar still open and never evaluated.
    assert got == [(rid, 5, 110.0), (rid, 12, 110.0)]
    assert "A above 100" in events["message"].iloc[0]


# ------------------------------------------------------------------------- analytics table
def test_live_analytics_on_real_data_and_warm_up(real_db):
    params = PairParams(window=60, display_bars=600)
    with open_reader(real_db) as r:
        frame = r.pair_frame("BTCUSDT", "ETHUSDT", "1s", limit=params.read_bars)
        short = r.pair_frame("BTCUSDT", "ETHUSDT", "1s", limit=42)
    res = compute_pair(frame, params)
    assert res.hedge.defined and res.corr.defined
    assert 0.3 < res.figures["corr"] < 0.95  # 1 s returns of BTC and ETH: README says 0.64
    assert math.isfinite(res.figures["zscore"]) and math.isfinite(res.figures["half_life_bars"])
    warm = compute_pair(short, params)
    assert (warm.hedge.n_bars, warm.hedge.bars_required, warm.hedge.bars_needed) == (42, 61, 19)
    assert warm.table["zscore"].isna().all() and not warm.error
    assert list(export_table(res).columns) == [*TABLE_COLUMNS, "r2"]


def test_analytics_export_matches_the_analytics_cli(real_db, tmp_path):
    from analytics.__main__ import main as analytics_main
    from tests.test_analytics_cli import pair_args

    out = tmp_path / "cli.csv"
    args = pair_args(real_db, "--window", 60, "--out", out, x="BTCUSDT", y="ETHUSDT", tf="1s")
    assert analytics_main(args) in (0, None)
    cli = pd.read_csv(out)
    ours = pd.read_csv(
        pd.io.common.BytesIO(
            exports.analytics_csv(real_db, PairParams(window=60, display_bars=2000))
        )
    )
    assert list(ours.columns) == list(cli.columns)
    merged = ours.merge(cli, on="time", suffixes=("", "_cli"))
    assert len(merged) == len(ours) == len(cli)
    for col in ("beta", "zscore", "corr"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_cli"], rtol=1e-9, atol=1e-12)


def test_exports_have_the_documented_columns(real_db):
    def header(data: bytes) -> list[str]:
        return data.decode().splitlines()[0].split(",")

    p = PairParams(window=60)
    # The columns the README documents for a bars export.
    assert header(exports.bars_csv(real_db, "BTCUSDT", "1s")) == [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trades",
        "vwap",
        "buy_volume",
    ]
    assert header(exports.analytics_csv(real_db, p)) == [*TABLE_COLUMNS, "r2"]
    stats = header(exports.bar_stats_csv(real_db, p))
    assert stats[:8] == TABLE_COLUMNS and "BTCUSDT_volume" in stats
    assert header(exports.alert_log_csv(real_db)) == exports.ALERT_EXPORT_COLUMNS
    bars = pd.read_csv(pd.io.common.BytesIO(exports.bars_csv(real_db, "ETHUSDT", "1m")))
    assert len(bars) == 7 and bars["open_time"].iloc[0] == "2024-08-08T23:54:00.000Z"


# ------------------------------------------------------------------------- charts
def test_figures_keep_a_stable_uirevision_and_cap_points(real_db):
    with open_reader(real_db) as r:
        frame = r.pair_frame("BTCUSDT", "ETHUSDT", "1s")
    res = compute_pair(frame, PairParams(window=30))
    t = res.table
    long = pd.concat([t] * 4, ignore_index=True)  # 1,380 rows: more than MAX_POINTS
    long["time_ms"] = np.arange(len(long)) * 1000 + int(t["time_ms"].iloc[0])
    figs = {
        "price": charts.price_figure(long, "BTCUSDT", "ETHUSDT", "1s"),
        "zscore": charts.zscore_figure(long, "BTCUSDT", "ETHUSDT", "1s", 2.0),
        "spread": charts.spread_figure(long, "BTCUSDT", "ETHUSDT", "1s"),
        "beta": charts.beta_figure(long, "BTCUSDT", "ETHUSDT", "1s", "OLS"),
        "corr": charts.corr_figure(long, "BTCUSDT", "ETHUSDT", "1s"),
        "volume": charts.volume_figure(long, "BTCUSDT", "ETHUSDT", "1s"),
    }
    for name, fig in figs.items():
        assert fig.layout.uirevision == f"{name}:BTCUSDT:ETHUSDT:1s"
        for trace in fig.data:
            assert len(trace.x) <= charts.MAX_POINTS
        assert fig.data[0].x[-1] == long["time_ms"].iloc[-1]  # the live bar is never dropped
    shapes = [s.y0 for s in figs["zscore"].layout.shapes]
    assert sorted(shapes) == [-2.0, 0.0, 2.0]


def test_candles_and_dual_axis_prices(real_db):
    with open_reader(real_db) as r:
        frame = r.pair_frame("BTCUSDT", "ETHUSDT", "1m")
        candles = {"x": r.bars("BTCUSDT", "1m"), "y": r.bars("ETHUSDT", "1m")}
    t = compute_pair(frame, PairParams(tf="1m", window=3)).table
    fig = charts.price_figure(t, "BTCUSDT", "ETHUSDT", "1m", mode="candles", candles=candles)
    assert [tr.type for tr in fig.data] == ["candlestick", "candlestick"]
    assert fig.data[1].yaxis == "y2"
    dual = charts.price_figure(t, "BTCUSDT", "ETHUSDT", "1m", mode="dual")
    assert dual.layout.yaxis2.overlaying == "y"


def test_chart_payload_is_compact_plotly_json(real_db):
    from ui.plot import Cell, decode_grid, encode_grid, figure_payload

    with open_reader(real_db) as r:
        frame = r.pair_frame("BTCUSDT", "ETHUSDT", "1s")
    t = compute_pair(frame, PairParams(window=30)).table
    fig = charts.zscore_figure(t, "BTCUSDT", "ETHUSDT", "1s", 2.0)
    payload = figure_payload(fig)
    assert payload["height"] == 260
    spec = json.loads(payload["spec"])
    assert spec["layout"]["uirevision"] == "zscore:BTCUSDT:ETHUSDT:1s"
    assert "bdata" in json.dumps(spec["data"][0]["y"])  # numpy arrays travel as base64
    assert len(payload["spec"]) < 30_000  # 345 bars
    # What the grid component receives: its cells, as UTF-8 JSON bytes, in order.
    note = Cell("chart_beta", "Hedge ratio", note="Hedge ratio: <b>x</b>", level="error")
    sent = encode_grid([Cell("chart_zscore", "Z-score", chart=payload), note])
    assert isinstance(sent.data, bytes)
    got = decode_grid(sent.data)
    assert [c["key"] for c in got] == ["chart_zscore", "chart_beta"]
    head = {"key": "chart_zscore", "title": "Z-score", "note": "", "level": "info"}
    assert got[0] == {**head, **payload}
    assert got[1] == {
        "key": "chart_beta",
        "title": "Hedge ratio",
        "note": "Hedge ratio: <b>x</b>",  # plain text: ui/plot.js shows it as text, never HTML
        "level": "error",
    }


def test_a_chart_that_fails_to_build_is_a_note_in_its_cell_and_the_others_draw(real_db, caplog):
    from dataclasses import replace

    from ui.live import chart_cells

    with open_reader(real_db) as r:
        frame = r.pair_frame("BTCUSDT", "ETHUSDT", "1s")
    result = compute_pair(frame, PairParams(window=30))
    broken = replace(result, table=result.table.drop(columns=["x_volume"]))  # a corrupt view
    cells = {c.key: c for c in chart_cells(broken, "normalised", None)}
    volume = cells.pop("chart_volume")
    assert volume.chart is None and volume.level == "error"
    assert volume.note.startswith("Volume could not be shown (KeyError: 'x_volume').")
    assert "panel 'Volume' failed" in caplog.text  # the traceback goes to the server log
    assert all(c.chart and not c.note for c in cells.values()), cells.keys()
    drawn = ["chart_price", "chart_zscore", "chart_spread", "chart_beta", "chart_corr"]
    assert list(cells) == drawn


# ------------------------------------------------------------------------- uploads
def test_uploads_are_size_limited_and_validated(tmp_path):
    s = AppSettings(max_upload_mb=1.0, upload_dir=str(tmp_path / "up"))
    with pytest.raises(ValueError, match="larger than"):
        save_upload("big.gz", b"x" * 1_100_000, s)
    with pytest.raises(ValueError, match=r"not a trade recording|cannot be read"):
        save_upload("notes.txt", b"hello\nworld\n", s)
    with pytest.raises(ValueError, match="cannot be read"):
        save_upload("bad.gz", b"\x1f\x8b\x08 not gzip", s)
    assert not any((tmp_path / "up").iterdir())  # refused files are not kept
    saved = save_upload(
        "../../etc/passwd sample.gz",
        SAMPLE_RECORDING.read_bytes(),
        AppSettings(upload_dir=str(tmp_path / "up")),
    )
    assert Path(saved).parent == tmp_path / "up" and Path(saved).name == "passwd_sample.gz"
    with pytest.raises(ValueError, match=r"missing\.gz cannot be replayed"):
        check_recording_path(str(tmp_path / "up" / "missing.gz"), s)  # one message for all


# ------------------------------------------------------------------------- service
def _settings(tmp_path, **kw) -> AppSettings:
    base = {
        "db_path": str(tmp_path / "live.db"),
        "replay_db_path": str(tmp_path / "live.replay.db"),
        "ws_base": "ws://127.0.0.1:9",
        "rest_base": "http://127.0.0.1:9",
        "autostart": False,
        "probe_timeout_s": 1.0,
    }
    return AppSettings(**(base | kw))


def test_one_service_per_process_and_rebuilt_only_when_dead(tmp_path, monkeypatch):
    for k, v in QUIET_ENV.items():
        monkeypatch.setenv(k, v)
    s = _settings(tmp_path)
    a = acquire_service(s)
    try:
        assert acquire_service(s) is a and a.healthy()
        assert a.writer is not None and a.monitor.is_alive()
        wait_for(lambda: a.probe.ok is False, what="the offline probe")  # port 9: refused
        assert "did not answer" in a.probe.detail
        a.close()
        assert not a.healthy()
        b = acquire_service(s)
        assert b is not a and b.healthy()
    finally:
        acquire_service(s).close()


def test_page_runs_read_only_when_another_process_writes(tmp_path, monkeypatch):
    for k, v in QUIET_ENV.items():
        monkeypatch.setenv(k, v)
    s = _settings(tmp_path)
    with open_writer(s.db_path):  # e.g. a headless collector holds the database
        svc = DashboardService(s)
        try:
            assert svc.read_only and "already has a writer" in svc.read_only
            svc.start_feed()
            assert not svc.feed_running()
            with pytest.raises(StorageError):
                svc.add_rule(
                    name="r",
                    x="BTCUSDT",
                    y="ETHUSDT",
                    tf="1s",
                    metric="zscore",
                    op=">",
                    threshold=2.0,
                    cooldown_s=60.0,
                )
        finally:
            svc.close()


def test_a_restarted_replay_keeps_its_alert_rules(tmp_path, monkeypatch):
    """A replay restarts into a fresh file; its rules, window and method included, carry over."""
    for k, v in QUIET_ENV.items():
        monkeypatch.setenv(k, v)
    svc = DashboardService(_settings(tmp_path, replay_files=(str(SAMPLE_RECORDING),)))
    try:
        assert svc.source == Source.REPLAY
        svc.add_rule(
            name="wide",
            x="BTCUSDT",
            y="ETHUSDT",
            tf="1m",
            metric="zscore",
            op=">",
            threshold=2.5,
            cooldown_s=30.0,
            params={"window": 120, "method": "kalman"},
        )
        svc.use_replay()
        with open_reader(svc.db_path) as r:
            (rule,) = rules_from_frame(r.alert_rules())
    finally:
        svc.close()
    assert (rule.name, rule.x, rule.y, rule.tf, rule.metric, rule.op) == (
        "wide",
        "BTCUSDT",
        "ETHUSDT",
        "1m",
        "zscore",
        ">",
    )
    assert (rule.threshold, rule.cooldown_s, rule.window, rule.method) == (2.5, 30.0, 120, "kalman")


def test_replay_source_streams_the_recording_through_the_client(tmp_path, monkeypatch):
    """Replay: in-process server + the real FeedService, into a fresh replay database."""
    for k, v in QUIET_ENV.items():
        monkeypatch.setenv(k, v)
    s = _settings(
        tmp_path, replay_files=(str(SAMPLE_RECORDING),), replay_speed=20.0, autostart=True
    )
    svc = DashboardService(s)
    try:
        assert svc.source == Source.REPLAY and svc.db_path == s.replay_db_path
        assert svc.check_symbol("BTCUSDT") is None
        assert "not in this replay" in svc.check_symbol("SOLUSDT")
        assert "not a symbol" in svc.check_symbol("BTC-USDT")

        def stored() -> bool:
            with open_reader(svc.db_path) as r:
                if set(r.symbols()) != {"BTCUSDT", "ETHUSDT"}:
                    return False
                return len(r.pair_frame("BTCUSDT", "ETHUSDT", "1s")) >= 5

        wait_for(stored, what="5 bars of the replay")
        states = {st.symbol: st.state.value for st in svc.feed_status()}
        assert set(states) == {"BTCUSDT", "ETHUSDT"}
        svc.stop_feed()
        assert not svc.feed_running()
    finally:
        svc.close()
    assert not Path(s.db_path).exists()  # the live database was never touched
