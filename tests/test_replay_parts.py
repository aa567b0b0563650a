"""The replay server's parts on their own: WebSocket framing, pacing, and faults kept apart.

Framing and pacing are checked without a socket or the wall clock (the ``Timeline`` takes its
clock as a parameter); the fault separation is checked in a fresh interpreter, where a replay
started without faults must not even import ``replay.faults``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from replay.faults import Faults
from replay.framing import (
    MAX_CLIENT_FRAME_BYTES,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    accept_key,
    encode_frame,
    read_frame,
)
from replay.recording import Recording, SymbolRecording, TradeColumns
from replay.timeline import Timeline
from tests.test_replay import replay_cli

ROOT = Path(__file__).resolve().parents[1]


def _client_frame(opcode: int, payload: bytes, mask: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame, written independently of ``replay.framing`` (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


# --------------------------------------------------------------------------- framing
def test_accept_key_is_the_rfc_6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("size", "header_bytes"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (300_000, 10)],
    ids=["empty", "7-bit max", "16-bit min", "16-bit max", "64-bit min", "64-bit"],
)
def test_server_frames_read_back_in_each_length_form(size, header_bytes):
    payload = bytes(i % 251 for i in range(size))
    frame = encode_frame(OP_TEXT, payload)
    assert len(frame) == header_bytes + size
    assert frame[0] == 0x80 | OP_TEXT and not frame[1] & 0x80  # final, unmasked
    assert read_frame(io.BytesIO(frame)) == (OP_TEXT, True, payload)


@pytest.mark.parametrize("size", [0, 5, 125, 126, 1000, 65535, 65536, 200_000])
def test_masked_client_frames_are_unmasked(size):
    payload = bytes((7 * i) % 256 for i in range(size))
    frame = _client_frame(OP_TEXT, payload, b"\x9f\x01\xfe\x33")
    assert read_frame(io.BytesIO(frame)) == (OP_TEXT, True, payload)


def test_frames_follow_each_other_and_fragments_keep_fin_clear():
    stream = io.BytesIO(
        encode_frame(OP_TEXT, b'{"e":', fin=False)
        + encode_frame(OP_CONT, b"1}")
        + _client_frame(OP_PING, b"hello", b"\x00\xff\x10\x20")
    )
    assert read_frame(stream) == (OP_TEXT, False, b'{"e":')
    assert read_frame(stream) == (OP_CONT, True, b"1}")
    assert read_frame(stream) == (OP_PING, True, b"hello")
    with pytest.raises(ConnectionError):
        read_frame(stream)  # end of stream


def test_a_truncated_or_oversized_client_frame_ends_the_connection():
    frame = _client_frame(OP_TEXT, b"x" * 300, b"abcd")
    with pytest.raises(ConnectionError):
        read_frame(io.BytesIO(frame[:-1]))
    header = struct.pack("!BBQ", 0x80 | OP_TEXT, 0x80 | 127, MAX_CLIENT_FRAME_BYTES + 1)
    with pytest.raises(ConnectionError, match="too large"):
        read_frame(io.BytesIO(header + b"abcd"))


# --------------------------------------------------------------------------- pacing
def _recording() -> Recording:
    """Three aggregates of one symbol at recorded times 1.0 s, 1.5 s and 3.0 s."""
    cols = TradeColumns()
    rows = [
        (10, 1_000, 1_001, "100.0", "1", False, 100, 101),
        (11, 1_500, 1_502, "101.0", "2", True, 102, 102),
        (12, 3_000, 3_000, "110.0", "1", False, 103, 105),
    ]
    for row in rows:
        cols.append(row)
    return Recording({"BTCUSDT": SymbolRecording("BTCUSDT", None, cols, False)}, [])


class _Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_served_times_start_now_and_follow_the_recorded_gaps_at_speed():
    clock = _Clock(100.0)
    timeline = Timeline(_recording(), speed=2.0, clock=clock)
    view = timeline.views[("BTCUSDT", "agg")]
    assert [timeline.ts_of(view, n) for n in range(3)] == [100_000, 100_250, 101_000]
    assert [timeline.due_wall_s(view, n) for n in range(3)] == [100.0, 100.25, 101.0]
    assert timeline.published_end(view) == 1  # only the first is due at 100.0 s
    clock.now_s = 100.3
    assert timeline.published_end(view) == 2
    clock.now_s = 200.0
    assert timeline.published_end(view) == 3  # not looping: three is all there is
    payload = json.loads(timeline.ws_payload(view, 1))
    assert payload == {
        "e": "aggTrade",
        "E": 100_252,  # the recorded E - T of 2 ms is kept
        "a": 11,
        "s": "BTCUSDT",
        "p": "101.0",
        "q": "2",
        "f": 102,
        "l": 102,
        "T": 100_250,
        "m": True,
    }


def test_preroll_is_in_the_past_and_published_at_once():
    clock = _Clock(100.0)
    timeline = Timeline(_recording(), speed=1.0, preroll_s=1.0, clock=clock)
    view = timeline.views[("BTCUSDT", "agg")]
    assert [timeline.ts_of(view, n) for n in range(3)] == [99_000, 99_500, 101_000]
    assert timeline.published_end(view) == 2
    assert timeline.n_after_time(view, clock() * 1000) == 2  # a new connection starts here


def test_a_loop_continues_ids_times_and_prices_upwards():
    timeline = Timeline(_recording(), speed=1.0, loop=True, clock=_Clock(100.0))
    view = timeline.views[("BTCUSDT", "agg")]
    span_ms = 3_000 - 1_000 + 1_000  # recording plus the 1 s loop pause
    assert [view.id_of(n) for n in range(6)] == [10, 11, 12, 13, 14, 15]
    assert timeline.ts_of(view, 3) == 100_000 + span_ms
    assert view.price_of(3) == "110.0"  # the second pass starts where the first ended
    assert view.price_of(5) == "121.0"  # 110 × 1.1
    row = timeline.rest_row(view, 4)
    assert (row["a"], row["f"], row["l"]) == (14, 102 + 6, 102 + 6)  # trade ids move up too
    for n in range(9):
        assert timeline.n_after_time(view, timeline.ts_of(view, n)) == n + 1
        assert view.n_of_id(view.id_of(n), loop=True) == n


def test_speed_zero_publishes_everything_and_recorded_times_without_rebase():
    timeline = Timeline(_recording(), speed=0, rebase_time=False, clock=_Clock(100.0))
    view = timeline.views[("BTCUSDT", "agg")]
    assert timeline.published_end(view) == 3
    assert [timeline.ts_of(view, n) for n in range(3)] == [1_000, 1_500, 3_000]
    assert timeline.due_wall_s(view, 2) == 0.0  # as fast as the socket takes it


@pytest.mark.parametrize(("speed", "rate"), [(-1.0, None), (float("nan"), None), (1.0, 0.0)])
def test_bad_pacing_is_refused(speed, rate):
    with pytest.raises(ValueError, match=r"speed|rate"):
        Timeline(_recording(), speed=speed, rate=rate)


# --------------------------------------------------------------------------- faults apart
_PRODUCT_PATH = """
import sys
import urllib.request
from websocket import create_connection
from service.feeds import start_replay
server = start_replay({sample!r}, 1.0)
try:
    urllib.request.urlopen(server.rest_base + "/fapi/v1/aggTrades?symbol=BTCUSDT", timeout=10)
    ws = create_connection(server.ws_base + "/market/ws/btcusdt@aggTrade", timeout=10)
    assert '"e":"aggTrade"' in ws.recv()
    ws.close()
finally:
    server.stop()
print(sorted(m for m in sys.modules if m == "replay" or m.startswith("replay.")))
"""


def test_the_dashboard_replay_runs_without_the_fault_code():
    from config import SAMPLE_RECORDING

    code = _PRODUCT_PATH.format(sample=[str(SAMPLE_RECORDING)])
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.strip().splitlines()[-1]
    assert "replay.server" in loaded and "replay.rest" in loaded, loaded
    assert "replay.faults" not in loaded, loaded


def test_fault_options_of_the_command_line():
    faults = Faults.from_options(
        ["garbage_every=25", "drop_after=50,200", "skip_ids=5,6", "silent", "rest-down=false"]
    )
    assert faults == Faults(garbage_every=25, drop_after=[50, 200], skip_ids={5, 6}, silent=True)
    assert Faults.from_options(["hostile=ping_flood,none,silent"]).hostile == [
        "ping_flood",
        None,
        "silent",
    ]
    assert Faults.from_options(["max_connection_s=1.5"]).max_connection_s == 1.5
    for bad, reason in [
        ("garbage_evry=2", "not a fault option"),
        ("garbage_every=x", "invalid literal"),
        ("garbage_every", "needs a value"),
        ("hostile=loud", "not one of"),
        ("rest_min_id=5", "not a fault option"),
        ("silent=maybe", "not true or false"),
    ]:
        with pytest.raises(ValueError, match=reason):
            Faults.from_options([bad])


def test_the_command_line_refuses_a_misspelt_fault_in_one_line():
    result = replay_cli("--fault", "drop_aftr=5")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "drop_aftr" in result.stderr and "Traceback" not in result.stderr
