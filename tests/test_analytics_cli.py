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

KLINES = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "real"
    / ("binance_usdm_klines_1m")
)
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


def run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_summary_json_and_per_bar_csv(db, tmp_path, capsys):
    out_csv = tmp_path / "pair.csv"
    code, js, err = run(
        capsys,
        "--db",
        db,
        "--x",
        "avaxusdt",
        "--y",
        "NEARUSDT",
        "--tf",
        "1m",
        "--window",
        500,
        "--out",
        out_csv,
    )
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
    code, js, _ = run(
        capsys,
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
        "--method",
        method,
        "--fit-last",
        50,
    )
    assert code == 0 and js["method"] == method and js["zscore_last"] is not None


def test_start_end_select_the_lookback(db, capsys):
    code, js, _ = run(
        capsys,
        "--db",
        db,
        "--x",
        "AVAXUSDT",
        "--y",
        "NEARUSDT",
        "--tf",
        "1m",
        "--window",
        50,
        "--start",
        "2024-02-01T10:00",
        "--end",
        "2024-02-01T11:59:00Z",
    )
    assert code == 0 and js["nobs"] == 120
    assert js["start"] == "2024-02-01T10:00:00.000Z" and js["end"] == "2024-02-01T11:59:00.000Z"


def test_warmup_is_reported_not_an_error(db, capsys):
    code, js, _ = run(
        capsys,
        "--db",
        db,
        "--x",
        "AVAXUSDT",
        "--y",
        "NEARUSDT",
        "--tf",
        "1m",
        "--window",
        500,
        "--end",
        "2024-02-01T00:09:00Z",
    )
    assert code == 0 and js["nobs"] == 10 and js["bars_needed"] == 491
    assert js["zscore_last"] is None and js["beta"] is None
    assert "at least" in js["stationarity_error"]


def test_5m_bars_derived_by_storage(db, capsys):
    code, js, _ = run(
        capsys, "--db", db, "--x", "AVAXUSDT", "--y", "NEARUSDT", "--tf", "5m", "--window", 100
    )
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
        (
            ["--db", "{missing}", "--x", "A", "--y", "B", "--tf", "1m", "--window", "5"],
            "no database",
        ),
        (["--db", "{db}", "--x", "AVAXUSDT", "--y", "NOPE", "--tf", "1m", "--window", "5"], "NOPE"),
        (
            ["--db", "{db}", "--x", "AVAXUSDT", "--y", "NEARUSDT", "--tf", "2m", "--window", "5"],
            "--tf",
        ),
        (
            ["--db", "{db}", "--x", "AVAXUSDT", "--y", "NEARUSDT", "--tf", "1m", "--window", "1"],
            "window",
        ),
        (
            [
                "--db",
                "{db}",
                "--x",
                "AVAXUSDT",
                "--y",
                "NEARUSDT",
                "--tf",
                "1m",
                "--window",
                "5",
                "--start",
                "yesterday",
            ],
            "ISO-8601",
        ),
        (
            [
                "--db",
                "{db}",
                "--x",
                "AVAXUSDT",
                "--y",
                "NEARUSDT",
                "--tf",
                "1m",
                "--window",
                "5",
                "--start",
                "2030-01-01",
            ],
            "no 1m bars",
        ),
        (["--db", "{db}", "--x", "AVAXUSDT", "--y", "NEARUSDT", "--tf", "1m"], "--window"),
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


def test_module_entry_point_runs_as_a_process(db):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analytics",
            "--db",
            str(db),
            "--x",
            "AVAXUSDT",
            "--y",
            "NEARUSDT",
            "--tf",
            "1m",
            "--window",
            "200",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nobs"] == BARS
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "analytics",
            "--db",
            str(db) + ".missing",
            "--x",
            "A",
            "--y",
            "B",
            "--tf",
            "1m",
            "--window",
            "5",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
