"""Import-then-replay: every trade format yields the same ticks through both paths.

Each file (built from real recorded prints by ``test_storage_cli``'s builders) is imported
with ``python -m storage import`` into SQLite, and loaded by the replay server, which then
streams it over a real local WebSocket to the live client's parser
(``formats.parse_message``). The ticks must agree on id, time, price, quantity and side.

Collector NDJSON carries no ids: import stores the synthetic ids ``ts_ms * 1000 + n`` and the
replay, which must count ids up by one like Binance, serves the same prints in the same order
as ids 1, 2, 3 ... (``replay/recording.py``); there the ids agree by rank.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from websocket import create_connection

from formats import StreamKind, parse_message
from replay import FakeBinance, load_recording
from storage import open_reader
from storage.__main__ import main as storage_main
from tests.test_storage_cli import FORMATS, TICK_COLUMNS, iso, write

TRADE_FORMATS = list(FORMATS)  # every builder there makes a trade-bearing file


def replayed_ticks(server: FakeBinance, symbol: str, kind: str, count: int) -> pd.DataFrame:
    """The first ``count`` prints the replay server streams for ``symbol``, parsed as the
    live client parses them."""
    stream = StreamKind.AGG_TRADE if kind == "agg" else StreamKind.TRADE
    route = "market" if stream is StreamKind.AGG_TRADE else "public"
    ws = create_connection(f"{server.ws_base}/{route}/ws/{symbol.lower()}@{stream}", timeout=10)
    try:
        ticks = [parse_message(ws.recv(), stream) for _ in range(count)]
    finally:
        ws.close()
    return pd.DataFrame(
        [(t.trade_id, t.ts_ms, t.price, t.qty, t.is_buyer_maker) for t in ticks],
        columns=TICK_COLUMNS,
    )


@pytest.mark.parametrize("name", TRADE_FORMATS)
def test_import_and_replay_of_each_format_yield_the_same_ticks(
    name, tmp_path, storage_hft_trades, storage_real_dir, capsys
):
    files, expected = FORMATS[name][0](tmp_path, storage_hft_trades, storage_real_dir)
    db = tmp_path / "imported.db"
    assert storage_main(["import", *map(str, files), "--db", str(db)]) == 0
    capsys.readouterr()
    recording = load_recording(files)
    assert sorted(recording.symbols) == sorted(expected)
    with FakeBinance(recording, speed=0, rebase_time=False, ping_interval_s=None) as server:
        for symbol, (kind, _) in expected.items():
            with open_reader(db) as r:
                imported = r.ticks(symbol)[TICK_COLUMNS]
            imported = imported.sort_values(["ts_ms", "trade_id"]).reset_index(drop=True)
            served = replayed_ticks(server, symbol, kind, len(imported))
            if kind == "synthetic":
                assert served["trade_id"].tolist() == list(range(1, len(imported) + 1))
                served = served.assign(trade_id=imported["trade_id"].to_numpy())
            pd.testing.assert_frame_equal(served, imported, check_dtype=False)


def test_collector_ndjson_side_and_zone_agree_by_construction(tmp_path, capsys):
    """The two disagreements of issue 10: buyer-is-maker and a time without a zone."""
    ts = 1723161256322
    lines = [
        json.dumps({"symbol": "BTCUSDT", "ts": iso(ts + i, i), "price": 61800.3 + i, "size": 0.5})
        for i in range(3)  # zone styles: "Z", "+00:00" and none (UTC)
    ]
    path = write(tmp_path / "collector.ndjson", lines)
    db = tmp_path / "c.db"
    assert storage_main(["import", str(path), "--db", str(db)]) == 0
    capsys.readouterr()
    with open_reader(db) as r:
        stored = r.ticks("BTCUSDT")
    trades = load_recording([path]).symbols["BTCUSDT"].trades
    assert trades is not None
    assert trades.ts_ms == stored["ts_ms"].tolist() == [ts, ts + 1, ts + 2]
    assert trades.buyer_maker == stored["is_buyer_maker"].tolist() == [True, True, True]
    np.testing.assert_array_equal([float(p) for p in trades.price], stored["price"])


def test_every_real_recording_loads_for_replay_as_it_imports(storage_real_dir: Path, tmp_path):
    """The real shared files: the replay loader and import count the same prints."""
    for rel in (
        "binance_usdm_ws_cryptofeed/BINANCE_FUTURES.ws.1.0",
        "binance_usdm_ws_hftbacktest/ethusdt_20240808.gz",
    ):
        rec = load_recording([storage_real_dir / rel])
        db = tmp_path / (Path(rel).name + ".db")
        assert storage_main(["import", str(storage_real_dir / rel), "--db", str(db)]) == 0
        with open_reader(db) as r:
            for symbol, srec in rec.symbols.items():
                cols = srec.trades if srec.trades is not None else srec.aggs
                assert len(r.ticks(symbol)) == len(cols), (rel, symbol)
