"""Storage benchmark: insert rate with bar maintenance, and the dashboard read at 1 h vs 24 h.

Builds a database holding 24 h of BTCUSDT and ETHUSDT at realistic rates (about 6M and 4M
generated trades), timing the batched inserts. Before and after the 23 hours are added it times
the dashboard's read — the aligned pair frame of the last 500 bars, per timeframe — and the
naive way (read the lookback's ticks, pandas-resample them). Ratios are taken in the same run.

    python bench/storage_bench.py                  # full size (about 2–3 minutes on 2 cores)
    python bench/storage_bench.py --scale 0.1      # a tenth of the trades, for a quick look
    python bench/storage_bench.py --db postgresql://user:pw@127.0.0.1:5432/dbname
        # the same figures for PostgreSQL too, side by side with SQLite's, on the same data
        # (in a schema of its own, qd_bench_<pid>_*, dropped at the end; about 6 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from storage import Reader, Tick, Writer, describe, open_reader, open_writer

T0_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
HOUR_MS = 3_600_000
RATES = {"BTCUSDT": 6_000_000 / 86_400, "ETHUSDT": 4_000_000 / 86_400}  # trades per second
START_PX = {"BTCUSDT": 95_000.0, "ETHUSDT": 3_400.0}
BATCH = 5_000  # ticks per transaction, like the live writer under load


def generate_hour(rng: np.random.Generator, hour: int, scale: float, state: dict):
    """One hour of trades for both symbols as column arrays, in time order per symbol."""
    out = {}
    common = rng.normal(0, 1, 3600)
    for sym, rate in RATES.items():
        n = rng.poisson(rate * scale * 3600)
        ts = np.sort(rng.integers(0, HOUR_MS, n)) + T0_MS + hour * HOUR_MS
        sec = (ts - T0_MS - hour * HOUR_MS) // 1000
        own = rng.normal(0, 1, 3600)
        steps = (0.8 * common + 0.6 * own) * 2e-4  # correlated 1-second log returns
        path = state[sym + "_px"] * np.exp(np.cumsum(steps))
        state[sym + "_px"] = path[-1]
        px = np.round(path[sec] * (1 + rng.normal(0, 2e-5, n)), 2)
        ids = state[sym + "_id"] + np.arange(n)
        state[sym + "_id"] += n
        qty = np.round(rng.exponential(0.05, n) + 0.001, 3)
        out[sym] = (ids, ts, px, qty, rng.random(n) < 0.5)
    return out


def insert_hours(writer: Writer, rng, hours: range, scale: float, state: dict) -> tuple[int, float]:
    """Insert hours of data in BATCH-sized transactions; returns (ticks, seconds writing)."""
    total, spent = 0, 0.0
    for h in hours:
        data = generate_hour(rng, h, scale, state)
        n_max = max(len(v[0]) for v in data.values())
        for i in range(0, n_max, BATCH // 2):
            t = time.perf_counter()
            with writer.transaction():
                for sym, cols in data.items():
                    part = [c[i : i + BATCH // 2] for c in cols]
                    if len(part[0]):
                        total += writer.write_tick_arrays(sym, "agg", *part)
            spent += time.perf_counter() - t
    return total, spent


def time_it(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def naive_pair(reader: Reader, tf: str, bars: int, end_ms: int) -> pd.DataFrame:
    """The seed project's way: read the lookback's ticks and resample them with pandas."""
    rule = {"1s": "1s", "1m": "1min", "5m": "5min"}[tf]
    tf_ms = {"1s": 1000, "1m": 60_000, "5m": 300_000}[tf]
    start = end_ms - bars * tf_ms
    closes = {}
    for leg, sym in (("x", "BTCUSDT"), ("y", "ETHUSDT")):
        t = reader.ticks(sym, start, end_ms)
        s = pd.Series(t["price"].to_numpy(), index=pd.to_datetime(t["ts_ms"], unit="ms"))
        closes[leg] = s.resample(rule).last().ffill()
    return pd.DataFrame(closes).dropna().tail(bars)


def measure_reads(reader: Reader, end_ms: int, repeat: int, naive: bool) -> dict:
    res = {}
    for tf in ("1s", "1m", "5m"):
        frame = reader.pair_frame("BTCUSDT", "ETHUSDT", tf, limit=500)
        res[tf] = {
            "rows": len(frame),
            "read_s": time_it(
                lambda tf=tf: reader.pair_frame("BTCUSDT", "ETHUSDT", tf, limit=500), repeat
            ),
        }
        if naive:
            res[tf]["naive_s"] = time_it(lambda tf=tf: naive_pair(reader, tf, 500, end_ms), 1)
    return res


def measure_same_rows(reader: Reader, rows_at_1h: dict, repeat: int) -> dict:
    """At 24 h, the read of as many bars as existed at 1 h: isolates the cost of history."""
    return {
        tf: time_it(lambda tf=tf, n=n: reader.pair_frame("BTCUSDT", "ETHUSDT", tf, limit=n), repeat)
        for tf, n in rows_at_1h.items()
    }


def tick_object_rate(db: str | Path, n: int) -> float:
    """Insert rate through write_ticks(list[Tick]) — the live writer's path — on a fresh file."""
    rng = np.random.default_rng(1)
    ticks = [
        Tick("BTCUSDT", i, T0_MS + i * 15, float(95_000 + rng.normal()), 0.01, bool(i % 2))
        for i in range(n)
    ]
    with open_writer(db) as w:
        t = time.perf_counter()
        for i in range(0, n, BATCH):
            w.write_ticks(ticks[i : i + BATCH])
        return n / (time.perf_counter() - t)


@contextlib.contextmanager
def sqlite_target() -> Iterator[tuple[Callable[[str], str], Callable[[str], float]]]:
    """Fresh SQLite files in a temporary folder: (name → database, name → size in MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        yield (
            lambda name: str(Path(tmp) / f"{name}.db"),
            lambda name: sum(p.stat().st_size for p in Path(tmp).glob(f"{name}.db*")) / 1e6,
        )


@contextlib.contextmanager
def postgres_target(url: str) -> Iterator[tuple[Callable[[str], str], Callable[[str], float]]]:
    """Fresh schemas ``qd_bench_<pid>_<name>`` in the database at ``url``, dropped afterwards."""
    import psycopg

    from storage.postgres import close_pools

    made: list[str] = []

    def schema(name: str) -> str:
        return f"qd_bench_{os.getpid()}_{name}"

    def db(name: str) -> str:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema(name)}")
        made.append(schema(name))
        return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema(name)}"

    def size_mb(name: str) -> float:
        with psycopg.connect(url, autocommit=True) as conn:
            return (
                float(
                    conn.execute(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relkind = 'r'",
                        (schema(name),),
                    ).fetchone()[0]
                )
                / 1e6
            )

    try:
        yield db, size_mb
    finally:
        close_pools()
        with psycopg.connect(url, autocommit=True) as conn:
            for name in made:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def run(target, args) -> dict:
    """Every figure for one backend; the same seed gives every backend the same trades."""
    rng = np.random.default_rng(42)
    state = {f"{s}_px": p for s, p in START_PX.items()} | {f"{s}_id": 1 for s in RATES}
    with target as (db, size_mb):
        bench = db("bench")
        writer = open_writer(bench)
        n1, s1 = insert_hours(writer, rng, range(0, 1), args.scale, state)
        reader = open_reader(bench)
        end1 = T0_MS + HOUR_MS
        at_1h = measure_reads(reader, end1, args.repeat, naive=True)
        n2, s2 = insert_hours(writer, rng, range(1, args.hours), args.scale, state)
        end24 = T0_MS + args.hours * HOUR_MS
        at_24h = measure_reads(reader, end24, args.repeat, naive=True)
        same = measure_same_rows(reader, {tf: v["rows"] for tf, v in at_1h.items()}, args.repeat)
        writer.close()
        size = size_mb("bench")
        reader.close()
        obj_rate = tick_object_rate(db("objects"), 200_000)
    return {
        "total": n1 + n2,
        "insert": (n1 + n2) / (s1 + s2),
        "objects": obj_rate,
        "size_mb": size,
        "at_1h": at_1h,
        "at_24h": at_24h,
        "same": same,
        "ids": (state["BTCUSDT_id"] - 1, state["ETHUSDT_id"] - 1),
    }


def report(name: str, r: dict, args, insert_target: int, read_target_ms: int) -> None:
    at_1h, at_24h, same = r["at_1h"], r["at_24h"], r["same"]
    print(f"== {name}")
    print(
        f"storage benchmark: {args.hours} h, {r['total']:,} ticks "
        f"({r['ids'][0]:,} BTCUSDT, {r['ids'][1]:,} ETHUSDT), "
        f"{'tables' if 'PostgreSQL' in name else 'file'} {r['size_mb']:,.0f} MB"
    )
    print(
        f"insert (columns, {BATCH:,}-tick transactions, 1s/1m/5m bars maintained): "
        f"{r['insert']:,.0f} ticks/s   [target >= {insert_target:,}]"
    )
    print(
        f"insert (list[Tick], the live writer's path):                   "
        f"{r['objects']:,.0f} ticks/s"
    )
    print()
    print(
        "dashboard read = pair_frame(BTCUSDT, ETHUSDT, tf, limit=500), median of "
        f"{args.repeat}; naive = read lookback ticks + pandas resample"
    )
    print(
        f"{'tf':>3} {'rows 1h/24h':>11} {'read 1h ms':>11} {'read 24h ms':>12} {'24h/1h':>7} "
        f"{'same rows':>10} {'naive 24h ms':>13} {'naive/read':>11}"
    )
    for tf in ("1s", "1m", "5m"):
        a, b = at_1h[tf], at_24h[tf]
        rows = f"{a['rows']}/{b['rows']}"
        print(
            f"{tf:>3} {rows:>11} {a['read_s'] * 1e3:>11.2f} {b['read_s'] * 1e3:>12.2f} "
            f"{b['read_s'] / a['read_s']:>7.2f} {same[tf] / a['read_s']:>10.2f} "
            f"{b['naive_s'] * 1e3:>13.0f} {b['naive_s'] / b['read_s']:>10.0f}x"
        )
    print(
        "24h/1h: the 500-bar read at 24 h over the one at 1 h (1m and 5m return more rows at "
        "24 h);\nsame rows: at 24 h, reading as many bars as existed at 1 h, over the 1 h read."
    )
    print(f"targets: read <= {read_target_ms} ms at 24 h; 24h/1h <= 1.5; naive/read >= 20x at 24 h")
    print()


def side_by_side(results: dict[str, dict]) -> None:
    names = list(results)
    print("== side by side (same trades, same run)")
    print(f"{'':<44}" + "".join(f"{n:>14}" for n in names))
    rows = [
        ("ticks stored", lambda r: f"{r['total']:,}"),
        ("size on disk, MB", lambda r: f"{r['size_mb']:,.0f}"),
        ("insert, columns, ticks/s", lambda r: f"{r['insert']:,.0f}"),
        ("insert, list[Tick], ticks/s", lambda r: f"{r['objects']:,.0f}"),
    ]
    for tf in ("1s", "1m", "5m"):
        rows.append(
            (
                f"dashboard read {tf} at 1 h, ms",
                lambda r, tf=tf: f"{r['at_1h'][tf]['read_s'] * 1e3:.2f}",
            )
        )
        rows.append(
            (
                f"dashboard read {tf} at 24 h, ms",
                lambda r, tf=tf: f"{r['at_24h'][tf]['read_s'] * 1e3:.2f}",
            )
        )
    for label, fn in rows:
        print(f"{label:<44}" + "".join(f"{fn(results[n]):>14}" for n in names))
    print(
        "targets: SQLite insert >= 150,000 ticks/s, read <= 30 ms; "
        "PostgreSQL insert >= 50,000 ticks/s, read <= 50 ms (at 24 h)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the realistic rates")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=15, help="repetitions of each read")
    ap.add_argument(
        "--db",
        help="also run against this PostgreSQL database (postgresql://...), "
        "in a schema of its own that is dropped at the end",
    )
    args = ap.parse_args()
    results = {"SQLite": run(sqlite_target(), args)}
    report("SQLite (a file in a temporary folder)", results["SQLite"], args, 150_000, 30)
    if args.db:
        if not args.db.startswith(("postgresql://", "postgres://")):
            ap.error("--db takes a postgresql:// URL (SQLite always runs)")
        results["PostgreSQL"] = run(postgres_target(args.db), args)
        report(f"PostgreSQL ({describe(args.db)})", results["PostgreSQL"], args, 50_000, 50)
        side_by_side(results)


if __name__ == "__main__":
    main()
