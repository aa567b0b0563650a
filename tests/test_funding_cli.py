"""Funding on the command lines, against the real local replay server (port 0):
``python -m analytics backtest --funding / --fetch-funding`` on real 1m klines (its charge
checked by hand from the trades it reports), and the headless collector polling and storing
each symbol's current funding for a page that only reads the database (a REST that hangs
delays no trade; one that answers garbage is one clear log line)."""

from __future__ import annotations

import http.server
import json
import logging
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.__main__ import main as analytics_main
from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording
from replay.faults import Faults
from replay.funding import DEFAULT_RATE, FUNDING_INTERVAL_MS
from service.funding import TIMEOUT_S, FundingService, stored_in
from storage import open_reader, open_writer
from storage.records import MarkPrice
from tests.conftest import free_port, start_collector, stop_with_sigint, wait_for

ROOT = Path(__file__).resolve().parents[1]
KLINES = ROOT.parent / "shared" / "data" / "real" / "binance_usdm_klines_1m"
LEGS = ("AVAXUSDT", "NEARUSDT")
BARS = 3000  # 50 hours of 1m bars: six or seven 8-hour settlements inside
M = 60_000


@pytest.fixture(scope="module")
def kline_rows() -> dict[str, pd.DataFrame]:
    files = {s: KLINES / f"{s}-1m-2024-02.csv" for s in LEGS}
    if not all(p.exists() for p in files.values()):
        pytest.skip("real kline files not found (shared/ not beside the repo?)")
    return {s: pd.read_csv(p, nrows=BARS) for s, p in files.items()}


@pytest.fixture
def bars_db(kline_rows, tmp_path) -> Path:
    path = tmp_path / "bars.db"
    with open_writer(path) as w:
        for sym, df in kline_rows.items():
            w.write_klines(sym, df)
    return path


@pytest.fixture
def exchange(kline_rows):
    """The replay server, serving the two legs' klines (and so their default funding)."""
    static = {s: df.values.tolist() for s, df in kline_rows.items()}
    with FakeBinance(load_recording([SAMPLE_RECORDING]), speed=0, static_klines=static) as server:
        yield server


def backtest(capsys, db: Path, *extra: object) -> tuple[int, dict | None, str]:
    args = ["backtest", "--db", db, "--x", LEGS[0], "--y", LEGS[1], "--tf", "1m"]
    code = analytics_main([str(a) for a in [*args, "--window", 300, "--entry", 1.5, *extra]])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def hand_funding(js: dict, closes: dict[str, np.ndarray], opens: np.ndarray) -> tuple[float, ...]:
    """Each leg's funding from the reported trades: at every 8 h settlement T inside the span,
    the position held after the last close at or before T pays ``qty × that close × rate``."""
    n, rate = opens.size, float(DEFAULT_RATE)
    first_close, last_close = opens[0] + M, opens[-1] + M
    times = range(-(-first_close // FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS, last_close,
                  FUNDING_INTERVAL_MS)  # fmt: skip
    got = [0.0, 0.0]
    for t_ms in times:
        j = int(np.searchsorted(opens + M, t_ms, side="right")) - 1
        for tr in js["trades"]:
            end = n - 1 if tr["exit_bar"] is None else tr["exit_bar"]
            if tr["entry_bar"] <= j < end:
                got[0] -= tr["qty_x"] * closes[LEGS[0]][j] * rate
                got[1] -= tr["qty_y"] * closes[LEGS[1]][j] * rate
    return got[0], got[1], len(times)


def test_backtest_charges_funding_fetched_from_the_server_as_computed_by_hand(
    bars_db, exchange, kline_rows, capsys
):
    code, plain, _ = backtest(capsys, bars_db)
    assert code == 0 and "funding" not in plain
    code, js, err = backtest(capsys, bars_db, "--fetch-funding", "--rest-base", exchange.rest_base)
    assert code == 0, err
    opens = kline_rows[LEGS[0]]["open_time"].to_numpy()
    assert (kline_rows[LEGS[1]]["open_time"].to_numpy() == opens).all()  # aligned bars
    closes = {s: df["close"].to_numpy() for s, df in kline_rows.items()}
    fx, fy, settled = hand_funding(js, closes, opens)
    f = js["funding"]
    assert settled >= 6 and f["settlements_x"] == f["settlements_y"] == settled
    assert f["funding_pnl_x"] == pytest.approx(fx, rel=1e-9, abs=1e-12)
    assert f["funding_pnl_y"] == pytest.approx(fy, rel=1e-9, abs=1e-12)
    assert f["funding_pnl"] == pytest.approx(fx + fy, rel=1e-9) and fx + fy != 0.0
    assert js["total_pnl"] == pytest.approx(plain["total_pnl"] + fx + fy, rel=1e-9)
    with open_reader(bars_db) as r:  # stored: a settlement before the span, every one inside
        stored = r.funding_rates(LEGS[0])
    assert len(stored) >= settled + 1 and set(stored["rate"]) == {float(DEFAULT_RATE)}
    # Stored now: --funding alone charges the same, with no server.
    code, again, err = backtest(capsys, bars_db, "--funding")
    assert code == 0 and again["funding"] == f, err


def test_backtest_funding_refusals_are_one_line_and_store_nothing(bars_db, capsys):
    code, _, err = backtest(capsys, bars_db, "--funding")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"no funding stored for {LEGS[0]} from 2024-01-31T16:01:00.000Z" in err
    assert "--fetch-funding" in err
    dead = f"http://127.0.0.1:{free_port()}"
    code, _, err = backtest(capsys, bars_db, "--fetch-funding", "--rest-base", dead)
    assert code == 2 and err.count("\n") == 1
    assert f"funding history of {LEGS[0]} not fetched from {dead}" in err
    code, _, err = backtest(capsys, bars_db, "--rest-base", dead)
    assert code == 2 and "--rest-base is only used with --fetch-funding" in err
    with open_reader(bars_db) as r:
        assert r.funding_rates(LEGS[0]).empty and r.funding_rates(LEGS[1]).empty


# ---------------------------------------------------------------------------- the collector
@pytest.fixture
def feed_server():
    """The sample recording's BTCUSDT and ETHUSDT, faults switchable while it runs."""
    recording = load_recording([SAMPLE_RECORDING])
    with FakeBinance(recording, speed=5, loop=True, preroll_s=60, faults=Faults()) as srv:
        yield srv


def collector(server, db: Path, tmp_path: Path) -> subprocess.Popen:
    """Both legs, status and funding every 0.3 s; its output in ``out.txt`` / ``err.txt``."""
    flags = ("--status-interval", 0.3, "--funding-poll", 0.3, "--history-klines", 0)
    out, err = (tmp_path / "out.txt").open("w"), (tmp_path / "err.txt").open("w")
    return start_collector(db, server, *flags, symbols="btcusdt,ethusdt", stdout=out, stderr=err)


def stop_collector(proc: subprocess.Popen) -> float:
    """SIGINT, then the seconds it took to exit (killed if it hangs: the test then fails)."""
    started = time.monotonic()
    stop_with_sigint(proc, timeout_s=30)
    return time.monotonic() - started


def stored_now(db: Path) -> dict[str, tuple]:
    try:
        with open_reader(db) as r:
            df = r.funding_now()
    except Exception:  # not created (or migrated) yet
        return {}
    return {row.symbol: (row.rate, row.event_ms, row.checked_ms) for row in df.itertuples()}


def tick_count(db: Path) -> int:
    with open_reader(db) as r:
        return sum(len(r.ticks(s)) for s in ("BTCUSDT", "ETHUSDT"))


def test_collector_stores_current_funding_a_reading_page_shows(feed_server, tmp_path):
    db = tmp_path / "c.db"
    proc = collector(feed_server, db, tmp_path)
    try:
        first = wait_for(lambda: len(s := stored_now(db)) == 2 and s, what="funding_now rows")
        assert {v[0] for v in first.values()} == {float(DEFAULT_RATE)}
        # Polled again: newer checks replace the rows (one row per symbol, never more).
        wait_for(lambda: stored_now(db)["BTCUSDT"][2] > first["BTCUSDT"][2], what="a re-poll")
        # A page that cannot ask (a replay not started: no REST root) shows what is stored.
        page = FundingService(
            lambda: None, lambda: None, poll_s=0.2, stored=stored_in(lambda: str(db))
        )
        try:

            def shown() -> dict | None:
                states = page.current(["BTCUSDT", "ETHUSDT"])
                return states if all(v.mark for v in states.values()) else None

            states = wait_for(shown, what="the page's funding from the database")
        finally:
            page.stop()
        for sym, state in states.items():
            assert state.mark.symbol == sym and state.mark.rate == float(DEFAULT_RATE)
            assert not state.error and state.mark.next_funding_ms % FUNDING_INTERVAL_MS == 0
    finally:
        assert stop_collector(proc) < 15
    out = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 0, (tmp_path / "err.txt").read_text()
    assert "funding: 2 of 2 symbols read (premiumIndex every 0.3 s)" in out


def test_a_hung_rest_delays_no_trade_and_is_one_clear_log_line(feed_server, tmp_path):
    db = tmp_path / "h.db"
    proc = collector(feed_server, db, tmp_path)
    try:
        wait_for(lambda: len(stored_now(db)) == 2, what="funding_now rows")
        feed_server.faults.rest_delay_s = TIMEOUT_S + 10  # every REST answer: later than that
        err = tmp_path / "err.txt"
        wait_for(lambda: "not read from" in err.read_text(), TIMEOUT_S + 15, "the log line")
        before = tick_count(db)
        wait_for(lambda: tick_count(db) > before + 100, what="ticks stored while REST hangs")
        assert proc.poll() is None
        stop_s = stop_collector(proc)
    finally:
        feed_server.faults.rest_delay_s = 0.0
        stop_collector(proc)
    assert proc.returncode == 0, err.read_text()
    lines = [ln for ln in err.read_text().splitlines() if "funding of" in ln]
    assert lines and all("not read from " + feed_server.rest_base in ln for ln in lines)
    assert {ln.split("funding of ")[1].split()[0] for ln in lines} <= {"BTCUSDT", "ETHUSDT"}
    assert len(lines) <= 2  # once per symbol and reason, not once per poll
    assert "stopped" not in " ".join(lines)  # the stop itself is no failure
    assert stop_s < TIMEOUT_S - 1  # a request in flight is abandoned, not waited for


class _Garbage(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = b'{"symbol": "BTCUSDT", "markPrice": "not a number"'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_garbage_from_rest_is_one_log_line_and_the_stored_reading_stands_in(tmp_path, caplog):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    db = tmp_path / "g.db"
    now_ms = int(time.time() * 1000)
    with open_writer(db) as w:
        w.write_funding_now(
            [MarkPrice("BTCUSDT", 60_000.0, None, 2e-4, now_ms + 1, now_ms)], now_ms
        )
    stored: list = []
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    funding = FundingService(
        lambda: base,
        lambda: None,
        poll_s=0.1,
        record=lambda marks, _checked_ms: stored.append(marks),
        stored=stored_in(lambda: str(db)),
    )
    try:
        with caplog.at_level(logging.WARNING, logger="service.funding"):
            state = wait_for(lambda: funding.current(["BTCUSDT"])["BTCUSDT"].mark, what="stand-in")
            wait_for(lambda: _Garbage.hits >= 5, what="five polls answered with garbage")
    finally:
        funding.stop()
        httpd.shutdown()
    assert state.rate == 2e-4 and stored == []  # nothing read, nothing recorded
    lines = [r.getMessage() for r in caplog.records if "funding of BTCUSDT" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"funding of BTCUSDT not read from {base}: ")
