"""``python -m storage``: import of every format, idempotence, all-or-nothing files, export,
info, and errors that are one line on stderr with exit status 2.

Input files are built in ``tmp_path`` from the real recordings (the hftbacktest captures, the
cryptofeed capture and the Binance kline dumps), converted to each format. Most commands run
in-process through ``storage.__main__.main``; a few run as a real ``python -m storage``
subprocess to see the exit status and stderr exactly as a user would.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import formats.files
from storage import BAR_COLUMNS, Gap, open_reader, open_writer
from storage.__main__ import EXPORT_COLUMNS, main

ROOT = Path(__file__).resolve().parents[1]
TICK_COLUMNS = ["trade_id", "ts_ms", "price", "qty", "is_buyer_maker"]
KLINES = "binance_usdm_klines_1m"
CRYPTOFEED = "binance_usdm_ws_cryptofeed/BINANCE_FUTURES.ws.1.0"
HFT_BTC = "binance_usdm_ws_hftbacktest/btcusdt_20240808.gz"


# ---------------------------------------------------------------------------- helpers
def write(path: Path, lines: list[str]) -> Path:
    """Write text lines as plain, ``.gz`` or single-member ``.zip``, by the file's suffix."""
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(path.stem, text)
    else:
        path.write_text(text)
    return path


def head_lines(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [next(fh).rstrip("\n") for _ in range(n)]


def cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    """Run the CLI in-process; return (status, stdout, stderr lines).

    Progress lines ("  FILE: N rows") appear on stderr only when an import takes over a
    second, which depends on the machine's load, so they are left out here.
    """
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    return status, out, [ln for ln in lines if not re.match(r"  \S+: [\d,]+ rows", ln)]


def one_error_line(err: list[str], *fragments: str) -> str:
    assert len(err) == 1, f"expected one line on stderr, got {err}"
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])
    return err[0]


def snapshot(db: Path) -> dict:
    """Everything a reader can see: symbols, id kinds, ticks and bars of every timeframe."""
    with open_reader(db) as r:
        return {
            s: (r.id_kind(s), r.ticks(s), {tf: r.bars(s, tf) for tf in ("1s", "1m", "5m")})
            for s in r.symbols()
        }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for s in a:
        assert a[s][0] == b[s][0], s
        pd.testing.assert_frame_equal(a[s][1], b[s][1])
        for tf in a[s][2]:
            pd.testing.assert_frame_equal(a[s][2][tf], b[s][2][tf], check_exact=False, rtol=1e-9)


def reference_db(path: Path, expected: dict) -> Path:
    """The same ticks written straight through ``Writer`` (whose bars the bar tests check)."""
    with open_writer(path) as w:
        for symbol, (kind, df) in expected.items():
            w.write_tick_arrays(symbol, kind, *(df[c].to_numpy() for c in TICK_COLUMNS))
    return path


def iso(ms: int, style: int) -> str:
    t = pd.Timestamp(ms, unit="ms", tz="UTC")
    text = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return text + ("Z", "+00:00", "")[style % 3]  # the collector's Z, an offset, or bare UTC


# ---------------------------------------------------------------------------- formats
# Each builder returns (files to import, {symbol: (id kind, expected ticks)}).
def _capture_gz(tmp, trades, real):
    lines = head_lines(real / HFT_BTC, 8_000)
    n = sum('@trade"' in ln for ln in lines)
    return [write(tmp / "btcusdt_capture.gz", lines)], {"BTCUSDT": ("trade", trades["BTCUSDT"][:n])}


def _capture_plain(tmp, trades, real):
    eth = trades["ETHUSDT"][:3_000]
    return [write(tmp / "eth_capture.txt", eth["line"].tolist())], {"ETHUSDT": ("trade", eth)}


def _cryptofeed(tmp, trades, real):
    rows = []
    lines = (real / CRYPTOFEED).read_text().splitlines()
    for line in lines[1:]:
        d = json.loads(line.split(": ", 1)[1])["data"]
        if d["e"] == "aggTrade":
            rows.append((d["s"], d["a"], d["T"], float(d["p"]), float(d["q"]), d["m"]))
    df = pd.DataFrame(rows, columns=["symbol", *TICK_COLUMNS])
    return [real / CRYPTOFEED], {
        s: ("agg", g.drop(columns="symbol")) for s, g in df.groupby("symbol")
    }


def _wsjson_raw(tmp, trades, real):
    lines = head_lines(real / HFT_BTC, 8_000)
    n = sum('@trade"' in ln for ln in lines)
    raw = []
    for ln in lines:
        obj = json.loads(ln.split(" ", 1)[1])
        raw.append(json.dumps(obj.get("data", obj)))  # unwrap the combined stream
    return [write(tmp / "btc_raw.jsonl", raw)], {"BTCUSDT": ("trade", trades["BTCUSDT"][:n])}


def _wsjson_combined(tmp, trades, real):
    lines = head_lines(real / HFT_BTC, 8_000)
    n = sum('@trade"' in ln for ln in lines)
    combined = [ln.split(" ", 1)[1] for ln in lines]
    return [write(tmp / "btc_combined.jsonl.gz", combined)], {
        "BTCUSDT": ("trade", trades["BTCUSDT"][:n])
    }


def _ndjson(tmp, trades, real):
    eth = trades["ETHUSDT"][:3_000]
    lines = [
        json.dumps({"symbol": "ETHUSDT", "ts": iso(ts, i), "price": p, "size": q})
        for i, (ts, p, q) in enumerate(eth[["ts_ms", "price", "qty"]].itertuples(index=False))
    ]
    # No ids in the file: they are ts_ms * 1000 + n, n counting prints in the same ms.
    seq = eth.groupby("ts_ms").cumcount().to_numpy()
    # The collector recorded no aggressor side: stored as buyer-is-maker (no taker-buy volume).
    expected = eth.assign(trade_id=eth["ts_ms"].to_numpy() * 1_000 + seq, is_buyer_maker=True)
    return [write(tmp / "collector.ndjson", lines)], {"ETHUSDT": ("synthetic", expected)}


def _trades_dump(suffix: str, header: bool):
    def build(tmp, trades, real):
        btc = trades["BTCUSDT"][:4_000]
        rows = [
            f"{t},{p!r},{q!r},{p * q!r},{ts},{str(m).lower()}"
            for t, ts, p, q, m in btc[TICK_COLUMNS].itertuples(index=False)
        ]
        if header:
            rows.insert(0, "id,price,qty,quote_qty,time,is_buyer_maker")
        path = write(tmp / f"BTCUSDT-trades-2024-08-08.csv{suffix}", rows)
        return [path], {"BTCUSDT": ("trade", btc)}

    return build


def _aggtrades_dump(suffix: str, header: bool):
    def build(tmp, trades, real):
        eth = trades["ETHUSDT"][:4_000]
        # One print per aggregate (agg id = trade id): real prices, times and sides.
        rows = [
            f"{t},{p!r},{q!r},{t},{t},{ts},{str(m).lower()}"
            for t, ts, p, q, m in eth[TICK_COLUMNS].itertuples(index=False)
        ]
        if header:
            rows.insert(
                0,
                "agg_trade_id,price,quantity,first_trade_id,last_trade_id,"
                "transact_time,is_buyer_maker",
            )
        path = write(tmp / f"ETHUSDT-aggTrades-2024-08-08.csv{suffix}", rows)
        return [path], {"ETHUSDT": ("agg", eth)}

    return build


FORMATS = {
    "capture": (_capture_gz, "capture"),
    "capture_plain": (_capture_plain, "capture"),
    "cryptofeed": (_cryptofeed, "cryptofeed"),
    "wsjson_raw": (_wsjson_raw, "wsjson"),
    "wsjson_combined": (_wsjson_combined, "wsjson"),
    "ndjson": (_ndjson, "ndjson"),
    "trades_csv_header": (_trades_dump("", True), "trades_csv"),
    "trades_csv_bare": (_trades_dump("", False), "trades_csv"),
    "trades_gz_bare": (_trades_dump(".gz", False), "trades_csv"),
    "trades_zip_header": (_trades_dump(".zip", True), "trades_csv"),
    "aggtrades_csv_bare": (_aggtrades_dump("", False), "aggtrades_csv"),
    "aggtrades_gz_header": (_aggtrades_dump(".gz", True), "aggtrades_csv"),
    "aggtrades_zip_bare": (_aggtrades_dump(".zip", False), "aggtrades_csv"),
}


@pytest.mark.parametrize("name", FORMATS)
def test_import_detects_each_format_stores_its_ticks_and_is_idempotent(
    name: str, tmp_path: Path, storage_hft_trades, storage_real_dir: Path, capsys
) -> None:
    build, fmt = FORMATS[name]
    files, expected = build(tmp_path, storage_hft_trades, storage_real_dir)
    db = tmp_path / "import.db"
    status, out, err = cli(capsys, "import", *files, "--db", db)
    assert (status, err) == (0, [])
    assert f": {fmt}: " in out
    total = sum(len(df) for _, df in expected.values())
    assert f"{total:,} new ticks (0 already stored)" in out
    with open_reader(db) as r:
        assert r.symbols() == sorted(expected)
        for symbol, (kind, df) in expected.items():
            assert r.id_kind(symbol) == kind
            want = (
                df[TICK_COLUMNS]
                .sort_values(["ts_ms", "trade_id"])
                .reset_index(drop=True)
                .astype(r.ticks(symbol).dtypes.to_dict())
            )
            pd.testing.assert_frame_equal(r.ticks(symbol), want)
    first = snapshot(db)
    assert_same(first, snapshot(reference_db(tmp_path / "ref.db", expected)))
    # Importing the same files again changes nothing.
    status, out, err = cli(capsys, "import", *files, "--db", db)
    assert (status, err) == (0, [])
    assert f"0 new ticks ({total:,} already stored)" in out
    assert_same(snapshot(db), first)


def test_websocket_files_skip_book_depth_and_kline_messages(
    tmp_path: Path, storage_real_dir: Path, capsys
) -> None:
    status, out, err = cli(
        capsys, "import", storage_real_dir / CRYPTOFEED, "--db", tmp_path / "c.db"
    )
    assert (status, err) == (0, [])
    # Counts from the data README: 91 aggTrade, 613 bookTicker, 764 depthUpdate, 67 kline.
    assert "91 new ticks" in out
    assert '{"bookTicker": 613, "depthUpdate": 764, "kline": 67}' in out


def test_non_market_trades_are_skipped(tmp_path: Path, storage_hft_trades, capsys) -> None:
    lines = storage_hft_trades["BTCUSDT"]["line"][:10].tolist()
    # An insurance-fund print is not a market trade (the real stream marks it X != MARKET).
    lines[3] = lines[3].replace('"X":"MARKET"', '"X":"INSURANCE_FUND"')
    status, out, _ = cli(
        capsys, "import", write(tmp_path / "cap.txt", lines), "--db", tmp_path / "x.db"
    )
    assert status == 0 and "9 new ticks" in out and "trade:INSURANCE_FUND" in out


def test_one_command_imports_many_files_of_mixed_formats(
    tmp_path: Path, storage_hft_trades, storage_real_dir: Path, capsys
) -> None:
    files = []
    for name in ("capture", "ndjson", "cryptofeed"):
        sub = tmp_path / name
        sub.mkdir()
        files += FORMATS[name][0](sub, storage_hft_trades, storage_real_dir)[0]
    files.append(storage_real_dir / KLINES / "NEARUSDT-1m-2024-02.csv")
    db = tmp_path / "many.db"
    status, out, err = cli(capsys, "import", *files, "--db", db)
    assert (status, err) == (0, [])
    assert [ln.split(": ")[1] for ln in out.splitlines()] == [
        "capture",
        "ndjson",
        "cryptofeed",
        "klines_csv",
    ]
    with open_reader(db) as r:
        assert r.symbols() == [
            "AKROUSDT",
            "BTCUSDT",
            "CTKUSDT",
            "ETHUSDT",
            "KEEPUSDT",
            "NEARUSDT",
            "SUSHIUSDT",
        ]


# ---------------------------------------------------------------------------- klines
def kline_oracle(csv: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Expected 1m and 5m bars from a kline dump: minutes with trades only; 5m by resample."""
    k = csv[csv["count"] > 0]
    one = pd.DataFrame(
        {
            "open_time_ms": k["open_time"].to_numpy(np.int64),
            "open": k["open"],
            "high": k["high"],
            "low": k["low"],
            "close": k["close"],
            "volume": k["volume"],
            "trades": k["count"],
            "vwap": k["quote_volume"] / k["volume"],
            "buy_volume": k["taker_buy_volume"],
        }
    ).reset_index(drop=True)
    r = (
        one.assign(quote=k["quote_volume"].to_numpy())
        .set_index(pd.to_datetime(one["open_time_ms"], unit="ms", utc=True))
        .resample("5min")
    )
    five = pd.DataFrame(
        {
            "open_time_ms": r["open_time_ms"].first(),
            "open": r["open"].first(),
            "high": r["high"].max(),
            "low": r["low"].min(),
            "close": r["close"].last(),
            "volume": r["volume"].sum(),
            "trades": r["trades"].sum(),
            "vwap": r["quote"].sum() / r["volume"].sum(),
            "buy_volume": r["buy_volume"].sum(),
        }
    ).dropna(subset=["open"])
    five["open_time_ms"] = (five.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1ms")
    return {
        "1m": one,
        "5m": five[BAR_COLUMNS]
        .reset_index(drop=True)
        .astype({"open_time_ms": "int64", "trades": "int64"}),
    }


def assert_bars_close(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == BAR_COLUMNS and len(actual) == len(expected)
    for col in ("open_time_ms", "open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(actual[col], expected[col], err_msg=col)
    for col in ("volume", "vwap", "buy_volume"):
        np.testing.assert_allclose(actual[col], expected[col], rtol=1e-9, err_msg=col)


def test_kline_dump_becomes_1m_bars_and_derived_5m_bars(
    tmp_path: Path, storage_real_dir: Path, capsys
) -> None:
    src = storage_real_dir / KLINES / "ALGOUSDT-1m-2024-02.csv"
    csv = pd.read_csv(src)
    assert (csv["count"] == 0).sum() > 0  # the real file has minutes without trades
    db = tmp_path / "k.db"
    status, out, err = cli(capsys, "import", src, "--db", db)
    with_trades = int((csv["count"] > 0).sum())
    assert (status, err) == (0, [])
    assert f"{with_trades:,} klines" in out
    want = kline_oracle(csv)
    with open_reader(db) as r:
        for tf in ("1m", "5m"):
            assert_bars_close(r.bars("ALGOUSDT", tf), want[tf])
        assert r.bars("ALGOUSDT", "1s").empty
    before = snapshot(db)
    assert cli(capsys, "import", src, "--db", db)[0] == 0
    assert_same(snapshot(db), before)


@pytest.mark.parametrize("suffix,header", [(".gz", False), (".zip", True), ("", False)])
def test_kline_dump_variants(
    tmp_path: Path, storage_real_dir: Path, capsys, suffix: str, header: bool
) -> None:
    src = (storage_real_dir / KLINES / "NEARUSDT-1m-2024-02.csv").read_text().splitlines()
    lines = src[:3_001] if header else src[1:3_001]
    path = write(tmp_path / f"NEARUSDT-1m-2024-02.csv{suffix}", lines)
    db = tmp_path / "k.db"
    status, out, err = cli(capsys, "import", path, "--db", db)
    assert (status, err) == (0, []) and ": klines_csv: " in out
    want = kline_oracle(pd.read_csv(io.StringIO("\n".join(src[:3_001]))))
    with open_reader(db) as r:
        assert_bars_close(r.bars("NEARUSDT", "1m"), want["1m"])
        assert_bars_close(r.bars("NEARUSDT", "5m"), want["5m"])


def test_klines_then_trades_of_the_same_symbol_import(
    tmp_path: Path, storage_hft_trades, storage_real_dir: Path, capsys
) -> None:
    # A kline dump of BTCUSDT made from the same real minutes, then the trades dump.
    files, _ = _trades_dump("", True)(tmp_path, storage_hft_trades, storage_real_dir)
    minute = int(storage_hft_trades["BTCUSDT"]["ts_ms"].iloc[0]) // 60_000 * 60_000
    k = write(
        tmp_path / "BTCUSDT-1m-2024-08-08.csv",
        [f"{minute},1,2,0.5,1.5,10,{minute + 59_999},15,3,4,6,0"],
    )
    db = tmp_path / "kt.db"
    status, _, err = cli(capsys, "import", k, *files, "--db", db)
    assert (status, err) == (0, [])
    with open_reader(db) as r:
        assert r.id_kind("BTCUSDT") == "trade"
        assert r.bars("BTCUSDT", "1m", minute, minute)["close"].tolist() == [1.5]  # kline wins
        assert len(r.ticks("BTCUSDT")) == 4_000


# ---------------------------------------------------------------------------- bad files
def _bad_capture(tmp, trades):
    lines = trades["BTCUSDT"]["line"][:1_000].tolist()
    lines.append(lines[-1][:70])  # a line cut off mid-JSON, as a crashed recorder leaves it
    return write(tmp / "btc_cut.gz", lines), 1_001


def _bad_ndjson(tmp, trades):
    lines = [
        json.dumps({"symbol": "BTCUSDT", "ts": iso(ts, 0), "price": p, "size": q})
        for ts, p, q in trades["BTCUSDT"][["ts_ms", "price", "qty"]][:1_000].itertuples(index=False)
    ]
    lines.append(json.dumps({"symbol": "BTCUSDT", "ts": "yesterday", "price": 1, "size": 1}))
    return write(tmp / "collector.ndjson", lines), 1_001


def _bad_trades(tmp, trades):
    files, _ = _trades_dump("", True)(tmp, trades, None)
    lines = files[0].read_text().splitlines()[:1_001]
    lines.append("9999999999,abc,0.001,0.1,1723161256322,true")
    return write(files[0], lines), 1_002


def _bad_aggtrades(tmp, trades):
    files, _ = _aggtrades_dump(".zip", False)(tmp, trades, None)
    with zipfile.ZipFile(files[0]) as zf:
        lines = zf.read(zf.namelist()[0]).decode().splitlines()[:1_000]
    lines.append("1,2000.5,1.0,1,1,1723161256322,maybe")
    path = tmp / "BTCUSDT-aggTrades-2024-08-08.csv.zip"  # BTCUSDT: the symbol must not appear
    files[0].unlink()
    return write(path, lines), 1_001


BAD = {
    "capture": _bad_capture,
    "ndjson": _bad_ndjson,
    "trades_csv": _bad_trades,
    "aggtrades_csv": _bad_aggtrades,
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_line_stores_nothing_of_its_file_and_the_others_import(
    name: str, tmp_path: Path, storage_hft_trades, storage_real_dir: Path, capsys, monkeypatch
) -> None:
    # Small read chunks, so that ten chunks of good lines are written before the bad line:
    # the file's transaction must roll all of them back.
    monkeypatch.setattr(formats.files, "CHUNK_ROWS", 100)
    bad, line = BAD[name](tmp_path, storage_hft_trades)
    before_ok = _capture_plain(tmp_path, storage_hft_trades, storage_real_dir)[0][0]
    after_ok = storage_real_dir / CRYPTOFEED
    db = tmp_path / "bad.db"
    status, out, err = cli(capsys, "import", before_ok, bad, after_ok, "--db", db)
    assert status == 2
    one_error_line(err, f"{bad}:{line}: ", "nothing of this file was stored")
    assert len(out.splitlines()) == 2
    with open_reader(db) as r:
        assert "BTCUSDT" not in r.symbols()
        assert len(r.ticks("ETHUSDT")) == 3_000 and len(r.ticks("CTKUSDT")) == 38


def _flip_until_zlib_error(data: bytes) -> bytes:
    """Flip single bits (deterministically) until decompressing fails inside zlib."""
    rng = np.random.default_rng(3)
    for _ in range(20_000):
        b = bytearray(data)
        i = int(rng.integers(len(b) // 3, len(b) - 16))
        b[i] ^= 1 << int(rng.integers(8))
        try:
            gzip.decompress(bytes(b))
        except zlib.error:
            return bytes(b)
        except (OSError, EOFError):
            continue
    raise AssertionError("no bit flip gave a zlib error")


def _damaged(tmp: Path, storage_hft_trades) -> dict[str, Path]:
    cap = gzip.compress(("\n".join(storage_hft_trades["BTCUSDT"]["line"][:3_000]) + "\n").encode())
    files, _ = _trades_dump(".gz", False)(tmp, storage_hft_trades, None)
    dump = files[0].read_bytes()
    out = {
        "capture_truncated": (tmp / "cap_truncated.gz", cap[: len(cap) // 2]),
        "capture_bit_flip": (tmp / "cap_flipped.gz", _flip_until_zlib_error(cap)),
        "dump_truncated": (tmp / "BTCUSDT-trades-x.csv.gz", dump[: len(dump) // 2]),
        "dump_not_gzip": (tmp / "BTCUSDT-trades-y.csv.gz", b"\x1f\x8b" + b"\x00" * 200),
        "zip_not_zip": (tmp / "BTCUSDT-trades-z.csv.zip", b"PK not really a zip"),
        "binary": (tmp / "BTCUSDT-trades-w.csv", bytes(range(256)) * 10),
    }
    for path, data in out.values():
        path.write_bytes(data)
    return {k: p for k, (p, _) in out.items()}


@pytest.mark.parametrize("header", [True, False])
def test_a_csv_row_with_too_many_fields_names_its_file_line(
    tmp_path: Path, storage_hft_trades, capsys, header: bool
) -> None:
    files, _ = _trades_dump("", header)(tmp_path, storage_hft_trades, None)
    lines = files[0].read_text().splitlines()[:1_000]
    lines.append("1,100.0,1.0,100.0,1723161256322,true,extra")
    status, _, err = cli(capsys, "import", write(files[0], lines), "--db", tmp_path / "x.db")
    assert status == 2
    one_error_line(err, str(files[0]), "malformed CSV", "in line 1001, saw 7")


def test_damaged_compressed_and_binary_files_are_clean_errors(
    tmp_path: Path, storage_hft_trades, capsys
) -> None:
    db = tmp_path / "d.db"
    for name, path in _damaged(tmp_path, storage_hft_trades).items():
        status, _, err = cli(capsys, "import", path, "--db", db)
        assert status == 2, name
        one_error_line(err, str(path), "nothing of this file was stored")
    with open_reader(db) as r:
        assert r.symbols() == []


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "file is empty"),
        ("hello world\n", "unrecognised format"),
        ('{"e": "bookTicker"}\n[1, 2, 3]\n', "expected a JSON object"),
    ],
)
def test_unreadable_inputs_are_named(tmp_path: Path, capsys, content: str, message: str) -> None:
    path = tmp_path / "BTCUSDT-odd.txt"
    path.write_text(content)
    status, _, err = cli(
        capsys, "import", path, tmp_path / "missing.csv", "--db", tmp_path / "x.db"
    )
    assert status == 2
    assert len(err) == 2 and message in err[0] and str(path) in err[0]
    assert "missing.csv: no such file" in err[1]


def test_symbol_comes_from_the_file_name_or_the_option(
    tmp_path: Path, storage_hft_trades, capsys
) -> None:
    files, _ = _trades_dump("", False)(tmp_path, storage_hft_trades, None)
    anonymous = files[0].rename(tmp_path / "20240808.csv")
    status, _, err = cli(capsys, "import", anonymous, "--db", tmp_path / "s.db")
    assert status == 2
    one_error_line(err, "cannot tell the symbol", "--symbol")
    status, _, err = cli(
        capsys, "import", anonymous, "--symbol", "solusdt", "--db", tmp_path / "s.db"
    )
    assert (status, err) == (0, [])
    with open_reader(tmp_path / "s.db") as r:
        assert r.symbols() == ["SOLUSDT"] and len(r.ticks("SOLUSDT")) == 4_000


def test_conflicting_id_kinds_in_a_later_file_are_refused(
    tmp_path: Path, storage_hft_trades, capsys
) -> None:
    trades_files, _ = _trades_dump("", True)(tmp_path, storage_hft_trades, None)
    agg = _aggtrades_dump("", True)(tmp_path, storage_hft_trades, None)[0][0]
    as_btc = agg.rename(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv")
    db = tmp_path / "k.db"
    status, _, err = cli(capsys, "import", *trades_files, as_btc, "--db", db)
    assert status == 2
    one_error_line(err, str(as_btc), "BTCUSDT holds trade ids", "nothing of this file")
    with open_reader(db) as r:
        assert len(r.ticks("BTCUSDT")) == 4_000


def test_reimport_after_retention_changes_nothing(
    tmp_path: Path, storage_real_dir: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("TICKS_KEEP_HOURS", "48")
    db = tmp_path / "r.db"
    src = storage_real_dir / CRYPTOFEED  # 2021 trades: older than any retention window
    assert cli(capsys, "import", src, "--db", db)[0] == 0
    assert cli(capsys, "prune", "--db", db)[0] == 0
    with open_reader(db) as r:
        before = r.bars("CTKUSDT", "1m")
    assert cli(capsys, "import", src, "--db", db)[0] == 0
    with open_reader(db) as r:
        pd.testing.assert_frame_equal(r.bars("CTKUSDT", "1m"), before)


# ---------------------------------------------------------------------------- export, info
@pytest.fixture(scope="module")
def btc_db(tmp_path_factory, storage_real_dir: Path) -> Path:
    """The real BTCUSDT capture and ALGOUSDT klines, imported once; tests only read it."""
    db = tmp_path_factory.mktemp("export") / "btc.db"
    assert (
        main(
            [
                "import",
                str(storage_real_dir / HFT_BTC),
                str(storage_real_dir / KLINES / "ALGOUSDT-1m-2024-02.csv"),
                "--db",
                str(db),
            ]
        )
        == 0
    )
    return db


@pytest.mark.parametrize(
    "symbol,tf", [("BTCUSDT", "1s"), ("BTCUSDT", "1m"), ("BTCUSDT", "5m"), ("ALGOUSDT", "1m")]
)
def test_export_writes_one_row_per_traded_bar(
    btc_db: Path, tmp_path: Path, capsys, symbol: str, tf: str
) -> None:
    out = tmp_path / f"{symbol}-{tf}.csv"
    status, stdout, err = cli(
        capsys, "export", "--db", btc_db, "--symbol", symbol.lower(), "--tf", tf, "--out", out
    )
    assert (status, err) == (0, [])
    csv = pd.read_csv(out, dtype={"open_time": str})
    assert list(csv.columns) == EXPORT_COLUMNS
    assert csv["open_time"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    with open_reader(btc_db) as r:
        bars = r.bars(symbol, tf)
    assert f"wrote {len(bars):,} {tf} bars of {symbol}" in stdout
    assert len(csv) == len(bars) and (csv["trades"] >= 1).all()
    ms = (pd.to_datetime(csv["open_time"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(
        "1ms"
    )
    np.testing.assert_array_equal(ms, bars["open_time_ms"])
    for col in EXPORT_COLUMNS[1:]:
        np.testing.assert_allclose(csv[col], bars[col], rtol=1e-11, err_msg=col)


def test_export_range_is_inclusive_utc(btc_db: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "range.csv"
    status, _, err = cli(
        capsys,
        "export",
        "--db",
        btc_db,
        "--symbol",
        "BTCUSDT",
        "--tf",
        "1m",
        "--start",
        "2024-08-08T23:55:00Z",
        "--end",
        "2024-08-09T01:57:00+02:00",
        "--out",
        out,
    )
    assert (status, err) == (0, [])
    assert pd.read_csv(out)["open_time"].tolist() == [
        "2024-08-08T23:55:00.000Z",
        "2024-08-08T23:56:00.000Z",
        "2024-08-08T23:57:00.000Z",
    ]


def test_info_lists_symbols_counts_ranges_gaps_and_size(
    btc_db: Path, tmp_path: Path, capsys
) -> None:
    btc_db = Path(shutil.copy(btc_db, tmp_path / "btc.db"))
    with open_writer(btc_db) as w:
        w.record_gap(Gap("BTCUSDT", 10, 19, 1_723_161_300_000))
    status, out, err = cli(capsys, "info", "--db", btc_db, "--json")
    assert (status, err) == (0, [])
    info = json.loads(out)
    assert info["size_bytes"] >= btc_db.stat().st_size > 0
    by = {s["symbol"]: s for s in info["symbols"]}
    assert sorted(by) == ["ALGOUSDT", "BTCUSDT"]
    btc = by["BTCUSDT"]
    assert (btc["id_kind"], btc["ticks"], btc["first_id"], btc["last_id"]) == (
        "trade",
        21_313,
        5_266_583_935,
        5_266_605_247,
    )
    assert btc["bars"]["1s"]["count"] == 344 and btc["bars"]["1m"]["count"] == 6
    assert btc["gaps"] == {"open": 1}
    assert by["ALGOUSDT"]["bars"]["1m"] == {
        "count": 41_760 - 39,
        "first_ms": 1_706_745_600_000,
        "last_ms": 1_709_251_140_000,
    }
    status, text, err = cli(capsys, "info", "--db", btc_db)
    assert (status, err) == (0, [])
    from storage.schema import SCHEMA_VERSION

    assert re.search(rf"btc\.db: (file )?\d+\.\d MB, schema v{SCHEMA_VERSION}\n", text)
    assert (
        "BTCUSDT (trade ids): 21,313 ticks 2024-08-08T23:54:16.322Z → 2024-08-08T23:59:59.643Z"
    ) in text
    assert "1m bars: 41,721  2024-02-01T00:00:00.000Z → 2024-02-29T23:59:00.000Z" in text
    assert "gaps: open 1" in text


# ---------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize(
    "argv,fragments",
    [
        (
            ["export", "--symbol", "DOGEUSDT", "--tf", "1m"],
            ["'DOGEUSDT'", "stored symbols: ALGOUSDT, BTCUSDT"],
        ),
        (["export", "--symbol", "BTCUSDT", "--tf", "2m"], ["unknown timeframe '2m'"]),
        (
            [
                "export",
                "--symbol",
                "BTCUSDT",
                "--tf",
                "1m",
                "--start",
                "2024-08-09",
                "--end",
                "2024-08-08",
            ],
            ["is after end"],
        ),
        (
            ["export", "--symbol", "BTCUSDT", "--tf", "1m", "--start", "yesterday"],
            ["not an ISO-8601 time: 'yesterday'"],
        ),
    ],
)
def test_export_errors_are_one_line(btc_db: Path, tmp_path: Path, capsys, argv, fragments) -> None:
    out = tmp_path / "never.csv"
    status, _, err = cli(capsys, *argv, "--db", btc_db, "--out", out)
    assert status == 2
    one_error_line(err, *fragments)
    assert not out.exists()


def test_missing_database_folder_and_unwritable_output_are_one_line(
    btc_db: Path, tmp_path: Path, capsys
) -> None:
    for argv, fragment in (
        (["info", "--db", tmp_path / "absent.db"], "no database at"),
        (
            [
                "export",
                "--db",
                tmp_path / "absent.db",
                "--symbol",
                "BTCUSDT",
                "--tf",
                "1m",
                "--out",
                tmp_path / "o.csv",
            ],
            "no database at",
        ),
        (
            [
                "export",
                "--db",
                btc_db,
                "--symbol",
                "BTCUSDT",
                "--tf",
                "1m",
                "--out",
                tmp_path / "no" / "dir" / "o.csv",
            ],
            "cannot write",
        ),
        (["import", "x.csv", "--db", tmp_path / "no" / "dir" / "x.db"], "does not exist"),
        (["prune", "--db", tmp_path / "no" / "dir" / "x.db"], "does not exist"),
    ):
        status, _, err = cli(capsys, *argv)
        assert status == 2, argv
        assert not one_error_line(err, fragment).endswith("None")
    assert not (tmp_path / "absent.db").exists()


def test_bad_environment_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TICKS_KEEP_HOURS", "abc")
    status, _, err = cli(capsys, "info", "--db", tmp_path / "x.db")
    assert status == 2
    one_error_line(err, "TICKS_KEEP_HOURS='abc' is not a number")


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TICKS_KEEP_HOURS": "48"}
    return subprocess.run(
        [sys.executable, "-m", "storage", *map(str, argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_real_command_line_exit_status_and_stderr(
    tmp_path: Path, storage_hft_trades, storage_real_dir: Path
) -> None:
    bad, line = _bad_trades(tmp_path, storage_hft_trades)
    good = storage_real_dir / CRYPTOFEED
    db = tmp_path / "cli.db"
    done = run_cli("import", bad, good, "--db", db)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {bad}:{line}: column price is not a number: 'abc' "
        "(nothing of this file was stored)"
    ]
    assert "cryptofeed: 91 new ticks" in done.stdout
    # Idempotent across processes, too.
    again = run_cli("import", good, "--db", db)
    assert again.returncode == 0 and "0 new ticks (91 already stored)" in again.stdout
    done = run_cli(
        "export", "--db", db, "--symbol", "CTKUSDT", "--tf", "1h", "--out", tmp_path / "o.csv"
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "unknown timeframe '1h'" in done.stderr
    usage = run_cli("export", "--db", db)  # argparse's own usage error
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    pruned = run_cli("prune", "--db", db)
    assert pruned.returncode == 0 and pruned.stdout.startswith("deleted 91 ticks")


# ---------------------------------------------------------------------------- copy: the outbox
def _outbox(db) -> tuple[pd.DataFrame, ...]:
    """Watchlist, sinks and deliveries as a reader sees them, without the engine's ids."""
    from storage import open_reader

    with open_reader(db) as r:
        events = r.alert_events()[["event_id", "bar_time_ms"]]
        deliveries = r.deliveries().merge(events, on="event_id")
        return (
            r.watchlist().drop(columns=["pair_id"]),
            r.alert_sinks().drop(columns=["sink_id"]),
            deliveries.drop(columns=["event_id", "sink_id"])
            .sort_values(["bar_time_ms", "sink"])
            .reset_index(drop=True),
        )


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_copy_carries_the_watchlist_sinks_and_outbox(engine, tmp_path, capsys, request) -> None:
    """``storage copy`` takes the watchlist, the sinks and each alert's delivery state per
    sink along, SQLite → SQLite or PostgreSQL and back; a second copy adds nothing."""
    from storage import open_writer

    src = tmp_path / "src.db"
    with open_writer(src) as w:
        w.watch_pair("BTCUSDT", "ETHUSDT", "1s", 60, "ols")
        w.watch_pair("ETHUSDT", "BTCUSDT", "1m", 30, "kalman")
        w.add_sink(name="hook", kind="webhook", target="http://127.0.0.1:9/hook")
        w.add_sink(name="tg", kind="telegram", target="env:TG_TOKEN", params={"chat_id": "-1"})
        rid = w.add_alert_rule(
            name="wide", x="BTCUSDT", y="ETHUSDT", tf="1s", metric="abs_zscore", op=">",
            threshold=2.0, cooldown_s=0.0, params={"window": 60, "method": "ols"},
        )  # fmt: skip
        for bar in (1_723_161_300_000, 1_723_161_301_000):
            w.fire_alert(rule_id=rid, bar_time_ms=bar, value=2.5, message=f"m{bar}", fired_ts_ms=7)
        w.set_sink_enabled(2, False)
        w.fire_alert(
            rule_id=rid, bar_time_ms=1_723_161_302_000, value=2.6, message="m", fired_ts_ms=8
        )
        (claimed,) = w.claim_deliveries(1, "src-worker", now_ms_=10, lease_ms=1_000, limit=1)
        w.finish_delivery(claimed.event_id, 1, "src-worker", status="delivered", now_ms_=11)
    before = _outbox(src)
    assert list(before[2]["status"]) == ["delivered", "pending", "pending", "pending", "pending"]
    dst = str(tmp_path / "dst.db") if engine == "sqlite" else request.getfixturevalue("pg_url")
    status, out, err = cli(capsys, "copy", "--from", str(src), "--to", dst)
    assert status == 0, err
    assert "3 alert events, 2 watched pairs, 2 sinks, 5 deliveries" in out
    for got, want in zip(_outbox(dst), before, strict=True):
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    status, out, _ = cli(capsys, "copy", "--from", str(src), "--to", dst)  # again: nothing new
    assert status == 0 and "0 alert events, 0 watched pairs, 0 sinks, 0 deliveries" in out
    back = tmp_path / "back.db"
    assert cli(capsys, "copy", "--from", dst, "--to", f"sqlite:///{back}")[0] == 0
    for got, want in zip(_outbox(back), before, strict=True):
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_iso_formats_round_trip_through_the_one_parser() -> None:
    """``storage.timefmt`` is the one home of ISO-8601 times: ms, whole seconds, parse."""
    from storage.timefmt import iso_from_ms, iso_seconds, ms_to_iso, parse_iso_ms

    ms = 1_723_161_256_322
    assert iso_from_ms(ms) == "2024-08-08T23:54:16.322Z" == ms_to_iso([ms])[0]
    assert iso_seconds([ms, ms + 1000]).tolist() == ["2024-08-08T23:54:16Z", "2024-08-08T23:54:17Z"]
    assert parse_iso_ms(iso_from_ms(ms)) == ms
    assert parse_iso_ms(iso_seconds([ms])[0]) == ms - 322
