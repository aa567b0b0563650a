"""The Scan tab, headless (AppTest): scan a small stored universe of real klines in the
background, see the candidates, open one in the Live panel; and the worker on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analytics.universe import ScanRequest
from ingestion.fakebinance import FakeBinance
from ingestion.recording import load_recording
from ingestion.replay import SAMPLE_RECORDING
from service import registry
from service.scan import ScanJob
from storage import Writer
from tests.conftest import STORAGE_REAL_DIR, wait_for

APP = str(Path(__file__).resolve().parents[1] / "app.py")
KLINES = STORAGE_REAL_DIR / "binance_usdm_klines_1m"
SYMBOLS = ["ALGOUSDT", "AVAXUSDT", "FILUSDT", "NEARUSDT"]


@pytest.fixture(scope="module")
def db(tmp_path_factory, storage_real_dir) -> Path:
    path = tmp_path_factory.mktemp("scan_ui") / "u.db"
    with Writer(path) as w:
        for s in SYMBOLS:
            w.write_klines(s, pd.read_csv(KLINES / f"{s}-1m-2024-02.csv", nrows=6000))
    return path


@pytest.fixture
def page_env(db, monkeypatch) -> Iterator[Path]:
    # The look-alike's exchangeInfo must list the scanned symbols for the Live panel to take
    # them: it serves them as static-kline symbols beside the sample recording.
    rec = load_recording([SAMPLE_RECORDING])
    server = FakeBinance(rec, speed=0, static_klines={s: [] for s in SYMBOLS}).start()
    monkeypatch.setenv("DB_PATH", str(db))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("FEED_AUTOSTART", "0")
    monkeypatch.setenv("BINANCE_REST_BASE", server.rest_base)
    monkeypatch.setenv("BINANCE_WS_BASE", server.rest_base.replace("http", "ws"))
    monkeypatch.setenv("TICKS_KEEP_HOURS", "forever")
    monkeypatch.setenv("BARS_1S_KEEP_DAYS", "forever")
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
    job = ScanJob()
    assert job.start(str(db), ScanRequest(tf="1m", lags=1, recheck_top=3))
    assert not job.start(str(db), ScanRequest())  # one at a time
    job.join(120)
    s = job.status()
    assert s.state == "done" and s.result is not None and s.result.scan.pairs_tested == 12
    assert s.stage == "recheck" and s.finished_ms is not None
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
