"""Watched pairs computed once per new bar, on the page's statistics; when a bar is closed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.alerts import AlertMonitor
from service.compute import PairParams, compute_pair
from service.watch import PairBoard, PairKey, closed_until_ms, compute_snapshot
from storage import IdKind, Tick, Writer, open_reader, open_writer


def _bars(w: Writer, seconds: range, rng: np.random.Generator, t0: int = 1_700_000_000_000):
    for s in seconds:
        a = 100.0 + rng.normal()
        w.write_ticks(
            [
                Tick("AUSDT", s + 1, t0 + s * 1000 + 5, a, 1.0, False, IdKind.AGG),
                Tick("BUSDT", s + 1, t0 + s * 1000 + 7, a / 2 + rng.normal(0, 0.1), 1.0,
                     False, IdKind.AGG),
            ]
        )  # fmt: skip


@pytest.mark.parametrize("method", ["ols", "kalman", "huber"])
def test_snapshot_figures_are_the_live_panels(tmp_path: Path, method: str) -> None:
    db = tmp_path / "w.db"
    with open_writer(db) as w:
        _bars(w, range(800), np.random.default_rng(1))
    key = PairKey("AUSDT", "BUSDT", "1s", 30, method)
    with open_reader(db) as r:
        snap = compute_snapshot(r, key)
        params = PairParams(x="AUSDT", y="BUSDT", window=30, method=method)  # page defaults
        page = compute_pair(r.pair_frame("AUSDT", "BUSDT", "1s", limit=params.read_bars), params)
    t = page.table.set_index("time_ms")
    closed = snap.figures["last_closed_ms"]
    assert closed == int(t.index[-2])
    assert snap.figures["z"] == pytest.approx(t.loc[closed, "zscore"], rel=1e-9)
    assert snap.figures["beta"] == pytest.approx(t.loc[closed, "beta"], rel=1e-9)
    assert snap.figures["corr"] == pytest.approx(t.loc[closed, "corr"], rel=1e-9)


def test_each_pair_is_computed_once_per_new_bar_whatever_the_rules(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    rng = np.random.default_rng(2)
    with open_writer(db) as w:
        _bars(w, range(100), rng)
        for metric in ("zscore", "abs_zscore", "corr", "spread"):
            w.add_alert_rule(
                name="", x="AUSDT", y="BUSDT", tf="1s", metric=metric, op=">", threshold=9.0,
                cooldown_s=0.0, params={"window": 30, "method": "ols"},
            )  # fmt: skip
        board = PairBoard()
        mon = AlertMonitor(w, str(db), board=board)
        with open_reader(db) as r:
            mon.run_once(r)
            assert board.computed == 1
            mon.run_once(r)
            board.get(r, PairKey("AUSDT", "BUSDT", "1s", 30, "ols"))  # a viewer, same bar
            assert board.computed == 1
            _bars(w, range(100, 101), rng)
            mon.run_once(r)
            board.get(r, PairKey("AUSDT", "BUSDT", "1s", 30, "ols"))
            assert board.computed == 2 and mon.stats.evaluations == 8


def test_a_bar_is_closed_once_both_legs_traded_past_it_or_after_the_grace() -> None:
    s = 1000
    assert closed_until_ms((10 * s, 10 * s), s) == 9 * s
    assert closed_until_ms((10 * s, 11 * s), s) == 9 * s  # y at 11 but x may still print 10
    assert closed_until_ms((10 * s, 14 * s), s) == 11 * s  # x silent: 2 bars of grace
