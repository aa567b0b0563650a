"""The real client (FeedService) against a local Binance-protocol server that misbehaves.

Every test replays real BTCUSDT/ETHUSDT futures trades (the bundled sample) over real
sockets on 127.0.0.1 into a real SQLite file, and compares the stored ids with the ids
the server published: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import gzip
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config import SAMPLE_RECORDING
from formats.wire import StreamKind, parse_rest_kline
from ingestion.backoff import instant_backoff
from ingestion.config import ConfigError, FeedSettings
from ingestion.rest import RestClient
from ingestion.service import FeedService
from ingestion.status import FeedState
from replay import FakeBinance, load_recording
from replay.faults import Faults
from storage import Gap, Tick, UnknownSymbolError, open_reader, open_writer
from tests.conftest import STORAGE_REAL_DIR, wait_for

REAL = STORAGE_REAL_DIR
SPEED = 30.0  # 43 s of recorded trades in about 1.5 s


@pytest.fixture(scope="module")
def short_recording(tmp_path_factory) -> Path:
    """The first 3000 real trade lines of the sample (43 s; ~800 BTC and ~600 ETH aggregates)."""
    with gzip.open(SAMPLE_RECORDING, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(3000)]
    path = tmp_path_factory.mktemp("rec") / "short.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    return path


@pytest.fixture(scope="module")
def recording(short_recording):
    return load_recording([short_recording])


def fast_settings(server: FakeBinance, **changes) -> FeedSettings:
    """Binance's rules with every timer shrunk so that the tests take seconds."""
    values = dict(
        ws_base=server.ws_base,
        rest_base=server.rest_base,
        history_trades_s=3600.0,
        history_klines_s=0.0,
        read_poll_s=0.05,
        ping_interval_s=0.3,
        pong_timeout_s=0.6,
        quiet_after_s=1.0,
        first_data_timeout_s=2.0,
        stale_after_s=2.0,
        stale_probe_interval_s=1.0,
        stale_grace_s=0.3,
        batch_latency_s=0.02,
        healthy_after_s=0.5,
        drain_old_s=0.2,
        status_interval_s=0.5,
    )
    values.update(changes)
    return FeedSettings(**values)


def stored_ids(db: Path, symbol: str) -> list[int]:
    with open_reader(db) as reader:
        try:
            ids = reader.ticks(symbol)["trade_id"].tolist()
        except UnknownSymbolError:
            return []
    return sorted(ids)


def wait_complete(server: FakeBinance, db: Path, symbols, kind: str = "agg", timeout_s=30.0):
    """Wait until the replay ended and the database holds exactly the published ids."""
    wait_for(server.finished, timeout_s, "the replay to finish")
    expected = {s: server.source_ids(s, kind) for s in symbols}
    deadline = time.monotonic() + timeout_s
    while True:
        got = {s: stored_ids(db, s) for s in symbols}
        if got == expected:
            return expected
        if time.monotonic() > deadline:
            report = {
                s: (
                    f"missing {sorted(set(expected[s]) - set(got[s]))[:10]}, "
                    f"extra {sorted(set(got[s]) - set(expected[s]))[:10]}"
                )
                for s in symbols
            }
            raise AssertionError(f"stored ids differ from the source: {report}")
        time.sleep(0.1)


def gaps(db: Path):
    with open_reader(db) as reader:
        return reader.gaps()


def start(db, symbols, settings, **kwargs) -> FeedService:
    return FeedService(db, symbols, settings, backoff_factory=instant_backoff, **kwargs).start()


# --------------------------------------------------------------------------- healthy
def test_clean_stream_stores_exactly_the_source(recording, tmp_path):
    db = tmp_path / "clean.db"
    with FakeBinance(recording, speed=SPEED, preroll_s=5, ping_interval_s=0.2) as server:
        service = start(db, ["btcusdt", "ethusdt"], fast_settings(server))
        seen_live = wait_for(
            lambda: all(s.state is FeedState.LIVE for s in service.status().values()),
            10,
            "both feeds live",
        )
        assert seen_live
        wait_complete(server, db, ["BTCUSDT", "ETHUSDT"])
        assert service.stop(timeout_s=10)
    # Server pings were echoed, our own pings were answered: both directions of liveness.
    assert server.stats.pongs_ok >= 4 and server.stats.pongs_bad == 0
    assert server.stats.client_pings >= 2
    # The start-up history is owed data: recorded before it was fetched, then repaired.
    history = gaps(db)
    assert list(history["status"]) == ["repaired"] * 2
    assert history["detail"].str.startswith("start-up history").all()
    for symbol, status in service.status().items():
        assert status.state is FeedState.STOPPED
        assert status.rejected == 0 and status.duplicates >= 0
        assert status.reconnects == 0 and status.gaps_found == 0
        assert status.ids_backfilled > 0  # the pre-roll came from REST
        assert status.messages + status.ids_backfilled >= len(server.source_ids(symbol))
        assert status.stored == len(server.source_ids(symbol))
        assert status.url.endswith(f"/market/ws/{symbol.lower()}@aggTrade")
        assert status.history_loaded and status.last_trade_id == server.source_ids(symbol)[-1]
    with open_reader(db) as reader:
        assert reader.id_kind("BTCUSDT") == "agg"
        assert not reader.bars("BTCUSDT", "1s").empty
        saved = reader.feed_status()
        assert set(saved["symbol"]) == {"BTCUSDT", "ETHUSDT"}


def test_history_loads_klines_before_the_first_trade(recording, tmp_path):
    db = tmp_path / "klines.db"
    with FakeBinance(recording, speed=SPEED, preroll_s=30) as server:
        service = start(
            db, ["ETHUSDT"], fast_settings(server, history_trades_s=0.5, history_klines_s=3600.0)
        )
        first = wait_for(lambda: stored_ids(db, "ETHUSDT"), 10, "ticks")
        with open_reader(db) as reader:
            bars = wait_for(lambda: not reader.bars("ETHUSDT", "1m").empty, 10, "kline bars")
            first_tick_ms = int(reader.ticks("ETHUSDT")["ts_ms"].min())
            one_min = reader.bars("ETHUSDT", "1m")
        assert bars and first
        klines = [r for r in server.stats.rest_requests if r[1] == "/fapi/v1/klines"]
        assert len(klines) == 1
        # Klines only for minutes strictly before the first loaded tick's minute.
        assert int(klines[0][2]["endTime"]) < first_tick_ms // 60_000 * 60_000
        assert one_min["open_time_ms"].min() < first_tick_ms
        assert service.stop()


# --------------------------------------------------------------------------- faults
def test_drops_garbage_and_skipped_ids_lose_nothing(recording, tmp_path):
    db = tmp_path / "chaos.db"
    # Ids beyond the pre-roll (which comes from REST), so the socket really skips them.
    # ETHUSDT has ~615 aggregates: all three drops happen well before the end.
    faults = Faults(drop_after=[120, 200, 80], garbage_every=25, skip_ids={250, 251, 252, 520})
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, ["BTCUSDT", "ETHUSDT"], fast_settings(server))
        wait_complete(server, db, ["BTCUSDT", "ETHUSDT"])
        assert service.stop()
        status = service.status()
        assert server.stats.drops == 6 and server.stats.garbage_sent > 40
        assert sum(s.rejected for s in status.values()) == server.stats.garbage_sent
        reasons = service.reject_reasons()
        assert {"not_json", "bad_price", "bad_qty", "missing_field"} <= set(reasons["BTCUSDT"])
        for symbol, s in status.items():
            assert s.reconnects == 3, symbol
            assert s.gaps_found >= 2 and s.gaps_repaired == s.gaps_found
            assert "connection lost" in s.last_error
    found = gaps(db)
    assert set(found["status"]) == {"repaired"}
    assert (
        found["repaired_count"] == found["last_missing_id"] - found["first_missing_id"] + 1
    ).all()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        mine = found[found["symbol"] == symbol]
        assert ((mine["first_missing_id"] <= 250) & (mine["last_missing_id"] >= 252)).any()
        assert ((mine["first_missing_id"] <= 520) & (mine["last_missing_id"] >= 520)).any()


def test_dead_socket_is_found_by_ping_and_replaced(recording, tmp_path):
    db = tmp_path / "dead.db"
    faults = Faults(stall_after=[100], stall_s=30, stall_answers_pings=False)
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server))
        wait_complete(server, db, ["BTCUSDT"])
        assert service.stop()
    status = service.status()["BTCUSDT"]
    assert status.reconnects >= 1
    assert "no pong" in status.last_error
    assert set(gaps(db)["status"]) <= {"repaired"}


def test_stalled_stream_with_pongs_is_found_by_rest(recording, tmp_path):
    """Pings still answered but no data while the market trades: stale, backfill, reconnect."""
    db = tmp_path / "stall.db"
    faults = Faults(stall_after=[150], stall_s=30, stall_answers_pings=True)
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(
            db, ["ETHUSDT"], fast_settings(server, stale_after_s=0.4, stale_probe_interval_s=0.3)
        )
        wait_complete(server, db, ["ETHUSDT"])
        assert service.stop()
    status = service.status()["ETHUSDT"]
    assert status.reconnects >= 1 and "connected but no data" in status.last_error
    assert set(gaps(db)["status"]) == {"repaired"}


def test_silent_route_is_detected_and_rest_keeps_the_data_complete(recording, tmp_path):
    """The retired unrouted URL connects and sends nothing: Binance's silent failure."""
    db = tmp_path / "silent.db"
    with FakeBinance(recording, speed=SPEED, preroll_s=5) as server:
        settings = fast_settings(
            server, ws_route="", first_data_timeout_s=0.4, stale_probe_interval_s=0.3
        )
        assert settings.ws_url("BTCUSDT").endswith(f":{server.port}/ws/btcusdt@aggTrade")
        service = start(db, ["BTCUSDT"], settings)
        stale = wait_for(
            lambda: service.status()["BTCUSDT"].state is FeedState.STALE, 10, "state stale"
        )
        assert stale
        wait_complete(server, db, ["BTCUSDT"])
        assert service.stop()
    status = service.status()["BTCUSDT"]
    assert status.messages == 0  # the socket never delivered a trade ...
    assert "connected but no data" in status.last_error and "/ws/btcusdt@aggTrade" in (
        status.last_error
    )
    assert status.reconnects >= 1
    found = gaps(db)
    assert len(found) >= 1 and set(found["status"]) == {"repaired"}  # ... REST did


def test_quiet_market_is_not_mistaken_for_a_dead_feed(tmp_path):
    """CTKUSDT traded about once a second (real capture): probes agree, no reconnects."""
    capture = REAL / "binance_usdm_ws_cryptofeed" / "BINANCE_FUTURES.ws.1.0"
    if not capture.is_file():
        pytest.skip("shared real data missing")
    db = tmp_path / "quiet.db"
    with FakeBinance(load_recording([capture]), speed=1.0, preroll_s=3) as server:
        settings = fast_settings(
            server,
            quiet_after_s=0.3,
            stale_after_s=0.3,
            stale_probe_interval_s=0.2,
            stale_grace_s=0.3,
        )
        service = start(db, ["CTKUSDT"], settings)
        states = set()

        def probed_while_quiet() -> bool:
            states.add(service.status()["CTKUSDT"].state)
            probes = [
                r
                for r in server.stats.rest_requests
                if r[1] == "/fapi/v1/aggTrades"
                and r[2].get("limit") == "1"
                and "startTime" not in r[2]
            ]
            return FeedState.QUIET in states and len(probes) >= 3

        wait_for(probed_while_quiet, 15, "quiet state and three REST probes")
        published = server.source_ids("CTKUSDT")
        assert service.stop()
    status = service.status()["CTKUSDT"]
    assert FeedState.STALE not in states
    assert status.reconnects == 0 and status.last_error == ""
    got = stored_ids(db, "CTKUSDT")
    assert got[: len(published)] == published  # a real id, e.g. 16599292, kept as is
    found = gaps(db)  # only the start-up history, owed and then stored
    assert found["detail"].str.startswith("start-up history").all()
    assert set(found["status"]) <= {"repaired"}


def test_unrepairable_and_partial_gaps_are_recorded_not_hidden(recording, tmp_path):
    db = tmp_path / "expired.db"
    faults = Faults(skip_ids=set(range(50, 60)) | set(range(65, 76)), rest_min_id={"BTCUSDT": 70})
    with FakeBinance(recording, speed=SPEED, faults=faults) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server, history=False))
        wait_for(lambda: service.status()["BTCUSDT"].gaps_found >= 2, 10, "two gaps")
        wait_for(
            lambda: len(gaps(db)) == 2 and set(gaps(db)["status"]) != {"open"}, 10, "gap records"
        )
        wait_for(lambda: "partial" in set(gaps(db)["status"]), 10, "both gaps resolved")
        assert service.stop()
    found = gaps(db).sort_values("first_missing_id").reset_index(drop=True)
    assert list(found["first_missing_id"]) == [50, 65]
    assert list(found["last_missing_id"]) == [59, 75]
    assert list(found["status"]) == ["unrepairable", "partial"]
    assert list(found["repaired_count"]) == [0, 6]
    assert "REST" in found.loc[0, "detail"] and "50" in found.loc[0, "detail"]
    ids = stored_ids(db, "BTCUSDT")
    assert not set(range(50, 60)) & set(ids) and set(range(70, 76)) <= set(ids)
    status = service.status()["BTCUSDT"]
    assert status.gaps_repaired == 0 and "unrepairable" in status.last_error + str(found["status"])


def test_rate_limited_backfill_waits_and_completes(recording, tmp_path):
    db = tmp_path / "429.db"
    faults = Faults(drop_after=[120], rest_429=1, retry_after_s=1)
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, ["ETHUSDT"], fast_settings(server))
        wait_complete(server, db, ["ETHUSDT"])
        assert service.stop()
        statuses = [r[3] for r in server.stats.rest_requests]
    assert statuses.count(429) == 1
    assert service.rest_status().rate_limited == 1


def test_planned_reconnect_beats_the_connection_age_limit(recording, tmp_path):
    db = tmp_path / "planned.db"
    faults = Faults(max_connection_s=1.0)  # the server's "24 h" cut
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server, planned_reconnect_s=0.4))
        wait_complete(server, db, ["BTCUSDT"])
        assert service.stop()
        connections = len(server.stats.ws_connections)
    status = service.status()["BTCUSDT"]
    assert status.planned_reconnects >= 2 and connections == status.planned_reconnects + 1
    assert status.reconnects == 0  # the server never had to cut
    assert set(gaps(db)["status"]) <= {"repaired"}


def test_trade_stream_on_public_route_with_trade_ids(recording, tmp_path):
    db = tmp_path / "trades.db"
    faults = Faults(drop_after=[400], garbage_every=50)
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        settings = fast_settings(server, stream=StreamKind.TRADE)
        assert "/public/ws/btcusdt@trade" in settings.ws_url("BTCUSDT")
        service = start(db, ["BTCUSDT"], settings)
        wait_complete(server, db, ["BTCUSDT"], kind="trade")
        assert service.stop()
    with open_reader(db) as reader:
        assert reader.id_kind("BTCUSDT") == "trade"
    assert stored_ids(db, "BTCUSDT")[0] == 5266583935
    assert service.status()["BTCUSDT"].rejected == server.stats.garbage_sent


# --------------------------------------------------------------------------- start, stop, writer
def test_unknown_delisted_and_non_perpetual_symbols_are_named(recording, tmp_path):
    faults = Faults(
        extra_symbols=[
            {"symbol": "OLDUSDT", "status": "SETTLING"},
            {"symbol": "BTCUSDT_240927", "contractType": "CURRENT_QUARTER"},
        ]
    )
    db = tmp_path / "bad.db"
    with FakeBinance(recording, speed=SPEED, faults=faults) as server:
        for symbols, words in (
            (["BTCUSDT", "FOOUSDT"], ["FOOUSDT", "not listed"]),
            (["OLDUSDT"], ["OLDUSDT", "SETTLING"]),
            (["BTCUSDT_240927"], ["BTCUSDT_240927", "CURRENT_QUARTER"]),
        ):
            service = FeedService(db, symbols, fast_settings(server))
            with pytest.raises(ConfigError) as info:
                service.start()
            assert all(w in str(info.value) for w in words) and "\n" not in str(info.value)
        service = start(db, ["BTCUSDT"], fast_settings(server))
        with pytest.raises(ConfigError, match="FOOUSDT"):
            service.add_symbol("fooUSDT")
        assert service.symbols == ["BTCUSDT"]
        assert service.stop()


def test_clean_stop_writes_every_queued_tick(recording, tmp_path):
    db = tmp_path / "stop.db"
    with FakeBinance(recording, speed=SPEED, preroll_s=5) as server:
        # Ticks wait up to 30 s for their batch: only stop() can flush them in time.
        service = start(
            db, ["BTCUSDT"], fast_settings(server, batch_latency_s=30.0, batch_size=100_000)
        )
        wait_for(lambda: service.status()["BTCUSDT"].messages >= 200, 10, "200 messages")
        assert service.writer_status().queued > 0
        assert service.writer_status().committed == 0  # all of it still in the queue
        started = time.monotonic()
        assert service.stop(timeout_s=10)
        assert time.monotonic() - started < 5
    status = service.status()["BTCUSDT"]
    ids = stored_ids(db, "BTCUSDT")
    assert ids == list(range(1, status.last_trade_id + 1))  # everything seen, no hole
    assert service.writer_status().queued == 0 and not service.writer_status().running


def test_back_pressure_blocks_the_feed_with_a_bounded_queue(recording, tmp_path):
    db = tmp_path / "pressure.db"
    storage = open_writer(db)
    try:
        with FakeBinance(recording, speed=SPEED, preroll_s=5) as server:
            service = start(storage, ["BTCUSDT"], fast_settings(server, queue_size=4))
            wait_for(lambda: service.status()["BTCUSDT"].messages > 0, 10, "messages")
            with storage.transaction():  # a long import holds the one writer
                full = wait_for(
                    lambda: service.status()["BTCUSDT"].queue_depth == 4, 10, "a full queue"
                )
                assert full
                depth_seen = max(service.status()["BTCUSDT"].queue_depth for _ in range(20))
            wait_complete(server, db, ["BTCUSDT"])
            assert service.stop()
        stats = service.writer_status()
        assert depth_seen == 4 and stats.high_water <= 4 and stats.blocked_s > 0
        assert service.status()["BTCUSDT"].queue_blocked_s > 0
    finally:
        storage.close()


def test_refuses_to_mix_id_kinds_in_one_database(recording, tmp_path):
    db = tmp_path / "mixed.db"
    with open_writer(db) as storage:
        storage.write_ticks([Tick("BTCUSDT", 1, 1_700_000_000_000, 1.0, 1.0, False)])
    with FakeBinance(recording, speed=SPEED) as server:
        service = FeedService(db, ["BTCUSDT"], fast_settings(server, stream="trade"))
        with pytest.raises(ConfigError, match=r"agg ids.*trade"):
            service.start()
        assert not service.running and service.writer_status() is None
    open_writer(db).close()  # the failed start gave the database back


def test_add_and_remove_symbols_while_running(recording, tmp_path):
    db = tmp_path / "addremove.db"
    with FakeBinance(recording, speed=SPEED, preroll_s=5) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server))
        service.add_symbol("ethusdt")
        assert set(service.status()) == {"BTCUSDT", "ETHUSDT"}
        wait_for(lambda: stored_ids(db, "ETHUSDT"), 10, "ETHUSDT ticks")
        service.remove_symbol("BTCUSDT")
        assert set(service.status()) == {"ETHUSDT"}
        wait_complete(server, db, ["ETHUSDT"])
        assert service.stop()
        assert service.stop()  # idempotent


def test_second_service_on_the_same_database_is_a_config_error(recording, tmp_path):
    db = tmp_path / "busy.db"
    with FakeBinance(recording, speed=SPEED) as server:
        first = start(db, ["BTCUSDT"], fast_settings(server))
        try:
            with pytest.raises(ConfigError, match="already has a writer"):
                FeedService(db, ["ETHUSDT"], fast_settings(server)).start()
        finally:
            assert first.stop()


def test_backoff_restarts_after_a_healthy_connection(recording, tmp_path):
    made = []

    def factory():
        made.append(1)
        return instant_backoff()

    for healthy_after_s, expected in ((0.0, 4), (1000.0, 1)):
        db = tmp_path / f"backoff{healthy_after_s}.db"
        with FakeBinance(recording, speed=SPEED, faults=Faults(drop_after=[20, 20, 20])) as server:
            made.clear()
            service = FeedService(
                db,
                ["BTCUSDT"],
                fast_settings(server, history=False, healthy_after_s=healthy_after_s),
                backoff_factory=factory,
            ).start()
            wait_for(lambda s=service: s.status()["BTCUSDT"].reconnects == 3, 10, "3 reconnects")
            assert service.stop()
        assert len(made) == expected


def test_ids_going_backwards_are_reported(tmp_path):
    db = tmp_path / "backwards.db"
    with open_writer(db) as storage:  # a database from an earlier run with much higher ids
        storage.write_ticks([Tick("BTCUSDT", 10**9, 1_700_000_000_000, 1.0, 1.0, False)])
    with FakeBinance(load_recording([SAMPLE_RECORDING]), speed=0) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server, history=False))
        wait_for(
            lambda: "went backwards" in service.status()["BTCUSDT"].last_error,
            20,
            "the backwards report",
        )
        assert service.stop()
    assert stored_ids(db, "BTCUSDT") == [10**9]


# --------------------------------------------------------------------------- gaps left over, klines
def _gaps_of(url: str):
    with open_reader(url) as reader:
        return reader.gaps().sort_values("first_missing_id").reset_index(drop=True)


def _ids_of(url: str, symbol: str) -> list[int]:
    with open_reader(url) as reader:
        try:
            return sorted(reader.ticks(symbol)["trade_id"].tolist())
        except UnknownSymbolError:
            return []


def test_open_and_failed_gaps_are_retried_on_the_next_start(recording, database):
    """Run 1 leaves one gap ``failed`` (REST refused) and one ``open`` (stopped while REST made
    it wait); run 2 repairs both, updating the same records, and leaves finished gaps alone."""
    # No retries: the 429 fails gap 1 at once, and its Retry-After of 60 s holds gap 2 back.
    faults = Faults(
        skip_ids=set(range(50, 60)) | set(range(300, 310)), rest_429=1, retry_after_s=60
    )
    # Storage first (PostgreSQL takes a while to open): the replay's clock starts with the
    # server, and the socket must still be before id 50 when the feed connects.
    storage = open_writer(database)
    try:
        with FakeBinance(recording, speed=SPEED, faults=faults) as server:
            first = start(
                storage, ["BTCUSDT"], fast_settings(server, history=False, rest_max_retries=0)
            )
            wait_for(
                lambda: list(_gaps_of(database)["status"]) == ["failed", "open"],
                20,
                "a failed gap and an open one",
            )
            assert first.stop()
        storage.record_gap(Gap("BTCUSDT", 700, 700, 1, status="unrepairable", detail="old"))
    finally:
        storage.close()
    before = _gaps_of(database)
    assert list(before["status"]) == ["failed", "open", "unrepairable"]
    assert "rate limited" in before.loc[0, "detail"] and "stopped" in before.loc[1, "detail"]
    assert not set(range(50, 60)) & set(_ids_of(database, "BTCUSDT"))

    with FakeBinance(recording, speed=0) as server:  # every id is on REST at once
        storage = open_writer(database)
        try:
            second = start(storage, ["BTCUSDT"], fast_settings(server, history=False))
            wait_for(
                lambda: list(_gaps_of(database)["status"][:2]) == ["repaired"] * 2,
                20,
                "both left-over gaps repaired",
            )
            last = server.source_ids("BTCUSDT")[-1]
            # Run 1 began at its connection's first id; from there on nothing may be missing.
            wait_for(
                lambda: (ids := _ids_of(database, "BTCUSDT")) == list(range(ids[0], last + 1)),
                20,
                "every id from the first one stored",
            )
            assert second.stop()
            from_ids = [
                r[2].get("fromId")
                for r in server.stats.rest_requests
                if r[1] == "/fapi/v1/aggTrades"
            ]
        finally:
            storage.close()
    after = _gaps_of(database)
    assert list(after["gap_id"]) == list(before["gap_id"])  # the same records, no new ones
    assert list(after["status"]) == ["repaired", "repaired", "unrepairable"]
    assert list(after["repaired_count"][:2]) == [10, 10]
    assert "retried on start (was failed)" in after.loc[0, "detail"]
    assert "retried on start (was open)" in after.loc[1, "detail"]
    assert after.loc[2, "updated_ts_ms"] == before.loc[2, "updated_ts_ms"]  # left alone
    assert from_ids[:2] == ["50", "300"] and "700" not in from_ids
    status = second.status()["BTCUSDT"]
    assert status.gaps_found == 2 and status.gaps_repaired == 2


def _kline_bar(server: FakeBinance, symbol: str, open_ms: int) -> dict:
    """The exchange's own 1m kline for one minute (the oracle), over REST."""
    rows = RestClient(server.rest_base).klines(
        symbol, interval="1m", start_ms=open_ms, end_ms=open_ms, limit=1
    )
    assert len(rows) == 1 and rows[0][0] == open_ms
    return parse_rest_kline(rows[0])


def _assert_bar_is_the_kline(bar, kline: dict) -> None:
    """A stored 1m bar is Binance's kline: same OHLC, volume and trade count."""
    assert [bar["open"], bar["high"], bar["low"], bar["close"]] == [
        kline["open"],
        kline["high"],
        kline["low"],
        kline["close"],
    ]
    assert bar["volume"] == pytest.approx(kline["volume"])
    assert bar["trades"] == kline["count"]


@pytest.mark.parametrize("fallback", [True, False])
def test_gaps_rest_cannot_fill_fall_back_to_1m_klines(recording, tmp_path, fallback):
    """REST forgot ids < 70: gap 50..59 is unrepairable, 65..75 partial. With the fallback the
    1m bars of the minutes they fall in are the exchange's klines; the ticks and 1s bars keep
    the hole, and the gap records name the minutes."""
    db = tmp_path / "klines.db"
    faults = Faults(skip_ids=set(range(50, 60)) | set(range(65, 76)), rest_min_id={"BTCUSDT": 70})
    # Recorded times as they are (minutes long closed), everything published at once.
    with FakeBinance(recording, speed=0, rebase_time=False, faults=faults) as server:
        service = start(
            db, ["BTCUSDT"], fast_settings(server, history=False, kline_fallback=fallback)
        )
        lost = set(range(50, 60)) | set(range(65, 70))
        wait_ids = [i for i in server.source_ids("BTCUSDT") if i not in lost]
        wait_for(lambda: stored_ids(db, "BTCUSDT") == wait_ids, 20, "every id REST has")
        wait_for(
            lambda: (
                list(gaps(db).sort_values("first_missing_id")["status"])
                == ["unrepairable", "partial"]
            ),
            20,
            "both gaps resolved",
        )
        assert service.stop()
        kline_requests = [r for r in server.stats.rest_requests if r[1] == "/fapi/v1/klines"]
        with open_reader(db) as reader:
            ticks = reader.ticks("BTCUSDT")
            lost = ticks[(ticks["trade_id"] >= 40) & (ticks["trade_id"] < 80)]
            minutes = sorted({int(t) // 60_000 * 60_000 for t in lost["ts_ms"]})
            oracle = {m: _kline_bar(server, "BTCUSDT", m) for m in minutes}
            bars_1m = reader.bars("BTCUSDT", "1m").set_index("open_time_ms")
            bars_1s = reader.bars("BTCUSDT", "1s")
            bars_5m = reader.bars("BTCUSDT", "5m").set_index("open_time_ms")
    found = gaps(db).sort_values("first_missing_id").reset_index(drop=True)
    for m, kline in oracle.items():
        bar = bars_1m.loc[m]
        in_minute = ticks[(ticks["ts_ms"] // 60_000 * 60_000) == m]
        tick_volume = in_minute["qty"].sum()
        secs = bars_1s[(bars_1s["open_time_ms"] // 60_000 * 60_000) == m]
        assert secs["volume"].sum() == pytest.approx(tick_volume)  # 1s bars keep the hole
        if fallback:
            _assert_bar_is_the_kline(bar, kline)
        else:
            assert bar["volume"] == pytest.approx(tick_volume)
    # The lost trades had volume: with klines the 1m bars are larger than the ticks left.
    lost_minutes_volume = sum(bars_1m.loc[m, "volume"] for m in minutes)
    kline_volume = sum(k["volume"] for k in oracle.values())
    assert bool(lost_minutes_volume == pytest.approx(kline_volume)) is fallback
    five = minutes[0] // 300_000 * 300_000
    in_five = bars_1m[(bars_1m.index >= five) & (bars_1m.index < five + 300_000)]
    assert bars_5m.loc[five, "volume"] == pytest.approx(in_five["volume"].sum())
    if fallback:
        assert kline_requests
        for detail in found["detail"]:
            stamp = datetime.fromtimestamp(minutes[0] / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")
            assert f"1m klines {stamp}" in detail and "1s bars of those minutes are missing" in (
                detail
            )
    else:
        assert not kline_requests and not found["detail"].str.contains("kline").any()


@pytest.fixture(scope="module")
def first_half(short_recording, tmp_path_factory):
    """The first half of the short recording: the same ids and times, up to an earlier id."""
    with gzip.open(short_recording, "rt", encoding="utf-8") as fh:
        lines = fh.readlines()[:1500]
    path = tmp_path_factory.mktemp("rec") / "half.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    return load_recording([path])


def test_gaps_after_a_restart_fall_back_to_1m_klines(recording, first_half, database):
    """Run 1 stores ids up to L and leaves gap 50..59 ``failed``; the outage outlasts REST's
    memory: on restart REST no longer has ids 50..59 nor L+1..L+39 (the first live id is
    L+40). The trade times before both gaps come from storage, so both still get the
    exchange's 1m klines, and their records name the minutes."""
    settings = dict(history=False, kline_fallback=True, rest_max_retries=0)
    faults = Faults(skip_ids=set(range(50, 60)), rest_429=1)
    with FakeBinance(first_half, speed=0, rebase_time=False, faults=faults) as server:
        run1_ids = [i for i in server.source_ids("BTCUSDT") if not 50 <= i < 60]
        storage = open_writer(database)
        try:
            first = start(storage, ["BTCUSDT"], fast_settings(server, **settings))
            wait_for(lambda: _ids_of(database, "BTCUSDT") == run1_ids, 20, "run 1's ids")
            wait_for(lambda: list(_gaps_of(database)["status"]) == ["failed"], 20, "failed gap")
            assert first.stop()
        finally:
            storage.close()
    last = run1_ids[-1]
    lost = set(range(50, 60)) | set(range(last + 1, last + 40))
    faults = Faults(skip_ids=set(range(last + 1, last + 40)), rest_min_id={"BTCUSDT": last + 40})
    with FakeBinance(recording, speed=0, rebase_time=False, faults=faults) as server:
        all_ids = server.source_ids("BTCUSDT")
        assert all_ids[: len(run1_ids) + 10] == list(range(all_ids[0], last + 1))
        storage = open_writer(database)
        try:
            second = start(storage, ["BTCUSDT"], fast_settings(server, **settings))
            wanted = [i for i in all_ids if i not in lost]
            wait_for(lambda: _ids_of(database, "BTCUSDT") == wanted, 20, "every id REST has")
            wait_for(
                lambda: list(_gaps_of(database)["status"]) == ["unrepairable"] * 2,
                20,
                "both gaps resolved",
            )
            assert second.stop()
        finally:
            storage.close()
        with open_reader(database) as reader:
            ticks = reader.ticks("BTCUSDT").set_index("trade_id")
            bars_1m = reader.bars("BTCUSDT", "1m").set_index("open_time_ms")
        found = _gaps_of(database)
        assert list(found["last_missing_id"]) == [59, last + 39]
        for _, gap in found.iterrows():
            # The minutes from the trade before the gap to the trade after it.
            lo = int(ticks.loc[gap["first_missing_id"] - 1, "ts_ms"]) // 60_000 * 60_000
            hi = int(ticks.loc[gap["last_missing_id"] + 1, "ts_ms"]) // 60_000 * 60_000
            minutes = range(lo, hi + 60_000, 60_000)
            traded = [m for m in minutes if m in bars_1m.index]
            assert traded
            for m in traded:
                kline = _kline_bar(server, "BTCUSDT", m)
                bar = bars_1m.loc[m]
                _assert_bar_is_the_kline(bar, kline)
            stamp = datetime.fromtimestamp(traded[0] / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")
            assert f"1m klines {stamp}" in gap["detail"], gap["detail"]
            assert "trade times are unknown" not in gap["detail"]
        assert "retried on start (was failed)" in found.loc[0, "detail"]


def test_retried_gap_without_stored_neighbours_says_its_times_are_unknown(recording, tmp_path):
    """A left-over gap whose neighbouring ticks are not stored (pruned, or never): REST no
    longer has its ids and the fallback cannot place them in minutes, and says so."""
    db = tmp_path / "unknown.db"
    with open_writer(db) as storage:
        storage.record_gap(Gap("BTCUSDT", 50, 59, 1, status="open", detail="found earlier"))
    faults = Faults(rest_min_id={"BTCUSDT": 70})
    with FakeBinance(recording, speed=0, rebase_time=False, faults=faults) as server:
        service = start(db, ["BTCUSDT"], fast_settings(server, history=False))
        wait_for(
            lambda: list(gaps(db)["status"]) == ["unrepairable"], 20, "the retried gap resolved"
        )
        assert service.stop()
    detail = gaps(db).loc[0, "detail"]
    assert "no 1m kline fallback for 10 ids: their trade times are unknown" in detail, detail
    assert "1m klines" not in detail


# --------------------------------------------------------------------------- stop during start
def test_stop_while_start_waits_for_rest_wins_at_once(recording, tmp_path):
    """exchangeInfo is rate limited (Retry-After up to a minute): ``start()`` in another thread
    waits; ``stop()`` returns at once and the start gives up without error or feeds."""
    db = tmp_path / "early.db"
    with FakeBinance(recording, speed=SPEED, weight_limit_per_min=0) as server:
        service = FeedService(db, ["BTCUSDT"], fast_settings(server))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                service.start()
            except BaseException as exc:
                errors.append(exc)

        starter = threading.Thread(target=run, daemon=True)
        starter.start()
        wait_for(lambda: server.stats.rest_requests, 10, "the exchangeInfo request")
        assert not service.running
        started = time.monotonic()
        assert service.stop(timeout_s=10)
        starter.join(5)
        assert time.monotonic() - started < 3 and not starter.is_alive() and not errors
        assert not service.running and service.status() == {}
        assert server.stats.ws_connections == []
    open_writer(db).close()  # the database was never taken (or was given back)


def test_stop_while_start_opens_feeds_tears_down_what_it_started(recording, tmp_path):
    """The start is past validation and the writer (storage is busy with an import): ``stop()``
    stops the writer, and the start, when storage answers, starts no feed."""
    db = tmp_path / "mid.db"
    storage = open_writer(db)
    try:
        with FakeBinance(recording, speed=SPEED) as server:
            service = FeedService(storage, ["BTCUSDT", "ETHUSDT"], fast_settings(server))
            starter = threading.Thread(target=service.start, daemon=True)
            with storage.transaction():  # the start's first storage read waits for this
                starter.start()
                wait_for(lambda: service.writer_status() is not None, 10, "the writer started")
                assert not service.running
                assert service.stop(timeout_s=10)
                assert not service.writer_status().running
            starter.join(5)
            assert not starter.is_alive() and not service.running
            assert service.status() == {} and server.stats.ws_connections == []
            assert service.stop()  # again: the same answer
        assert not storage.closed  # shared: the caller closes it
    finally:
        storage.close()


def test_stop_before_start_means_it_never_starts(recording, tmp_path):
    with FakeBinance(recording, speed=SPEED) as server:
        service = FeedService(tmp_path / "never.db", ["BTCUSDT"], fast_settings(server))
        assert service.stop() and not service.running
        assert service.start() is service and not service.running
        assert server.stats.rest_requests == [] and service.writer_status() is None


def test_running_is_true_between_start_and_stop(recording, tmp_path):
    with FakeBinance(recording, speed=SPEED) as server:
        service = FeedService(tmp_path / "run.db", ["BTCUSDT"], fast_settings(server))
        assert not service.running
        service.start()
        assert service.running
        assert service.stop() and not service.running
