"""Shared pytest fixtures. Each section belongs to one package's tests; append, don't rewrite."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

# ---------------------------------------------------------------- polling and a real page server
# One home, shared with the benchmarks: bench/harness.py (docs/development.md says why there).
# wait_for(condition, timeout_s, what) is the one way tests wait; streamlit_server(tmp, env, ...)
# runs ``streamlit run app.py`` on a free port and yields ``(url, proc)``.
from bench.harness import free_port, streamlit_server, wait_for  # noqa: F401

# ---------------------------------------------------------------- storage tests
# Real recorded Binance data (third-party, read-only): /work/shared/data/real/README.md.
STORAGE_REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
STORAGE_HFT_FILES = {
    "BTCUSDT": "binance_usdm_ws_hftbacktest/btcusdt_20240808.gz",
    "ETHUSDT": "binance_usdm_ws_hftbacktest/ethusdt_20240808.gz",
}


@pytest.fixture(scope="session")
def storage_real_dir() -> Path:
    """The shared real-data folder; tests that need it skip when it is absent."""
    if not (STORAGE_REAL_DIR / "README.md").is_file():
        pytest.skip(f"real recorded data not found at {STORAGE_REAL_DIR} (shared data missing)")
    return STORAGE_REAL_DIR


@pytest.fixture(scope="session")
def storage_hft_trades(storage_real_dir: Path) -> dict[str, pd.DataFrame]:
    """The ``@trade`` prints of the hftbacktest captures, parsed here with ``json`` only.

    Deliberately independent of ``formats``: this is the oracle's input. One frame per
    symbol, in file order, with columns ``trade_id, ts_ms, price, qty, is_buyer_maker`` and
    ``line`` (the raw capture line, to build files of other formats from real prints).
    """
    out = {}
    for symbol, rel in STORAGE_HFT_FILES.items():
        rows = []
        with gzip.open(storage_real_dir / rel, "rt", encoding="utf-8") as fh:
            for line in fh:
                if '@trade"' not in line:
                    continue
                _, payload = line.rstrip("\n").split(" ", 1)
                d = json.loads(payload)["data"]
                assert d["e"] == "trade" and d["X"] == "MARKET" and d["s"] == symbol
                rows.append(
                    (d["t"], d["T"], float(d["p"]), float(d["q"]), d["m"], line.rstrip("\n"))
                )
        out[symbol] = pd.DataFrame(
            rows, columns=["trade_id", "ts_ms", "price", "qty", "is_buyer_maker", "line"]
        )
    return out


def real_ticks(df: pd.DataFrame, symbol: str) -> list:
    """One symbol's frame of :func:`storage_hft_trades` as ``storage.Tick`` values, file order."""
    from storage import IdKind, Tick

    return [
        Tick(symbol, int(t), int(ts), float(p), float(q), bool(m), IdKind.TRADE)
        for t, ts, p, q, m in df[
            ["trade_id", "ts_ms", "price", "qty", "is_buyer_maker"]
        ].itertuples(index=False)
    ]


def write_first_seconds(writer, trades: dict[str, pd.DataFrame], seconds: float) -> dict:
    """Write each symbol's prints of its first ``seconds`` (``write_tick_arrays``, one call per
    symbol); returns each symbol's last print written (a row of its frame)."""
    from storage import IdKind

    last = {}
    for symbol, df in trades.items():
        part = df[df["ts_ms"] < df["ts_ms"].iloc[0] + seconds * 1000]
        cols = ("trade_id", "ts_ms", "price", "qty", "is_buyer_maker")
        writer.write_tick_arrays(symbol, IdKind.TRADE, *(part[c] for c in cols))
        last[symbol] = part.iloc[-1]
    return last


def real_ticks_interleaved(trades: dict[str, pd.DataFrame]) -> list:
    """Every symbol's ticks merged by time (stable), as a live feed of them all would see them."""
    out = [t for symbol, df in trades.items() for t in real_ticks(df, symbol)]
    out.sort(key=lambda t: t.ts_ms)
    return out


# ---------------------------------------------------------------- postgres tests
# A real server: TEST_DATABASE_URL (e.g. postgresql://qd:qd@127.0.0.1:5432/postgres, printed by
# `bash .ci/postgres`). Each session makes a throwaway database and drops it; each test gets an
# empty schema of its own in it. Without a server the tests skip, except in CI (CI=true).
def _pg_unavailable(reason: str) -> None:
    import os

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _pg_with_database(url: str, dbname: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def pg_url_with_schema(url: str, schema: str) -> str:
    """``url`` whose connections keep their tables in ``schema`` (libpq ``options``)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def _pg_made(admin_url: str, create_sql: str, drop_sql: str):
    """``create_sql`` on ``admin_url``; on exit, pooled connections closed, then ``drop_sql``."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(create_sql)
    try:
        yield
    finally:
        from storage.postgres import close_pools

        close_pools()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop_sql)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of a reachable PostgreSQL server whose role may create databases."""
    import os

    import psycopg

    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        _pg_unavailable(
            "TEST_DATABASE_URL is not set (`bash .ci/postgres` starts a local "
            "server and prints one)"
        )
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        from storage.postgres import redact_url

        _pg_unavailable(f"no PostgreSQL at {redact_url(url)} ({str(exc).strip()})")
    return url


@pytest.fixture(scope="session")
def pg_database(pg_server: str):
    """A database of this test session's own, dropped (with its connections) at the end."""
    import os
    import secrets

    name = f"qd_test_{os.getpid()}_{secrets.token_hex(3)}"
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    with _pg_made(pg_server, f'CREATE DATABASE "{name}"', drop):
        yield _pg_with_database(pg_server, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path) -> str:
    """A new database of either engine, as ``open_writer``/``open_reader`` take it: a SQLite
    file in ``tmp_path``, or a PostgreSQL URL (:func:`pg_url`). A test taking it runs twice."""
    if request.param == "sqlite":
        return str(tmp_path / "db.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def pg_url(pg_database: str):
    """A URL whose tables live in a new, empty schema; the schema is dropped after the test."""
    import secrets

    schema = f"t_{secrets.token_hex(4)}"
    with _pg_made(pg_database, f"CREATE SCHEMA {schema}", f"DROP SCHEMA {schema} CASCADE"):
        yield pg_url_with_schema(pg_database, schema)


# ---------------------------------------------------------------- the collector as a process
#: Settings a collector child must not inherit from the shell: the test names them itself.
COLLECTOR_ENV_DROP = ("BINANCE_WS_BASE", "BINANCE_REST_BASE", "DB_PATH", "DATABASE_URL")


def collector_env(**extra: str) -> dict[str, str]:
    """This environment less :data:`COLLECTOR_ENV_DROP`, importing this checkout, plus ``extra``."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in COLLECTOR_ENV_DROP}
    return env | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])} | extra


@contextlib.contextmanager
def killed_on_exit(proc):
    """Yield ``proc``; on leaving the block it is killed and reaped if it still runs, so a test
    that fails half-way leaves no process behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_with_sigint(proc, timeout_s: float = 60.0) -> tuple[str | None, str | None]:
    """Stop ``proc`` as Ctrl-C does and reap it; returns what it printed to its pipes.

    Killed if it has not exited ``timeout_s`` after the SIGINT (its return code then says so,
    and the caller's assertion on it fails). Output not piped comes back as ``None``.
    """
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def start_collector(db, server, *flags, symbols: str | None = None, **popen_kw):
    """``python -m ingestion [--symbols S] --db DB --ws-base W --rest-base R FLAGS``.

    Runs from the repository root against ``server`` (a ``replay.FakeBinance``), with
    :func:`collector_env` and stdout/stderr piped as text unless ``popen_kw`` says otherwise.
    Returns the ``subprocess.Popen``; the test stops it.
    """
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ingestion", *(["--symbols", symbols] if symbols else [])]
    cmd += ["--db", str(db), "--ws-base", server.ws_base, "--rest-base", server.rest_base]
    kw = {"env": collector_env(), "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen([*cmd, *map(str, flags)], cwd=root, text=True, **(kw | popen_kw))
