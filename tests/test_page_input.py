"""Hostile or sloppy input to the page: URL parameters, typed replay paths, uploads.

Pure parts are tested directly; the page itself through ``AppTest`` with the real replay
server as exchange (fixtures of ``tests.test_app``); real files, FIFOs and devices on disk.
"""

from __future__ import annotations

import gzip
import os
import resource
import sys
import threading
from pathlib import Path

import pytest

from formats import Limits
from service.settings import SAMPLE_RECORDING, AppSettings
from tests.test_app import exchange, run, short_env, texts  # noqa: F401 - pytest fixtures
from ui.guard import md_escape
from ui.recordings import (
    Checked,
    check_recording_path,
    checked_upload,
    save_upload,
    sniff_recording,
)
from ui.sidebar import URL_SPECS
from ui.urlparams import normalise


# ------------------------------------------------------------------------- URL parameters
def test_method_keys_are_accepted_case_insensitively():
    fixes = {f.param: f for f in normalise({"method": "kalman", "prices": "DUAL"}, URL_SPECS)}
    assert fixes["method"].used == "Kalman"
    assert fixes["prices"].used == "Dual axis"
    assert not normalise({"method": "Theil-Sen", "tf": "1m", "window": "60"}, URL_SPECS)
    assert normalise({"method": "THEIL_SEN"}, URL_SPECS)[0].used == "Theil-Sen"


def test_invalid_values_get_one_note_each_naming_the_value_used():
    raw = {"window": "99999999", "method": "foo", "z": "nan", "tf": "1M", "refresh": "0.50"}
    fixes = {f.param: f for f in normalise(raw, URL_SPECS)}
    assert fixes["window"].used == 1000 and "above the maximum" in fixes["window"].note()
    assert fixes["method"].used == "OLS" and "using OLS" in fixes["method"].note()
    assert fixes["z"].used == 2.0 and "not a finite number" in fixes["z"].note()
    assert fixes["tf"].used == "1s"  # "1M" is a month on Binance, not a minute
    assert fixes["refresh"].used == "0.5"
    for f in fixes.values():
        assert f.note().startswith(f"URL parameter {f.param}=")
        assert len(f.note()) < 160


@pytest.mark.usefixtures("short_env")
def test_url_notes_show_on_the_page_and_the_values_are_used():
    at = run({"method": "kalman", "window": "99999999", "z": "nan"})
    assert at.selectbox(key="method").value == "Kalman"
    assert at.number_input(key="window").value == 1000
    assert at.number_input(key="z").value == 2.0
    shown = texts(at)
    assert "URL parameter method='kalman' is spelled differently; using Kalman." in shown
    assert "window='99999999' is above the maximum; using 1000" in shown
    assert "z='nan' is not a finite number; using 2" in shown


@pytest.mark.usefixtures("short_env")
def test_user_text_is_never_markdown():
    at = run({"x": "[Click](https://ev.il)", "y": "![](http://host/a.png)"})
    errors = [e.value for e in at.error]
    assert errors, "an invalid symbol must be refused with a message"
    for e in errors:
        assert "[" not in e.replace("\\[", ""), e  # every bracket escaped: no link, no image
    assert any("\\[Click\\](https\\:\u200b//ev.il)" in e for e in errors), errors


def test_md_escape_leaves_no_markdown():
    assert md_escape("[a](b) ![](c) <b>x</b> :red[y] $z$") == (
        "\\[a\\](b) \\!\\[\\](c) \\<b\\>x\\</b\\> \\:red\\[y\\] \\$z\\$"
    )
    assert md_escape("- item") == "\\- item" and md_escape("12. x") == "12\\. x"
    # GFM links bare addresses even when escaped: a zero-width space splits them.
    assert md_escape("see www.ev.il or a@b.co") == "see www\u200b.ev.il or a\u200b@b.co"
    assert "\n" not in md_escape("one\ntwo")


# ------------------------------------------------------------------------- typed paths
@pytest.fixture
def folders(tmp_path) -> AppSettings:
    data = tmp_path / "data"
    data.mkdir()
    return AppSettings(upload_dir=str(tmp_path / "up"), replay_dirs=(str(data),))


def _message(raw: str, settings: AppSettings) -> str:
    with pytest.raises(ValueError) as info:
        check_recording_path(raw, settings)
    return str(info.value)


def test_typed_paths_are_limited_to_regular_files_in_the_replay_folders(folders, tmp_path):
    data = Path(folders.replay_dirs[0])
    good = data / "capture.gz"
    good.write_bytes(SAMPLE_RECORDING.read_bytes())
    assert check_recording_path(str(good), folders) == str(good.resolve())
    assert check_recording_path(str(SAMPLE_RECORDING), folders)  # the bundled sample
    os.mkfifo(data / "fifo.gz")
    unreadable = data / "secret.gz"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0)
    (data / "escape.gz").symlink_to("/etc/hostname")
    outside = tmp_path / "outside.gz"
    outside.write_bytes(SAMPLE_RECORDING.read_bytes())
    cases = [
        str(data / "missing.gz"),
        str(data / "fifo.gz"),  # would block a plain open() for ever
        str(data / "escape.gz"),
        str(data),
        str(outside),
        "/proc/kmsg",
        "/proc/self/environ",
        "/dev/zero",
        "/etc/passwd",
        "../../etc/passwd",
    ]
    if os.geteuid() != 0:  # root reads a mode-0 file anyway
        cases.append(str(unreadable))
    messages = {raw: _message(raw, folders) for raw in cases}
    # One message for all of them (only the file name differs), never a server path.
    templates = {m.replace(Path(raw).name, "NAME", 1) for raw, m in messages.items()}
    assert len(templates) == 1, templates
    for m in messages.values():
        assert str(tmp_path) not in m and "/proc" not in m and "/dev" not in m


def test_a_fifo_in_the_folder_never_blocks(folders):
    fifo = Path(folders.replay_dirs[0]) / "pipe.gz"
    os.mkfifo(fifo)
    done = threading.Event()

    def check() -> None:
        with pytest.raises(ValueError):
            check_recording_path(str(fifo), folders)
        done.set()

    t = threading.Thread(target=check, daemon=True)
    t.start()
    assert done.wait(10), "checking a FIFO blocked"


# ------------------------------------------------------------------------- uploads
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_gzip_bomb_is_refused_in_bounded_memory(tmp_path):
    """2 GiB of zeros in one endless line, 2 MB gzipped: refused in bounded memory, whether
    by its declared size or, when it hides its size, by the line length."""
    bomb = tmp_path / "bomb.gz"
    chunk = b"\0" * (16 << 20)
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        for _ in range(128):  # 2 GiB
            fh.write(chunk)
    del chunk
    before = _rss_mb()
    with pytest.raises(ValueError, match=r"decompressed|line longer than"):
        sniff_recording(str(bomb))
    # The same bomb read past its declared size check: the line limit stops it.
    with pytest.raises(ValueError, match="line longer than"):
        sniff_recording(str(bomb), Limits(max_recording_bytes=4 << 30))
    grown = _rss_mb() - before
    assert grown < 100, f"RSS peak grew by {grown:.0f} MB"
    # Many short lines of nothing: refused after the lines-without-a-trade limit.
    lines = tmp_path / "lines.gz"
    with gzip.open(lines, "wb") as fh:
        fh.write(b"{}\n" * (4 << 20))
    with pytest.raises(ValueError, match="no trade in 1,000 lines"):
        sniff_recording(str(lines), Limits(max_lines_without_trade=1000))


def test_an_upload_is_validated_once_and_its_errors_name_no_server_path(tmp_path):
    s = AppSettings(upload_dir=str(tmp_path / "up"))
    cache: dict[str, Checked] = {}
    reads = []

    def read(data: bytes):
        def _read() -> bytes:
            reads.append(1)
            return data

        return _read

    bad = checked_upload(cache, "id-1", "notes.txt", read(b"hello\nworld\n"), s)
    assert bad.path is None and "notes.txt is not a trade recording" in bad.error
    assert str(tmp_path) not in bad.error
    again = checked_upload(cache, "id-1", "notes.txt", read(b"hello\nworld\n"), s)
    assert again is bad and len(reads) == 1  # a rerun never reads or decompresses it again
    good = checked_upload(cache, "id-2", "s.gz", read(SAMPLE_RECORDING.read_bytes()), s)
    assert good.path and Path(good.path).parent == tmp_path / "up"
    with pytest.raises(ValueError) as info:
        save_upload("x.gz", b"\x1f\x8b\x08 not gzip", s)
    assert str(tmp_path) not in str(info.value) and "x.gz" in str(info.value)


if sys.platform != "linux":  # FIFOs, /proc and /dev are Linux facts here
    pytestmark = pytest.mark.skip(reason="Linux only")
