"""Far-ahead ids are suspects, not new truths: held until REST confirms them (issue 14).

Ids rise by one per trade, so a frame whose id is far past the last one is either a real
jump (the socket missed a lot: a long outage) or a lie (a broken or hostile endpoint, a
frame with ``a = 10**12``). Believing a lie is costly: every later genuine trade looks
like a duplicate and is dropped, and the "gap" before it can never be repaired. So a
frame more than ``suspect_id_jump`` ids past the last one is *held*, and the repair
thread asks REST about that very id (``aggTrades?fromId=<id>&limit=1``; for ``@trade``
ids, the recent trades). If REST has it at the same price, it and everything held after
it go on as usual (the ids before it are a gap that REST repairs). If not, it is
rejected (reason ``suspect_id``) with every held id at or past it, and the genuine
trades held meanwhile go on. Until the verdict the connection keeps reading: frames
with ordinary ids are accepted as usual, far-ahead ones wait (at most ``held_max``;
more are dropped and, if genuine, come back as a gap REST repairs).

With no resume point (an empty database, no start-up history), the first id is judged
by the gap tracker (``ingestion.gaps``) against the next live id or REST's newest id; one
far ahead of them becomes a suspect here like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from formats.wire import ParseError, StreamKind, parse_rest_agg_trade, parse_rest_trade
from ingestion.rest import RestError
from storage.records import Tick

__all__ = ["SuspectIds", "Verdict", "confirm_id"]

_INT64_END = 2**63


@dataclass(frozen=True, slots=True)
class Verdict:
    """REST's answer about one suspect id. ``genuine`` None: REST could not answer."""

    trade_id: int
    genuine: bool | None
    detail: str


def confirm_id(rest: Any, tick: Tick, stream: StreamKind, page_limit: int = 1000) -> Verdict:
    """Ask REST whether ``tick`` (a suspect id) exists, at the same price."""
    tid = tick.trade_id
    if not 0 <= tid < _INT64_END:  # Binance ids are 64-bit signed: no need to ask
        return Verdict(tid, False, f"id {tid} is outside the 64-bit signed range")
    try:
        if stream is StreamKind.AGG_TRADE:
            rows = rest.agg_trades(tick.symbol, from_id=tid, limit=1)
            found = [parse_rest_agg_trade(r, tick.symbol) for r in rows[:1]]
        else:
            rows = rest.recent_trades(tick.symbol, limit=page_limit)
            found = [parse_rest_trade(r, tick.symbol) for r in rows]
    except RestError as exc:
        if 400 <= exc.status < 500 and exc.status not in (418, 429):  # REST refuses the id
            return Verdict(tid, False, f"REST refuses id {tid}: {exc}")
        return Verdict(tid, None, f"REST could not confirm id {tid}: {exc}")
    except ParseError as exc:
        return Verdict(tid, None, f"REST could not confirm id {tid}: {exc}")
    same = [t for t in found if t.trade_id == tid]
    if same and same[0].price == tick.price:
        return Verdict(tid, True, f"REST confirms id {tid}")
    if same:
        return Verdict(
            tid, False, f"REST has id {tid} at price {same[0].price}, the stream said {tick.price}"
        )
    newest = max((t.trade_id for t in found), default=None)
    if stream is StreamKind.TRADE and newest is not None and newest >= tid:
        return Verdict(tid, True, f"REST's trades reach id {newest}")  # older than its window
    return Verdict(tid, False, f"REST has no id {tid} (newest it shows: {newest})")


class SuspectIds:
    """The held suspects of one feed; owned by its connection thread.

    Parameters
    ----------
    jump : an id more than this past the last id is a suspect.
    held_max : most frames held while REST is asked.
    retry_s : after REST failed to answer, ask again this much later, in seconds.
    clock : monotonic seconds (injectable).
    """

    def __init__(
        self,
        jump: int,
        held_max: int = 10_000,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jump = jump
        self._clock = clock
        self.held_max = held_max
        self.retry_s = retry_s
        self.trusted_id = -1  # ids up to this one are known to exist (REST said so)
        self.held: list[Tick] = []
        self.asking: int | None = None  # the id REST is being asked about
        self._retry_at: float | None = None

    def is_suspect(self, tick: Tick, last_id: int | None) -> bool:
        return (
            last_id is not None
            and tick.trade_id - last_id > self.jump
            and tick.trade_id > self.trusted_id
        )

    def trust(self, trade_id: int) -> None:
        """REST showed ``trade_id`` (a probe, a backfill): ids up to it are not suspects."""
        self.trusted_id = max(self.trusted_id, trade_id)

    def hold(self, tick: Tick) -> tuple[bool, Tick | None]:
        """Hold ``tick``: ``(held, ask)``; ``held`` False when full (drop it), ``ask`` the
        tick to ask REST about now, if no question is open."""
        if len(self.held) >= self.held_max:
            return False, None
        self.held.append(tick)
        if self.asking is None and self._retry_at is None:
            self.asking = tick.trade_id
            return True, tick
        return True, None

    def due(self, now: float | None = None) -> Tick | None:
        """The held tick to ask REST about again after a failed answer, once it is time."""
        now = self._clock() if now is None else now
        if self._retry_at is None or now < self._retry_at or not self.held:
            return None
        self._retry_at = None
        self.asking = self.held[0].trade_id
        return self.held[0]

    def settle(self, verdict: Verdict) -> tuple[list[Tick], list[Tick]]:
        """Apply REST's ``verdict``: ``(release, refuted)``. ``release`` goes through the id
        checks again in arrival order (later far-ahead ids may be held again)."""
        self.asking = None
        if verdict.genuine is None:
            self._retry_at = self._clock() + self.retry_s
            return [], []
        held, self.held = self.held, []
        if verdict.genuine:
            self.trust(verdict.trade_id)
            return held, []
        # REST has nothing at that id: no genuine id at or past it can exist yet either.
        refuted = [t for t in held if t.trade_id >= verdict.trade_id]
        return [t for t in held if t.trade_id < verdict.trade_id], refuted
