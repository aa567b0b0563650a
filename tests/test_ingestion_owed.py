"""No silent hole: the collector (``python -m ingestion``, a real subprocess) stopped at many
moments of start-up, or facing a failing REST, and restarted; what it stored must equal the
oracle, a direct load of exactly what the replay server serves.

The server replays the bundled real BTCUSDT/ETHUSDT sample at 10x with 150 recorded seconds
of pre-roll (about 4,500 BTCUSDT ids that only REST has when the collector starts: its
start-up history, five pages). REST answers late (``Faults.rest_delay_s``) so that history
loading takes a few seconds and a stop can land in the middle of it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from config import SAMPLE_RECORDING
from formats.wire import parse_rest_agg_trade
from ingestion.backoff import instant_backoff
from ingestion.config import FeedSettings
from ingestion.owed import RetryShelf
from ingestion.service import FeedService
from replay import FakeBinance, load_recording
from replay.faults import Faults
from storage import StorageError, UnknownSymbolError, open_reader, open_writer
from tests.conftest import start_collector, wait_for
from ui.health import health_table

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ("BTCUSDT", "ETHUSDT")
SPEED = 10.0
PREROLL_S = 150.0


@pytest.fixture(scope="module")
def recording():
    return load_recording([SAMPLE_RECORDING])


@pytest.fixture
def server(recording):
    """A fresh replay per test: ids from 1, the pre-roll on REST only, REST 0.3 s slow."""
    faults = Faults(rest_delay_s=0.3)
    with FakeBinance(recording, speed=SPEED, preroll_s=PREROLL_S, faults=faults) as srv:
        yield srv


@pytest.fixture
def down_server(recording):
    """REST answers 500 to every data request until the test lifts ``rest_down``. Slower
    (8x: 24 s of live stream), because the collector's REST client spends about 8 s on its
    own retries before a request fails and the socket must still be streaming then."""
    with FakeBinance(
        recording, speed=8.0, preroll_s=PREROLL_S, faults=Faults(rest_down=True)
    ) as srv:
        yield srv


class Collector:
    """``python -m ingestion`` on the server, output to a file (read for diagnostics)."""

    def __init__(self, server: FakeBinance, db: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB_PATH")}
        env["PYTHONPATH"] = str(ROOT)
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in wait()
        flags = ["--history", "600", "--history-klines", "0", "--status-interval", "0.5", "-v"]
        self.proc = start_collector(
            db,
            server,
            *flags,
            symbols=",".join(SYMBOLS),
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


@pytest.fixture
def collectors():
    """Started collectors; any still running at the end of a test is killed."""
    started: list[Collector] = []
    yield started
    for c in started:
        c.close()


def stored_ids(db: Path, symbol: str) -> list[int]:
    try:
        with open_reader(db) as reader:
            return sorted(reader.ticks(symbol)["trade_id"].tolist())
    except (UnknownSymbolError, StorageError):  # not created (or migrated) yet
        return []


def ledger(db: Path) -> pd.DataFrame:
    try:
        with open_reader(db) as reader:
            return reader.gaps()
    except StorageError:  # not created (or migrated) yet
        return pd.DataFrame(columns=["status", "detail"])


def oracle(server: FakeBinance, path: Path) -> Path:
    """Every trade the server serves (socket and REST alike), loaded directly."""
    timeline = server.timeline
    assert timeline is not None
    with open_writer(path) as writer:
        for symbol in SYMBOLS:
            view = timeline.views[(symbol, "agg")]
            rows = [timeline.rest_row(view, n) for n in range(view.size)]
            writer.write_ticks([parse_rest_agg_trade(r, symbol) for r in rows])
    return path


def assert_equals_oracle(server: FakeBinance, db: Path, tmp_path: Path) -> None:
    """Ticks and 1s/1m/5m bars equal the oracle's; every recorded range is repaired."""
    truth = oracle(server, tmp_path / "oracle.db")
    with open_reader(db) as got, open_reader(truth) as want:
        for symbol in SYMBOLS:
            pd.testing.assert_frame_equal(
                got.ticks(symbol).reset_index(drop=True),
                want.ticks(symbol).reset_index(drop=True),
            )
            for tf in ("1s", "1m", "5m"):
                pd.testing.assert_frame_equal(
                    got.bars(symbol, tf).reset_index(drop=True),
                    want.bars(symbol, tf).reset_index(drop=True),
                    rtol=1e-12,
                    obj=f"{symbol} {tf} bars",
                )
    found = ledger(db)
    assert set(found["status"]) <= {"repaired"}, found[["status", "detail"]].to_string()


def wait_complete(server: FakeBinance, db: Path, timeout_s: float = 40.0) -> None:
    """The replay ended and every id it served is stored."""
    wait_for(server.finished, timeout_s, "the replay to finish")
    want = {s: server.source_ids(s) for s in SYMBOLS}
    wait_for(
        lambda: all(stored_ids(db, s) == want[s] for s in SYMBOLS),
        timeout_s,
        "every served id stored (no hole left)",
    )


# --- moments of start-up, told from what is stored (the same on any version of the code) ---
def _started(c: Collector, db: Path) -> bool:
    return "collecting " in c.output()


def _live_before_history(c: Collector, db: Path) -> bool:
    ids = stored_ids(db, "BTCUSDT")
    return bool(ids) and ids[0] > 1  # live ticks stored, no history page yet


def _mid_history(c: Collector, db: Path) -> bool:
    ids = stored_ids(db, "BTCUSDT")
    # History pages stored from id 1, and a hole still below the first live id.
    return bool(ids) and ids[0] == 1 and ids[-1] - ids[0] + 1 > len(ids)


MOMENTS = {
    "started": _started,
    "live-before-history": _live_before_history,
    "mid-history": _mid_history,
}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_stop_during_start_up_then_restart_leaves_no_hole(
    server, collectors, tmp_path, moment, sig
):
    db = tmp_path / "collect.db"
    first = Collector(server, db, tmp_path / "run1.log")
    collectors.append(first)
    wait_for(
        lambda: MOMENTS[moment](first, db) or first.proc.poll() is not None,
        30,
        f"the moment {moment!r}",
        interval_s=0.02,
    )
    assert first.proc.poll() is None, first.output()
    code = first.stop(sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), first.output()
    if sig == signal.SIGTERM:
        out = first.output()
        assert "0 left queued" in out
        if moment != "started":  # the history range: left in the ledger, reported exactly
            found = re.search(
                r"BTCUSDT: not stored, owed to the next start: ids (\d+)\.\.(\d+) ", out
            )
            assert found, out
            lo, hi = int(found[1]), int(found[2])
            ids = set(stored_ids(db, "BTCUSDT"))
            assert not ids & set(range(lo, hi + 1))  # none of the reported ids is stored
            assert set(range(1, lo)) <= ids and hi + 1 in ids  # every id around them is
            owed = ledger(db)
            owed = owed[(owed["status"] == "open") & (owed["last_missing_id"] == hi)]
            assert list(owed["first_missing_id"]) == [1]  # the record: the whole history

    second = Collector(server, db, tmp_path / "run2.log")
    collectors.append(second)
    wait_complete(server, db)
    assert second.stop() == 0, second.output()
    assert_equals_oracle(server, db, tmp_path)


def _owed_by_time(db: Path) -> pd.DataFrame:
    found = ledger(db)
    return found[found["detail"].str.contains("first id not known yet", regex=False)]


def test_rest_failing_during_history_keeps_it_owed_and_retries_it(
    down_server, collectors, tmp_path
):
    """REST answers 500 to everything from the start: the history's range is recorded by time
    (up to the first live id), shown as owed, retried with backoff, and loaded once REST is
    back: no restart needed."""
    server = down_server
    db = tmp_path / "down.db"
    run = Collector(server, db, tmp_path / "run.log")
    collectors.append(run)
    # The first attempt failed (RestClient's own retries spent) and a retry is scheduled.
    wait_for(
        lambda: len(rows := _owed_by_time(db)) == 2 and set(rows["status"]) == {"failed"},
        45,
        "both histories recorded by time and failed",
    )
    owed = _owed_by_time(db)
    assert owed["detail"].str.contains("REST failed").all()
    assert all(stored_ids(db, s)[0] > 1 for s in SYMBOLS)  # no history stored yet
    wait_for(lambda: " owed=" in run.output(), 10, "the owed ranges in the status lines")
    # The page's health panel shows them from the published status.
    wait_for(lambda: len(_owed_cells(db)) == 2, 10, "the owed ranges in the health table")
    assert all("by time, first id not known yet" in cell for cell in _owed_cells(db))
    server.faults.rest_down = False
    wait_complete(server, db)
    assert run.stop() == 0, run.output()
    assert_equals_oracle(server, db, tmp_path)
    resolved = _owed_by_time(db)  # the same two records, resolved to ids
    assert len(resolved) == 2 and list(resolved["first_missing_id"]) == [1, 1]
    assert resolved["detail"].str.contains("first id 1 from REST", regex=False).all()


def _owed_cells(db: Path) -> list[str]:
    """The "owed" column of the page's health table over the collector's published status."""
    with open_reader(db) as reader:
        published = reader.feed_status()
    table = health_table([dict(row.status, symbol=row.symbol) for row in published.itertuples()])
    return [cell for cell in table["owed"] if cell]


def test_rest_down_at_start_then_kill_then_restart_loads_the_history(
    down_server, collectors, tmp_path
):
    """REST down during start-up, the collector killed while the history is owed by time;
    REST comes back, the restart resolves and loads it."""
    server = down_server
    db = tmp_path / "down-kill.db"
    first = Collector(server, db, tmp_path / "run1.log")
    collectors.append(first)
    wait_for(lambda: len(_owed_by_time(db)) == 2, 45, "both histories recorded by time")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    server.faults.rest_down = False
    second = Collector(server, db, tmp_path / "run2.log")
    collectors.append(second)
    wait_complete(server, db)
    assert second.stop() == 0, second.output()
    assert_equals_oracle(server, db, tmp_path)


def test_rest_failing_mid_history_is_retried_in_the_same_run(server, collectors, tmp_path):
    """REST fails after some history pages: the rest of the range stays owed (``failed``),
    is retried after a backoff delay and completes once REST answers again."""
    db = tmp_path / "mid-down.db"
    run = Collector(server, db, tmp_path / "run.log")
    collectors.append(run)
    wait_for(lambda: _mid_history(run, db), 30, "mid-history", interval_s=0.02)
    server.faults.rest_down = True
    started = time.monotonic()
    wait_for(
        lambda: "failed" in set(ledger(db)["status"]),
        45,
        "the history range marked failed (still owed)",
    )
    ids = stored_ids(db, "BTCUSDT")
    assert ids[-1] - ids[0] + 1 > len(ids)  # the hole is still there, and recorded
    server.faults.rest_down = False
    wait_complete(server, db)
    assert time.monotonic() - started < 60
    assert run.stop() == 0, run.output()
    assert_equals_oracle(server, db, tmp_path)


def test_start_up_check_records_and_repairs_holes_no_run_recorded(recording, database):
    """A database with holes and an empty ledger (as an older version left it): the feed's
    start records each hole as a gap before streaming, and repairs it from REST."""
    with FakeBinance(recording, speed=0, rebase_time=False) as server:
        ids = server.source_ids("BTCUSDT")[:3000]
        timeline = server.timeline
        view = timeline.views[("BTCUSDT", "agg")]
        kept = [n for n in range(len(ids)) if not (100 <= n < 400 or 1000 <= n < 1010)]
        with open_writer(database) as w:
            w.write_ticks(
                [parse_rest_agg_trade(timeline.rest_row(view, n), "BTCUSDT") for n in kept]
            )
            assert w.open_gaps("BTCUSDT") == []
        settings = FeedSettings(ws_base=server.ws_base, rest_base=server.rest_base, history=False)
        storage = open_writer(database)
        try:
            service = FeedService(
                storage, ["BTCUSDT"], settings, backoff_factory=instant_backoff
            ).start()
            wait_for(
                lambda: len(g := _gaps(database)) >= 2 and set(g["status"][:2]) == {"repaired"},
                20,
                "both holes recorded and repaired",
            )
            assert service.stop()
        finally:
            storage.close()
    found = _gaps(database)
    checked = found[found["detail"].str.startswith("found by the start-up id check")]
    assert list(zip(checked["first_missing_id"], checked["last_missing_id"], strict=True)) == [
        (ids[100], ids[399]),
        (ids[1000], ids[1009]),
    ]
    assert set(checked["status"]) == {"repaired"}
    with open_reader(database) as reader:
        stored = reader.ticks("BTCUSDT")["trade_id"].tolist()
    assert sorted(stored)[: len(ids)] == ids


def _gaps(url: str) -> pd.DataFrame:
    with open_reader(url) as reader:
        return reader.gaps().sort_values("first_missing_id").reset_index(drop=True)


def test_retry_shelf_hands_jobs_back_when_their_delay_is_over():
    """The in-run retry of failed repairs: each job waits its own backoff delay (injected
    delays and clock: nothing waits)."""
    now = [100.0]
    shelf: RetryShelf[str] = RetryShelf(clock=lambda: now[0])
    assert shelf.due_in_s() is None and shelf.pop_due() is None
    assert shelf.put("a", iter([5.0])) == 5.0
    assert shelf.put("b", iter([2.0])) == 2.0
    assert len(shelf) == 2 and shelf.due_in_s() == 2.0
    assert shelf.pop_due() is None  # nothing due yet
    now[0] = 102.0
    assert shelf.pop_due() == "b" and shelf.pop_due() is None
    now[0] = 110.0
    assert shelf.due_in_s() == 0.0 and shelf.pop_due() == "a" and len(shelf) == 0
    delays = instant_backoff()
    assert shelf.put("c", delays) == 0.0 and shelf.pop_due() == "c"


def test_sigterm_while_the_collector_starts_stops_it_cleanly(server, collectors, tmp_path):
    """SIGTERM while start-up still waits for exchangeInfo: a clean stop (exit 0, everything
    queued stored, owed ranges recorded), not death by the default signal action."""
    server.faults.rest_delay_s = 3.0
    db = tmp_path / "early.db"
    run = Collector(server, db, tmp_path / "run.log")
    collectors.append(run)
    wait_for(
        lambda: "/fapi/v1/exchangeInfo" in server.stats.rest_received,
        30,
        "the collector asking for exchangeInfo",
    )
    assert run.proc.poll() is None
    assert run.stop(signal.SIGTERM) == 0, run.output()
    assert "stopping (signal SIGTERM)" in run.output() and "0 left queued" in run.output()


def test_a_repair_that_crashes_on_a_bad_reply_stays_owed_and_is_retried(recording, tmp_path):
    """A REST page ending in a malformed row breaks the repair mid-way: the gap is marked
    ``failed`` (still owed) and retried in the same run, not dropped until a restart."""
    db = tmp_path / "bad-row.db"
    faults = Faults(skip_ids=set(range(3000, 3010)))
    with FakeBinance(recording, speed=20.0, preroll_s=PREROLL_S, faults=faults) as server:
        settings = FeedSettings(ws_base=server.ws_base, rest_base=server.rest_base, history=False)
        faults.rest_bad_rows = 1
        service = FeedService(
            db,
            ["BTCUSDT"],
            settings,
            backoff_factory=instant_backoff,
            repair_backoff=instant_backoff,
        ).start()
        try:
            wait_for(lambda: list(ledger(db)["status"]) == ["repaired"], 40, "the gap repaired")
        finally:
            assert service.stop()
    gap = ledger(db).iloc[0]
    assert (gap["first_missing_id"], gap["last_missing_id"]) == (3000, 3009)
    assert faults.rest_bad_rows == 0  # the bad reply was served
    assert set(range(3000, 3010)) <= set(stored_ids(db, "BTCUSDT"))
