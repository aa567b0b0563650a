"""Funding on the command lines, against the real local replay server (port 0):
``python -m analytics backtest --funding / --fetch-funding`` on real 1m klines (its charge
checked by hand from the trades it reports)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.__main__ import main as analytics_main
from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording
from replay.funding import DEFAULT_RATE, FUNDING_INTERVAL_MS
from storage import open_reader, open_writer
from tests.conftest import free_port

KLINES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "binance_usdm_klines_1m"
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
