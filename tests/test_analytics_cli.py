"""``python -m analytics``: JSON summaries and CSV tables from a real SQLite file of real klines."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analytics.__main__ import main
from tests.conftest import STORAGE_REAL_DIR

KLINES = STORAGE_REAL_DIR / "binance_usdm_klines_1m"
REPO = Path(__file__).resolve().parents[1]
BARS = 3000


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    storage = pytest.importorskip("storage", reason="storage package not available")
    path = tmp_path_factory.mktemp("cli") / "bars.db"
    files = {s: KLINES / f"{s}-1m-2024-02.csv" for s in ("AVAXUSDT", "NEARUSDT", "ALGOUSDT")}
    if not all(p.exists() for p in files.values()):
        pytest.skip("real kline files not found (shared/ not beside the repo?)")
    with storage.open_writer(path) as w:
        for sym, p in files.items():
            w.write_klines(sym, pd.read_csv(p, nrows=BARS))
    return path


def pair_args(db, *more, x="AVAXUSDT", y="NEARUSDT", tf="1m") -> list[str]:
    """``--db DB --x X --y Y --tf TF`` then ``more``: the command line most tests start from."""
    return ["--db", str(db), "--x", x, "--y", y, "--tf", tf, *(str(a) for a in more)]


def run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_summary_json_and_per_bar_csv(db, tmp_path, capsys):
    out_csv = tmp_path / "pair.csv"
    code, js, err = run(capsys, *pair_args(db, "--window", 500, "--out", out_csv, x="avaxusdt"))
    assert code == 0 and err == ""
    for key in (
        "beta",
        "alpha",
        "r2",
        "coint_pvalue",
        "half_life_bars",
        "hurst",
        "zscore_last",
        "corr_last",
        "nobs",
    ):
        assert key in js
    assert set(js["adf"]) >= {"stat", "pvalue", "lags", "nobs", "critical"}
    assert set(js["adf"]["critical"]) == {"1%", "5%", "10%"}
    assert js["nobs"] == BARS and js["bars_needed"] == 0 and js["x"] == "AVAXUSDT"
    assert js["start"] == "2024-02-01T00:00:00.000Z"
    assert 0 <= js["coint_pvalue"] <= 1 and isinstance(js["zscore_last"], float)
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == BARS
    assert list(rows[0])[:8] == ["time", "x", "y", "alpha", "beta", "spread", "zscore", "corr"]
    assert rows[0]["time"] == "2024-02-01T00:00:00Z" and rows[1]["time"] == "2024-02-01T00:01:00Z"
    assert rows[0]["beta"] == "" and rows[0]["zscore"] == "" and rows[0]["corr"] == ""
    assert rows[499]["zscore"] != "" and rows[499]["corr"] == "" and rows[500]["corr"] != ""
    assert float(rows[-1]["zscore"]) == pytest.approx(js["zscore_last"], rel=1e-12)


@pytest.mark.parametrize("method", ["kalman", "huber", "theilsen"])
def test_summary_other_methods(db, capsys, method):
    args = pair_args(db, "--window", 300, "--method", method, "--fit-last", 50)
    code, js, _ = run(capsys, *args)
    assert code == 0 and js["method"] == method and js["zscore_last"] is not None


def test_start_end_select_the_lookback(db, capsys):
    args = pair_args(db, "--window", 50, "--start", "2024-02-01T10:00")
    code, js, _ = run(capsys, *args, "--end", "2024-02-01T11:59:00Z")
    assert code == 0 and js["nobs"] == 120
    assert js["start"] == "2024-02-01T10:00:00.000Z" and js["end"] == "2024-02-01T11:59:00.000Z"


def test_warmup_is_reported_not_an_error(db, capsys):
    code, js, _ = run(capsys, *pair_args(db, "--window", 500, "--end", "2024-02-01T00:09:00Z"))
    assert code == 0 and js["nobs"] == 10 and js["bars_needed"] == 491
    assert js["zscore_last"] is None and js["beta"] is None
    assert "at least" in js["stationarity_error"]


def test_5m_bars_derived_by_storage(db, capsys):
    code, js, _ = run(capsys, *pair_args(db, "--window", 100, tf="5m"))
    assert code == 0 and js["nobs"] == BARS // 5


def test_backtest_command(db, tmp_path, capsys):
    out_csv = tmp_path / "equity.csv"
    code, js, _ = run(
        capsys,
        "backtest",
        "--db",
        db,
        "--x",
        "AVAXUSDT",
        "--y",
        "NEARUSDT",
        "--tf",
        "1m",
        "--window",
        300,
        "--entry",
        1.5,
        "--stop",
        4,
        "--out",
        out_csv,
    )
    assert code == 0
    for key in ("total_pnl", "n_trades", "win_rate", "max_drawdown", "sharpe", "trades"):
        assert key in js
    assert js["n_trades"] == len(js["trades"]) > 0
    assert js["trades"][0]["entry_time"].endswith("Z")
    table = pd.read_csv(out_csv)
    assert list(table.columns) == ["time", "x", "y", "beta", "zscore", "position", "equity"]
    assert table["equity"].iloc[-1] == pytest.approx(js["total_pnl"])


def test_scan_command(db, tmp_path, capsys):
    out_csv = tmp_path / "scan.csv"
    code, js, _ = run(
        capsys,
        "scan",
        "--db",
        db,
        "--symbols",
        "AVAXUSDT,NEARUSDT",
        "ALGOUSDT",
        "--tf",
        "1m",
        "--window",
        300,
        "--out",
        out_csv,
    )
    assert code == 0 and len(js["pairs"]) == 3
    pvals = [p["coint_pvalue"] for p in js["pairs"]]
    assert pvals == sorted(pvals)
    assert js["correlation"]["AVAXUSDT"]["AVAXUSDT"] == 1.0
    assert len(pd.read_csv(out_csv)) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (pair_args("{missing}", "--window", "5", x="A", y="B"), "no database"),
        (pair_args("{db}", "--window", "5", y="NOPE"), "NOPE"),
        (pair_args("{db}", "--window", "5", tf="2m"), "--tf"),
        (pair_args("{db}", "--window", "1"), "window"),
        (pair_args("{db}", "--window", "5", "--start", "yesterday"), "ISO-8601"),
        (pair_args("{db}", "--window", "5", "--start", "2030-01-01"), "no 1m bars"),
        (pair_args("{db}"), "--window"),
        (
            ["scan", "--db", "{db}", "--symbols", "AVAXUSDT", "--tf", "1m", "--window", "5"],
            "two different symbols",
        ),
    ],
)
def test_errors_are_one_line_and_exit_2(db, tmp_path, capsys, args, message):
    args = [a.format(db=db, missing=tmp_path / "none.db") for a in args]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("analytics: error: ") and message in err
    assert "Traceback" not in err


def run_module(*args) -> subprocess.CompletedProcess:
    """``python -m analytics ARGS`` as a process, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "analytics", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_module_entry_point_runs_as_a_process(db):
    proc = run_module(*pair_args(db, "--window", "200"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nobs"] == BARS
    bad = run_module(*pair_args(str(db) + ".missing", "--window", "5", x="A", y="B"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
