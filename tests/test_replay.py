"""The replay server: recording formats, derived aggregates, WebSocket protocol, REST, CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from websocket import ABNF, WebSocketTimeoutException, create_connection

from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording, start_replay_server
from replay.faults import Faults
from tests.conftest import killed_on_exit, wait_for

ROOT = Path(__file__).resolve().parents[1]
CRYPTOFEED = (
    ROOT.parent
    / "shared"
    / "data"
    / "real"
    / "binance_usdm_ws_cryptofeed"
    / ("BINANCE_FUTURES.ws.1.0")
)


def _sample_lines() -> list[str]:
    with gzip.open(SAMPLE_RECORDING, "rt", encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in fh]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read()), response.headers


@pytest.fixture(scope="module")
def sample():
    return load_recording([SAMPLE_RECORDING])


# --------------------------------------------------------------------------- the sample
def test_sample_matches_its_documented_provenance():
    readme = (ROOT / "samples" / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(SAMPLE_RECORDING.read_bytes()).hexdigest()
    assert digest in readme
    assert "c4183c646c744222812405fb3618a39ab75a4a8d" in readme
    shared = ROOT.parent / "shared" / "data" / "real" / "binance_usdm_ws_hftbacktest"
    if not shared.is_dir():
        pytest.skip("shared real data missing")
    # Byte-identical lines: every sample line occurs in the original capture.
    originals = set()
    for name in ("btcusdt_20240808.gz", "ethusdt_20240808.gz"):
        with gzip.open(shared / name, "rt", encoding="utf-8") as fh:
            originals.update(line.rstrip("\n") for line in fh if '@trade"' in line)
    lines = _sample_lines()
    assert len(lines) == len(originals) == 35_389
    assert set(lines) == originals


def test_sample_loads_with_derived_aggregates(sample):
    assert set(sample.symbols) == {"BTCUSDT", "ETHUSDT"}
    for symbol, first, last in (
        ("BTCUSDT", 5266583935, 5266605247),
        ("ETHUSDT", 4308068523, 4308082598),
    ):
        rec = sample.symbols[symbol]
        assert rec.aggs_derived and rec.trades is not None
        assert rec.trades.ids == list(range(first, last + 1))
        aggs = rec.aggs
        assert aggs.ids == list(range(1, len(aggs) + 1))
        # f..l ranges tile the trade ids exactly, in order.
        assert aggs.first_id[0] == first and aggs.last_id[-1] == last
        assert all(aggs.first_id[i + 1] == aggs.last_id[i] + 1 for i in range(len(aggs) - 1))
        # Volume is conserved exactly; each aggregate is one ms, one price, one side.
        assert sum(map(Decimal, aggs.qty)) == sum(map(Decimal, rec.trades.qty))
        index = {t: i for i, t in enumerate(rec.trades.ids)}
        for j in range(0, len(aggs), 97):
            members = range(index[aggs.first_id[j]], index[aggs.last_id[j]] + 1)
            assert {rec.trades.ts_ms[i] for i in members} == {aggs.ts_ms[j]}
            assert {rec.trades.price[i] for i in members} == {aggs.price[j]}
            assert {rec.trades.buyer_maker[i] for i in members} == {aggs.buyer_maker[j]}
    assert len(sample.symbols["BTCUSDT"].aggs) == 10_447
    assert len(sample.symbols["ETHUSDT"].aggs) == 6_209


def test_other_formats_load(tmp_path):
    lines = _sample_lines()[:400]
    payloads = [line.split(" ", 1)[1] for line in lines]
    # Plain combined JSON lines, and raw payloads (data only).
    (tmp_path / "combined.jsonl").write_text("\n".join(payloads) + "\n")
    raw = [json.dumps(json.loads(p)["data"]) for p in payloads]
    (tmp_path / "raw.jsonl").write_text("\n".join(raw) + "\n")
    # The original collector's NDJSON made from the same real prints.
    ndjson = []
    for p in payloads:
        d = json.loads(p)["data"]
        ts = datetime.fromtimestamp(d["T"] / 1000, UTC).isoformat(timespec="milliseconds")
        ndjson.append(
            json.dumps(
                {
                    "symbol": d["s"],
                    "ts": ts.replace("+00:00", "Z"),
                    "price": float(d["p"]),
                    "size": float(d["q"]),
                }
            )
        )
    (tmp_path / "collector.ndjson").write_text("\n".join(ndjson) + "\n")
    expected = load_recording([_write_gz(tmp_path / "cap.gz", lines)])
    for name in ("combined.jsonl", "raw.jsonl"):
        rec = load_recording([tmp_path / name])
        for symbol, sym_rec in expected.symbols.items():
            assert rec.symbols[symbol].trades.ids == sym_rec.trades.ids
            assert rec.symbols[symbol].aggs.qty == sym_rec.aggs.qty
    rec = load_recording([tmp_path / "collector.ndjson"])
    for symbol, sym_rec in expected.symbols.items():
        got = rec.symbols[symbol].trades
        assert got.ids == list(range(1, len(sym_rec.trades) + 1))  # synthetic, file order
        assert got.ts_ms == sym_rec.trades.ts_ms
        assert [float(p) for p in got.price] == [float(p) for p in sym_rec.trades.price]
    with pytest.raises(ValueError, match="no trades"):
        load_recording([_write(tmp_path / "empty.txt", ["not a trade", "{}"])])


def test_cryptofeed_capture_keeps_real_aggregate_ids():
    if not CRYPTOFEED.is_file():
        pytest.skip("shared real data missing")
    rec = load_recording([CRYPTOFEED])
    assert sum(len(r.aggs) for r in rec.symbols.values()) == 91
    ctk = rec.symbols["CTKUSDT"]
    assert not ctk.aggs_derived and ctk.trades is None
    assert 16599292 in ctk.aggs.ids
    assert rec.skipped_lines > 1000  # book, depth, kline lines and the header


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- WebSocket
def test_websocket_raw_combined_and_trade_routes(sample):
    with FakeBinance(sample, speed=50, preroll_s=10) as server:
        raw = create_connection(server.ws_base + "/market/ws/btcusdt@aggTrade", timeout=5)
        combined = create_connection(
            server.ws_base + "/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade", timeout=5
        )
        trades = create_connection(server.ws_base + "/public/ws/ethusdt@trade", timeout=5)
        first = json.loads(raw.recv())
        assert first["e"] == "aggTrade" and first["s"] == "BTCUSDT"
        assert set(first) >= {"E", "a", "p", "q", "f", "l", "T", "m"}
        seen = set()
        for _ in range(200):
            msg = json.loads(combined.recv())
            assert msg["stream"] == msg["data"]["s"].lower() + "@aggTrade"
            seen.add(msg["data"]["s"])
        assert seen == {"BTCUSDT", "ETHUSDT"}
        t = json.loads(trades.recv())
        assert t["e"] == "trade" and t["X"] == "MARKET" and t["s"] == "ETHUSDT"
        # Consecutive aggregate ids and non-decreasing times on one connection.
        ids, times = [first["a"]], [first["T"]]
        for _ in range(100):
            m = json.loads(raw.recv())
            ids.append(m["a"])
            times.append(m["T"])
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert times == sorted(times)
        for ws in (raw, combined, trades):
            ws.close()


@pytest.mark.parametrize(
    "path",
    [
        "/ws/btcusdt@aggTrade",
        "/stream?streams=btcusdt@aggTrade",
        "/market/ws/btcusdt@trade",
        "/public/ws/btcusdt@aggTrade",
        "/market/ws/BTCUSDT@aggTrade",
        "/market/ws/foousdt@aggTrade",
    ],
)
def test_unrouted_or_wrong_paths_connect_and_stay_silent(sample, path):
    with FakeBinance(sample, speed=50) as server:
        ws = create_connection(server.ws_base + path, timeout=5)
        stream = re.split(r"[/=]", path)[-1]
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 7}))
        assert json.loads(ws.recv()) == {"result": None, "id": 7}  # acknowledged ...
        ws.settimeout(0.4)
        with pytest.raises(WebSocketTimeoutException):
            ws.recv()  # ... and then nothing, like Binance's retired URLs
        ws.close()


def test_server_pings_are_answered_and_client_pings_echoed(sample):
    with FakeBinance(sample, speed=1, ping_interval_s=0.1, pong_timeout_s=1) as server:
        ws = create_connection(server.ws_base + "/market/ws/btcusdt@aggTrade", timeout=5)
        # websocket-client answers pings inside recv(); read until the server saw pongs.
        deadline = time.monotonic() + 5
        while server.stats.pongs_ok < 3 and time.monotonic() < deadline:
            ws.recv_data(control_frame=True)
        assert server.stats.pongs_ok >= 3 and server.stats.pongs_bad == 0
        ws.ping(b"hello-42")
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == ABNF.OPCODE_PONG:
                assert data == b"hello-42"
                break
        ws.close()


def test_client_that_ignores_pings_is_disconnected(sample):
    with FakeBinance(sample, speed=1, ping_interval_s=0.1, pong_timeout_s=0.3) as server:
        ws = create_connection(server.ws_base + "/ws/btcusdt@aggTrade", timeout=5)
        # Never read: pings pile up unanswered, so the server must close within ~0.4 s.
        wait_for(lambda: server.live_connections() == 0, 5, "the server to drop the client")
        ws.close()


def test_loop_continues_ids_and_times_upwards(sample):
    with FakeBinance(sample, speed=0, loop=True) as server:
        ws = create_connection(server.ws_base + "/market/ws/ethusdt@aggTrade", timeout=5)
        size = len(sample.symbols["ETHUSDT"].aggs)
        ids, times = [], []
        for _ in range(2 * size + 10):
            m = json.loads(ws.recv())
            ids.append(m["a"])
            times.append(m["T"])
        assert ids == list(range(1, 2 * size + 11))
        assert times == sorted(times) and times[size] > times[size - 1]
        ws.close()


def test_max_connection_age_cuts_like_the_24h_limit(sample):
    faults = Faults(max_connection_s=0.3)
    with FakeBinance(sample, speed=1, faults=faults) as server:
        ws = create_connection(server.ws_base + "/market/ws/btcusdt@aggTrade", timeout=5)
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == ABNF.OPCODE_CLOSE:
                assert int.from_bytes(data[:2], "big") == 1000
                break
        ws.close()


# --------------------------------------------------------------------------- REST
def test_rest_agg_trades_by_id_and_time(sample):
    with FakeBinance(sample, speed=0) as server:
        base = server.rest_base + "/fapi/v1/aggTrades?symbol=BTCUSDT"
        ids = []
        next_id = 1
        while True:
            rows, headers = _get(f"{base}&fromId={next_id}&limit=1000")
            if not rows:
                break
            ids += [r["a"] for r in rows]
            next_id = rows[-1]["a"] + 1
        assert ids == server.source_ids("BTCUSDT")
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 20 * 11
        rows, _ = _get(f"{base}&fromId=500&limit=3")
        assert [r["a"] for r in rows] == [500, 501, 502] and set(rows[0]) == {
            "a",
            "p",
            "q",
            "f",
            "l",
            "T",
            "m",
        }
        t0 = rows[1]["T"]
        by_time, _ = _get(f"{base}&startTime={t0}&endTime={t0 + 2000}&limit=1000")
        assert by_time and all(t0 <= r["T"] <= t0 + 2000 for r in by_time)
        assert by_time[0]["a"] <= 501  # inclusive start
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(f"{base}&startTime={t0}&endTime={t0 + 3_600_000}")
        assert info.value.code == 400 and json.loads(info.value.read())["code"] == -1127
        recent, _ = _get(server.rest_base + "/fapi/v1/trades?symbol=ETHUSDT&limit=5")
        assert [r["id"] for r in recent] == list(range(4308082594, 4308082599))


def test_rest_unknown_symbol_exchange_info_and_klines(sample):
    faults = Faults(extra_symbols=[{"symbol": "OLDUSDT", "status": "SETTLING"}])
    with FakeBinance(sample, speed=0, faults=faults) as server:
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(server.rest_base + "/fapi/v1/aggTrades?symbol=FOOUSDT")
        assert info.value.code == 400
        assert json.loads(info.value.read()) == {"code": -1121, "msg": "Invalid symbol."}
        exchange, _ = _get(server.rest_base + "/fapi/v1/exchangeInfo")
        status = {s["symbol"]: (s["status"], s["contractType"]) for s in exchange["symbols"]}
        assert status == {
            "BTCUSDT": ("TRADING", "PERPETUAL"),
            "ETHUSDT": ("TRADING", "PERPETUAL"),
            "OLDUSDT": ("SETTLING", "PERPETUAL"),
        }
        assert exchange["rateLimits"][0]["limit"] == 2400
        klines, _ = _get(server.rest_base + "/fapi/v1/klines?symbol=ETHUSDT&interval=1m&limit=1500")
        rec = sample.symbols["ETHUSDT"]
        assert sum(Decimal(k[5]) for k in klines) == sum(map(Decimal, rec.trades.qty))
        assert sum(k[8] for k in klines) == len(rec.trades)
        assert all(Decimal(k[3]) <= min(Decimal(k[1]), Decimal(k[4])) for k in klines)
        assert all(k[6] == k[0] + 59_999 and k[0] % 60_000 == 0 for k in klines)


def test_rest_weight_limit_gives_429_with_retry_after(sample):
    with FakeBinance(sample, speed=0, weight_limit_per_min=40) as server:
        url = server.rest_base + "/fapi/v1/aggTrades?symbol=BTCUSDT&limit=1"
        if time.time() % 60 > 58:  # do not straddle the minute the weight is counted in
            time.sleep(60 - time.time() % 60 + 0.1)
        _get(url)
        _get(url)
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(url)
        assert info.value.code == 429 and int(info.value.headers["Retry-After"]) >= 1


# --------------------------------------------------------------------------- in-process + CLI
def test_start_replay_server_handle_defaults_to_the_sample():
    handle = start_replay_server(speed=0, loop=False)
    try:
        assert handle.port > 0
        assert handle.ws_base == f"ws://127.0.0.1:{handle.port}"
        assert handle.rest_base == f"http://127.0.0.1:{handle.port}"
        info, _ = _get(handle.rest_base + "/fapi/v1/exchangeInfo")
        assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
    finally:
        handle.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(handle.rest_base + "/fapi/v1/ping", timeout=1)


def test_replay_cli_serves_until_sigterm(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replay",
            "--port",
            "0",
            "--speed",
            "5",
            "--loop",
            str(SAMPLE_RECORDING),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    with killed_on_exit(proc):
        line = proc.stdout.readline()
        match = re.search(r"ws=(ws://\S+) rest=(http://\S+)", line)
        assert match, line
        ws = create_connection(match.group(1) + "/market/ws/ethusdt@aggTrade", timeout=5)
        assert json.loads(ws.recv())["s"] == "ETHUSDT"
        ws.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def replay_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """``python -m replay --port 0 ARGS`` as a process, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "replay", "--port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_replay_cli_rejects_a_missing_file(tmp_path):
    result = replay_cli(str(tmp_path / "nope.gz"), timeout_s=30)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_source_ids_group_by_symbol(sample):
    with FakeBinance(sample, speed=0) as server:
        by_symbol = defaultdict(int)
        for symbol in sample.symbols:
            by_symbol[symbol] = len(server.source_ids(symbol))
        assert by_symbol == {"BTCUSDT": 10_447, "ETHUSDT": 6_209}
        assert server.source_ids("ETHUSDT", "trade")[0] == 4308068523


def test_id_offset_shifts_every_served_id(sample):
    with FakeBinance(sample, speed=0, id_offset=10_000) as server:
        ws = create_connection(server.ws_base + "/market/ws/btcusdt@aggTrade", timeout=5)
        first = json.loads(ws.recv())
        ws.close()
        rec = sample.symbols["BTCUSDT"]
        assert first["a"] == 10_001
        assert (first["f"], first["l"]) == (
            rec.aggs.first_id[0] + 10_000,
            rec.aggs.last_id[0] + 10_000,
        )
        rows, _ = _get(server.rest_base + "/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=10500&limit=2")
        assert [r["a"] for r in rows] == [10_500, 10_501]
        assert server.source_ids("BTCUSDT")[0] == 10_001


def test_a_restarted_replay_never_reuses_ids():
    first = start_replay_server(speed=0, loop=False)
    try:
        last_of_first = first.source_ids("ETHUSDT")[-1]
    finally:
        first.stop()
    second = start_replay_server(speed=0, loop=False)
    try:
        assert second.source_ids("ETHUSDT")[0] > last_of_first
    finally:
        second.stop()
