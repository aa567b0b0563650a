"""Replay recorded trades as a local Binance USD-M endpoint (WebSocket + REST on one port).

    python -m ingestion.replay --port 9100 --speed 1 --loop \
        samples/btcusdt_ethusdt_20240808_trades.txt.gz

then point the collector at it::

    python -m ingestion --symbols btcusdt,ethusdt --db data.db \\
        --ws-base ws://127.0.0.1:9100 --rest-base http://127.0.0.1:9100

In-process (the dashboard does this): ``handle = start_replay_server(files, port=0)``, then
use ``handle.ws_base`` / ``handle.rest_base`` and call ``handle.stop()`` when done. The
protocol server and its options live in ``ingestion.fakebinance``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from config import SAMPLE_RECORDING
from ingestion.fakebinance import FakeBinance, Faults
from ingestion.recording import load_recording

__all__ = ["SAMPLE_RECORDING", "ReplayServer", "auto_id_offset", "main", "start_replay_server"]

#: The handle returned by ``start_replay_server``: ``.port``, ``.ws_base``, ``.rest_base``,
#: ``.stop()``, and ``.stats`` / ``.faults`` for tests.
ReplayServer = FakeBinance


def auto_id_offset(now_s: float | None = None) -> int:
    """An id offset that grows with the wall clock: one million ids per second since 1970.

    A replay restarted later serves higher ids than any earlier run (which would have had
    to serve more than a million ids per second of its life to catch up), so a database
    kept between replay sessions keeps growing instead of dropping the new session's
    trades as repeats of the old ids. The ids stay below 2**53 until the year 2255.
    """
    return int((time.time() if now_s is None else now_s) * 1_000_000)


def start_replay_server(
    files: Iterable[str | os.PathLike[str]] | None = None,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    speed: float = 1.0,
    loop: bool = True,
    preroll_s: float = 0.0,
    rebase_time: bool = True,
    faults: Faults | None = None,
    ping_interval_s: float | None = 180.0,
    id_offset: int | None = None,
) -> ReplayServer:
    """Start serving ``files`` (default: the bundled sample) in daemon threads; return the handle.

    ``speed`` multiplies the recorded pace (0 = as fast as the client reads). ``loop``
    repeats the recording with ids and times continuing upwards. With ``rebase_time`` the
    served trade times start at now minus ``preroll_s``; the pre-roll is history that REST
    already has when a client connects. ``id_offset`` is added to every served id;
    ``None`` picks ``auto_id_offset()`` so that restarts never reuse ids (0 serves the
    recorded ids, and derived aggregate ids from 1).
    """
    paths = [SAMPLE_RECORDING] if files is None else [Path(f) for f in files]
    recording = load_recording(paths)
    server = FakeBinance(
        recording,
        host=host,
        port=port,
        speed=speed,
        loop=loop,
        preroll_s=preroll_s,
        rebase_time=rebase_time,
        faults=faults,
        ping_interval_s=ping_interval_s,
        id_offset=auto_id_offset() if id_offset is None else id_offset,
    )
    return server.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion.replay",
        description="Serve recorded Binance USD-M trades as a local WebSocket + REST endpoint.",
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="recordings (default: the bundled sample)"
    )
    parser.add_argument("--port", type=int, default=9100, help="TCP port (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="pace multiplier of the recorded trade times (0 = full speed)",
    )
    parser.add_argument("--loop", action="store_true", help="repeat the recording forever")
    parser.add_argument(
        "--preroll",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds of the recording already in the past at start (REST only)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="MSG_PER_S",
        help="ignore recorded pacing: send this many messages/s per symbol, "
        "stamped with the send time (benchmarks)",
    )
    parser.add_argument(
        "--no-rebase",
        action="store_true",
        help="serve the recorded trade times instead of shifting them to now",
    )
    parser.add_argument("--ping-interval", type=float, default=180.0, metavar="SECONDS")
    parser.add_argument(
        "--id-offset",
        type=int,
        default=None,
        help="added to every served id (default: grows with the clock, so a "
        "restarted replay never reuses ids; 0 = recorded ids)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        paths = [Path(f) for f in args.files] or [SAMPLE_RECORDING]
        recording = load_recording(paths)
        server = FakeBinance(
            recording,
            host=args.host,
            port=args.port,
            speed=args.speed,
            loop=args.loop,
            preroll_s=args.preroll,
            rebase_time=not args.no_rebase,
            rate=args.rate,
            ping_interval_s=args.ping_interval or None,
            id_offset=auto_id_offset() if args.id_offset is None else args.id_offset,
        ).start()
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    counts = ", ".join(
        f"{s} {len(r.aggs)} aggTrades" + (f"/{len(r.trades)} trades" if r.trades else "")
        for s, r in recording.symbols.items()
    )
    print(
        f"replaying {counts} on ws={server.ws_base} rest={server.rest_base} "
        f"(speed {args.speed:g}{', loop' if args.loop else ''})",
        flush=True,
    )
    while not done.wait(0.5):
        if server.finished():
            print("recording finished; serving REST until interrupted", flush=True)
            done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
