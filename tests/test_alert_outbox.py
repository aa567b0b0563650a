"""The watchlist, sinks and the alert outbox in storage: both engines behave the same."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from storage import open_reader, open_writer


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "outbox.db")
    return request.getfixturevalue("pg_url")


def test_watchlist_adds_once_and_removes(db: str) -> None:
    with open_writer(db) as w:
        a = w.watch_pair("btcusdt", "ethusdt", "1s", 60, "ols")
        assert w.watch_pair("BTCUSDT", "ETHUSDT", "1s", 60, "ols") == a
        b = w.watch_pair("BTCUSDT", "ETHUSDT", "1m", 30, "kalman")
        with pytest.raises(ValueError, match="two different symbols"):
            w.watch_pair("BTCUSDT", "btcusdt", "1s", 60, "ols")
        with pytest.raises(ValueError, match="timeframe"):
            w.watch_pair("BTCUSDT", "ETHUSDT", "7s", 60, "ols")
        with open_reader(db) as r:
            wl = r.watchlist()
            assert wl[["x", "y", "tf", "window_bars", "method"]].values.tolist() == [
                ["BTCUSDT", "ETHUSDT", "1s", 60, "ols"],
                ["BTCUSDT", "ETHUSDT", "1m", 30, "kalman"],
            ]
            assert w.unwatch_pair(a) and not w.unwatch_pair(a)
            assert r.watchlist()["pair_id"].tolist() == [b]


def _rule(w) -> int:
    return w.add_alert_rule(
        name="r", x="BTCUSDT", y="ETHUSDT", tf="1s", metric="abs_zscore", op=">",
        threshold=2.0, cooldown_s=0.0, params={"window": 60, "method": "ols"},
    )  # fmt: skip


def test_a_fired_alert_is_queued_for_every_enabled_sink_once(db: str) -> None:
    with open_writer(db) as w:
        s1 = w.add_sink(name="hook", kind="webhook", target="http://127.0.0.1:1/hook")
        s2 = w.add_sink(name="slack", kind="slack", target="env:SLACK_URL")
        s3 = w.add_sink(name="off", kind="discord", target="env:DISCORD_URL")
        w.set_sink_enabled(s3, False)
        rid = _rule(w)
        ev = w.fire_alert(rule_id=rid, bar_time_ms=1_000, value=2.5, message="m")
        assert ev is not None
        # The same rule and bar again (another process, a restart): nothing new is queued.
        assert w.fire_alert(rule_id=rid, bar_time_ms=1_000, value=2.5, message="m") is None
        with open_reader(db) as r:
            d = r.deliveries()
            assert sorted(d["sink_id"].tolist()) == [s1, s2]
            assert set(d["status"]) == {"pending"} and set(d["attempts"]) == {0}
            assert r.alert_sinks()["target"].tolist()[1] == "env:SLACK_URL"


def test_claims_are_exclusive_and_outcomes_recorded(db: str) -> None:
    with open_writer(db) as w:
        sink = w.add_sink(name="hook", kind="webhook", target="http://127.0.0.1:1/hook")
        rid = _rule(w)
        ids = [w.fire_alert(rule_id=rid, bar_time_ms=t, value=3.0, message="m") for t in (1, 2)]
        now = 10**13
        got = w.claim_deliveries(sink, "a", now_ms_=now, lease_ms=60_000)
        assert [c.event_id for c in got] == ids and got[0].bar_time_ms == 1
        assert w.claim_deliveries(sink, "b", now_ms_=now, lease_ms=60_000) == []
        # b may not finish a's claim; a can.
        assert not w.finish_delivery(ids[0], sink, "b", status="delivered")
        assert w.finish_delivery(ids[0], sink, "a", status="delivered")
        assert w.finish_delivery(
            ids[1], sink, "a", status="pending", error="HTTP 500", next_attempt_ms=now + 5_000
        )
        assert w.claim_deliveries(sink, "b", now_ms_=now + 4_999, lease_ms=1) == []
        again = w.claim_deliveries(sink, "b", now_ms_=now + 5_000, lease_ms=1)
        assert [(c.event_id, c.attempts) for c in again] == [(ids[1], 1)]
        # b died mid-send: once its lease ran out, another worker takes the row over.
        took = w.claim_deliveries(sink, "c", now_ms_=now + 5_002, lease_ms=60_000)
        assert [c.event_id for c in took] == [ids[1]]
        assert w.finish_delivery(ids[1], sink, "c", status="failed", error="HTTP 404")
        with open_reader(db) as r:
            d = r.deliveries().set_index("event_id")
            assert d.loc[ids[0], "status"] == "delivered" and d.loc[ids[0], "attempts"] == 1
            assert d.loc[ids[1], "status"] == "failed" and d.loc[ids[1], "last_error"] == "HTTP 404"
        assert w.retry_failed(sink) == 1


def test_two_postgres_writers_racing_claim_each_row_once(pg_url: str) -> None:
    """A page and a collector on one database: each delivery claimed by exactly one."""
    with open_writer(pg_url) as w1, open_writer(pg_url) as w2:
        sink = w1.add_sink(name="hook", kind="webhook", target="http://127.0.0.1:1/hook")
        rid = _rule(w1)
        for t in range(200):
            w1.fire_alert(rule_id=rid, bar_time_ms=t, value=3.0, message="m")
        taken: dict[str, list[int]] = {"a": [], "b": []}

        def run(w, name: str) -> None:
            while True:
                got = w.claim_deliveries(sink, name, now_ms_=10**13, lease_ms=10**6, limit=7)
                if not got:
                    return
                taken[name] += [c.event_id for c in got]

        threads = [threading.Thread(target=run, args=(w, n)) for w, n in ((w1, "a"), (w2, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        both = taken["a"] + taken["b"]
        assert len(both) == len(set(both)) == 200
