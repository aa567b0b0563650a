"""The headless collector CLI, ``python -m ingestion``, against the local server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording
from storage import open_reader
from tests.conftest import killed_on_exit, start_collector, stop_with_sigint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    with FakeBinance(load_recording([SAMPLE_RECORDING]), speed=5, loop=True, preroll_s=60) as srv:
        yield srv


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BINANCE_WS_BASE", "BINANCE_REST_BASE", "DB_PATH")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout_s: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "ingestion", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _ids(db: Path, symbol: str) -> list[int]:
    with open_reader(db) as reader:
        return sorted(reader.ticks(symbol)["trade_id"].tolist())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--symbols", "btcusdt,foousdt"], "FOOUSDT is not listed"),
        (["--symbols", "btc-usdt"], "invalid symbol"),
        (["--symbols", "btcusdt", "--ws-base", "http://127.0.0.1:1"], "ws_base"),
        (["--symbols", "btcusdt", "--duration", "-1"], "--duration"),
    ],
)
def test_fatal_configuration_errors_exit_2_with_one_line(server, tmp_path, args, needle):
    env = _env(
        BINANCE_WS_BASE=server.ws_base,
        BINANCE_REST_BASE=server.rest_base,
        DB_PATH=str(tmp_path / "x.db"),
    )
    result = _run(args, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_unwritable_database_is_a_configuration_error(server, tmp_path):
    """Without --db the collector follows the one database rule (tests/test_db_rule.py); a
    database it cannot create is one line naming it and exit 2."""
    db = tmp_path / "no" / "such" / "dir" / "x.db"
    args = ["--symbols", "btcusdt", "--rest-base", server.rest_base, "--db", str(db)]
    result = _run(args, _env())
    assert result.returncode == 2 and str(db) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_environment_sets_endpoints_and_database_and_flags_win(server, tmp_path):
    db = tmp_path / "env.db"
    env = _env(
        BINANCE_WS_BASE=server.ws_base, BINANCE_REST_BASE="http://127.0.0.1:9", DB_PATH=str(db)
    )
    # The REST base in the environment is dead; the flag must win over it.
    result = _run(
        [
            "--symbols",
            "btcusdt,ethusdt",
            "--rest-base",
            server.rest_base,
            "--duration",
            "1.5",
            "--status-interval",
            "0.5",
            "--history-klines",
            "0",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("BTCUSDT ") for line in lines)
    assert any(line.startswith("ETHUSDT ") for line in lines)
    assert "stopping (duration reached)" in result.stdout
    for symbol in ("BTCUSDT", "ETHUSDT"):
        ids = _ids(db, symbol)
        assert ids and ids == list(range(ids[0], ids[-1] + 1))


def test_sigint_stops_cleanly_with_nothing_lost(server, tmp_path):
    db = tmp_path / "sig.db"
    flags = ["--status-interval", "0.3", "--history-klines", "0"]
    proc = start_collector(db, server, *flags, symbols="ethusdt", env=_env())
    with killed_on_exit(proc):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("ETHUSDT ") and " live " in line:
                break
        else:
            pytest.fail("no live status line")
        out, err = stop_with_sigint(proc, 20)
    assert proc.returncode == 0, err
    assert "stopping (signal SIGINT)" in out and "0 left queued" in out
    last_line = [ln for ln in out.splitlines() if ln.startswith("ETHUSDT ")][-1]
    assert " stopped " in last_line
    ids = _ids(db, "ETHUSDT")
    assert ids == list(range(ids[0], ids[-1] + 1))
