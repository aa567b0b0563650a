"""Delivery of fired alerts: payload shapes per sink kind, retries, exactly-once, restarts.

Real local HTTP servers on port 0 (tests/alert_endpoints.py) stand in for the webhook, Slack,
Discord and Telegram endpoints; the outbox is a real SQLite file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from service.delivery import (
    DeliveryWorker,
    RetryPolicy,
    Sink,
    SinkConfigError,
    send_test,
    sinks_from_frame,
)
from storage import open_reader, open_writer
from tests.alert_endpoints import Endpoint
from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(base_s=0.05, cap_s=0.2, max_attempts=30, timeout_s=0.5, lease_margin_s=0.5)
TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"


def _rule(w, **kw) -> int:
    args = {
        "name": "wide",
        "x": "BTCUSDT",
        "y": "ETHUSDT",
        "tf": "1s",
        "metric": "abs_zscore",
        "op": ">",
        "threshold": 2.0,
        "cooldown_s": 0.0,
        "params": {"window": 60, "method": "ols"},
    } | kw
    return w.add_alert_rule(**args)


def _fire(w, rid: int, n: int, t0: int = 1_722_000_000_000) -> list[int]:
    return [
        w.fire_alert(rule_id=rid, bar_time_ms=t0 + i * 1000, value=2.5 + i, message=f"alert {i}")
        for i in range(n)
    ]


def _states(db: str) -> Counter:
    with open_reader(db) as r:
        return Counter(r.deliveries()["status"])


def test_payload_shape_of_each_sink_kind(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    env = {"SLACK_URL": "", "TG_TOKEN": TOKEN}
    with Endpoint() as ep, open_writer(db) as w:
        env["SLACK_URL"] = ep.url("/slack/T000/B000/XXXX")
        w.add_sink(name="hook", kind="webhook", target=ep.url("/hook"))
        w.add_sink(name="slack", kind="slack", target="env:SLACK_URL")
        w.add_sink(name="discord", kind="discord", target=ep.url("/discord"))
        w.add_sink(
            name="tg",
            kind="telegram",
            target="env:TG_TOKEN",
            params={"chat_id": "-100123", "api_base": ep.url("")},
        )
        rid = _rule(w)
        (event_id,) = _fire(w, rid, 1)
        worker = DeliveryWorker(w, db, policy=FAST, poll_s=0.05, environ=env).start()
        try:
            wait_for(lambda: len(ep.acked()) == 4, what="one request per sink")
            wait_for(lambda: _states(db) == Counter(delivered=4), what="all delivered")
        finally:
            worker.stop()
    by_path = {h.path: h for h in ep.hits}
    hook = by_path["/hook"].body
    assert set(hook) >= {
        "alert_id", "rule", "pair", "tf", "window", "method", "metric", "op", "threshold",
        "value", "bar_time", "fired_at", "message", "idempotency_key",
    }  # fmt: skip
    assert hook["alert_id"] == event_id and hook["pair"] == "BTCUSDT/ETHUSDT"
    assert (hook["tf"], hook["window"], hook["method"]) == ("1s", 60, "ols")
    assert (hook["metric"], hook["op"], hook["threshold"], hook["value"]) == (
        "abs_zscore", ">", 2.0, 2.5
    )  # fmt: skip
    assert hook["bar_time"] == "2024-07-26T13:20:00.000Z"
    assert hook["fired_at"].endswith("Z") and hook["message"] == "alert 0"
    assert by_path["/hook"].headers["Idempotency-Key"] == hook["idempotency_key"]
    assert by_path["/slack/T000/B000/XXXX"].body == {"text": "alert 0"}
    assert by_path["/discord"].body == {"content": "alert 0", "allowed_mentions": {"parse": []}}
    tg = by_path[f"/bot{TOKEN}/sendMessage"].body
    assert tg == {"chat_id": "-100123", "text": "alert 0", "disable_web_page_preview": True}


def test_faults_then_recovery_deliver_every_alert_exactly_once(tmp_path: Path) -> None:
    """500s, a hang longer than the timeout, a 429 with Retry-After, connection refused."""
    db = str(tmp_path / "a.db")
    refused_port = free_port()  # nothing listens here until the "recovery"
    script = ["500", "500", "hang", "429", "500"]
    with Endpoint(script=script) as flaky, open_writer(db) as w:
        flaky.retry_after_s = "1"
        w.add_sink(name="flaky", kind="webhook", target=flaky.url("/hook"))
        w.add_sink(name="down", kind="discord", target=f"http://127.0.0.1:{refused_port}/d")
        rid = _rule(w)
        ids = _fire(w, rid, 5)
        worker = DeliveryWorker(
            w, db, policy=FAST, poll_s=0.05, environ={}, rng=random.Random(1)
        ).start()
        try:
            wait_for(lambda: len(flaky.acked()) == 5, what="every alert acknowledged once")

            def refused_twice() -> bool:
                with open_reader(db) as r:
                    d = r.deliveries()
                down = d[d["sink"] == "down"]
                return bool((down["attempts"] >= 2).all()) and len(down) == 5

            wait_for(refused_twice, what="the dead sink retried")
            with open_reader(db) as r:
                errors = set(r.deliveries().query("sink == 'down'")["last_error"])
            assert any("cannot connect" in e for e in errors), errors
            with Endpoint(port=refused_port) as recovered:
                wait_for(lambda: len(recovered.acked()) == 5, what="the recovered sink")
                wait_for(lambda: _states(db) == Counter(delivered=10), what="all delivered")
        finally:
            worker.stop()
    keys = [h.body["idempotency_key"] for h in flaky.acked()]
    assert sorted(h.body["alert_id"] for h in flaky.acked()) == sorted(ids)
    assert len(set(keys)) == 5
    # Every attempt of one alert carried the same key (the hang and the retry after it).
    by_key = Counter(h.body["idempotency_key"] for h in flaky.hits)
    assert sum(by_key.values()) == 5 + len(script)
    # The 429 asked for 1 s: the next request came no sooner.
    i429 = next(i for i, h in enumerate(flaky.hits) if h.answer == "429")
    assert flaky.hits[i429 + 1].t - flaky.hits[i429].t >= 1.0
    assert sorted(h.body["content"] for h in recovered.acked()) == [f"alert {i}" for i in range(5)]


def test_a_hanging_sink_delays_neither_other_sinks_nor_evaluation(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    slow = RetryPolicy(base_s=0.05, cap_s=0.2, timeout_s=30.0)
    with Endpoint(default="hang") as dead, Endpoint() as alive, open_writer(db) as w:
        w.add_sink(name="dead", kind="webhook", target=dead.url())
        w.add_sink(name="alive", kind="webhook", target=alive.url())
        rid = _rule(w)
        worker = DeliveryWorker(w, db, policy=slow, poll_s=0.05, environ={}).start()
        try:
            _fire(w, rid, 1)
            dead.hanging.wait(20)
            assert dead.hanging.is_set()
            # While the dead sink's request hangs: more alerts are stored and delivered.
            more = _fire(w, rid, 3, t0=1_800_000_000_000)
            assert all(e is not None for e in more)
            worker.poke()
            wait_for(lambda: len(alive.acked()) == 4, what="the live sink's deliveries")
            assert len(dead.hits) == 1  # still the first, hanging request
        finally:
            worker.stop(timeout_s=1.0)


def test_a_client_error_fails_at_once_with_the_reason(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    with Endpoint(default="404") as ep, open_writer(db) as w:
        w.add_sink(name="typo", kind="webhook", target=ep.url("/wrong"))
        _fire(w, _rule(w), 1)
        worker = DeliveryWorker(w, db, policy=FAST, poll_s=0.05, environ={}).start()
        try:
            wait_for(lambda: _states(db) == Counter(failed=1), what="a failed delivery")
        finally:
            worker.stop()
        with open_reader(db) as r:
            d = r.deliveries().iloc[0]
        assert d["attempts"] == 1 and d["last_error"].startswith("HTTP 404")
        assert len(ep.hits) == 1
        # Fixed at the receiver: queued again by hand, then delivered.
        ep.default = "200"
        assert w.retry_failed() == 1
        worker = DeliveryWorker(w, db, policy=FAST, poll_s=0.05, environ={}).start()
        try:
            wait_for(lambda: _states(db) == Counter(delivered=1), what="delivered after retry")
        finally:
            worker.stop()


_CHILD = r"""
import sys, time
from service.delivery import DeliveryWorker, RetryPolicy
from storage import open_writer
db, = sys.argv[1:]
w = open_writer(db)
policy = RetryPolicy(base_s=0.05, cap_s=0.1, max_attempts=1000, timeout_s=0.5, lease_margin_s=0.5)
DeliveryWorker(w, db, policy=policy, poll_s=0.05, environ={}).start()
print("started", flush=True)
time.sleep(600)
"""


def _start_child(db: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, db], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "started"
    return proc


def _restart_until_delivered(db: str, n: int) -> None:
    """A new worker process; waits until all ``n`` deliveries are delivered, then kills it."""
    proc = _start_child(db)
    try:
        wait_for(lambda: _states(db) == Counter(delivered=n), what="delivered")
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("when", ["pending", "mid-send"])
def test_killed_with_deliveries_pending_then_restarted_delivers_once(
    tmp_path: Path, when: str
) -> None:
    db = str(tmp_path / "a.db")
    port = free_port()
    with open_writer(db) as w:
        w.add_sink(name="hook", kind="webhook", target=f"http://127.0.0.1:{port}/hook")
        ids = _fire(w, _rule(w), 4)
    if when == "pending":
        proc = _start_child(db)  # the sink is down: every delivery waits for a retry

        def retried() -> bool:
            with open_reader(db) as r:
                return bool((r.deliveries()["attempts"] >= 1).all())

        wait_for(retried, what="failed attempts recorded")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with Endpoint(port=port) as ep:
            _restart_until_delivered(db, 4)
    else:
        with Endpoint(port=port, script=["hang"]) as ep:
            proc = _start_child(db)
            ep.hanging.wait(20)
            proc.send_signal(signal.SIGKILL)  # one request in flight, its row "sending"
            proc.wait(10)
            assert _states(db)["sending"] >= 1
            _restart_until_delivered(db, 4)
    acked = Counter(h.body["alert_id"] for h in ep.acked())
    assert acked == Counter({i: 1 for i in ids})


def test_bad_sinks_say_what_is_wrong_and_never_show_the_secret() -> None:
    with pytest.raises(SinkConfigError, match="must be an http"):
        Sink(1, "ftp", "webhook", "ftp://example.com/x").endpoint({})
    with pytest.raises(SinkConfigError, match="environment variable NOPE is not set"):
        Sink(1, "s", "slack", "env:NOPE").endpoint({})
    port = free_port()
    tg = Sink(
        1, "tg", "telegram", "env:TG", {"chat_id": "1", "api_base": f"http://127.0.0.1:{port}"}
    )
    out = send_test(tg, environ={"TG": TOKEN}, timeout_s=1.0)
    assert not out.ok and out.retry and "cannot connect" in out.error
    assert TOKEN not in out.error
    unknown = Sink(1, "tg", "telegram", "env:TG", {"chat_id": "1", "api_base": "http://tg.invalid"})
    out = send_test(unknown, environ={"TG": TOKEN}, timeout_s=2.0)
    assert not out.ok and "cannot connect" in out.error and TOKEN not in out.error
    assert Sink(1, "tg", "telegram", "env:TG").shown_target() == "$TG"


def test_send_test_message_reaches_each_kind(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    with Endpoint() as ep, open_writer(db) as w:
        w.add_sink(name="d", kind="discord", target=ep.url("/d"))
        with open_reader(db) as r:
            (sink,) = sinks_from_frame(r.alert_sinks())
        out = send_test(sink, environ={})
        assert out.ok, out.error
    assert "Test message" in ep.hits[0].body["content"]


def test_two_processes_on_one_postgres_database_deliver_each_alert_once(pg_url: str) -> None:
    """A page and a collector (two monitors, two delivery workers, two writers): once each."""
    from service.headless import AlertRuntime
    from storage import IdKind, Tick

    t0 = 1_700_000_000_000
    with Endpoint() as ep, open_writer(pg_url) as w1, open_writer(pg_url) as w2:
        w1.add_sink(name="hook", kind="webhook", target=ep.url())
        w1.watch_pair("AUSDT", "BUSDT", "1s", 10, "ols")
        _rule(w1, x="AUSDT", y="BUSDT", metric="price_x", threshold=100.0,
              params={"window": 10, "method": "ols"})  # fmt: skip
        n = {"AUSDT": 0, "BUSDT": 0}

        def bar(second: int, price_a: float) -> None:
            ticks = []
            for sym, px in (("AUSDT", price_a), ("BUSDT", 50.0 + second % 3)):
                n[sym] += 1
                ticks.append(Tick(sym, n[sym], t0 + second * 1000 + 10, px, 1.0, False, IdKind.AGG))
            w1.write_ticks(ticks)

        for s in range(3):
            bar(s, 90.0)
        runtimes = [
            AlertRuntime(w, pg_url, policy=FAST, environ={}, poll_s=0.02).start() for w in (w1, w2)
        ]
        try:
            wait_for(lambda: all(r.monitor.stats.passes >= 1 for r in runtimes), what="passes")
            for s in range(3, 27):  # A above 100 at 4, 8, ..., 24: six crossings
                bar(s, 110.0 if s % 4 == 0 else 90.0)
            with open_reader(pg_url) as r:
                wait_for(lambda: len(r.alert_events()) == 6, what="six alerts")
            wait_for(lambda: len(ep.acked()) >= 6, what="six deliveries")
            wait_for(lambda: _states(pg_url) == Counter(delivered=6), what="all delivered")
        finally:
            for rt in runtimes:
                rt.stop()
    assert sorted(Counter(h.body["alert_id"] for h in ep.acked()).values()) == [1] * 6
