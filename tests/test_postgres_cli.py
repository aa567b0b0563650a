"""``python -m storage`` with ``--db postgresql://...`` and ``DATABASE_URL``: import, export,
info, prune, and ``copy`` between SQLite and PostgreSQL, on the real recorded files. The SQLite
run of the same commands is the reference: the outputs must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from storage import Gap, IdKind, Tick, open_reader, open_writer
from storage.__main__ import main
from storage.records import FundingRate
from storage.transfer import copy_database

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
HFT = "binance_usdm_ws_hftbacktest"
KLINES = "binance_usdm_klines_1m"


def cli(capsys, *argv) -> tuple[int, str, list[str]]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def everything(db) -> dict:
    """All a reader sees, per symbol: id kind, ticks, bars of every timeframe, gaps."""
    with open_reader(db) as r:
        out = {
            s: (
                r.id_kind(s),
                r.ticks(s),
                {tf: r.bars(s, tf) for tf in ("1s", "1m", "5m")},
                r.gaps(s).drop(columns=["gap_id"]),
            )
            for s in r.symbols()
        }
        out["_alerts"] = (
            r.alert_rules().drop(columns=["rule_id"]),
            r.alert_events()[["fired_ts_ms", "bar_time_ms", "value", "message"]],
        )
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for s in a:
        if s == "_alerts":
            for x, y in zip(a[s], b[s], strict=True):
                pd.testing.assert_frame_equal(x, y, check_dtype=False)
            continue
        assert a[s][0] == b[s][0], s
        pd.testing.assert_frame_equal(a[s][1], b[s][1], check_exact=True)
        for tf in a[s][2]:
            pd.testing.assert_frame_equal(a[s][2][tf], b[s][2][tf], check_exact=True)
        pd.testing.assert_frame_equal(a[s][3], b[s][3], check_dtype=False)


@pytest.fixture
def real_files(storage_real_dir: Path) -> list[Path]:
    return [
        storage_real_dir / HFT / "btcusdt_20240808.gz",
        storage_real_dir / HFT / "ethusdt_20240808.gz",
        storage_real_dir / KLINES / "ALGOUSDT-1m-2024-02.csv",
    ]


def test_import_export_info_prune_match_sqlite(
    pg_url: str, tmp_path: Path, real_files, capsys, monkeypatch
) -> None:
    lite = tmp_path / "ref.db"
    for db in (lite, pg_url):
        status, out, err = cli(capsys, "import", *real_files, "--db", db)
        assert status == 0 and not [ln for ln in err if "error" in ln], err  # progress only
        assert "BTCUSDT" in out and "klines" in out
        assert "qd:qd@" not in out  # a URL's password is never printed
    status, out, err = cli(capsys, "import", real_files[0], "--db", pg_url)
    assert status == 0 and "0 new ticks" in out  # idempotent
    for symbol, tf in (("BTCUSDT", "1s"), ("ETHUSDT", "5m"), ("ALGOUSDT", "1m")):
        a, b = tmp_path / f"a-{tf}.csv", tmp_path / f"b-{tf}.csv"
        assert (
            cli(capsys, "export", "--db", lite, "--symbol", symbol, "--tf", tf, "--out", a)[0] == 0
        )
        assert (
            cli(capsys, "export", "--db", pg_url, "--symbol", symbol, "--tf", tf, "--out", b)[0]
            == 0
        )
        assert a.read_bytes() == b.read_bytes(), (symbol, tf)
    status, out, _ = cli(capsys, "info", "--db", lite, "--json")
    ref = json.loads(out)
    # DATABASE_URL is the default database of every command.
    monkeypatch.setenv("DATABASE_URL", pg_url)
    status, out, err = cli(capsys, "info", "--json")
    assert (status, err) == (0, [])
    info = json.loads(out)
    assert info["symbols"] == ref["symbols"] and info["backend"] == "postgresql"
    assert info["path"].startswith("postgresql://qd:***@")
    status, out, _ = cli(capsys, "info")
    assert "BTCUSDT (trade ids): 21,313 ticks" in out and ": database " in out
    # Retention from the environment, the same rows gone on both.
    monkeypatch.setenv("TICKS_KEEP_HOURS", "1")
    monkeypatch.setenv("BARS_1S_KEEP_DAYS", "forever")
    lite_pruned = cli(capsys, "prune", "--db", lite)[1]
    assert cli(capsys, "prune")[1] == lite_pruned
    assert "deleted" in lite_pruned


def test_copy_sqlite_to_postgres_and_back_keeps_everything(
    pg_url: str, tmp_path: Path, real_files, capsys
) -> None:
    src = tmp_path / "src.db"
    assert cli(capsys, "import", *real_files, "--db", src)[0] == 0
    with open_writer(src) as w:
        w.record_gap(
            Gap(
                "BTCUSDT", 10, 19, 1_723_161_300_000, status="partial", repaired_count=3, detail="d"
            )
        )
        rid = w.add_alert_rule(
            name="z",
            x="BTCUSDT",
            y="ETHUSDT",
            tf="1m",
            metric="zscore",
            op=">",
            threshold=2.0,
            cooldown_s=60,
            params={"w": 3},
        )
        w.fire_alert(rule_id=rid, bar_time_ms=60_000, value=2.5, message="m", fired_ts_ms=7)
        w.save_feed_status("c1", "BTCUSDT", {"state": "live"})
        # Bars that outlived their ticks must move as they are, not be rebuilt from ticks.
        w.prune(now_ms_=1_723_161_600_000, ticks_keep_s=60, bars_1s_keep_s=None)
    before = everything(src)
    status, out, err = cli(capsys, "copy", "--from", src, "--to", pg_url)
    assert status == 0, err
    assert "copied 3 symbols, 1 alert rules, 1 alert events" in out and "qd:qd@" not in out
    assert_same(everything(pg_url), before)
    with open_reader(pg_url) as r:
        assert r.feed_status().empty  # live status describes collectors, not data
    # Run again: nothing is doubled, every symbol is skipped.
    status, out, _ = cli(capsys, "copy", "--from", src, "--to", pg_url)
    assert status == 0 and out.count("skipped") == 3 and "0 alert rules" in out
    assert_same(everything(pg_url), before)
    # And back into a new SQLite file.
    back = tmp_path / "back.db"
    assert cli(capsys, "copy", "--from", pg_url, "--to", f"sqlite:///{back}")[0] == 0
    assert_same(everything(back), before)


def test_copy_skips_symbols_the_destination_has_and_takes_only_those_asked(
    pg_url: str, tmp_path: Path
) -> None:
    src = tmp_path / "s.db"
    with open_writer(src) as w:
        for sym in ("AAAUSDT", "BBBUSDT", "CCCUSDT"):
            w.write_ticks(
                [Tick(sym, i, i * 1_000, 1.0 + i, 1.0, False, IdKind.AGG) for i in range(10)]
            )
    with open_writer(pg_url) as w:
        w.write_ticks([Tick("BBBUSDT", 99, 5, 7.0, 1.0, False, IdKind.AGG)])
    report = copy_database(str(src), pg_url, symbols=["aaausdt", "BBBUSDT"])
    assert list(report.copied) == ["AAAUSDT"] and report.skipped == ["BBBUSDT"]
    with open_reader(pg_url) as r:
        assert r.symbols() == ["AAAUSDT", "BBBUSDT"]
        assert r.ticks("BBBUSDT")["trade_id"].tolist() == [99]
        assert r.bars("AAAUSDT", "1m")["trades"].tolist() == [10]
    with pytest.raises(Exception, match="has no symbols ZZZUSDT"):
        copy_database(str(src), pg_url, symbols=["ZZZUSDT"])
    with pytest.raises(Exception, match="same database"):
        copy_database(pg_url, pg_url)


def funding(db) -> dict[str, list[tuple]]:
    """Each symbol's stored funding events as plain tuples (None where the mark is unknown)."""
    with open_reader(db) as r:
        frames = {s: r.funding_rates(s) for s in ("AAAUSDT", "BBBUSDT")}
    return {
        s: [tuple(None if pd.isna(v) else v for v in row) for row in f.itertuples(index=False)]
        for s, f in frames.items()
    }


def test_copy_carries_funding_rates_both_ways_once(pg_url: str, tmp_path: Path, capsys) -> None:
    src, back = tmp_path / "f.db", tmp_path / "back.db"
    rates = [FundingRate("AAAUSDT", 8 * 3_600_000 * k, 1e-4 * k, 60_000.5) for k in range(1, 4)]
    rates.append(FundingRate("BBBUSDT", 8 * 3_600_000, -2.5e-5, None))  # mark not said
    with open_writer(src) as w:
        w.write_ticks([Tick("AAAUSDT", 1, 5, 7.0, 1.0, False, IdKind.AGG)])
        w.write_funding_rates(rates)
    before = funding(src)
    assert sum(map(len, before.values())) == 4
    status, out, err = cli(capsys, "copy", "--from", src, "--to", pg_url)
    assert status == 0 and "4 funding events" in out, (out, err)
    assert funding(pg_url) == before
    status, out, _ = cli(capsys, "copy", "--from", src, "--to", pg_url)  # idempotent
    assert status == 0 and "0 funding events" in out and funding(pg_url) == before
    status, out, _ = cli(capsys, "copy", "--from", pg_url, "--to", f"sqlite:///{back}")
    assert status == 0 and "4 funding events" in out and funding(back) == before
    # With --symbols, only the events of those symbols move.
    only = tmp_path / "only.db"
    assert copy_database(str(src), str(only), symbols=["aaausdt"]).funding_rates == 3
    assert funding(only) == {"AAAUSDT": before["AAAUSDT"], "BBBUSDT": []}


def test_real_command_line_with_a_url(pg_url: str, pg_server: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": pg_url}
    run = subprocess.run(
        [sys.executable, "-m", "storage", "info"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: no data in postgresql://qd:***@")
    assert len(run.stderr.splitlines()) == 1
    bad = "postgresql://qd:secret@127.0.0.1:1/none"
    run = subprocess.run(
        [sys.executable, "-m", "storage", "info", "--db", bad],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "cannot reach" in run.stderr and "secret" not in run.stderr
    assert len(run.stderr.splitlines()) == 1
