"""The Scan tab, headless (AppTest): fetch real klines from the local look-alike, scan the
stored universe in the background, open a candidate in the Live panel; the worker alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording
from service import registry
from service.scan import ScanJob, last_scan_path
from service.universe import ScanRequest
from storage import open_reader, open_writer
from tests.conftest import STORAGE_REAL_DIR, wait_for
from tests.test_app import _env

APP = str(Path(__file__).resolve().parents[1] / "app.py")
KLINES = STORAGE_REAL_DIR / "binance_usdm_klines_1m"
SYMBOLS = ["ALGOUSDT", "AVAXUSDT", "FILUSDT", "NEARUSDT"]


@pytest.fixture(scope="module")
def db(tmp_path_factory, storage_real_dir) -> Path:
    path = tmp_path_factory.mktemp("scan_ui") / "u.db"
    with open_writer(path) as w:
        for s in SYMBOLS:
            w.write_klines(s, pd.read_csv(KLINES / f"{s}-1m-2024-02.csv", nrows=6000))
    return path


@pytest.fixture
def page_env(db, monkeypatch) -> Iterator[Path]:
    # The look-alike's exchangeInfo must list the scanned symbols for the Live panel to take
    # them: it serves them as static-kline symbols beside the sample recording.
    rec = load_recording([SAMPLE_RECORDING])
    server = FakeBinance(rec, speed=0, static_klines={s: [] for s in SYMBOLS}).start()
    _env(monkeypatch, db, server.rest_base)
    try:
        yield db
    finally:
        if registry.SERVICE is not None:
            registry.SERVICE.close()
        server.stop()


def captions(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("caption", "info", "error") for e in at.get(kind))


def test_scan_tab_runs_in_the_background_and_opens_a_candidate_in_live(page_env):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["view"] = "Scan"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.number_input(key="scan_q").set_value(1.0)  # show every pair: 4 symbols are few
    at.number_input(key="scan_p").set_value(1.0)
    at.button(key="scan_run").click().run()

    def finished() -> bool:
        at.run()
        return "Last scan finished" in captions(at)

    wait_for(finished, timeout_s=120, what="the background scan to finish")
    table = at.dataframe[0].value  # the candidates (the skipped list would come after)
    assert len(table) == 12 and set(table["x"]) == set(SYMBOLS)
    assert list(table["score"]) == sorted(table["score"])
    assert len(table["zscore"].iloc[0]) == 120  # the sparkline's points
    pick = at.selectbox(key="scan_pick")
    x, y = pick.value.split(" / ")
    at.button(key="scan_watch").click().run()
    assert f"{x} / {y} (5m) is on the watchlist" in "\n".join(str(e.value) for e in at.success)
    with open_reader(page_env) as r:
        watched = r.watchlist()
    assert [(w.x, w.y, w.tf) for w in watched.itertuples()] == [(x, y, "5m")]
    at.button(key="scan_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="x").value == x and at.text_input(key="y").value == y
    assert at.query_params["x"] == x and at.query_params.get("view", "Live") == "Live"
    assert at.session_state["view"] == "Live"
    assert at.title[0].value == f"{x} / {y} · 5m"
    # A new session (a reload) shows the last result at once.
    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params["view"] = "Scan"
    again.run()
    assert "Last scan finished" in captions(again)


def test_worker_reports_progress_failure_and_stop(db, tmp_path):
    saved = last_scan_path(str(db))
    saved.unlink(missing_ok=True)
    job = ScanJob()
    assert job.last(str(db)) is None
    assert job.start(str(db), ScanRequest(tf="1m", lags=1, recheck_top=3))
    assert not job.start(str(db), ScanRequest())  # one at a time
    job.join(120)
    s = job.status()
    assert s.state == "done" and s.result is not None and s.result.pairs_tested == 12
    assert s.stage == "recheck" and s.finished_ms == s.result.finished_ms
    assert s.run is not None and len(s.run.table) == 12
    # Saved beside the database: a new process (a new job) shows the same scan at once.
    assert saved.is_file()
    again = ScanJob().last(str(db))
    assert again is not None and again.finished_ms == s.result.finished_ms
    assert again.skipped == s.result.skipped and again.tf == "1m"
    pd.testing.assert_frame_equal(
        again.table.drop(columns="zscore"), s.result.table.drop(columns="zscore")
    )
    assert again.table["zscore"].tolist() == s.result.table["zscore"].tolist()
    assert ScanJob().last(str(tmp_path / "other.db")) is None
    assert job.start(str(db), ScanRequest(tf="1m", symbols=("ALGOUSDT", "NOPEUSDT")))
    job.join(60)
    s = job.status()
    assert s.state == "failed" and "no data for symbol 'NOPEUSDT'" in s.error
    assert s.result is not None  # the last good result stays
    job.stop()  # a stop before a start does not leak into the next scan
    assert job.start(str(db), ScanRequest(tf="1m"))
    job.stop()
    job.join(60)
    assert job.status().state in ("stopped", "done")


def test_fetch_panel_fills_an_empty_database_then_the_scan_runs(tmp_path, monkeypatch):
    import datetime as dt

    from tests.test_ingestion_klines import rows_of

    universe = {s: rows_of(s, 4 * 1440) for s in SYMBOLS}
    server = FakeBinance(load_recording([SAMPLE_RECORDING]), speed=0, static_klines=universe)
    server.start()
    db = tmp_path / "empty.db"
    monkeypatch.setenv("DB_PATH", str(db))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("FEED_AUTOSTART", "0")
    monkeypatch.setenv("BINANCE_REST_BASE", server.rest_base)
    monkeypatch.setenv("BINANCE_WS_BASE", server.rest_base.replace("http", "ws"))
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["view"] = "Scan"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        at.date_input(key="fetch_from").set_value(dt.date(2024, 2, 1))
        at.date_input(key="fetch_to").set_value(dt.date(2024, 2, 3))
        at.button(key="fetch_go").click().run()

        def fetched() -> bool:
            at.run()
            return "Fetch done" in captions(at)

        wait_for(fetched, timeout_s=120, what="the background fetch to finish")
        assert "17,280 klines stored; symbols:" in captions(at)  # 3 days × 4 symbols
        at.number_input(key="scan_q").set_value(1.0)
        at.number_input(key="scan_p").set_value(1.0)
        at.button(key="scan_run").click().run()
        wait_for(lambda: at.run() and "12 ordered pairs" in captions(at), 120, "the scan")
    finally:
        if registry.SERVICE is not None:
            registry.SERVICE.close()
        server.stop()
