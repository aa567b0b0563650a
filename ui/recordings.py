"""Recordings a user gives the page: a path typed on the server, or an uploaded file.

What the page may read on the server, and why (see docs/first-minute.md):

- only *regular files* under the configured replay folders (``AppSettings.replay_dirs``: the
  bundled ``samples/`` folder, the upload folder, and ``REPLAY_DIRS``), after resolving
  symlinks — a replay needs nothing else, and anything else (``/proc``, ``/dev/zero``, a FIFO,
  another user's files) is refused before it is opened for reading;
- opened non-blocking (``O_NONBLOCK``): a FIFO or device can never block a server thread;
- missing, unreadable, outside the folders or not a regular file get the *same* message, so
  the page cannot be used to learn which server files exist, and no server path is shown.

Validation is ``formats.validate_recording``: one stream through the bounded reader, within
``formats.Limits`` (``MAX_RECORDING_MB``, ``MAX_LINE_BYTES``, ``MAX_LINES_WITHOUT_TRADE``), so
a decompression bomb costs a bounded amount of memory and time. An upload is validated once
per upload (keyed by its ``file_id``) and never decompressed again on a rerun.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from formats import Limits
from service.settings import SAMPLE_RECORDING, AppSettings

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of validating one recording: its path, or the user's one-line error."""

    path: str | None
    error: str = ""


def refused(shown: str) -> ValueError:
    return ValueError(
        f"{shown} cannot be replayed: give a readable recording file inside the replay "
        "folders (the bundled samples, the upload folder, or a folder listed in REPLAY_DIRS)"
    )


def allowed_dirs(settings: AppSettings) -> tuple[Path, ...]:
    """The bundled samples folder, the upload folder and ``REPLAY_DIRS``, symlinks resolved."""
    folders = (str(SAMPLE_RECORDING.parent), settings.upload_dir, *settings.replay_dirs)
    return tuple(Path(d).expanduser().resolve() for d in folders)


def _inside(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == d or d in path.parents for d in folders)


def check_recording_path(raw: str, settings: AppSettings) -> str:
    """The resolved path of a regular file under the replay folders, or ``ValueError``.

    Never opens anything outside the folders; opens inside them with ``O_NONBLOCK``.
    """
    shown = Path(raw).name or "that path"
    try:
        path = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        raise refused(shown) from None
    if not _inside(path, allowed_dirs(settings)):
        raise refused(shown)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except (OSError, ValueError):
        raise refused(shown) from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise refused(shown)
    size_mb = info.st_size / 1e6
    if size_mb > settings.max_upload_mb:
        raise ValueError(
            f"{shown} is {size_mb:.0f} MB; the limit is {settings.max_upload_mb:g} MB "
            "(MAX_UPLOAD_MB)"
        )
    return str(path)


def sniff_recording(path: str, limits: Limits | None = None) -> str:
    """The first traded symbol of ``path``; ``ValueError`` (a reason, no path) otherwise.

    The one validation of a recording (``formats.validate_recording``): streamed within
    ``formats.Limits`` (decompressed size, line length, lines without a trade), memory
    bounded whatever the file holds; a gzip that declares more than the limit is refused
    before it is inflated.
    """
    from formats import ParseError
    from formats import validate_recording as validate_file

    try:
        summary = validate_file(path, limits)
    except ParseError as exc:
        raise ValueError(exc.detail or exc.reason) from None
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    return summary.symbols[0]


def validate_recording(path: str | None, shown: str | None = None) -> None:
    """Raise ``ValueError`` (naming the file, never the server path) unless it holds trades."""
    if path is None:
        raise ValueError("choose a recording first")
    name = shown or Path(path).name
    try:
        sniff_recording(path)
    except ValueError as exc:
        raise ValueError(f"{name} is not a trade recording: it {exc}") from None


def save_upload(name: str, data: bytes, settings: AppSettings) -> str:
    """Store an uploaded recording under ``upload_dir`` after checking size and content."""
    shown = Path(name).name[:80] or "the upload"
    if len(data) > settings.max_upload_mb * 1e6:
        raise ValueError(f"{shown} is larger than {settings.max_upload_mb:g} MB")
    if not data:
        raise ValueError(f"{shown} is empty")
    safe = _SAFE_NAME.sub("_", Path(name).name)[-100:] or "recording"
    folder = Path(settings.upload_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    path.write_bytes(data)
    try:
        validate_recording(str(path), shown)
    except ValueError:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return str(path)


def checked_upload(
    cache: dict[str, Checked],
    file_id: str,
    name: str,
    read: Callable[[], bytes],
    settings: AppSettings,
) -> Checked:
    """``save_upload`` once per upload: later reruns reuse the result kept under ``file_id``.

    ``read`` returns the upload's bytes (called only the first time).
    """
    hit = cache.get(file_id)
    if hit is not None:
        return hit
    try:
        result = Checked(save_upload(name, read(), settings))
    except ValueError as exc:
        result = Checked(None, str(exc))
    cache[file_id] = result
    return result
