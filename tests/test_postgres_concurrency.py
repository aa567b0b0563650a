"""PostgreSQL under concurrency: two writers of the same trades, readers while writing, and
connections that drop. Every writer and reader here has connections of its own to a real
server, so the database sees them exactly as it would see separate processes.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from storage import ConnectionLostError, IdKind, Tick, open_reader, open_writer, write_with_retry
from tests.conftest import real_ticks_interleaved

pytestmark = pytest.mark.postgres
DEADLINE_S = 60.0


def _terminate(admin_url: str, pid: int) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        deadline = time.monotonic() + 10
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "backend did not go away"
            time.sleep(0.01)


def test_two_writers_of_the_same_trades_store_and_count_each_once(
    pg_url: str, tmp_path: Path, storage_hft_trades
) -> None:
    """Two collectors receive the same trades in different batches at the same time."""
    ticks = real_ticks_interleaved(storage_hft_trades)
    rng = np.random.default_rng(3)
    plans = []
    for size in (97, 250):  # different batch edges, so partial bars of one bar interleave
        order = np.arange(len(ticks))
        order[: len(order) // 2] = rng.permutation(order[: len(order) // 2])  # some disorder
        plans.append([[ticks[i] for i in order[k : k + size]] for k in range(0, len(order), size)])
    open_writer(pg_url).close()  # schema first, so both threads start writing at once
    inserted = [0, 0]
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def collector(k: int) -> None:
        try:
            with open_writer(pg_url) as w:
                go.wait()
                for batch in plans[k]:
                    inserted[k] += w.write_ticks(batch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=collector, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert sum(inserted) == len(ticks), inserted  # each trade was new for exactly one writer
    with open_writer(tmp_path / "one.db") as w:
        w.write_ticks(ticks)
    with open_reader(pg_url) as pg, open_reader(tmp_path / "one.db") as ref:
        for symbol in storage_hft_trades:
            assert len(pg.ticks(symbol)) == len(storage_hft_trades[symbol])
            for tf in ("1s", "1m", "5m"):
                a, b = pg.bars(symbol, tf), ref.bars(symbol, tf)
                exact = ["open_time_ms", "open", "high", "low", "close", "trades"]
                pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
                # Sums were added in another order; equal to a few ulps.
                pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


def test_writers_of_two_symbols_in_opposite_orders_do_not_deadlock(pg_url: str) -> None:
    open_writer(pg_url).close()
    errors: list[BaseException] = []

    def run(k: int) -> None:
        syms = ["AAAUSDT", "BBBUSDT"] if k == 0 else ["BBBUSDT", "AAAUSDT"]
        try:
            with open_writer(pg_url) as w:
                for i in range(60):
                    w.write_ticks(
                        [Tick(s, i * 10 + k, 1_000 * i, 1.0, 1.0, False, IdKind.AGG) for s in syms]
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert errors == []
    with open_reader(pg_url) as r:
        assert r.bars("AAAUSDT", "1m")["trades"].sum() == 120
        assert r.bars("BBBUSDT", "5m")["trades"].sum() == 120


def test_many_readers_while_the_writer_writes(pg_url: str, storage_hft_trades) -> None:
    ticks = real_ticks_interleaved(storage_hft_trades)
    batches = [ticks[i : i + 500] for i in range(0, len(ticks), 500)]
    total = len(storage_hft_trades["BTCUSDT"])
    writer = open_writer(pg_url)
    writer.write_ticks([next(t for t in ticks if t.symbol == s) for s in storage_hft_trades])
    done = threading.Event()
    errors: list[str] = []
    reads = [0] * 4
    reader = open_reader(pg_url, pool_max_size=4)  # one Reader, shared by four threads

    def read(k: int) -> None:
        seen = 0
        try:
            while True:
                last = done.is_set()
                pf = reader.pair_frame("BTCUSDT", "ETHUSDT", ("1s", "1m")[k % 2], limit=500)
                if pf[["x", "y"]].isna().any().any():
                    errors.append("NaN in pair frame")
                n = int(reader.bars("BTCUSDT", "1s")["trades"].sum())
                if n < seen:
                    errors.append(f"trade count went back from {seen} to {n}")
                seen = n
                reads[k] += 1
                if last:
                    if n != total:
                        errors.append(f"final read saw {n} of {total}")
                    return
        except Exception as exc:  # any error is the finding
            errors.append(repr(exc))

    threads = [threading.Thread(target=read, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    try:
        for b in batches:
            writer.write_ticks(b)
    finally:
        done.set()
        for t in threads:
            t.join(DEADLINE_S)
        writer.close()
    assert errors == []
    assert all(n >= 2 for n in reads), reads


def test_a_dropped_writer_connection_is_retried_and_nothing_is_lost(
    pg_url: str, pg_database: str
) -> None:
    w = open_writer(pg_url)
    try:
        w.write_ticks([Tick("BTCUSDT", 1, 1_000, 10.0, 1.0, False, IdKind.AGG)])
        _terminate(pg_database, w._conn.info.backend_pid)
        batch = [
            Tick("BTCUSDT", i, 1_000 + i, 10.0 + i, 1.0, False, IdKind.AGG) for i in range(2, 50)
        ]
        with pytest.raises(ConnectionLostError, match="connection to the database lost"):
            w.write_ticks(batch)
        # The next call reconnects by itself; writing the same batch again is harmless.
        assert w.write_ticks(batch[:1]) == 1
        retries: list[float] = []
        _terminate(pg_database, w._conn.info.backend_pid)
        assert (
            write_with_retry(
                lambda: w.write_ticks(batch),
                itertools.repeat(0.0),
                on_retry=lambda exc, d: retries.append(d),
            )
            == 47
        )
        assert retries == [0.0]
        assert w.write_ticks(batch) == 0
        # A drop inside a grouped transaction rolls back the whole group.
        with pytest.raises(ConnectionLostError), w.transaction():
            w.write_ticks([Tick("BTCUSDT", 100, 5_000, 1.0, 1.0, False, IdKind.AGG)])
            _terminate(pg_database, w._conn.info.backend_pid)
            w.write_ticks([Tick("BTCUSDT", 101, 5_001, 1.0, 1.0, False, IdKind.AGG)])
        stop = threading.Event()
        stop.set()
        assert (
            write_with_retry(
                lambda: (_ for _ in ()).throw(ConnectionLostError("down")),
                iter([5.0]),
                should_stop=stop.is_set,
            )
            is None
        )
    finally:
        w.close()
    with open_reader(pg_url) as r:
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == list(range(1, 50))
        assert r.bars("BTCUSDT", "1m")["trades"].tolist() == [49]


def test_a_dropped_reader_connection_is_replaced_transparently(
    pg_url: str, pg_database: str
) -> None:
    with open_writer(pg_url) as w:
        w.write_ticks([Tick("BTCUSDT", 1, 1_000, 10.0, 1.0, False, IdKind.AGG)])
    r = open_reader(pg_url, pool_max_size=1)
    assert len(r.bars("BTCUSDT", "1s")) == 1
    with r._pool.connection() as conn:
        pid = conn.info.backend_pid
    _terminate(pg_database, pid)
    assert len(r.bars("BTCUSDT", "1s")) == 1
    assert (
        len(r.pair_frame("BTCUSDT", "ETHUSDT", "1s")) == 0
        if "ETHUSDT" in r.symbols()
        else r.symbols() == ["BTCUSDT"]
    )
