"""Parsers against real Binance USD-M messages (../shared/data/real and the bundled sample)."""

from __future__ import annotations

import gzip
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import SAMPLE_RECORDING
from formats.wire import (
    ParseError,
    StreamKind,
    parse_agg_trade,
    parse_message,
    parse_rest_agg_trade,
    parse_rest_kline,
    parse_rest_trade,
    parse_trade,
    unwrap,
)
from replay.faults import GARBAGE_FRAMES
from storage.records import IdKind, Tick
from tests.conftest import STORAGE_REAL_DIR

REAL = STORAGE_REAL_DIR
CRYPTOFEED = REAL / "binance_usdm_ws_cryptofeed" / "BINANCE_FUTURES.ws.1.0"
KLINES_CSV = REAL / "binance_usdm_klines_1m" / "ALGOUSDT-1m-2024-02.csv"

#: The payload shown in ``parse_agg_trade``'s docstring: a real line of the cryptofeed capture.
DOC_AGG_LINE = (
    '{"stream":"ctkusdt@aggTrade","data":{"e":"aggTrade","E":1626992741575,"a":16599292,'
    '"s":"CTKUSDT","p":"1.01100","q":"10","f":23961322,"l":23961322,"T":1626992741421,"m":false}}'
)
#: The payload shown in ``parse_trade``'s docstring: a real line of the hftbacktest capture.
DOC_TRADE_LINE = (
    '{"stream":"ethusdt@trade","data":{"e":"trade","E":1723161256560,"T":1723161256560,'
    '"s":"ETHUSDT","t":4308068523,"p":"2681.62","q":"1.000","X":"MARKET","m":true}}'
)


def _sample_trade_lines() -> list[str]:
    with gzip.open(SAMPLE_RECORDING, "rt", encoding="utf-8") as fh:
        return [line.rstrip("\n").split(" ", 1)[1] for line in fh]


def _cryptofeed_agg_lines() -> list[str]:
    if not CRYPTOFEED.is_file():
        pytest.skip(f"shared real data missing: {CRYPTOFEED}")
    out = []
    with CRYPTOFEED.open(encoding="utf-8") as fh:
        for line in fh:
            _, sep, payload = line.partition(": ")
            if sep and '"e":"aggTrade"' in payload:
                out.append(payload.strip())
    return out


def test_docstring_payloads_are_real_lines():
    assert DOC_AGG_LINE in CRYPTOFEED.read_text(encoding="utf-8")
    assert DOC_TRADE_LINE in _sample_trade_lines()
    for fn, line in ((parse_agg_trade, DOC_AGG_LINE), (parse_trade, DOC_TRADE_LINE)):
        data = json.loads(line)["data"]
        for key, value in data.items():
            shown = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
            assert f'"{key}": {shown}' in fn.__doc__, (fn.__name__, key)


def test_every_real_trade_message_parses_to_its_fields():
    lines = _sample_trade_lines()
    assert len(lines) == 21_313 + 14_076
    by_symbol: dict[str, list[int]] = {}
    for line in lines:
        tick = parse_message(line, StreamKind.TRADE)
        data = json.loads(line)["data"]
        assert tick == Tick(
            data["s"],
            data["t"],
            data["T"],
            float(data["p"]),
            float(data["q"]),
            data["m"],
            IdKind.TRADE,
        )
        by_symbol.setdefault(tick.symbol, []).append(tick.trade_id)
    # README: no gaps in either file's trade ids.
    for ids in by_symbol.values():
        assert sorted(ids) == list(range(min(ids), max(ids) + 1))


def test_every_real_agg_trade_message_parses_raw_and_combined():
    lines = _cryptofeed_agg_lines()
    assert len(lines) == 91
    for line in lines:
        wrapped = json.loads(line)
        data = wrapped["data"]
        expected = Tick(
            data["s"],
            data["a"],
            data["T"],
            float(data["p"]),
            float(data["q"]),
            data["m"],
            IdKind.AGG,
        )
        assert parse_message(line) == expected  # combined: {"stream", "data"}
        assert parse_message(json.dumps(data)) == expected  # raw payload
        assert parse_message(line.encode()) == expected  # bytes straight off the socket


def test_doc_example_fields():
    tick = parse_message(DOC_AGG_LINE)
    assert (tick.symbol, tick.trade_id, tick.ts_ms) == ("CTKUSDT", 16599292, 1626992741421)
    assert (tick.price, tick.qty, tick.is_buyer_maker) == (1.011, 10.0, False)


@pytest.mark.parametrize("frame", GARBAGE_FRAMES)
def test_garbage_frames_are_rejected_for_both_streams(frame):
    for kind in StreamKind:
        with pytest.raises(ParseError) as info:
            parse_message(frame, kind)
        assert info.value.reason


def _agg(**changes):
    data = json.loads(DOC_AGG_LINE)["data"]
    data.update(changes)
    return data


def _trade(**changes):
    data = json.loads(DOC_TRADE_LINE)["data"]
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_agg(p="NaN"), "bad_price"),
        (_agg(p="inf"), "bad_price"),
        (_agg(p="0"), "bad_price"),
        (_agg(p="-1.5"), "bad_price"),
        (_agg(p=1.5), "bad_price"),  # a number, not Binance's decimal string
        (_agg(q="0.000"), "bad_qty"),
        (_agg(q="abc"), "bad_qty"),
        (_agg(a=True), "bad_field"),
        (_agg(a="16599292"), "bad_field"),
        (_agg(m="false"), "bad_field"),
        (_agg(s=""), "bad_field"),
        (_agg(e="kline"), "unexpected_event"),
        ({k: v for k, v in _agg().items() if k != "T"}, "missing_field"),
        ({k: v for k, v in _agg().items() if k != "a"}, "missing_field"),
    ],
)
def test_invalid_agg_trades_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ParseError) as info:
        parse_agg_trade(data)
    assert info.value.reason == reason
    with pytest.raises(ParseError):
        parse_message(json.dumps({"stream": "ctkusdt@aggTrade", "data": data}))


@pytest.mark.parametrize("x", ["INSURANCE_FUND", "ADL", "NA", "market", None])
def test_trade_prints_that_are_not_market_are_rejected(x):
    with pytest.raises(ParseError) as info:
        parse_trade(_trade(X=x))
    assert info.value.reason == "not_market"


def test_na_print_with_zero_price_is_rejected_even_if_marked_market():
    with pytest.raises(ParseError) as info:
        parse_trade(_trade(p="0", q="0"))
    assert info.value.reason == "bad_price"


def test_stream_kinds_are_not_mixed():
    with pytest.raises(ParseError):
        parse_message(DOC_TRADE_LINE, StreamKind.AGG_TRADE)
    with pytest.raises(ParseError):
        parse_message(DOC_AGG_LINE, StreamKind.TRADE)
    assert StreamKind.AGG_TRADE.id_kind is IdKind.AGG
    assert StreamKind.TRADE.id_kind is IdKind.TRADE


def test_unwrap_only_unwraps_combined_messages():
    assert unwrap({"stream": "x", "data": {"e": 1}}) == {"e": 1}
    assert unwrap({"data": 1}) == {"data": 1}
    assert unwrap([1]) == [1]


def test_rest_rows():
    # The documented example row of GET /fapi/v1/aggTrades.
    row = {
        "a": 26129,
        "p": "0.01633102",
        "q": "4.70443515",
        "f": 27781,
        "l": 27781,
        "T": 1498793709153,
        "m": True,
    }
    tick = parse_rest_agg_trade(row, "btcusdt")
    assert tick == Tick("BTCUSDT", 26129, 1498793709153, 0.01633102, 4.70443515, True)
    trade = {
        "id": 28457,
        "price": "4.00000100",
        "qty": "12.00000000",
        "quoteQty": "48.00",
        "time": 1499865549590,
        "isBuyerMaker": True,
    }
    assert parse_rest_trade(trade, "BTCUSDT") == Tick(
        "BTCUSDT", 28457, 1499865549590, 4.000001, 12.0, True, IdKind.TRADE
    )
    with pytest.raises(ParseError):
        parse_rest_agg_trade({**row, "p": "0"}, "BTCUSDT")
    with pytest.raises(ParseError):
        parse_rest_trade({**trade, "id": None}, "BTCUSDT")


def test_kline_rows_from_real_dump():
    if not KLINES_CSV.is_file():
        pytest.skip(f"shared real data missing: {KLINES_CSV}")
    header, first = KLINES_CSV.read_text(encoding="utf-8").splitlines()[:2]
    values = first.split(",")
    row = [int(values[0]), *values[1:6], int(values[6]), values[7], int(values[8]), *values[9:]]
    parsed = parse_rest_kline(row)
    assert parsed["open_time"] == 1706745600000 and parsed["close_time"] == 1706745659999
    assert parsed["count"] == 311 and math.isclose(parsed["volume"], 506355.0)
    assert list(parsed) == header.split(",")[:11]
    with pytest.raises(ParseError):
        parse_rest_kline(row[:5])
    with pytest.raises(ParseError):
        parse_rest_kline([*row[:4], "nan", *row[5:]])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_parse_or_raise_parse_error(payload):
    for kind in StreamKind:
        try:
            tick = parse_message(payload, kind)
        except ParseError:
            continue
        assert tick.price > 0 and tick.qty > 0  # whatever parses is a valid print


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(0, 2**62),
    t=st.integers(0, 2**45),
    p=st.decimals(min_value="0.00000001", max_value="1e7", places=8, allow_nan=False),
    q=st.decimals(min_value="0.001", max_value="1e6", places=3, allow_nan=False),
    m=st.booleans(),
    wrapped=st.booleans(),
)
def test_valid_agg_trades_round_trip(a, t, p, q, m, wrapped):
    # Binance writes plain decimals ("0.00000001"), never str(Decimal)'s "1E-8".
    data = _agg(a=a, T=t, p=f"{p:f}", q=f"{q:f}", m=m)
    text = json.dumps({"stream": "ctkusdt@aggTrade", "data": data} if wrapped else data)
    tick = parse_message(text)
    assert (tick.trade_id, tick.ts_ms, tick.is_buyer_maker) == (a, t, m)
    assert tick.price == float(str(p)) and tick.qty == float(str(q))
