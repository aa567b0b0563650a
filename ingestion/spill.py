"""Ticks the writer could not store before stop, kept in a side file the next start stores.

When the database refuses every commit (a full disk, a quota, a broken server) and the
collector is asked to stop, the queued ticks would be lost. ``TickWriter.stop`` hands them
to ``write_spill``, which appends them to a side file as raw Binance WebSocket payloads,
one per line (``{"e":"aggTrade",...}``: the ``wsjson`` format that ``storage import``
also reads). ``FeedService.start`` calls ``restore_spill`` before its feeds start: the
ticks are parsed by the live parser, written, and the file is removed once they are
committed. The side file lives next to a SQLite database (``<db>.unstored.jsonl``); for
PostgreSQL it is ``unstored-<hash of the URL>.jsonl`` in the working directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from formats.wire import ParseError, StreamKind, parse_message
from storage.records import IdKind, Tick

__all__ = ["restore_spill", "spill_path", "write_spill"]

log = logging.getLogger(__name__)


def spill_path(storage_path: object) -> Path:
    """Where the ticks not stored in the database at ``storage_path`` are kept: next to a
    database file, or in the working directory for a server URL."""
    if isinstance(storage_path, os.PathLike) or "://" not in str(storage_path):
        path = Path(os.fspath(storage_path))  # type: ignore[arg-type]
        return path.with_name(path.name + ".unstored.jsonl")
    digest = hashlib.sha256(str(storage_path).encode()).hexdigest()[:12]
    return Path.cwd() / f"unstored-{digest}.jsonl"


def _decimal(value: float) -> str:
    """Binance's plain decimal string (``"0.00001"``, never ``"1e-05"``)."""
    return format(Decimal(repr(value)), "f")


def _payload(t: Tick) -> dict[str, Any]:
    common = {"E": t.ts_ms, "T": t.ts_ms, "s": t.symbol, "m": bool(t.is_buyer_maker)}
    price, qty = _decimal(t.price), _decimal(t.qty)
    if t.id_kind is IdKind.AGG:
        return (
            {"e": "aggTrade", "a": t.trade_id, "p": price, "q": qty}
            | common
            | {
                "f": t.trade_id,
                "l": t.trade_id,
            }
        )
    return {"e": "trade", "t": t.trade_id, "p": price, "q": qty, "X": "MARKET"} | common


def write_spill(path: Path, ticks: Sequence[Tick]) -> str:
    """Append ``ticks`` to ``path`` (flushed and fsynced); returns a description for the log."""
    lines = "".join(json.dumps(_payload(t), separators=(",", ":")) + "\n" for t in ticks)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())
    return f"{path} ({len(ticks)} ticks)"


def restore_spill(path: Path, storage: Any) -> int:
    """Store the ticks of the side file ``path`` (if any) and remove it; returns how many.

    Raises the storage's error if the database still cannot take them: the file stays.
    """
    if not path.is_file():
        return 0
    ticks: list[Tick] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            kind = StreamKind.AGG_TRADE if '"e":"aggTrade"' in line else StreamKind.TRADE
            try:
                ticks.append(parse_message(line, kind))
            except (ParseError, RecursionError):
                bad += 1  # a line torn by the crash that stopped the write: skip it
    for start in range(0, len(ticks), 5000):
        storage.write_ticks(ticks[start : start + 5000])
    path.unlink()
    log.warning(
        "stored %d ticks an earlier run could not store, from %s%s",
        len(ticks),
        path,
        f" ({bad} unreadable lines skipped)" if bad else "",
    )
    return len(ticks)
