"""Many viewers, one server: the live page's reads and computations are shared by sessions.

``service.viewcache.ViewCache`` with an injected clock (freshness window, version reuse, single
flight, bounds in size and age), then the real page in ``AppTest``: two sessions of one view
in one process compute the pair once per data version, a different view computes its own, and
with ``SHARED_VIEWS=0`` every session computes for itself (the old behaviour). The database is
real SQLite with the first two minutes of the real hftbacktest captures; new trades go in
through the service's own writer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.harness import key_figures
from service import registry
from service.viewcache import ViewCache
from storage import IdKind, open_reader, open_writer
from tests.conftest import wait_for, write_first_seconds
from tests.test_app import _env, run


class Clock:
    """A settable clock (seconds) to pass as ``clock=``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A data version and a computation that counts its calls."""

    def __init__(self) -> None:
        self.version = 1
        self.version_reads = 0
        self.computations = 0

    def read_version(self) -> int:
        self.version_reads += 1
        return self.version

    def compute(self) -> tuple[str, int]:
        self.computations += 1
        return ("value", self.version)


# ------------------------------------------------------------------------- the cache
def test_fresh_snapshots_are_served_without_reading_the_version():
    clock, src = Clock(), Source()
    cache = ViewCache(fresh_s=0.25, clock=clock)
    first = cache.get("k", src.read_version, src.compute)
    clock.now += 0.2
    again = cache.get("k", src.read_version, src.compute)
    assert again is first and src.version_reads == 1 and src.computations == 1
    clock.now += 0.1  # past the freshness window: the version is read, unchanged: no compute
    assert cache.get("k", src.read_version, src.compute) is first
    assert (src.version_reads, src.computations) == (2, 1)
    src.version = 2
    clock.now += 0.3
    new = cache.get("k", src.read_version, src.compute)
    assert new.value == ("value", 2) and src.computations == 2
    assert cache.stats.computed_keys == {"k": 2}


def test_computations_are_rate_limited_however_fast_the_data_and_the_requests_come():
    """A new data version every 0.1 s and a request every 0.1 s for 3 s: with
    ``min_interval_s`` 0.4 at most one computation per 0.4 s, and a request made 0.4 s after
    the last computation sees the newest version."""
    clock, src = Clock(), Source()
    cache = ViewCache(fresh_s=0.0, clock=clock)
    seen = []
    for _ in range(30):
        src.version += 1
        clock.now += 0.1
        snap = cache.get("k", src.read_version, src.compute, min_interval_s=0.4)
        seen.append(snap.value[1])
    assert src.computations == 8  # at 0.1, 0.5, 0.9, ... 2.9 s (30 requests, 30 versions)
    assert seen[0] == 2 and seen[4] == 6 and seen[-2] == 30  # fresh at each computation
    assert cache.stats.computed_keys == {"k": 8}
    unlimited = ViewCache(fresh_s=0.0, clock=clock)
    for _ in range(5):
        src.version += 1
        clock.now += 0.1
        assert unlimited.get("k", src.read_version, src.compute).value[1] == src.version
    with pytest.raises(ValueError, match="min_interval_s"):
        cache.get("k", src.read_version, src.compute, min_interval_s=-1)


def test_a_snapshot_is_recomputed_after_max_age_even_if_the_version_looks_unchanged():
    clock, src = Clock(), Source()
    cache = ViewCache(fresh_s=0.0, max_age_s=60.0, clock=clock)
    cache.get("k", src.read_version, src.compute)
    clock.now += 59.0
    cache.get("k", src.read_version, src.compute)
    assert src.computations == 1
    clock.now += 1.0
    cache.get("k", src.read_version, src.compute)
    assert src.computations == 2


def test_size_is_bounded_least_recently_used_first_and_idle_views_are_dropped():
    clock, src = Clock(), Source()
    cache = ViewCache(fresh_s=0.0, max_age_s=10.0, max_entries=2, clock=clock)
    for key in ("a", "b"):
        cache.get(key, src.read_version, src.compute)
    cache.get("a", src.read_version, src.compute)  # "a" used last: "b" is the oldest
    cache.get("c", src.read_version, src.compute)
    assert len(cache) == 2 and src.computations == 3
    cache.get("a", src.read_version, src.compute)
    assert src.computations == 3  # "a" survived
    cache.get("b", src.read_version, src.compute)
    assert src.computations == 4  # "b" had been dropped
    clock.now += 11.0  # nobody asked for any view in max_age_s
    cache.get("d", src.read_version, src.compute)
    assert len(cache) == 1


def test_one_thread_computes_while_the_others_wait_for_its_result():
    src = Source()
    release = threading.Event()

    def slow() -> tuple[str, int]:
        release.wait(10)
        return src.compute()

    cache = ViewCache(fresh_s=5.0)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("k", src.read_version, slow)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: cache.stats.requests == 4, 10, "four concurrent requests")
    release.set()
    for t in threads:
        t.join(10)
    assert src.computations == 1 and len({id(r) for r in results}) == 1


def test_derived_values_are_computed_once_per_snapshot():
    src = Source()
    cache = ViewCache(fresh_s=0.0)
    calls = []
    snap = cache.get("k", src.read_version, src.compute)
    for _ in range(3):
        assert snap.derive("payload", lambda: calls.append(1) or "p") == "p"
    assert calls == [1] and snap.derivations == 1
    src.version = 2
    assert cache.get("k", src.read_version, src.compute).derive("payload", lambda: "q") == "q"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.floats(0, 0.6), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([0.0, 0.4]),
)
def test_one_computation_per_key_and_version_and_never_a_stale_version_after_fresh_s(
    steps, min_interval_s
):
    """Whatever the order of requests: at most one computation per (key, data version), and a
    request made ``fresh_s`` after the last check and ``min_interval_s`` after the last
    computation always sees the newest version."""
    clock = Clock()
    versions = {k: 0 for k in "abc"}
    computed: list[tuple[str, int]] = []
    cache = ViewCache(fresh_s=0.25, clock=clock)
    for key, dt, bump in steps:
        if bump:
            versions[key] += 1
        clock.now += dt
        last = cache._entries.get(key)
        stale_allowed = last is not None and (
            clock.now - last.checked_s < 0.25 or clock.now - last.computed_s < min_interval_s
        )
        snap = cache.get(
            key,
            lambda k=key: versions[k],
            lambda k=key: computed.append((k, versions[k])) or (k, versions[k]),
            min_interval_s=min_interval_s,
        )
        if not stale_allowed:
            assert snap.value == (key, versions[key])
    assert len(computed) == len(set(computed))


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="max_entries"):
        ViewCache(max_entries=0)


# ------------------------------------------------------------------------- the page
@pytest.fixture
def two_minutes(tmp_path, storage_hft_trades, monkeypatch) -> Iterator[dict]:
    """A database with the first 120 s of the real captures; the page's env points at it."""
    from replay import start_replay_server

    db = tmp_path / "viewers.db"
    with open_writer(db) as w:
        last = write_first_seconds(w, storage_hft_trades, 120)
    server = start_replay_server(port=0, speed=1.0, loop=True)
    try:
        _env(monkeypatch, db, server.rest_base)
        yield last
    finally:
        if registry.SERVICE is not None:
            registry.SERVICE.close()
        server.stop()


def _new_trade(last: dict, symbol: str, dt_ms: int) -> None:
    """One more trade of ``symbol``, ``dt_ms`` after its last, through the service's writer."""
    row = last[symbol]
    trade_id, ts = int(row["trade_id"]) + 1, int(row["ts_ms"]) + dt_ms
    registry.SERVICE.writer.write_tick_arrays(
        symbol, IdKind.TRADE, [trade_id], [ts], [float(row["price"])], [0.001], [False]
    )
    last[symbol] = row.copy()
    last[symbol]["trade_id"], last[symbol]["ts_ms"] = trade_id, ts


def _pair_computations(cache: ViewCache) -> dict:
    return {k[2]: n for k, n in cache.stats.computed_keys.items() if k[0] == "pair"}


def test_two_sessions_of_one_view_compute_once_per_data_version(two_minutes):
    a = run()
    b = run()
    views = registry.SERVICE.views
    # Every request reads the data version (no freshness window, no rate limit on
    # computations), so the count is exact.
    views.cache.fresh_s = 0.0
    views.recompute_s = 0.0
    computed = _pair_computations(views.cache)
    assert list(computed.values()) == [1], computed
    figures = key_figures(a)
    assert figures == key_figures(b) and figures["z-score"] != "—"

    a.run()
    b.run()  # nothing new stored: both served from the same snapshot
    assert list(_pair_computations(views.cache).values()) == [1]

    _new_trade(two_minutes, "BTCUSDT", 1_500)  # a new 1s bar: a new data version
    a.run()
    b.run()
    assert list(_pair_computations(views.cache).values()) == [2]
    assert key_figures(a)["Bars"] == key_figures(b)["Bars"]

    c = run({"window": "30"})  # another view: computed for itself, never served A's result
    computed = _pair_computations(views.cache)
    assert sorted((p.window, n) for p, n in computed.items()) == [(30, 1), (60, 2)]
    assert key_figures(c)["β"] != figures["β"]


def test_without_sharing_every_session_computes_for_itself(two_minutes, monkeypatch):
    monkeypatch.setenv("SHARED_VIEWS", "0")
    a = run()
    b = run()
    assert _pair_computations(registry.SERVICE.views.cache) == {}
    own = [_pair_computations(at.session_state["_dashboard_store"].views.cache) for at in (a, b)]
    assert [list(c.values()) for c in own] == [[1], [1]]


def test_an_alert_is_read_once_and_toasted_once_in_every_session(two_minutes):
    a = run()
    b = run()
    registry.SERVICE.views.cache.fresh_s = 0.0
    rid = registry.SERVICE.add_rule(
        name="",
        x="BTCUSDT",
        y="ETHUSDT",
        tf="1s",
        metric="abs_zscore",
        op=">=",
        threshold=1000.0,  # never fires by itself: the one event is recorded below
        cooldown_s=0.0,
        params={"window": 60, "method": "ols"},
    )
    registry.SERVICE.writer.fire_alert(
        rule_id=rid, bar_time_ms=int(two_minutes["BTCUSDT"]["ts_ms"]), value=1.5, message="hello"
    )
    # The alerts read has a 1 s time-to-live of its own: wait until a run reads it afresh.
    wait_for(lambda: [t.value for t in a.run().toast] == ["hello"], 10, "the toast in A")
    assert [t.value for t in b.run().toast] == ["hello"]
    assert [t.value for t in a.run().toast] == []  # shown once per session


def test_watched_pairs_cost_one_computation_per_data_version_for_all_tabs_and_the_monitor(
    two_minutes,
):
    """Issue 13, point 5: three Watchlist tabs and the alert monitor share one snapshot per
    watched pair and data version (``PageViews.board``); two settings of the same legs are two
    views, each computed once."""
    from service.watch import PairKey
    from service.watchlist import watch_on

    a = run({"view": "Watchlist"})
    svc = registry.SERVICE
    board = svc.views.board(svc.db_path, svc.generation)
    board.cache.fresh_s = 0.0  # every tab reads the version: the count is exact
    ruled, plain = PairKey("BTCUSDT", "ETHUSDT", "1s", 30), PairKey("BTCUSDT", "ETHUSDT", "1s", 45)
    watch_on(svc, ruled)
    watch_on(svc, plain)
    svc.add_rule(
        name="", x="BTCUSDT", y="ETHUSDT", tf="1s", metric="abs_zscore", op=">",
        threshold=1000.0, cooldown_s=0.0, params={"window": 30, "method": "ols"},
    )  # fmt: skip
    computed = board.cache.stats.computed_keys
    # The monitor takes its baseline on the ruled pair at once: computed by the monitor.
    wait_for(lambda: computed.get(ruled) == 1, 10, "the monitor's first pass")
    tabs = [a, run({"view": "Watchlist"}), run({"view": "Watchlist"})]
    for at in tabs:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    assert (computed[ruled], computed[plain]) == (1, 1), computed
    shown = [at.dataframe[0].value for at in tabs]
    for df in shown[1:]:
        assert df[["pair", "window", "z"]].equals(shown[0][["pair", "window", "z"]])

    # A trade 5 s later on one leg: a new data version, and a newly closed bar for the rule.
    evaluations = svc.monitor.stats.evaluations
    _new_trade(two_minutes, "BTCUSDT", 5_000)
    wait_for(lambda: svc.monitor.stats.evaluations > evaluations, 10, "the monitor's pass")
    assert computed[ruled] == 2  # the monitor computed the new version ...
    for at in tabs:
        at.run()
    # ... and every tab was served it; the other view was computed once, by the first tab.
    assert (computed[ruled], computed[plain]) == (2, 2), computed
    for at in tabs:
        at.run()  # nothing new: nothing recomputed
    assert (computed[ruled], computed[plain]) == (2, 2), computed


# ------------------------------------------------------------------------- the data version
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_newest_bar_stamp_moves_with_every_trade_on_both_engines(engine, tmp_path, request):
    from storage import UnknownSymbolError, open_writer

    db = str(tmp_path / "stamp.db") if engine == "sqlite" else request.getfixturevalue("pg_url")
    t0 = 1_723_161_376_000
    with open_writer(db) as w, open_reader(db) as r:
        with pytest.raises(UnknownSymbolError):
            r.newest_bar_stamp("BTCUSDT", "1s")
        w.write_tick_arrays(
            "BTCUSDT",
            IdKind.TRADE,
            [1, 2],
            [t0, t0 + 1_100],
            [10.0, 11.0],
            [0.5, 0.25],
            [False, True],
        )
        assert r.newest_bar_stamp("BTCUSDT", "1s") == (t0 + 1_000, 1, 0.25)
        assert r.newest_bar_stamp("BTCUSDT", "1m") == (t0 - t0 % 60_000, 2, 0.75)
        w.write_tick_arrays("BTCUSDT", IdKind.TRADE, [3], [t0 + 1_200], [12.0], [1.0], [False])
        assert r.newest_bar_stamp("BTCUSDT", "1s") == (t0 + 1_000, 2, 1.25)
        newest = r.bars("BTCUSDT", "1s", limit=1).iloc[-1]
        assert (int(newest["open_time_ms"]), int(newest["trades"])) == (t0 + 1_000, 2)


def test_a_view_opened_before_any_data_shows_the_charts_once_data_arrives(
    tmp_path, storage_hft_trades, monkeypatch
):
    from replay import start_replay_server
    from tests.test_app import charts, texts

    db = tmp_path / "empty.db"
    open_writer(db).close()
    server = start_replay_server(port=0, speed=1.0, loop=True)
    try:
        _env(monkeypatch, db, server.rest_base)
        at = run({"window": "10"})
        assert "Waiting for the first trades" in texts(at)
        write_first_seconds(registry.SERVICE.writer, storage_hft_trades, 30)
        registry.SERVICE.views.cache.fresh_s = 0.0
        at.run()
        assert "chart_zscore" in charts(at), texts(at)
    finally:
        if registry.SERVICE is not None:
            registry.SERVICE.close()
        server.stop()
