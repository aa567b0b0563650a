"""The Watchlist tab (AppTest, real recorded trades) and secrets: never shown in full.

The secrets test renders the Watchlist and Alerts tabs, runs the delivery worker against a
local endpoint that refuses the Telegram token, and greps the rendered page, the logs and
every export for the token and the secret webhook path: only the masked forms may appear.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bench.harness import elements
from service import exports, registry
from service.delivery import DeliveryWorker, RetryPolicy
from service.watchlist import main as watchlist_cli
from service.watchlist import watch_rows
from storage import open_reader, open_writer
from storage.__main__ import import_file
from tests.alert_endpoints import Endpoint
from tests.conftest import STORAGE_REAL_DIR, wait_for
from tests.test_app import _env, exchange, run  # noqa: F401 - exchange: a fixture

REAL = STORAGE_REAL_DIR
HFT = [
    REAL / "binance_usdm_ws_hftbacktest" / f for f in ("btcusdt_20240808.gz", "ethusdt_20240808.gz")
]
TOKEN = "987654321:AAHsecretTelegramTokenForTests_xyz"
HOOK_SECRET = "T0SECRET/B0SECRET/abcdefSECRETpath"


@pytest.fixture(scope="module")
def endpoint():
    with Endpoint(default="401") as ep:
        yield ep


@pytest.fixture(scope="module")
def page_db(tmp_path_factory, exchange, endpoint) -> Iterator[Path]:  # noqa: F811
    """Real captures; three watched pairs; two sinks with secrets; one alert that failed."""
    for f in HFT:
        if not f.is_file():
            pytest.skip(f"real recording {f} not found")
    db = tmp_path_factory.mktemp("watch") / "real.db"
    with open_writer(db) as w:
        for f in HFT:
            import_file(w, f)
        w.watch_pair("BTCUSDT", "ETHUSDT", "1s", 30, "ols")
        w.watch_pair("ETHUSDT", "BTCUSDT", "1s", 60, "kalman")
        w.watch_pair("BTCUSDT", "ETHUSDT", "5m", 10, "ols")  # warming up: 2 bars
        w.add_sink(
            name="tg",
            kind="telegram",
            target="env:QD_TEST_TG_TOKEN",
            params={"chat_id": "-1001", "api_base": endpoint.url("")},
        )
        w.add_sink(name="slack", kind="slack", target="env:QD_TEST_SLACK_URL")
        rid = w.add_alert_rule(
            name="wide", x="BTCUSDT", y="ETHUSDT", tf="1s", metric="abs_zscore", op=">",
            threshold=2.0, cooldown_s=0.0, params={"window": 30, "method": "ols"},
        )  # fmt: skip
        w.fire_alert(rule_id=rid, bar_time_ms=1723161300000, value=2.4, message="wide spread")
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, db, exchange.rest_base)
        mp.setenv("QD_TEST_TG_TOKEN", TOKEN)
        mp.setenv("QD_TEST_SLACK_URL", endpoint.url(f"/services/{HOOK_SECRET}"))
        yield db
        if registry.SERVICE is not None:
            registry.SERVICE.close()


def _run(view: str) -> AppTest:
    return run({"view": view}, timeout_s=60)


def _pairs_table(at: AppTest):
    """The watched pairs' table (the one with a ``pair`` column) as a DataFrame."""
    return next(d.value for d in at.dataframe if "pair" in d.value.columns)


def _rendered(at: AppTest) -> str:
    """Everything the page sent: every element's protobuf (text, tables as Arrow bytes)."""
    parts = []
    for node in elements(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
            parts.append(proto.SerializeToString().decode("latin-1"))
    for df in at.dataframe:
        parts.append(df.value.to_csv())
    return "\n".join(parts)


def test_watchlist_rows_are_sorted_by_abs_z_and_computed_once_per_bar(page_db: Path) -> None:
    from service.watch import PairBoard

    board = PairBoard(fresh_s=0.0)  # every request reads the version: the count is exact
    with open_reader(page_db) as r:
        rows = watch_rows(board, r)
        computed = board.computed
        again = watch_rows(board, r)
    assert board.computed == computed  # no new bar: nothing recomputed
    assert list(rows["pair"]) == list(again["pair"]) and len(rows) == 3
    z = rows["z"].abs().to_numpy()
    finite = z[~(z != z)]
    assert list(finite) == sorted(finite, reverse=True) and len(finite) >= 2
    warm = rows[rows["tf"] == "5m"].iloc[0]
    assert math.isnan(warm["z"]) and warm["bars"] >= 1
    ols = rows[(rows["tf"] == "1s") & (rows["method"] == "ols")].iloc[0]
    assert ols["bars"] > 30 and len(ols["z_spark"]) > 0 and math.isfinite(ols["beta"])


def test_watchlist_tab_shows_every_pair_and_the_sinks_masked(page_db: Path) -> None:
    at = _run("Watchlist")
    assert not at.error, [e.value for e in at.error]
    pairs = _pairs_table(at)
    assert sorted(pairs["pair"]) == ["BTCUSDT/ETHUSDT", "BTCUSDT/ETHUSDT", "ETHUSDT/BTCUSDT"]
    (sinks,) = [d.value for d in at.dataframe if "kind" in d.value.columns]
    sinks = sinks.set_index("name")
    assert sinks.loc["tg", "target"] == "$QD_TEST_TG_TOKEN"
    assert sinks.loc["slack", "target"] == "$QD_TEST_SLACK_URL"
    assert any(b.label == "Send test message" for b in at.button)


def test_no_secret_in_page_logs_or_exports(page_db: Path, endpoint, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    if registry.SERVICE is not None:  # the page's service holds the writer: close it
        registry.SERVICE.close()
        registry.SERVICE = None
    with open_writer(page_db) as w:
        w.fire_alert(rule_id=1, bar_time_ms=1723161310000, value=2.6, message="wider")
        fast = RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=2, timeout_s=2.0)
        worker = DeliveryWorker(w, str(page_db), policy=fast, poll_s=0.05).start()
        try:

            def settled() -> bool:
                with open_reader(page_db) as r:
                    return Counter(r.deliveries()["status"]) == Counter(failed=4)

            wait_for(settled, what="every delivery failed (401)")
        finally:
            worker.stop()
    assert {h.path for h in endpoint.hits} == {
        f"/bot{TOKEN}/sendMessage",
        f"/services/{HOOK_SECRET}",
    }  # the secrets did reach the endpoint: they are real
    page = _rendered(_run("Watchlist")) + _rendered(_run("Alerts"))
    assert "tg: failed" in page  # the delivery state is in the alert log
    with open_reader(page_db) as r:
        outputs = {
            "page": page,
            "logs": "\n".join(rec.getMessage() for rec in caplog.records),
            "alert log": exports.alert_log_csv(str(page_db)).decode(),
            "deliveries": exports.deliveries_csv(str(page_db)).decode(),
            "database": "\n".join(
                df.to_csv() for df in (r.alert_sinks(), r.deliveries(), r.alert_events())
            ),
        }
    assert "HTTP 401" in outputs["deliveries"] and "HTTP 401" in outputs["logs"]
    for where, text in outputs.items():
        for secret in (TOKEN, HOOK_SECRET, TOKEN.split(":")[1]):
            assert secret not in text, f"{where} shows a secret"


def test_watchlist_cli_adds_lists_and_removes(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "cli.db")
    assert watchlist_cli(["--db", db, "add", "btcusdt/ethusdt", "--window", "30"]) == 0
    assert watchlist_cli(["--db", db, "add", "btcusdt/btcusdt"]) == 2
    assert "the two legs must differ" in capsys.readouterr().err
    assert (
        watchlist_cli(["--db", db, "add-sink", "x", "--kind", "webhook", "--url", "ftp://a"]) == 2
    )
    assert "http(s)" in capsys.readouterr().err
    assert watchlist_cli(["--db", db, "add-sink", "s", "--kind", "slack", "--url-env", "V"]) == 0
    assert watchlist_cli(["--db", db, "sinks"]) == 0
    out = capsys.readouterr().out
    assert "$V" in out
    assert watchlist_cli(["--db", db, "list"]) == 0
    assert "BTCUSDT/ETHUSDT" in capsys.readouterr().out
    assert watchlist_cli(["--db", db, "remove", "1"]) == 0
    assert watchlist_cli(["--db", db, "remove", "1"]) == 2
    assert "no watched pair with id 1" in capsys.readouterr().err


def test_a_rule_can_be_added_on_any_watched_pair(page_db: Path) -> None:
    at = _run("Alerts")
    pick = at.selectbox(key="rule_pair")
    labels = list(pick.options)
    assert labels[0].endswith("(Live panel)") and "ETHUSDT/BTCUSDT 1s w60 kalman" in labels
    pick.select_index(labels.index("ETHUSDT/BTCUSDT 1s w60 kalman"))
    at.selectbox(key="rule_metric").set_value("zscore")
    at.number_input(key="rule_threshold").set_value(1.5)
    at.button[[b.label for b in at.button].index("Add rule")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with open_reader(page_db) as r:
        rules = r.alert_rules()
    new = rules[rules["metric"] == "zscore"].iloc[-1]
    assert (new["x"], new["y"], new["tf"]) == ("ETHUSDT", "BTCUSDT", "1s")
    assert '"method": "kalman"' in new["params"] and '"window": 60' in new["params"]


def test_one_click_on_a_pairs_pill_opens_it_in_the_live_panel(page_db: Path) -> None:
    """A pill per row, in the table's order; one click sets the sidebar's pair, timeframe,
    window and method, switches to the Live tab, and clears the pill (a later click on the
    same pill opens it again)."""
    at = _run("Watchlist")
    pills = at.button_group(key="watchlist_open")
    table = _pairs_table(at)
    assert [label.split(" · ")[0] for label in pills.options] == list(table["pair"])
    with open_reader(page_db) as r:
        watched = r.watchlist()
    pid = int(watched[watched["method"] == "kalman"]["pair_id"].iloc[0])
    assert pills.format_func(pid) == "ETHUSDT/BTCUSDT · 1s · w60 · kalman"
    pills.set_value(pid).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    state = at.session_state
    assert (state["x"], state["y"], state["tf"], state["window"]) == (
        "ETHUSDT",
        "BTCUSDT",
        "1s",
        60,
    )
    assert state["method"] == "Kalman" and state["view"] == "Live"
    assert state["watchlist_open"] is None
    assert at.title[0].value == "ETHUSDT / BTCUSDT · 1s"  # the full rerun drew the new pair
