"""Limits on what any input may cost: frame and line sizes, JSON nesting, decompressed bytes.

Every limit has a default that no real Binance message or recording comes near, and an
environment variable to change it (read once, by :func:`default_limits`). Pass a
:class:`Limits` explicitly to override per call (tests do).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from config import ConfigError, env_number

__all__ = ["Limits", "default_limits"]

_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """What one input may cost. Sizes in bytes; ``*_mb`` in the environment are MiB.

    max_frame_bytes : largest WebSocket text message or REST body parsed (``MAX_FRAME_BYTES``;
        default 1 MiB; a real trade frame is about 250 bytes, a REST page of 1000 trades 100 KB).
    max_json_depth : deepest JSON nesting accepted (``MAX_JSON_DEPTH``; default 32; Binance's
        deepest payload, a depth snapshot, nests 3 levels).
    max_line_bytes : longest line of a recorded file (``MAX_LINE_BYTES``; default 1 MiB; a
        capture line is about 250 bytes, a REST depth snapshot line about 40 KB).
    max_recording_bytes : most bytes read from one recorded file after decompression
        (``MAX_RECORDING_MB``; default 1024 MiB); more is refused as a decompression bomb.
    max_lines_without_trade : a recording is refused when this many lines in a row carry no
        trade (``MAX_LINES_WITHOUT_TRADE``; default 1,000,000), so a file of blank or foreign
        lines is judged in a bounded time.
    """

    max_frame_bytes: int = 1 * _MB
    max_json_depth: int = 32
    max_line_bytes: int = 1 * _MB
    max_recording_bytes: int = 1024 * _MB
    max_lines_without_trade: int = 1_000_000

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"limit {name}={value!r} must be a positive integer")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Defaults, overridden by ``MAX_FRAME_BYTES``, ``MAX_JSON_DEPTH``, ``MAX_LINE_BYTES``,
        ``MAX_RECORDING_MB`` and ``MAX_LINES_WITHOUT_TRADE``, read by ``config.env_number``; a
        bad one is a ``config.ConfigError`` (a ``ValueError``) naming it."""
        values: dict[str, int] = {}
        for name, field, scale in (
            ("MAX_FRAME_BYTES", "max_frame_bytes", 1),
            ("MAX_JSON_DEPTH", "max_json_depth", 1),
            ("MAX_LINE_BYTES", "max_line_bytes", 1),
            ("MAX_RECORDING_MB", "max_recording_bytes", _MB),
            ("MAX_LINES_WITHOUT_TRADE", "max_lines_without_trade", 1),
        ):
            value = env_number(name, None, env)  # the one environment parser (config)
            if value is None:
                continue
            if not value.is_integer():
                raise ConfigError(f"{name}={value:g} must be a whole number")
            values[field] = int(value) * scale
        return cls(**values)


@functools.cache
def default_limits() -> Limits:
    """The process's limits: :meth:`Limits.from_env`, read once."""
    return Limits.from_env()
