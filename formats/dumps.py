"""Binance's public USD-M data dumps (``data.binance.vision``): trades, aggTrades, 1m klines.

Read with pandas in chunks from the bounded opener; every cell is checked with the same
grammar as the wire (:mod:`formats.numbers`): prices, quantities and volumes are plain
decimals, ids, times and counts are integers that fit a signed 64-bit column. A header row
is optional. Some newer dumps write times in microseconds: anything past year 5138 in ms is
read as µs.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pandas as pd

from formats.chunks import AGG_COLUMNS, TRADE_COLUMNS, KlineChunk, ReadStats, TickChunk
from formats.errors import ParseError
from formats.limits import Limits
from formats.numbers import DECIMAL_PATTERN, INT64_MAX
from formats.opener import UNREADABLE, Source, open_text, source_name
from storage.records import KLINE_FIELDS, IdKind

__all__ = ["read_csv"]

_COLUMNS = {"aggtrades_csv": AGG_COLUMNS, "trades_csv": TRADE_COLUMNS, "klines_csv": KLINE_FIELDS}
_KLINE_INTS = ("open_time", "close_time", "count")
_INT64_MAX_TEXT = str(INT64_MAX)


def read_csv(
    source: Source,
    symbol: str,
    stats: ReadStats,
    limits: Limits,
    keep_text: bool,
    chunk_rows: int,
) -> Iterator[TickChunk | KlineChunk]:
    """Yield one dump's rows as chunks (see :func:`formats.files.read_file`)."""
    fmt, name = stats.fmt, source_name(source)
    with open_text(source, limits) as fh:
        try:
            first = fh.readline()
            has_header = not first.split(",")[0].strip().isdigit()
            # pandas skips the header itself, so the line numbers in its errors are the file's.
            reader = pd.read_csv(
                _Rewound(first, fh),
                header=None,
                names=list(_COLUMNS[fmt]),
                chunksize=chunk_rows,
                skiprows=1 if has_header else 0,
                dtype=str,
                na_filter=False,
            )
            line0 = 2 if has_header else 1
            for chunk in reader:
                stats.lines += len(chunk)
                stats.rows += len(chunk)
                stats.bytes_read = min(stats.bytes_total, stats.bytes_read + len(chunk) * 60)
                yield _chunk(name, symbol, fmt, chunk, line0, keep_text)
                line0 += len(chunk)
        except ParseError as exc:
            raise (exc if exc.path is not None else exc.at(name)) from None
        except pd.errors.ParserError as exc:
            reason = " ".join(str(exc).split())  # pandas ends it with a newline
            raise ParseError("bad_csv", f"malformed CSV ({reason})", path=name) from None
        except UNREADABLE as exc:
            raise ParseError("unreadable", f"cannot be read ({exc})", path=name) from None


class _Rewound(io.TextIOBase):
    """A text stream that replays one already-read line before the rest."""

    def __init__(self, first: str, rest: io.TextIOBase):
        self._first, self._rest = first, rest

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        if self._first:
            head, self._first = self._first, ""
            return head + (self._rest.read() if size is None or size < 0 else "")
        return self._rest.read(size)

    def readline(self, size: int = -1) -> str:
        if self._first:
            head, self._first = self._first, ""
            return head
        return self._rest.readline(size)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _refuse(name: str, chunk: pd.DataFrame, col: str, line0: int, bad: np.ndarray, what: str):
    i = int(np.flatnonzero(bad)[0])
    raise ParseError(
        f"bad_{col}",
        f"column {col} is not {what}: {chunk[col].iloc[i]!r}",
        path=name,
        line=line0 + i,
    )


def _decimal_column(name: str, chunk: pd.DataFrame, col: str, line0: int) -> np.ndarray:
    """A column of plain decimals (Binance's grammar, no sign, exponent or spaces)."""
    ok = chunk[col].str.fullmatch(DECIMAL_PATTERN).to_numpy(bool)
    if not ok.all():
        _refuse(name, chunk, col, line0, ~ok, "a number")
    return chunk[col].to_numpy().astype(np.float64)


def _int_column(name: str, chunk: pd.DataFrame, col: str, line0: int) -> np.ndarray:
    """A column of integers in ``0..2**63-1``."""
    text = chunk[col]
    ok = text.str.fullmatch(r"[0-9]{1,19}").to_numpy(bool)
    ok = ok & ~((text.str.len() == 19) & (text > _INT64_MAX_TEXT)).to_numpy(bool)
    if not ok.all():
        _refuse(name, chunk, col, line0, ~ok, "an integer in 0..2^63-1")
    return text.to_numpy().astype(np.int64)


def _bool_column(name: str, chunk: pd.DataFrame, col: str, line0: int) -> np.ndarray:
    v = chunk[col].str.strip().str.lower()
    ok = v.isin(["true", "false", "1", "0"]).to_numpy()
    if not ok.all():
        _refuse(name, chunk, col, line0, ~ok, "a boolean")
    return v.isin(["true", "1"]).to_numpy()


def _to_ms(t: np.ndarray) -> np.ndarray:
    """Some newer dumps use microseconds: anything past year 5138 in ms is taken as µs."""
    return np.where(t > 10**14, t // 1000, t)


def _chunk(
    name: str, symbol: str, fmt: str, chunk: pd.DataFrame, line0: int, keep_text: bool
) -> TickChunk | KlineChunk:
    if fmt == "klines_csv":
        rows = pd.DataFrame(
            {
                c: _int_column(name, chunk, c, line0)
                if c in _KLINE_INTS
                else _decimal_column(name, chunk, c, line0)
                for c in KLINE_FIELDS[:-1]
            }
        )
        rows["open_time"] = _to_ms(rows["open_time"].to_numpy())
        rows["close_time"] = _to_ms(rows["close_time"].to_numpy())
        return KlineChunk(symbol, rows)
    agg = fmt == "aggtrades_csv"
    id_col, t_col, q_col = (
        ("agg_trade_id", "transact_time", "quantity") if agg else ("id", "time", "qty")
    )
    price = _decimal_column(name, chunk, "price", line0)
    qty = _decimal_column(name, chunk, q_col, line0)
    bad = ~((price > 0) & (qty > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParseError(
            "bad_price", "price and quantity must be positive", path=name, line=line0 + i
        )
    ts = _to_ms(_int_column(name, chunk, t_col, line0))
    keep_agg = keep_text and agg
    return TickChunk(
        symbol,
        IdKind.AGG if agg else IdKind.TRADE,
        _int_column(name, chunk, id_col, line0),
        ts,
        price,
        qty,
        _bool_column(name, chunk, "is_buyer_maker", line0),
        chunk["price"].tolist() if keep_text else None,
        chunk[q_col].tolist() if keep_text else None,
        ts if keep_text else None,
        _int_column(name, chunk, "first_trade_id", line0) if keep_agg else None,
        _int_column(name, chunk, "last_trade_id", line0) if keep_agg else None,
    )
