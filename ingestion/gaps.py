"""The pure gap tracker of one symbol's feed: trade ids in, decisions out.

No sockets, threads or storage: :class:`GapTracker` is given the parsed ticks in arrival
order, REST's answers (probes, verdicts on suspect ids) and the start-up resume point, and
answers each with a :class:`Step`: the ticks to store, the id ranges now owed (to record in
the gap ledger and fetch from REST), the suspects to ask REST about, the ticks rejected and
the errors to show. Its clocks are injected. The feed's connection thread owns it.

Id sequence rules (``../shared/docs/binance-usdm.md`` §2): ids rise by exactly one per
trade (aggregate), so ``a > last + 1`` is a gap of ``last+1 .. a-1``; ``a <= last`` is a
duplicate (overlap after a reconnect) and dropped; thousands of duplicates in a row mean
the ids went backwards. An id more than ``jump`` past the last one is a suspect, held
until REST confirms it (``ingestion.suspect``).

With no resume point (an empty database and no start-up history anchor), the first id has
nothing to be compared with. It is a *candidate*, stored only once the evidence agrees: the
next live id within ``jump`` of it, or REST's newest id (a probe) not ``jump`` below it.
When the next live id is more than ``jump`` below it, the candidate is a suspect (a lie of
``10**12``, say): it is held and REST is asked about it exactly as about a far-ahead id
after a resume point, and the next id becomes the candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ingestion.suspect import SuspectIds, Verdict
from storage.records import Tick
from storage.timefmt import now_ms as _wall_ms

__all__ = ["GAP", "HISTORY", "GapTracker", "Owed", "Rejected", "Step"]

GAP = "gap"
HISTORY = "history"

#: Consecutive duplicate ids after which the stream is reported as going backwards.
BACKWARDS_AFTER = 5000


@dataclass(frozen=True, slots=True)
class Owed:
    """Ids ``first..last`` the feed must fetch from REST, to record as owed before fetching.

    ``kind`` is ``history`` (start-up loading, not counted as a hole) or ``gap``;
    ``before_ms``/``after_ms`` are trade times bounding the missing trades' (None: unknown);
    ``from_ms`` set: known by time only (the trades at or after it, up to ``last``).
    """

    first: int
    last: int
    kind: str
    where: str
    found_ms: int
    completes_history: bool = False
    before_ms: int | None = None
    after_ms: int | None = None
    from_ms: int | None = None

    @property
    def ids(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Rejected:
    """A parsed tick refused by the id rules (``suspect_id``, ``suspect_overflow``)."""

    tick: Tick
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Step:
    """What the caller must do after one input, in this order: record ``owed`` (before the
    ticks of ``store`` reach storage), store ``store``, ask REST about ``ask``, count
    ``rejected``, show ``errors``. ``history_done``: the start-up history needs nothing
    more. Probes only: ``stale_id`` (the socket missed ids up to it: replace it) and
    ``recheck`` (too fresh to judge: probe again after ``stale_grace_s``)."""

    store: tuple[Tick, ...] = ()
    owed: tuple[Owed, ...] = ()
    ask: tuple[Tick, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    errors: tuple[str, ...] = ()
    history_done: bool = False
    stale_id: int | None = None
    recheck: bool = False


@dataclass
class _Out:
    store: list[Tick] = field(default_factory=list)
    owed: list[Owed] = field(default_factory=list)
    ask: list[Tick] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    history_done: bool = False
    stale_id: int | None = None
    recheck: bool = False

    def freeze(self) -> Step:
        return Step(
            tuple(self.store),
            tuple(self.owed),
            tuple(self.ask),
            tuple(self.rejected),
            tuple(self.errors),
            self.history_done,
            self.stale_id,
            self.recheck,
        )


class GapTracker:
    """The id bookkeeping of one symbol's feed; see the module docstring.

    Parameters
    ----------
    jump : an id more than this past the last one is a suspect (``suspect_id_jump``).
    last_id : the resume point: the newest id already stored, or None.
    last_id_ms : the trade time of ``last_id``, if known.
    grace_ms : a probe's newest trade younger than this is too fresh to judge.
    now_ms : wall clock, UTC ms.
    monotonic : monotonic seconds (suspect retries).
    held_max, retry_s : see ``SuspectIds``.
    """

    def __init__(
        self,
        jump: int,
        *,
        last_id: int | None = None,
        last_id_ms: int | None = None,
        grace_ms: int = 2000,
        now_ms: Callable[[], int] = _wall_ms,
        monotonic: Callable[[], float] = time.monotonic,
        held_max: int = 10_000,
        retry_s: float = 1.0,
    ) -> None:
        if jump < 1 or grace_ms < 0:
            raise ValueError(f"jump must be >= 1 and grace_ms >= 0, got {jump} and {grace_ms}")
        self.suspects = SuspectIds(jump, held_max, retry_s, clock=monotonic)
        self.grace_ms = grace_ms
        self._now_ms = now_ms
        self.last_id = last_id
        self.last_id_ms = last_id_ms if last_id is not None else None
        #: What the range before the next id is: "gap" after a resume point, "history"
        #: after a start-up anchor, None once the first live id has settled it.
        self.pending_kind: str | None = GAP if last_id is not None else None
        self.history_from_ms: int | None = None
        self.candidate: Tick | None = None
        self.last_trade_ms: int | None = None
        self.rest_ahead_id: int | None = None
        self.dup_run = 0
        self.accepted = 0
        self.duplicates = 0
        self.gaps_found = 0
        self.ids_missing = 0

    # --- start-up (before the first live id) --------------------------------------------------
    def anchor(self, last_id: int, last_id_ms: int | None = None) -> bool:
        """The start-up history ends at ``last_id`` (ids after it up to the first live one are
        history). No effect when a resume point exists; returns whether it took."""
        if self.last_id is not None:
            return False
        self.last_id, self.last_id_ms = last_id, last_id_ms
        if last_id_ms is not None:
            self.last_trade_ms = last_id_ms
        self.pending_kind = HISTORY
        return True

    def history_by_time(self, from_ms: int) -> None:
        """REST could not tell the history's first id: owe the trades since ``from_ms`` up to
        the one before the first live id, by time."""
        if self.last_id is None:
            self.history_from_ms = from_ms
            self.pending_kind = HISTORY

    @property
    def history_pending(self) -> bool:
        return self.pending_kind == HISTORY

    def new_connection(self) -> None:
        """A socket opened: a probe's memory of the last socket is void."""
        self.rest_ahead_id = None

    # --- the live stream ----------------------------------------------------------------------
    def accept(self, tick: Tick) -> Step:
        """One parsed tick of this symbol, in arrival order."""
        out = _Out()
        self._accept(tick, out)
        return out.freeze()

    def settle(self, verdict: Verdict) -> Step:
        """REST's verdict on the suspect it was asked about."""
        out = _Out()
        release, refuted = self.suspects.settle(verdict)
        for tick in refuted:
            out.rejected.append(Rejected(tick, "suspect_id", verdict.detail))
        if refuted:
            out.errors.append(f"far-ahead id {verdict.trade_id} rejected: {verdict.detail}")
        for tick in release:
            self._accept(tick, out)
        return out.freeze()

    def due(self) -> Tick | None:
        """A held suspect to ask REST about again (its last question went unanswered)."""
        return self.suspects.due()

    def _accept(self, tick: Tick, out: _Out) -> None:
        last = self.last_id
        if last is None:
            self._first(tick, out)
            return
        tid = tick.trade_id
        if tid <= last:
            self.duplicates += 1
            self.dup_run += 1
            if self.dup_run == BACKWARDS_AFTER:
                out.errors.append(
                    f"ids went backwards: the stream sends id {tid} but the last id is {last}; "
                    "nothing new is stored (a restarted replay, or another id space in this "
                    "database?)"
                )
            return
        if self.suspects.is_suspect(tick, last):
            self._hold(tick, out)
            return
        if tid != last + 1:
            self._gap(last + 1, tid - 1, "in the live stream", out, after_ms=tick.ts_ms)
        elif self.pending_kind is not None:  # contiguous with the resume point
            out.history_done = out.history_done or self.pending_kind == HISTORY
            self.pending_kind = None
        self._take(tick, out)

    def _first(self, tick: Tick, out: _Out) -> None:
        """No resume point yet: the first id waits for evidence (module docstring)."""
        cand = self.candidate
        if cand is None:
            if tick.trade_id <= self.suspects.trusted_id:  # REST has shown ids up to it
                self._resume_at(tick, out)
            else:
                self.candidate = tick
            return
        self.candidate = None
        if cand.trade_id - tick.trade_id > self.suspects.jump:
            self._hold(cand, out)  # far ahead of the stream: ask REST, like any far-ahead id
            self._first(tick, out)
            return
        self._resume_at(cand, out)  # the stream agrees with it
        self._accept(tick, out)

    def _resume_at(self, tick: Tick, out: _Out) -> None:
        if self.history_from_ms is not None:
            out.owed.append(self._owe_by_time(tick.trade_id - 1, tick.ts_ms))
        self._take(tick, out)

    def _take(self, tick: Tick, out: _Out) -> None:
        self.last_id = tick.trade_id
        self.last_id_ms = self.last_trade_ms = tick.ts_ms
        self.dup_run = 0
        self.accepted += 1
        out.store.append(tick)

    def _hold(self, tick: Tick, out: _Out) -> None:
        held, ask = self.suspects.hold(tick)
        if not held:
            out.rejected.append(Rejected(tick, "suspect_overflow", f"id {tick.trade_id}"))
        elif ask is not None:
            out.ask.append(ask)

    def _gap(
        self,
        first: int,
        last: int,
        where: str,
        out: _Out,
        stale: bool = False,
        after_ms: int | None = None,
    ) -> None:
        """Ids ``first..last`` are missing (``first - 1`` is the last id): owed."""
        completes_history = self.pending_kind == HISTORY
        kind = GAP if stale else (self.pending_kind or GAP)
        self.pending_kind = None
        if kind == HISTORY:
            where = "start-up history"
        else:
            self.gaps_found += 1
            self.ids_missing += last - first + 1
        out.owed.append(
            Owed(
                first,
                last,
                kind,
                where,
                self._now_ms(),
                completes_history or kind == HISTORY,
                self.last_id_ms,
                after_ms,
            )
        )

    def _owe_by_time(self, last: int, after_ms: int) -> Owed:
        from_ms, self.history_from_ms = self.history_from_ms, None
        self.pending_kind = None
        assert from_ms is not None
        since = datetime.fromtimestamp(from_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        where = f"start-up history since {since}Z (first id not known yet: REST failed)"
        return Owed(last, last, HISTORY, where, self._now_ms(), True, None, after_ms, from_ms)

    # --- REST probes --------------------------------------------------------------------------
    def probe(self, latest_id: int, latest_ms: int, connected_ms: int) -> Step:
        """REST's newest trade (``latest_id`` at ``latest_ms``) while the socket was silent
        since it opened at ``connected_ms``: a quiet market, or a stale socket?"""
        out = _Out()
        self.suspects.trust(latest_id)
        cand, self.candidate = self.candidate, None
        if cand is not None:  # the first id, judged against REST's newest
            if cand.trade_id - latest_id > self.suspects.jump:
                self._hold(cand, out)
            else:
                self._resume_at(cand, out)
        last = self.last_id
        if last is not None and latest_id <= last:
            return out.freeze()  # the exchange has nothing we lack: a quiet market
        # REST had an id at the last probe (``grace_ms`` ago at least) that the socket
        # still has not delivered: stale, however young the market's trades are (issue 14).
        ahead, self.rest_ahead_id = self.rest_ahead_id, None
        missed = ahead is not None and (last is None or last < ahead)
        if latest_ms > self._now_ms() - self.grace_ms and not missed:
            self.rest_ahead_id = latest_id  # too fresh: the socket may deliver it any moment
            out.recheck = True
            return out.freeze()
        traded_since_connect = latest_ms > connected_ms
        if last is None:
            if traded_since_connect:
                if self.history_from_ms is not None:  # history owed up to here
                    out.owed.append(self._owe_by_time(latest_id, latest_ms))
                self.last_id, self.last_id_ms = latest_id, latest_ms  # start from here
                out.stale_id = latest_id
            return out.freeze()
        # ``latest_id`` is the gap's last id, so its time bounds the missing trades' times.
        where = "found by REST probe"
        self._gap(last + 1, latest_id, where, out, traded_since_connect, after_ms=latest_ms)
        self.last_id, self.last_id_ms = latest_id, latest_ms
        self.last_trade_ms = max(self.last_trade_ms or 0, latest_ms)
        if traded_since_connect:
            out.stale_id = latest_id
        return out.freeze()
