"""Benchmark of the universe scan against the naive statsmodels loop, measured in one run.

    python bench/universe.py [--symbols 500] [--bars 8064] [--planted 10] [--naive-pairs 20]
                         [--db FILE] [--no-growth]

1. Builds (or reuses, with ``--db``) a SQLite file of a seeded synthetic universe: random-walk
   closes with ``--planted`` cointegrated pairs, one 5m bar per symbol per 5 minutes (written
   as klines, as ``python -m storage import`` or the kline fetcher store them).
2. End to end: runs ``python -m analytics universe --tf 5m --out pairs.csv`` (the CLI, in a
   child process) and reports its wall time, its stage times, its peak memory (max RSS of the
   child), and where the planted pairs rank.
3. Naive: the same per-pair numbers with statsmodels (``coint`` with fixed K, OLS on the
   formation period, ``adfuller`` on the validation spread) and today's ``scan_pairs``, timed
   on ``--naive-pairs`` random pairs and scaled to every ordered pair.
4. Growth: ``scan_universe`` in memory for 100 / 300 / 500 symbols × 2 and 28 days of 5m and
   1m bars, and reading the bars from storage for 100 / 300 / 500 symbols.

Prints Markdown tables. Numbers are wall-clock on this machine; OPENBLAS_NUM_THREADS is
respected (set it to 1 to measure one core).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS
from statsmodels.tools import add_constant
from statsmodels.tsa.stattools import adfuller, coint

from analytics.multi import scan_pairs
from analytics.scan import DEFAULT_LAGS, scan_universe
from storage import open_reader, open_writer
from storage.universe import read_universe

ROOT = Path(__file__).resolve().parents[1]

T0_MS = 1_704_067_200_000  # 2024-01-01T00:00Z
STEP_5M = 300_000


def synthetic(n_sym: int, n_bars: int, planted: int, seed: int = 11) -> pd.DataFrame:
    """Closes of ``n_sym`` symbols; symbols 2k and 2k+1 (k < planted) are cointegrated.

    Random walks in log price (0.3 % per bar); a planted x is ``a + b·y + u`` with u an AR(1)
    (φ = 0.95) whose scale is 0.5 % of the price level.
    """
    rng = np.random.default_rng(seed)
    level = np.exp(rng.uniform(0.0, 9.0, n_sym))
    logp = np.cumsum(rng.normal(0.0, 0.003, (n_bars, n_sym)), axis=0)
    prices = level * np.exp(logp)
    for k in range(planted):
        y = prices[:, 2 * k + 1]
        u = np.zeros(n_bars)
        shocks = rng.normal(0.0, 0.005 * y.mean() * np.sqrt(1 - 0.95**2), n_bars)
        for t in range(1, n_bars):
            u[t] = 0.95 * u[t - 1] + shocks[t]
        b = rng.uniform(0.5, 3.0)
        prices[:, 2 * k] = 0.2 * y.mean() + b * y + u
    cols = [f"P{k:03d}USDT" if k < 2 * planted else f"S{k:03d}USDT" for k in range(n_sym)]
    return pd.DataFrame(prices, columns=cols)


def build_db(path: Path, prices: pd.DataFrame) -> float:
    """Store every symbol's closes as one kline per 5 minutes; returns seconds taken."""
    t0 = time.perf_counter()
    n = len(prices)
    ot = T0_MS + STEP_5M * np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(3)
    with open_writer(path) as w:
        for sym in prices.columns:
            c = prices[sym].to_numpy()
            vol = rng.uniform(10.0, 1000.0, n)
            rows = pd.DataFrame(
                {
                    "open_time": ot,
                    "open": c,
                    "high": c,
                    "low": c,
                    "close": c,
                    "volume": vol,
                    "close_time": ot + 59_999,
                    "quote_volume": vol * c,
                    "count": np.full(n, 10),
                    "taker_buy_volume": vol / 2,
                }
            )
            w.write_klines(sym, rows)
    return time.perf_counter() - t0


def naive_pair(x: np.ndarray, y: np.ndarray, lags: int, n_val: int) -> None:
    """The scan's per-pair numbers, one statsmodels call after another."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coint(x, y, trend="c", maxlag=lags, autolag=None)
        f = OLS(x[:-n_val], add_constant(y[:-n_val])).fit()
        adfuller(x[-n_val:] - f.params[1] * y[-n_val:], maxlag=lags, autolag=None)
        np.corrcoef(np.diff(np.log(x)), np.diff(np.log(y)))


def time_naive(prices: pd.DataFrame, n_pairs: int, lags: int) -> tuple[float, float, float]:
    """Seconds per ordered pair: (statsmodels loop wall, its CPU time, today's ``scan_pairs``)."""
    rng = np.random.default_rng(5)
    syms = list(prices.columns)
    n_val = round(0.3 * len(prices))
    picks = [tuple(rng.choice(len(syms), 2, replace=False)) for _ in range(n_pairs)]
    t0, c0 = time.perf_counter(), time.process_time()
    for i, j in picks:
        naive_pair(prices.iloc[:, i].to_numpy(), prices.iloc[:, j].to_numpy(), lags, n_val)
    per_naive = (time.perf_counter() - t0) / n_pairs
    cpu_naive = (time.process_time() - c0) / n_pairs
    t0 = time.perf_counter()
    k = max(2, n_pairs // 4)
    for i, j in picks[:k]:
        scan_pairs(prices[[syms[i], syms[j]]], 500)
    per_today = (time.perf_counter() - t0) / k
    return per_naive, cpu_naive, per_today


def end_to_end(db: Path, out_csv: Path) -> tuple[float, float, dict, float]:
    """Run the CLI in a child process: (wall s, CPU s, JSON summary, peak RSS in MB)."""
    cmd = [sys.executable, "-m", "analytics", "universe", "--db", str(db), "--tf", "5m"]
    cmd += ["--out", str(out_csv), "--top", "5", "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"CLI failed: {proc.stderr.strip()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu, json.loads(proc.stdout), after.ru_maxrss / 1024.0


def planted_ranks(csv: Path, planted: int) -> list[int]:
    table = pd.read_csv(csv, usecols=["x", "y"])
    want = {(f"P{2 * k:03d}USDT", f"P{2 * k + 1:03d}USDT") for k in range(planted)}
    want |= {(b, a) for a, b in want}
    return [
        i + 1 for i, (x, y) in enumerate(zip(table["x"], table["y"], strict=True)) if (x, y) in want
    ]


def growth(planted: int) -> list[str]:
    lines = [
        "| symbols | bars | ordered pairs | wall (s) | CPU (s) | CPU µs per pair |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for bars, label in (
        (576, "2 d of 5m"),
        (8064, "28 d of 5m"),
        (2880, "2 d of 1m"),
        (40320, "28 d of 1m"),
    ):
        for n_sym in (100, 300, 500):
            prices = synthetic(n_sym, bars, planted)
            t0, c0 = time.perf_counter(), time.process_time()
            scan_universe(prices)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            pairs = n_sym * (n_sym - 1)
            lines.append(
                f"| {n_sym} | {bars:,} ({label}) | {pairs:,} | {wall:.2f} | {cpu:.2f} "
                f"| {cpu / pairs * 1e6:.1f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def read_growth(db: Path, symbols: list[str]) -> list[str]:
    lines = ["| symbols read | wall (s) | CPU (s) |", "|---:|---:|---:|"]
    for n_sym in (100, 300, 500):
        if n_sym > len(symbols):
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        with open_reader(db) as r:
            read_universe(r, "5m", symbols[:n_sym])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        lines.append(f"| {n_sym} | {wall:.2f} | {cpu:.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--bars", type=int, default=8064, help="5m bars (8,064 = 28 days)")
    ap.add_argument("--planted", type=int, default=10, help="cointegrated pairs planted")
    ap.add_argument("--naive-pairs", type=int, default=20, help="pairs timed in the naive loop")
    ap.add_argument("--db", help="reuse (or create) this SQLite file")
    ap.add_argument("--no-growth", action="store_true", help="skip the growth table")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    db = Path(args.db) if args.db else tmp / "universe.db"
    prices = synthetic(args.symbols, args.bars, args.planted)
    build_s = build_db(db, prices) if not db.exists() else float("nan")
    wall, cpu, summary, rss_mb = end_to_end(db, tmp / "pairs.csv")
    ranks = planted_ranks(tmp / "pairs.csv", args.planted)
    pairs = summary["pairs_tested"]
    per_naive, cpu_naive, per_today = time_naive(prices, args.naive_pairs, DEFAULT_LAGS)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"machine: {os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={threads}")
    print(f"database build (setup, not timed in the scan): {build_s:.1f} s\n")
    print("| case | value |\n|---|---:|")
    print(f"| symbols × 5m bars | {summary['symbols']} × {summary['bars']:,} |")
    print(f"| ordered pairs tested | {pairs:,} |")
    print(f"| CLI end to end, wall (child process, incl. imports and CSV) | {wall:.1f} s |")
    print(f"| CLI end to end, CPU time (user + sys) | {cpu:.1f} s |")
    for k, v in summary["seconds"].items():
        print(f"| … {k}: wall / CPU | {v:.1f} s / {summary['cpu_seconds'][k]:.1f} s |")
    print(f"| peak memory (max RSS of the CLI process) | {rss_mb:,.0f} MB |")
    sampled = args.naive_pairs
    print(f"| naive statsmodels loop, per pair (sampled {sampled}) | {per_naive * 1e3:.1f} ms |")
    print(f"| naive loop scaled to all pairs | {per_naive * pairs:,.0f} s |")
    print(f"| today's scan_pairs, per pair | {per_today * 1e3:.1f} ms |")
    print(f"| speed-up vs naive (end to end, wall) | {per_naive * pairs / wall:,.0f}× |")
    print(f"| speed-up vs naive (end to end, CPU time) | {cpu_naive * pairs / cpu:,.0f}× |")
    scan_s = summary["seconds"]["scan"]
    print(f"| speed-up vs naive (scan stage) | {per_naive * pairs / scan_s:,.0f}× |")
    top1 = max(1, int(0.01 * pairs))
    found = sum(r <= top1 for r in ranks)
    worst = max(ranks) if ranks else "-"
    print(
        f"| planted ordered pairs in the top 1 % ({top1:,}) | {found} of {2 * args.planted} "
        f"(worst rank {worst}) |"
    )
    print("\nReading bars from storage (5m):\n")
    print("\n".join(read_growth(db, list(prices.columns))))
    if not args.no_growth:
        print("\nCost growth, scan_universe in memory (K = 1):\n")
        print("\n".join(growth(args.planted)))


if __name__ == "__main__":
    main()
