"""Load recorded Binance trades for replay: capture lines, WS JSON lines, collector NDJSON.

Accepted line formats (gzip or plain text, detected per file and per line):

- raw capture ``<local_ns> <json>`` (hftbacktest, ``../shared/data/real/``)
- cryptofeed capture ``<unix_ts>: <json>`` with a ``<url> <-> <ts>`` header line
- plain WebSocket JSON lines, raw payloads or combined ``{"stream", "data"}``
- the original collector's NDJSON ``{"symbol", "ts": ISO-8601, "price", "size"}``

Only trade events are kept (``trade`` with ``X == "MARKET"``, ``aggTrade``, collector rows);
book, depth, kline and snapshot lines are counted and skipped. Prices and quantities keep
their original decimal strings so the replay serves exactly what was recorded.

Aggregates for ``@aggTrade`` replay of a ``@trade`` recording are *derived*: consecutive
trades (in trade-id order) with the same trade time ``T`` (same ms), price and taker side
``m`` form one aggregate, ``q`` is their exact decimal sum, ``f``/``l`` are their first and
last trade ids, and ``a`` counts up by one from ``AGG_ID_BASE``. Real Binance aggregation
(fills of one taker order) can only merge more than this, never less. Collector NDJSON has
no ids and no side: trade ids are numbered 1, 2, ... in file order and ``m`` is ``false``.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

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


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def _json_part(line: str) -> str | None:
    """The JSON text of one line of any accepted format, or None (header, blank)."""
    if line.startswith("{"):
        return line
    head, sep, rest = line.partition(" ")
    if sep and rest.startswith("{") and head.rstrip(":").replace(".", "", 1).isdigit():
        return rest
    return None


def _iso_ms(value: str) -> int:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return round(moment.timestamp() * 1000)


def _iter_events(lines: Iterable[str]) -> Iterator[tuple[str, str, tuple] | None]:
    """Yield ``(kind, symbol, row)`` for trade lines and None for skipped ones."""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        text = _json_part(line)
        if text is None:
            yield None
            continue
        try:
            msg: Any = json.loads(text)
        except ValueError:
            yield None
            continue
        if isinstance(msg, dict) and "data" in msg and "stream" in msg:
            msg = msg["data"]
        if not isinstance(msg, dict):
            yield None
            continue
        try:
            event = msg.get("e")
            if event == "trade":
                if msg.get("X", "MARKET") != "MARKET":
                    yield None
                    continue
                t = int(msg["t"])
                yield (
                    "trade",
                    msg["s"].upper(),
                    (
                        t,
                        int(msg["T"]),
                        int(msg.get("E", msg["T"])),
                        str(msg["p"]),
                        str(msg["q"]),
                        bool(msg["m"]),
                        t,
                        t,
                    ),
                )
            elif event == "aggTrade":
                yield (
                    "agg",
                    msg["s"].upper(),
                    (
                        int(msg["a"]),
                        int(msg["T"]),
                        int(msg.get("E", msg["T"])),
                        str(msg["p"]),
                        str(msg["q"]),
                        bool(msg["m"]),
                        int(msg["f"]),
                        int(msg["l"]),
                    ),
                )
            elif {"symbol", "ts", "price", "size"} <= msg.keys():
                ts = _iso_ms(str(msg["ts"]))
                yield (
                    "ndjson",
                    str(msg["symbol"]).upper(),
                    (
                        0,
                        ts,
                        ts,
                        repr(float(msg["price"])),
                        repr(float(msg["size"])),
                        False,
                        0,
                        0,
                    ),
                )
            else:
                yield None
        except (KeyError, TypeError, ValueError, AttributeError):
            yield None


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


def load_recording(paths: Iterable[str | os.PathLike[str]]) -> Recording:
    """Read every file and return the trades per symbol; ``ValueError`` if none are found."""
    files = [Path(p) for p in paths]
    trades: dict[str, list[tuple]] = {}
    aggs: dict[str, list[tuple]] = {}
    ndjson: dict[str, list[tuple]] = {}
    skipped = 0
    for path in files:
        if not path.is_file():
            raise ValueError(f"recording {path} does not exist")
        with _open_text(path) as fh:
            for event in _iter_events(fh):
                if event is None:
                    skipped += 1
                    continue
                kind, symbol, row = event
                target = {"trade": trades, "agg": aggs, "ndjson": ndjson}[kind]
                target.setdefault(symbol, []).append(row)
    for symbol, rows in ndjson.items():
        if symbol in trades:
            log.warning("%s: collector rows ignored, the recording has real trades", symbol)
            continue
        rows.sort(key=lambda r: r[1])  # stable: file order within a ms
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
        raise ValueError(
            f"no trades found in {', '.join(str(p) for p in files)} "
            "(expected @trade/@aggTrade lines or collector NDJSON)"
        )
    return Recording(out, [str(p) for p in files], skipped)
