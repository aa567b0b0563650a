"""Bars kept by storage: known answers, an independent pandas oracle on real captures, invariants.

The oracle (:func:`oracle_bars`) recomputes bars from raw ticks with ``pandas.resample`` and
shares no code with ``storage/bars.py``. Prices, highs, lows, opens, closes and trade counts
must match exactly; sums of floats (volume, vwap, buy_volume) within ``SUM_RTOL``, because
storage adds partial bars in batch order and pandas adds in its own order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import (
    BAR_COLUMNS,
    IdKind,
    IdKindConflictError,
    Reader,
    Tick,
    UnknownSymbolError,
    open_reader,
    open_writer,
)
from tests.conftest import real_ticks

#: Relative tolerance for float sums added in a different order (a few ulps per addition).
SUM_RTOL = 1e-9
TF_MS = {"1s": 1_000, "1m": 60_000, "5m": 300_000}
EXACT = ["open_time_ms", "open", "high", "low", "close", "trades"]
SUMS = ["volume", "vwap", "buy_volume"]


# ---------------------------------------------------------------------------- helpers
def tick(
    tid: int,
    ts_ms: int,
    price: float,
    qty: float = 1.0,
    buyer_maker: bool = False,
    symbol: str = "BTCUSDT",
    kind: IdKind = IdKind.TRADE,
) -> Tick:
    return Tick(symbol, tid, ts_ms, price, qty, buyer_maker, kind)


def frame(ticks: list[Tick]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trade_id": [t.trade_id for t in ticks],
            "ts_ms": [t.ts_ms for t in ticks],
            "price": [t.price for t in ticks],
            "qty": [t.qty for t in ticks],
            "is_buyer_maker": [t.is_buyer_maker for t in ticks],
        }
    )


def oracle_bars(ticks: pd.DataFrame, tf: str) -> pd.DataFrame:
    """Bars of ``tf`` from raw ticks with pandas alone: the independent reference.

    UTC-aligned left-closed, left-labelled intervals (``resample`` with ``origin="epoch"``);
    open/close by (time, id); empty intervals dropped; taker-buy = not buyer-maker.
    """
    d = ticks.drop_duplicates("trade_id").sort_values(["ts_ms", "trade_id"])
    d = d.assign(
        quote=d["price"] * d["qty"],
        buy=d["qty"].where(~d["is_buyer_maker"].astype(bool), 0.0),
        t=pd.to_datetime(d["ts_ms"], unit="ms", utc=True),
    ).set_index("t")
    r = d.resample(
        pd.Timedelta(milliseconds=TF_MS[tf]), closed="left", label="left", origin="epoch"
    )
    out = pd.DataFrame(
        {
            "open": r["price"].first(),
            "high": r["price"].max(),
            "low": r["price"].min(),
            "close": r["price"].last(),
            "volume": r["qty"].sum(),
            "trades": r["price"].count(),
            "quote": r["quote"].sum(),
            "buy_volume": r["buy"].sum(),
        }
    )
    out = out[out["trades"] > 0]
    out.insert(0, "open_time_ms", (out.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1ms"))
    out["vwap"] = out["quote"] / out["volume"]
    return out[BAR_COLUMNS].reset_index(drop=True).astype({"trades": "int64"})


def assert_bars_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == BAR_COLUMNS
    assert len(actual) == len(expected), (len(actual), len(expected))
    for col in EXACT:
        np.testing.assert_array_equal(actual[col].to_numpy(), expected[col].to_numpy(), err_msg=col)
    for col in SUMS:
        np.testing.assert_allclose(
            actual[col].to_numpy(), expected[col].to_numpy(), rtol=SUM_RTOL, atol=1e-12, err_msg=col
        )


def bar(reader: Reader, tf: str, open_time_ms: int, symbol: str = "BTCUSDT") -> dict:
    df = reader.bars(symbol, tf, open_time_ms, open_time_ms)
    assert len(df) == 1, f"expected one {tf} bar at {open_time_ms}, got {len(df)}"
    return df.iloc[0].to_dict()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bars.db"


# ---------------------------------------------------------------------------- known answers
def test_ticks_on_minute_and_five_minute_boundaries(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks(
            [
                tick(1, 59_999, 100.0, 1.0, buyer_maker=False),
                tick(2, 60_000, 101.0, 2.0, buyer_maker=True),
                tick(3, 299_999, 102.0, 3.0, buyer_maker=False),
                tick(4, 300_000, 103.0, 4.0, buyer_maker=True),
            ]
        )
    with open_reader(db) as r:
        one_m = r.bars("BTCUSDT", "1m")
        assert one_m["open_time_ms"].tolist() == [0, 60_000, 240_000, 300_000]
        assert one_m["close"].tolist() == [100.0, 101.0, 102.0, 103.0]
        assert r.bars("BTCUSDT", "1s")["open_time_ms"].tolist() == [
            59_000,
            60_000,
            299_000,
            300_000,
        ]
        five = r.bars("BTCUSDT", "5m")
        assert five["open_time_ms"].tolist() == [0, 300_000]
        first = five.iloc[0]
        assert (first.open, first.high, first.low, first.close) == (100.0, 102.0, 100.0, 102.0)
        assert first.trades == 3 and first.volume == pytest.approx(6.0)
        assert first.vwap == pytest.approx((100 * 1 + 101 * 2 + 102 * 3) / 6)
        # Taker-buy volume counts the trades whose buyer was NOT the maker (ids 1 and 3).
        assert first.buy_volume == pytest.approx(4.0)
        assert five.iloc[1].buy_volume == 0.0


def test_trades_in_one_millisecond_are_ordered_by_id_not_arrival(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(7, 1_000, 3.0), tick(5, 1_000, 1.0), tick(6, 1_000, 2.0)])
        with open_reader(db) as r:
            for tf in ("1s", "1m", "5m"):
                b = bar(r, tf, 0 if tf != "1s" else 1_000)
                assert (b["open"], b["close"], b["high"], b["low"]) == (1.0, 3.0, 3.0, 1.0), tf
            # Order is (time, id): an earlier time wins over a lower id, and vice versa.
            w.write_ticks([tick(8, 999, 9.0)])
            assert bar(r, "1m", 0)["open"] == 9.0
            assert bar(r, "1m", 0)["close"] == 3.0
            w.write_ticks([tick(4, 1_001, 7.0)])
            assert bar(r, "1m", 0)["close"] == 7.0
            assert bar(r, "5m", 0)["close"] == 7.0
            assert bar(r, "1s", 1_000)["close"] == 7.0
            # The same within one batch (the batch is aggregated before it is merged).
            w.write_ticks([tick(21, 61_100, 5.0), tick(20, 61_900, 6.0)])
            b = bar(r, "1m", 60_000)
            assert (b["open"], b["close"]) == (5.0, 6.0)


def test_late_tick_updates_only_high_low_and_sums(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(10, 10_000, 100.0, 1.0)])
        w.write_ticks([tick(12, 40_000, 102.0, 1.0)])
        w.write_ticks([tick(11, 20_000, 150.0, 2.0, buyer_maker=True)])  # arrives last
    with open_reader(db) as r:
        for tf in ("1m", "5m"):
            b = bar(r, tf, 0)
            assert (b["open"], b["high"], b["low"], b["close"]) == (100.0, 150.0, 100.0, 102.0)
            assert b["trades"] == 3
            assert b["volume"] == pytest.approx(4.0)
            assert b["buy_volume"] == pytest.approx(2.0)
            assert b["vwap"] == pytest.approx((100 + 300 + 102) / 4)
        assert r.bars("BTCUSDT", "1s")["open_time_ms"].tolist() == [10_000, 20_000, 40_000]


def test_backfilled_earlier_id_changes_open_exactly(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(101, 1_000, 10.0), tick(102, 2_000, 11.0), tick(103, 3_000, 12.0)])
        with open_reader(db) as r:
            assert bar(r, "1m", 0)["open"] == 10.0
            w.write_ticks([tick(100, 1_000, 9.5)])  # same ms as 101, lower id: now first
            for tf, t, close in (("1s", 1_000, 10.0), ("1m", 0, 12.0), ("5m", 0, 12.0)):
                b = bar(r, tf, t)
                assert (b["open"], b["low"], b["close"]) == (9.5, 9.5, close), tf
            w.write_ticks([tick(99, 1_000, 9.25)])
            assert bar(r, "5m", 0)["open"] == 9.25
            assert r.bars("BTCUSDT", "1m")["trades"].tolist() == [5]


def test_duplicates_in_one_batch_and_across_batches_count_once(db: Path) -> None:
    a, b, c = tick(1, 1_000, 10.0, 1.0), tick(2, 2_000, 11.0, 2.0), tick(3, 3_000, 12.0, 4.0)
    with open_writer(db) as w:
        assert w.write_ticks([a, a, b, a]) == 2
        assert w.write_ticks([a, b]) == 0
        # Same id, different content: the stored tick wins (a trade id names one trade).
        assert w.write_ticks([tick(2, 2_500, 99.0, 50.0), c, c]) == 1
    with open_reader(db) as r:
        assert_bars_equal(r.bars("BTCUSDT", "1m"), oracle_bars(frame([a, b, c]), "1m"))
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [1, 2, 3]


def test_empty_intervals_store_no_bar_and_pair_frame_fills_and_flags(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(1, 5_000, 100.0, 1.0), tick(2, 125_000, 104.0, 1.0)])
        w.write_ticks(
            [
                tick(1, 10_000, 20.0, 3.0, symbol="ETHUSDT"),
                tick(2, 70_000, 21.0, 5.0, symbol="ETHUSDT"),
                tick(3, 130_000, 22.0, 7.0, symbol="ETHUSDT"),
            ]
        )
    with open_reader(db) as r:
        assert r.bars("BTCUSDT", "1m")["open_time_ms"].tolist() == [0, 120_000]
        pf = r.pair_frame("BTCUSDT", "ETHUSDT", "1m")
        assert pf["open_time_ms"].tolist() == [0, 60_000, 120_000]
        assert pf["x"].tolist() == [100.0, 100.0, 104.0]
        assert pf["x_filled"].tolist() == [False, True, False]
        assert pf["x_volume"].tolist() == [1.0, 0.0, 1.0]
        assert pf["x_trades"].tolist() == [1, 0, 1]
        assert pf["y"].tolist() == [20.0, 21.0, 22.0]
        assert not pf["y_filled"].any()


def test_pair_frame_starts_where_both_traded_and_honours_range_and_limit(db: Path) -> None:
    with open_writer(db) as w:
        # X trades every second 0..9 s except 4 s; Y starts at 3 s and trades at 3, 6, 11.
        w.write_ticks([tick(i, i * 1_000 + 1, 100.0 + i) for i in range(10) if i != 4])
        w.write_ticks([tick(i, i * 1_000 + 2, 50.0 + i, symbol="ETHUSDT") for i in (3, 6, 11)])
    with open_reader(db) as r:
        pf = r.pair_frame("btcusdt", "ethusdt", "1s")
        assert pf["open_time_ms"].tolist() == [t * 1_000 for t in range(3, 12)]
        assert pf["x"].tolist() == [103, 103, 105, 106, 107, 108, 109, 109, 109]
        assert pf["x_filled"].tolist() == [False, True] + [False] * 5 + [True, True]
        assert pf["y"].tolist() == [53, 53, 53, 56, 56, 56, 56, 56, 61]
        assert pf["y_filled"].tolist() == [False, True, True, False, True, True, True, True, False]
        assert list(pf.columns) == [
            "open_time_ms",
            "x",
            "y",
            "x_filled",
            "y_filled",
            "x_volume",
            "y_volume",
            "x_trades",
            "y_trades",
        ]
        # A window that starts inside a gap still carries the previous close in, flagged.
        win = r.pair_frame("BTCUSDT", "ETHUSDT", "1s", start_ms=4_500, end_ms=8_999)
        assert win["open_time_ms"].tolist() == [5_000, 6_000, 7_000, 8_000]
        assert win["y"].tolist() == [53, 56, 56, 56]
        assert win["y_filled"].tolist() == [True, False, True, True]
        last3 = r.pair_frame("BTCUSDT", "ETHUSDT", "1s", limit=3)
        assert last3["open_time_ms"].tolist() == [9_000, 10_000, 11_000]
        assert r.pair_frame("BTCUSDT", "ETHUSDT", "1s", start_ms=20_000).empty


def test_bars_range_is_inclusive_and_limit_takes_the_last(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(i, i * 1_000, 10.0 + i) for i in range(10)])
    with open_reader(db) as r:
        assert r.bars("BTCUSDT", "1s", 2_000, 5_000)["open_time_ms"].tolist() == [
            2_000,
            3_000,
            4_000,
            5_000,
        ]
        assert r.bars("BTCUSDT", "1s", 2_001, 4_999)["open_time_ms"].tolist() == [3_000, 4_000]
        assert r.bars("BTCUSDT", "1s", limit=3)["close"].tolist() == [17.0, 18.0, 19.0]
        assert r.bars("BTCUSDT", "1s", end_ms=4_000, limit=2)["open_time_ms"].tolist() == [
            3_000,
            4_000,
        ]
        empty = r.bars("BTCUSDT", "1m", 60_000, 120_000)
        assert empty.empty and list(empty.columns) == BAR_COLUMNS


def test_bad_read_arguments_raise_clear_errors(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(1, 1_000, 10.0), tick(1, 1_000, 10.0, symbol="ETHUSDT")])
    with open_reader(db) as r:
        with pytest.raises(UnknownSymbolError, match=r"'DOGEUSDT'.*BTCUSDT, ETHUSDT"):
            r.bars("DOGEUSDT", "1m")
        with pytest.raises(UnknownSymbolError):
            r.pair_frame("BTCUSDT", "DOGEUSDT", "1m")
        with pytest.raises(ValueError, match=r"unknown timeframe '2m'.*1s, 1m, 5m"):
            r.bars("BTCUSDT", "2m")
        with pytest.raises(ValueError, match="unknown timeframe"):
            r.pair_frame("BTCUSDT", "ETHUSDT", "1h")
        with pytest.raises(ValueError, match="after end"):
            r.bars("BTCUSDT", "1m", start_ms=2_000, end_ms=1_000)
        with pytest.raises(ValueError, match="after end"):
            r.pair_frame("BTCUSDT", "ETHUSDT", "1m", start_ms=2_000, end_ms=1_000)
        with pytest.raises(ValueError, match="limit"):
            r.bars("BTCUSDT", "1m", limit=0)
        with pytest.raises(ValueError, match="must differ"):
            r.pair_frame("BTCUSDT", "btcusdt", "1m")


def test_invalid_ticks_are_refused_and_nothing_of_the_batch_is_stored(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(1, 1_000, 10.0)])
        for bad in (tick(3, 3_000, 0.0), tick(3, 3_000, float("nan")), tick(3, 3_000, 1.0, -1.0)):
            with pytest.raises(ValueError, match="finite and positive"):
                w.write_ticks([tick(2, 2_000, 11.0), bad])
    with open_reader(db) as r:
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [1]
        assert r.bars("BTCUSDT", "1m")["trades"].tolist() == [1]


def test_lower_case_symbols_are_stored_upper_case(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(1, 1_000, 10.0, symbol="btcusdt")])
        w.write_tick_arrays("btcusdt", "trade", [2], [2_000], [11.0], [1.0], [False])
    with open_reader(db) as r:
        assert r.symbols() == ["BTCUSDT"]
        assert r.bars("btcusdt", "1m")["trades"].tolist() == [2]


# ---------------------------------------------------------------------------- id kinds
def test_a_symbol_never_mixes_id_kinds(db: Path) -> None:
    with open_writer(db) as w:
        w.write_ticks([tick(1, 1_000, 10.0, kind=IdKind.TRADE)])
        with pytest.raises(IdKindConflictError, match="BTCUSDT holds trade ids"):
            w.write_ticks([tick(2, 2_000, 11.0, kind=IdKind.AGG)])
        # A mixed batch is refused whole: the good ETHUSDT ticks in it are not stored either.
        with pytest.raises(IdKindConflictError):
            w.write_ticks(
                [
                    tick(5, 5_000, 20.0, symbol="ETHUSDT", kind=IdKind.AGG),
                    tick(3, 3_000, 12.0, kind=IdKind.TRADE),
                    tick(4, 4_000, 13.0, kind=IdKind.AGG),
                ]
            )
        with pytest.raises(IdKindConflictError):
            w.write_tick_arrays("BTCUSDT", "synthetic", [9], [9_000], [1.0], [1.0], [False])
        # The writer is still usable, and a new symbol may take another kind.
        assert w.write_ticks([tick(5, 5_000, 20.0, symbol="ETHUSDT", kind=IdKind.AGG)]) == 1
    with open_reader(db) as r:
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [1]
        assert r.id_kind("BTCUSDT") == "trade" and r.id_kind("ETHUSDT") == "agg"
        assert r.bars("ETHUSDT", "1m")["trades"].tolist() == [1]


# ---------------------------------------------------------------------------- klines
def klines(rows: list[tuple]) -> pd.DataFrame:
    """1m klines as (open_time, open, high, low, close, volume, quote_volume, count, buy_vol)."""
    df = pd.DataFrame(
        rows,
        columns=[
            "open_time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "quote_volume",
            "count",
            "taker_buy_volume",
        ],
    )
    df["close_time"] = df["open_time"] + 59_999
    return df


def test_kline_is_authoritative_for_its_minute(db: Path) -> None:
    k = klines([(60_000, 10.0, 12.0, 9.0, 11.0, 5.0, 52.0, 7, 2.0)])

    def check(r: Reader) -> None:
        b = bar(r, "1m", 60_000)
        assert (b["open"], b["high"], b["low"], b["close"]) == (10.0, 12.0, 9.0, 11.0)
        assert (b["volume"], b["trades"], b["buy_volume"]) == (5.0, 7, 2.0)
        assert b["vwap"] == pytest.approx(52.0 / 5.0)
        assert r.ticks("BTCUSDT")["trade_id"].tolist() == [3, 1, 2, 4]  # ticks still stored
        assert r.bars("BTCUSDT", "1s", 62_000, 62_000)["close"].tolist() == [99.0]
        # The 5m bar is the merge of tick minute 0, kline minute 1 and tick minute 2.
        five = bar(r, "5m", 0)
        assert (five["open"], five["high"], five["low"], five["close"]) == (10.5, 12.0, 9.0, 11.5)
        assert five["trades"] == 9 and five["volume"] == pytest.approx(8.0)

    with open_writer(db) as w, open_reader(db) as r:
        w.write_ticks([tick(1, 61_000, 50.0, 1.0)])  # a tick-built bar, replaced by the kline
        assert w.write_klines("BTCUSDT", k) == 1
        assert bar(r, "1m", 60_000)["close"] == 11.0
        # Later ticks: one inside the kline's minute (stored, bar unchanged), two outside.
        w.write_ticks(
            [tick(2, 62_000, 99.0, 3.0), tick(3, 59_000, 10.5, 1.0), tick(4, 125_000, 11.5, 2.0)]
        )
        check(r)
        assert w.write_klines("BTCUSDT", k) == 1  # idempotent
        check(r)


def test_zero_trade_klines_store_no_bar(db: Path) -> None:
    # Binance dumps carry minutes without trades (volume 0, count 0): they are empty intervals.
    k = klines(
        [
            (0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1, 1.0),
            (60_000, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0, 0.0),
            (120_000, 1.5, 1.5, 1.5, 1.5, 1.0, 1.5, 1, 0.0),
        ]
    )
    with open_writer(db) as w:
        w.write_klines("ALGOUSDT", k)
    with open_reader(db) as r:
        one_m = r.bars("ALGOUSDT", "1m")
        assert one_m["open_time_ms"].tolist() == [0, 120_000]
        assert not one_m["vwap"].isna().any()
        assert bar(r, "5m", 0, "ALGOUSDT")["trades"] == 2


def test_klines_first_then_trades_of_the_same_symbol(db: Path) -> None:
    # Klines carry no trade ids, so they must not fix the symbol's id kind.
    with open_writer(db) as w:
        w.write_klines("BTCUSDT", klines([(0, 10.0, 10.0, 10.0, 10.0, 1.0, 10.0, 1, 0.0)]))
        assert w.write_ticks([tick(1, 61_000, 11.0, kind=IdKind.TRADE)]) == 1
        with pytest.raises(IdKindConflictError):
            w.write_ticks([tick(2, 62_000, 11.0, kind=IdKind.AGG)])
    with open_reader(db) as r:
        assert r.id_kind("BTCUSDT") == "trade"
        assert r.bars("BTCUSDT", "1m")["open_time_ms"].tolist() == [0, 60_000]


def test_klines_off_the_minute_are_refused(db: Path) -> None:
    with open_writer(db) as w, pytest.raises(ValueError, match="minute boundaries"):
        w.write_klines("BTCUSDT", klines([(30_000, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 0.0)]))


# ---------------------------------------------------------------------------- real captures
def test_real_capture_bars_equal_pandas_oracle(tmp_path: Path, storage_hft_trades) -> None:
    with open_writer(tmp_path / "real.db") as w:
        for symbol, df in storage_hft_trades.items():
            ticks = real_ticks(df, symbol)
            for i in range(0, len(ticks), 250):  # live-sized batches in arrival order
                w.write_ticks(ticks[i : i + 250])
    with open_reader(tmp_path / "real.db") as r:
        for symbol, df in storage_hft_trades.items():
            for tf in ("1s", "1m", "5m"):
                expected = oracle_bars(df, tf)
                assert len(expected) >= {"1s": 300, "1m": 6, "5m": 2}[tf]
                assert_bars_equal(r.bars(symbol, tf), expected)
        pf = r.pair_frame("BTCUSDT", "ETHUSDT", "1s")
        assert not pf[["x", "y"]].isna().any().any()
        assert np.all(np.diff(pf["open_time_ms"]) == 1_000)
        btc = r.bars("BTCUSDT", "1s").set_index("open_time_ms")
        traded = pf.loc[~pf["x_filled"]]
        np.testing.assert_array_equal(traded["x"], btc.loc[traded["open_time_ms"], "close"])
        assert pf["x_filled"].sum() == len(pf) - btc.index.isin(pf["open_time_ms"]).sum()


def test_real_ticks_in_shuffled_random_batches_give_identical_bars(
    tmp_path: Path, storage_hft_trades
) -> None:
    rng = np.random.default_rng(20240808)
    df = storage_hft_trades["BTCUSDT"]
    ticks = real_ticks(df, "BTCUSDT")
    shuffled = [ticks[i] for i in rng.permutation(len(ticks))]
    # Re-send ~5 % of the ticks later (at-least-once delivery): they must change nothing.
    shuffled += [ticks[i] for i in rng.choice(len(ticks), len(ticks) // 20, replace=False)]
    cuts = np.sort(rng.choice(np.arange(1, len(shuffled)), 60, replace=False))
    with open_writer(tmp_path / "in_order.db") as w:
        w.write_ticks(ticks)
    with open_writer(tmp_path / "shuffled.db") as w:
        for batch in np.split(np.arange(len(shuffled)), cuts):
            w.write_ticks([shuffled[i] for i in batch])
    with open_reader(tmp_path / "in_order.db") as a, open_reader(tmp_path / "shuffled.db") as b:
        for tf in ("1s", "1m", "5m"):
            assert_bars_equal(b.bars("BTCUSDT", tf), a.bars("BTCUSDT", tf))
            assert_bars_equal(b.bars("BTCUSDT", tf), oracle_bars(df, tf))


# ---------------------------------------------------------------------------- invariants
# Times cluster around minute and five-minute boundaries so that edges are hit often.
_times = st.one_of(
    st.integers(0, 11 * 60_000),
    st.builds(lambda k, d: max(0, k * 60_000 + d), st.integers(0, 11), st.integers(-2, 2)),
)
_ticks = st.lists(
    st.tuples(_times, st.integers(1, 40), st.integers(1, 2_000), st.booleans()),
    min_size=1,
    max_size=80,
).map(
    lambda rows: [
        tick(i, ts, p * 0.25, q * 0.001, m) for i, (ts, p, q, m) in enumerate(rows, start=1_000)
    ]
)


def _bars_after_writing(batches: list[list[Tick]]) -> dict[str, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as d:
        with open_writer(Path(d) / "h.db") as w:
            for batch in batches:
                w.write_ticks(batch)
        with open_reader(Path(d) / "h.db") as r:
            return {tf: r.bars("BTCUSDT", tf) for tf in TF_MS}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=_ticks)
def test_invariants_volume_trades_ohlc_and_5m_merge(ticks: list[Tick]) -> None:
    bars = _bars_after_writing([ticks])
    volume = sum(t.qty for t in ticks)
    for tf, b in bars.items():
        assert b["trades"].sum() == len(ticks), tf
        assert b["volume"].sum() == pytest.approx(volume, rel=SUM_RTOL), tf
        assert (b["low"] <= b[["open", "close"]].min(axis=1)).all(), tf
        assert (b[["open", "close"]].max(axis=1) <= b["high"]).all(), tf
        assert (b["vwap"] >= b["low"] * (1 - 1e-12)).all() and (
            b["vwap"] <= b["high"] * (1 + 1e-12)
        ).all(), tf
        assert (b["buy_volume"] <= b["volume"] * (1 + 1e-12)).all(), tf
        assert_bars_equal(b, oracle_bars(frame(ticks), tf))
    # Each 5m bar is the merge of its 1m bars.
    one = bars["1m"].assign(bucket=bars["1m"]["open_time_ms"] // 300_000 * 300_000)
    one["quote"] = one["vwap"] * one["volume"]
    g = one.groupby("bucket")
    merged = pd.DataFrame(
        {
            "open_time_ms": g["open_time_ms"].first().index,
            "open": g["open"].first().to_numpy(),
            "high": g["high"].max().to_numpy(),
            "low": g["low"].min().to_numpy(),
            "close": g["close"].last().to_numpy(),
            "volume": g["volume"].sum().to_numpy(),
            "trades": g["trades"].sum().to_numpy(),
            "vwap": (g["quote"].sum() / g["volume"].sum()).to_numpy(),
            "buy_volume": g["buy_volume"].sum().to_numpy(),
        }
    )
    assert_bars_equal(bars["5m"], merged)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=_ticks, data=st.data())
def test_any_batch_split_and_order_gives_identical_bars(ticks: list[Tick], data) -> None:
    order = data.draw(st.permutations(range(len(ticks))), label="order")
    resend = data.draw(st.lists(st.sampled_from(ticks), max_size=10), label="resent")
    stream = [ticks[i] for i in order] + resend
    cuts = sorted(
        data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=8), label="cuts")
    )
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    reference = _bars_after_writing([ticks])
    split = _bars_after_writing([b for b in batches if b])
    for tf in TF_MS:
        assert_bars_equal(split[tf], reference[tf])
