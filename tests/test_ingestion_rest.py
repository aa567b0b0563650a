"""REST client against the local Binance-protocol server: paging, 429/418, errors, weight."""

from __future__ import annotations

import threading
import time

import pytest

from config import SAMPLE_RECORDING
from ingestion.rest import RestClient, RestError, kline_weight
from replay import FakeBinance, load_recording
from replay.faults import Faults


@pytest.fixture(scope="module")
def sample():
    return load_recording([SAMPLE_RECORDING])


def test_paging_agg_trades_by_from_id_is_contiguous(sample):
    with FakeBinance(sample, speed=0) as server:
        rest = RestClient(server.rest_base)
        ids: list[int] = []
        next_id = 1
        while True:
            rows = rest.agg_trades("ethusdt", from_id=next_id, limit=1000)
            if not rows:
                break
            ids += [r["a"] for r in rows]
            next_id = rows[-1]["a"] + 1
        assert ids == server.source_ids("ETHUSDT")
        assert len([r for r in server.stats.rest_requests if r[1] == "/fapi/v1/aggTrades"]) == 8
        stats = rest.stats()
        assert stats.requests == 8 and stats.errors == 0 and stats.used_weight_1m >= 160


def test_429_retry_after_is_honoured(sample):
    faults = Faults(rest_429=2, retry_after_s=1)
    with FakeBinance(sample, speed=0, faults=faults) as server:
        rest = RestClient(server.rest_base)
        started = time.monotonic()
        rows = rest.agg_trades("BTCUSDT", from_id=1, limit=10)
        elapsed = time.monotonic() - started
        assert [r["a"] for r in rows] == list(range(1, 11))
        statuses = [r[3] for r in server.stats.rest_requests]
        assert statuses == [429, 429, 200]
        assert elapsed >= 2.0  # two Retry-After: 1 waits, not a hammering retry loop
        times = [r[0] for r in server.stats.rest_requests]
        assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95
        assert rest.stats().rate_limited == 2


def test_418_ban_longer_than_we_wait_fails_at_once(sample):
    faults = Faults(rest_418=1, retry_after_s=7200)
    with FakeBinance(sample, speed=0, faults=faults) as server:
        rest = RestClient(server.rest_base, max_retry_after_s=600)
        started = time.monotonic()
        with pytest.raises(RestError) as info:
            rest.agg_trades("BTCUSDT", from_id=1)
        assert time.monotonic() - started < 2
        assert info.value.status == 418 and "Retry-After 7200" in str(info.value)


def test_rate_limit_pauses_every_caller_sharing_the_client(sample):
    faults = Faults(rest_429=1, retry_after_s=1)
    with FakeBinance(sample, speed=0, faults=faults) as server:
        rest = RestClient(server.rest_base)
        rest.agg_trades("BTCUSDT", limit=1)  # consumes the 429, sets the shared pause
        other = threading.Thread(target=rest.agg_trades, args=("ETHUSDT",), kwargs={"limit": 1})
        other.start()
        other.join(10)
        times = [r[0] for r in server.stats.rest_requests]
        assert [r[3] for r in server.stats.rest_requests] == [429, 200, 200]
        assert times[1] - times[0] >= 0.95


def test_unknown_symbol_is_an_error_without_retries(sample):
    with FakeBinance(sample, speed=0) as server:
        rest = RestClient(server.rest_base)
        with pytest.raises(RestError) as info:
            rest.agg_trades("FOOUSDT", limit=1)
        assert info.value.status == 400 and info.value.code == -1121
        assert "Invalid symbol" in str(info.value)
        assert len(server.stats.rest_requests) == 1


def test_server_errors_are_retried(sample):
    faults = Faults(rest_500=2)
    with FakeBinance(sample, speed=0, faults=faults) as server:
        rest = RestClient(server.rest_base)
        assert rest.klines("BTCUSDT", interval="1m", limit=5)
        assert [r[3] for r in server.stats.rest_requests] == [500, 500, 200]


def test_unreachable_server_fails_after_retries():
    rest = RestClient("http://127.0.0.1:9", max_retries=1, timeout_s=1)
    with pytest.raises(RestError) as info:
        rest.exchange_info()
    assert info.value.status == 0


def test_exchange_info_adopts_the_weight_limit(sample):
    with FakeBinance(sample, speed=0, weight_limit_per_min=1200) as server:
        rest = RestClient(server.rest_base, weight_limit_per_min=2400)
        info = rest.exchange_info()
        assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
        assert rest.weight_limit_per_min == 1200


def test_weight_budget_waits_for_the_next_minute(sample):
    """The client throttles itself from X-MBX-USED-WEIGHT-1M before the server has to."""
    clock = [6_000_000.0]  # seconds; a minute boundary
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    # The server counts weight per real minute: do not straddle a minute boundary.
    if time.time() % 60 > 58:
        time.sleep(60.1 - time.time() % 60)
    with FakeBinance(sample, speed=0) as server:
        rest = RestClient(
            server.rest_base,
            weight_limit_per_min=100,
            headroom=1.0,
            clock=lambda: clock[0],
            sleep=sleep,
        )
        for _ in range(5):  # 5 × 20 weight = the whole budget
            rest.agg_trades("BTCUSDT", limit=1)
        assert slept == []
        rest.agg_trades("BTCUSDT", limit=1)
        assert len(slept) == 1 and 59.9 <= slept[0] <= 60.1
        assert rest.stats().paused_s == pytest.approx(slept[0], abs=0.01)


def test_stop_interrupts_a_wait(sample):
    stop = threading.Event()
    faults = Faults(rest_429=1, retry_after_s=30)
    with FakeBinance(sample, speed=0, faults=faults) as server:
        rest = RestClient(server.rest_base, stop=stop)
        errors: list[Exception] = []

        def call() -> None:
            try:
                rest.agg_trades("BTCUSDT", limit=1)
            except RestError as exc:
                errors.append(exc)

        worker = threading.Thread(target=call)
        started = time.monotonic()
        worker.start()
        deadline = time.monotonic() + 5
        while not server.stats.rest_requests and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - started < 5
        assert errors and errors[0].status == 0


def test_kline_weights():
    assert [kline_weight(n) for n in (1, 99, 100, 499, 500, 1000, 1001, 1500)] == [
        1,
        1,
        2,
        2,
        5,
        5,
        10,
        10,
    ]
