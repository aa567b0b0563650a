"""Hostile-feed benchmark (issue 14): what each adversarial case costs, against a clean run.

    python bench/hostile.py [--seconds 15] [--case nested,int64,...] [--soak-minutes 0]

For each case the real collector (``FeedService``) streams BTCUSDT and ETHUSDT from the
local Binance look-alike (in this process), replaying the bundled real trades looped at
``--speed``, into a fresh SQLite file, with one hostile behaviour switched on
(``replay.faults``). A *clean* run with the same settings comes first, in the same
process, as the baseline. Printed per case:

- ``detect_s``: seconds from start until the case is handled (the frame rejected, the
  connection ended, the status says error ...);
- ``rss_mb``: peak growth of this process's resident memory over the run, in MB, and the
  ratio to the clean run's;
- ``cpu_s``: CPU seconds of this process (client *and* server) over the run, and the ratio;
- ``missing``: published ids not stored once the hostile mode is switched off and the
  collector caught up (0 = every genuine trade stored).

``--soak-minutes N`` then runs all hostile modes mixed with real trades for N minutes
(a connection per mode in turn, garbage frames, a nested frame, an id past 2**64 and a
far-ahead id) and checks that every genuine trade was stored.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from config import SAMPLE_RECORDING
from ingestion.backoff import instant_backoff
from ingestion.config import FeedSettings
from ingestion.service import FeedService
from ingestion.status import FeedState
from replay import FakeBinance, load_recording
from replay.faults import NESTED_FRAME, Faults, hostile_trade
from storage import open_reader, open_writer

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settings_for(server: FakeBinance) -> FeedSettings:
    return FeedSettings(
        ws_base=server.ws_base,
        rest_base=server.rest_base,
        history_trades_s=60.0,
        history_klines_s=0.0,
        ping_interval_s=2.0,
        pong_timeout_s=4.0,
        first_data_timeout_s=2.0,
        stale_after_s=3.0,
        stale_probe_interval_s=1.0,
        stale_grace_s=2.0,
        status_interval_s=1.0,
    )


def stored(db: Path, symbol: str) -> set[int]:
    with open_reader(db) as reader:
        try:
            return set(reader.ticks(symbol)["trade_id"].tolist())
        except Exception:  # no ticks yet
            return set()


def missing_after_calm(server: FakeBinance, db: Path, timeout_s: float = 60.0) -> int:
    """Switch hostility off; wait until everything published so far is stored."""
    server.faults.hostile = []
    server.faults.garbage_every = 0
    server.cut_all()  # a hostile connection in progress ends now
    want = {s: set(server.source_ids(s)) for s in SYMBOLS}
    deadline = time.monotonic() + timeout_s
    while True:
        missing = sum(len(want[s] - stored(db, s)) for s in SYMBOLS)
        if missing == 0 or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def run_case(
    name: str,
    faults: Faults,
    seconds: float,
    handled: Callable[[FeedService], bool],
    speed: float,
    tmp: Path,
    *,
    fill_db: bool = False,
    max_incoming_per_s: int | None = 10,
) -> dict:
    recording = load_recording([SAMPLE_RECORDING])
    db = tmp / f"{name}.db"
    peak = [rss_mb()]
    rss0, cpu0, t0 = peak[0], cpu_s(), time.monotonic()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    detect_s = None
    result: dict = {"case": name}
    with FakeBinance(
        recording,
        speed=speed,
        loop=True,
        preroll_s=5,
        faults=faults,
        max_incoming_per_s=max_incoming_per_s,
    ) as server:
        storage = open_writer(db)
        service = FeedService(
            storage, SYMBOLS, settings_for(server), backoff_factory=instant_backoff
        ).start()
        if fill_db:
            while not stored(db, "BTCUSDT") and time.monotonic() - t0 < 20:
                time.sleep(0.1)
            with storage._lock:  # SQLite's own limit: SQLITE_FULL like a full disk
                pages = storage._conn.execute("PRAGMA page_count").fetchone()[0]
                storage._conn.execute(f"PRAGMA max_page_count = {pages}")
        while time.monotonic() - t0 < seconds:
            if detect_s is None and handled(service):
                detect_s = round(time.monotonic() - t0, 2)
            time.sleep(0.05)
        result["rss_mb"] = round(peak[0] - rss0, 1)
        result["cpu_s"] = round(cpu_s() - cpu0, 2)
        if fill_db:
            result["state"] = sorted({str(s.state) for s in service.status().values()})
            clean = service.stop(timeout_s=3)
            storage.close()
            spill = db.with_name(db.name + ".unstored.jsonl")
            result["spilled"] = len(spill.read_text().splitlines()) if spill.exists() else 0
            result["stop_clean"] = clean
            service = FeedService(
                db, SYMBOLS, settings_for(server), backoff_factory=instant_backoff
            ).start()
            result["missing"] = missing_after_calm(server, db)
            service.stop()
        else:
            result["missing"] = missing_after_calm(server, db)
            service.stop()
            storage.close()
    done.set()
    result["detect_s"] = detect_s
    return result


def _reconnected(service: FeedService) -> bool:
    return all(s.reconnects >= 1 for s in service.status().values())


def _rejected(service: FeedService) -> bool:
    return all(sum(r.values()) for r in service.reject_reasons().values())


def cases() -> dict[str, tuple[Callable[[], Faults], Callable[[FeedService], bool], dict]]:
    lie_eth = hostile_trade("ETHUSDT", 10**12, price="60000.0")
    return {
        "clean": (Faults, lambda s: all(x.stored for x in s.status().values()), {}),
        "nested": (
            lambda: Faults(inject=[(s, 50, NESTED_FRAME) for s in SYMBOLS]),
            _rejected,
            {},
        ),
        "int64": (
            lambda: Faults(inject=[(s, 50, hostile_trade(s, 2**64)) for s in SYMBOLS]),
            _rejected,
            {},
        ),
        "ahead": (
            lambda: Faults(
                inject=[("BTCUSDT", 50, hostile_trade("BTCUSDT", 10**12)), ("ETHUSDT", 50, lie_eth)]
            ),
            _rejected,
            {},
        ),
        "fragments": (lambda: Faults(hostile=["endless_fragments"]), _reconnected, {}),
        "flood": (
            lambda: Faults(hostile=["ping_flood"]),
            _reconnected,
            {"max_incoming_per_s": None},
        ),
        "silent": (lambda: Faults(hostile=["silent"]), _reconnected, {}),
        "full": (
            Faults,
            lambda s: all(x.state is FeedState.ERROR for x in s.status().values()),
            {"fill_db": True},
        ),
    }


def soak(minutes: float, speed: float, tmp: Path) -> dict:
    """All hostile modes mixed with real trades; every genuine trade must be stored."""
    modes = [None, "ping_flood", None, "endless_fragments", None, "silent"]
    faults = Faults(
        hostile=modes * 1000,
        drop_after=[3000] * 6000,  # data connections end now and then: the next mode comes
        garbage_every=500,
        inject=[
            ("BTCUSDT", 100, NESTED_FRAME),
            ("ETHUSDT", 100, hostile_trade("ETHUSDT", 2**64)),
            ("BTCUSDT", 200, hostile_trade("BTCUSDT", 10**12)),
        ],
    )
    return run_case(
        "soak",
        faults,
        minutes * 60,
        lambda s: False,
        speed,
        tmp,
        max_incoming_per_s=None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per case (default 15)")
    parser.add_argument("--speed", type=float, default=5.0, help="replay speed (default 5)")
    parser.add_argument("--case", default="", help="comma-separated cases (default: all)")
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    args = parser.parse_args(argv)
    table = cases()
    wanted = ["clean"] + [c for c in (args.case.split(",") if args.case else table) if c != "clean"]
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        base = None
        for name in wanted:
            make_faults, handled, extra = table[name]
            r = run_case(name, make_faults(), args.seconds, handled, args.speed, Path(tmp), **extra)
            if base is None:
                base = r
            rss_ratio = r["rss_mb"] / base["rss_mb"] if base["rss_mb"] > 0 else float("nan")
            cpu_ratio = r["cpu_s"] / base["cpu_s"] if base["cpu_s"] > 0 else float("nan")
            extra_text = "".join(
                f" {k}={r[k]}" for k in ("state", "stop_clean", "spilled") if k in r
            )
            print(
                f"{name:<10} detect_s={r['detect_s']} rss_mb=+{r['rss_mb']} (x{rss_ratio:.2f})"
                f" cpu_s={r['cpu_s']} (x{cpu_ratio:.2f}) missing={r['missing']}{extra_text}",
                flush=True,
            )
        if args.soak_minutes > 0:
            with contextlib.suppress(KeyboardInterrupt):
                r = soak(args.soak_minutes, args.speed, Path(tmp))
                print(
                    f"soak {args.soak_minutes:g} min: rss_mb=+{r['rss_mb']} cpu_s={r['cpu_s']}"
                    f" missing={r['missing']}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
