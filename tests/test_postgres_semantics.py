"""The storage semantics on PostgreSQL: the SQLite suite's known answers, run again, and more.

Every test of ``tests/test_storage_bars.py`` that takes only a database (``db``) runs here a
second time with the database a PostgreSQL URL (the suite opens it with ``open_writer`` /
``open_reader``, which pick the engine from the name), so one set of known answers covers both
backends. Its property tests run again too, through a PostgreSQL twin of their helper. Then:
bit-identical bars to SQLite on real captures, gaps, alerts, feed status, retention, schema
guards, and the backend-by-URL rules.
"""

from __future__ import annotations

import inspect
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

import storage
from storage import StorageError, Tick, open_reader, open_writer
from storage.backend import backend_of, describe, sqlite_path
from storage.config import StorageSettings
from storage.pg_schema import SCHEMA_VERSION
from storage.postgres import redact_url
from storage.records import Gap
from storage.retention import RetentionJob
from storage.sqlite import now_ms
from tests import test_storage_bars as bars_suite
from tests import test_storage_db as db_suite
from tests.conftest import real_ticks_interleaved

pytestmark = pytest.mark.postgres

DAY_MS, HOUR_MS = 86_400_000, 3_600_000


def _db_only(fn) -> bool:
    return list(inspect.signature(fn).parameters) == ["db"]


#: The SQLite suites' tests that need nothing but a database (bars, and the gap and trade-time
#: reads of ``tests/test_storage_db.py``): found by signature, so tests they gain later run here
#: too.
BAR_CASES = {
    name: fn
    for suite in (bars_suite, db_suite)
    for name, fn in vars(suite).items()
    if name.startswith("test_") and callable(fn) and _db_only(fn)
}


tick = bars_suite.tick


def test_the_sqlite_suite_offers_cases() -> None:
    assert len(BAR_CASES) >= 10, sorted(BAR_CASES)


@pytest.mark.parametrize("name", sorted(BAR_CASES))
def test_bar_semantics_known_answers(name: str, pg_url: str) -> None:
    BAR_CASES[name](pg_url)


@pytest.mark.parametrize(
    "name",
    [
        "test_invariants_volume_trades_ohlc_and_5m_merge",
        "test_any_batch_split_and_order_gives_identical_bars",
    ],
)
def test_bar_properties(name: str, pg_url: str, monkeypatch) -> None:
    """The suite's hypothesis properties on PostgreSQL; each example starts from empty tables."""
    if not hasattr(bars_suite, name) or not hasattr(bars_suite, "_bars_after_writing"):
        pytest.skip(f"tests/test_storage_bars.py no longer has {name}")
    open_writer(pg_url).close()
    reader = open_reader(pg_url, pool_max_size=1)

    def bars_after_writing(batches: list[list[Tick]]) -> dict[str, pd.DataFrame]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("TRUNCATE ticks, bars, bars_1s, symbols RESTART IDENTITY")
        with open_writer(pg_url) as w:
            for batch in batches:
                w.write_ticks(batch)
        reader._sym_ids.clear()
        return {tf: reader.bars("BTCUSDT", tf) for tf in bars_suite.TF_MS}

    monkeypatch.setattr(bars_suite, "_bars_after_writing", bars_after_writing)
    getattr(bars_suite, name)()


# ---------------------------------------------------------------------------- same as SQLite
def test_real_capture_in_shuffled_batches_gives_bars_identical_to_sqlite(
    pg_url: str, tmp_path: Path, storage_hft_trades
) -> None:
    rng = np.random.default_rng(8)
    ticks = real_ticks_interleaved(storage_hft_trades)
    stream = [ticks[i] for i in rng.permutation(len(ticks))]
    stream += [ticks[i] for i in rng.choice(len(ticks), len(ticks) // 20, replace=False)]
    cuts = np.sort(rng.choice(np.arange(1, len(stream)), 80, replace=False))
    batches = [[stream[i] for i in b] for b in np.split(np.arange(len(stream)), cuts)]
    with open_writer(pg_url) as pw, open_writer(tmp_path / "ref.db") as sw:
        for b in batches:
            assert pw.write_ticks(b) == sw.write_ticks(b)
    with open_reader(pg_url) as pr, open_reader(tmp_path / "ref.db") as sr:
        assert pr.symbols() == sr.symbols() == ["BTCUSDT", "ETHUSDT"]
        for symbol in ("BTCUSDT", "ETHUSDT"):
            for tf in ("1s", "1m", "5m"):
                # Same numpy aggregation, same merge order: equal to the last bit.
                pd.testing.assert_frame_equal(
                    pr.bars(symbol, tf), sr.bars(symbol, tf), check_exact=True
                )
            pd.testing.assert_frame_equal(pr.ticks(symbol), sr.ticks(symbol), check_exact=True)
            assert pr.last_trade_id(symbol) == sr.last_trade_id(symbol)
        for tf in ("1s", "1m"):
            pd.testing.assert_frame_equal(
                pr.pair_frame("BTCUSDT", "ETHUSDT", tf, limit=500),
                sr.pair_frame("BTCUSDT", "ETHUSDT", tf, limit=500),
                check_exact=True,
            )
        a, b = pr.info(), sr.info()
        assert a["symbols"] == b["symbols"]
        assert a["backend"] == "postgresql" and "***" in a["path"]


# ---------------------------------------------------------------------------- the rest of the API
def test_gaps_are_recorded_and_updated(pg_url: str) -> None:
    with open_writer(pg_url) as w:
        w.write_ticks([tick(1, 1_000, 1.0), tick(10, 2_000, 1.0)])
        assert w.last_trade_id("btcusdt") == 10 and w.last_trade_id("DOGEUSDT") is None
        gid = w.record_gap(Gap("BTCUSDT", 2, 9, 5_000))
        w.record_gap(Gap("ETHUSDT", 100, 100, 6_000, status="unrepairable", detail="too old"))
        w.update_gap(gid, status="partial", repaired_count=5, detail="REST had 5")
        with pytest.raises(ValueError, match="no gap with id"):
            w.update_gap(gid + 99, status="repaired", repaired_count=1)
        with pytest.raises(ValueError, match="gap status"):
            w.record_gap(Gap("BTCUSDT", 2, 9, 5_000, status="weird"))
    with open_reader(pg_url) as r:
        g = r.gaps()
        assert g[
            [
                "symbol",
                "first_missing_id",
                "last_missing_id",
                "missing",
                "status",
                "repaired_count",
                "detail",
            ]
        ].values.tolist() == [
            ["BTCUSDT", 2, 9, 8, "partial", 5, "REST had 5"],
            ["ETHUSDT", 100, 100, 1, "unrepairable", 0, "too old"],
        ]
        assert r.gaps("ethusdt")["gap_id"].tolist() == [g["gap_id"].iloc[1]]
        assert r.info()["symbols"][0]["gaps"] == {"partial": 1}


def test_alert_rules_and_a_log_that_fires_once_per_bar(pg_url: str) -> None:
    with open_writer(pg_url) as w:
        rid = w.add_alert_rule(
            name="z",
            x="btcusdt",
            y="ethusdt",
            tf="1m",
            metric="zscore",
            op=">",
            threshold=2.0,
            cooldown_s=60,
            params={"window": 120},
        )
        other = w.add_alert_rule(
            name="c", x="A", y="B", tf="5m", metric="corr", op="<", threshold=0.5, cooldown_s=0
        )
        with pytest.raises(ValueError, match="unknown timeframe"):
            w.add_alert_rule(
                name="bad", x="A", y="B", tf="2m", metric="z", op=">", threshold=1, cooldown_s=0
            )
        assert w.fire_alert(
            rule_id=rid, bar_time_ms=60_000, value=2.5, message="z 2.5", fired_ts_ms=1_000
        )
        again = w.fire_alert(rule_id=rid, bar_time_ms=60_000, value=2.7, message="again")
        assert again is None
        assert w.fire_alert(
            rule_id=rid, bar_time_ms=120_000, value=3.0, message="z 3", fired_ts_ms=2_000
        )
        w.set_alert_rule_enabled(rid, False)
        w.delete_alert_rule(other)
    with open_reader(pg_url) as r:
        rules = r.alert_rules()
        assert rules[["rule_id", "x", "y", "enabled"]].values.tolist() == [
            [rid, "BTCUSDT", "ETHUSDT", 0]
        ]
        assert json.loads(rules["params"].iloc[0]) == {"window": 120}
        ev = r.alert_events()
        assert ev[["bar_time_ms", "value", "message"]].values.tolist() == [
            [120_000, 3.0, "z 3"],
            [60_000, 2.5, "z 2.5"],
        ]
        assert r.alert_events(since_ms=1_500)["bar_time_ms"].tolist() == [120_000]
        assert len(r.alert_events(limit=1)) == 1


def test_feed_status_of_two_collectors_and_its_age_filter(pg_url: str) -> None:
    with open_writer(pg_url) as a, open_writer(pg_url) as b:
        a.save_feed_status("collector-a", "btcusdt", {"state": "live", "lag_ms": 12})
        b.save_feed_status("collector-b", "BTCUSDT", {"state": "reconnecting"})
        a.save_feed_status("collector-a", "BTCUSDT", {"state": "live", "lag_ms": 7})
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE feed_status SET updated_ts_ms = updated_ts_ms - 600000 "
                "WHERE collector_id = 'collector-b'"
            )
    with open_reader(pg_url) as r:
        st = r.feed_status()
        assert st[["collector_id", "symbol"]].values.tolist() == [
            ["collector-a", "BTCUSDT"],
            ["collector-b", "BTCUSDT"],
        ]
        assert st["status"].iloc[0] == {"state": "live", "lag_ms": 7}
        assert r.feed_status(max_age_s=60)["collector_id"].tolist() == ["collector-a"]


def test_data_version_moves_after_each_committed_write_only(pg_url: str) -> None:
    with open_writer(pg_url) as w:
        w.write_ticks([tick(1, 1_000, 1.0)])
        r = open_reader(pg_url)
        v0 = r.data_version()
        r.bars("BTCUSDT", "1m")
        assert r.data_version() == v0
        w.write_ticks([tick(2, 2_000, 1.0)])
        v1 = r.data_version()
        assert v1 > v0
        with pytest.raises(ValueError), w.transaction():
            w.write_ticks([tick(3, 3_000, 1.0)])
            raise ValueError("rolled back")
        assert r.data_version() == v1
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [1, 2]


# ---------------------------------------------------------------------------- retention
NOW = 30 * DAY_MS


# The retention rule itself: test_storage_db's db-only test, run here through BAR_CASES.


def test_prune_in_chunks_and_the_background_job(pg_url: str) -> None:
    n = 5_000
    ids = np.arange(n, dtype=np.int64)
    now = now_ms()
    with open_writer(pg_url) as w, open_reader(pg_url) as r:
        w.write_tick_arrays(
            "BTCUSDT",
            "trade",
            ids,
            now - 3 * DAY_MS + ids,
            np.full(n, 100.0),
            np.full(n, 0.5),
            ids % 2 == 0,
        )
        w.write_ticks([tick(n + 1, now - 60_000, 1.0)])
        stops = [0]

        def should_stop() -> bool:
            stops[0] += 1
            return False

        assert (
            w.prune(
                chunk_rows=1_000,
                should_stop=should_stop,
                ticks_keep_s=2 * 86_400,
                bars_1s_keep_s=None,
            )["ticks"]
            == n
        )
        assert stops[0] >= 5  # one check before each chunk
        w.write_ticks([tick(n + 2, now - 3 * DAY_MS, 1.0)])
        settings = StorageSettings(
            db_path="unused",
            database_url=pg_url,
            ticks_keep_s=DAY_MS / 1000,
            retention_interval_s=0.01,
        )
        job = RetentionJob(w, settings).start()
        try:
            deadline = now_ms() + 20_000
            while job.passes < 2 and now_ms() < deadline:
                threading.Event().wait(0.01)
        finally:
            job.stop()
        assert job.last_error is None and job.passes >= 2
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [n + 1]
        assert r.bars("BTCUSDT", "1m")["trades"].sum() == n + 2  # bars outlive their ticks


# ---------------------------------------------------------------------------- the database
def test_schema_guards_foreign_newer_and_missing(pg_url: str) -> None:
    with pytest.raises(StorageError, match=r"no data in .* yet"):
        open_reader(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ticks (x int)")
    with pytest.raises(StorageError, match="already has tables ticks that are not ours"):
        open_writer(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE ticks")
    open_writer(pg_url).close()
    open_writer(pg_url).close()  # a second open finds the schema and changes nothing
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert dict(conn.execute("SELECT key, value FROM qd_meta").fetchall())[
            "schema_version"
        ] == str(SCHEMA_VERSION)
        conn.execute("UPDATE qd_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="schema version 99, newer"):
        open_writer(pg_url)
    with pytest.raises(StorageError, match="schema version 99, newer"):
        open_reader(pg_url)


def test_two_writers_creating_the_schema_at_once(pg_url: str) -> None:
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_writer(pg_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def test_unreachable_server_and_bad_credentials_are_one_clear_error(pg_server: str) -> None:
    with pytest.raises(storage.ConnectionLostError, match="cannot reach"):
        open_writer("postgresql://qd:secret@127.0.0.1:1/nowhere", connect_timeout_s=2)
    bad = (
        pg_server.replace("://", "://nobody_qd:wrong@", 1)
        if "@" not in pg_server
        else ("postgresql://nobody_qd:wrong@" + pg_server.split("@", 1)[1])
    )
    with pytest.raises(StorageError) as info:
        open_writer(bad, connect_timeout_s=2)
    assert "wrong" not in str(info.value)


def test_backend_is_chosen_by_the_name(tmp_path: Path, monkeypatch) -> None:
    assert (
        backend_of("data.db") == backend_of("/a/b.db") == backend_of("sqlite:///x.db") == "sqlite"
    )
    assert backend_of("postgresql://u@h/d") == backend_of("postgres://u@h/d") == "postgresql"
    with pytest.raises(StorageError, match="unsupported database URL scheme 'mysql'"):
        backend_of("mysql://u:p@h/d")
    assert sqlite_path("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert (
        describe("postgresql://u:hunter2@h:5/d?sslmode=require")
        == "postgresql://u:***@h:5/d?sslmode=require"
    )
    assert redact_url("postgresql://h/d?password=hunter2") == "postgresql://h/d?password=***"
    with open_writer(f"sqlite:///{tmp_path}/via_url.db") as w:
        assert type(w).__module__ == "storage.sqlite"
    assert (tmp_path / "via_url.db").exists()
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/d")
    monkeypatch.setenv("DB_PATH", "other.db")
    assert storage.default_db() == "postgresql://u@h/d"
    monkeypatch.delenv("DATABASE_URL")
    assert storage.default_db() == "other.db"
