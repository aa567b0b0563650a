"""Universe kline fetch against the local Binance look-alike serving real 1m klines.

429 with Retry-After, a symbol delisted mid-fetch, a kill in the middle then resume (nothing
fetched twice), a symbol whose history starts inside the lookback, and the scan on the result.
"""

from __future__ import annotations

import bisect
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.__main__ import main as analytics_main
from config import SAMPLE_RECORDING
from ingestion.klines import KlineFetcher, main, missing_spans, universe_symbols
from ingestion.rest import RestClient
from replay import FakeBinance, load_recording
from replay.faults import Faults
from storage import StorageError, open_reader, open_writer
from storage.timefmt import parse_iso_ms
from tests.conftest import STORAGE_REAL_DIR, wait_for

ROOT = Path(__file__).resolve().parents[1]
KLINES = STORAGE_REAL_DIR / "binance_usdm_klines_1m"
REAL = ["ALGOUSDT", "AVAXUSDT", "FILUSDT", "NEARUSDT"]
START = "2024-02-01T00:00:00Z"
END = "2024-02-05T23:59:00Z"  # 7,200 minutes: 5 pages per symbol
KILL_END = "2024-02-12T23:59Z"  # 12 days: 12 pages per symbol
LATE_FROM = 3000  # LATEUSDT lists at minute 3,000 of the lookback


def rows_of(sym: str, n: int = 41_760) -> list[list]:
    """The real dump's rows as ``GET /fapi/v1/klines`` arrays (strings as in the file)."""
    with (KLINES / f"{sym}-1m-2024-02.csv").open() as fh:
        reader = csv.reader(fh)
        next(reader)
        out = []
        for row in reader:
            if len(out) == n:
                break
            out.append([int(row[0]), *row[1:6], int(row[6]), row[7], int(row[8]), *row[9:12]])
    return out


@pytest.fixture(scope="module")
def universe(storage_real_dir) -> dict[str, list[list]]:
    data = {s: rows_of(s) for s in REAL}
    data["LATEUSDT"] = data["AVAXUSDT"][LATE_FROM:]
    return data


@pytest.fixture(scope="module")
def sample():
    return load_recording([SAMPLE_RECORDING])


def served(server: FakeBinance, universe: dict[str, list[list]]) -> dict[str, list[int]]:
    """Per symbol, the open times of every kline row the server returned (with repeats)."""
    out: dict[str, list[int]] = {}
    for _, path, params, status in server.stats.rest_requests:
        if path != "/fapi/v1/klines" or status != 200 or params["symbol"] not in universe:
            continue  # the recording's own symbols (BTCUSDT, ETHUSDT) have no klines in range
        times = [r[0] for r in universe[params["symbol"]]]
        lo = bisect.bisect_left(times, int(params["startTime"]))
        hi = bisect.bisect_right(times, int(params["endTime"]))
        out.setdefault(params["symbol"], []).extend(times[lo : min(hi, lo + int(params["limit"]))])
    return out


def in_range(universe: dict[str, list[list]], sym: str) -> list[list]:
    lo, hi = parse_iso_ms(START), parse_iso_ms(END)
    return [r for r in universe[sym] if lo <= r[0] <= hi]


def fetch(server: FakeBinance, db: Path, **kwargs):
    rest = RestClient(server.rest_base)
    syms = universe_symbols(rest.exchange_info())
    fetcher = KlineFetcher(rest, str(db), **kwargs)
    return rest, fetcher.run(syms, parse_iso_ms(START), parse_iso_ms(END))


def test_fetch_every_symbol_then_a_rerun_fetches_nothing_again(sample, universe, tmp_path):
    db = tmp_path / "u.db"
    with FakeBinance(sample, speed=0, static_klines=universe) as server:
        _, first = fetch(server, db)
        _, second = fetch(server, db)
        got = served(server, universe)
    # exchangeInfo also lists the recording's BTCUSDT / ETHUSDT; they have no klines in range.
    assert {r.symbol: r.status for r in first if r.rows} == dict.fromkeys([*REAL, "LATEUSDT"], "ok")
    assert {r.status for r in second} == {"up to date", "ok"}
    assert sum(r.rows for r in second) == 0
    for sym in [*REAL, "LATEUSDT"]:
        want = [r[0] for r in in_range(universe, sym)]
        assert sorted(got[sym]) == want  # every minute served once, over both runs
    with open_reader(db) as r:
        late = r.bars("LATEUSDT", "1m")
        near = r.bars("NEARUSDT", "1m")
    assert int(late["open_time_ms"].iloc[0]) == universe["LATEUSDT"][0][0]  # listed late
    assert near["close"].tolist() == [float(r[4]) for r in in_range(universe, "NEARUSDT")]


def test_the_page_fetch_job_writes_through_the_shared_writer(sample, universe, tmp_path):
    """``service.scan.FetchJob``, the Scan tab's background fetch: through the writer the
    page's service holds, then ``done`` with the rows it stored."""
    from service.scan import FetchJob

    db = tmp_path / "page.db"
    job = FetchJob()
    want = in_range(universe, "NEARUSDT")
    with FakeBinance(sample, speed=0, static_klines=universe) as server, open_writer(db) as w:
        span = (parse_iso_ms(START), parse_iso_ms(END))
        assert job.start(str(db), w, server.rest_base, *span, ("NEARUSDT",))
        wait_for(lambda: job.status().state != "running", 30, "the fetch to end")
        job.join(5.0)
    status = job.status()
    assert (status.state, status.error, status.done, status.total) == ("done", "", 1, 1)
    assert status.rows == len(want) and status.finished_ms is not None
    with open_reader(db) as r:
        assert r.bars("NEARUSDT", "1m")["close"].tolist() == [float(k[4]) for k in want]


def test_429_with_retry_after_pauses_once_and_loses_nothing(sample, universe, tmp_path):
    faults = Faults(rest_429=1, retry_after_s=1)
    with FakeBinance(sample, speed=0, static_klines=universe, faults=faults) as server:
        rest, res = fetch(server, tmp_path / "u.db")
        log = [(t, s) for t, p, _, s in server.stats.rest_requests if p == "/fapi/v1/klines"]
    assert [s for _, s in log].count(429) == 1 and rest.stats().rate_limited == 1
    k = [s for _, s in log].index(429)
    assert log[k + 1][0] - log[k][0] >= 1.0  # Retry-After honoured before the next request
    assert all(r.status in ("ok", "up to date") for r in res)
    assert sum(r.rows for r in res) == sum(len(in_range(universe, s)) for s in universe)


def test_symbol_delisted_mid_fetch_is_reported_and_the_rest_completes(sample, universe, tmp_path):
    faults = Faults()
    seen = []

    def delist_next(p):
        seen.append(p)
        if p.last.symbol == "ALGOUSDT":
            faults.delisted.add("AVAXUSDT")  # after exchangeInfo said TRADING

    with FakeBinance(sample, speed=0, static_klines=universe, faults=faults) as server:
        _, res = fetch(server, tmp_path / "u.db", progress=delist_next)
        rest = RestClient(server.rest_base)
        assert "AVAXUSDT" not in universe_symbols(rest.exchange_info())
    status = {r.symbol: r.status for r in res}
    assert status["AVAXUSDT"] == "delisted" and status["NEARUSDT"] == "ok"
    assert [p.done for p in seen] == list(range(1, len(res) + 1))
    assert seen[-1].eta_s == 0.0


def test_kill_in_the_middle_then_resume_fetches_nothing_twice(sample, universe, tmp_path):
    db = tmp_path / "u.db"
    with FakeBinance(sample, speed=0, static_klines=universe) as server:
        cmd = [sys.executable, "-m", "ingestion.klines", "--db", str(db), "--quiet",
               "--rest-base", server.rest_base, "--start", START, "--end", KILL_END]  # fmt: skip
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)

        def some_stored() -> bool:
            if not db.exists():
                return False
            try:
                with open_reader(db) as r:
                    return r.bar_range("AVAXUSDT", "1m") is not None
            except (StorageError, ValueError):  # being created: no schema or symbol yet
                return False

        wait_for(some_stored, timeout_s=60, what="the first pages stored", interval_s=0.02)
        proc.kill()  # SIGKILL: no clean-up at all
        proc.wait(timeout=30)
        assert proc.returncode != 0
        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        got = served(server, universe)
    end = parse_iso_ms(KILL_END)
    for sym in [*REAL, "LATEUSDT"]:
        want = [r[0] for r in universe[sym] if parse_iso_ms(START) <= r[0] <= end]
        repeats = len(got[sym]) - len(set(got[sym]))
        assert sorted(set(got[sym])) == want
        assert repeats <= 1500, sym  # at most the one page in flight at the kill
    with open_reader(db) as r:
        assert r.bar_range("FILUSDT", "1m") == (parse_iso_ms(START), end)


def test_fetched_universe_scans_and_names_the_late_listing(sample, universe, tmp_path, capsys):
    db = tmp_path / "u.db"
    with FakeBinance(sample, speed=0, static_klines=universe) as server:
        fetch(server, db)
    code = analytics_main(["universe", "--db", str(db), "--tf", "5m", "--quiet", "--recheck", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    js = json.loads(out)
    assert js["symbols"] == 4 and js["pairs_tested"] == 12
    reasons = dict((d["symbol"], d["reason"]) for d in js["skipped"])
    assert "inside the lookback" in reasons["LATEUSDT"]


def test_universe_filter_keeps_trading_usdt_perpetuals_only():
    info = {
        "symbols": [
            {"symbol": "BTCUSDT", "status": "TRADING", "contractType": "PERPETUAL",
             "quoteAsset": "USDT", "marginAsset": "USDT"},
            {"symbol": "ETHUSDC", "status": "TRADING", "contractType": "PERPETUAL",
             "quoteAsset": "USDC", "marginAsset": "USDC"},
            {"symbol": "BTCUSDT_250328", "status": "TRADING", "contractType": "CURRENT_QUARTER",
             "quoteAsset": "USDT", "marginAsset": "USDT"},
            {"symbol": "OLDUSDT", "status": "SETTLING", "contractType": "PERPETUAL",
             "quoteAsset": "USDT", "marginAsset": "USDT"},
            {"symbol": "BNBUSDT", "status": "TRADING", "contractType": "PERPETUAL",
             "quoteAsset": "USDT", "marginAsset": "BNB"},
            "garbage",
        ]
    }  # fmt: skip
    assert universe_symbols(info) == ["BTCUSDT"]


def test_missing_spans():
    m = 60_000
    assert missing_spans(None, 0, 10 * m) == [(0, 10 * m)]
    assert missing_spans((3 * m, 6 * m), 0, 10 * m) == [(0, 2 * m), (7 * m, 10 * m)]
    assert missing_spans((0, 10 * m), 0, 10 * m) == []
    assert missing_spans((0, 4 * m), 30_000, 10 * m + 5) == [(5 * m, 10 * m)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weight-share", "0"], "--weight-share must be in (0, 1]"),
        (["--days", "-1"], "--days must be > 0"),
        (["--start", "2024-03-01", "--end", "2024-02-01"], "--start is after --end"),
        (["--start", "yesterday"], "not an ISO-8601 time"),
        (["--days", "1"], "GET /fapi/v1/exchangeInfo: HTTP 0"),  # nothing listens on port 9
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(["--db", str(tmp_path / "x.db"), "--rest-base", "http://127.0.0.1:9", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
