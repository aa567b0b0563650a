"""Small pieces: backoff delays, the connection-attempt limiter, settings, status lines."""

from __future__ import annotations

import random
import threading
import time

import pytest

from formats.wire import StreamKind
from ingestion.backoff import ConnectLimiter, backoff, instant_backoff
from ingestion.config import ConfigError, FeedSettings, normalize_symbols
from ingestion.status import FeedState, SymbolStatus


def test_backoff_doubles_up_to_the_cap_without_jitter():
    delays = backoff(initial_s=0.5, factor=2.0, max_s=5.0, jitter=0.0)
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_jitter_stays_within_its_fraction():
    rng = random.Random(7)
    delays = backoff(initial_s=1.0, factor=2.0, max_s=8.0, jitter=0.5, rng=rng)
    nominal = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    got = [next(delays) for _ in nominal]
    assert all(n * 0.5 <= d <= n for d, n in zip(got, nominal, strict=True))
    assert len({round(d / n, 6) for d, n in zip(got, nominal, strict=True)}) > 1  # random


def test_instant_backoff_never_waits():
    delays = instant_backoff()
    assert [next(delays) for _ in range(5)] == [0.0] * 5


def test_connect_limiter_counts_a_sliding_window():
    now = [100.0]
    limiter = ConnectLimiter(attempts=3, window_s=10.0, clock=lambda: now[0])
    stop = threading.Event()
    assert all(limiter.acquire(stop) for _ in range(3))
    assert limiter.used() == 3
    now[0] += 10.0  # the window slid past all three
    assert limiter.acquire(stop) and limiter.used() == 1


def test_connect_limiter_waits_and_can_be_stopped():
    limiter = ConnectLimiter(attempts=1, window_s=0.3)
    stop = threading.Event()
    assert limiter.acquire(stop)
    started = time.monotonic()
    assert limiter.acquire(stop)  # waits for the window
    assert time.monotonic() - started >= 0.25
    stop.set()
    assert limiter.acquire(stop) is False


def test_settings_defaults_follow_the_binance_doc():
    s = FeedSettings()
    assert s.ws_url("BTCUSDT") == "wss://fstream.binance.com/market/ws/btcusdt@aggTrade"
    t = s.replace(stream="trade")
    assert t.stream is StreamKind.TRADE
    assert t.ws_url("ethusdt") == "wss://fstream.binance.com/public/ws/ethusdt@trade"
    assert s.planned_reconnect_s == 23 * 3600 and s.rest_page_limit == 1000
    assert s.replace(ws_route="").ws_url("BTCUSDT").endswith(".com/ws/btcusdt@aggTrade")


def test_settings_from_environment_and_flags_win():
    env = {"BINANCE_WS_BASE": "ws://127.0.0.1:1/", "BINANCE_REST_BASE": "http://127.0.0.1:1"}
    s = FeedSettings.from_env(env)
    assert (s.ws_base, s.rest_base) == ("ws://127.0.0.1:1", "http://127.0.0.1:1")
    s = FeedSettings.from_env(env, ws_base="ws://127.0.0.1:2", rest_base=None)
    assert (s.ws_base, s.rest_base) == ("ws://127.0.0.1:2", "http://127.0.0.1:1")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"ws_base": "http://x"}, "ws_base"),
        ({"rest_base": "wss://x"}, "rest_base"),
        ({"pong_timeout_s": -1}, "pong_timeout_s"),
        ({"stale_after_s": float("nan")}, "stale_after_s"),
        ({"queue_size": 0}, "queue_size"),
        ({"rest_page_limit": 5000}, "1000"),
        ({"stream": "bookTicker"}, "bookTicker"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_settings_are_config_errors(changes, needle):
    with pytest.raises((ConfigError, ValueError)) as info:
        FeedSettings.from_env({}, **changes)
    assert needle in str(info.value)


def test_symbols_are_normalised():
    assert normalize_symbols(" btcusdt, ETHUSDT,btcusdt ,") == ("BTCUSDT", "ETHUSDT")
    assert normalize_symbols(["btcusdt_240927"]) == ("BTCUSDT_240927",)
    with pytest.raises(ConfigError, match="invalid symbol"):
        normalize_symbols("btc-usdt")


def test_status_line_and_dict():
    status = SymbolStatus(
        symbol="BTCUSDT",
        state=FeedState.LIVE,
        stream="aggTrade",
        url="wss://x",
        connected=True,
        messages=10,
        messages_per_s=2.5,
        last_trade_ms=1_723_161_256_560,
        last_trade_age_s=0.4,
        last_trade_id=99,
        reconnects=1,
        planned_reconnects=0,
        gaps_found=2,
        gaps_repaired=1,
        ids_missing=5,
        ids_backfilled=7,
        backfill_pending=False,
        backfill_todo_ids=0,
        history_loaded=True,
        rejected=3,
        duplicates=0,
        stored=17,
        last_error="boom",
        last_error_ms=1,
        connected_for_s=3.0,
        queue_depth=0,
        queue_capacity=10,
        queue_blocked_s=0.0,
        updated_ms=2,
    )
    line = status.line()
    assert line.startswith("BTCUSDT") and " live " in line and "23:54:16.560" in line
    assert "gaps=1/2" in line and "rejected=3" in line and "boom" in line
    assert status.to_dict()["state"] == "live"


def test_kline_minutes_are_named_as_iso_ranges():
    from ingestion.backfill import minutes_text as _minutes_text

    t0 = 1_723_161_300_000  # 2024-08-08T23:55Z
    assert _minutes_text([t0]) == "2024-08-08T23:55Z"
    assert _minutes_text([t0 + 120_000, t0, t0 + 60_000]) == "2024-08-08T23:55Z..23:57Z"
    assert (
        _minutes_text([t0, t0 + 60_000, t0 + 600_000])
        == "2024-08-08T23:55Z..23:56Z, 2024-08-09T00:05Z"
    )
    assert _minutes_text([t0 + 240_000, t0 + 300_000]) == "2024-08-08T23:59Z..2024-08-09T00:00Z"
