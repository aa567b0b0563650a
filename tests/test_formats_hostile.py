"""Hostile recordings get a one-line refusal in bounded memory, from every consumer.

The files (``bench/hostile_files.py`` builds them): a 2 MB gzip of zeros that inflates to
2 GiB on one endless line, the same with newlines, a file with no newline, ``/dev/zero``, a
FIFO, ``/proc/self/environ`` and a directory. Consumers: ``storage import`` (in-process and as
a real ``python -m storage`` child whose peak RSS is read with ``wait4``), the page's
``validate_recording`` and the replay server's ``load_recording``.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import pytest

from bench.hostile_files import make_hostile_files, make_idle_file, run_child
from formats import Limits, ParseError, open_text, validate_recording
from replay import load_recording
from storage.__main__ import main as storage_main

#: Peak RSS a refusal may add over the same command importing a small valid file (issue 9).
MAX_ABOVE_IDLE_MIB = 100


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    return make_hostile_files(tmp_path_factory.mktemp("hostile"), with_zip=False)


@pytest.fixture(scope="module")
def idle_file(tmp_path_factory) -> Path:
    return make_idle_file(tmp_path_factory.mktemp("idle"))


CASES = [
    ("gzip_bomb_2GiB_zeros", "line longer than 1,048,576 bytes (MAX_LINE_BYTES)"),
    ("gzip_bomb_2GiB_newlines", "holds only blank lines"),
    ("no_newline_8MiB", "line longer than 1,048,576 bytes (MAX_LINE_BYTES)"),
    ("fifo", "is a FIFO, not a regular file"),
    ("directory", "is a directory"),
    ("dev_zero", "is a /dev pseudo-file"),
    ("proc_self_environ", "is a /proc pseudo-file"),
]


def test_the_bomb_is_what_issue_9_describes(hostile):
    bomb = hostile["gzip_bomb_2GiB_zeros"]
    assert bomb.stat().st_size < 2.5e6
    with gzip.open(bomb) as fh:  # a valid gzip: the first 64 MiB are zeros, and so on
        assert fh.read(1 << 20) == b"\0" * (1 << 20)


@pytest.mark.parametrize(("case", "message"), CASES)
def test_each_consumer_refuses_with_one_line(hostile, tmp_path, capsys, case, message):
    path = hostile[case]
    for consume in (validate_recording, lambda p: load_recording([p])):
        with pytest.raises(ParseError) as info:
            consume(path)
        text = str(info.value)
        assert "\n" not in text and str(path) in text and message in text, text
    assert storage_main(["import", str(path), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}") and message in err[0], err


def test_proc_kmsg_and_symlinks_into_proc_are_refused_before_opening(tmp_path):
    link = tmp_path / "innocent.gz"
    link.symlink_to("/proc/self/environ")
    for path in (Path("/proc/kmsg"), link, Path("/sys/kernel/notes")):
        with pytest.raises(ParseError, match="pseudo-file"):
            validate_recording(path)


@pytest.mark.parametrize("case", [c for c, _ in CASES])
def test_refusals_stay_within_100_mb_above_idle(hostile, idle_file, tmp_path, case):
    status, err, idle_mib, _ = run_child("import", idle_file, tmp_path / "idle.db")
    assert status == 0, err
    status, err, peak_mib, _ = run_child("import", hostile[case], tmp_path / "x.db", 120)
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert peak_mib - idle_mib <= MAX_ABOVE_IDLE_MIB, (peak_mib, idle_mib)


def test_a_bomb_that_declares_its_size_is_refused_without_inflating(tmp_path):
    limits = Limits(max_recording_bytes=8 << 20)
    single = tmp_path / "big.gz"
    single.write_bytes(gzip.compress(b"\n" * (16 << 20)))
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.txt", b"\n" * (16 << 20))
    for path in (single, archive):
        with pytest.raises(ParseError, match=r"declares 16 MB .*MAX_RECORDING_MB"):
            open_text(path, limits)


def test_the_decompressed_size_cap_holds_while_streaming(tmp_path):
    # Many small members: each declares little, together they pass the cap.
    member = gzip.compress(b'{"e":"bookTicker"}\n' * 50_000)
    path = tmp_path / "members.gz"
    path.write_bytes(member * 20)
    limits = Limits(max_recording_bytes=4 << 20)
    with (
        pytest.raises(ParseError, match=r"more than 4 MB .*MAX_RECORDING_MB"),
        open_text(path, limits) as fh,
    ):
        for _ in fh:
            pass


def test_an_upload_held_in_memory_is_validated_as_a_stream(hostile):
    line = (
        '1723161255290656866 {"stream":"ethusdt@trade","data":{"e":"trade","E":1723161256560,'
        '"T":1723161256560,"s":"ETHUSDT","t":4308068523,"p":"2681.62","q":"1.000",'
        '"X":"MARKET","m":true}}\n'
    )
    upload = io.BytesIO(gzip.compress(line.encode()))
    upload.name = "capture.gz"
    summary = validate_recording(upload)
    assert summary.trades == {"ETHUSDT": 1} and summary.format == "capture"
    assert summary.first_ms == summary.last_ms == 1723161256560
    bomb = io.BytesIO(hostile["gzip_bomb_2GiB_zeros"].read_bytes())
    with pytest.raises(ParseError, match="MAX_LINE_BYTES"):
        validate_recording(bomb)


def test_a_kline_dump_is_valid_for_import_but_not_a_recording_to_replay(tmp_path):
    dump = tmp_path / "NEARUSDT-1m-2024-02.csv"
    dump.write_text("1706745600000,1,2,0.5,1.5,10,1706745659999,15,3,4,6,0\n")
    with pytest.raises(ParseError, match="holds 1 klines, not trades"):
        validate_recording(dump)
    assert os.path.getsize(dump) > 0
