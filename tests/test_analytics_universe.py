"""``python -m analytics universe``: a real SQLite file of real klines, JSON, CSV, bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.stattools import coint

from analytics.__main__ import main
from service.universe import ProgressLine
from storage import open_reader, open_writer
from storage.universe import read_universe
from tests.conftest import STORAGE_REAL_DIR

KLINES = STORAGE_REAL_DIR / "binance_usdm_klines_1m"
SYMBOLS = ["ALGOUSDT", "AVAXUSDT", "FILUSDT", "NEARUSDT"]
BARS = 3000
CSV_COLUMNS = [
    "x",
    "y",
    "beta",
    "alpha",
    "eg_stat",
    "eg_pvalue",
    "qvalue",
    "oos_pvalue",
    "half_life_bars",
    "corr",
    "zscore_last",
    "x_quote_volume",
    "y_quote_volume",
]


def klines(sym: str, skip: int = 0) -> pd.DataFrame:
    return pd.read_csv(KLINES / f"{sym}-1m-2024-02.csv", nrows=BARS).iloc[skip:]


@pytest.fixture(scope="module")
def db(tmp_path_factory, storage_real_dir):
    """Four real symbols over 3,000 minutes, one listed 1,000 minutes late, one stale."""
    path = tmp_path_factory.mktemp("universe") / "bars.db"
    with open_writer(path) as w:
        for s in SYMBOLS:
            w.write_klines(s, klines(s))
        late = klines("AVAXUSDT", skip=1000).assign(close=lambda f: f["close"] * 1.01)
        w.write_klines("LATEUSDT", late)
        stale = klines("NEARUSDT").iloc[:2000]
        w.write_klines("GONEUSDT", stale)
    return path


def run(capsys, *args: object) -> tuple[int, dict | None, str]:
    code = main(["universe", *map(str, args)])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_scan_of_the_stored_universe_names_every_skipped_symbol(db, tmp_path, capsys):
    out = tmp_path / "pairs.csv"
    code, js, err = run(capsys, "--db", db, "--tf", "1m", "--lags", 2, "--out", out, "--top", 3)
    assert code == 0, err
    assert js["symbols"] == 4 and js["pairs_tested"] == 12 and js["bars"] == BARS
    reasons = {d["symbol"]: d["reason"] for d in js["skipped"]}
    assert set(reasons) == {"LATEUSDT", "GONEUSDT"}
    assert "history starts at 2024-02-01T16:40:00.000Z, inside the lookback" in reasons["LATEUSDT"]
    assert "stale or delisted" in reasons["GONEUSDT"]
    assert len(js["top"]) == 3 and set(js["seconds"]) == {"read", "scan", "recheck", "total"}
    assert "universe: pairs 12/12 pairs" in err  # progress on stderr
    table = pd.read_csv(out)
    assert set(CSV_COLUMNS) <= set(table.columns) and len(table) == 12
    closes = {s: klines(s)["close"].to_numpy() for s in SYMBOLS}
    for row in table.itertuples():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stat, p, _ = coint(closes[row.x], closes[row.y], trend="c", maxlag=2, autolag=None)
            exact, p_exact, _ = coint(closes[row.x], closes[row.y], trend="c", autolag="aic")
        assert row.eg_stat == pytest.approx(stat, rel=1e-8)
        assert row.eg_pvalue == pytest.approx(p, abs=1e-8)
        assert row.recheck_stat == pytest.approx(exact, rel=1e-8)
        assert row.recheck_pvalue == pytest.approx(p_exact, abs=1e-8)
        assert 0.0 < row.hurst < 1.0


def test_lookback_and_symbol_list_with_a_late_listing_inside_the_data(db, capsys):
    # The last 400 five-minute bars: LATEUSDT traded in all of them; GONEUSDT in none.
    code, js, err = run(capsys, "--db", db, "--tf", "5m", "--lookback", 400, "--recheck", 0)
    assert code == 0, err
    assert js["bars"] == 400 and js["symbols"] == 5 and js["pairs_tested"] == 20
    assert [d["symbol"] for d in js["skipped"]] == ["GONEUSDT"]
    code, js, err = run(
        capsys, "--db", db, "--tf", "1m", "--symbols", "algousdt,NEARUSDT", "--start",
        "2024-02-01T10:00", "--end", "2024-02-02T00:00", "--quiet",
    )  # fmt: skip
    assert code == 0 and err == ""
    assert js["pairs_tested"] == 2 and js["bars"] == 14 * 60 + 1 and js["skipped"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "ALGOUSDT,NOPEUSDT"], "no data for symbol 'NOPEUSDT'"),
        (["--symbols", "ALGOUSDT,LATEUSDT"], "fewer than two symbols with enough 1m data"),
        (["--start", "2025-01-01"], "no 1m bars in the lookback"),
        (["--lags", "-1"], "--lags must be 0 or more, got -1"),
        (["--lags", "900"], "lags=900 is too large for 3000 bars"),
        (["--symbols", "ALGOUSDT"], "--symbols needs 'all' or at least two"),
        (["--lookback", "1"], "--lookback must be at least 2 bars"),
        (["--out", "/no/such/dir/p.csv"], "its folder does not exist"),
        (["--tf", "1h"], "invalid choice: '1h'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db, capsys, args, message):
    code, _, err = run(capsys, "--db", db, "--tf", "1m", *args)
    assert code == 2
    lines = [ln for ln in err.splitlines() if not ln.startswith("universe: ")]  # progress
    assert len(lines) == 1 and lines[0].startswith("analytics: error: ")
    assert message in lines[0] and "Traceback" not in err


def test_read_universe_grid_carries_closes_and_zero_volume(db):
    with open_reader(db) as r:
        u = read_universe(r, "1m", ["NEARUSDT", "ALGOUSDT"], end_ms=None, lookback_bars=100)
        near = r.bars("NEARUSDT", "1m", limit=100)
    assert u.symbols == ("NEARUSDT", "ALGOUSDT") and u.close.shape == (100, 2)
    np.testing.assert_array_equal(u.grid_ms, near["open_time_ms"].to_numpy())
    np.testing.assert_array_equal(u.close[:, 0], near["close"].to_numpy())
    expected_qv = klines("NEARUSDT")["quote_volume"].to_numpy()[-100:]
    np.testing.assert_allclose(u.quote_volume[:, 0], expected_qv, rtol=1e-12)


def test_progress_line_shows_eta_and_throttles():
    class Out:
        def __init__(self):
            self.lines = []

        def write(self, s):
            self.lines.append(s)

        def flush(self):
            pass

    now = [0.0]
    out = Out()
    p = ProgressLine(out, every_s=1.0, clock=lambda: now[0])
    p("read", 0, 100)
    for k in range(1, 101):
        now[0] += 0.125
        p("read", k, 100)
    assert out.lines[0] == "universe: read 0/100 symbols\n"
    assert "universe: read 8/100 symbols, ETA 12 s\n" in out.lines  # 8 per s, 92 to go
    assert out.lines[-1] == "universe: read 100/100 symbols\n"
    assert len(out.lines) == 14  # start, one per second over 12.5 s, the end


@pytest.mark.postgres
def test_postgres_reads_the_same_universe_and_scans_the_same(pg_url, db, capsys):
    from storage import open_reader, open_writer

    with open_writer(pg_url) as w:
        for s in SYMBOLS:
            w.write_klines(s, klines(s))
    with open_reader(pg_url) as pg, open_reader(db) as lite:
        a = read_universe(pg, "5m", SYMBOLS, lookback_bars=500)
        b = read_universe(lite, "5m", SYMBOLS, lookback_bars=500)
    assert a.symbols == b.symbols and a.skipped == b.skipped
    np.testing.assert_array_equal(a.grid_ms, b.grid_ms)
    np.testing.assert_array_equal(a.close, b.close)
    np.testing.assert_allclose(a.quote_volume, b.quote_volume, rtol=1e-12)
    code, js, err = run(capsys, "--db", pg_url, "--tf", "1m", "--recheck", 0, "--quiet")
    assert code == 0, err
    code, ref, err = run(capsys, "--db", db, "--tf", "1m", "--recheck", 0, "--quiet",
                         "--symbols", ",".join(SYMBOLS))  # fmt: skip
    assert [r["eg_stat"] for r in js["top"]] == [r["eg_stat"] for r in ref["top"]]
