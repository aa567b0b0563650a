"""The headless collector with ``--alerts``: the alerts file, validated, and its alerts delivered.

The end-to-end test replays the real BTCUSDT/ETHUSDT recording through the local Binance
look-alike, runs ``python -m ingestion --alerts`` against it, and checks that the alerts that
reach a local webhook are exactly the crossings computed here, independently (a plain
per-window least-squares fit), from the bars the collector stored.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from replay import FakeBinance, load_recording
from service.alertfile import AlertFileError, parse_config
from storage import open_reader
from tests.alert_endpoints import Endpoint
from tests.conftest import (
    collector_env,
    killed_on_exit,
    start_collector,
    stop_with_sigint,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "binance_usdm_ws_hftbacktest"
WINDOW, THRESHOLD = 30, 1.5

GOOD = """
[[pairs]]
x = "BTCUSDT"
y = "ETHUSDT"
tf = "1s"
window = 60
method = "ols"

[[rules]]
pair = "BTCUSDT/ETHUSDT"
metric = "abs_zscore"
op = ">"
threshold = 2.0
cooldown_s = 0

[[sinks]]
kind = "webhook"
url = "http://127.0.0.1:9999/hook"
"""


def test_a_valid_file_parses() -> None:
    cfg = parse_config(GOOD, environ={})
    assert cfg.symbols == ["BTCUSDT", "ETHUSDT"]
    (rule,) = cfg.rules
    assert (rule.key.window, rule.metric, rule.threshold) == (60, "abs_zscore", 2.0)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (("threshold = 2.0", "treshold = 2.0"), "rules[1]: unknown key 'treshold' (did you mean"),
        (('metric = "abs_zscore"', 'metric = "zscroe"'), "rules[1]: unknown metric 'zscroe'"),
        (('url = "http://127.0.0.1:9999/hook"', 'url = "ftp://x/hook"'), "must be an http(s)"),
        (('url = "http://127.0.0.1:9999/hook"', 'url = "http://:99/x"'), "has no host"),
        (('url = "http://127.0.0.1:9999/hook"', 'url_env = "NO_SUCH_VAR_QD"'), "NO_SUCH_VAR_QD"),
        (('pair = "BTCUSDT/ETHUSDT"', 'pair = "BTCUSDT/SOLUSDT"'), "is not in [[pairs]]"),
        (("[[sinks]]", "[[sink]]"), "unknown section 'sink' (did you mean [[sinks]]?)"),
        (("window = 60", "window = 60\nwindow = 61"), "not valid TOML"),
        (('kind = "webhook"', 'kind = "email"'), "kind must be one of"),
    ],
)
def test_bad_files_are_refused_naming_the_problem(edit: tuple[str, str], needle: str) -> None:
    text = GOOD.replace(*edit)
    assert text != GOOD
    with pytest.raises(AlertFileError) as info:
        parse_config(text, environ={})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_telegram_sink_needs_its_token_variable() -> None:
    tg = GOOD + '\n[[sinks]]\nkind = "telegram"\ntoken_env = "TG_TOKEN_QD"\nchat_id = 42\n'
    with pytest.raises(AlertFileError, match=r"sinks\[2\]: .*TG_TOKEN_QD is not set"):
        parse_config(tg, environ={})
    cfg = parse_config(tg, environ={"TG_TOKEN_QD": "123:abc"})
    assert cfg.sinks[1].target == "env:TG_TOKEN_QD" and cfg.sinks[1].params["chat_id"] == "42"
    bad = tg.replace('token_env = "TG_TOKEN_QD"', 'token = "123:abc"')
    with pytest.raises(AlertFileError, match="unknown key 'token'"):
        parse_config(bad, environ={})


def test_a_bad_file_exits_2_with_one_line_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(GOOD.replace("threshold", "treshold"))
    db = tmp_path / "c.db"
    run = subprocess.run(
        [sys.executable, "-m", "ingestion", "--db", str(db), "--alerts", str(path)],
        cwd=ROOT,
        env=collector_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "unknown key 'treshold'" in run.stderr
    assert str(path) in run.stderr and not db.exists()


def _independent_crossings(frame, closed_until_ms: int) -> list[tuple[int, float]]:
    """|z| > THRESHOLD crossings over closed bars, z from a plain least-squares fit per window.

    Closed: up to ``closed_until_ms``, the newest bar both legs have traded past (or two bars
    behind the newest): the alert monitor's rule.
    """
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    t = frame["open_time_ms"].to_numpy()
    z = np.full(len(x), np.nan)
    for i in range(WINDOW - 1, len(x)):
        xs, ys = x[i - WINDOW + 1 : i + 1], y[i - WINDOW + 1 : i + 1]
        if np.ptp(ys) == 0 or np.ptp(xs) == 0:
            continue
        beta, alpha = np.polyfit(ys, xs, 1)
        resid = xs - beta * ys
        sd = resid.std(ddof=1)
        if sd > 1e-9 * abs(resid.mean()):
            z[i] = (x[i] - beta * y[i] - alpha) / sd
    out, before = [], False
    for i in range(int(np.searchsorted(t, closed_until_ms, side="right"))):
        now = bool(np.isfinite(z[i]) and abs(z[i]) > THRESHOLD)
        if now and not before:
            out.append((int(t[i]), float(abs(z[i]))))
        before = now
    return out


def _closed_until(reader) -> int:
    """The newest bar both legs have traded past, or two bars behind the newest bar."""
    bx, by = reader.bar_range("BTCUSDT", "1s")[1], reader.bar_range("ETHUSDT", "1s")[1]
    return max(min(bx, by) - 1000, max(bx, by) - 3000)


def test_collector_delivers_exactly_the_crossings_of_the_stored_bars(tmp_path: Path) -> None:
    files = [REAL / "btcusdt_20240808.gz", REAL / "ethusdt_20240808.gz"]
    if not all(f.is_file() for f in files):
        pytest.skip("real recording not found")
    db = tmp_path / "collector.db"
    with Endpoint() as hook:
        alerts = tmp_path / "alerts.toml"
        alerts.write_text(
            f"""
[[pairs]]
x = "BTCUSDT"
y = "ETHUSDT"
tf = "1s"
window = {WINDOW}

[[rules]]
pair = "BTCUSDT/ETHUSDT"
metric = "abs_zscore"
op = ">"
threshold = {THRESHOLD}

[[sinks]]
kind = "webhook"
url = "{hook.url("/hook")}"
"""
        )
        recording = load_recording(files)
        with FakeBinance(recording, speed=8, loop=False, rebase_time=False) as srv:
            flags = ["--alerts", alerts, "--stream", "trade", "--history", "0"]
            flags += ["--history-klines", "0", "--status-interval", "0.5"]
            proc = start_collector(db, srv, *flags)
            with killed_on_exit(proc):
                wait_for(srv.finished, timeout_s=120, what="the whole recording served")

                def evaluated_to_the_end() -> bool:
                    with open_reader(db) as r:
                        frame = r.pair_frame("BTCUSDT", "ETHUSDT", "1s")
                        closed = _closed_until(r)
                    crossings = _independent_crossings(frame, closed)
                    return len(hook.acked()) >= len(crossings) and len(frame) > 200

                wait_for(evaluated_to_the_end, timeout_s=90, what="alerts of the last bars")
                out, err = stop_with_sigint(proc, 60)
        assert proc.returncode == 0, err
        assert "alerts:" in out
        with open_reader(db) as r:
            frame = r.pair_frame("BTCUSDT", "ETHUSDT", "1s")
            deliveries = r.deliveries()
            expected = _independent_crossings(frame, _closed_until(r))
        got = sorted(
            (int(np.datetime64(h.body["bar_time"].rstrip("Z"), "ms").astype(np.int64)),
             h.body["value"])
            for h in hook.acked()
        )  # fmt: skip
    assert len(expected) >= 3, "the recording should cross the band a few times"
    assert [t for t, _ in got] == [t for t, _ in expected]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)
    assert set(deliveries["status"]) == {"delivered"} and len(deliveries) == len(got)
