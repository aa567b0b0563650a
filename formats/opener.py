"""The one way any recorded file is opened: bounded, non-blocking, regular files only.

``open_text(source)`` streams plain, gzip or single-member zip text and enforces
:class:`~formats.limits.Limits` while reading: at most ``max_recording_bytes`` after
decompression and ``max_line_bytes`` per line, so a decompression bomb, a file without a
newline or an endless stream costs a bounded amount of memory and time before it is refused.
Paths must name regular files: directories, FIFOs, devices (``/dev/zero``) and the ``/proc``,
``/sys`` and ``/dev`` pseudo-files are refused before a byte is read, and the file is opened
with ``O_NONBLOCK`` so that a FIFO swapped in at the last moment cannot block either.
Every refusal is one ``ParseError`` whose message names the file.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO, BinaryIO

from formats.errors import ParseError
from formats.limits import Limits, default_limits

__all__ = ["UNREADABLE", "Source", "open_text", "source_name"]

#: A path, or an open binary file (an upload held in memory, say).
Source = str | os.PathLike[str] | BinaryIO

#: What a damaged .gz/.zip or a non-text file raises part-way through.
UNREADABLE = (UnicodeDecodeError, EOFError, OSError, zlib.error, zipfile.BadZipFile)

_PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_MB = 1024 * 1024


def source_name(source: Source) -> str:
    """How messages name ``source``: the path, or an open file's ``name`` if it has one."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    return str(getattr(source, "name", None) or "<upload>")


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def _open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading if, and only if, it is a non-empty regular file."""
    name = str(path)
    real = os.path.realpath(path)
    for root in _PSEUDO_ROOTS:
        if real == root or real.startswith(root + "/"):
            raise ParseError("not_regular", f"is a {root} pseudo-file, not a recording", path=name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ParseError("no_file", "no such file", path=name) from None
    except IsADirectoryError:
        raise ParseError("not_regular", "is a directory", path=name) from None
    except PermissionError:
        raise ParseError("unreadable", "permission denied", path=name) from None
    except OSError as exc:
        raise ParseError("unreadable", f"cannot open ({exc.strerror})", path=name) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ParseError("not_regular", _kind_of(info.st_mode), path=name)
        if info.st_size == 0:
            raise ParseError("empty", "file is empty", path=name)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _Capped(io.RawIOBase):
    """A raw byte stream over ``inner`` that refuses more than ``max_bytes`` in all and any
    line longer than ``max_line`` bytes, counting lines for the error message.

    Reads are at most ``max_line`` bytes, so a line can only overrun where a read ends or
    starts: the checks look at the first and last newline of each read, never at every byte.
    """

    def __init__(
        self, inner: IO[bytes], name: str, limits: Limits, owned: tuple[IO, ...] = ()
    ) -> None:
        super().__init__()
        self._inner, self._name, self._owned = inner, name, owned
        self._max_bytes, self._max_line = limits.max_recording_bytes, limits.max_line_bytes
        self._total = self._run = self._lines = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buffer), self._max_line, 1 * _MB))
        n = len(data)
        self._total += n
        if self._total > self._max_bytes:
            mb = self._max_bytes / _MB
            raise ParseError(
                "too_large",
                f"more than {mb:g} MB of text once decompressed (MAX_RECORDING_MB); "
                "refused as a decompression bomb",
                path=self._name,
            )
        first = data.find(b"\n")
        if first < 0:
            self._run += n
        else:
            self._check_line(self._run + first)
            self._lines += data.count(b"\n")
            self._run = n - data.rfind(b"\n") - 1
        self._check_line(self._run)
        buffer[:n] = data
        return n

    def _check_line(self, length: int) -> None:
        if length > self._max_line:
            raise ParseError(
                "line_too_long",
                f"line longer than {self._max_line:,} bytes (MAX_LINE_BYTES)",
                path=self._name,
                line=self._lines + 1,
            )

    def close(self) -> None:
        try:
            for stream in self._owned:
                stream.close()
        finally:
            super().close()


def _decompressed(raw: BinaryIO, name: str, limits: Limits) -> tuple[IO[bytes], tuple[IO, ...]]:
    """The decompressed byte stream of ``raw`` (gzip and zip by their magic, else as is),
    and the streams to close with it, innermost first."""
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == _GZIP_MAGIC:
        _refuse_declared_size(_gzip_declared_size(raw), name, limits)
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
        return stream, (stream,)
    if head == _ZIP_MAGIC:
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ParseError("unreadable", f"not a valid zip file ({exc})", path=name) from None
        members = [i for i in archive.infolist() if not i.is_dir()]
        if len(members) != 1:
            archive.close()
            raise ParseError(
                "zip_members", f"zip holds {len(members)} files; expected one", path=name
            )
        try:
            _refuse_declared_size(members[0].file_size, name, limits)
            member = archive.open(members[0])
        except BaseException:
            archive.close()
            raise
        return member, (member, archive)
    return raw, ()


def _gzip_declared_size(raw: BinaryIO) -> int:
    """The last gzip member's ISIZE (its size mod 2**32); the whole text is at least this."""
    end = raw.seek(0, io.SEEK_END)
    if end < 18:
        raw.seek(0)
        return 0
    raw.seek(end - 4)
    size = int.from_bytes(raw.read(4), "little")
    raw.seek(0)
    return size


def _refuse_declared_size(size: int, name: str, limits: Limits) -> None:
    # Reads only the archive's own word for its size: a bomb is refused before inflating it.
    if size > limits.max_recording_bytes:
        raise ParseError(
            "too_large",
            f"declares {size / _MB:,.0f} MB of text once decompressed (or is damaged); the "
            f"limit is {limits.max_recording_bytes / _MB:g} MB (MAX_RECORDING_MB)",
            path=name,
        )


def open_text(source: Source, limits: Limits | None = None) -> io.TextIOWrapper:
    """Open a recording as UTF-8 text lines, bounded by ``limits`` (see the module docstring).

    ``source`` is a path or a seekable binary file object (an upload). Use it as a context
    manager; reading raises ``ParseError`` once a limit is passed (``too_large``,
    ``line_too_long``), and ``UnicodeDecodeError``/``OSError``/``EOFError`` for damaged text.
    """
    lim = limits or default_limits()
    name = source_name(source)
    if isinstance(source, str | os.PathLike):
        raw: BinaryIO = _open_regular(Path(source))
    else:
        raw = source
        if not raw.seekable():
            raise ParseError("unreadable", "an upload must be a seekable file object", path=name)
    owns_raw = raw is not source
    try:
        inner, owned = _decompressed(raw, name, lim)
    except BaseException:
        if owns_raw:
            raw.close()
        raise
    capped = _Capped(inner, name, lim, (*owned, raw) if owns_raw else owned)
    return io.TextIOWrapper(io.BufferedReader(capped, 64 * 1024), encoding="utf-8")
