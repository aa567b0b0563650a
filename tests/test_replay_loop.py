"""A looped replay must not invent a spread: each pass continues from the last prices.

The bundled 5-minute recording replayed in a loop used to join its end to its start, so prices
jumped back at every join (a sawtooth spread, β swinging 8→38). Served by the real replay server
on port 0 and read over its real WebSocket and REST endpoints.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import pytest
from websocket import create_connection

from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording


@pytest.fixture(scope="module")
def sample():
    return load_recording([SAMPLE_RECORDING])


def _stream_prices(server: FakeBinance, symbol: str, count: int) -> list[Decimal]:
    ws = create_connection(f"{server.ws_base}/market/ws/{symbol.lower()}@aggTrade", timeout=10)
    try:
        return [Decimal(json.loads(ws.recv())["p"]) for _ in range(count)]
    finally:
        ws.close()


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_loop_join_adds_no_price_jump(sample, symbol):
    cols = sample.symbols[symbol].aggs
    size = len(cols)
    recorded = [Decimal(p) for p in cols.price]
    tick = min(
        Decimal(1).scaleb(Decimal(p).as_tuple().exponent) for p in cols.price[:100]
    )  # the recording's price step
    with FakeBinance(sample, speed=0, loop=True) as server:
        served = _stream_prices(server, symbol, 3 * size)
    assert served[:size] == recorded  # the first pass is the recording itself
    for k in (1, 2):
        joint = abs(served[k * size] - served[k * size - 1])
        # The first print of a pass continues from the last of the previous pass.
        assert joint <= abs(recorded[1] - recorded[0]) + tick, (k, joint)
        ratio = served[k * size] / recorded[0]
        for i in range(0, size, max(1, size // 50)):
            # Within a pass the recorded returns are kept (prices scaled, rounded to a tick).
            assert abs(served[k * size + i] - recorded[i] * ratio) <= tick, (k, i)


def test_loop_rest_history_continues_across_the_join(sample):
    """REST ``aggTrades`` by id (what a backfill reads) continues across the join too."""
    cols = sample.symbols["BTCUSDT"].aggs
    size = len(cols)
    recorded = [Decimal(p) for p in cols.price]
    with FakeBinance(sample, speed=0, loop=True, id_offset=0) as server:
        last_of_pass0 = cols.ids[-1]
        url = f"{server.rest_base}/fapi/v1/aggTrades?symbol=BTCUSDT&fromId={last_of_pass0}&limit=3"
        with urllib.request.urlopen(url, timeout=10) as r:
            rows = json.loads(r.read())
    assert [row["a"] for row in rows] == [last_of_pass0 + i for i in range(3)]
    before, after = Decimal(rows[0]["p"]), Decimal(rows[1]["p"])
    assert before == recorded[-1]
    assert abs(after - before) <= abs(recorded[1] - recorded[0]) + Decimal("0.1"), (before, after)
    assert size > 3
