"""Recorded market data files into column chunks: the one reader for import and replay alike.

Formats, detected from the first meaningful line (``docs/formats.md`` shows a sample of each):

* ``capture`` — raw WebSocket capture, ``<local_receive_ns> <json>`` per line (hftbacktest).
* ``cryptofeed`` — ``<unix_ts>: <json>`` per line after a ``<url> <-> <ts>`` header.
* ``wsjson`` — one WebSocket payload per line, raw (``{"e":"aggTrade",...}``) or combined
  (``{"stream":..., "data":{...}}``).
* ``ndjson`` — the original collector's ``{"symbol", "ts" (ISO-8601), "price", "size"}`` lines.
* ``trades_csv`` / ``aggtrades_csv`` / ``klines_csv`` — Binance's public USD-M data dumps,
  with or without a header row, as ``.csv``, ``.gz`` or ``.zip``.

Every file is opened by :func:`formats.opener.open_text` (bounded, regular files only).
WebSocket lines go through :func:`formats.wire.trade_fields`, the live client's own rules:
only trade prints are taken (``trade`` with ``X == "MARKET"`` and ``aggTrade``); book, depth,
kline and other messages are counted as skipped. Any other bad line refuses the whole file,
naming the line. Collector NDJSON has neither ids nor aggressor side: ids are synthesised as
``ts_ms * 1000 + n`` (``n`` counts prints of the same millisecond in file order, so a file
imported twice gives the same ids), and prints are stored as buyer-is-maker, so they add
nothing to taker-buy volume ("no known taker buys"). A time without a zone is UTC.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from formats.chunks import KlineChunk, ReadStats, TickChunk
from formats.dumps import read_csv
from formats.errors import ParseError
from formats.limits import Limits, default_limits
from formats.numbers import decimal_text, loads_bounded
from formats.opener import UNREADABLE, Source, open_text, source_name
from formats.wire import trade_fields, unwrap
from storage.records import IdKind

__all__ = [
    "CHUNK_ROWS",
    "KlineChunk",
    "ReadStats",
    "TickChunk",
    "detect_format",
    "read_file",
    "symbol_from_filename",
]

CHUNK_ROWS = 200_000


def symbol_from_filename(path: Path) -> str | None:
    """``BTCUSDT-aggTrades-2024-02-01.csv`` → ``BTCUSDT``; None unless the name follows
    Binance's ``SYMBOL-kind-date`` pattern (kind ``trades``, ``aggTrades`` or an interval)."""
    parts = path.name.split("-")
    if len(parts) < 3:
        return None
    head, kind = parts[0], parts[1]
    if not (
        head.isascii() and head.isalnum() and head.isupper() and any(c.isalpha() for c in head)
    ):
        return None
    if kind.lower() in ("trades", "aggtrades") or re.fullmatch(r"\d+[smhdwM]", kind):
        return head
    return None


def _first_line(fh: io.TextIOBase, name: str, limits: Limits) -> str:
    blank = 0
    for line in fh:
        s = line.strip()
        if s:
            return s
        blank += 1
        if blank >= limits.max_lines_without_trade:
            break
    raise ParseError("empty", "file is empty" if not blank else "holds only blank lines", path=name)


def detect_format(source: Source, limits: Limits | None = None) -> str:
    """Name the format of ``source`` from its first non-empty line."""
    lim = limits or default_limits()
    name = source_name(source)
    with open_text(source, lim) as fh:
        try:
            first = _first_line(fh, name, lim)
        except ParseError:
            raise
        except UNREADABLE as exc:
            reason = f"cannot be read as text ({exc})"
            raise ParseError("unreadable", reason, path=name, line=1) from None
    if not isinstance(source, str | os.PathLike):
        source.seek(0)
    return _classify(name, first, lim)


def _classify(name: str, s: str, limits: Limits) -> str:
    if s.startswith("{"):
        try:
            obj = loads_bounded(s, _line_limits(limits))
        except ParseError as exc:
            raise exc.at(name, 1) from None
        if isinstance(obj, dict) and {"symbol", "ts", "price", "size"} <= obj.keys():
            return "ndjson"
        return "wsjson"
    if " <-> " in s:
        return "cryptofeed"
    head, _, rest = s.partition(" ")
    if head.isascii() and head.isdigit() and rest.lstrip().startswith("{"):
        return "capture"
    cells = s.split(",")
    lowered = [c.strip().lower() for c in cells]
    if lowered[:1] == ["agg_trade_id"] or (len(cells) == 7 and _numeric(cells[0])):
        return "aggtrades_csv"
    if lowered[:1] == ["id"] or (len(cells) == 6 and _numeric(cells[0])):
        return "trades_csv"
    if lowered[:1] == ["open_time"] or (len(cells) == 12 and _numeric(cells[0])):
        return "klines_csv"
    raise ParseError("unknown_format", f"unrecognised format: {s[:80]!r}", path=name, line=1)


def _numeric(cell: str) -> bool:
    return cell.isascii() and cell.strip().isdigit()


def _line_limits(limits: Limits) -> Limits:
    # One line of a file is one message: the line cap is its frame cap.
    return Limits(
        max_frame_bytes=limits.max_line_bytes,
        max_json_depth=limits.max_json_depth,
        max_line_bytes=limits.max_line_bytes,
        max_recording_bytes=limits.max_recording_bytes,
        max_lines_without_trade=limits.max_lines_without_trade,
    )


def read_file(
    source: Source,
    *,
    symbol: str | None = None,
    stats: ReadStats | None = None,
    limits: Limits | None = None,
    keep_text: bool = False,
    chunk_rows: int | None = None,
) -> Iterator[TickChunk | KlineChunk]:
    """Yield the data of one file in chunks of at most ``chunk_rows`` rows.

    ``symbol`` names the symbol of a CSV dump whose file name does not (and, for WebSocket
    files, keeps only that symbol). ``keep_text`` keeps what a replay needs (see
    :class:`TickChunk`). Raises ``ParseError`` naming the file (and line) on bad input.
    """
    lim = limits or default_limits()
    name = source_name(source)
    stats = stats if stats is not None else ReadStats()
    stats.fmt = detect_format(source, lim)
    if isinstance(source, str | os.PathLike):
        stats.bytes_total = Path(source).stat().st_size
    rows = chunk_rows or CHUNK_ROWS
    if stats.fmt.endswith("_csv"):
        sym = (symbol or symbol_from_filename(Path(name)) or "").upper()
        if not sym:
            raise ParseError(
                "no_symbol",
                "cannot tell the symbol from the file name "
                "(Binance names dumps SYMBOL-trades|aggTrades|1m-DATE.csv); pass --symbol",
                path=name,
            )
        yield from read_csv(source, sym, stats, lim, keep_text, rows)
    else:
        only = symbol.upper() if symbol else None
        yield from _read_lines(source, stats, only, lim, keep_text, rows)


# ---------------------------------------------------------------------------- JSON lines
_Row = tuple[int, int, int, str, str, bool, int, int]  # id, T, E, p, q, m, f, l


def _read_lines(
    source: Source,
    stats: ReadStats,
    only_symbol: str | None,
    limits: Limits,
    keep_text: bool,
    chunk_rows: int,
) -> Iterator[TickChunk]:
    fmt, name = stats.fmt, source_name(source)
    line_limits = _line_limits(limits)
    buffers: dict[tuple[str, IdKind], list[_Row]] = {}
    ndjson_seq: dict[tuple[str, int], int] = {}
    pending = since_trade = lineno = 0
    with open_text(source, limits) as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                stats.lines = lineno
                stats.bytes_read += len(line)
                since_trade += 1
                if since_trade > limits.max_lines_without_trade:
                    raise ParseError(
                        "no_trades",
                        f"no trade in {limits.max_lines_without_trade:,} lines in a row "
                        "(MAX_LINES_WITHOUT_TRADE)",
                        path=name,
                        line=lineno,
                    )
                s = line.strip()
                if not s or (fmt == "cryptofeed" and lineno == 1):
                    continue
                obj = loads_bounded(_strip_prefix(s, fmt), line_limits)
                if not isinstance(obj, dict):
                    raise ParseError("not_an_object", "expected a JSON object")
                rec = _ndjson_record(obj, ndjson_seq) if fmt == "ndjson" else _ws_record(obj, stats)
                if rec is None:
                    continue
                sym, kind, row = rec
                if only_symbol is not None and sym != only_symbol:
                    stats.skip("other symbol")
                    continue
                since_trade = 0
                buffers.setdefault((sym, kind), []).append(row)
                stats.rows += 1
                pending += 1
                if pending >= chunk_rows:
                    yield from _flush(buffers, keep_text)
                    pending = 0
        except ParseError as exc:
            raise (exc if exc.path is not None else exc.at(name, lineno)) from None
        except UNREADABLE as exc:
            raise ParseError(
                "unreadable", f"cannot be read ({exc})", path=name, line=lineno + 1
            ) from None
    yield from _flush(buffers, keep_text)


def _strip_prefix(s: str, fmt: str) -> str:
    if fmt == "capture":
        head, _, rest = s.partition(" ")
        if not (head.isascii() and head.isdigit()):
            raise ParseError("bad_line", "expected '<receive_ns> <json>'")
        return rest
    if fmt == "cryptofeed":
        head, sep, rest = s.partition(": ")
        if not sep:
            raise ParseError("bad_line", "expected '<unix_ts>: <json>'")
        return rest
    return s


def _ws_record(obj: dict, stats: ReadStats) -> tuple[str, IdKind, _Row] | None:
    data = unwrap(obj) if "stream" in obj else obj
    if not isinstance(data, dict):
        raise ParseError("not_an_object", "'data' is not an object")
    event = data.get("e")
    if event not in ("trade", "aggTrade"):
        kind = event if event is not None else ("snapshot" if "lastUpdateId" in data else "unknown")
        stats.skip(str(kind))
        return None
    try:
        sym, kind, ident, ts, ev, price, qty, m, first, last = trade_fields(data)
    except ParseError as exc:
        if exc.reason == "not_market":
            stats.skip(f"trade:{data.get('X')}")
            return None
        raise ParseError(exc.reason, f"bad {event} message: {exc.detail or exc.reason}") from None
    return sym, kind, (ident, ts, ev, price, qty, m, first, last)


def _number_text(value: object, name: str) -> str:
    """A collector number: a JSON number or a plain decimal string, finite and > 0."""
    if type(value) is str:
        text = decimal_text(value, name)
    elif type(value) in (int, float):
        text = repr(float(value))
    else:
        raise ParseError(f"bad_{name}", f"{name}={value!r:.40} is not a number")
    number = float(text)
    if not (number > 0 and number < float("inf")):
        raise ParseError(f"bad_{name}", f"{name}={value!r:.40} is not finite and positive")
    return text


def _iso_ms(value: object) -> int:
    """ISO-8601 to ms since the epoch; a time without a zone is UTC (the collector wrote UTC)."""
    if type(value) is not str or not value.isascii() or len(value) > 40:
        raise ParseError("bad_time", f"ts={value!r:.40} is not an ISO-8601 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError("bad_time", f"ts={value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _ndjson_record(obj: dict, seq: dict[tuple[str, int], int]) -> tuple[str, IdKind, _Row]:
    try:
        sym = obj["symbol"]
        if type(sym) is not str or not sym.isascii() or not sym.replace("_", "").isalnum():
            raise ParseError("bad_field", f"symbol={sym!r:.40} is not a symbol")
        sym = sym.upper()
        ts_ms = _iso_ms(obj["ts"])
        price, qty = _number_text(obj["price"], "price"), _number_text(obj["size"], "size")
    except KeyError as exc:
        raise ParseError("missing_field", f"bad collector record: no {exc.args[0]!r}") from None
    except ParseError as exc:
        raise ParseError(exc.reason, f"bad collector record: {exc.detail}") from None
    n = seq.get((sym, ts_ms), 0)
    if n >= 1000:
        raise ParseError("too_many", "more than 1000 prints in one millisecond")
    seq[(sym, ts_ms)] = n + 1
    ident = ts_ms * 1000 + n
    return sym, IdKind.SYNTHETIC, (ident, ts_ms, ts_ms, price, qty, True, ident, ident)


def _flush(buffers: dict[tuple[str, IdKind], list[_Row]], keep_text: bool) -> Iterator[TickChunk]:
    for (sym, kind), rows in buffers.items():
        if not rows:
            continue
        ids, ts, ev, px, q, m, first, last = zip(*rows, strict=True)
        yield TickChunk(
            sym,
            kind,
            np.asarray(ids, np.int64),
            np.asarray(ts, np.int64),
            np.asarray(px, np.float64),
            np.asarray(q, np.float64),
            np.asarray(m, np.bool_),
            list(px) if keep_text else None,
            list(q) if keep_text else None,
            np.asarray(ev, np.int64) if keep_text else None,
            np.asarray(first, np.int64) if keep_text and kind is IdKind.AGG else None,
            np.asarray(last, np.int64) if keep_text and kind is IdKind.AGG else None,
        )
        rows.clear()
