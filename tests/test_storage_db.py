"""The SQLite file: schema and pragmas, the one-writer rule, refusing foreign files, a full
disk, concurrent readers, and retention. Everything runs against real files in ``tmp_path``;
the other process in the writer-lock tests is a real ``python`` subprocess.
"""

from __future__ import annotations

import hashlib
import os
import select
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from storage import Gap, IdKind, StorageError, Tick, WriterBusyError, open_reader, open_writer
from storage.__main__ import main
from storage.config import StorageSettings
from storage.retention import RetentionJob
from storage.schema import APPLICATION_ID, SCHEMA_VERSION
from storage.sqlite import now_ms
from tests.conftest import real_ticks_interleaved, wait_for

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 20.0  # generous upper bound for anything we poll for; typical waits are ms
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
TF = {"1s": 1_000, "1m": 60_000}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ticks(
    first_id: int,
    n: int,
    start_ms: int,
    step_ms: int = 100,
    symbol: str = "BTCUSDT",
    price: float = 100.0,
) -> list[Tick]:
    return [
        Tick(
            symbol,
            first_id + i,
            start_ms + i * step_ms,
            price + (i % 7) * 0.5,
            0.001 * (1 + i % 5),
            i % 3 == 0,
            IdKind.TRADE,
        )
        for i in range(n)
    ]


def python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def read_line(proc: subprocess.Popen, timeout_s: float = DEADLINE_S) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        proc.kill()
        pytest.fail(f"subprocess printed nothing in {timeout_s} s")
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"subprocess ended early: {proc.communicate()[1]}")
    return line.strip()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A new SQLite file; a test taking only ``db`` runs on PostgreSQL too
    (``tests/test_postgres_semantics.py`` passes it a URL)."""
    return tmp_path / "db.db"


# ---------------------------------------------------------------------------- the file
def test_a_new_file_gets_wal_schema_version_and_application_id(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with open_writer(db, busy_timeout_s=3.0) as w:
        assert w._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 3000
        w.write_ticks(ticks(1, 10, 1_000))
        with open_reader(db, busy_timeout_s=2.5) as r:
            assert r._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
            assert r.bars("BTCUSDT", "1s")["trades"].sum() == 10
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
    with open_writer(db) as w:  # reopening keeps the data
        assert w.write_ticks(ticks(1, 10, 1_000)) == 0


def test_missing_folder_directory_or_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_writer(tmp_path / "no" / "such" / "x.db")
    with pytest.raises(StorageError, match="is a directory"):
        open_writer(tmp_path)
    with pytest.raises(StorageError, match="no database at"):
        open_reader(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


# A foreign or damaged file must be refused with a clear message and left byte-for-byte alone.
def _other_app(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
    con.close()


def _other_app_id(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript("PRAGMA application_id = 1234; CREATE TABLE t (x);")
    con.close()


def _newer_schema(path: Path) -> None:
    with open_writer(path) as w:
        w.write_ticks(ticks(1, 5, 1_000))
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()


def _corrupt_header_page(path: Path) -> None:
    with open_writer(path) as w:
        w.write_ticks(ticks(1, 5, 1_000))
    data = bytearray(path.read_bytes())
    data[100:400] = b"\xab" * 300  # page 1's b-tree (the schema) right after the header
    path.write_bytes(bytes(data))


FOREIGN = {
    "another_app": (_other_app, "another application"),
    "another_app_id": (_other_app_id, "another application"),
    "newer_schema": (_newer_schema, "newer than this program"),
    "corrupt": (_corrupt_header_page, "corrupt"),
    "text": (lambda p: p.write_text("id,price\n1,2\n" * 200), "not a SQLite database"),
    "random_bytes": (
        lambda p: p.write_bytes(np.random.default_rng(7).bytes(8192)),
        "not a SQLite database",
    ),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_foreign_or_damaged_files_are_refused_and_untouched(
    tmp_path: Path, kind: str, capsys
) -> None:
    make, message = FOREIGN[kind]
    db = tmp_path / f"{kind}.db"
    make(db)
    before = digest(db)
    for opener in (open_writer, open_reader):
        with pytest.raises(StorageError, match=message) as exc:
            opener(db)
        assert str(db) in str(exc.value)
    assert main(["info", "--db", str(db)]) == 2
    assert main(["import", "--db", str(db), str(db)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err), err
    assert message in err[0]
    assert digest(db) == before
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    # The refused file did not take the writer lock with it: a good file opens next to it.
    with open_writer(tmp_path / "good.db"):
        pass


def test_a_zero_byte_file_becomes_a_new_database(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    with open_writer(db) as w:
        assert w.write_ticks(ticks(1, 3, 1_000)) == 3


# ---------------------------------------------------------------------------- one writer
def test_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "one.db"
    first = open_writer(db)
    try:
        first.write_ticks(ticks(1, 10, 1_000))
        with pytest.raises(WriterBusyError, match=f"already has a writer \\(pid {os.getpid()}\\)"):
            open_writer(db)
        assert first.write_ticks(ticks(11, 10, 2_000)) == 10  # the first one is unaffected
    finally:
        first.close()
    with open_writer(db) as second, open_reader(db) as r:
        second.write_ticks(ticks(21, 10, 3_000))
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == list(range(1, 31))
    with pytest.raises(StorageError, match="writer is closed"):
        second.write_ticks(ticks(31, 1, 4_000))


HOLD_WRITER = """
import sys
from storage import IdKind, Tick, open_writer
w = open_writer(sys.argv[1])
w.write_ticks([Tick("BTCUSDT", i, 1_000 * i, 100.0 + i, 1.0, False, IdKind.TRADE)
               for i in range(1, 101)])
print("ready", flush=True)
sys.stdin.readline()
w.write_ticks([Tick("BTCUSDT", 101, 101_000, 1.0, 1.0, False, IdKind.TRADE)])
w.close()
print("closed", flush=True)
"""


def test_writer_in_another_process_excludes_this_one_and_nothing_is_lost(
    tmp_path: Path, capsys
) -> None:
    db = tmp_path / "shared.db"
    holder = python(HOLD_WRITER, str(db))
    try:
        assert read_line(holder) == "ready"
        with pytest.raises(WriterBusyError, match=f"pid {holder.pid}"):
            open_writer(db)
        # The CLI says so in one line and exits 2; readers keep working meanwhile.
        csv = tmp_path / "BTCUSDT-trades.csv"
        csv.write_text("1,100.0,1.0,100.0,1000,false\n")
        assert main(["import", str(csv), "--db", str(db)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "already has a writer" in err[0], err
        with open_reader(db) as r:
            assert r.bars("BTCUSDT", "1m")["trades"].sum() == 100
        holder.stdin.write("go on\n")
        holder.stdin.flush()
        assert read_line(holder) == "closed"
        assert holder.wait(DEADLINE_S) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with open_writer(db) as w, open_reader(db) as r:  # free again once the other process closed
        w.write_ticks(ticks(500, 1, 500_000))
        assert r.bars("BTCUSDT", "1m")["trades"].sum() == 102


def test_a_killed_writer_process_releases_the_file_with_its_commits_intact(
    tmp_path: Path,
) -> None:
    db = tmp_path / "killed.db"
    holder = python(HOLD_WRITER, str(db))
    try:
        assert read_line(holder) == "ready"
        holder.kill()  # SIGKILL: no close(), no cleanup
        holder.wait(DEADLINE_S)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with open_writer(db) as w, open_reader(db) as r:
        assert r.bars("BTCUSDT", "1s")["close"].tolist() == [100.0 + i for i in range(1, 101)]
        assert w.write_ticks(ticks(1, 100, 1_000)) == 0


def test_this_process_excludes_a_writer_in_another_process(tmp_path: Path) -> None:
    db = tmp_path / "mine.db"
    code = (
        "import sys\nfrom storage import WriterBusyError, open_writer\n"
        "try:\n    open_writer(sys.argv[1])\nexcept WriterBusyError as e:\n"
        "    print('busy:', e)\n    sys.exit(3)\n"
    )
    with open_writer(db) as w:
        w.write_ticks(ticks(1, 10, 1_000))
        other = python(code, str(db))
        out, err = other.communicate(timeout=DEADLINE_S)
        assert other.returncode == 3, err
        assert out.startswith("busy: ") and f"pid {os.getpid()}" in out
        assert w.write_ticks(ticks(11, 5, 2_000)) == 5


# ---------------------------------------------------------------------------- full disk
def test_a_full_disk_rolls_back_the_batch_and_keeps_earlier_commits(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    with open_writer(db) as w, open_reader(db) as r:
        w.write_ticks(ticks(1, 500, 0))
        before = {tf: r.bars("BTCUSDT", tf) for tf in ("1s", "1m", "5m")}
        pages = w._conn.execute("PRAGMA page_count").fetchone()[0]
        # A real SQLITE_FULL: the file may not grow by more than two pages.
        w._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StorageError, match="disk full") as exc:
            w.write_ticks(ticks(1_000, 20_000, 100_000))
        assert str(db) in str(exc.value)
        for tf, df in before.items():
            pd.testing.assert_frame_equal(r.bars("BTCUSDT", tf), df)
        assert len(r.ticks("BTCUSDT")) == 500
        # Space again: the writer recovers and the same batch goes in whole.
        w._conn.execute("PRAGMA max_page_count = 1073741823")
        assert w.write_ticks(ticks(1_000, 20_000, 100_000)) == 20_000
    with open_reader(db) as r:
        assert r.bars("BTCUSDT", "5m")["trades"].sum() == 20_500
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()


# ---------------------------------------------------------------------------- concurrency
def test_one_writer_thread_and_three_reader_threads(tmp_path: Path, storage_hft_trades) -> None:
    db = tmp_path / "busy.db"
    rows = real_ticks_interleaved(storage_hft_trades)  # as a live feed would see them
    batches = [rows[i : i + 150] for i in range(0, len(rows), 150)]
    total = {s: len(df) for s, df in storage_hft_trades.items()}
    writer = open_writer(db)
    # Readers need both symbols to exist: start with each symbol's first tick.
    writer.write_ticks([next(t for t in rows if t.symbol == s) for s in total])
    done = threading.Event()
    errors: list[str] = []
    first_read = [threading.Event() for _ in range(3)]
    partial_reads = [0, 0, 0]

    def consistent_snapshot(k: int) -> None:
        # One read transaction: 1s, 1m and 5m bars must agree (every write updates all three).
        with open_reader(db) as r:
            seen = 0
            while True:
                last = done.is_set()
                r._conn.execute("BEGIN")  # a read snapshot across several Reader calls
                try:
                    trades = {
                        tf: int(r.bars("BTCUSDT", tf)["trades"].sum()) for tf in ("1s", "1m", "5m")
                    }
                    vols = {tf: r.bars("BTCUSDT", tf)["volume"].sum() for tf in ("1s", "1m", "5m")}
                finally:
                    r._conn.execute("COMMIT")
                if len(set(trades.values())) != 1:
                    errors.append(f"inconsistent trade counts {trades}")
                if not np.allclose(list(vols.values()), vols["1s"], rtol=1e-9):
                    errors.append(f"inconsistent volumes {vols}")
                if trades["1s"] < seen:
                    errors.append(f"trade count went back from {seen} to {trades['1s']}")
                seen = trades["1s"]
                partial_reads[k] += seen < total["BTCUSDT"]
                first_read[k].set()
                if last:
                    if seen != total["BTCUSDT"]:
                        errors.append(f"final read saw {seen} of {total['BTCUSDT']} trades")
                    return

    def pair_reader(k: int) -> None:
        with open_reader(db) as r:
            while True:
                last = done.is_set()
                for tf in ("1s", "1m"):
                    pf = r.pair_frame("BTCUSDT", "ETHUSDT", tf)
                    if pf[["x", "y"]].isna().any().any():
                        errors.append(f"NaN in pair frame {tf}")
                    if len(pf) > 1 and not (np.diff(pf["open_time_ms"]) == TF[tf]).all():
                        errors.append(f"irregular {tf} grid")
                partial_reads[k] += 1
                first_read[k].set()
                if last:
                    return

    def misc_reader(k: int) -> None:
        with open_reader(db) as r:
            while True:
                last = done.is_set()
                r.bars("ETHUSDT", "1s", limit=50)
                r.ticks("ETHUSDT", start_ms=int(rows[0].ts_ms))
                info = r.info()
                if {s["symbol"] for s in info["symbols"]} != {"BTCUSDT", "ETHUSDT"}:
                    errors.append(f"info lost a symbol: {info['symbols']}")
                partial_reads[k] += 1
                first_read[k].set()
                if last:
                    return

    def guarded(fn, k):
        def run():
            try:
                fn(k)
            except Exception as exc:  # any error in a reader is the finding
                errors.append(f"{fn.__name__}: {exc!r}")
                first_read[k].set()

        return run

    threads = [
        threading.Thread(target=guarded(fn, k), daemon=True)
        for k, fn in enumerate((consistent_snapshot, pair_reader, misc_reader))
    ]
    try:
        for t in threads:
            t.start()
        half = len(batches) // 2
        for b in batches[:half]:
            writer.write_ticks(b)
        # Make sure every reader has run against a half-written database before going on.
        wait_for(lambda: all(e.is_set() for e in first_read), what="every reader's first read")
        for b in batches[half:]:
            writer.write_ticks(b)
    finally:
        done.set()
        for t in threads:
            t.join(DEADLINE_S)
        writer.close()
    assert not any(t.is_alive() for t in threads), "a reader thread hung"
    assert errors == []
    assert partial_reads[0] >= 1 and all(n >= 1 for n in partial_reads)


# ---------------------------------------------------------------------------- retention
NOW = 30 * DAY_MS


def test_prune_deletes_old_ticks_and_1s_bars_and_keeps_1m_5m(db: Path) -> None:
    ages_ms = [8 * DAY_MS + 5_000, 6 * DAY_MS, 48 * HOUR_MS + 1, 48 * HOUR_MS, HOUR_MS]
    with open_writer(db) as w, open_reader(db) as r:
        w.write_ticks(
            [
                Tick("BTCUSDT", i, NOW - age, 10.0 + i, 1.0, False, IdKind.TRADE)
                for i, age in enumerate(ages_ms)
            ]
        )
        w.write_ticks([Tick("ETHUSDT", 1, NOW - 9 * DAY_MS, 5.0, 1.0, True, IdKind.AGG)])
        kept = {tf: r.bars("BTCUSDT", tf) for tf in ("1m", "5m")}
        one_s = r.bars("BTCUSDT", "1s")
        assert w.prune(now_ms_=NOW) == {"ticks": 4, "bars_1s": 2}
        # The cutoff is exclusive: a tick exactly 48 h old stays.
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [3, 4]
        assert r.ticks("ETHUSDT").empty
        pd.testing.assert_frame_equal(
            r.bars("BTCUSDT", "1s"),
            one_s[one_s["open_time_ms"] >= NOW - 7 * DAY_MS].reset_index(drop=True),
        )
        assert r.bars("ETHUSDT", "1s").empty and len(r.bars("ETHUSDT", "1m")) == 1
        for tf, df in kept.items():
            pd.testing.assert_frame_equal(r.bars("BTCUSDT", tf), df)
        assert w.prune(now_ms_=NOW) == {"ticks": 0, "bars_1s": 0}
        assert w.prune(now_ms_=NOW + 10 * DAY_MS, ticks_keep_s=None, bars_1s_keep_s=None) == {
            "ticks": 0,
            "bars_1s": 0,
        }
        assert len(r.ticks("BTCUSDT")) == 2


def test_prune_in_chunks_lets_other_writes_through(tmp_path: Path) -> None:
    db = tmp_path / "chunks.db"
    n = 60_000
    ids = np.arange(n, dtype=np.int64)
    started, write_done = threading.Event(), threading.Event()
    chunks = [0]
    result: dict = {}

    def should_stop() -> bool:  # called before every chunk
        chunks[0] += 1
        if chunks[0] >= 3:
            started.set()
        return write_done.is_set()

    with open_writer(db) as w, open_reader(db) as r:
        w.write_tick_arrays(
            "BTCUSDT", "trade", ids, ids * 10, np.full(n, 100.0), np.full(n, 0.5), ids % 2 == 0
        )
        pruner = threading.Thread(
            target=lambda: result.update(
                w.prune(now_ms_=NOW, chunk_rows=10, should_stop=should_stop)
            ),
            daemon=True,
        )
        pruner.start()
        assert started.wait(DEADLINE_S), "prune did not start"
        # This write has to find the writer free between two prune chunks (6,000 of them).
        # It runs in a thread of its own so that a writer held by the prune fails the test
        # instead of hanging it.
        written: list[int] = []
        other = threading.Thread(
            target=lambda: (
                written.append(w.write_ticks(ticks(1, 10, NOW - 1_000, symbol="ETHUSDT"))),
                write_done.set(),
            ),
            daemon=True,
        )
        other.start()
        assert write_done.wait(DEADLINE_S), "the write never got in while prune ran"
        assert written == [10]
        pruner.join(DEADLINE_S)
        assert not pruner.is_alive()
        assert 0 < result["ticks"] < n, f"the write waited for the whole prune: {result}"
        assert len(r.ticks("BTCUSDT")) == n - result["ticks"]
        assert len(r.ticks("ETHUSDT")) == 10
        rest = w.prune(now_ms_=NOW, chunk_rows=5_000)
        assert result["ticks"] + rest["ticks"] == n
        assert r.bars("BTCUSDT", "1m")["trades"].sum() == n  # bars outlive their ticks


def test_retention_job_prunes_in_the_background_and_stops(tmp_path: Path) -> None:
    db = tmp_path / "job.db"
    now = now_ms()
    settings = StorageSettings(
        db_path=str(db), ticks_keep_s=3_600.0, bars_1s_keep_s=86_400.0, retention_interval_s=0.01
    )
    with open_writer(db) as w, open_reader(db) as r:
        w.write_ticks(
            [
                Tick("BTCUSDT", 1, now - 2 * DAY_MS, 1.0, 1.0, False, IdKind.TRADE),
                Tick("BTCUSDT", 2, now - 2 * HOUR_MS, 1.0, 1.0, False, IdKind.TRADE),
                Tick("BTCUSDT", 3, now - 60_000, 1.0, 1.0, False, IdKind.TRADE),
            ]
        )
        job = RetentionJob(w, settings).start()
        try:
            wait_for(lambda: job.passes >= 3, what="three retention passes")
        finally:
            job.stop()
        assert not job._thread.is_alive()
        assert job.last_error is None
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [3]
        assert len(r.bars("BTCUSDT", "1s")) == 2 and len(r.bars("BTCUSDT", "1m")) == 3
        w.close()
        job.run_once()  # a failing pass is recorded, not raised
        assert "writer is closed" in job.last_error or str(db) in job.last_error


def test_retention_settings_from_the_environment() -> None:
    s = StorageSettings.from_env(
        {"TICKS_KEEP_HOURS": "1.5", "BARS_1S_KEEP_DAYS": "forever", "DB_PATH": "/x/y.db"}
    )
    assert (s.ticks_keep_s, s.bars_1s_keep_s, s.db_path) == (5_400.0, None, "/x/y.db")
    d = StorageSettings.from_env({})
    assert (d.ticks_keep_s, d.bars_1s_keep_s) == (48 * 3_600.0, 7 * 86_400.0)
    with pytest.raises(ValueError, match="TICKS_KEEP_HOURS='abc' is not a number"):
        StorageSettings.from_env({"TICKS_KEEP_HOURS": "abc"})
    with pytest.raises(ValueError, match="must be positive"):
        StorageSettings.from_env({"BARS_1S_KEEP_DAYS": "0"})


def test_a_version_1_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    """A file made by schema version 1 opens, gains the new table and loses nothing."""
    from storage.schema import MIGRATIONS
    from storage.sqlite import _split_sql

    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    for statement in _split_sql(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO symbols (symbol, id_kind) VALUES ('BTCUSDT', 'agg')")
    conn.execute("INSERT INTO ticks VALUES (1, 7, 1000, 50000.0, 0.5, 0)")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    with pytest.raises(StorageError, match="schema version 1; open it once with a writer"):
        open_reader(db)
    with open_writer(db) as w:
        assert w.last_trade_id("BTCUSDT") == 7
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM pruned_ranges").fetchone()[0] == 0
    conn.close()


def test_open_gaps_lists_what_is_left_to_repair(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks(
            [
                Tick("BTCUSDT", 1, 1_000, 1.0, 1.0, False),
                Tick("BTCUSDT", 100, 2_000, 1.0, 1.0, False),
            ]
        )
        late = w.record_gap(Gap("BTCUSDT", 50, 60, 9_000, status="failed", detail="REST 500"))
        early = w.record_gap(Gap("btcusdt", 2, 9, 5_000))
        done = w.record_gap(Gap("BTCUSDT", 70, 71, 6_000))
        w.update_gap(done, status="repaired", repaired_count=2)
        w.record_gap(Gap("BTCUSDT", 80, 81, 7_000, status="unrepairable"))
        w.record_gap(Gap("ETHUSDT", 3, 4, 7_000))
        assert w.open_gaps("btcusdt") == [
            Gap("BTCUSDT", 2, 9, 5_000, "open", 0, "", early),
            Gap("BTCUSDT", 50, 60, 9_000, "failed", 0, "REST 500", late),
        ]
        assert w.open_gaps("DOGEUSDT") == []


def test_trade_time_ms_is_the_stored_ticks_time(db: Path) -> None:
    """The time before a gap, for the kline fallback after a restart: None if not stored."""
    with open_writer(db) as w:
        w.write_ticks(
            [
                Tick("BTCUSDT", 1, 1_000, 1.0, 1.0, False),
                Tick("BTCUSDT", 100, 2_000, 1.0, 1.0, False),
                Tick("ETHUSDT", 50, 3_000, 1.0, 1.0, False),
            ]
        )
        assert w.trade_time_ms("btcusdt", 100) == 2_000
        assert w.trade_time_ms("BTCUSDT", 1) == 1_000
        assert w.trade_time_ms("BTCUSDT", 50) is None  # another symbol's id
        assert w.trade_time_ms("ETHUSDT", 50) == 3_000
        assert w.trade_time_ms("DOGEUSDT", 1) is None
