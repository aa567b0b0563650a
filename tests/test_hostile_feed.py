"""Issue 14: a hostile or broken feed, or a full disk, never stops the desk.

Every test runs the real collector (``FeedService``) against the local Binance look-alike
replaying real BTCUSDT/ETHUSDT trades, with one hostile behaviour switched on
(``Faults.hostile`` / ``Faults.inject``), into a real SQLite file, and checks that the
genuine trades are all stored and the status tells the truth.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

from config import SAMPLE_RECORDING
from ingestion.clock import Clock
from ingestion.spill import restore_spill, spill_path, write_spill
from ingestion.status import FeedState
from ingestion.suspect import SuspectIds, Verdict
from ingestion.writer import TickWriter
from replay import FakeBinance, load_recording
from replay.faults import NESTED_FRAME, Faults, hostile_trade
from storage import IdKind, Tick, Writer, open_reader, open_writer
from tests.conftest import killed_on_exit, start_collector, stop_with_sigint, wait_for
from tests.test_ingestion_feed import (
    _ids_of,
    fast_settings,
    gaps,
    start,
    stored_ids,
    wait_complete,
)

ROOT = Path(__file__).resolve().parents[1]
SPEED = 30.0
BOTH = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The first 3000 real trade lines of the sample (43 s; ~800 BTC and ~600 ETH aggregates)."""
    with gzip.open(SAMPLE_RECORDING, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(3000)]
    path = tmp_path_factory.mktemp("rec") / "short.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    return load_recording([path])


def _states(service) -> dict[str, FeedState]:
    return {s: st.state for s, st in service.status().items()}


# --------------------------------------------------------------------------- 1. nested JSON
def test_deeply_nested_frame_is_rejected_and_the_feed_goes_on(recording, tmp_path, caplog):
    db = tmp_path / "nested.db"
    faults = Faults(inject=[("BTCUSDT", 20, NESTED_FRAME), ("ETHUSDT", 20, NESTED_FRAME)])
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, BOTH, fast_settings(server))
        with caplog.at_level(logging.WARNING, logger="ingestion.listener"):
            wait_complete(server, db, BOTH)
        status = service.status()
        assert service.stop(timeout_s=10)
    assert server.stats.hostile_frames == 2
    for symbol in BOTH:
        assert status[symbol].state is not FeedState.ERROR
        assert status[symbol].rejected == 1
        # "unparseable" (the parser's RecursionError, caught by the feed) or the parser's own
        # depth guard's reason: either way one reject, and the feed goes on.
        assert sum(service.reject_reasons()[symbol].values()) == 1
    lines = [r.getMessage() for r in caplog.records if "rejected message" in r.getMessage()]
    assert len(lines) == 2  # one line per frame
    assert not any(r.exc_info for r in caplog.records)  # one line each, no traceback


# --------------------------------------------------------------------------- 2. writer isolation
def _ticks(symbol: str, ids) -> list[Tick]:
    return [Tick(symbol, i, 1_700_000_000_000 + i, 100.0 + i, 1.0, False) for i in ids]


def test_a_tick_storage_refuses_is_rejected_alone(database, caplog):
    """An id past int64 in a batch of two symbols: only that tick is refused, logged once
    (both engines: the refusal happens before or inside the database alike)."""
    bad = [Tick("ETHUSDT", 2**64, 1_700_000_000_000, 3000.0, 1.0, False)]
    worse = [Tick("ETHUSDT", 2**65, 1_700_000_000_000, 3000.0, 1.0, False)]
    with open_writer(database) as storage:
        writer = TickWriter(storage, batch_latency_s=0.2, retry_s=0.05).start()
        with caplog.at_level(logging.ERROR, logger="ingestion.writer"):
            writer.put_many(_ticks("BTCUSDT", range(1, 101)))
            writer.put_many(_ticks("ETHUSDT", range(1, 51)) + bad + _ticks("ETHUSDT", [51]))
            writer.put_many(worse + _ticks("ETHUSDT", range(52, 101)))
            assert writer.stop(timeout_s=10)
        stats = writer.stats()
    assert _ids_of(database, "BTCUSDT") == list(range(1, 101))
    assert _ids_of(database, "ETHUSDT") == list(range(1, 101))
    (reason, count), *more = writer.rejected("ETHUSDT").items()  # e.g. storage_OverflowError
    assert reason.startswith("storage_") and count == 2 and not more
    assert writer.rejected("BTCUSDT") == {} and stats.rejected == 2 and stats.failing_s == 0
    refused = [r for r in caplog.records if "refused tick" in r.getMessage()]
    assert len(refused) == 1 and str(2**64) in refused[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


def test_a_failing_commit_hook_does_not_stop_the_writer(recording, tmp_path):
    db = tmp_path / "hook.db"

    def broken_monitor(ticks, wall_s) -> None:
        raise RuntimeError("monitor down")

    with FakeBinance(recording, speed=SPEED, preroll_s=5) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server), on_commit=broken_monitor)
        wait_complete(server, db, ["BTCUSDT"])
        assert service.status()["BTCUSDT"].state is not FeedState.ERROR
        assert service.stop(timeout_s=10)
    assert "on_commit hook failed" in service.writer_status().last_error


# --------------------------------------------------------------------------- 7. disk full
def _fill_up(storage: Writer) -> None:
    """Make the database "full": SQLite's own limit (no root, no tmpfs) gives the same
    SQLITE_FULL "database or disk is full" a full filesystem gives."""
    with storage._lock:  # the test reaches into the writer's connection on purpose
        pages = storage._conn.execute("PRAGMA page_count").fetchone()[0]
        storage._conn.execute(f"PRAGMA max_page_count = {pages}")


def test_disk_full_shows_in_status_spills_on_stop_and_restart_stores_it(
    recording, tmp_path, caplog
):
    db = tmp_path / "full.db"
    side = spill_path(db)
    with FakeBinance(recording, speed=SPEED / 3, preroll_s=5) as server:
        storage = open_writer(db)
        try:
            service = start(storage, BOTH, fast_settings(server, storage_retry_s=0.1))
            wait_for(lambda: stored_ids(db, "BTCUSDT"), 10, "first ticks stored")
            _fill_up(storage)
            failing = wait_for(
                lambda: all(s.state is FeedState.ERROR for s in service.status().values()),
                15,
                "both symbols in state error while nothing is stored",
            )
            assert failing
            status = service.status()["ETHUSDT"]
            assert "nothing stored" in status.last_error and "full" in status.last_error
            assert "error='nothing stored" in status.line()
            queued_before = service.writer_status().queued
            with caplog.at_level(logging.ERROR, logger="ingestion.writer"):
                assert service.stop(timeout_s=2) is False  # could not drain: says so
        finally:
            storage.close()
        lines = side.read_text().splitlines()
        said = [r.getMessage() for r in caplog.records if "did not drain" in r.getMessage()]
        assert len(said) == 1 and f"not stored: {len(lines)} ticks" in said[0]
        assert service.writer_status().unstored in said[0]  # what the collector prints
        assert str(side) in said[0] and queued_before >= 0 and lines
        assert '"e":"aggTrade"' in lines[0]
        # A restart (the disk has room again) stores the side file first, then goes on.
        again = start(db, BOTH, fast_settings(server))
        wait_complete(server, db, BOTH)
        assert again.stop(timeout_s=10)
    assert not side.exists()


# --------------------------------------------------------------------------- 4. endless fragments
def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_a_text_frame_that_never_finishes_ends_the_connection(recording, tmp_path):
    db = tmp_path / "fragments.db"
    faults = Faults(hostile=["endless_fragments"])
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        rss_before = _rss_mb()
        service = start(db, BOTH, fast_settings(server))
        reconnected = wait_for(
            lambda: all(s.reconnects >= 1 for s in service.status().values()),
            20,
            "both feeds to end the endless message and reconnect",
        )
        assert reconnected
        errors = {s: st.last_error for s, st in service.status().items()}
        wait_complete(server, db, BOTH)  # the second connection is a normal one
        rss_growth = _rss_mb() - rss_before
        assert service.stop(timeout_s=10)
    for symbol, error in errors.items():
        assert "1048576-byte limit across continuation frames" in error, (symbol, error)
    assert server.stats.hostile_frames > 2 * 16  # more than the 1 MiB limit was sent
    assert rss_growth < 100, f"memory grew {rss_growth:.0f} MB"


def test_a_frame_over_the_size_limit_is_refused_from_its_header(recording, tmp_path):
    db = tmp_path / "big.db"
    big = b"[" + b"1," * 1_000_000 + b"1]"  # 2,000,003 bytes, announced in the frame header
    faults = Faults(inject=[("BTCUSDT", 20, big)])
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server))
        wait_for(lambda: service.status()["BTCUSDT"].reconnects >= 1, 20, "the refusal")
        error = service.status()["BTCUSDT"].last_error
        wait_complete(server, db, ["BTCUSDT"])
        assert service.stop(timeout_s=10)
    assert "frame of 2000003 bytes is over the 1048576-byte message limit" in error


# --------------------------------------------------------------------------- 6. ping flood
def test_a_ping_flood_without_data_ends_the_connection(recording, tmp_path):
    db = tmp_path / "pings.db"
    faults = Faults(hostile=["ping_flood", "ping_flood"])
    # A hostile server: it does not enforce Binance's 10 incoming frames/s on our pongs.
    with FakeBinance(
        recording, speed=SPEED, preroll_s=5, faults=faults, max_incoming_per_s=None
    ) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server))
        wait_for(lambda: service.status()["BTCUSDT"].reconnects >= 2, 20, "two floods cut short")
        error = service.status()["BTCUSDT"].last_error
        wait_complete(server, db, ["BTCUSDT"])
        assert service.stop(timeout_s=10)
    assert "ping flood" in error
    # Each flooded connection answered no more pings than the limit (20/s) allows, then ended.
    assert 2 <= server.stats.pongs_bad <= 2 * 21


# --------------------------------------------------------------------------- 5. silent socket
class MovedClock:
    """The feed's clocks: the real ones, with the monotonic one moved ahead by the test."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead_s

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic)


def test_a_silent_socket_in_a_busy_market_is_stale(recording, tmp_path):
    """The first connection completes the handshake and sends nothing while REST's newest
    trade is always younger than ``stale_grace_s`` (60 s, like the market's trades): stale
    before the replay ends. Nothing waits the grace out: the feed's monotonic clock (its
    probe schedule) is moved ahead, its wall clock is not, so REST's trades stay young."""
    db = tmp_path / "silent.db"
    faults = Faults(hostile=["silent"])
    moved = MovedClock()
    grace_s = 60.0
    with FakeBinance(recording, speed=5.0, preroll_s=5, faults=faults) as server:
        settings = fast_settings(
            server, stale_grace_s=grace_s, first_data_timeout_s=1.0, stale_probe_interval_s=1.0
        )
        service = start(db, ["BTCUSDT"], settings, clock=moved.clock())

        def stale_or_done() -> bool:
            moved.ahead_s += grace_s / 4  # the grace passes in four polls
            return service.status()["BTCUSDT"].reconnects >= 1 or server.finished()

        wait_for(stale_or_done, 40, "a reconnect or the end of the replay", interval_s=0.1)
        busy = not server.finished()
        status = service.status()["BTCUSDT"]
        wait_complete(server, db, ["BTCUSDT"], timeout_s=40)
        assert service.stop(timeout_s=10)
    assert busy, "the silent socket was only found stale once the market went quiet"
    assert status.reconnects >= 1 and "connected but no data" in status.last_error
    probes = [
        p
        for _, path, p, _ in server.stats.rest_requests
        if path == "/fapi/v1/aggTrades" and p == {"symbol": "BTCUSDT", "limit": "1"}
    ]
    assert len(probes) >= 2  # one too fresh to judge, one that found the socket stale


# --------------------------------------------------------------------------- 3. far-ahead ids
def wait_verdicts(service, symbols, timeout_s: float = 20.0) -> dict:
    """The reject reasons once every symbol has had a verdict on its held suspect id.

    The genuine trades after a lie are stored while REST is still being asked about the lie,
    so "every genuine id stored" can come before the verdict: wait for the verdict too (CI
    caught BTCUSDT's reasons still empty on a loaded machine)."""

    def settled():
        reasons = service.reject_reasons()
        return reasons if all(reasons.get(s) for s in symbols) else None

    return wait_for(settled, timeout_s, f"a verdict on the held suspect id of each of {symbols}")


def test_far_ahead_ids_are_confirmed_against_rest_and_lies_rejected(recording, tmp_path):
    """A lie of 1e12 on BTCUSDT and one 1e7 ahead at 22x the price on ETHUSDT: REST has
    neither, so both are rejected and every genuine trade after them is stored."""
    db = tmp_path / "ahead.db"
    eth_first = recording.symbols["ETHUSDT"].aggs.ids[0]
    faults = Faults(
        inject=[
            ("BTCUSDT", 30, hostile_trade("BTCUSDT", 10**12)),
            ("ETHUSDT", 30, hostile_trade("ETHUSDT", eth_first + 10**7, price="60000.0")),
        ]
    )
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, BOTH, fast_settings(server))
        wait_complete(server, db, BOTH)
        reasons = wait_verdicts(service, BOTH)
        status = service.status()
        assert service.stop(timeout_s=10)
    for symbol in BOTH:
        assert reasons[symbol] == {"suspect_id": 1}, symbol
        assert status[symbol].duplicates == 0 and status[symbol].gaps_found == 0
        assert "far-ahead id" in status[symbol].last_error and "REST has no id" in (
            status[symbol].last_error
        )
    found = gaps(db)  # only the start-up history (owed, then stored): no gap before a lie
    assert found["detail"].str.startswith("start-up history").all()


def test_a_genuine_jump_is_confirmed_and_its_gap_repaired(recording, tmp_path):
    """Ids the socket never sent (a long outage): the first id after them is far ahead,
    REST confirms it, and the gap before it is repaired."""
    db = tmp_path / "jump.db"
    ids = recording.symbols["BTCUSDT"].aggs.ids
    skipped = set(ids[-400:-40])  # 360 live ids: far past a jump limit of 100
    with FakeBinance(
        recording, speed=SPEED, preroll_s=0.2, faults=Faults(skip_ids=skipped)
    ) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server, suspect_id_jump=100))
        wait_complete(server, db, ["BTCUSDT"])
        assert service.stop(timeout_s=10)
        # read after stop: the repair worker counts a repair after handing its ticks to the
        # writer, so the ids can be visible a moment before the count
        status = service.status()["BTCUSDT"]
    assert status.rejected == 0 and status.gaps_found == 1 and status.gaps_repaired == 1
    asked = [
        p
        for _, path, p, _ in server.stats.rest_requests
        if path == "/fapi/v1/aggTrades" and p.get("limit") == "1" and "fromId" in p
    ]
    # (the first live id after the start-up history may have been confirmed too)
    assert {"symbol": "BTCUSDT", "fromId": str(ids[-40]), "limit": "1"} in asked


def test_a_first_id_lie_with_no_resume_point_is_rejected_not_the_resume_point(recording, tmp_path):
    """An empty database and no start-up history: no stored id to compare with. The very
    first frame of each symbol is a lie (1e12 on BTCUSDT; the first real id + 1e7 at 22x the
    price on ETHUSDT). The next live id shows it far ahead, REST has no such id: rejected,
    and every genuine trade after it is stored (before: the lie became the resume point and
    every genuine trade was dropped as a duplicate)."""
    db = tmp_path / "first-lie.db"
    eth_first = recording.symbols["ETHUSDT"].aggs.ids[0]
    lies = {"BTCUSDT": 10**12, "ETHUSDT": eth_first + 10**7}
    faults = Faults(
        inject=[
            ("BTCUSDT", 0, hostile_trade("BTCUSDT", lies["BTCUSDT"])),
            ("ETHUSDT", 0, hostile_trade("ETHUSDT", lies["ETHUSDT"], price="60000.0")),
        ]
    )
    with FakeBinance(recording, speed=0, faults=faults) as server:  # all of it at once
        service = start(db, BOTH, fast_settings(server, history=False))
        wait_complete(server, db, BOTH)
        reasons = wait_verdicts(service, BOTH)
        status = service.status()
        assert service.stop(timeout_s=10)
    assert server.stats.hostile_frames == 2
    asked = {
        p.get("fromId")
        for _, path, p, _ in server.stats.rest_requests
        if path == "/fapi/v1/aggTrades" and p.get("limit") == "1"
    }
    for symbol in BOTH:
        assert reasons[symbol] == {"suspect_id": 1}, symbol
        assert status[symbol].duplicates == 0 and status[symbol].gaps_found == 0
        assert "far-ahead id" in status[symbol].last_error
        assert str(lies[symbol]) in asked  # REST was asked about the lie itself
        assert stored_ids(db, symbol)[-1] < lies[symbol]
    assert gaps(db).empty


# --------------------------------------------------------------------------- 2. end to end
def test_an_id_past_int64_does_not_wedge_the_other_symbols(recording, tmp_path):
    db = tmp_path / "int64.db"
    faults = Faults(inject=[("ETHUSDT", 30, hostile_trade("ETHUSDT", 2**64))])
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, BOTH, fast_settings(server))
        wait_complete(server, db, BOTH)
        status = service.status()
        assert service.stop(timeout_s=10)  # nothing left unstored
    assert status["ETHUSDT"].rejected == 1 and status["BTCUSDT"].rejected == 0
    assert status["ETHUSDT"].state is not FeedState.ERROR


def test_a_wedged_database_shows_as_error_not_live(recording, tmp_path):
    db = tmp_path / "wedged.db"
    storage = open_writer(db)
    try:
        with FakeBinance(recording, speed=SPEED / 3, preroll_s=5) as server:
            service = start(storage, ["BTCUSDT"], fast_settings(server, stale_after_s=1.0))
            wait_for(lambda: stored_ids(db, "BTCUSDT"), 10, "first ticks stored")
            with storage.transaction():  # another job holds the one writer: commits hang
                wedged = wait_for(
                    lambda: service.status()["BTCUSDT"].state is FeedState.ERROR, 10, "error"
                )
                error = service.status()["BTCUSDT"].last_error
            assert wedged and "a commit has run for" in error
            wait_for(
                lambda: service.status()["BTCUSDT"].state is not FeedState.ERROR, 10, "recovery"
            )
            assert service.stop(timeout_s=10)
    finally:
        storage.close()


def test_collector_on_a_full_disk_says_what_it_could_not_store_and_restart_stores_it(tmp_path):
    """The real collector process with a file-size limit (``RLIMIT_FSIZE``: the kernel
    refuses to grow any file past it, as a full disk does; no root needed): its lines say
    error, SIGINT names the ticks not stored and saves them; a restart stores them."""
    db = tmp_path / "cli-full.db"
    limit = 500_000

    def small_disk() -> None:  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with FakeBinance(load_recording([SAMPLE_RECORDING]), speed=5, loop=True) as server:
        flags = ["--status-interval", "0.5", "--history-klines", "0"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = start_collector(
            db,
            server,
            *flags,
            symbols="ethusdt",
            env=env,
            preexec_fn=small_disk,  # the limit applies to the child only
        )
        with killed_on_exit(proc):
            error_line = wait_for(
                lambda: (
                    (ln := proc.stdout.readline()).startswith("ETHUSDT ")
                    and " error " in ln
                    and "nothing stored" in ln
                    and ln
                ),
                90,
                "a status line saying error while nothing is stored",
                interval_s=0,
            )
            _out, err = stop_with_sigint(proc, 90)
        assert "error='nothing stored" in error_line
        assert proc.returncode == 1
        said = [ln for ln in err.splitlines() if ln.startswith("error: stopped before")]
        assert len(said) == 1 and "not stored: " in said[0] and "ETHUSDT " in said[0]
        side = spill_path(db)
        assert f"saved to {side}" in said[0] and side.exists()
        spilled = [json.loads(line)["a"] for line in side.read_text().splitlines()]
        assert f"(ids {min(spilled)}..{max(spilled)})" in said[0]
        again = subprocess.run(
            [*proc.args, "--duration", "4"],  # the same command line again
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert again.returncode == 0, again.stderr
    assert not side.exists()
    ids = stored_ids(db, "ETHUSDT")
    assert set(spilled) <= set(ids) and ids == list(range(ids[0], ids[-1] + 1))


def test_side_file_round_trip_keeps_every_field(tmp_path):
    """What ``stop`` saves is exactly what the next start stores: ids, times, prices (also
    tiny ones, written as plain decimals), sizes, sides, and both id kinds."""
    agg = [Tick("BTCUSDT", 7, 1_700_000_000_001, 61800.3, 0.002, True)]
    tiny = [Tick("PEPEUSDT", 8, 1_700_000_000_002, 0.00001234, 1e6, False)]
    trades = [Tick("ETHUSDT", 9, 1_700_000_000_003, 3000.5, 1.25, False, IdKind.TRADE)]
    side = spill_path(tmp_path / "round.db")
    write_spill(side, agg + tiny)
    write_spill(side, trades)  # appends
    assert '"p":"0.00001234"' in side.read_text()
    with open_writer(tmp_path / "round.db") as storage:
        assert restore_spill(side, storage) == 3
        assert restore_spill(side, storage) == 0  # gone once stored
    with open_reader(tmp_path / "round.db") as reader:
        for tick in agg + tiny + trades:
            row = reader.ticks(tick.symbol).iloc[0]
            assert (row.trade_id, row.ts_ms, row.price, row.qty) == (
                tick.trade_id,
                tick.ts_ms,
                tick.price,
                tick.qty,
            )
            assert bool(row.is_buyer_maker) == tick.is_buyer_maker


def test_suspects_wait_for_one_answer_and_a_refusal_drops_everything_past_it():
    suspects = SuspectIds(jump=100, held_max=3, retry_s=0.0)
    lie, later_lie, far = (
        Tick("BTCUSDT", i, 1, 1.0, 1.0, False) for i in (10**12, 10**12 + 1, 500)
    )
    assert suspects.is_suspect(lie, last_id=10) and not suspects.is_suspect(far, last_id=450)
    assert suspects.hold(lie) == (True, lie)  # the first one is asked about
    assert suspects.hold(later_lie) == (True, None)  # one question at a time
    assert suspects.hold(far) == (True, None)
    assert suspects.hold(far) == (False, None)  # full: the caller drops it
    assert suspects.settle(Verdict(10**12, None, "REST down")) == ([], [])
    assert suspects.due() == lie  # asked again (retry_s=0)
    release, refuted = suspects.settle(Verdict(10**12, False, "no such id"))
    assert refuted == [lie, later_lie] and release == [far] and not suspects.held
    suspects.hold(far)
    assert suspects.settle(Verdict(500, True, "REST confirms")) == ([far], [])
    assert not suspects.is_suspect(far, last_id=10)  # trusted from now on


def test_a_symbol_storage_refuses_entirely_is_error_not_live(recording, tmp_path):
    """Every ETHUSDT tick is refused (a trigger in the real database raises a constraint
    error): ETHUSDT stores nothing and says so; BTCUSDT stores and stays healthy."""
    import sqlite3

    db = tmp_path / "refuse-eth.db"
    open_writer(db).close()  # the schema
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_eth BEFORE INSERT ON ticks WHEN NEW.sym_id = "
            "(SELECT sym_id FROM symbols WHERE symbol = 'ETHUSDT') "
            "BEGIN SELECT RAISE(ABORT, 'ETHUSDT refused by the test'); END"
        )
    with FakeBinance(recording, speed=SPEED, preroll_s=5) as server:
        service = start(db, BOTH, fast_settings(server))
        eth = wait_for(
            lambda: (s := service.status()["ETHUSDT"]).state is FeedState.ERROR and s,
            30,
            "ETHUSDT in error",
        )
        assert "nothing stored: storage refused the last" in eth.last_error
        wait_for(lambda: stored_ids(db, "BTCUSDT"), 20, "BTCUSDT ticks stored")
        assert service.status()["BTCUSDT"].state is not FeedState.ERROR
        service.stop(timeout_s=10)
    assert stored_ids(db, "ETHUSDT") == []
