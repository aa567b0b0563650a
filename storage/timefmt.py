"""ISO-8601 ⇄ UTC milliseconds, the one place the CLIs convert times; the clock in ms."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd


def now_ms() -> int:
    """Wall-clock time in UTC milliseconds."""
    return time.time_ns() // 1_000_000


def parse_iso_ms(text: str) -> int:
    """``2024-02-01``, ``2024-02-01T12:00``, ``...Z`` or with an offset → UTC ms.

    A time without a zone is taken as UTC. Raises ``ValueError`` naming the text.
    """
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {text!r} (e.g. 2024-02-01T12:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def ms_to_iso(ms: np.ndarray | pd.Series | list[int]) -> pd.Series:
    """UTC ms → ISO-8601 strings with milliseconds and a ``Z``."""
    ts = pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True)
    return pd.Series(ts.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z")


def iso_from_ms(ms: int) -> str:
    """One UTC ms time → ISO-8601 with milliseconds and a ``Z`` (``2024-08-08T23:54:16.322Z``)."""
    return str(ms_to_iso([int(ms)])[0])


def iso_seconds(ms: np.ndarray | pd.Series | list[int]) -> np.ndarray:
    """UTC ms → ISO-8601 to the second with a ``Z`` (``2024-08-08T23:54:16Z``), an object
    array: bar open times, which fall on whole seconds, as the CSV exports write them."""
    ts = pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True)
    return np.asarray(ts.strftime("%Y-%m-%dT%H:%M:%S") + "Z", dtype=object)
