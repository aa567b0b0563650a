"""Replay recorded trades as a local Binance USD-M endpoint (WebSocket + REST on one port).

    python -m replay --port 9100 --speed 1 --loop \\
        samples/btcusdt_ethusdt_20240808_trades.txt.gz

then point the collector at it::

    python -m ingestion --symbols btcusdt,ethusdt --db data.db \\
        --ws-base ws://127.0.0.1:9100 --rest-base http://127.0.0.1:9100

``--fault NAME[=VALUE]`` (repeatable) injects faults for tests and benchmarks
(``replay.faults.Faults``): ``--fault garbage_every=25 --fault drop_after=50,200``.

In-process (the dashboard does this): ``handle = replay.start_replay_server(files, port=0)``,
then use ``handle.ws_base`` / ``handle.rest_base`` and call ``handle.stop()`` when done.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from config import SAMPLE_RECORDING
from replay.recording import Recording, load_recording
from replay.server import FakeBinance, auto_id_offset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m replay",
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
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="inject a fault (tests, benchmarks), e.g. garbage_every=25, drop_after=50,200, "
        "skip_ids=5,6, rest_429=3, silent, hostile=ping_flood; see replay/faults.py",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _start(args: argparse.Namespace) -> tuple[FakeBinance, Recording]:
    faults = None
    if args.fault:
        from replay.faults import Faults  # only when asked: the plain replay runs without it

        faults = Faults.from_options(args.fault)
    recording = load_recording([Path(f) for f in args.files] or [SAMPLE_RECORDING])
    server = FakeBinance(
        recording,
        host=args.host,
        port=args.port,
        speed=args.speed,
        loop=args.loop,
        preroll_s=args.preroll,
        rebase_time=not args.no_rebase,
        rate=args.rate,
        faults=faults,
        ping_interval_s=args.ping_interval or None,
        id_offset=auto_id_offset() if args.id_offset is None else args.id_offset,
    )
    return server.start(), recording


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server, recording = _start(args)
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
