"""The pure gap tracker (``ingestion.gaps``): ids in arrival order in, decisions out.

No server, socket, thread or database: the tracker is driven directly with ticks, REST's
verdicts and probe answers, and an injected clock. The ``hypothesis`` properties check the
promise the feed is built on: every id from the resume point to the newest one is either
stored or owed, exactly once, whatever the arrival order.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.gaps import GAP, HISTORY, GapTracker, Step
from ingestion.suspect import Verdict
from storage.records import Tick

T0 = 1_700_000_000_000
LIE = 10**12


def tick(trade_id: int, price: float = 100.0) -> Tick:
    return Tick("BTCUSDT", trade_id, T0 + trade_id, price, 1.0, False)


class FakeClock:
    """Wall ms and monotonic s that only move when told."""

    def __init__(self) -> None:
        self.ms = T0 + 10**9
        self.s = 1000.0

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.s


def tracker(last_id: int | None = None, jump: int = 100, clock: FakeClock | None = None):
    clock = clock or FakeClock()
    return GapTracker(
        jump,
        last_id=last_id,
        last_id_ms=None if last_id is None else T0 + last_id,
        grace_ms=2000,
        now_ms=clock.now_ms,
        monotonic=clock.monotonic,
    )


def ids(step: Step) -> list[int]:
    return [t.trade_id for t in step.store]


# --------------------------------------------------------------------------- with a resume point
def test_the_next_id_is_stored_and_nothing_is_owed():
    gt = tracker(last_id=10)
    step = gt.accept(tick(11))
    assert ids(step) == [11] and step.owed == () and gt.last_id == 11
    assert gt.pending_kind is None and gt.gaps_found == 0


def test_a_jump_owes_the_ids_between_with_the_times_around_them():
    clock = FakeClock()
    gt = tracker(last_id=10, clock=clock)
    step = gt.accept(tick(15))
    assert ids(step) == [15]
    (owed,) = step.owed
    assert (owed.first, owed.last, owed.kind, owed.where) == (11, 14, GAP, "in the live stream")
    assert (owed.before_ms, owed.after_ms, owed.found_ms) == (T0 + 10, T0 + 15, clock.ms)
    assert gt.gaps_found == 1 and gt.ids_missing == 4


def test_duplicates_are_dropped_and_a_long_run_of_them_is_reported():
    gt = tracker(last_id=10)
    step = gt.accept(tick(9))
    assert step == Step() and gt.duplicates == 1
    steps = [gt.accept(tick(10)) for _ in range(4998)]
    assert all(s == Step() for s in steps)
    (message,) = gt.accept(tick(3)).errors  # the 5000th in a row
    assert "went backwards" in message and "id 3" in message and "last id is 10" in message
    assert ids(gt.accept(tick(11))) == [11] and gt.dup_run == 0


def test_the_start_up_anchor_makes_the_ids_before_the_first_live_one_history():
    gt = tracker()
    assert gt.anchor(99) and gt.history_pending
    step = gt.accept(tick(150))
    (owed,) = step.owed
    assert (owed.first, owed.last, owed.kind, owed.completes_history) == (100, 149, HISTORY, True)
    assert gt.gaps_found == 0 and not gt.history_pending  # history is no hole
    contiguous = tracker()
    contiguous.anchor(99)
    step = contiguous.accept(tick(100))
    assert step.history_done and step.owed == () and ids(step) == [100]


def test_an_anchor_never_moves_a_stored_resume_point():
    gt = tracker(last_id=500)
    assert not gt.anchor(99) and gt.last_id == 500 and gt.pending_kind == GAP


def test_a_far_ahead_id_is_held_until_rest_answers():
    gt = tracker(last_id=10)
    step = gt.accept(tick(LIE))
    assert step.ask == (tick(LIE),) and step.store == ()
    assert ids(gt.accept(tick(11))) == [11]  # ordinary ids go on meanwhile
    step = gt.settle(Verdict(LIE, False, "REST has no id"))
    assert [r.tick.trade_id for r in step.rejected] == [LIE]
    assert step.rejected[0].reason == "suspect_id" and "far-ahead id" in step.errors[0]
    assert gt.last_id == 11 and gt.gaps_found == 0


def test_a_confirmed_far_ahead_id_opens_a_gap():
    gt = tracker(last_id=10)
    gt.accept(tick(500))
    step = gt.settle(Verdict(500, True, "REST confirms"))
    assert ids(step) == [500] and [(o.first, o.last) for o in step.owed] == [(11, 499)]


# --------------------------------------------------------------------------- no resume point
def test_the_first_id_waits_for_the_next_one():
    gt = tracker()
    assert gt.accept(tick(1000)) == Step() and gt.last_id is None
    step = gt.accept(tick(1001))
    assert ids(step) == [1000, 1001] and step.owed == () and step.ask == ()


def test_a_first_id_lie_is_asked_about_and_never_becomes_the_resume_point():
    gt = tracker()
    assert gt.accept(tick(LIE)) == Step()
    step = gt.accept(tick(1000))  # far below the first id: the first id is the suspect
    assert step.ask == (tick(LIE),) and step.store == ()
    assert ids(gt.accept(tick(1001))) == [1000, 1001]
    step = gt.settle(Verdict(LIE, False, "REST has no id"))
    assert [r.tick.trade_id for r in step.rejected] == [LIE] and step.store == ()
    assert ids(gt.accept(tick(1002))) == [1002] and gt.duplicates == 0


def test_a_genuine_far_ahead_first_id_confirmed_by_rest_opens_a_gap_after_the_stream():
    gt = tracker()
    gt.accept(tick(5000))
    assert gt.accept(tick(1000)).ask == (tick(5000),)
    step = gt.settle(Verdict(5000, True, "REST confirms"))
    assert ids(step) == [1000, 5000] and [(o.first, o.last) for o in step.owed] == [(1001, 4999)]


def test_a_probe_judges_a_lone_first_id_against_rests_newest():
    clock = FakeClock()
    gt = tracker(clock=clock)
    gt.accept(tick(1000))
    step = gt.probe(1010, clock.ms, connected_ms=clock.ms - 5000)  # REST is a bit ahead
    assert ids(step) == [1000] and step.recheck  # and too fresh to judge the socket
    lie = tracker(clock=clock)
    lie.accept(tick(LIE))
    assert lie.probe(1010, clock.ms, connected_ms=clock.ms - 5000).ask == (tick(LIE),)


def test_history_by_time_is_owed_up_to_the_first_accepted_id():
    gt = tracker()
    gt.history_by_time(T0)
    gt.accept(tick(1000))
    step = gt.accept(tick(1001))
    (owed,) = step.owed
    assert (owed.first, owed.last, owed.from_ms, owed.kind) == (999, 999, T0, HISTORY)
    assert "first id not known yet" in owed.where and owed.after_ms == T0 + 1000


# --------------------------------------------------------------------------- probes
def test_a_probe_that_shows_nothing_new_is_a_quiet_market():
    gt = tracker(last_id=10)
    assert gt.probe(10, T0, connected_ms=T0 - 1) == Step()


def test_a_probe_with_old_missed_trades_owes_them_and_says_stale():
    clock = FakeClock()
    gt = tracker(last_id=10, clock=clock)
    latest_ms = clock.ms - 10_000  # older than the grace
    step = gt.probe(20, latest_ms, connected_ms=latest_ms - 1)
    assert [(o.first, o.last, o.where) for o in step.owed] == [(11, 20, "found by REST probe")]
    assert step.stale_id == 20 and gt.last_id == 20


def test_an_id_rest_showed_and_the_socket_never_sent_is_stale_however_fresh():
    clock = FakeClock()
    gt = tracker(last_id=10, clock=clock)
    first = gt.probe(20, clock.ms, connected_ms=clock.ms - 5000)
    assert first.recheck and first.stale_id is None  # too fresh to judge
    clock.s += 2.0
    second = gt.probe(25, clock.ms, connected_ms=clock.ms - 7000)
    assert second.stale_id == 25 and not second.recheck
    gt.new_connection()  # a new socket: what the old one missed is forgotten
    assert gt.probe(30, clock.ms, connected_ms=clock.ms - 1).recheck


def test_a_suspect_rest_could_not_answer_is_asked_again_on_the_injected_clock():
    clock = FakeClock()
    gt = tracker(last_id=10, clock=clock)
    gt.accept(tick(LIE))
    assert gt.settle(Verdict(LIE, None, "REST down")) == Step()
    assert gt.due() is None  # not yet: retry_s has not passed on the tracker's clock
    clock.s += 1.0
    assert gt.due() == tick(LIE)


def test_bad_parameters_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="jump must be >= 1"):
        GapTracker(0)


# --------------------------------------------------------------------------- properties
def run(gt: GapTracker, arrivals: list[int], lie_above: int = 10**9, delayed: bool = False):
    """Feed ``arrivals``; REST answers every question (ids above ``lie_above`` do not
    exist) at once, or with ``delayed`` only after the last arrival. Returns (stored ids in
    order, owed ranges, rejected ids)."""
    stored: list[int] = []
    owed: list[tuple[int, int]] = []
    rejected: list[int] = []
    questions: list[Tick] = []

    def answer(asked: Tick) -> None:
        genuine = asked.trade_id <= lie_above
        take(gt.settle(Verdict(asked.trade_id, genuine, "REST")))

    def take(step: Step) -> None:
        stored.extend(ids(step))
        owed.extend((o.first, o.last) for o in step.owed)
        rejected.extend(r.tick.trade_id for r in step.rejected)
        for asked in step.ask:
            if delayed:
                questions.append(asked)
            else:
                answer(asked)

    for trade_id in arrivals:
        take(gt.accept(tick(trade_id)))
    while questions:
        answer(questions.pop(0))
    return stored, owed, rejected


def covered(stored: list[int], owed: list[tuple[int, int]]) -> Counter[int]:
    count = Counter(stored)
    for first, last in owed:
        count.update(range(first, last + 1))
    return count


arrival_orders = st.lists(st.integers(min_value=0, max_value=80), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(resume=st.integers(min_value=0, max_value=40), arrivals=arrival_orders)
def test_stored_and_owed_cover_every_id_after_the_resume_point_exactly_once(resume, arrivals):
    gt = tracker(last_id=resume, jump=1000)
    stored, owed, _ = run(gt, arrivals)
    assert stored == sorted(set(stored))  # stored in rising order, never twice
    top = max([resume, *arrivals])
    count = covered(stored, owed)
    assert set(count) == set(range(resume + 1, top + 1)) and set(count.values()) <= {1}
    assert gt.last_id == top


@settings(max_examples=300, deadline=None)
@given(arrivals=arrival_orders)
def test_with_no_resume_point_the_first_stored_id_starts_an_unbroken_ledger(arrivals):
    gt = tracker(jump=1000)
    stored, owed, _ = run(gt, arrivals)
    if len(arrivals) < 2:
        assert stored == [] and gt.candidate is not None  # waits for the next id
        return
    assert stored[0] == arrivals[0]  # the first id becomes the resume point
    count = covered(stored, owed)
    assert set(count) == set(range(stored[0], max(arrivals) + 1))
    assert set(count.values()) == {1}


@settings(max_examples=300, deadline=None)
@given(resume=st.integers(min_value=0, max_value=40), arrivals=arrival_orders)
def test_a_duplicate_never_opens_a_gap_nor_stores(resume, arrivals):
    gt = tracker(last_id=resume, jump=1000)
    for trade_id in arrivals:
        before = gt.last_id
        step = gt.accept(tick(trade_id))
        if trade_id <= before:
            assert step.owed == () and step.store == ()


@settings(max_examples=300, deadline=None)
@given(
    genuine=st.lists(st.integers(min_value=1, max_value=60), min_size=2, max_size=60, unique=True),
    at=st.integers(min_value=0, max_value=60),
    lie=st.sampled_from([LIE, 2**63 - 1, 10**7 + 5]),
    resume=st.one_of(st.none(), st.just(0)),
    delayed=st.booleans(),
)
def test_a_lie_anywhere_is_never_stored_and_no_genuine_id_is_lost(
    genuine, at, lie, resume, delayed
):
    """Rising genuine ids with holes and one far-ahead lie at any position (also first, with
    no resume point), REST answering at once or late: the lie is rejected, and every
    genuine id is stored or owed."""
    arrivals = sorted(genuine)
    arrivals.insert(min(at, len(arrivals)), lie)
    gt = tracker(last_id=resume, jump=100)
    stored, owed, rejected = run(gt, arrivals, lie_above=10**6, delayed=delayed)
    assert lie not in stored and rejected == [lie]
    start = sorted(genuine)[0] if resume is None else resume + 1
    count = covered(stored, owed)
    assert set(count) == set(range(start, max(genuine) + 1)) and set(count.values()) == {1}
    assert gt.duplicates == 0
