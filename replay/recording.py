"""Load recorded Binance trades for the replay server, through the one reader of ``formats``.

Every format ``storage import`` reads is accepted, with the same rules (``docs/formats.md``):
captures, cryptofeed files, WebSocket JSON lines, collector NDJSON and Binance's trades and
aggTrades CSV dumps (klines dumps hold no trades and are skipped). Prices and quantities keep
their original decimal strings, so the replay serves exactly what was recorded.

Aggregates for ``@aggTrade`` replay of a ``@trade`` recording are *derived*: consecutive
trades (in trade-id order) with the same trade time ``T`` (same ms), price and taker side
``m`` form one aggregate, ``q`` is their exact decimal sum, ``f``/``l`` are their first and
last trade ids, and ``a`` counts up by one from ``AGG_ID_BASE``. Real Binance aggregation
(fills of one taker order) can only merge more than this, never less.

Collector NDJSON carries no ids: ``formats`` gives each print the synthetic id
``ts_ms * 1000 + n`` that ``storage import`` stores. A replay must look like Binance, whose
trade ids count up by one, so the replay serves those prints (in synthetic-id order, which is
time then file order) as trade ids 1, 2, 3 ...; time, price, quantity and side are the
imported ones (side: buyer-is-maker, as ``formats`` stores every collector print).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from formats import Limits, ParseError, ReadStats, TickChunk, read_file
from storage.records import IdKind

__all__ = ["AGG_ID_BASE", "Recording", "SymbolRecording", "load_recording"]

log = logging.getLogger(__name__)

#: First derived aggregate id. Derived ids are not Binance's: do not mix databases.
AGG_ID_BASE = 1


@dataclass(slots=True)
class TradeColumns:
    """Parallel columns of one symbol's prints, sorted by (time, id)."""

    ids: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)  # exchange trade time T
    event_ms: list[int] = field(default_factory=list)  # event time E
    price: list[str] = field(default_factory=list)
    qty: list[str] = field(default_factory=list)
    buyer_maker: list[bool] = field(default_factory=list)
    first_id: list[int] = field(default_factory=list)  # aggregates only: f
    last_id: list[int] = field(default_factory=list)  # aggregates only: l

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, row: tuple) -> None:
        ident, ts, ev, p, q, m, f, last = row
        self.ids.append(ident)
        self.ts_ms.append(ts)
        self.event_ms.append(ev)
        self.price.append(p)
        self.qty.append(q)
        self.buyer_maker.append(m)
        self.first_id.append(f)
        self.last_id.append(last)


@dataclass(slots=True)
class SymbolRecording:
    """One symbol's prints: ``trades`` (trade ids; None if only aggregates were recorded) and
    ``aggs`` (aggregate ids; real if recorded, else derived from ``trades``)."""

    symbol: str
    trades: TradeColumns | None
    aggs: TradeColumns
    aggs_derived: bool


@dataclass(slots=True)
class Recording:
    """Every symbol found in a set of files, plus what was skipped."""

    symbols: dict[str, SymbolRecording]
    files: list[str]
    skipped_lines: int = 0

    @property
    def start_ms(self) -> int:
        return min(s.aggs.ts_ms[0] for s in self.symbols.values())

    @property
    def end_ms(self) -> int:
        return max(s.aggs.ts_ms[-1] for s in self.symbols.values())


def _sorted_unique(rows: list[tuple]) -> list[tuple]:
    rows.sort(key=lambda r: (r[1], r[0]))
    out: list[tuple] = []
    seen: set[int] = set()
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            out.append(row)
    return out


def _columns(rows: list[tuple]) -> TradeColumns:
    cols = TradeColumns()
    for row in rows:
        cols.append(row)
    return cols


def derive_aggregates(trades: TradeColumns, base_id: int = AGG_ID_BASE) -> TradeColumns:
    """Aggregate consecutive trades with the same ms, price and side (see module docstring)."""
    aggs = TradeColumns()
    order = sorted(range(len(trades)), key=lambda i: trades.ids[i])
    current: list[Any] | None = None
    for i in order:
        key = (trades.ts_ms[i], trades.price[i], trades.buyer_maker[i])
        if current is not None and current[0] == key:
            current[1] += Decimal(trades.qty[i])
            current[3] = trades.ids[i]
            current[4] = trades.event_ms[i]
            continue
        if current is not None:
            aggs.append(_agg_row(base_id + len(aggs), current))
        current = [key, Decimal(trades.qty[i]), trades.ids[i], trades.ids[i], trades.event_ms[i]]
    if current is not None:
        aggs.append(_agg_row(base_id + len(aggs), current))
    return aggs


def _agg_row(agg_id: int, current: list[Any]) -> tuple:
    (ts, price, buyer_maker), qty, first, last, event = current
    return (agg_id, ts, event, price, str(qty), buyer_maker, first, last)


def _rows(chunk: TickChunk) -> list[tuple]:
    assert chunk.price_text is not None and chunk.qty_text is not None
    assert chunk.event_ms is not None
    ids = chunk.trade_id.tolist()
    first = chunk.first_id.tolist() if chunk.first_id is not None else ids
    last = chunk.last_id.tolist() if chunk.last_id is not None else ids
    return list(
        zip(
            ids,
            chunk.ts_ms.tolist(),
            chunk.event_ms.tolist(),
            chunk.price_text,
            chunk.qty_text,
            chunk.is_buyer_maker.tolist(),
            first,
            last,
            strict=True,
        )
    )


def load_recording(
    paths: Iterable[str | os.PathLike[str]], limits: Limits | None = None
) -> Recording:
    """Read every file and return the trades per symbol.

    Raises :class:`formats.ParseError` (a ``ValueError``) naming the file, and the line, for
    a file ``storage import`` would refuse too, and when no file holds a trade.
    """
    files = [Path(p) for p in paths]
    by_kind: dict[IdKind, dict[str, list[tuple]]] = {kind: {} for kind in IdKind}
    skipped = 0
    for path in files:
        stats = ReadStats()
        try:
            for chunk in read_file(path, stats=stats, limits=limits, keep_text=True):
                if isinstance(chunk, TickChunk):
                    by_kind[chunk.id_kind].setdefault(chunk.symbol, []).extend(_rows(chunk))
                else:
                    stats.skipped += len(chunk)  # klines: bars, not trades
        except ParseError as exc:
            if exc.reason not in ("unknown_format", "empty"):
                raise
            raise ParseError(
                "no_trades", f"no trades found: {exc.detail}", path=str(path)
            ) from None
        skipped += stats.skipped + (1 if stats.fmt == "cryptofeed" else 0)  # + its header
    trades, aggs = by_kind[IdKind.TRADE], by_kind[IdKind.AGG]
    for symbol, rows in by_kind[IdKind.SYNTHETIC].items():
        if symbol in trades:
            log.warning("%s: collector rows ignored, the recording has real trades", symbol)
            continue
        rows.sort(key=lambda r: r[0])  # synthetic ids order by time, then file order
        trades[symbol] = [
            (n, r[1], r[2], r[3], r[4], r[5], n, n) for n, r in enumerate(rows, start=1)
        ]
    out: dict[str, SymbolRecording] = {}
    for symbol in sorted(set(trades) | set(aggs)):
        trade_cols = _columns(_sorted_unique(trades[symbol])) if symbol in trades else None
        if symbol in aggs:
            out[symbol] = SymbolRecording(
                symbol, trade_cols, _columns(_sorted_unique(aggs[symbol])), False
            )
        else:
            assert trade_cols is not None
            out[symbol] = SymbolRecording(symbol, trade_cols, derive_aggregates(trade_cols), True)
    if not out:
        raise ParseError(
            "no_trades",
            "no trades found (expected @trade/@aggTrade lines, collector NDJSON or a "
            "trades/aggTrades dump)",
            path=", ".join(str(p) for p in files),
        )
    return Recording(out, [str(p) for p in files], skipped)
