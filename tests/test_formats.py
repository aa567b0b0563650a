"""``formats``: strict numbers and ids, bounded JSON, and one verdict for every consumer.

Each hostile value is tried where it enters: a WebSocket frame (``parse_message``), a REST
row, a line of a recorded file given to ``storage import`` and to the replay loader, and a
CSV dump cell. Every case here was accepted (or crashed) before ``formats`` existed.
"""

from __future__ import annotations

import ast
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats import Limits, ParseError, parse_message, parse_rest_agg_trade, parse_rest_kline
from formats.numbers import INT64_MAX, loads_bounded
from replay import load_recording
from storage.__main__ import main as storage_main

ROOT = Path(__file__).resolve().parents[1]

#: A real frame (the cryptofeed capture's first aggTrade, as in ``parse_agg_trade``'s docs).
AGG = {
    "e": "aggTrade",
    "E": 1626992741575,
    "a": 16599292,
    "s": "CTKUSDT",
    "p": "1.01100",
    "q": "10",
    "f": 23961322,
    "l": 23961322,
    "T": 1626992741421,
    "m": False,
}
#: A real ``@trade`` capture line (the bundled sample's first ETHUSDT print).
CAPTURE = (
    '1723161255290656866 {"stream":"ethusdt@trade","data":{"e":"trade","E":1723161256560,'
    '"T":1723161256560,"s":"ETHUSDT","t":4308068523,"p":"2681.62","q":"1.000","X":"MARKET",'
    '"m":true}}'
)

#: Not Binance's decimal strings, though ``float()`` takes every one of them.
BAD_DECIMALS = [
    "1_000",
    "+5",
    " 61800.3 ",
    "61800.3\n",
    "６１８００.３",  # full-width digits
    "٦١٨٠٠",  # Arabic-Indic digits
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "1e5",
    "1E-8",
    "-1.5",
    ".5",
    "5.",
    "0x10",
    "",
]


def frame(**changes) -> str:
    return json.dumps({**AGG, **changes})


@pytest.mark.parametrize("text", BAD_DECIMALS)
def test_prices_and_quantities_are_exactly_binance_decimals_on_the_wire(text):
    for field in ("p", "q"):
        with pytest.raises(ParseError) as info:
            parse_message(frame(**{field: text}))
        assert info.value.reason == ("bad_price" if field == "p" else "bad_qty")
    row = {"a": 1, "p": text, "q": "1", "f": 1, "l": 1, "T": 1, "m": True}
    with pytest.raises(ParseError):
        parse_rest_agg_trade(row, "BTCUSDT")
    kline = [0, text, "2", "0.5", "1.5", "10", 59_999, "15", 3, "4", "6", "0"]
    with pytest.raises(ParseError) as info:
        parse_rest_kline(kline)
    assert info.value.reason == "bad_kline"


@pytest.mark.parametrize("text", ["1_000", "+5", " 61800.3 ", "６１８００.３", "1e5"])
def test_files_refuse_the_same_numbers_in_import_and_replay(tmp_path, capsys, text):
    cap = tmp_path / "cap.txt"
    cap.write_text(CAPTURE.replace('"p":"2681.62"', json.dumps({"p": text})[1:-1]) + "\n")
    with pytest.raises(ParseError, match=r"cap\.txt:1: .*bad trade message"):
        load_recording([cap])
    assert storage_main(["import", str(cap), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{cap}:1: " in err[0]
    dump = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    dump.write_text(f"1,100.5,1.0,100.5,1723161256322,true\n2,{text},1.0,1.0,1723161256323,true\n")
    assert storage_main(["import", str(dump), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{dump}:2: column price is not a number" in err[0]


@pytest.mark.parametrize("ident", [2**63, 2**64, 10**30, -1, True, 1.0, "1"])
def test_ids_and_times_are_signed_64_bit_integers(ident):
    for field in ("a", "T", "f", "l", "E"):
        with pytest.raises(ParseError) as info:
            parse_message(frame(**{field: ident}))
        assert info.value.reason == "bad_field", field
    assert parse_message(frame(a=INT64_MAX)).trade_id == INT64_MAX


def test_ids_beyond_64_bits_are_refused_in_dumps(tmp_path, capsys):
    dump = tmp_path / "ETHUSDT-aggTrades-2024-08-08.csv"
    dump.write_text(f"{2**63},2681.62,1.0,1,1,1723161256560,true\n")
    assert storage_main(["import", str(dump), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert f"{dump}:1: column agg_trade_id is not an integer in 0..2^63-1" in err


def test_deeply_nested_frame_is_refused_with_a_reason_not_a_recursion_error():
    for payload in ("[" * 100_000, "{" + '"a":' * 0 + "[" * 100_000 + "]" * 100_000 + "}"):
        with pytest.raises(ParseError) as info:
            parse_message(payload)
        assert info.value.reason == "too_deep"
        assert "MAX_JSON_DEPTH" in str(info.value)
    # Brackets inside strings are not nesting; a real depth-3 message passes the scan.
    text = json.dumps({"s": "[" * 500, "b": [["1", "2"]] * 40})
    assert loads_bounded(text)["s"] == "[" * 500


def test_frame_size_is_bounded():
    big = frame(s="BTCUSDT", pad="x" * (2 * 1024 * 1024))
    with pytest.raises(ParseError) as info:
        parse_message(big)
    assert info.value.reason == "too_large" and "MAX_FRAME_BYTES" in str(info.value)
    with pytest.raises(ParseError):
        parse_message(frame(), limits=Limits(max_frame_bytes=100))
    assert parse_message(frame(), limits=Limits(max_frame_bytes=1000)).trade_id == 16599292


def test_nan_and_infinity_literals_are_not_json_numbers(tmp_path):
    with pytest.raises(ParseError) as info:
        loads_bounded('{"price": NaN}')
    assert info.value.reason == "bad_number"
    ndjson = tmp_path / "collector.ndjson"
    good = '{"symbol": "BTCUSDT", "ts": "2024-08-08T23:54:16.322Z", "price": 61800.3, "size": 1}'
    for bad in ("NaN", "Infinity", "1e999", "-5", "0", "true", '"+5"'):
        ndjson.write_text(good + "\n" + good.replace("61800.3", bad) + "\n")
        with pytest.raises(ParseError, match=r"collector\.ndjson:2: "):
            load_recording([ndjson])


def test_limits_come_from_the_environment_and_bad_values_are_named():
    lim = Limits.from_env({"MAX_RECORDING_MB": "5", "MAX_LINE_BYTES": "4096"})
    assert (lim.max_recording_bytes, lim.max_line_bytes) == (5 * 1024 * 1024, 4096)
    assert Limits.from_env({}) == Limits()
    for bad in ("abc", "0", "-1", "1.5", "nan"):
        with pytest.raises(ValueError, match="MAX_JSON_DEPTH="):
            Limits.from_env({"MAX_JSON_DEPTH": bad})


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value="0.00000001", max_value="1e9", places=8, allow_nan=False))
def test_every_plain_decimal_parses_to_its_value(value: Decimal):
    text = f"{value:f}"
    tick = parse_message(frame(p=text, q=text))
    assert tick.price == float(text) == tick.qty


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_anything_but_ascii_digits_and_one_point_is_refused(text: str):
    plain = text.isascii() and text.replace(".", "", 1).isdigit()
    plain = plain and not text.startswith(".") and not text.endswith(".")
    try:
        tick = parse_message(frame(p=text))
    except ParseError as exc:
        assert exc.reason == "bad_price"
        assert not plain or float(text) == 0
    else:
        assert plain and tick.price == float(text) > 0


# ------------------------------------------------------------------------------ layering
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_one_home_and_imports_flow_one_way():
    project = {"formats", "storage", "ingestion", "service", "analytics", "ui", "app"}
    for path in (ROOT / "formats").glob("*.py"):  # besides config, which all may import
        ours = {m for m in _imports(path) if m.split(".")[0] in project}
        assert ours <= {"storage.records"} | {m for m in ours if m.startswith("formats")}, path
    for path in (ROOT / "storage").glob("*.py"):
        tops = {m.split(".")[0] for m in _imports(path)}
        assert "ingestion" not in tops, path
        if path.name != "__main__.py":  # the command line sits above both
            assert "formats" not in tops, path
    assert not (ROOT / "storage" / "formats.py").exists()
    # No second parser of Binance payloads outside formats/.
    assert not (ROOT / "ingestion" / "parse.py").exists()
    for path in [*(ROOT / "ingestion").glob("*.py"), *(ROOT / "storage").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "KLINE_COLUMNS = [" not in text and "def _open_text" not in text, path


def _depth(value) -> int:
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(v) for v in items), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\a', max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, limit=st.integers(1, 8))
def test_depth_limit_matches_the_true_nesting_depth(value, limit):
    text = json.dumps(value)
    try:
        parsed = loads_bounded(text, Limits(max_json_depth=limit))
    except ParseError as exc:
        assert exc.reason == "too_deep" and _depth(value) > limit
    else:
        assert parsed == value and _depth(value) <= limit


# ------------------------------------------------------------------------------ REST bodies
@pytest.fixture()
def hostile_rest():
    """A real local HTTP server on port 0 whose every body is 100,000 ``[``."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"[" * 100_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_deeply_nested_rest_body_is_a_rest_error_not_a_recursion_error(hostile_rest):
    from ingestion.rest import RestClient, RestError

    rest = RestClient(hostile_rest, max_retries=0)
    with pytest.raises(RestError, match=r"invalid JSON \(too_deep\)"):
        rest.agg_trades("BTCUSDT", from_id=1, limit=10)
