"""Recording source and pacing: when each recorded print is served, with which id and time.

A ``SymbolView`` is one symbol's sequence (aggregates or trades) of a ``Recording`` seen as an
endless list of events ``n`` (a looping replay continues ids, times and prices upwards pass
after pass). The ``Timeline`` maps every event to a served trade time ``T`` and a wall-clock
due time, and writes the WebSocket payloads and REST rows. Pure: no sockets; the clock is a
parameter (``clock``, seconds since the epoch).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from replay.recording import Recording, SymbolRecording, TradeColumns

__all__ = ["SymbolView", "Timeline"]


class SymbolView:
    """One symbol's sequence (aggregates or trades) as an endless list of events ``n``:
    pass ``k = n // len``, index ``i = n % len``; ids and times move up by a span per pass."""

    def __init__(
        self, symbol: str, cols: TradeColumns, kind: str, id_span_sub: int, id_offset: int = 0
    ) -> None:
        self.symbol = symbol
        self.lower = symbol.lower()
        self.cols = cols
        self.kind = kind  # "agg" or "trade"
        self.size = len(cols)
        self.id_span = cols.ids[-1] - cols.ids[0] + 1
        self.sub_span = id_span_sub  # span of underlying trade ids (aggs' f/l)
        self.offset = id_offset  # added to every served id (ids, and aggs' f/l)
        self.m_json = ["true" if m else "false" for m in cols.buyer_maker]
        self._factors: dict[int, Decimal] = {}  # price scale of each loop pass (see price_of)

    def id_of(self, n: int) -> int:
        k, i = divmod(n, self.size)
        return self.cols.ids[i] + k * self.id_span + self.offset

    def price_of(self, n: int) -> str:
        """Served price of event ``n``: each pass continues from the previous pass's last price.

        A loop joins the recording's end to its start; serving the recorded prices again would
        invent a jump at every join (and, for a pair, a spread no market made). Pass ``k`` is
        scaled by ``(last / first) ** k`` and rounded to the recorded decimals, so its first
        print equals the previous pass's last (within a tick) and its returns are the recorded
        ones.
        """
        k, i = divmod(n, self.size)
        raw = self.cols.price[i]
        if k == 0:
            return raw
        factor = self._factors.get(k)
        if factor is None:
            ratio = Decimal(self.cols.price[-1]) / Decimal(self.cols.price[0])
            factor = self._factors[k] = ratio**k
        recorded = Decimal(raw)
        return str((recorded * factor).quantize(recorded))

    def n_of_id(self, ident: int, loop: bool) -> int:
        """Smallest ``n`` whose id is >= ``ident``."""
        ident -= self.offset
        base = self.cols.ids[0]
        k = max(0, (ident - base) // self.id_span) if loop else 0
        i = bisect.bisect_left(self.cols.ids, ident - k * self.id_span)
        if i >= self.size and loop:
            k, i = k + 1, 0
        return k * self.size + i


class Timeline:
    """Maps every event of every symbol to a served trade time and a wall-clock due time.

    Recorded time runs over passes: ``rel = T_recorded + k × span``. With ``rebase_time``
    (and ``speed`` > 0) the served time *is* the wall-clock send time,
    ``start + (rel − R0 − preroll) / speed``: at speed 10 the clock of the data runs ten
    times faster, and "age of the last trade" still means something. Without it the
    recorded times are served as they are and only the pacing follows ``speed``.

    ``start_wall_s`` (default: now) and ``clock`` (seconds since the epoch, default
    ``time.time``) are parameters, so pacing can be checked without waiting on the wall.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        speed: float = 1.0,
        loop: bool = False,
        rebase_time: bool = True,
        preroll_s: float = 0.0,
        rate: float | None = None,
        loop_pause_ms: int = 1000,
        start_wall_s: float | None = None,
        id_offset: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if speed < 0 or not math.isfinite(speed):
            raise ValueError("speed must be >= 0 (0 = as fast as possible)")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be > 0 messages per second")
        self.recording = recording
        self.speed = speed
        self.loop = loop
        self.rate = rate
        self.rebase = rebase_time
        self._clock = clock
        self.start_wall_s = clock() if start_wall_s is None else start_wall_s
        self.start_ms = self.start_wall_s * 1000
        self.rec_start_ms = recording.start_ms
        self.span_ms = recording.end_ms - recording.start_ms + loop_pause_ms
        self.preroll_ms = preroll_s * 1000
        self.views: dict[tuple[str, str], SymbolView] = {}
        for symbol, rec in recording.symbols.items():
            sub = _sub_span(rec)
            self.views[(symbol, "agg")] = SymbolView(symbol, rec.aggs, "agg", sub, id_offset)
            if rec.trades is not None:
                self.views[(symbol, "trade")] = SymbolView(
                    symbol, rec.trades, "trade", sub, id_offset
                )

    # --- time --------------------------------------------------------------------------------
    def _served(self, rel_ms: float) -> int:
        """Served ms of recorded-over-passes time ``rel_ms``."""
        origin = self.rec_start_ms + self.preroll_ms
        if self.speed == 0:
            return int(rel_ms - origin + self.start_ms) if self.rebase else int(rel_ms)
        if self.rebase:
            return int(self.start_ms + (rel_ms - origin) / self.speed)
        return int(rel_ms)

    def _rel(self, served_ms: float) -> float:
        """Inverse of ``_served`` (up to the int truncation)."""
        origin = self.rec_start_ms + self.preroll_ms
        if self.speed == 0:
            return served_ms + origin - self.start_ms if self.rebase else served_ms
        if self.rebase:
            return (served_ms - self.start_ms) * self.speed + origin
        return served_ms

    def ts_of(self, view: SymbolView, n: int) -> int:
        """Served trade time ``T`` of event ``n``, ms."""
        if self.rate is not None:
            return int(self.start_ms + n * 1000.0 / self.rate)
        k, i = divmod(n, view.size)
        return self._served(view.cols.ts_ms[i] + k * self.span_ms)

    def now_ms(self) -> float:
        """The replay's present in served ms (``inf`` at speed 0: everything is in the past)."""
        if self.rate is None and self.speed == 0:
            return math.inf
        if self.rate is not None or self.rebase:
            return self._clock() * 1000
        elapsed_ms = (self._clock() - self.start_wall_s) * 1000
        return self.rec_start_ms + self.preroll_ms + elapsed_ms * self.speed

    def due_wall_s(self, view: SymbolView, n: int) -> float:
        """Wall-clock time (s) at which event ``n`` is sent."""
        if self.rate is None and self.speed == 0:
            return 0.0
        if self.rate is not None or self.rebase:
            return self.ts_of(view, n) / 1000
        offset_ms = self.ts_of(view, n) - (self.rec_start_ms + self.preroll_ms)
        return self.start_wall_s + offset_ms / self.speed / 1000

    def exists(self, view: SymbolView, n: int) -> bool:
        return n >= 0 and (self.loop or n < view.size)

    def n_after_time(self, view: SymbolView, t_ms: float) -> int:
        """Smallest ``n`` with served time > ``t_ms`` (it may not exist)."""
        if t_ms == math.inf:
            return self.end_n(view)
        if self.rate is not None:
            n = max(0, math.floor((t_ms - self.start_ms) * self.rate / 1000))
        else:
            rel = self._rel(t_ms)
            k = max(0, int((rel - self.rec_start_ms) // self.span_ms)) if self.loop else 0
            i = bisect.bisect_right(view.cols.ts_ms, rel - k * self.span_ms)
            if i >= view.size and self.loop:
                k += 1
                i = bisect.bisect_right(view.cols.ts_ms, rel - k * self.span_ms)
            n = k * view.size + i
        # Exact at the edges despite int truncation of served times.
        while n > 0 and self.ts_of(view, n - 1) > t_ms:
            n -= 1
        while self.exists(view, n) and self.ts_of(view, n) <= t_ms:
            n += 1
        return n

    def n_at_or_after_time(self, view: SymbolView, t_ms: float) -> int:
        """Smallest ``n`` with served time >= ``t_ms`` (integer ms)."""
        return self.n_after_time(view, t_ms - 1)

    def end_n(self, view: SymbolView) -> int:
        """One past the last event that exists (a large number when looping)."""
        return view.size if not self.loop else 1 << 62

    def published_end(self, view: SymbolView) -> int:
        """One past the last event whose time has come."""
        if self.speed == 0 and self.rate is None:
            return self.end_n(view)
        return min(self.n_after_time(view, self.now_ms()), self.end_n(view))

    # --- payloads ----------------------------------------------------------------------------
    def ws_payload(self, view: SymbolView, n: int) -> str:
        k, i = divmod(n, view.size)
        c = view.cols
        ts = self.ts_of(view, n)
        ev = ts + (c.event_ms[i] - c.ts_ms[i]) if self.rate is None else ts
        ident = c.ids[i] + k * view.id_span + view.offset
        if view.kind == "agg":
            sub = k * view.sub_span + view.offset
            return (
                f'{{"e":"aggTrade","E":{ev},"a":{ident},"s":"{view.symbol}",'
                f'"p":"{view.price_of(n)}","q":"{c.qty[i]}","f":{c.first_id[i] + sub},'
                f'"l":{c.last_id[i] + sub},"T":{ts},"m":{view.m_json[i]}}}'
            )
        return (
            f'{{"e":"trade","E":{ev},"T":{ts},"s":"{view.symbol}","t":{ident},'
            f'"p":"{view.price_of(n)}","q":"{c.qty[i]}","X":"MARKET","m":{view.m_json[i]}}}'
        )

    def rest_row(self, view: SymbolView, n: int) -> dict[str, Any]:
        k, i = divmod(n, view.size)
        c = view.cols
        if view.kind == "agg":
            return {
                "a": c.ids[i] + k * view.id_span + view.offset,
                "p": view.price_of(n),
                "q": c.qty[i],
                "f": c.first_id[i] + k * view.sub_span + view.offset,
                "l": c.last_id[i] + k * view.sub_span + view.offset,
                "T": self.ts_of(view, n),
                "m": c.buyer_maker[i],
            }
        price = view.price_of(n)
        quote = Decimal(price) * Decimal(c.qty[i])
        return {
            "id": c.ids[i] + k * view.id_span + view.offset,
            "price": price,
            "qty": c.qty[i],
            "quoteQty": str(quote),
            "time": self.ts_of(view, n),
            "isBuyerMaker": c.buyer_maker[i],
        }


def _sub_span(rec: SymbolRecording) -> int:
    if rec.trades is not None:
        return rec.trades.ids[-1] - rec.trades.ids[0] + 1
    return max(rec.aggs.last_id) - min(rec.aggs.first_id) + 1
