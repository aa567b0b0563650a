"""Rebuild ``btcusdt_ethusdt_20240808_trades.txt.gz`` from the hftbacktest capture (see README.md).

Usage: python samples/extract_sample.py SRC_DIR [OUT]
SRC_DIR holds ``btcusdt_20240808.gz`` and ``ethusdt_20240808.gz``. The output keeps only the
``@trade`` lines, byte for byte, merged in local-receive order (the first token); the
gzip header carries no name and no time, so the output's sha256 is reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

SOURCES = ("btcusdt_20240808.gz", "ethusdt_20240808.gz")
STREAMS = (b'{"stream":"btcusdt@trade",', b'{"stream":"ethusdt@trade",')


def main(argv: list[str]) -> int:
    src = Path(argv[1])
    out = (
        Path(argv[2])
        if len(argv) > 2
        else Path(__file__).with_name("btcusdt_ethusdt_20240808_trades.txt.gz")
    )
    lines: list[tuple[int, int, bytes]] = []
    for file_no, name in enumerate(SOURCES):
        with gzip.open(src / name, "rb") as fh:
            for line in fh:
                head, _, rest = line.partition(b" ")
                if rest.startswith(STREAMS):
                    lines.append(
                        (int(head), file_no, line if line.endswith(b"\n") else line + b"\n")
                    )
    lines.sort(key=lambda item: (item[0], item[1]))  # stable within a file
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        for _, _, line in lines:
            gz.write(line)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{len(lines)} lines -> {out} ({out.stat().st_size} bytes) sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
