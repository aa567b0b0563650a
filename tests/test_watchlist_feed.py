"""The watchlist and the running feed: pairs added and removed at run time, a symbol delisted.

The dashboard's service (``DashboardService``, live mode) collects from a real local Binance
look-alike serving six symbols of real recordings (the bundled BTCUSDT + ETHUSDT capture and
the cryptofeed capture's SUSHIUSDT, AKROUSDT, KEEPUSDT, CTKUSDT), every symbol at a steady five
trades a second. Watching a pair starts its legs' feeds; removing the last pair that needs a
leg stops that feed; a symbol the exchange stops trading (``Faults.delisted``: exchangeInfo
says SETTLING, its stream goes silent) is noticed at the next read of the symbol list, its feed
stopped and its rows marked; the other pairs keep updating and nothing stored is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording
from replay.faults import Faults
from service.desk import DashboardService
from service.settings import AppSettings
from service.watch import PairBoard, PairKey
from service.watchlist import unwatch_on, watch_on, watch_rows
from storage import UnknownSymbolError, open_reader, open_writer
from tests.conftest import wait_for

CRYPTOFEED = (
    Path(__file__).resolve().parents[2]
    / "shared/data/real/binance_usdm_ws_cryptofeed/BINANCE_FUTURES.ws.1.0"
)
QUIET_ENV = {"TICKS_KEEP_HOURS": "forever", "BARS_1S_KEEP_DAYS": "forever"}


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    if not CRYPTOFEED.is_file():
        pytest.skip("shared real data missing")
    recording = load_recording([SAMPLE_RECORDING, CRYPTOFEED])
    assert set(recording.symbols) == {
        "BTCUSDT", "ETHUSDT", "SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT",
    }  # fmt: skip
    with FakeBinance(recording, rate=5.0, loop=True, faults=Faults()) as server:
        yield server


@pytest.fixture
def desk(tmp_path, exchange, monkeypatch) -> Iterator[DashboardService]:
    for k, v in QUIET_ENV.items():
        monkeypatch.setenv(k, v)
    settings = AppSettings(
        db_path=str(tmp_path / "live.db"),
        replay_db_path=str(tmp_path / "live.replay.db"),
        ws_base=exchange.ws_base,
        rest_base=exchange.rest_base,
        autostart=True,
        probe_timeout_s=3.0,
        exchange_info_ttl_s=0.5,  # the symbol list is re-read twice a second here
    )
    svc = DashboardService(settings)
    try:
        yield svc
    finally:
        svc.close()


def collected(svc: DashboardService) -> set[str]:
    return {st.symbol for st in svc.feed_status()}


def ticks(svc: DashboardService, symbol: str) -> int:
    with open_reader(svc.db_path) as r:
        try:
            return len(r.ticks(symbol))
        except UnknownSymbolError:
            return 0


def newest_bar_ms(svc: DashboardService, symbol: str) -> int:
    with open_reader(svc.db_path) as r:
        try:
            found = r.bar_range(symbol, "1s")
        except UnknownSymbolError:  # nothing stored yet
            return 0
    return found[1] if found else 0


def keeps_updating(svc: DashboardService, symbols: list[str]) -> None:
    """Every symbol of ``symbols`` stores a newer 1s bar than it has now."""
    before = {s: newest_bar_ms(svc, s) for s in symbols}
    wait_for(
        lambda: all(newest_bar_ms(svc, s) > before[s] for s in symbols),
        30,
        f"new bars of {symbols}",
    )


def test_pairs_added_and_removed_while_the_feed_runs(desk):
    svc = desk
    wait_for(lambda: collected(svc) == {"BTCUSDT", "ETHUSDT"}, 30, "the default pair's feeds")
    a = watch_on(svc, PairKey("SUSHIUSDT", "CTKUSDT", "1s", 10, "ols"))
    b = watch_on(svc, PairKey("SUSHIUSDT", "AKROUSDT", "1s", 10, "ols"))
    wanted = {"BTCUSDT", "ETHUSDT", "SUSHIUSDT", "CTKUSDT", "AKROUSDT"}
    wait_for(lambda: collected(svc) == wanted, 30, "the watched legs' feeds")
    wait_for(lambda: min(ticks(svc, s) for s in wanted) > 0, 30, "ticks of every leg")

    # CTKUSDT is needed by pair a only: removing a stops it; SUSHIUSDT is still needed by b.
    assert unwatch_on(svc, a)
    wait_for(lambda: "CTKUSDT" not in collected(svc), 20, "CTKUSDT's feed stopped")
    stored_ctk = ticks(svc, "CTKUSDT")
    assert stored_ctk > 0  # what was stored stays
    assert collected(svc) == wanted - {"CTKUSDT"}
    keeps_updating(svc, ["BTCUSDT", "ETHUSDT", "SUSHIUSDT", "AKROUSDT"])
    assert "CTKUSDT" not in svc.symbols and ticks(svc, "CTKUSDT") >= stored_ctk

    assert unwatch_on(svc, b)
    wait_for(
        lambda: collected(svc) == {"BTCUSDT", "ETHUSDT"}, 20, "only the default pair collected"
    )
    keeps_updating(svc, ["BTCUSDT", "ETHUSDT"])  # the page's pair never stopped
    assert ticks(svc, "SUSHIUSDT") > 0 and ticks(svc, "AKROUSDT") > 0
    assert svc.healthy() and svc.monitor.is_alive() and not svc.feed_error


def test_a_leg_needed_by_a_rule_or_shown_by_a_page_is_kept(desk):
    svc = desk
    wait_for(lambda: collected(svc) == {"BTCUSDT", "ETHUSDT"}, 30, "the default pair's feeds")
    svc.watch(["KEEPUSDT"])  # a page shows KEEPUSDT (the sidebar's pair): pinned
    a = watch_on(svc, PairKey("KEEPUSDT", "CTKUSDT", "1s", 10, "ols"))
    svc.add_rule(
        name="r", x="AKROUSDT", y="CTKUSDT", tf="1s", metric="zscore", op=">",
        threshold=3.0, cooldown_s=0.0, params={"window": 10, "method": "ols"},
    )  # fmt: skip
    with open_reader(svc.db_path) as r:
        rule_pair = int(r.watchlist().query("x == 'AKROUSDT'")["pair_id"].iloc[0])
    want = {"BTCUSDT", "ETHUSDT", "KEEPUSDT", "CTKUSDT", "AKROUSDT"}
    wait_for(lambda: collected(svc) == want, 30, "every leg collected")
    assert unwatch_on(svc, a) and unwatch_on(svc, rule_pair)
    # KEEPUSDT: shown by a page; CTKUSDT and AKROUSDT: the rule still evaluates them.
    keeps_updating(svc, sorted(want))
    assert collected(svc) == want


def test_a_symbol_delisted_while_watched_is_stopped_and_named(desk, exchange):
    svc = desk
    watch_on(svc, PairKey("SUSHIUSDT", "CTKUSDT", "1s", 10, "ols"))
    watch_on(svc, PairKey("BTCUSDT", "ETHUSDT", "1s", 10, "ols"))
    wanted = {"BTCUSDT", "ETHUSDT", "SUSHIUSDT", "CTKUSDT"}
    wait_for(lambda: min(ticks(svc, s) for s in wanted) > 0, 30, "ticks of every leg")

    exchange.faults.delisted.add("CTKUSDT")  # exchangeInfo: SETTLING; its stream: silent
    exchange.cut_all()  # every socket drops; CTKUSDT's comes back silent
    wait_for(lambda: "CTKUSDT" in svc.status().symbol_notes, 20, "the delisting noticed")
    assert svc.status().symbol_notes == {"CTKUSDT": "delisted (status SETTLING on the exchange)"}
    wait_for(lambda: "CTKUSDT" not in collected(svc), 20, "CTKUSDT's feed stopped")
    keeps_updating(svc, ["BTCUSDT", "ETHUSDT", "SUSHIUSDT"])
    with open_reader(svc.db_path) as r:
        rows = watch_rows(PairBoard(), r, notes=svc.status().symbol_notes)
    notes = dict(zip(rows["pair"], rows["note"], strict=True))
    assert notes["SUSHIUSDT/CTKUSDT"] == "CTKUSDT: delisted (status SETTLING on the exchange)"
    assert notes["BTCUSDT/ETHUSDT"] == ""
    assert ticks(svc, "CTKUSDT") > 0  # what was stored stays
    assert svc.healthy() and svc.monitor.is_alive() and not svc.feed_error
    assert svc.check_symbol("CTKUSDT").startswith("CTKUSDT is not a trading USD-M perpetual")

    exchange.faults.delisted.discard("CTKUSDT")  # listed again: collected again
    wait_for(lambda: "CTKUSDT" in collected(svc), 30, "CTKUSDT collected again")
    assert svc.status().symbol_notes == {}


def test_a_watched_symbol_delisted_while_the_process_was_down_does_not_stop_the_others(
    tmp_path, exchange, monkeypatch
):
    for k, v in QUIET_ENV.items():
        monkeypatch.setenv(k, v)
    db = tmp_path / "live.db"

    with open_writer(db) as w:
        w.watch_pair("SUSHIUSDT", "KEEPUSDT", "1s", 10, "ols")
    exchange.faults.delisted.add("KEEPUSDT")
    settings = AppSettings(
        db_path=str(db), replay_db_path=str(tmp_path / "r.db"), ws_base=exchange.ws_base,
        rest_base=exchange.rest_base, autostart=True, probe_timeout_s=3.0,
    )  # fmt: skip
    svc = DashboardService(settings)
    try:
        want = {"BTCUSDT", "ETHUSDT", "SUSHIUSDT"}
        wait_for(lambda: collected(svc) == want, 30, "every symbol but the delisted one")
        wait_for(lambda: "KEEPUSDT" in svc.status().symbol_notes, 20, "KEEPUSDT named")
        assert "delisted" in svc.status().symbol_notes["KEEPUSDT"] and not svc.feed_error
    finally:
        svc.close()


def test_the_collector_follows_pairs_added_and_removed_in_the_database(tmp_path, exchange):
    """``python -m ingestion --alerts``: pairs added later are collected, and what it added
    for them stops when they are removed; the file's own legs stay."""
    from ingestion.__main__ import _Alerts
    from ingestion.config import FeedSettings
    from ingestion.service import FeedService

    toml = tmp_path / "alerts.toml"
    toml.write_text('[[pairs]]\nx = "BTCUSDT"\ny = "ETHUSDT"\n')
    alerts = _Alerts(str(toml))
    db = str(tmp_path / "collector.db")
    alerts.open(db)
    settings = FeedSettings(
        ws_base=exchange.ws_base, rest_base=exchange.rest_base, history_trades_s=5.0,
        history_klines_s=0.0,
    )  # fmt: skip
    service = FeedService(alerts.writer, alerts.symbols, settings).start()
    try:
        pid = alerts.writer.watch_pair("SUSHIUSDT", "CTKUSDT", "1s", 10, "ols")
        alerts.follow_watchlist(service)
        assert service.symbols == ["BTCUSDT", "ETHUSDT", "SUSHIUSDT", "CTKUSDT"]
        with open_reader(db) as r:
            wait_for(lambda: "CTKUSDT" in r.symbols(), 30, "CTKUSDT stored")
        assert alerts.writer.unwatch_pair(pid)
        alerts.follow_watchlist(service)
        assert service.symbols == ["BTCUSDT", "ETHUSDT"]
        alerts.writer.unwatch_pair(1)  # the file's pair: its legs were asked for, they stay
        alerts.follow_watchlist(service)
        assert service.symbols == ["BTCUSDT", "ETHUSDT"]
    finally:
        service.stop()
        alerts.close()


def test_the_page_names_a_delisted_symbol_in_the_status_strip_and_its_row(
    tmp_path, exchange, monkeypatch
):
    from service import registry
    from tests.test_app import _env, run

    exchange.faults.delisted.add("KEEPUSDT")
    db = tmp_path / "page.db"
    with open_writer(db) as w:
        w.watch_pair("SUSHIUSDT", "KEEPUSDT", "1s", 10, "ols")
    _env(monkeypatch, db, exchange.rest_base)
    try:
        at = run({"view": "Watchlist"})
        wait_for(lambda: "KEEPUSDT" in registry.SERVICE.status().symbol_notes, 10, "the note")
        at.run()
        note = "KEEPUSDT: delisted (status SETTLING on the exchange)"
        shown = [w.value.replace("\\", "") for w in at.warning]  # Markdown-escaped source
        assert f"Not collected: {note}." in shown
        rows = at.dataframe[0].value
        assert list(rows["note"]) == [note] and list(rows["pair"]) == ["SUSHIUSDT/KEEPUSDT"]
        assert not at.exception
    finally:
        if registry.SERVICE is not None:
            registry.SERVICE.close()
