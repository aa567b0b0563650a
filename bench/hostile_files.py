"""Hostile recordings: peak memory and time of each refusal, per consumer, in a fresh process.

    python bench/hostile_files.py [--consumers import,validate,replay]

Builds the hostile files of issue 9 (a 2 MB gzip of zeros that inflates to 2 GiB on one
endless line, the same with newlines, a file with no newline, ``/dev/zero``, a FIFO,
``/proc/self/environ``, a directory, a zip that declares 2 GiB) and hands each to
every consumer in its own ``python`` process:

- *import*: ``python -m storage import FILE``;
- *validate*: ``formats.validate_recording(FILE)``, what the page calls on an upload;
- *replay*: ``replay.load_recording([FILE])``, the replay server's loader.

It prints the exit status, the one-line refusal, wall time and peak RSS above *idle*: the
same consumer given a small valid recording (the first 2,000 lines of the bundled sample),
measured in the same run. ``tests/test_formats_hostile.py`` uses the same builders and
asserts the ≤ 100 MB bound; this script prints the figures for ``docs/formats.md``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "btcusdt_ethusdt_20240808_trades.txt.gz"
_MIB = 1024 * 1024

#: The child's address-space cap: far above any bounded refusal, far below the machine's
#: memory, so an unbounded reader fails with MemoryError instead of starving the machine.
CHILD_ADDRESS_SPACE = 3 * 1024 * _MIB

CONSUMERS = {
    "import": ["-m", "storage", "import", "{file}", "--db", "{db}"],
    "validate": [
        "-c",
        "import sys; from formats import ParseError, validate_recording\n"
        "try:\n    print(validate_recording(sys.argv[1]))\n"
        "except ParseError as e:\n    sys.exit(f'error: {e}')",
        "{file}",
    ],
    "replay": [
        "-c",
        "import sys; from formats import ParseError\n"
        "from replay import load_recording\n"
        "try:\n    print(len(load_recording([sys.argv[1]]).symbols))\n"
        "except ParseError as e:\n    sys.exit(f'error: {e}')",
        "{file}",
    ],
}


def _repeated_gzip(chunk: bytes, total: int) -> bytes:
    """A multi-member gzip of ``chunk`` repeated up to ``total`` bytes: valid for ``gunzip``,
    about 1/1000 of ``total`` for zeros, and its last member declares only one chunk, so a
    reader cannot refuse it from the trailer: the streaming cap must do it."""
    member = gzip.compress(chunk, compresslevel=9, mtime=0)
    return member * (total // len(chunk))


def make_hostile_files(folder: Path, *, with_zip: bool = True) -> dict[str, Path]:
    """Write the hostile inputs into ``folder``; return them by case name.

    The zip bomb takes about 30 s to deflate; ``with_zip=False`` leaves it out (tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    bomb = folder / "zeros_bomb.gz"
    bomb.write_bytes(_repeated_gzip(b"\0" * (64 * _MIB), 2048 * _MIB))
    out["gzip_bomb_2GiB_zeros"] = bomb
    blank = folder / "newlines_bomb.gz"
    blank.write_bytes(_repeated_gzip(b"\n" * (64 * _MIB), 2048 * _MIB))
    out["gzip_bomb_2GiB_newlines"] = blank
    if with_zip:
        zbomb = folder / "zeros.zip"
        with (
            zipfile.ZipFile(zbomb, "w", zipfile.ZIP_DEFLATED) as zf,
            zf.open("z.txt", "w", force_zip64=True) as fh,
        ):
            zero = b"\0" * (64 * _MIB)
            for _ in range(32):
                fh.write(zero)
        out["zip_bomb_2GiB"] = zbomb
    line = folder / "no_newline.txt"
    line.write_bytes(b"1" * (8 * _MIB))
    out["no_newline_8MiB"] = line
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    out["fifo"] = fifo
    out["directory"] = folder
    out["dev_zero"] = Path("/dev/zero")
    out["proc_self_environ"] = Path("/proc/self/environ")
    return out


def make_idle_file(folder: Path) -> Path:
    """A small valid recording: the first 2,000 lines of the bundled sample."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(2000)]
    path = folder / "idle.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def run_child(consumer: str, file: Path, db: Path, timeout_s: float = 120.0):
    """Run ``consumer`` on ``file`` in a fresh interpreter: (status, stderr lines, peak RSS
    in MiB, seconds). A child still running after ``timeout_s`` is killed (status None)."""
    argv = [a.replace("{file}", str(file)).replace("{db}", str(db)) for a in CONSUMERS[consumer]]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_limit_child,
        )
        status: int | None = None
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(wait_status)
                break
            if time.monotonic() - started > timeout_s:
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)  # polling a child process, not waiting for an outcome
        proc.returncode = status if status is not None else -9
        seconds = time.monotonic() - started
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").splitlines()
    return status, lines, usage.ru_maxrss / 1024, seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--consumers", default=",".join(CONSUMERS))
    args = ap.parse_args(argv)
    consumers = args.consumers.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.monotonic()
        files = make_hostile_files(folder / "hostile")
        print(f"built the hostile files in {time.monotonic() - t0:.1f} s")
        idle_file = make_idle_file(folder)
        print("| consumer | input | status | peak RSS | above idle | time | message |")
        print("|---|---|---:|---:|---:|---:|---|")
        for consumer in consumers:
            status, _, idle, secs = run_child(consumer, idle_file, folder / "idle.db")
            print(f"| {consumer} | idle (2,000 valid lines) | {status} | {idle:.0f} MiB | 0 | "
                  f"{secs:.2f} s | |")  # fmt: skip
            for name, path in files.items():
                status, err, peak, secs = run_child(consumer, path, folder / f"{name}.db")
                message = (err[-1] if err else "").replace(str(folder), "…")[:90]
                print(f"| {consumer} | {name} | {status} | {peak:.0f} MiB | "
                      f"{peak - idle:+.0f} MiB | {secs:.2f} s | {message} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
