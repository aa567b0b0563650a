"""Issue 14: a hostile or broken feed, or a full disk, never stops the desk.

Every test runs the real collector (``FeedService``) against the local Binance look-alike
replaying real BTCUSDT/ETHUSDT trades, with one hostile behaviour switched on
(``Faults.hostile`` / ``Faults.inject``), into a real SQLite file, and checks that the
genuine trades are all stored and the status tells the truth.
"""

from __future__ import annotations

import gzip
import logging

import pytest

from ingestion.fakebinance import FakeBinance, Faults
from ingestion.fakehostile import NESTED_FRAME
from ingestion.recording import load_recording
from ingestion.replay import SAMPLE_RECORDING
from ingestion.status import FeedState
from tests.test_ingestion_feed import fast_settings, start, wait_complete

SPEED = 30.0
BOTH = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The first 3000 real trade lines of the sample (43 s; ~800 BTC and ~600 ETH aggregates)."""
    with gzip.open(SAMPLE_RECORDING, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(3000)]
    path = tmp_path_factory.mktemp("rec") / "short.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    return load_recording([path])


def _states(service) -> dict[str, FeedState]:
    return {s: st.state for s, st in service.status().items()}


# --------------------------------------------------------------------------- 1. nested JSON
def test_deeply_nested_frame_is_rejected_and_the_feed_goes_on(recording, tmp_path, caplog):
    db = tmp_path / "nested.db"
    faults = Faults(inject=[("BTCUSDT", 20, NESTED_FRAME), ("ETHUSDT", 20, NESTED_FRAME)])
    with FakeBinance(recording, speed=SPEED, preroll_s=5, faults=faults) as server:
        service = start(db, BOTH, fast_settings(server))
        with caplog.at_level(logging.WARNING, logger="ingestion.feed"):
            wait_complete(server, db, BOTH)
        status = service.status()
        assert service.stop(timeout_s=10)
    assert server.stats.hostile_frames == 2
    for symbol in BOTH:
        assert status[symbol].state is not FeedState.ERROR
        assert status[symbol].rejected == 1
        assert service.reject_reasons()[symbol] == {"unparseable": 1}
    lines = [r.getMessage() for r in caplog.records if "rejected message" in r.getMessage()]
    assert len(lines) == 2 and all("RecursionError" in line for line in lines)
    assert not any(r.exc_info for r in caplog.records)  # one line each, no traceback
