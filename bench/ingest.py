"""Ingestion benchmark: the real client into SQLite versus a bare websocket-client loop.

    python bench/ingest.py [--messages 200000] [--rounds 3] [--rate 1000] [--latency-s 10]

1. Throughput. A replay server (a separate process, so it has its own interpreter) sends
   real BTCUSDT aggregates, looped with ids continuing upwards, as fast as the socket takes
   them. Each round runs, on fresh connections:
   - *bare*: ``websocket-client`` ``recv`` + ``formats.parse_message`` per frame,
     nothing else (same socket options as the pipeline: no UTF-8 check, no locks);
   - *pipeline*: ``FeedService`` (connection, parse, id-gap check, bounded queue, batched
     commits through ``storage.Writer`` into a fresh SQLite file) until ``--messages`` ticks
     are committed.
   Both are timed from the first message received. Rates are per second; the ratio is
   pipeline / bare; the median round is reported (other engineers share these machines).
2. Latency. A second server sends a steady ``--rate`` messages per second, each stamped
   with its send time as trade time ``T``; the pipeline reports, per committed tick,
   commit wall time minus ``T``: the trade-to-committed latency (p50, p99, max).

Targets (issue 2): pipeline ≥ 0.7 × bare; p99 ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from websocket import create_connection

from config import SAMPLE_RECORDING
from formats.wire import parse_message
from ingestion.backoff import instant_backoff
from ingestion.config import FeedSettings
from ingestion.service import FeedService

ROOT = Path(__file__).resolve().parent.parent

SYMBOL = "BTCUSDT"


class ReplayProcess:
    """``python -m replay`` in a child process; parses its ws/rest bases."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "replay",
                "--port",
                "0",
                "--loop",
                "--ping-interval",
                "0",
                *args,
                str(SAMPLE_RECORDING),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        match = re.search(r"ws=(\S+) rest=(\S+)", line)
        if not match:
            self.close()
            raise RuntimeError(f"replay server did not start: {line!r}")
        self.ws_base, self.rest_base = match.group(1), match.group(2)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def bare_loop(ws_base: str, n: int) -> float:
    """Messages per second of recv + parse, nothing else."""
    ws = create_connection(
        f"{ws_base}/market/ws/{SYMBOL.lower()}@aggTrade",
        skip_utf8_validation=True,
        enable_multithread=False,
    )
    ws.settimeout(5)
    try:
        parse_message(ws.recv_data()[1])
        started = time.perf_counter()
        for _ in range(n):
            parse_message(ws.recv_data()[1])
        return n / (time.perf_counter() - started)
    finally:
        ws.close()


def pipeline(server: ReplayProcess, n: int, db: Path) -> tuple[float, dict]:
    """Messages per second from the first received to the n-th committed."""
    committed = [0]
    done = threading.Event()
    finish = [0.0]

    def on_commit(ticks, _now_s) -> None:
        committed[0] += len(ticks)
        if committed[0] >= n and not done.is_set():
            finish[0] = time.perf_counter()
            done.set()

    settings = FeedSettings(ws_base=server.ws_base, rest_base=server.rest_base, history=False)
    service = FeedService(
        db, [SYMBOL], settings, backoff_factory=instant_backoff, on_commit=on_commit
    )
    service.start()
    try:
        while service.status()[SYMBOL].messages == 0:
            time.sleep(0.001)
        started = time.perf_counter()
        if not done.wait(300):
            raise RuntimeError("pipeline did not commit in time")
        writer = service.writer_status()
        return n / (finish[0] - started), {
            "batches": writer.batches if writer else 0,
            "blocked_s": writer.blocked_s if writer else 0.0,
            "high_water": writer.high_water if writer else 0,
        }
    finally:
        service.stop()


def latency(rate: float, seconds: float, db: Path) -> dict:
    """Trade-to-committed latency at a steady rate (the server stamps T = send time)."""
    server = ReplayProcess("--rate", str(rate))
    samples: list[float] = []
    measuring = threading.Event()

    def on_commit(ticks, now_s) -> None:
        if measuring.is_set():
            now_ms = now_s * 1000
            samples.extend(now_ms - t.ts_ms for t in ticks)

    settings = FeedSettings(ws_base=server.ws_base, rest_base=server.rest_base, history=False)
    service = FeedService(
        db, [SYMBOL], settings, backoff_factory=instant_backoff, on_commit=on_commit
    )
    try:
        service.start()
        time.sleep(1.0)  # warm-up: connection, first batches
        measuring.set()
        time.sleep(seconds)
        measuring.clear()
    finally:
        service.stop()
        server.close()
    samples.sort()
    if not samples:
        raise RuntimeError("no ticks committed during the latency run")
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "ticks": len(samples),
        "rate_measured": len(samples) / seconds,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "max_ms": samples[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--latency-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    print(
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (1 min), "
        f"python {sys.version.split()[0]}"
    )
    try:
        import wsaccel  # noqa: F401

        print("wsaccel installed (websocket-client uses it)")
    except ImportError:
        print("wsaccel not installed")
    results: dict = {"rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        server = ReplayProcess("--speed", "0")
        try:
            for k in range(args.rounds):
                bare = bare_loop(server.ws_base, args.messages)
                piped, info = pipeline(server, args.messages, Path(tmp) / f"round{k}.db")
                results["rounds"].append({"bare": bare, "pipeline": piped, **info})
                print(
                    f"round {k + 1}: bare {bare:,.0f} msg/s, pipeline {piped:,.0f} msg/s, "
                    f"ratio {piped / bare:.2f} ({info['batches']} commits, "
                    f"producers blocked {info['blocked_s']:.2f} s)",
                    flush=True,
                )
        finally:
            server.close()
        bare_med = statistics.median(r["bare"] for r in results["rounds"])
        pipe_med = statistics.median(r["pipeline"] for r in results["rounds"])
        ratio_med = statistics.median(r["pipeline"] / r["bare"] for r in results["rounds"])
        results.update(bare=bare_med, pipeline=pipe_med, ratio=ratio_med)
        print(
            f"throughput ({args.messages:,} messages per run, median of {args.rounds}): "
            f"bare {bare_med:,.0f} msg/s, pipeline {pipe_med:,.0f} msg/s, "
            f"ratio {ratio_med:.2f} (target >= 0.70)"
        )
        lat = latency(args.rate, args.latency_s, Path(tmp) / "latency.db")
        results["latency"] = lat
        print(
            f"latency at {args.rate:,.0f} msg/s ({lat['ticks']:,} trades in {args.latency_s:g} s, "
            f"{lat['rate_measured']:,.0f}/s committed): p50 {lat['p50_ms']:.0f} ms, "
            f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms (target p99 <= 300 ms)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
