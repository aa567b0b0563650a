"""End to end on PostgreSQL: the headless collector records the replay server's feed while a
second process reads bars and analytics from the same database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingestion.replay import start_replay_server
from storage import open_reader

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DB_PATH", "DATABASE_URL", "BINANCE_WS_BASE", "BINANCE_REST_BASE"):
        env.pop(name, None)
    return env


def _analytics(pg_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analytics", "--db", pg_url, "--x", "BTCUSDT", "--y", "ETHUSDT",
         "--tf", "1s", "--window", "30"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
    )


def test_collector_writes_postgres_while_another_process_reads(pg_url: str) -> None:
    server = start_replay_server(None, speed=4.0, loop=False, preroll_s=30)
    collector = subprocess.Popen(
        [sys.executable, "-m", "ingestion", "--symbols", "btcusdt,ethusdt", "--db", pg_url,
         "--ws-base", server.ws_base, "--rest-base", server.rest_base,
         "--status-interval", "0.5", "--history-klines", "0", "--duration", "120"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
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
        collector.send_signal(signal.SIGINT)
        out, err = collector.communicate(timeout=60)
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
