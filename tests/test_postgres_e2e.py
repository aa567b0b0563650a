"""End to end on PostgreSQL: the headless collector records the replay server's feed while a
second process reads bars and analytics from the same database."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from replay import start_replay_server
from storage import StorageError, open_reader
from tests.conftest import collector_env, start_collector, stop_with_sigint, wait_for
from tests.test_analytics_cli import pair_args

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]


BTC_ETH_1S = {"x": "BTCUSDT", "y": "ETHUSDT", "tf": "1s"}


def _analytics(pg_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analytics", *pair_args(pg_url, "--window", "30", **BTC_ETH_1S)],
        cwd=ROOT,
        env=collector_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _collector(pg_url: str, server, symbols: str) -> subprocess.Popen:
    flags = ["--status-interval", "0.5", "--history-klines", "0", "--duration", "120"]
    return start_collector(pg_url, server, *flags, symbols=symbols)


def test_collector_writes_postgres_while_another_process_reads(pg_url: str) -> None:
    server = start_replay_server(None, speed=4.0, loop=False, preroll_s=30)
    collector = _collector(pg_url, server, "btcusdt,ethusdt")
    summaries = []
    try:
        # Poll the second process until it sees the analytics defined and then growing.
        for _ in range(120):
            if collector.poll() is not None:
                break
            result = _analytics(pg_url)
            if result.returncode == 0:
                summary = json.loads(result.stdout)
                if summary.get("zscore_last") is not None:
                    summaries.append(summary)
                    if len(summaries) >= 2 and summaries[-1]["nobs"] > summaries[0]["nobs"]:
                        break
            with contextlib.suppress(subprocess.TimeoutExpired):
                collector.wait(timeout=0.5)  # the pause between polls; ends early if it exits
        assert collector.poll() is None, collector.stderr.read()
        assert len(summaries) >= 2, "the reader never saw analytics defined and growing"
        assert summaries[-1]["nobs"] > summaries[0]["nobs"] >= 30
        assert summaries[-1]["beta"] > 0  # BTC and ETH move together

        with open_reader(pg_url) as reader:
            status = reader.feed_status(max_age_s=30)
        assert set(status["symbol"]) == {"BTCUSDT", "ETHUSDT"}
        assert status["collector_id"].nunique() == 1
        out, err = stop_with_sigint(collector, 60)
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait()
        server.stop()
    assert collector.returncode == 0, err
    assert "0 left queued" in out
    with open_reader(pg_url) as reader:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            ticks = reader.ticks(symbol)
            ids = ticks["trade_id"].tolist()
            assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: ids not contiguous"
            bars = reader.bars(symbol, "1s")
            assert int(bars["trades"].sum()) == len(ticks)


def _live_rows(pg_url: str) -> list[tuple[str, str]]:
    try:
        with open_reader(pg_url) as reader:
            status = reader.feed_status(max_age_s=20)
    except StorageError:  # the collector has not created the schema yet
        return []
    return sorted(
        (r.collector_id, r.symbol) for r in status.itertuples() if r.status.get("state") == "live"
    )


def test_dashboard_defers_to_live_collectors_and_two_collectors_coexist(pg_url, monkeypatch):
    """A headless collector owns BTCUSDT: the dashboard reads it and feeds only ETHUSDT; a
    second collector of BTCUSDT shows as a second status row and stores nothing twice."""
    from service.desk import DashboardService
    from service.feeds import COLLECTOR_ID
    from service.settings import AppSettings

    monkeypatch.setenv("TICKS_KEEP_HOURS", "forever")
    monkeypatch.setenv("BARS_1S_KEEP_DAYS", "forever")
    server = start_replay_server(None, speed=4.0, loop=True, preroll_s=30)
    first = _collector(pg_url, server, "btcusdt")
    second = svc = None
    try:
        wait_for(
            lambda: any(sym == "BTCUSDT" for _, sym in _live_rows(pg_url)),
            60.0,
            "the collector's live status",
        )
        settings = AppSettings(
            db_path=pg_url,
            replay_db_path="unused.replay.db",
            ws_base=server.ws_base,
            rest_base=server.rest_base,
            autostart=False,
            probe_timeout_s=2.0,
        )
        svc = DashboardService(settings)
        assert svc.read_only is None  # PostgreSQL takes several writers
        svc.start_feed()
        status = svc.status()
        assert list(status.collected_elsewhere) == ["BTCUSDT"]
        wait_for(
            lambda: (
                [s.symbol for s in svc.feed_status()] == ["ETHUSDT"]
                and svc.feed_status()[0].state.value == "live"
            ),
            60.0,
            "the dashboard's own ETHUSDT feed",
        )

        second = _collector(pg_url, server, "btcusdt")
        # Published every few seconds: the dashboard's ETHUSDT and two BTCUSDT collectors.
        rows = wait_for(
            lambda: (
                (r := _live_rows(pg_url))
                and sum(sym == "BTCUSDT" for _, sym in r) == 2
                and (COLLECTOR_ID, "ETHUSDT") in r
                and r
            ),
            60.0,
            "two BTCUSDT collectors and the dashboard's ETHUSDT feed published",
        )
        assert len({c for c, sym in rows if sym == "BTCUSDT"}) == 2
    finally:
        if svc is not None:
            svc.close()
        for proc in (first, second):
            if proc is not None:
                stop_with_sigint(proc, 60)
        server.stop()
    assert first.returncode == 0 and second.returncode == 0
    with open_reader(pg_url) as reader:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            ticks = reader.ticks(symbol)
            ids = ticks["trade_id"].tolist()
            assert ids == sorted(set(ids)), f"{symbol}: a trade stored twice"
            assert int(reader.bars(symbol, "1s")["trades"].sum()) == len(ticks), (
                f"{symbol}: bars count a trade twice or miss one"
            )
