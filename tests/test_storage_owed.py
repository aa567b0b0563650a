"""The gap ledger's owed-data methods behave the same on SQLite and PostgreSQL: ranges known by
time, resolving them to ids, and the start-up id contiguity check with its check point."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import Gap, Tick, open_reader, open_writer
from storage.writebase import uncovered


def _ticks(symbol: str, ids) -> list[Tick]:
    return [Tick(symbol, i, 1_000_000 + i, 100.0, 1.0, False) for i in ids]


def test_range_known_by_time_is_owed_then_resolved_to_ids(database):
    with open_writer(database) as w:
        gap_id = w.record_gap(
            Gap("BTCUSDT", 99, 99, 5, status="open", detail="start-up history", from_ts_ms=1234)
        )
        (owed,) = w.open_gaps("BTCUSDT")
        assert (owed.gap_id, owed.from_ts_ms, owed.last_missing_id) == (gap_id, 1234, 99)
        w.update_gap(gap_id, status="failed", repaired_count=0, detail="REST failed")
        assert w.open_gaps("BTCUSDT")[0].from_ts_ms == 1234  # still by time
        w.update_gap(gap_id, status="open", repaired_count=0, detail="x", first_missing_id=40)
        (owed,) = w.open_gaps("BTCUSDT")
        assert (owed.first_missing_id, owed.from_ts_ms, owed.missing) == (40, None, 60)
        w.update_gap(gap_id, status="repaired", repaired_count=60, detail="done")
        assert w.open_gaps("BTCUSDT") == []
        with pytest.raises(ValueError, match="no gap with id"):
            w.update_gap(gap_id + 100, status="open", repaired_count=0)
    with open_reader(database) as r:
        row = r.gaps("BTCUSDT").iloc[0]
        assert (row["first_missing_id"], row["status"], row["detail"]) == (40, "repaired", "done")


def test_contiguity_check_finds_unrecorded_holes_and_moves_its_check_point(database):
    ids = [*range(1, 10), *range(15, 20), *range(30, 40)]
    with open_writer(database) as w:
        assert w.unrecorded_holes("BTCUSDT") == ([], None)  # unknown symbol
        w.write_ticks(_ticks("BTCUSDT", ids))
        w.write_ticks(_ticks("ETHUSDT", range(5, 50)))
        assert w.unrecorded_holes("BTCUSDT") == ([(10, 14), (20, 29)], 39)
        assert w.unrecorded_holes("ETHUSDT") == ([], 49)  # contiguous: count = max - min + 1
        # A recorded range covers its part of a hole, whatever its status.
        w.record_gap(Gap("BTCUSDT", 12, 16, 1, status="unrepairable"))
        assert w.unrecorded_holes("BTCUSDT") == ([(10, 11), (20, 29)], 39)
        w.set_id_check("BTCUSDT", 39)
        w.set_id_check("BTCUSDT", 39)  # idempotent
        assert w.unrecorded_holes("BTCUSDT") == ([], 39)  # nothing new above the point
        w.write_ticks(_ticks("BTCUSDT", [42, 43, 47]))
        assert w.unrecorded_holes("BTCUSDT") == ([(40, 41), (44, 46)], 47)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=6),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=6),
)
def test_uncovered_is_exactly_the_ids_no_cover_holds(holes, covers):
    holes = [(a, a + n) for a, n in holes]
    covers = [(a, a + n) for a, n in covers]
    got = uncovered(holes, covers)
    want_ids = {i for a, b in holes for i in range(a, b + 1)} - {
        i for a, b in covers for i in range(a, b + 1)
    }
    got_ids = [i for a, b in got for i in range(a, b + 1)]
    assert all(a <= b for a, b in got)
    assert set(got_ids) == want_ids
    if all(b < a2 for (_, b), (a2, _) in zip(sorted(holes), sorted(holes)[1:], strict=False)):
        assert len(got_ids) == len(set(got_ids))  # disjoint holes give disjoint pieces
