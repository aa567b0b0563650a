"""Funding: the three Binance payloads parsed at the edge, funding placed on bars, the
backtest's funding charge (known answers and invariants), and the ``funding_rates`` table on
both engines."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import backtest, funding_per_bar
from formats import (
    ParseError,
    parse_funding_rate,
    parse_funding_rates,
    parse_mark_price,
    parse_mark_price_message,
    parse_premium_index,
)
from storage import open_reader, open_writer
from storage.records import FundingRate, MarkPrice

# The payloads of Binance's documentation (no recording here carries funding data).
MARK_EVENT = {
    "e": "markPriceUpdate",
    "E": 1562305380000,
    "s": "BTCUSDT",
    "p": "11794.15000000",
    "i": "11784.62659091",
    "P": "11784.25641265",
    "r": "0.00038167",
    "T": 1562306400000,
}
PREMIUM = {
    "symbol": "BTCUSDT",
    "markPrice": "11793.63104562",
    "indexPrice": "11781.80495970",
    "estimatedSettlePrice": "11781.16138815",
    "lastFundingRate": "0.00038246",
    "interestRate": "0.00010000",
    "nextFundingTime": 1597392000000,
    "time": 1597370495002,
}
FUNDING_ROW = {
    "symbol": "BTCUSDT",
    "fundingRate": "-0.03750000",
    "fundingTime": 1570608000000,
    "markPrice": "34287.54619963",
}


# ---------------------------------------------------------------------------- formats
def test_mark_price_event_known_answer_raw_and_combined():
    want = MarkPrice("BTCUSDT", 11794.15, 11784.62659091, 0.00038167, 1562306400000, 1562305380000)
    assert parse_mark_price(MARK_EVENT) == want
    raw = json.dumps(MARK_EVENT)
    combined = json.dumps({"stream": "btcusdt@markPrice@1s", "data": MARK_EVENT})
    assert parse_mark_price_message(raw) == want
    assert parse_mark_price_message(combined.encode()) == want


def test_premium_index_and_funding_rate_known_answers():
    assert parse_premium_index(PREMIUM) == MarkPrice(
        "BTCUSDT", 11793.63104562, 11781.8049597, 0.00038246, 1597392000000, 1597370495002
    )
    assert parse_funding_rate(FUNDING_ROW) == FundingRate(
        "BTCUSDT", 1570608000000, -0.0375, 34287.54619963
    )
    old = FUNDING_ROW | {"markPrice": ""}  # old rows carry no mark price
    assert parse_funding_rate(old).mark is None
    assert parse_funding_rates([FUNDING_ROW, old], "btcusdt")[1].rate == -0.0375


def test_a_contract_without_funding_says_none():
    delivery = PREMIUM | {"symbol": "BTCUSDT_240927", "lastFundingRate": "", "nextFundingTime": 0}
    mark = parse_premium_index(delivery)
    assert mark.rate is None and mark.next_funding_ms is None and mark.mark == 11793.63104562


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"r": "1e-4"}, "bad_rate"),
        ({"r": "+0.0001"}, "bad_rate"),
        ({"r": " 0.0001"}, "bad_rate"),
        ({"r": 0.0001}, "bad_rate"),
        ({"r": "0.5"}, "bad_rate"),  # beyond any exchange cap
        ({"r": "NaN"}, "bad_rate"),
        ({"r": "٠.٠٠٠١"}, "bad_rate"),  # Arabic-Indic digits
        ({"p": "-11794.15"}, "bad_mark"),
        ({"p": "0"}, "bad_mark"),
        ({"T": "1562306400000"}, "bad_field"),
        ({"T": True}, "bad_field"),
        ({"E": 2**64}, "bad_field"),
        ({"s": "BTC USDT"}, "bad_field"),
        ({"e": "aggTrade"}, "unexpected_event"),
    ],
)
def test_bad_mark_price_events_are_refused_with_a_reason(change, reason):
    with pytest.raises(ParseError) as err:
        parse_mark_price(MARK_EVENT | change)
    assert err.value.reason == reason


@pytest.mark.parametrize("missing", ["s", "p", "r", "T", "E"])
def test_a_missing_field_is_named(missing):
    event = {k: v for k, v in MARK_EVENT.items() if k != missing}
    with pytest.raises(ParseError, match=f"no '{missing}'") as err:
        parse_mark_price(event)
    assert err.value.reason == "missing_field"


def test_hostile_funding_payloads_are_bounded():
    with pytest.raises(ParseError) as err:
        parse_mark_price_message("[" * 100_000 + "]" * 100_000)
    assert err.value.reason in ("too_deep", "too_large")
    with pytest.raises(ParseError) as err:
        parse_mark_price_message(b"\xff\xfe not utf-8")
    assert err.value.reason == "not_json"
    with pytest.raises(ParseError) as err:
        parse_funding_rates({"code": -1121, "msg": "Invalid symbol."}, "BTCUSDT")
    assert err.value.reason == "not_a_list"
    with pytest.raises(ParseError, match="ETHUSDT row") as err:
        parse_funding_rates([FUNDING_ROW | {"symbol": "ETHUSDT"}], "BTCUSDT")
    for bad in ({"fundingRate": ""}, {"fundingTime": -1}, {"markPrice": "1,000.0"}):
        with pytest.raises(ParseError):
            parse_funding_rate(FUNDING_ROW | bad)
    with pytest.raises(ParseError) as err:
        parse_premium_index([PREMIUM])
    assert err.value.reason == "not_an_object"


# ---------------------------------------------------------------------------- analytics
H = 3_600_000


def test_funding_lands_on_the_last_close_at_or_before_the_settlement():
    opens = np.arange(6) * H  # 1h bars; bar t closes at (t + 1) h
    times = [0, 1 * H, 2 * H + 1, 3 * H - 1, 6 * H, 9 * H]
    rates = [9.0, 0.1, 0.2, 0.3, 9.0, 9.0]
    out = funding_per_bar(opens, H, times, rates)
    # 0 is before the first close (1 h): dropped; 1 h → bar 0; 2 h + 1 ms → bar 1;
    # 3 h − 1 ms → bar 1 too (bar 2 closes at 3 h); 6 h is the last close: outside.
    np.testing.assert_allclose(out, [0.1, 0.5, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="strictly increasing"):
        funding_per_bar([0, 0], H, [], [])
    with pytest.raises(ValueError, match="2 funding times but 1 rates"):
        funding_per_bar(opens, H, [1, 2], [0.1])
    with pytest.raises(ValueError, match="bar_ms"):
        funding_per_bar(opens, 0, [], [])


def path(z):
    z = np.asarray(z, dtype=float)
    y = np.full(z.size, 10.0)
    return y + z, y, z, np.ones(z.size)


def test_backtest_charges_position_times_close_times_rate_longs_pay_positive_rates():
    # Short the spread: −1 x, +1 y, entered at bar 3's close, closed at bar 6's close.
    x, y, z, b = path([0, 1, 2.5, 3, 1, -0.5, -1, 0.5, 0])
    fx = np.zeros(9)
    fy = np.zeros(9)
    fx[2], fx[4], fx[6] = 0.5, 0.01, 0.5  # bar 2: before entry; bar 6: after the exit fill
    fy[3], fy[5] = 0.02, -0.03
    res = backtest(x, y, z, b, fee_rate=0.0, funding_x=fx, funding_y=fy)
    base = backtest(x, y, z, b, fee_rate=0.0)
    # Held after bar 3's fill: x short pays −(−1 × x4 × 0.01) = +x4·0.01 (a short receives);
    # y long pays 1 × y3 × 0.02 and receives on the negative rate at bar 5.
    want = 1 * x[4] * 0.01 - 1 * y[3] * 0.02 - 1 * y[5] * (-0.03)
    assert res.funding_pnl == pytest.approx(want)
    # Per leg: x's short receives x4·0.01; y's long pays y3·0.02 and receives y5·0.03.
    assert res.funding_pnl_x == pytest.approx(1 * x[4] * 0.01)
    assert res.funding_pnl_y == pytest.approx(-1 * y[3] * 0.02 - 1 * y[5] * (-0.03))
    (tr,) = res.trades
    assert tr.funding_pnl == pytest.approx(want)
    assert tr.pnl == pytest.approx(base.trades[0].pnl + want)
    assert res.total_pnl == pytest.approx(base.total_pnl + want)
    steps = [0, 0, 0, -0.2, -0.09, 0.21, 0.21, 0.21, 0.21]  # −0.2, then +0.11, then +0.3
    np.testing.assert_allclose(res.equity - base.equity, steps, atol=1e-12)


def _random_case(seed: int, n: int):
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.normal(0, 1.0, n))
    y = 100 + np.cumsum(rng.normal(0, 0.5, n))
    x = 1.5 * y + z
    beta = np.full(n, 1.5)
    fx = np.where(rng.random(n) < 0.2, rng.normal(0, 0.001, n), 0.0)
    fy = np.where(rng.random(n) < 0.2, rng.normal(0, 0.001, n), 0.0)
    return x, y, (z - z.mean()) / z.std(), beta, fx, fy


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 200))
def test_zero_rates_give_todays_result_exactly_and_flipped_rates_flip_funding(seed, n):
    x, y, z, beta, fx, fy = _random_case(seed, n)
    kw = {"entry_z": 1.0, "exit_z": 0.0, "stop_z": 3.0, "fee_rate": 0.0004}
    today = backtest(x, y, z, beta, **kw)
    zero = backtest(x, y, z, beta, funding_x=np.zeros(n), funding_y=np.zeros(n), **kw)
    np.testing.assert_array_equal(zero.equity, today.equity)
    assert zero.trades == today.trades and zero.funding_pnl == 0.0
    assert zero.total_pnl == today.total_pnl
    up = backtest(x, y, z, beta, funding_x=fx, funding_y=fy, **kw)
    down = backtest(x, y, z, beta, funding_x=-fx, funding_y=-fy, **kw)
    assert down.funding_pnl == -up.funding_pnl
    assert up.funding_pnl_x + up.funding_pnl_y == pytest.approx(up.funding_pnl, abs=1e-12)
    assert [t.funding_pnl for t in down.trades] == [-t.funding_pnl for t in up.trades]
    # Funding never changes the trades taken, only what they earn.
    assert [t.entry_bar for t in up.trades] == [t.entry_bar for t in today.trades]
    both = (up.equity - today.equity) + (down.equity - today.equity)
    np.testing.assert_allclose(both, 0, atol=1e-9)


def test_bad_funding_series_are_refused():
    x, y, z, b = path([0, 1, 2.5, 3])
    with pytest.raises(ValueError, match="funding_x has 2 bars"):
        backtest(x, y, z, b, funding_x=[0.0, 0.0])
    with pytest.raises(ValueError, match="funding_y has 1 non-finite"):
        backtest(x, y, z, b, funding_y=[0.0, np.nan, 0.0, 0.0])


# ---------------------------------------------------------------------------- storage
def test_funding_rates_table_round_trip_and_upsert_on_both_engines(database):
    db = database
    rows = [
        FundingRate("BTCUSDT", 1_000, 0.0001, 50_000.0),
        FundingRate("BTCUSDT", 2_000, -0.0002, None),
        FundingRate("ETHUSDT", 1_000, 0.0003, 3_000.0),
    ]
    with open_writer(db) as w:
        assert w.write_funding_rates(rows) == 3
        assert w.write_funding_rates([FundingRate("BTCUSDT", 2_000, 0.0005, 51_000.0)]) == 1
        with pytest.raises(ValueError, match="not a funding event"):
            w.write_funding_rates([FundingRate("BTCUSDT", 3_000, float("nan"))])
    with open_reader(db) as r:
        df = r.funding_rates("btcusdt")
        assert df["funding_time_ms"].tolist() == [1_000, 2_000]
        assert df["rate"].tolist() == [0.0001, 0.0005]
        assert df["mark"].tolist() == [50_000.0, 51_000.0]
        assert r.funding_rates("BTCUSDT", 1_500, 5_000)["rate"].tolist() == [0.0005]
        assert r.funding_rates("SOLUSDT").empty


def test_funding_now_keeps_the_newest_reading_per_symbol_on_both_engines(database):
    db = database
    old = MarkPrice("BTCUSDT", 60_000.0, 59_990.0, 0.0001, 28_800_000, 1_000)
    new = MarkPrice("BTCUSDT", 61_000.0, None, -0.0002, 28_800_000, 2_000)
    eth = MarkPrice("ETHUSDT", 3_000.0, 3_001.0, None, None, 1_500)  # no funding on it
    with open_writer(db) as w:
        assert w.write_funding_now([old, eth], checked_ms=5_000) == 2
        assert w.write_funding_now([new], checked_ms=6_000) == 1
        assert w.write_funding_now([old], checked_ms=7_000) == 0  # older: ignored
        with pytest.raises(ValueError, match="not a funding reading"):
            w.write_funding_now([replace(new, mark=float("inf"))], checked_ms=1)
    with open_reader(db) as r:
        df = r.funding_now(["btcusdt", "ETHUSDT", "NOPEUSDT"])
        assert r.funding_now(["ETHUSDT"])["symbol"].tolist() == ["ETHUSDT"]
    got = [tuple(None if pd.isna(v) else v for v in row) for row in df.itertuples(index=False)]
    assert got == [
        ("BTCUSDT", 61_000.0, None, -0.0002, 28_800_000, 2_000, 6_000),
        ("ETHUSDT", 3_000.0, 3_001.0, None, None, 1_500, 5_000),
    ]
