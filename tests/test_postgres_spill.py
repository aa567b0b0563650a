"""Issue 14 on PostgreSQL: when the server refuses every commit, a stop saves the queued ticks
in the side file ``unstored-<hash>.jsonl`` and the next start stores them: nothing is lost.

The real collector (``FeedService``) reads the local Binance look-alike replaying real trades
into a real PostgreSQL schema. The commits fail for real: a trigger on ``ticks`` raises the
server's own "disk full" error (SQLSTATE 53100) inside every write transaction, so the writer
meets exactly what a full disk on the server gives it. (SQLite's twin is
``tests/test_hostile_feed.py::test_disk_full_shows_in_status_spills_on_stop_and_restart_stores_it``.)
"""

from __future__ import annotations

import json
import logging
import re

import psycopg
import pytest

from ingestion.spill import spill_path
from ingestion.status import FeedState
from replay import FakeBinance
from storage import open_writer
from tests import test_hostile_feed
from tests.conftest import wait_for
from tests.test_ingestion_feed import fast_settings, start, stored_ids

pytestmark = pytest.mark.postgres
BOTH = ["BTCUSDT", "ETHUSDT"]

REFUSE = """
CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
END $$;
CREATE TRIGGER refuse_writes BEFORE INSERT ON ticks
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes();
"""
ALLOW = "DROP TRIGGER refuse_writes ON ticks; DROP FUNCTION refuse_writes();"

#: The same 43 s of real BTCUSDT and ETHUSDT trades as the SQLite twin.
recording = test_hostile_feed.recording


def _sql(url: str, script: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script)


def test_refused_commits_spill_on_stop_and_the_next_start_stores_them(
    recording, pg_url, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)  # a server's side file lives in the working directory
    with open_writer(pg_url) as w:  # the schema, so the trigger has a table
        side = spill_path(w.path)
    assert side.parent == tmp_path and re.fullmatch(r"unstored-[0-9a-f]{12}\.jsonl", side.name)
    with FakeBinance(recording, speed=10.0, preroll_s=5) as server:
        settings = fast_settings(server, history=False, storage_retry_s=0.1)
        service = start(pg_url, BOTH, settings)
        wait_for(lambda: all(stored_ids(pg_url, s) for s in BOTH), 20, "first ticks stored")
        _sql(pg_url, REFUSE)
        wait_for(
            lambda: all(s.state is FeedState.ERROR for s in service.status().values()),
            20,
            "both symbols in state error while nothing is stored",
        )
        assert "disk is full" in service.writer_status().last_error
        stored_before = {s: stored_ids(pg_url, s) for s in BOTH}
        with caplog.at_level(logging.ERROR, logger="ingestion.writer"):
            assert service.stop(timeout_s=2) is False  # could not drain: says so
        said = service.writer_status().unstored
        spilled = [json.loads(line) for line in side.read_text().splitlines()]
        eth = sorted(p["a"] for p in spilled if p["s"] == "ETHUSDT")
        assert eth and f"saved to {side}" in said and f"not stored: {len(spilled)} ticks" in said
        assert f"ETHUSDT {len(eth)} (ids {eth[0]}..{eth[-1]})" in said
        assert any(said in r.getMessage() for r in caplog.records)  # the log names them too
        assert not set(eth) & set(stored_before["ETHUSDT"])  # refused, so not stored
        _sql(pg_url, ALLOW)  # the server has room again
        # The next start collects BTCUSDT only: ETHUSDT's ticks can come from the side file alone.
        again = start(pg_url, ["BTCUSDT"], fast_settings(server, history=False))
        try:
            assert not side.exists()  # stored before any feed started, then removed
            ids = stored_ids(pg_url, "ETHUSDT")
        finally:
            assert again.stop(timeout_s=10)
    assert set(eth) <= set(ids)
    # Nothing lost between the last commit that worked and the stop: one unbroken id run.
    assert ids == list(range(ids[0], ids[-1] + 1)) and ids[-1] == eth[-1]
