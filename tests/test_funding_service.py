"""Funding end to end against the real local replay server (port 0): the service's poller of
current funding, the history fetched and stored for a backtest (checked against a charge
computed by hand), and the page showing both legs' funding (AppTest, with the real captures and
the replay server of ``tests/test_app.py``)."""

# ruff: noqa: F811 - the page's fixtures (tests/test_app.py) are imported, then used as parameters

from __future__ import annotations

import time

import numpy as np
import pytest

from analytics import backtest, funding_per_bar
from formats import parse_funding_rates
from ingestion.rest import RestClient, RestError
from replay.funding import DEFAULT_RATE, FUNDING_INTERVAL_MS
from service import registry
from service.funding import NO_SOURCE, FundingService, fetch_history, rates_for
from storage import open_reader, open_writer
from storage.records import MarkPrice
from tests.conftest import free_port, wait_for
from tests.test_app import exchange, full_env, run  # noqa: F401 - fixtures shared

LEGS = ("BTCUSDT", "ETHUSDT")
H = 3_600_000


def _service(base: str | None, writer=None, **kw) -> FundingService:
    return FundingService(lambda: base, lambda: writer, **kw)


# ---------------------------------------------------------------------------- the server
def test_the_replay_server_serves_binances_funding_shapes_from_its_default(exchange):
    client = RestClient(exchange.rest_base, max_retries=0)
    every = client.get("/fapi/v1/premiumIndex", {}, 10)  # no symbol: every symbol
    assert sorted(row["symbol"] for row in every) == list(LEGS)
    with pytest.raises(RestError, match="-1121"):
        client.premium_index("NOPEUSDT")
    now_ms = int(exchange.timeline.now_ms())
    step = FUNDING_INTERVAL_MS
    recent = parse_funding_rates(
        client.get("/fapi/v1/fundingRate", {"symbol": "ETHUSDT", "limit": 3}, 1), "ETHUSDT"
    )  # no startTime: the most recent rows, never one in the future
    assert [r.funding_time_ms for r in recent] == [
        now_ms // step * step - k * step for k in (2, 1, 0)
    ]
    start = now_ms - 10 * step
    page = client.funding_rates("ETHUSDT", start_ms=start, end_ms=now_ms + 5 * step, limit=4)
    assert [r["fundingTime"] for r in page] == [(start // step + k) * step for k in (1, 2, 3, 4)]
    assert {r["fundingRate"] for r in page} == {DEFAULT_RATE}
    rows = fetch_history(client, "ETHUSDT", start, now_ms, page=4)  # three pages
    assert [r.funding_time_ms for r in rows] == list(
        range((start // step + 1) * step, now_ms, step)
    )
    assert all(r.mark and r.mark > 0 for r in rows)


# ---------------------------------------------------------------------------- current funding
def test_the_service_gets_current_funding_for_both_legs(exchange):
    funding = _service(exchange.rest_base, poll_s=0.2)
    try:
        first = funding.current(LEGS)  # never waits: nothing is known yet
        assert all(s.mark is None and not s.error for s in first.values())
        states = wait_for(
            lambda: (s := funding.current(LEGS)) and all(v.mark for v in s.values()) and s,
            what="premiumIndex of both legs",
        )
    finally:
        funding.stop()
    for sym in LEGS:
        mark = states[sym].mark
        assert mark.symbol == sym and mark.rate == 0.0001 and mark.mark > 0
        assert mark.next_funding_ms % FUNDING_INTERVAL_MS == 0
        assert 0 < mark.next_funding_ms - mark.event_ms <= FUNDING_INTERVAL_MS


def test_offline_and_unknown_symbols_give_a_clear_state(exchange):
    offline = _service(f"http://127.0.0.1:{free_port()}", poll_s=0.2, timeout_s=1.0)
    online = _service(exchange.rest_base, poll_s=0.2)
    try:
        s = wait_for(lambda: offline.current(["BTCUSDT"])["BTCUSDT"].error, what="offline")
        assert offline.current(["BTCUSDT"])["BTCUSDT"].mark is None and "refused" in s.lower()
        bad = wait_for(lambda: online.current(["NOPEUSDT"])["NOPEUSDT"].error, what="refusal")
        assert "Invalid symbol" in bad
        idle = _service(None)
        assert idle.request_history(LEGS, 0, 1) == f"failed: {NO_SOURCE}"
        assert idle.current(LEGS)["BTCUSDT"].error == NO_SOURCE
        idle.stop()
    finally:
        offline.stop()
        online.stop()


# ---------------------------------------------------------------------------- history
def test_backtest_with_the_servers_funding_history_equals_a_hand_computed_charge(
    exchange, tmp_path
):
    db = str(tmp_path / "f.db")
    now_ms = int(exchange.timeline.now_ms())
    opens = np.arange(now_ms // H * H - 72 * H, now_ms // H * H, H)  # 72 one-hour bars
    start, end = int(opens[0]) + H, int(opens[-1]) + H
    with open_writer(db) as writer:
        funding = _service(exchange.rest_base, writer)
        assert funding.request_history(LEGS, start, end) == "fetching"
        wait_for(lambda: funding.request_history(LEGS, start, end) == "ready", what="history")
        with open_reader(db) as reader:
            found = {s: rates_for(reader, funding, s, start, end) for s in LEGS}
    step = FUNDING_INTERVAL_MS  # the server's default: 0.0001 at 00/08/16 UTC
    want = list(range(-(-start // step) * step, end + 1, step))
    for df in found.values():
        assert df["funding_time_ms"].tolist() == want and len(want) >= 8
        assert df["rate"].tolist() == [0.0001] * len(want)
    n = opens.size
    rng = np.random.default_rng(7)
    y = 100 + np.cumsum(rng.normal(0, 0.3, n))
    x = 2.0 * y + rng.normal(0, 0.1, n)
    z = np.full(n, -3.0)  # long the spread from bar 1's close to the end: +1 x, −2 y
    beta = np.full(n, 2.0)
    fx, fy = (
        funding_per_bar(opens, H, found[s]["funding_time_ms"], found[s]["rate"]) for s in LEGS
    )
    res = backtest(x, y, z, beta, fee_rate=0.0, funding_x=fx, funding_y=fy)
    hand = 0.0
    for t_ms in found["BTCUSDT"]["funding_time_ms"]:
        j = (t_ms - opens[0]) // H - 1  # the bar whose close (open + 1 h) is at or before T
        if 1 <= j < n - 1:  # held after bar 1's fill; the last close ends the backtest
            hand += -(1.0 * x[j] * 0.0001) - (-2.0 * y[j] * 0.0001)
    assert res.funding_pnl == pytest.approx(hand, rel=1e-12)
    assert hand != 0.0


def test_a_read_only_page_keeps_the_fetched_history_in_memory(exchange, tmp_path):
    db = str(tmp_path / "empty.db")
    open_writer(db).close()  # another process would write here: this page cannot
    now_ms = int(exchange.timeline.now_ms())
    start, end = now_ms - 48 * H, now_ms
    funding = _service(exchange.rest_base, None)
    funding.request_history(["BTCUSDT"], start, end)
    wait_for(lambda: funding.request_history(["BTCUSDT"], start, end) == "ready", what="history")
    with open_reader(db) as reader:
        assert reader.funding_rates("BTCUSDT").empty
        held = rates_for(reader, funding, "BTCUSDT", start, end)
    assert len(held) >= 5 and set(held["rate"]) == {0.0001}


# ---------------------------------------------------------------------------- the page
def _funding_known() -> bool:
    service = registry.SERVICE
    return service is not None and all(s.mark for s in service.funding.current(LEGS).values())


def test_live_panel_and_watchlist_show_both_legs_funding(full_env):
    at = run({"window": "30"})
    registry.SERVICE.writer.watch_pair("BTCUSDT", "ETHUSDT", "1s", 30, "ols")
    line = " ".join(str(m.value) for m in at.markdown if "Funding" in str(m.value))
    assert "BTCUSDT" in line and "ETHUSDT" in line  # "fetching…" or the figures, never an error
    wait_for(_funding_known, what="the service's funding poll")
    at = run({"window": "30"})
    line = " ".join(str(m.value) for m in at.markdown if "Funding" in str(m.value))
    assert line.count("+0.0100 %") == 2 and line.count("next ") == 2, line
    at = run({"view": "Watchlist"})
    table = next(d.value for d in at.dataframe if "funding_x" in d.value.columns)
    assert table["funding_x"].tolist() == [pytest.approx(0.01)]
    assert table["funding_y"].tolist() == [pytest.approx(0.01)]
    assert " UTC (in " in table["next_funding"].iloc[0]


def test_backtest_tab_charges_funding_fetched_in_the_background(full_env):
    at = run({"view": "Backtest", "window": "30"})
    assert next(m for m in at.metric if m.label == "Funding P&L").value == "off"
    at.checkbox(key="bt_funding").check().run()
    assert not at.exception
    service = registry.SERVICE
    wait_for(
        lambda: not (service.funding._fetching and service.funding._fetching.is_alive()),
        what="the funding history fetch",
    )
    at.run()
    metric = next(m for m in at.metric if m.label == "Funding P&L")
    assert metric.value != "off"
    # The recording ends at 2024-08-09 00:00:00 UTC: one settlement of each leg is inside.
    assert any(
        "Funding settlements charged in the span: 1 of BTCUSDT, 1 of ETHUSDT." in c.value
        for c in at.caption
    )


def test_a_page_that_cannot_ask_shows_what_a_collector_stored(full_env, monkeypatch):
    """REST unreachable from the page, a collector's readings in the database: the Live
    panel shows them (``funding_now``, written by ``python -m ingestion``)."""
    from tests.test_app import _close_service

    _close_service()  # the next run starts a service with the dead REST root below
    monkeypatch.setenv("BINANCE_REST_BASE", f"http://127.0.0.1:{free_port()}")
    now_ms = int(time.time() * 1000)
    nxt = (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
    with open_writer(full_env) as w:
        w.write_funding_now(
            [
                MarkPrice(s, 100.0, None, rate, nxt, now_ms)
                for s, rate in zip(LEGS, (2e-4, -1e-4), strict=True)
            ],
            now_ms,
        )
    try:
        run({"window": "30"})
        wait_for(_funding_known, what="the stored readings taken by the page's poller")
        at = run({"window": "30"})
        line = " ".join(str(m.value) for m in at.markdown if "Funding" in str(m.value))
        assert "BTCUSDT +0.0200 %" in line and "ETHUSDT -0.0100 %" in line, line
        assert "failed" not in line
    finally:
        _close_service()
