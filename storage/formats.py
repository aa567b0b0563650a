"""Readers for recorded market data files; each yields column chunks ready for the writer.

Formats, detected from the first meaningful line (the README lists them with examples):

* ``capture`` — raw WebSocket capture, ``<local_receive_ns> <json>`` per line (hftbacktest).
* ``cryptofeed`` — ``<unix_ts>: <json>`` per line after a ``<url> <-> <ts>`` header.
* ``wsjson`` — one WebSocket payload per line, raw (``{"e":"aggTrade",...}``) or combined
  (``{"stream":..., "data":{...}}``).
* ``ndjson`` — the collector's ``{"symbol", "ts" (ISO-8601), "price", "size"}`` lines.
* ``trades_csv`` / ``aggtrades_csv`` / ``klines_csv`` — Binance's public USD-M data dumps,
  with or without a header row, as ``.csv``, ``.gz`` or ``.zip``.

Only trade prints are taken from WebSocket files (``trade`` with ``X == "MARKET"`` and
``aggTrade``); book, depth and kline messages are counted as skipped. NDJSON has no trade
ids, so ids are synthesised as ``ts_ms * 1000 + n`` (``n`` counts prints in the same
millisecond within the file): importing a file again gives the same ids.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from storage.records import IdKind

AGG_COLUMNS = [
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
]
TRADE_COLUMNS = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]
KLINE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]

CHUNK_ROWS = 200_000

#: What a damaged .gz/.zip raises part-way through (truncated, bit flips, bad CRC).
_UNREADABLE = (UnicodeDecodeError, EOFError, OSError, zlib.error, zipfile.BadZipFile)


class FileFormatError(ValueError):
    """A file we cannot read, naming the file and the line."""

    def __init__(self, path: Path | str, line: int | None, reason: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True, slots=True)
class TickChunk:
    """Ticks of one symbol, as columns."""

    symbol: str
    id_kind: IdKind
    trade_id: np.ndarray
    ts_ms: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    is_buyer_maker: np.ndarray

    def __len__(self) -> int:
        return len(self.trade_id)


@dataclass(frozen=True, slots=True)
class KlineChunk:
    """1m klines of one symbol with Binance's column names."""

    symbol: str
    rows: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(slots=True)
class ReadStats:
    """What a reader saw, for progress and the summary line."""

    fmt: str = ""
    lines: int = 0
    rows: int = 0
    skipped: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    skipped_kinds: dict[str, int] = field(default_factory=dict)


def _open_text(path: Path) -> io.TextIOBase:
    """Open plain, gzip or single-member zip files as text."""
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
        if path.suffix == ".zip":
            zf = zipfile.ZipFile(path)
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise FileFormatError(path, None, f"zip holds {len(names)} files; expected one")
            return io.TextIOWrapper(zf.open(names[0]), encoding="utf-8")
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError(path, None, "no such file") from None
    except IsADirectoryError:
        raise FileFormatError(path, None, "is a directory") from None
    except zipfile.BadZipFile as exc:
        raise FileFormatError(path, None, f"not a valid zip file ({exc})") from None
    except PermissionError:
        raise FileFormatError(path, None, "permission denied") from None


def symbol_from_filename(path: Path) -> str | None:
    """``BTCUSDT-aggTrades-2024-02-01.csv`` → ``BTCUSDT``; None unless the name follows
    Binance's ``SYMBOL-kind-date`` pattern (kind ``trades``, ``aggTrades`` or an interval)."""
    parts = path.name.split("-")
    if len(parts) < 3:
        return None
    head, kind = parts[0], parts[1]
    if not (head.isalnum() and head.isupper() and any(c.isalpha() for c in head)):
        return None
    if kind.lower() in ("trades", "aggtrades") or re.fullmatch(r"\d+[smhdwM]", kind):
        return head
    return None


def detect_format(path: Path) -> str:
    """Name the format of ``path`` from its first non-empty line."""
    with _open_text(path) as fh:
        try:
            for line in fh:
                s = line.strip()
                if s:
                    return _classify(path, s)
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
            raise FileFormatError(path, 1, f"not a text file ({exc})") from None
    raise FileFormatError(path, None, "file is empty")


def _classify(path: Path, s: str) -> str:
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            raise FileFormatError(path, 1, f"not valid JSON ({exc.msg})") from None
        if isinstance(obj, dict) and {"symbol", "ts", "price", "size"} <= obj.keys():
            return "ndjson"
        return "wsjson"
    if " <-> " in s:
        return "cryptofeed"
    head, _, rest = s.partition(" ")
    if head.isdigit() and rest.lstrip().startswith("{"):
        return "capture"
    cells = s.split(",")
    lowered = [c.strip().lower() for c in cells]
    if lowered[:1] == ["agg_trade_id"] or (len(cells) == 7 and _numeric(cells[0])):
        return "aggtrades_csv"
    if lowered[:1] == ["id"] or (len(cells) == 6 and _numeric(cells[0])):
        return "trades_csv"
    if lowered[:1] == ["open_time"] or (len(cells) == 12 and _numeric(cells[0])):
        return "klines_csv"
    raise FileFormatError(path, 1, f"unrecognised format: {s[:80]!r}")


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_file(
    path: str | os.PathLike[str], *, symbol: str | None = None, stats: ReadStats | None = None
) -> Iterator[TickChunk | KlineChunk]:
    """Yield the data of one file in chunks. ``symbol`` overrides the file name (CSV dumps)."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    stats.fmt = detect_format(path)
    stats.bytes_total = path.stat().st_size
    if stats.fmt.endswith("_csv"):
        sym = (symbol or symbol_from_filename(path) or "").upper()
        if not sym:
            raise FileFormatError(
                path,
                None,
                "cannot tell the symbol from the file name "
                "(Binance names dumps SYMBOL-trades|aggTrades|1m-DATE.csv); "
                "pass --symbol",
            )
        yield from _read_csv(path, sym, stats)
    else:
        yield from _read_lines(path, stats, symbol.upper() if symbol else None)


# ---------------------------------------------------------------------------- JSON lines
def _read_lines(path: Path, stats: ReadStats, only_symbol: str | None) -> Iterator[TickChunk]:
    fmt = stats.fmt
    buffers: dict[tuple[str, IdKind], list[tuple[int, int, float, float, bool]]] = {}
    ndjson_seq: dict[tuple[str, int], int] = {}
    pending = 0
    with _open_text(path) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, 1):
                stats.lines = lineno
                stats.bytes_read += len(line)
                s = line.strip()
                if not s or (fmt == "cryptofeed" and lineno == 1):
                    continue
                payload = _strip_prefix(path, lineno, s, fmt)
                try:
                    obj = json.loads(payload)
                except json.JSONDecodeError as exc:
                    raise FileFormatError(path, lineno, f"not valid JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise FileFormatError(path, lineno, "expected a JSON object")
                rec = (
                    _ndjson_record(path, lineno, obj, ndjson_seq)
                    if fmt == "ndjson"
                    else _ws_record(path, lineno, obj, stats)
                )
                if rec is None:
                    continue
                sym, kind, row = rec
                if only_symbol is not None and sym != only_symbol:
                    stats.skipped += 1
                    continue
                buffers.setdefault((sym, kind), []).append(row)
                stats.rows += 1
                pending += 1
                if pending >= CHUNK_ROWS:
                    yield from _flush(buffers)
                    pending = 0
        except _UNREADABLE as exc:
            raise FileFormatError(path, lineno + 1, f"unreadable ({exc})") from None
    yield from _flush(buffers)


def _strip_prefix(path: Path, lineno: int, s: str, fmt: str) -> str:
    if fmt == "capture":
        head, _, rest = s.partition(" ")
        if not head.isdigit():
            raise FileFormatError(path, lineno, "expected '<receive_ns> <json>'")
        return rest
    if fmt == "cryptofeed":
        head, sep, rest = s.partition(": ")
        if not sep:
            raise FileFormatError(path, lineno, "expected '<unix_ts>: <json>'")
        return rest
    return s


def _ws_record(path: Path, lineno: int, obj: dict, stats: ReadStats):
    data = obj.get("data", obj) if "stream" in obj else obj
    if not isinstance(data, dict):
        raise FileFormatError(path, lineno, "'data' is not an object")
    event = data.get("e")
    if event not in ("trade", "aggTrade"):
        key = str(
            event if event is not None else ("snapshot" if "lastUpdateId" in data else "unknown")
        )
        stats.skipped_kinds[key] = stats.skipped_kinds.get(key, 0) + 1
        stats.skipped += 1
        return None
    try:
        if event == "trade" and data.get("X", "MARKET") != "MARKET":
            stats.skipped_kinds["trade:" + str(data.get("X"))] = (
                stats.skipped_kinds.get("trade:" + str(data.get("X")), 0) + 1
            )
            stats.skipped += 1
            return None
        kind = IdKind.TRADE if event == "trade" else IdKind.AGG
        tid = int(data["t"] if event == "trade" else data["a"])
        price, qty = float(data["p"]), float(data["q"])
        row = (tid, int(data["T"]), price, qty, bool(data["m"]))
        sym = str(data["s"]).upper()
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(path, lineno, f"bad {event} message: {exc!r}") from None
    _check_price_qty(path, lineno, price, qty)
    return sym, kind, row


def _ndjson_record(path: Path, lineno: int, obj: dict, seq: dict[tuple[str, int], int]):
    try:
        sym = str(obj["symbol"]).upper()
        ts = datetime.fromisoformat(str(obj["ts"]).replace("Z", "+00:00"))
        if ts.tzinfo is None:  # the collector wrote UTC; a bare time is read as UTC
            ts = ts.replace(tzinfo=UTC)
        ts_ms = round(ts.timestamp() * 1000)
        price, qty = float(obj["price"]), float(obj["size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(path, lineno, f"bad collector record: {exc!r}") from None
    _check_price_qty(path, lineno, price, qty)
    n = seq.get((sym, ts_ms), 0)
    if n >= 1000:
        raise FileFormatError(path, lineno, "more than 1000 prints in one millisecond")
    seq[(sym, ts_ms)] = n + 1
    # The collector did not record the aggressor side. Stored as buyer-is-maker, so these
    # prints add nothing to buy_volume: "no known taker buys" rather than "all taker buys".
    return sym, IdKind.SYNTHETIC, (ts_ms * 1000 + n, ts_ms, price, qty, True)


def _check_price_qty(path: Path, lineno: int, price: float, qty: float) -> None:
    if not (math.isfinite(price) and math.isfinite(qty) and price > 0 and qty > 0):
        raise FileFormatError(
            path, lineno, f"price {price} / quantity {qty} must be finite and positive"
        )


def _flush(buffers) -> Iterator[TickChunk]:
    for (sym, kind), rows in buffers.items():
        if not rows:
            continue
        ids, ts, px, q, m = zip(*rows, strict=True)
        yield TickChunk(
            sym,
            kind,
            np.asarray(ids, np.int64),
            np.asarray(ts, np.int64),
            np.asarray(px, np.float64),
            np.asarray(q, np.float64),
            np.asarray(m, np.bool_),
        )
        rows.clear()


# ---------------------------------------------------------------------------- CSV dumps
def _read_csv(path: Path, symbol: str, stats: ReadStats) -> Iterator[TickChunk | KlineChunk]:
    fmt = stats.fmt
    names = {
        "aggtrades_csv": AGG_COLUMNS,
        "trades_csv": TRADE_COLUMNS,
        "klines_csv": KLINE_COLUMNS,
    }[fmt]
    with _open_text(path) as fh:
        first = fh.readline()
        has_header = not _numeric(first.split(",")[0])
        # pandas skips the header itself, so the line numbers in its errors are the file's.
        fh = _Rewound(first, fh)
        try:
            reader = pd.read_csv(
                fh,
                header=None,
                names=names,
                chunksize=CHUNK_ROWS,
                skiprows=1 if has_header else 0,
                dtype=str,
                na_filter=False,
            )
            line0 = 2 if has_header else 1
            for chunk in reader:
                stats.lines += len(chunk)
                stats.rows += len(chunk)
                stats.bytes_read = min(stats.bytes_total, stats.bytes_read + len(chunk) * 60)
                yield _csv_chunk(path, symbol, fmt, chunk, line0)
                line0 += len(chunk)
        except pd.errors.ParserError as exc:
            reason = " ".join(str(exc).split())  # pandas ends it with a newline
            raise FileFormatError(path, None, f"malformed CSV ({reason})") from None
        except _UNREADABLE as exc:
            raise FileFormatError(path, None, f"unreadable ({exc})") from None


class _Rewound(io.TextIOBase):
    """A text stream that replays one already-read line before the rest."""

    def __init__(self, first: str, rest: io.TextIOBase):
        self._first, self._rest = first, rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> str:
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


def _numeric_column(path: Path, chunk: pd.DataFrame, col: str, line0: int, dtype) -> np.ndarray:
    values = pd.to_numeric(chunk[col], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FileFormatError(
            path, line0 + i, f"column {col} is not a number: {chunk[col].iloc[i]!r}"
        )
    return values.to_numpy(dtype)


def _bool_column(path: Path, chunk: pd.DataFrame, col: str, line0: int) -> np.ndarray:
    v = chunk[col].str.strip().str.lower()
    ok = v.isin(["true", "false", "1", "0"]).to_numpy()
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise FileFormatError(
            path, line0 + i, f"column {col} is not a boolean: {chunk[col].iloc[i]!r}"
        )
    return v.isin(["true", "1"]).to_numpy()


def _to_ms(t: np.ndarray) -> np.ndarray:
    """Some newer dumps use microseconds: anything past year 5138 in ms is taken as µs."""
    return np.where(t > 10**14, t // 1000, t)


def _csv_chunk(
    path: Path, symbol: str, fmt: str, chunk: pd.DataFrame, line0: int
) -> TickChunk | KlineChunk:
    if fmt == "klines_csv":
        rows = pd.DataFrame(
            {c: _numeric_column(path, chunk, c, line0, np.float64) for c in KLINE_COLUMNS[:-1]}
        )
        for c in ("open_time", "close_time", "count"):
            rows[c] = rows[c].astype(np.int64)
        rows["open_time"] = _to_ms(rows["open_time"].to_numpy())
        rows["close_time"] = _to_ms(rows["close_time"].to_numpy())
        return KlineChunk(symbol, rows)
    if fmt == "aggtrades_csv":
        id_col, t_col, q_col, kind = "agg_trade_id", "transact_time", "quantity", IdKind.AGG
    else:
        id_col, t_col, q_col, kind = "id", "time", "qty", IdKind.TRADE
    price = _numeric_column(path, chunk, "price", line0, np.float64)
    qty = _numeric_column(path, chunk, q_col, line0, np.float64)
    bad = ~(np.isfinite(price) & np.isfinite(qty) & (price > 0) & (qty > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FileFormatError(path, line0 + i, "price and quantity must be finite and positive")
    return TickChunk(
        symbol,
        kind,
        _numeric_column(path, chunk, id_col, line0, np.int64),
        _to_ms(_numeric_column(path, chunk, t_col, line0, np.int64)),
        price,
        qty,
        _bool_column(path, chunk, "is_buyer_maker", line0),
    )
